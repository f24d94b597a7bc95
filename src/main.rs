use std::process::ExitCode;

use clap::Parser;
use vaultfs::cli::{Cli, Command};
use vaultfs::{daemon, logging};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Mount(args) => {
            if let Err(e) = logging::init(args.log_file.as_deref()) {
                eprintln!("vaultfs: cannot open log: {e}");
                return ExitCode::from(2);
            }
            daemon::run_foreground(args)
        }
        Command::Unmount(_) => Err(daemon::MountError::Other(
            "unmount: not implemented yet".into(),
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vaultfs: {e}");
            ExitCode::FAILURE
        }
    }
}
