use std::process::ExitCode;

use clap::Parser;
use vaultfs::cli::{Cli, Command};
use vaultfs::daemon::MountError;
use vaultfs::exit::Exit;
use vaultfs::{assets, daemon, mount_helper};

fn main() -> ExitCode {
    let argv: Vec<_> = std::env::args_os().collect();
    let cli = match mount_helper::parse(&argv) {
        None => Cli::parse(),
        // Started by mount(8): see src/mount_helper.rs.
        Some(Err(e)) => return fail(MountError::Usage(e)),
        Some(Ok(call)) => {
            for opt in &call.ignored {
                eprintln!("vaultfs: ignoring unknown mount option {opt:?} (sloppy mount)");
            }
            let cli = Cli::try_parse_from(&call.argv).unwrap_or_else(|e| e.exit());
            if call.fake {
                return match &cli.command {
                    Command::Mount(args) => args
                        .check()
                        .map_or_else(|e| fail(e.into()), |()| ExitCode::SUCCESS),
                    _ => ExitCode::SUCCESS,
                };
            }
            cli
        }
    };
    let result = match &cli.command {
        Command::Mount(args) => daemon::mount(args),
        Command::Unmount(args) => daemon::unmount(args),
        Command::Status(args) => daemon::status(args),
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
    Exit::of(&e).into()
}
