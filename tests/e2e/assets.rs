//! Shell completions and man pages come from the binary (`vaultfs
//! completions SHELL`, `vaultfs man`): every subcommand and every visible
//! long flag is in each completion script and in its subcommand's man page.

use std::process::Command;

use clap::CommandFactory;
use vaultfs::testing::cli::Cli;

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

/// The environment variables the code reads, found in the sources: every
/// `VAULT_*`/`BAO_*` name spelled out, the names `vault_env`/`path_env`
/// look up under both prefixes, and every name read through an `env(..)`
/// reader or `std::env::var*`.
fn env_vars_read() -> std::collections::BTreeSet<String> {
    fn walk(dir: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    let mut sources = Vec::new();
    walk(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut sources,
    );
    let mut vars = std::collections::BTreeSet::new();
    let quoted = |s: &str| -> Option<String> {
        let name: String = s
            .strip_prefix('"')?
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || *c == '_')
            .collect();
        (!name.is_empty() && s[1 + name.len()..].starts_with('"')).then_some(name)
    };
    for src in &sources {
        for (i, _) in src.match_indices('"') {
            let Some(name) = quoted(&src[i..]) else {
                continue;
            };
            let before = &src[..i];
            if name.starts_with("VAULT_") || name.starts_with("BAO_") {
                vars.insert(name);
            } else if before.ends_with("vault_env(env, ") || before.ends_with("path_env(") {
                vars.insert(format!("VAULT_{name}"));
                vars.insert(format!("BAO_{name}"));
            } else if ["env(", "var(", "var_os("]
                .iter()
                .any(|r| before.ends_with(r))
            {
                vars.insert(name);
            }
        }
        if src.contains("EnvFilter::try_from_default_env") {
            vars.insert("RUST_LOG".into());
        }
    }
    for v in [
        "VAULT_ADDR",
        "BAO_TOKEN",
        "VAULT_CAPATH",
        "XDG_RUNTIME_DIR",
        "SSL_CERT_FILE",
    ] {
        assert!(vars.contains(v), "the source scan missed {v}: {vars:?}");
    }
    vars
}

/// The text of section `name` of a roff page.
fn section<'a>(page: &'a str, name: &str) -> &'a str {
    let head = format!(".SH \"{name}\"\n");
    let head2 = format!(".SH {name}\n");
    let start = page
        .find(&head)
        .map(|i| i + head.len())
        .or_else(|| page.find(&head2).map(|i| i + head2.len()))
        .unwrap_or_else(|| panic!("no {name} section in {:.120}", page));
    let rest = &page[start..];
    &rest[..rest.find("\n.SH ").unwrap_or(rest.len())]
}

fn roff(s: &str) -> String {
    s.replace('-', "\\-")
}

#[test]
fn man_pages_and_help_document_environment_files_and_exit_statuses() {
    use vaultfs::testing::exit::Exit;
    let dir = tempfile::tempdir().unwrap();
    vaultfs(&["man", "--dir", dir.path().to_str().unwrap()]);
    let page = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    let help = vaultfs(&["--help"]);
    let vars = env_vars_read();
    for name in ["vaultfs.1", "vaultfs-mount.1", "mount.fuse.vaultfs.8"] {
        let p = page(name);
        let env = section(&p, "ENVIRONMENT");
        for v in &vars {
            assert!(env.contains(&roff(v)), "{name}: ENVIRONMENT lacks {v}");
        }
        let files = section(&p, "FILES");
        for f in [".vault-token", ".pid", ".lock", "vaultfs.log", "/etc/fstab"] {
            assert!(files.contains(&roff(f)), "{name}: FILES lacks {f}");
        }
    }
    for v in &vars {
        assert!(help.contains(v.as_str()), "--help lacks {v}");
    }
    for name in [
        "vaultfs.1",
        "vaultfs-mount.1",
        "vaultfs-unmount.1",
        "vaultfs-status.1",
        "mount.fuse.vaultfs.8",
    ] {
        let p = page(name);
        let exit = section(&p, "EXIT STATUS");
        for e in Exit::ALL {
            let entry = format!(".TP\n\\fB{}\\fR\n{}", e.code(), roff(e.meaning()));
            assert!(exit.contains(&entry), "{name}: EXIT STATUS lacks {e:?}");
        }
    }
    for e in Exit::ALL {
        assert!(
            help.contains(&format!("  {}  {}", e.code(), e.meaning())),
            "--help lacks exit status {e:?}"
        );
    }
    // docs/lifecycle.md's table, written by hand, lists the same codes.
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/lifecycle.md"),
    )
    .unwrap();
    let table = &doc[doc
        .find("## Exit status")
        .expect("docs/lifecycle.md: Exit status")..];
    for e in Exit::ALL {
        assert!(
            table.contains(&format!("\n| {} | ", e.code())),
            "lifecycle.md lacks {e:?}"
        );
    }
    let top = page("vaultfs.1");
    let examples = section(&top, "EXAMPLES");
    for sub in ["mount", "status", "unmount"] {
        assert!(
            examples.contains(&format!("vaultfs {sub}")),
            "EXAMPLES lacks {sub}"
        );
    }
}

/// mount.fuse.vaultfs(8) names every -o option mount(8) can pass, as the
/// helper spells it, and the generic options it ignores.
#[test]
fn mount_helper_page_documents_every_mount_option() {
    let dir = tempfile::tempdir().unwrap();
    vaultfs(&["man", "--dir", dir.path().to_str().unwrap()]);
    let p = std::fs::read_to_string(dir.path().join("mount.fuse.vaultfs.8")).unwrap();
    assert!(p.contains(".TH mount.fuse.vaultfs 8"), "{p:.200}");
    let options = section(&p, "OPTIONS");
    let all = vaultfs::testing::mount_helper::options();
    assert!(all.len() > 25, "{all:?}");
    for (o, takes_value) in all {
        let want = if takes_value {
            format!("\\fB{}=\\fR", roff(&o))
        } else {
            format!("\\fB{}\\fR", roff(&o))
        };
        assert!(options.contains(&want), "mount.fuse.vaultfs.8 lacks {o}");
    }
    for g in vaultfs::testing::mount_helper::IGNORED {
        assert!(options.contains(&roff(g)), "mount.fuse.vaultfs.8 lacks {g}");
    }
}
