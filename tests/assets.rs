//! Shell completions and man pages come from the binary (`vaultfs
//! completions SHELL`, `vaultfs man`): every subcommand and every visible
//! long flag is in each completion script and in its subcommand's man page.

use std::process::Command;

use clap::CommandFactory;
use vaultfs::cli::Cli;

fn vaultfs(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_vaultfs"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "vaultfs {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// (subcommand, its visible long flags), from the clap definition.
fn flags() -> Vec<(String, Vec<String>)> {
    let cmd = Cli::command();
    let subs: Vec<_> = cmd
        .get_subcommands()
        .map(|s| {
            let longs: Vec<String> = s
                .get_arguments()
                .filter(|a| !a.is_hide_set())
                .filter_map(|a| a.get_long().map(String::from))
                .filter(|l| l != "help")
                .collect();
            (s.get_name().to_string(), longs)
        })
        .collect();
    assert!(
        subs.iter()
            .any(|(n, f)| n == "mount" && f.len() > 25 && f.contains(&"token-file".into())),
        "{subs:?}"
    );
    subs
}

#[test]
fn completions_name_every_subcommand_and_flag() {
    let subs = flags();
    for shell in ["bash", "zsh", "fish"] {
        let script = vaultfs(&["completions", shell]);
        for (sub, longs) in &subs {
            assert!(script.contains(sub.as_str()), "{shell}: no {sub}");
            for l in longs {
                // fish writes `-l token-file`, the others `--token-file`.
                assert!(
                    script.contains(&format!("--{l}")) || script.contains(&format!("-l {l}")),
                    "{shell} completion lacks {sub} --{l}"
                );
            }
        }
    }
    let o = Command::new(env!("CARGO_BIN_EXE_vaultfs"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!o.status.success());
}

#[test]
fn man_pages_document_every_subcommand_and_flag() {
    let dir = tempfile::tempdir().unwrap();
    vaultfs(&["man", "--dir", dir.path().to_str().unwrap()]);
    let page = |name: &str| {
        let p = dir.path().join(name);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    let top = page("vaultfs.1");
    assert!(top.contains(".TH vaultfs 1"), "{top:.200}");
    // `vaultfs man` prints the same top page.
    assert_eq!(vaultfs(&["man"]), top);
    for (sub, longs) in flags() {
        assert!(top.contains(&sub), "vaultfs.1 does not list {sub}");
        let man = page(&format!("vaultfs-{sub}.1"));
        for l in longs {
            // roff escapes every `-`.
            let roff = format!("\\-\\-{}", l.replace('-', "\\-"));
            assert!(man.contains(&roff), "vaultfs-{sub}.1 lacks --{l}");
        }
    }
    // The mount page tells how fstab spells the flags.
    assert!(page("vaultfs-mount.1").contains("token_file=PATH"));
}
