//! What the binary answers to command lines it refuses, and the help it
//! prints, with no server and no mount: one line on stderr, the right exit
//! status, nothing mounted and no value echoed.

use std::path::Path;
use std::process::Command;

use crate::harness::*;

/// A bad --since, --secret or --exe is a usage error (status 2), one line.
#[test]
fn bad_filters_are_usage_errors() {
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("audit.jsonl");
    std::fs::write(&f, "").unwrap();
    for (flag, value, want) in [
        ("--since", "bogus", "invalid --since"),
        ("--secret", "[", "invalid --secret glob"),
        ("--exe", "[", "invalid --exe glob"),
    ] {
        let mut c = Command::new(vaultfs_bin());
        c.args(["audit", "--file"]).arg(&f).args([flag, value]);
        assert_exit(&run(c, 20), vaultfs::testing::exit::Exit::Usage, want);
    }
}

/// mount(8)'s `-o` string may hold a secret typed into the wrong option or
/// as a bare word: each refusal is one line that names the option's key
/// and never repeats a value, or a bare word that is no option name; the
/// same under `-s`, where such words are ignored with a warning.
#[test]
fn mount_options_are_refused_without_echoing_a_value() {
    use std::os::unix::process::CommandExt;
    let h = Home::new();
    let mp = h.path().join("m");
    std::fs::create_dir_all(&mp).unwrap();
    let mp = mp.to_str().unwrap();
    let helper = |arg0: &str, args: &[&str]| {
        let mut c = Command::new(vaultfs_bin());
        c.arg0(arg0)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin");
        run(c, 20)
    };
    for (opt, key) in [
        ("ttl=hunter2", Some("ttl")),
        ("uid=hunter2", Some("uid")),
        ("max_retries=hunter2", Some("max_retries")),
        ("log_format=hunter2", Some("log_format")),
        ("hvs.hunter2", None),
        ("token:hunter2", None),
    ] {
        let opts = format!("kv=secret,{opt}");
        for (arg0, args) in [
            ("mount.fuse.vaultfs", vec!["vaultfs", mp, "-o", &opts]),
            ("vaultfs", vec!["vaultfs", mp, "-o", &opts]),
        ] {
            let o = helper(arg0, &args);
            assert!(!o.status.success(), "{arg0} {opt}");
            let err = stderr(&o);
            assert_eq!(err.trim_end().lines().count(), 1, "{arg0} {opt}: {err}");
            assert!(!err.contains("unter2"), "{arg0} {opt}: {err}");
            if let Some(key) = key {
                assert!(err.contains(key), "{arg0} {opt}: {err}");
            }
        }
        if key.is_none() {
            let o = helper(
                "mount.fuse.vaultfs",
                &["vaultfs", mp, "-s", "-f", "-o", &opts],
            );
            assert!(!stderr(&o).contains("unter2"), "-s {opt}: {}", stderr(&o));
        }
    }
    assert!(!is_mounted(Path::new(mp)));
}

/// `vaultfs mount --help` and its man page say what the signals do.
#[test]
fn help_and_man_page_name_the_signals() {
    let mut c = std::process::Command::new(vaultfs_bin());
    c.args(["mount", "--help"]);
    let help = run(c, 20);
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    assert!(help.contains("SIGHUP drops every cached answer"), "{help}");
    let dir = tempfile::tempdir().unwrap();
    let mut c = std::process::Command::new(vaultfs_bin());
    c.args(["man", "--dir"]).arg(dir.path());
    let o = run(c, 20);
    assert_ok(&o, "vaultfs man --dir");
    let page = read(dir.path().join("vaultfs-mount.1"));
    assert!(
        page.contains("SIGHUP") && page.contains("reopens the log file"),
        "{page}"
    );
}

/// Several addresses: vaultfs takes one. A list (comma or space separated,
/// as some tools accept) is refused with one line before anything is
/// mounted; a cluster is reached through one name that a load balancer or
/// DNS points at healthy nodes (docs/reliability.md, "HA clusters").
#[test]
fn several_addresses_are_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    for list in [
        "http://127.0.0.1:8200,http://127.0.0.1:8202",
        "http://127.0.0.1:8200 http://127.0.0.1:8202",
    ] {
        let mut cmd = vaultfs_cmd_at(list, "unused");
        cmd.arg("mount").arg("--foreground").arg(dir.path());
        let o = run(cmd, 20);
        assert_fails(&o, "invalid Vault address");
        assert!(!is_mounted(dir.path()));
    }
}
