//! The daemon's command line holds no secret. Every user can read any
//! process's `/proc/PID/cmdline` for the process's whole life, while
//! `/proc/PID/environ` is readable by its owner alone (and by root only once
//! the daemon has turned off dumping). The only flag that can carry a secret
//! is `--address` with userinfo (`https://user:password@host`, and the
//! other spellings the URL parser reads so: `http:/u:p@h`, `http:///u:p@h`,
//! `http:\u:p@h`…); mount(8)'s `-o` string can carry anything (a mistyped
//! option under `-s` included). So before anything runs, vaultfs executes
//! itself again, same process, when its arguments came from mount(8) or
//! name an address holding `@` anywhere (or bytes that are not UTF-8): with
//! the `vaultfs mount` arguments alone and such an address moved to
//! `VAULT_ADDR`, where a flag's address would have won anyway. Deciding on
//! `@` alone needs no parser that could disagree with the client's.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;

/// What to execute instead of the process's own arguments.
#[derive(Debug, PartialEq, Eq)]
pub struct Reexec {
    /// `mount ...` (the arguments after the program's name).
    pub args: Vec<OsString>,
    /// An address with userinfo, for `VAULT_ADDR`.
    pub address: Option<OsString>,
}

/// The `vaultfs mount` arguments `argv` (program name first) with every
/// `--address` that may hold userinfo taken out, or `None` when there is none.
/// A token after `--` is a mount point, never a flag.
fn take_secret_address(argv: &[OsString]) -> (Vec<OsString>, Option<OsString>) {
    let has_userinfo = |v: &OsStr| v.to_str().is_none_or(|s| s.contains('@'));
    let mut out = Vec::with_capacity(argv.len());
    let mut address = None;
    let mut it = argv.iter().skip(1);
    while let Some(a) = it.next() {
        if a == "--" {
            out.push(a.clone());
            out.extend(it.by_ref().cloned());
            break;
        }
        // The last one wins, as with clap.
        let joined = a
            .as_encoded_bytes()
            .strip_prefix(b"--address=")
            .map(OsStr::from_bytes);
        if a == "--address" {
            match it.next() {
                Some(v) if has_userinfo(v) => address = Some(v.clone()),
                v => out.extend(std::iter::once(a).chain(v).cloned()),
            }
        } else if let Some(v) = joined.filter(|v| has_userinfo(v)) {
            address = Some(v.to_os_string());
        } else {
            out.push(a.clone());
        }
    }
    (out, address)
}

/// How to run `vaultfs mount` with `mount_argv` (program name first; from
/// mount(8) when `from_helper`) so that no secret is in the arguments, or
/// `None` when the process's own arguments already hold none.
pub fn plan(mount_argv: &[OsString], from_helper: bool) -> Option<Reexec> {
    let (args, address) = take_secret_address(mount_argv);
    (from_helper || address.is_some()).then_some(Reexec { args, address })
}

/// Replace this process with `vaultfs` run as `r` says. Returns only on
/// failure.
pub fn exec(r: Reexec) -> std::io::Error {
    let program = std::env::current_exe().unwrap_or_else(|_| "vaultfs".into());
    // /proc/self/exe: the very binary running, even if its path has since
    // been replaced by an upgrade.
    let mut cmd = std::process::Command::new("/proc/self/exe");
    cmd.arg0(program).args(&r.args);
    if let Some(a) = r.address {
        cmd.env("VAULT_ADDR", a);
    }
    cmd.exec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn userinfo_addresses_leave_the_arguments() {
        let p = plan(
            &os(&[
                "vaultfs",
                "mount",
                "--address",
                "https://u:pw@h:1",
                "--kv=a",
                "--address=https://v:pw2@h:2",
                "--",
                "--address=https://x:y@z",
            ]),
            false,
        )
        .unwrap();
        assert_eq!(
            p.args,
            os(&["mount", "--kv=a", "--", "--address=https://x:y@z"])
        );
        assert_eq!(p.address.unwrap(), "https://v:pw2@h:2");
        let p = plan(
            &os(&["vaultfs", "mount", "--address", "https://u@h"]),
            false,
        )
        .unwrap();
        assert_eq!(
            (p.args, p.address.unwrap()),
            (os(&["mount"]), "https://u@h".into())
        );
    }

    proptest::proptest! {
        /// However the URL parser is made to read userinfo (any scheme
        /// case, any run of `/` and `\\`, `@` in the path too), an address
        /// with `@` never stays in the arguments, in either flag form.
        #[test]
        fn no_spelling_of_userinfo_stays(
            scheme in "(?i)https?",
            seps in "[/\\\\]{0,4}",
            user in "[a-z0-9%:._~!$&'()*+,;=-]{0,12}",
            host in "(127\\.0\\.0\\.1|h|\\[::1\\])(:[0-9]{1,5})?",
            path in "(/[a-z@]{0,6}){0,2}",
            helper in proptest::bool::ANY,
            joined in proptest::bool::ANY,
        ) {
            let addr = format!("{scheme}:{seps}{user}hunter2@{host}{path}");
            let mut argv = os(&["vaultfs", "mount"]);
            if joined {
                argv.push(format!("--address={addr}").into());
            } else {
                argv.extend(os(&["--address", &addr]));
            }
            argv.push("/m".into());
            let p = plan(&argv, helper).unwrap();
            proptest::prop_assert!(p.args.iter().all(|a| !a.to_string_lossy().contains("hunter2")));
            proptest::prop_assert_eq!(p.address, Some(addr.into()));
        }
    }

    #[test]
    fn plain_addresses_stay_and_need_no_reexec() {
        let argv = os(&["vaultfs", "mount", "--address", "https://h:1/a", "/m"]);
        assert_eq!(plan(&argv, false), None);
        let p = plan(&argv, true).unwrap();
        assert_eq!(p.args, argv[1..]);
        assert_eq!(p.address, None);
    }
}
