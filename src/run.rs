//! The program: what `vaultfs` runs, from its arguments to its exit status.

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::daemon::MountError;
use crate::{assets, cmdline, daemon, mount_helper};
use clap::Parser;

/// The `vaultfs` command: its own arguments, or mount(8)'s when it is
/// started as `mount.fuse.vaultfs`.
pub fn main() -> ExitCode {
    let argv: Vec<_> = std::env::args_os().collect();
    // `helper_argv`: the `vaultfs mount` arguments mount(8)'s were made into.
    let (cli, helper_argv) = match mount_helper::parse(&argv) {
        None => (Cli::parse(), None),
        // Started by mount(8): see src/mount_helper.rs.
        Some(Err(e)) => return fail(MountError::Usage(e)),
        Some(Ok(call)) => {
            for opt in &call.ignored {
                eprintln!("vaultfs: ignoring unknown mount option {opt} (sloppy mount)");
            }
            let cli = match Cli::try_parse_from(&call.argv) {
                Ok(cli) => cli,
                Err(e) => return fail(MountError::Usage(mount_helper::refused_value(&e))),
            };
            if call.fake {
                return match &cli.command {
                    Command::Mount(args) => args
                        .check()
                        .map_or_else(|e| fail(e.into()), |()| ExitCode::SUCCESS),
                    _ => ExitCode::SUCCESS,
                };
            }
            (cli, Some(call.argv))
        }
    };
    // No secret may stay in the daemon's arguments: see src/cmdline.rs.
    let mount_argv = helper_argv.as_deref().unwrap_or(&argv);
    if let (Command::Mount(_), Some(r)) = (
        &cli.command,
        cmdline::plan(mount_argv, helper_argv.is_some()),
    ) {
        let e = cmdline::exec(r);
        return fail(MountError::Other(format!(
            "cannot run vaultfs again without the secret in its arguments: {e}"
        )));
    }
    let result = match &cli.command {
        Command::Mount(args) => daemon::mount(args),
        Command::Unmount(args) => daemon::unmount(args),
        Command::Status(args) => daemon::status(args),
        Command::Audit(args) => daemon::audit(args).map_err(MountError::from),
        Command::Completions { shell } => assets::completions(*shell, &mut std::io::stdout())
            .map_err(|e| MountError::Other(format!("cannot write the completions: {e}"))),
        Command::Man { dir: Some(dir) } => {
            assets::man_pages(dir).map_err(|e| MountError::Other(format!("{}: {e}", dir.display())))
        }
        Command::Man { dir: None } => assets::man_page(&mut std::io::stdout().lock())
            .map_err(|e| MountError::Other(format!("cannot write the man page: {e}"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// One line on stderr, and the status docs/lifecycle.md lists for it.
fn fail(e: MountError) -> ExitCode {
    eprintln!("vaultfs: {e}");
    e.exit().into()
}
