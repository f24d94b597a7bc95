//! `--max-requests auto` against a real rate limit: an OpenBao
//! `sys/quotas/rate-limit` quota on a private dev server. A cold walk must
//! read every file (no read fails because of vaultfs's own burst), and the
//! requests the quota refuses must stay few: a refusal holds every request
//! back instead of making room for the next refusal.

use crate::harness::*;
use serde_json::json;

const FOLDERS: usize = 2;
const SECRETS: usize = 40;

/// A cold parallel read of the whole mount; (output, the daemon's log).
fn walk(bao: &Bao, max_requests: &str) -> (String, String) {
    let m = Mount::with(
        bao,
        MountOpts::new(ROOT_TOKEN)
            .arg("--max-requests")
            .arg(max_requests)
            .env("RUST_LOG", "vaultfs=debug"),
    );
    let o = std::process::Command::new("bash")
        .arg("-c")
        .arg("find \"$1\" -type f -name b -print0 | xargs -0 -P 8 -n 4 cat")
        .arg("_")
        .arg(m.p("secret"))
        .output()
        .unwrap();
    let log = m.log_text();
    // find's own errors (a folder it could not list) do not change xargs'
    // status: any line on stderr is a failed read.
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "--max-requests {max_requests}: a read failed: {}\n{log}",
        String::from_utf8_lossy(&o.stderr)
    );
    (String::from_utf8(o.stdout).unwrap(), log)
}

fn lines(log: &str, what: &str) -> usize {
    log.lines().filter(|l| l.contains(what)).count()
}

#[test]
fn auto_reads_everything_under_a_rate_limit_quota_without_a_burst_of_refusals() {
    let bao = Bao::start(false);
    for f in 0..FOLDERS {
        for s in 0..SECRETS {
            bao.put_http(
                "secret",
                &format!("f{f}/s{s}"),
                json!({"b": format!("<{f}-{s}>")}),
            );
        }
    }
    // 20 requests a second for the whole server: a cold walk of the 80
    // secrets takes several seconds whatever the client does.
    bao.cli(&[
        "write",
        "sys/quotas/rate-limit/walk",
        "rate=20",
        "interval=1s",
    ]);

    let mut refused = Vec::new();
    for max in ["32", "auto"] {
        let t = std::time::Instant::now();
        let (out, log) = walk(&bao, max);
        let took = t.elapsed();
        for f in 0..FOLDERS {
            for s in 0..SECRETS {
                assert!(
                    out.contains(&format!("<{f}-{s}>")),
                    "--max-requests {max}: f{f}/s{s} missing"
                );
            }
        }
        assert_eq!(lines(&log, "Vault request failed"), 0, "{log}");
        let retried = lines(&log, "retrying Vault request");
        let answered = lines(&log, "Vault answered");
        eprintln!(
            "--max-requests {max}: {answered} answered, {retried} refused and retried, {took:?}"
        );
        refused.push((retried, answered));
        // Let the quota's bucket fill again before the next walk.
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
    let ((fixed, _), (auto, answered)) = (refused[0], refused[1]);
    // The quota bites: a fixed 32 in flight is refused again and again.
    assert!(fixed > 0, "the quota never refused a request");
    // With auto, a refusal holds every request back: fewer refusals than a
    // fixed limit's, and never more than the answers (each refusal costs
    // the server at most what an answer does).
    assert!(
        auto < fixed && auto <= answered,
        "auto: {auto} refusals for {answered} answers; a fixed 32: {fixed} refusals"
    );
}
