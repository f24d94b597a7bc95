//! Secrets stay secret: logs at trace level hold no token and no value;
//! other users cannot read the mount; memory is locked.

#[cfg(feature = "root_tests")]
use std::path::Path;
#[cfg(feature = "root_tests")]
use std::process::Command;

use crate::harness::*;
use serde_json::json;

const TOKEN: &str = "LEAKCHECK-TOKEN-7f3a9c1e";
const VALUES: [&str; 4] = [
    "LEAKCHECK-VALUE-plain-4b8e",
    "LEAKCHECK-VALUE-nested-91d2",
    "LEAKCHECK-VALUE-env-c0ff",
    "LEAKCHECK-VALUE-deleted-ee17",
];

#[test]
fn trace_log_holds_no_token_and_no_value() {
    let b = Bao::shared();
    b.cli(&["token", "create", &format!("-id={TOKEN}"), "-policy=root"]);
    b.put("secret", "leak/a", json!({"password": VALUES[0]}));
    b.put(
        "secret",
        "leak/b",
        json!({"nested": {"x": [VALUES[1]]}, "ENV_KEY": VALUES[2]}),
    );
    b.put("secret", "leak/gone", json!({"v": VALUES[3]}));
    b.cli(&["kv", "delete", "-mount=secret", "leak/gone"]);
    // This mount's own RUST_LOG (the environment is the whole test run's).
    let o = MountOpts::new(TOKEN).arg("--ttl").arg("1s");
    let m = Mount::with(b, o.env("RUST_LOG", "trace"));

    assert_eq!(read(m.p("secret/leak/a/password")), VALUES[0]);
    assert!(read(m.p("secret/leak/b/nested")).contains(VALUES[1]));
    assert!(read(m.p("secret/leak/b/.env")).contains(VALUES[2]));
    assert!(read(m.p("secret/leak/b/.json")).contains(VALUES[1]));
    let _ = std::fs::read_dir(m.p("secret/leak/gone"));
    // Misses, refreshes after the TTL, and errors log too.
    let _ = std::fs::metadata(m.p("secret/leak/a/nope"));
    std::thread::sleep(std::time::Duration::from_millis(1200));
    assert_eq!(read(m.p("secret/leak/a/password")), VALUES[0]);

    let log = m.log_text();
    // Every request was logged (by path), so the check below has teeth.
    assert!(
        log.contains("DEBUG") && log.contains("secret/data/leak/a"),
        "the log is not verbose: {log}"
    );
    assert!(!log.contains(TOKEN), "token in the log");
    assert!(!log.contains("LEAKCHECK-TOKEN"), "token in the log");
    for v in VALUES {
        assert!(!log.contains(v), "value {v} in the log");
    }
    assert!(!log.contains("LEAKCHECK-VALUE"), "a value in the log");
}

/// `--log-format json` at trace level: every line is one JSON object, and
/// none holds the token or a value.
#[test]
fn json_log_is_json_lines_without_token_or_value() {
    const JTOKEN: &str = "JSONLEAK-TOKEN-5d1e8b2a";
    const JVALUES: [&str; 2] = ["JSONLEAK-VALUE-a1b2", "JSONLEAK-VALUE-env-c3d4"];
    let b = Bao::shared();
    b.cli(&["token", "create", &format!("-id={JTOKEN}"), "-policy=root"]);
    b.put(
        "secret",
        "jsonleak/app",
        json!({"password": JVALUES[0], "API_KEY": JVALUES[1]}),
    );
    let m = Mount::with(
        b,
        MountOpts::new(JTOKEN)
            .arg("--log-format=json")
            .arg("--ttl=1s")
            .env("RUST_LOG", "trace"),
    );
    assert_eq!(read(m.p("secret/jsonleak/app/password")), JVALUES[0]);
    assert!(read(m.p("secret/jsonleak/app/.env")).contains(JVALUES[1]));
    assert!(read(m.p("secret/jsonleak/app/.json")).contains(JVALUES[0]));
    let _ = std::fs::metadata(m.p("secret/jsonleak/app/missing"));

    let log = m.log_text();
    let mut levels = std::collections::BTreeSet::new();
    for (i, line) in log.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("line {} is not JSON ({e}): {line:?}", i + 1));
        let obj = v
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {line}"));
        for k in ["timestamp", "level", "target", "fields"] {
            assert!(obj.contains_key(k), "no {k}: {line}");
        }
        levels.insert(obj["level"].as_str().unwrap().to_string());
    }
    assert!(log.lines().count() >= 5, "{log}");
    // Verbose enough for the checks below to have teeth.
    assert!(
        levels.contains("DEBUG") || levels.contains("TRACE"),
        "{levels:?}"
    );
    assert!(log.contains("secret/data/jsonleak/app"), "{log}");
    assert!(!log.contains("JSONLEAK-TOKEN"), "token in the JSON log");
    assert!(!log.contains("JSONLEAK-VALUE"), "a value in the JSON log");
}

#[cfg(feature = "root_tests")]
#[test]
fn other_users_cannot_read_the_mount() {
    let b = Bao::shared();
    b.put("secret", "perm/x", json!({"k": "owner-only"}));

    // Default: FUSE lets only the mounting user in.
    let m = Mount::new(b, ROOT_TOKEN);
    let f = m.p("secret/perm/x/k");
    assert_eq!(read(&f), "owner-only");
    let (ok, out) = as_nobody_cat(&f);
    assert!(!ok && out.contains("Permission denied"), "{out}");
    drop(m);

    // Let others past FUSE: the default modes (0400/0500) still keep them out.
    let m = Mount::with(b, MountOpts::new(ROOT_TOKEN).arg("--allow-other"));
    let f = m.p("secret/perm/x/k");
    let (ok, out) = as_nobody_cat(&f);
    assert!(!ok && out.contains("Permission denied"), "{out}");
    drop(m);

    // The control: with world-readable modes the same command does read,
    // so the two refusals above were the mount's doing.
    let m = Mount::with(
        b,
        MountOpts::new(ROOT_TOKEN)
            .arg("--allow-other")
            .arg("--file-mode=0444")
            .arg("--dir-mode=0555"),
    );
    let (ok, out) = as_nobody_cat(&m.p("secret/perm/x/k"));
    assert!(ok && out == "owner-only", "{out}");
}

#[test]
fn memory_is_locked_unless_no_mlock() {
    let b = Bao::shared();
    let m = Mount::new(b, ROOT_TOKEN);
    let locked = status_kib(m.pid(), "VmLck");
    assert!(locked > 1024, "VmLck {locked} kB");
    let m = Mount::with(b, MountOpts::new(ROOT_TOKEN).arg("--no-mlock"));
    assert_eq!(status_kib(m.pid(), "VmLck"), 0);
}

/// `vaultfs mount --address https://user:password@...`: the daemon's
/// command line, which every user can read, holds no password; nor do its
/// log and `vaultfs status`. The same for each other spelling the URL
/// parser reads as userinfo (one slash, three, a backslash for a slash).
#[test]
fn address_userinfo_stays_out_of_the_daemons_command_line() {
    let b = Bao::shared();
    b.put("secret", "argv/direct", json!({"k": "direct-value"}));
    let h = Home::new();
    let mp = h.path().join("mnt");
    let hostport = b.addr.strip_prefix("http://").unwrap();
    for sep in ["//", "/", "///", "/\\", "\\/"] {
        let addr = format!("http:{sep}vaultfs:PASSWORD-5e0a@{hostport}");
        let o = run(
            h.cmd(
                b,
                ROOT_TOKEN,
                &["mount", "--address", &addr, mp.to_str().unwrap()],
            ),
            40,
        );
        assert_ok(&o, &addr);
        assert_eq!(read(mp.join("secret/argv/direct/k")), "direct-value");
        let pid = h.pid(&mp);
        let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        let cmdline = String::from_utf8_lossy(&raw);
        assert!(cmdline.contains("mount"), "{cmdline:?}");
        assert!(!cmdline.contains("PASSWORD-5e0a"), "{addr}: {cmdline:?}");
        assert!(!h.log().contains("PASSWORD-5e0a"), "{}", h.log());
        let o = run(h.cmd(b, ROOT_TOKEN, &["status", mp.to_str().unwrap()]), 20);
        assert_ok(&o, "status");
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("***@") && !out.contains("PASSWORD"), "{out}");
        let o = run(h.cmd(b, ROOT_TOKEN, &["unmount", mp.to_str().unwrap()]), 20);
        assert_ok(&o, "unmount");
    }
}

/// An address that is no valid Vault address is refused with a message
/// that never shows what precedes its `@`, however it is spelled.
#[test]
fn a_refused_address_hides_its_userinfo() {
    let b = Bao::shared();
    let h = Home::new();
    let mp = h.path().join("mnt");
    std::fs::create_dir_all(&mp).unwrap();
    let hostport = b.addr.strip_prefix("http://").unwrap();
    for addr in [
        format!("//u:hunter2@{hostport}"),
        "https//u:hunter2@vault:8200".to_string(),
        "/u:hunter2@h".to_string(),
        "u:hunter2@h:1".to_string(),
        format!("ftp://u:hunter2@{hostport}"),
        format!("http://u:hunter2@{hostport}/v1"),
    ] {
        let o = run(
            h.cmd(
                b,
                ROOT_TOKEN,
                &["mount", "--address", &addr, mp.to_str().unwrap()],
            ),
            20,
        );
        assert!(!o.status.success(), "{addr}");
        let err = stderr(&o);
        assert!(err.contains("invalid Vault address"), "{addr}: {err}");
        assert!(
            !err.contains("hunter2") && !err.contains("u:"),
            "{addr}: {err}"
        );
        assert!(!is_mounted(&mp));
    }
}

/// `vaultfs status` prints a mount path with newline, tab, ESC, backslash
/// and space as the mount table does (`\012`, `\011`, `\033`, `\134`,
/// `\040`): one line per mount, and no byte of a path reaches the terminal
/// as a command. Its errors do the same.
#[test]
fn status_escapes_mount_paths_as_the_mount_table() {
    let b = Bao::shared();
    let h = Home::new();
    let mp = h.path().join("a b\tc\nd\x1b[31me\\f");
    let shown = format!("{}/a\\040b\\011c\\012d\\033[31me\\134f", h.path().display());
    let o = run(h.cmd(b, ROOT_TOKEN, &["mount", mp.to_str().unwrap()]), 40);
    assert_ok(&o, "mount");
    for args in [vec!["status"], vec!["status", mp.to_str().unwrap()]] {
        let o = run(h.cmd(b, ROOT_TOKEN, &args), 20);
        assert_ok(&o, "status");
        let out = String::from_utf8_lossy(&o.stdout);
        // Other tests' mounts may be listed too (status alone lists every
        // mount of this user): ours is one line of its own.
        let ours: Vec<_> = out
            .lines()
            .filter(|l| l.contains(&*h.path().to_string_lossy()))
            .collect();
        assert_eq!(ours.len(), 1, "{args:?}: {out:?}");
        assert!(
            ours[0].starts_with(&format!("{shown}: live (pid ")),
            "{out:?}"
        );
        assert!(!out.contains('\x1b') && !out.contains('\t'), "{out:?}");
    }
    assert!(!h.log().contains('\x1b'), "{:?}", h.log());
    let o = run(h.cmd(b, ROOT_TOKEN, &["unmount", mp.to_str().unwrap()]), 20);
    assert_ok(&o, "unmount");
    let o = run(h.cmd(b, ROOT_TOKEN, &["status", mp.to_str().unwrap()]), 20);
    assert_fails(&o, &format!("nothing is mounted at {shown}"));
}

/// The daemon's own user cannot read its environment (where an address
/// with userinfo goes) or its memory: the daemon is not dumpable, so
/// /proc/PID/{environ,mem} belong to root. Its command line, which every
/// user reads, holds no password. As a normal user through fusermount3.
#[cfg(feature = "root_tests")]
#[test]
fn the_daemons_environment_and_memory_are_closed_to_its_own_user() {
    let b = Bao::shared();
    let addr = b.addr.replacen("://", "://vaultfs:PASSWORD-0b7d@", 1);
    let o = run_as_nobody(
        r#"
as_user "$BIN" mount --no-mlock --address "$USERINFO_ADDR" || exit 21
P=$(head -n1 "$PIDS"/*.pid)
echo "cmdline=$(as_user cat /proc/$P/cmdline | tr '\0' ' ')"
as_user cat /proc/$P/environ >/dev/null 2>&1 && echo environ-read
as_user head -c1 /proc/$P/mem >/dev/null 2>&1 && echo mem-read
as_user "$BIN" unmount || exit 23
echo done
"#,
        &[
            ("ADDR", &b.addr),
            ("TOKEN", ROOT_TOKEN),
            ("USERINFO_ADDR", &addr),
        ],
        60,
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.ends_with("done\n"),
        "{out}{}",
        stderr(&o)
    );
    assert!(out.contains("cmdline=") && out.contains(" mount "), "{out}");
    assert!(!out.contains("PASSWORD"), "{out}");
    assert!(
        !out.contains("environ-read") && !out.contains("mem-read"),
        "{out}"
    );
}

/// A path that is not UTF-8 anywhere in the mount table (a tmpfs another
/// user mounted, say) hides no vaultfs mount: `status` lists the live mount,
/// a second `mount` at it is refused, `unmount` unmounts. A vaultfs mount
/// point that is itself not UTF-8 works the same, shown escaped.
#[cfg(feature = "root_tests")]
#[test]
fn a_mount_path_that_is_not_utf8_hides_no_mount() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use vaultfs::testing::mountpoint::Shown;
    let b = Bao::shared();
    b.put("secret", "odd/s", json!({"k": "odd-value"}));
    let h = Home::new();
    let odd = h.path().join(OsStr::from_bytes(b"tm\xe9"));
    std::fs::create_dir(&odd).unwrap();
    let o = Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&odd)
        .output()
        .unwrap();
    assert_ok(&o, "mount tmpfs");
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(self.0).status();
        }
    }
    let _tmpfs = Unmount(&odd);
    for mp in [
        h.path().join("plain"),
        h.path().join(OsStr::from_bytes(b"mnt\xff\n")),
    ] {
        std::fs::create_dir_all(&mp).unwrap();
        let vaultfs = |args: &[&str], secs| {
            let mut c = h.cmd(b, ROOT_TOKEN, args);
            c.arg(&mp);
            run(c, secs)
        };
        assert_ok(&vaultfs(&["mount"], 40), "mount");
        assert_eq!(read(mp.join("secret/odd/s/k")), "odd-value");
        let live = format!("{}: live (pid ", Shown(&mp));
        let all = run(h.cmd(b, ROOT_TOKEN, &["status"]), 20);
        assert_ok(&all, "status");
        let one = vaultfs(&["status"], 20);
        assert_ok(&one, "status M");
        for o in [&all, &one] {
            let out = String::from_utf8_lossy(&o.stdout);
            assert!(
                out.lines().any(|l| l.starts_with(&live)),
                "{live:?} in {out:?}"
            );
        }
        let again = vaultfs(&["mount"], 20);
        assert!(!again.status.success(), "a second mount stacked");
        assert!(
            stderr(&again).contains("already mounted"),
            "{}",
            stderr(&again)
        );
        assert_eq!(mount_count(&mp), 1);
        assert_ok(&vaultfs(&["unmount"], 20), "unmount");
        assert!(!is_mounted(&mp));
    }
}
