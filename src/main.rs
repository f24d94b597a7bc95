use std::process::ExitCode;

use clap::Parser;
use vaultfs::cli::{Cli, Command};
use vaultfs::{assets, audit, daemon, mount_helper};

fn main() -> ExitCode {
    let argv: Vec<_> = std::env::args_os().collect();
    let cli = match mount_helper::parse(&argv) {
        None => Cli::parse(),
        // Started by mount(8): see src/mount_helper.rs.
        Some(Err(e)) => return fail(e),
        Some(Ok(call)) => {
            for opt in &call.ignored {
                eprintln!("vaultfs: ignoring unknown mount option {opt:?} (sloppy mount)");
            }
            let cli = Cli::try_parse_from(&call.argv).unwrap_or_else(|e| e.exit());
            if call.fake {
                return match &cli.command {
                    Command::Mount(args) => args.check().map_or_else(fail, |()| ExitCode::SUCCESS),
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
        Command::Audit(args) => {
            audit::run(args).map_err(|e| daemon::MountError::Other(e.to_string()))
        }
        Command::Completions { shell } => assets::completions(*shell, &mut std::io::stdout())
            .map_err(|e| daemon::MountError::Other(format!("cannot write the completions: {e}"))),
        Command::Man { dir: Some(dir) } => assets::man_pages(dir)
            .map_err(|e| daemon::MountError::Other(format!("{}: {e}", dir.display()))),
        Command::Man { dir: None } => assets::man_page(&mut std::io::stdout().lock())
            .map_err(|e| daemon::MountError::Other(format!("cannot write the man page: {e}"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("vaultfs: {e}");
    ExitCode::FAILURE
}
