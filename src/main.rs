use std::process::ExitCode;

use clap::Parser;
use vaultfs::cli::{Cli, Command};
use vaultfs::daemon;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Mount(args) => daemon::mount(args),
        Command::Unmount(args) => daemon::unmount(args),
        Command::Status(args) => daemon::status(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vaultfs: {e}");
            ExitCode::FAILURE
        }
    }
}
