//! What caching must not change, and the request counts it promises,
//! counted on the server's side with a file audit device on a private
//! OpenBao dev server.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::*;
use serde_json::json;

/// A private dev server whose requests are logged to an audit file.
struct Audited {
    bao: Bao,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn audited() -> Audited {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let cfg = dir.path().join("audit.hcl");
    std::fs::write(
        &cfg,
        format!(
            "audit \"file\" \"t\" {{\n  options {{\n    file_path = \"{}\"\n  }}\n}}\n",
            log.display()
        ),
    )
    .unwrap();
    let bao = Bao::start_with(false, &[format!("-config={}", cfg.display())]);
    Audited {
        bao,
        log,
        _dir: dir,
    }
}

impl Audited {
    /// Wait until no request has been logged for a while; return the size.
    fn settle(&self) -> u64 {
        settled(|| std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0))
    }

    /// (operation, path) of every request logged between two offsets.
    fn requests(&self, from: u64, to: u64) -> Vec<(String, String)> {
        let all = std::fs::read(&self.log).unwrap();
        audit_requests(&all[from as usize..to as usize])
    }
}

fn seed_tree(bao: &Bao, folders: usize, secrets: usize) {
    for f in 0..folders {
        for s in 0..secrets {
            bao.put_http(
                "secret",
                &format!("f{f}/s{s}"),
                json!({"a": "1", "b": format!("{f}-{s}")}),
            );
        }
    }
}

fn count(reqs: &[(String, String)], op: &str, prefix: &str) -> usize {
    reqs.iter()
        .filter(|(o, p)| o == op && p.starts_with(prefix))
        .count()
}

fn run(shell: &str, dir: &Path) -> String {
    let o = Command::new("bash")
        .arg("-c")
        .arg(shell)
        .arg("_")
        .arg(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{shell}: {o:?}");
    String::from_utf8(o.stdout).unwrap()
}

/// The requests a cold walk costs, and that a warm one costs none.
/// `lists` and `scans` are the LISTs and SCANs expected; GETs are always one
/// per secret, and the mount table is read once.
fn check_walks(a: &Audited, opts: MountOpts, secrets: usize, lists: usize, scans: usize) {
    for walk in [
        "find \"$1\" -type f",
        "ls -lR \"$1\"",
        "grep -r x \"$1\"; true",
    ] {
        // From before the mount: what mounting costs counts too.
        let start = a.settle();
        let m = Mount::with(&a.bao, opts.clone());
        let out = run(walk, m.path());
        assert!(!out.is_empty() || walk.starts_with("grep"), "{walk}");
        let mid = a.settle();
        let cold = a.requests(start, mid);
        let of = |op: &str| -> Vec<_> { cold.iter().filter(|(o, _)| o == op).collect() };
        assert_eq!(of("list").len(), lists, "{walk}: LISTs: {:?}", of("list"));
        assert_eq!(of("scan").len(), scans, "{walk}: SCANs: {:?}", of("scan"));
        assert_eq!(
            count(&cold, "read", "secret/data/"),
            secrets,
            "{walk}: one GET per secret: {cold:?}"
        );
        let others: Vec<_> = cold
            .iter()
            .filter(|(o, p)| !(o == "list" || o == "scan" || p.starts_with("secret/data/")))
            .collect();
        assert_eq!(
            others
                .iter()
                .filter(|(_, p)| p.starts_with("sys/internal/ui/mounts"))
                .count(),
            1,
            "{walk}: the mount table once: {cold:?}"
        );
        assert!(
            others
                .iter()
                .all(|(_, p)| p.starts_with("sys/internal/ui/mounts")
                    || p == "auth/token/lookup-self"),
            "{walk}: only the mount table and the token check besides: {others:?}"
        );
        // The same walk again, within the TTL: nothing reaches Vault.
        run(walk, m.path());
        let end = a.settle();
        assert_eq!(a.requests(mid, end), Vec::new(), "{walk} warm");
    }
}

/// A cold walk costs one GET per secret and, for the folders, one SCAN of
/// the mount (OpenBao), or with `--no-scan` one LIST per folder and the
/// mount root.
#[test]
fn cold_walk_costs_one_scan_or_one_list_per_folder_and_one_get_per_secret() {
    let a = audited();
    let (folders, secrets) = (3, 6);
    seed_tree(&a.bao, folders, secrets);
    check_walks(&a, MountOpts::new(ROOT_TOKEN), folders * secrets, 0, 1);
    check_walks(
        &a,
        MountOpts::new(ROOT_TOKEN).arg("--no-scan"),
        folders * secrets,
        folders + 1,
        0,
    );

    // A token that may list but not scan: SCAN is refused once per mount,
    // then LIST as with --no-scan.
    let token = a.bao.token_with_policy(
        "list-no-scan",
        "path \"secret/metadata/*\" { capabilities = [\"list\", \"read\"] }\n\
         path \"secret/data/*\" { capabilities = [\"read\"] }\n",
        &[],
    );
    check_walks(
        &a,
        MountOpts::new(&token),
        folders * secrets,
        folders + 1,
        1,
    );

    // A cold `cat` fetches only its path: no prefetch on lookup.
    let m = Mount::new(&a.bao, ROOT_TOKEN);
    let start = a.settle();
    assert_eq!(read(m.p("secret/f1/s2/b")), "1-2");
    let reqs = a.requests(start, a.settle());
    assert_eq!(count(&reqs, "list", ""), 2, "{reqs:?}");
    assert_eq!(count(&reqs, "read", "secret/data/"), 1, "{reqs:?}");
}

/// Depth costs no requests: a walk of a tree five folders deep makes one
/// SCAN, no LIST, and one GET per secret (with LIST each level waits for the
/// one above; here nothing waits).
#[test]
fn deep_walk_costs_one_scan() {
    let a = audited();
    let mut secrets = 0;
    for top in ["x", "y"] {
        for leaf in 0..3 {
            a.bao.put_http(
                "secret",
                &format!("{top}/l2/l3/l4/l5/s{leaf}"),
                json!({"k": "v"}),
            );
            a.bao
                .put_http("secret", &format!("{top}/l2/l3/t{leaf}"), json!({"k": "v"}));
            secrets += 2;
        }
    }
    check_walks(&a, MountOpts::new(ROOT_TOKEN), secrets, 0, 1);
}

#[test]
fn large_folder_lists_whole_and_follows_changes() {
    let a = audited();
    let n = 700;
    for i in 0..n {
        a.bao
            .put_http("secret", &format!("big/s{i:04}"), json!({"k": "v"}));
    }
    let m = Mount::with(&a.bao, MountOpts::new(ROOT_TOKEN).arg("--ttl").arg("1s"));
    let want: Vec<String> = (0..n).map(|i| format!("s{i:04}")).collect();
    // Many readdir calls (offsets) per listing; the second from the kernel's cache.
    assert_eq!(names(m.p("secret/big")), want);
    assert_eq!(names(m.p("secret/big")), want);
    let out = run("ls -l \"$1\"/secret/big | wc -l", m.path());
    assert_eq!(
        out.trim(),
        (n + 1).to_string(),
        "total line + one per entry"
    );

    a.bao.put_http("secret", "big/zz-new", json!({"k": "v"}));
    wait_until("the new listing", Duration::from_secs(10), || {
        names(m.p("secret/big")).len() == n + 1
    });
    let now = names(m.p("secret/big"));
    assert_eq!(now.len(), n + 1);
    assert_eq!(now.last().map(String::as_str), Some("zz-new"));
    assert_eq!(read(m.p("secret/big/zz-new/k")), "v");
}

/// History costs requests only when used: a walk that reads every file
/// makes no metadata read and no versioned read; `.versions` is found
/// without a request, and listing it costs one metadata read.
#[test]
fn history_costs_requests_only_when_used() {
    let a = audited();
    for v in ["a", "b", "c"] {
        a.bao.put_http("secret", "h/s", json!({ "k": v }));
    }
    let m = Mount::new(&a.bao, ROOT_TOKEN);
    let start = a.settle();
    run("find \"$1\" -type f -exec cat {} + >/dev/null", m.path());
    let walk = a.requests(start, a.settle());
    assert_eq!(count(&walk, "read", "secret/data/"), 1, "{walk:?}");
    assert_eq!(count(&walk, "read", "secret/metadata/"), 0, "{walk:?}");

    let start = a.settle();
    assert!(m.p("secret/h/s/.versions").is_dir());
    assert_eq!(a.requests(start, a.settle()), Vec::new());
    assert_eq!(names(m.p("secret/h/s/.versions")), ["1", "2", "3"]);
    assert_eq!(read(m.p("secret/h/s/.versions/2/k")), "b");
    let used = a.requests(start, a.settle());
    assert_eq!(count(&used, "read", "secret/metadata/h/s"), 1, "{used:?}");
    assert_eq!(count(&used, "read", "secret/data/h/s"), 1, "{used:?}");
    assert_eq!(used.len(), 2, "{used:?}");
}
