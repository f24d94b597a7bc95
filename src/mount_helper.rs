//! `mount -t fuse.vaultfs` and `/etc/fstab`: the two ways mount(8) starts a
//! FUSE filesystem's program, turned into `vaultfs mount` arguments.
//!
//! - `mount.fuse.vaultfs SOURCE DIR [-sfnv] [-o OPTS] [-t TYPE]`: mount(8)'s
//!   own helper for type `fuse.vaultfs`, when vaultfs is linked as
//!   `/sbin/mount.fuse.vaultfs` (found by the name it was run as). mount(8)
//!   runs it with a clean environment (no `HOME`, no `VAULT_*`).
//! - `vaultfs SOURCE DIR -o OPTS`: what fuse3's `mount.fuse3` runs for type
//!   `fuse.vaultfs` when there is no such helper (vaultfs found on `PATH`),
//!   and for `-t fuse` with the source `/path/to/vaultfs#SOURCE`. Told from a
//!   mistyped subcommand by its shape: a first word that is no subcommand, a
//!   second word, and an `-o`.
//!
//! Each `-o` option is a long flag of `vaultfs mount` in snake_case
//! (`token_file=PATH`, `allow_other`, `kv=PATH` repeatable), taken from the
//! clap definition so that no flag lacks one. mount(8)'s generic options are
//! accepted and ignored: the mount is always read-only, nosuid, nodev and
//! noexec whatever they say, and `auto`, `nofail`, `_netdev`, `x-*` are for
//! mount(8) and systemd. SOURCE is a free label (`vaultfs` by convention).

use std::ffi::{OsStr, OsString};
use std::path::Path;

use clap::CommandFactory;

use crate::cli::Cli;

/// mount(8)'s and FUSE's generic options: meaningless for vaultfs, or
/// already in force (`ro`, `nosuid`, `nodev`, `noexec`, `default_permissions`).
pub const IGNORED: &[&str] = &[
    "rw",
    "ro",
    "defaults",
    "auto",
    "noauto",
    "user",
    "nouser",
    "users",
    "owner",
    "group",
    "nofail",
    "_netdev",
    "dev",
    "nodev",
    "suid",
    "nosuid",
    "exec",
    "noexec",
    "async",
    "sync",
    "dirsync",
    "atime",
    "noatime",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "diratime",
    "nodiratime",
    "lazytime",
    "nolazytime",
    "silent",
    "loud",
    "default_permissions",
];

/// Options that would put a token on a command line, refused by name.
const TOKEN_KEYS: &[&str] = &["token", "vault_token", "bao_token"];

/// How a message names an option key it does not know: by the key when it
/// looks like an option's name, else not at all, since a bare word in an
/// `-o` string may be a mistyped secret (`-o hvs.…`).
fn shown_key(key: &str) -> String {
    let name = key.len() <= 32
        && key.starts_with(|c: char| c == '_' || c.is_ascii_lowercase())
        && key
            .chars()
            .all(|c| c == '_' || c.is_ascii_lowercase() || c.is_ascii_digit());
    if name {
        format!("{key:?}")
    } else {
        "(not shown: it does not look like an option name)".to_string()
    }
}

/// One line for a `-o` value that `vaultfs mount` refuses: the option's key,
/// never its value (which may be a secret mistyped into the wrong option).
pub fn refused_value(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    let key = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => arg
            .trim_start_matches('-')
            .split([' ', '='])
            .next()
            .unwrap_or_default()
            .replace('-', "_"),
        _ => String::new(),
    };
    let what = e.kind().as_str().unwrap_or("invalid options");
    if key.is_empty() {
        format!("mount options refused ({what}; values are not shown): see `vaultfs mount --help`")
    } else {
        format!(
            "mount option {key} refused ({what}; its value is not shown): see `vaultfs mount \
             --help` for --{}",
            key.replace('_', "-")
        )
    }
}

/// A mount(8) invocation, as `vaultfs mount` arguments.
#[derive(Debug, PartialEq, Eq)]
pub struct HelperCall {
    /// `vaultfs mount --flag=value ... -- DIR`, for [`Cli`].
    pub argv: Vec<OsString>,
    /// `-f`: check the options, mount nothing.
    pub fake: bool,
    /// The keys of unknown options dropped under `-s` (sloppy), as a
    /// message may show them (see `shown_key`).
    pub ignored: Vec<String>,
}

/// The `-o` spellings: every long flag of `vaultfs mount`, in snake_case,
/// with whether it takes a value.
pub fn options() -> Vec<(String, bool)> {
    let cmd = Cli::command();
    let mount = cmd.find_subcommand("mount").expect("the mount subcommand");
    mount
        .get_arguments()
        .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
        .filter_map(|a| {
            let long = a.get_long()?;
            Some((long.replace('-', "_"), a.get_action().takes_values()))
        })
        .collect()
}

fn subcommand_names() -> Vec<String> {
    let cmd = Cli::command();
    let mut v: Vec<String> = cmd
        .get_subcommands()
        .flat_map(|s| {
            std::iter::once(s.get_name().to_string()).chain(s.get_all_aliases().map(String::from))
        })
        .collect();
    v.push("help".into());
    v
}

/// `Some` when `argv` is one of mount(8)'s forms (see the module doc).
pub fn parse(argv: &[OsString]) -> Option<Result<HelperCall, String>> {
    let prog = Path::new(argv.first()?).file_name().unwrap_or_default();
    let as_helper = prog.as_encoded_bytes().starts_with(b"mount.fuse");
    if !as_helper {
        let first = argv.get(1)?.to_str()?;
        let second = argv.get(2)?;
        if first.starts_with('-')
            || second.as_encoded_bytes().starts_with(b"-")
            || subcommand_names().iter().any(|s| s == first)
            || !argv[3..]
                .iter()
                .any(|a| a.as_encoded_bytes().starts_with(b"-o"))
        {
            return None;
        }
    }
    Some(translate(&argv[1..]))
}

fn translate(args: &[OsString]) -> Result<HelperCall, String> {
    let mut positional: Vec<&OsStr> = Vec::new();
    let mut opts: Vec<String> = Vec::new();
    let (mut fake, mut sloppy) = (false, false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let Some(s) = a.to_str() else {
            if a.as_encoded_bytes().starts_with(b"-") {
                return Err(format!("argument {a:?} is not UTF-8"));
            }
            positional.push(a);
            continue;
        };
        let mut value_of = |flag: &str, inline: &str| -> Result<String, String> {
            if !inline.is_empty() {
                return Ok(inline.to_string());
            }
            it.next()
                .and_then(|v| v.to_str())
                .map(String::from)
                .ok_or_else(|| format!("{flag} needs a UTF-8 value"))
        };
        if let Some(rest) = s.strip_prefix("-o") {
            opts.push(value_of("-o", rest)?);
        } else if let Some(rest) = s.strip_prefix("-t") {
            // fuse.vaultfs, or fuse with the program in SOURCE: nothing to do.
            value_of("-t", rest)?;
        } else if s.starts_with("-N") {
            return Err("mount namespaces (-N) are not supported".into());
        } else if s.len() > 1 && s.starts_with('-') && s[1..].chars().all(|c| "sfnvw".contains(c)) {
            // -s sloppy, -f fake; -n (no mtab), -v (verbose), -w (rw): nothing to do.
            sloppy |= s.contains('s');
            fake |= s.contains('f');
        } else if s.starts_with('-') {
            return Err(format!("unknown argument {s:?} from mount(8)"));
        } else {
            positional.push(a);
        }
    }
    let dir = match positional[..] {
        [_source, dir] => dir,
        _ => {
            return Err(format!(
                "expected SOURCE and MOUNTPOINT from mount(8), got {} words",
                positional.len()
            ))
        }
    };

    let known = options();
    let mut argv: Vec<OsString> = vec!["vaultfs".into(), "mount".into()];
    let mut ignored = Vec::new();
    for opt in opts
        .iter()
        .flat_map(|o| o.split(','))
        .filter(|o| !o.is_empty())
    {
        let (key, value) = match opt.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (opt, None),
        };
        if IGNORED.contains(&key) || key.starts_with("x-") || key == "comment" {
            continue;
        }
        // Whatever follows `=` may be a secret: messages name the key alone.
        if TOKEN_KEYS.contains(&key) {
            return Err(format!(
                "mount option {key} is refused (its value is not shown): mount options are \
                 readable by every user; put the token in a file only its owner can read and \
                 pass token_file=PATH"
            ));
        }
        let flag = format!("--{}", key.replace('_', "-"));
        match (known.iter().find(|(k, _)| k == key), value) {
            (Some((_, true)), Some(v)) => argv.push(format!("{flag}={v}").into()),
            (Some((_, true)), None) => {
                return Err(format!("mount option {key} needs a value ({key}=...)"))
            }
            (Some((_, false)), None) => argv.push(flag.into()),
            (Some((_, false)), Some(_)) => {
                return Err(format!("mount option {key} takes no value"))
            }
            (None, _) if sloppy => ignored.push(shown_key(key)),
            (None, _) => {
                return Err(format!(
                    "unknown mount option {}{}: vaultfs's options are the long flags of \
                     `vaultfs mount` in snake_case (e.g. token_file=PATH, kv=PATH, allow_other)",
                    shown_key(key),
                    if value.is_some() {
                        " (its value is not shown)"
                    } else {
                        ""
                    }
                ))
            }
        }
    }
    argv.push("--".into());
    argv.push(dir.to_os_string());
    Ok(HelperCall {
        argv,
        fake,
        ignored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Command;
    use clap::Parser;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn mount_args(argv: &[&str]) -> crate::cli::MountArgs {
        let call = parse(&os(argv)).expect("a mount(8) form").unwrap();
        match Cli::try_parse_from(call.argv).unwrap().command {
            Command::Mount(m) => *m,
            c => panic!("{c:?}"),
        }
    }

    #[test]
    fn fstab_line_of_the_docs() {
        // What mount(8) passes for the fstab line in docs/lifecycle.md.
        let opts = "ro,noexec,nosuid,nodev,address=https://vault:8200,token_file=/run/vault/token,\
                    kv=secret,kv=team/kv,allow_other,_netdev,nofail,user,x-systemd.requires=vault-agent.service";
        for argv0 in ["/sbin/mount.fuse.vaultfs", "/usr/local/bin/vaultfs"] {
            let m = mount_args(&[argv0, "vaultfs", "/srv/secrets", "-o", opts]);
            assert_eq!(m.mountpoint.as_deref(), Some(Path::new("/srv/secrets")));
            assert_eq!(m.address.as_ref().unwrap().0, "https://vault:8200");
            assert_eq!(m.token_file.as_deref(), Some(Path::new("/run/vault/token")));
            assert_eq!(m.kv, ["secret", "team/kv"]);
            assert!(m.allow_other && !m.foreground);
        }
        let m = mount_args(&[
            "mount.fuse.vaultfs",
            "vaultfs",
            "/mnt/x",
            "-n",
            "-ottl=5s,file_mode=0440,no_scan",
            "-t",
            "fuse.vaultfs",
        ]);
        assert_eq!(m.ttl, std::time::Duration::from_secs(5));
        assert_eq!((m.file_mode, m.no_scan), (0o440, true));
    }

    #[test]
    fn every_mount_flag_has_an_o_spelling() {
        let known = options();
        assert!(known.len() > 25, "{known:?}");
        for (key, takes_value) in &known {
            let opt = if *takes_value {
                format!("{key}=x")
            } else {
                key.clone()
            };
            let call = parse(&os(&["mount.fuse.vaultfs", "s", "/m", "-o", &opt]))
                .unwrap()
                .unwrap_or_else(|e| panic!("{opt}: {e}"));
            let flag = format!("--{}", key.replace('_', "-"));
            assert!(
                call.argv
                    .iter()
                    .any(|a| a.to_str().unwrap().split('=').next() == Some(flag.as_str())),
                "{opt} → {:?}",
                call.argv
            );
        }
        for key in [
            "token_file",
            "kv",
            "allow_other",
            "log_file",
            "address",
            "audit_log",
        ] {
            assert!(known.iter().any(|(k, _)| k == key), "{key}");
        }
    }

    #[test]
    fn bad_options_are_refused_unless_sloppy() {
        let call = |v: &[&str]| parse(&os(v)).unwrap();
        let e = call(&["mount.fuse.vaultfs", "s", "/m", "-o", "bogus=s3cr3t"]).unwrap_err();
        assert!(e.contains("\"bogus\"") && !e.contains("s3cr3t"), "{e}");
        for key in TOKEN_KEYS {
            let opt = format!("kv=a,{key}=hvs.s3cr3t");
            for sloppy in ["-s", "-n"] {
                let e = call(&["mount.fuse.vaultfs", "s", "/m", sloppy, "-o", &opt]).unwrap_err();
                assert!(
                    e.contains("token_file=PATH") && !e.contains("s3cr3t"),
                    "{e}"
                );
            }
        }
        assert!(call(&["mount.fuse.vaultfs", "s", "/m", "-o", "ttl"]).is_err());
        assert!(call(&["mount.fuse.vaultfs", "s", "/m", "-o", "allow_other=1"]).is_err());
        assert!(call(&["mount.fuse.vaultfs", "s", "/m", "-N", "1"]).is_err());
        assert!(call(&["mount.fuse.vaultfs", "/m"]).is_err());
        let c = call(&[
            "mount.fuse.vaultfs",
            "s",
            "/m",
            "-sf",
            "-o",
            "bogus,kv=a,pw=s3cr3t",
        ])
        .unwrap();
        assert!(c.fake);
        assert_eq!(c.ignored, ["\"bogus\"", "\"pw\""]);
        // A bare word that is no option name may be a mistyped secret.
        for word in ["hvs.hunter2", "token:hunter2", "Hunter2", "s.hunter2/x"] {
            let opt = format!("kv=a,{word}");
            let e = call(&["mount.fuse.vaultfs", "s", "/m", "-o", &opt]).unwrap_err();
            assert!(!e.contains("unter2") && e.contains("not shown"), "{e}");
            let c = call(&["mount.fuse.vaultfs", "s", "/m", "-s", "-o", &opt]).unwrap();
            assert!(
                c.ignored.iter().all(|k| !k.contains("unter2")),
                "{:?}",
                c.ignored
            );
        }
        // A refused flag stays refused through -o.
        let m = mount_args(&["mount.fuse.vaultfs", "s", "/m", "-o", "allow_root"]);
        assert!(m.check().is_err());
    }

    /// A value `vaultfs mount` refuses is named by its option, in one line,
    /// never repeated: it may be a secret typed into the wrong option.
    #[test]
    fn refused_values_are_one_line_without_the_value() {
        for opt in [
            "ttl=hunter2",
            "uid=hunter2",
            "max_retries=hunter2",
            "log_format=hunter2",
            "file_mode=hunter2",
        ] {
            let call = parse(&os(&["mount.fuse.vaultfs", "s", "/m", "-o", opt]))
                .unwrap()
                .unwrap();
            let e = Cli::try_parse_from(call.argv).unwrap_err();
            let m = refused_value(&e);
            let key = opt.split('=').next().unwrap();
            assert!(m.contains(&format!("mount option {key} ")), "{m}");
            assert!(!m.contains("hunter2") && !m.contains('\n'), "{m}");
        }
    }

    #[test]
    fn ordinary_command_lines_are_not_taken_for_mount() {
        for v in [
            &["vaultfs", "mount", "/m", "-o", "x"][..],
            &["vaultfs", "umount", "/m", "-o"],
            &["vaultfs", "help", "mount", "-o"],
            &["vaultfs", "moutn", "/m"],
            &["vaultfs", "--version"],
            &["vaultfs"],
        ] {
            assert!(parse(&os(v)).is_none(), "{v:?}");
        }
        // mount.fuse3's form.
        assert!(parse(&os(&["vaultfs", "vaultfs", "/m", "-o", "rw"])).is_some());
    }
}
