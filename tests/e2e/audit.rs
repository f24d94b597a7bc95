//! The read audit (`--audit-log`) against a real OpenBao and a real FUSE
//! mount, read by real programs: who read what is recorded with their own
//! pids and executables, an exec() in the same pid is the new program, no
//! value or token reaches the file, hostile names stay one JSON line, and an
//! audit file that cannot be written never holds up a read.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;
use serde_json::{json, Value};

const TOKEN: &str = "AUDITLEAK-TOKEN-2c9e41d7";
const VALUES: [&str; 3] = [
    "AUDITLEAK-VALUE-pw-81f0",
    "AUDITLEAK-VALUE-api-5a3c",
    "AUDITLEAK-VALUE-weird-0d1e",
];
/// A key name a secret's writer chose: a quote, a newline faking a line,
/// a terminal escape, a bidi override, line and paragraph separators, an
/// Arabic letter mark.
const WEIRD_KEY: &str = "we\"ird\n{\"op\":\"open\"}\u{1b}[2J\u{202e}\u{2028}\u{2029}\u{61c}key";
/// What neither the audit file nor the table may hold raw.
const RAW: [char; 5] = ['\x1b', '\u{202e}', '\u{2028}', '\u{2029}', '\u{61c}'];

fn lines(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect()
}

/// Wait until the audit file holds a record for `path` opened by `pid`.
fn record_of(audit: &Path, pid: u32, path: &str) -> Value {
    let find = || {
        lines(audit)
            .into_iter()
            .find(|r| r["pid"] == pid && r["path"] == path)
    };
    wait_until(
        &format!("audit of {path} by {pid}"),
        Duration::from_secs(10),
        || find().is_some(),
    );
    find().unwrap()
}

fn run_ok(cmd: &mut Command) -> u32 {
    let child = cmd.stdout(Stdio::null()).spawn().unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    pid
}

fn real(p: &str) -> String {
    std::fs::canonicalize(p)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn exe_of(r: &Value) -> &str {
    r["exe"].as_str().unwrap_or_else(|| panic!("no exe: {r}"))
}

/// A mount with the audit in `dir`, and the state directory it records
/// the audit's place in.
fn audited_mount(b: &Bao, dir: &Path, extra: &[&str]) -> (Mount, PathBuf) {
    let audit = dir.join("logs/audit.jsonl");
    let state = dir.join("state");
    let mut o = MountOpts::new(TOKEN)
        .arg("--audit-log")
        .arg(audit.to_str().unwrap())
        .env("RUST_LOG", "trace")
        .env("XDG_STATE_HOME", state.to_str().unwrap());
    for a in extra {
        o = o.arg(a);
    }
    (Mount::with(b, o), audit)
}

fn seed(b: &Bao) {
    static SEEDED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    SEEDED.get_or_init(|| {
        b.cli(&["token", "create", &format!("-id={TOKEN}"), "-policy=root"]);
        b.put(
            "secret",
            "audit/a",
            json!({"password": VALUES[0], WEIRD_KEY: VALUES[2]}),
        );
        b.put("secret", "audit/b", json!({"API_KEY": VALUES[1]}));
    });
}

#[test]
fn who_read_what_with_their_own_pids_and_executables() {
    let b = Bao::shared();
    seed(b);
    let t = tempfile::tempdir().unwrap();
    let (m, audit) = audited_mount(b, t.path(), &[]);
    let me = std::process::id();
    let (uid, gid) = (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    );

    let a = m.p("secret/audit/a/password");
    let cat = run_ok(Command::new("cat").arg(&a));
    let env_b = m.p("secret/audit/b/.env");
    let py = run_ok(
        Command::new("python3")
            .arg("-c")
            .arg(format!("open({:?}).read()", env_b.to_str().unwrap())),
    );

    let r = record_of(&audit, cat, "secret/audit/a/password");
    assert_eq!(exe_of(&r), real("/usr/bin/cat"), "{r}");
    assert_eq!(
        (&r["comm"], &r["ppid"], &r["tgid"]),
        (&json!("cat"), &json!(me), &json!(cat))
    );
    assert_eq!((&r["uid"], &r["gid"]), (&json!(uid), &json!(gid)));
    assert_eq!(
        (&r["op"], &r["result"], &r["version"]),
        (&json!("open"), &json!("ok"), &json!(1))
    );
    assert_eq!(
        r["source"], "vault",
        "the first open of a fresh answer: {r}"
    );
    let r = record_of(&audit, py, "secret/audit/b/.env");
    assert!(exe_of(&r).contains("python3"), "{r}");
    assert_ne!(cat, py);

    // Read again: from the daemon's cache, and still one line per open.
    let again = run_ok(Command::new("cat").arg(&a));
    assert_eq!(
        record_of(&audit, again, "secret/audit/a/password")["source"],
        "cache"
    );

    // The same pid opens as the shell, then exec()s head: the second open
    // is head's, not the shell's cached details.
    let sh = run_ok(
        Command::new("sh")
            .arg("-c")
            .arg(r#"read -r x < "$1"; exec head -c 3 "$2""#)
            .arg("sh")
            .arg(&a)
            .arg(m.p("secret/audit/b/API_KEY")),
    );
    let first = record_of(&audit, sh, "secret/audit/a/password");
    let second = record_of(&audit, sh, "secret/audit/b/API_KEY");
    assert_eq!(exe_of(&first), real("/bin/sh"), "{first}");
    assert_eq!(exe_of(&second), real("/usr/bin/head"), "{second}");

    // A hostile key name: one valid JSON line, its name intact.
    let weird = m.p(&format!("secret/audit/a/{WEIRD_KEY}"));
    let cat_weird = run_ok(Command::new("cat").arg(&weird));
    let want = format!("secret/audit/a/{WEIRD_KEY}");
    assert_eq!(
        record_of(&audit, cat_weird, &want)["exe"],
        real("/usr/bin/cat")
    );
    // And the table escapes it; `vaultfs audit MOUNTPOINT` finds the file
    // from what the daemon recorded.
    let table = Command::new(vaultfs_bin())
        .args([
            "audit",
            m.path().to_str().unwrap(),
            "--secret",
            "secret/audit/a/*",
            "--exe",
            "cat",
        ])
        .env("XDG_STATE_HOME", t.path().join("state"))
        .output()
        .unwrap();
    assert!(table.status.success(), "{}", stderr(&table));
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(!table.contains(RAW), "{table:?}");
    assert!(table.contains("\\u{2028}\\u{2029}\\u{61c}key"), "{table}");
    let file = std::fs::read_to_string(&audit).unwrap();
    assert!(!file.contains(RAW), "{file:?}");
    let json = Command::new(vaultfs_bin())
        .args(["audit", "--json", "--file", audit.to_str().unwrap()])
        .output()
        .unwrap();
    let json = String::from_utf8(json.stdout).unwrap();
    assert!(json.contains("\\u2028") && !json.contains(RAW), "{json:?}");
    assert!(table.contains("we\"ird\\n{"), "{table}");
    for pid in [cat, again, cat_weird] {
        assert!(
            table.contains(&format!(" {pid} ")),
            "{pid} missing: {table}"
        );
    }
    assert!(
        !table.contains(&format!(" {py} ")) && !table.contains(&format!(" {sh} ")),
        "{table}"
    );
    // Other programs and secrets filtered out; none at all: said so.
    let none = Command::new(vaultfs_bin())
        .args([
            "audit",
            "--file",
            audit.to_str().unwrap(),
            "--exe",
            "nosuchprogram",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&none.stdout), "no matching reads\n");

    // Nothing of a value or the token, in the audit file nor (at trace
    // level) in the log.
    let text = std::fs::read_to_string(&audit).unwrap();
    let log = m.log_text();
    assert!(log.contains("TRACE") || log.contains("DEBUG"), "{log}");
    for hay in [&text, &log] {
        assert!(!hay.contains("AUDITLEAK-TOKEN"), "token leaked");
        assert!(!hay.contains("AUDITLEAK-VALUE"), "a value leaked");
    }
    for r in lines(&audit) {
        assert!(r.as_object().unwrap().len() >= 13, "{r}");
    }
    // The file is owner-only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&audit).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

/// An audit file that cannot be written any more (a symlink planted at its
/// name, its directory removed) does not hold up reads, and is reported
/// once in the log.
#[test]
fn an_unwritable_audit_file_never_blocks_reads() {
    let b = Bao::shared();
    seed(b);
    for how in ["symlink", "removed dir"] {
        let t = tempfile::tempdir().unwrap();
        let (m, audit) = audited_mount(b, t.path(), &[]);
        let file = m.p("secret/audit/a/password");
        assert_eq!(read(&file), VALUES[0]);
        wait_until("first record", Duration::from_secs(10), || {
            !lines(&audit).is_empty()
        });
        let victim = t.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        match how {
            "symlink" => {
                std::fs::rename(&audit, t.path().join("moved")).unwrap();
                std::os::unix::fs::symlink(&victim, &audit).unwrap();
            }
            _ => std::fs::remove_dir_all(audit.parent().unwrap()).unwrap(),
        }
        let start = std::time::Instant::now();
        for _ in 0..20 {
            assert_eq!(read(&file), VALUES[0]);
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{how}: reads held up"
        );
        let reported = || m.log_text().matches("cannot write the audit file").count();
        wait_until(&format!("{how}: reported"), Duration::from_secs(10), || {
            reported() > 0
        });
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(reported(), 1, "{how}: {}", m.log_text());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep", "{how}");
    }
}

/// A symlink at the audit file's name at mount time: the mount is refused
/// with one clear line, and the symlink's target is untouched.
#[test]
fn a_planted_symlink_refuses_the_mount() {
    let b = Bao::shared();
    seed(b);
    let t = tempfile::tempdir().unwrap();
    let victim = t.path().join("victim");
    std::fs::write(&victim, "keep").unwrap();
    let audit = t.path().join("audit.jsonl");
    std::os::unix::fs::symlink(&victim, &audit).unwrap();
    let mp = t.path().join("mnt");
    let o = run(
        {
            let mut c = vaultfs_cmd(b, TOKEN);
            c.args(["mount", "--foreground", mp.to_str().unwrap(), "--audit-log"])
                .arg(&audit)
                .env("XDG_STATE_HOME", t.path().join("state"));
            c
        },
        20,
    );
    assert_fails(&o, "cannot open the audit file");
    assert!(stderr(&o).contains("symlink"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
}

/// `vaultfs audit --follow` prints lines as they are appended, and goes on
/// in the new file when the old one is rotated away.
#[test]
fn follow_goes_on_across_a_rotation() {
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("a.jsonl");
    let line = |n: u32| {
        format!(
            "{{\"time\":\"2024-05-01T11:30:00.000Z\",\"op\":\"open\",\"path\":\"secret/p{n}\",\
             \"pid\":{n},\"uid\":1,\"gid\":1,\"result\":\"ok\"}}\n"
        )
    };
    std::fs::write(&f, line(1)).unwrap();
    let mut child = Command::new(vaultfs_bin())
        .args(["audit", "--json", "--follow", "--file"])
        .arg(&f)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                seen.lock().unwrap().push_str(&(l + "\n"));
            }
        })
    };
    let has = |n: u32| seen.lock().unwrap().contains(&format!("secret/p{n}\""));
    wait_until("the existing line", Duration::from_secs(10), || has(1));
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&f)
        .unwrap()
        .write_all(line(2).as_bytes())
        .unwrap();
    wait_until("an appended line", Duration::from_secs(10), || has(2));
    std::fs::rename(&f, t.path().join("a.jsonl.1")).unwrap();
    std::fs::write(&f, line(3)).unwrap();
    wait_until("a line of the new file", Duration::from_secs(10), || has(3));
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    assert_eq!(
        seen.lock().unwrap().lines().count(),
        3,
        "{}",
        seen.lock().unwrap()
    );
}

/// In the background (the audit's threads start after the fork), from
/// `VAULTFS_AUDIT_LOG`: a read is recorded, and `vaultfs audit` with no
/// argument finds the file of ~/secrets, after unmount too.
#[test]
fn background_mount_from_the_environment() {
    let b = Bao::shared();
    seed(b);
    let h = Home::new();
    let audit = h.path().join("audit/a.jsonl");
    let env = |mut c: Command| {
        c.env("VAULTFS_AUDIT_LOG", &audit);
        c
    };
    assert_ok(&run(env(h.cmd(b, TOKEN, &["mount"])), 30), "mount");
    let cat = run_ok(Command::new("cat").arg(h.secrets().join("secret/audit/b/API_KEY")));
    let r = record_of(&audit, cat, "secret/audit/b/API_KEY");
    assert_eq!(exe_of(&r), real("/usr/bin/cat"), "{r}");
    assert_ok(&run(h.cmd(b, TOKEN, &["unmount"]), 30), "unmount");
    // Found from the daemon's record, not from the environment.
    let o = run(
        h.cmd(b, TOKEN, &["audit", "--secret", "secret/audit/b/*"]),
        30,
    );
    assert_ok(&o, "audit");
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains(&format!(" {cat} ")) && table.contains("/usr/bin/cat"),
        "{table}"
    );
}

/// Listings are recorded only with --audit-listings.
#[test]
fn listings_only_when_asked() {
    let b = Bao::shared();
    seed(b);
    for listings in [false, true] {
        let t = tempfile::tempdir().unwrap();
        let extra: &[&str] = if listings { &["--audit-listings"] } else { &[] };
        let (m, audit) = audited_mount(b, t.path(), extra);
        let ls = run_ok(Command::new("ls").arg(m.p("secret/audit/a")));
        let cat = run_ok(Command::new("cat").arg(m.p("secret/audit/a/password")));
        record_of(&audit, cat, "secret/audit/a/password");
        let listed = lines(&audit)
            .into_iter()
            .filter(|r| r["op"] == "list")
            .collect::<Vec<_>>();
        if listings {
            assert!(
                listed
                    .iter()
                    .any(|r| r["pid"] == ls && r["path"] == "secret/audit/a"),
                "{listed:?}"
            );
        } else {
            assert!(listed.is_empty(), "{listed:?}");
        }
    }
}

/// After SIGHUP drops the cache, the next open makes a Vault request, and
/// its record says so, though the value (so the file's inode) is the same.
#[test]
fn an_open_after_sighup_is_from_vault() {
    let b = Bao::shared();
    seed(b);
    let t = tempfile::tempdir().unwrap();
    let (m, audit) = audited_mount(b, t.path(), &["--ttl", "1h"]);
    let f = m.p("secret/audit/b/API_KEY");
    // Held open across the SIGHUP: the file's inode stays, as it does
    // for a listing or a reader that keeps it.
    let held = std::fs::File::open(&f).unwrap();
    let source = |pid| record_of(&audit, pid, "secret/audit/b/API_KEY")["source"].clone();
    assert_eq!(source(run_ok(Command::new("cat").arg(&f))), "cache");
    signal(m.pid() as i32, Signal::SIGHUP);
    wait_until("the SIGHUP log line", Duration::from_secs(5), || {
        m.log_text().contains("SIGHUP: cached answers dropped")
    });
    assert_eq!(source(run_ok(Command::new("cat").arg(&f))), "vault");
    assert_eq!(source(run_ok(Command::new("cat").arg(&f))), "cache");
    drop(held);
}

/// A symlink planted at the audit file's name after mount: SIGHUP does not
/// write through it and does not claim to have reopened the file, and
/// `vaultfs audit` refuses to read through it, as the writer does.
#[test]
fn a_symlink_planted_later_is_neither_written_nor_read() {
    let b = Bao::shared();
    seed(b);
    let t = tempfile::tempdir().unwrap();
    let (m, audit) = audited_mount(b, t.path(), &[]);
    let cat = run_ok(Command::new("cat").arg(m.p("secret/audit/b/API_KEY")));
    record_of(&audit, cat, "secret/audit/b/API_KEY");
    let moved = t.path().join("moved.jsonl");
    std::fs::rename(&audit, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &audit).unwrap();
    signal(m.pid() as i32, Signal::SIGHUP);
    wait_until("the last SIGHUP action", Duration::from_secs(5), || {
        m.log_text().contains("SIGHUP: the kernel's cached names")
    });
    let log = m.log_text();
    assert!(log.contains("cannot reopen the audit file"), "{log}");
    assert!(!log.contains("SIGHUP: audit file reopened"), "{log}");

    let o = run(
        {
            let mut c = std::process::Command::new(vaultfs_bin());
            c.args(["audit", "--file"]).arg(&audit);
            c
        },
        20,
    );
    assert_fails(&o, "it is a symbolic link");
    assert!(
        stderr(&o).contains(audit.to_str().unwrap()),
        "{}",
        stderr(&o)
    );
    assert!(o.stdout.is_empty());
}
