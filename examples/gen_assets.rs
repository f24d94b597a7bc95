//! Writes the release archive's shell completions and man pages, generated
//! from vaultfs's own clap definition so they cannot drift from the flags:
//!
//!     cargo run --example gen_assets -- OUTDIR
//!
//! OUTDIR/completions/{vaultfs.bash,_vaultfs,vaultfs.fish} and
//! OUTDIR/man/vaultfs.1 plus one page per subcommand (vaultfs-mount.1, ...).
//! Not part of the vaultfs binary; scripts/package runs it.

use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::Shell;
use vaultfs::cli::Cli;

fn main() -> std::io::Result<()> {
    let out = PathBuf::from(
        std::env::args_os()
            .nth(1)
            .expect("usage: gen_assets OUTDIR"),
    );
    let completions = out.join("completions");
    let man = out.join("man");
    std::fs::create_dir_all(&completions)?;
    std::fs::create_dir_all(&man)?;

    let mut cmd = Cli::command();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, "vaultfs", &completions)?;
    }
    // vaultfs.1 for the top level, vaultfs-mount.1 etc. for subcommands.
    clap_mangen::generate_to(Cli::command(), &man)?;
    Ok(())
}
