//! Shell completions and man pages, generated from the clap definition in
//! `cli/mod.rs` at run time, so they cannot drift from the flags: `vaultfs
//! completions SHELL`, `vaultfs man [--dir DIR]` (scripts/package puts both
//! in the release archive; tests/assets.rs checks they name every flag).

use std::io::{self, Write};
use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::{Cli, CompletionShell};

/// The completion script for `shell`. Built in memory first: clap_complete
/// panics on a write error (a closed pipe, `| head`).
pub fn completions(shell: CompletionShell, out: &mut dyn Write) -> io::Result<()> {
    let shell = match shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "vaultfs", &mut buf);
    out.write_all(&buf)
}

/// vaultfs(1), the top-level page.
pub fn man_page(out: &mut dyn Write) -> io::Result<()> {
    // As clap_mangen::generate_to builds it, so both give the same page.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut buf)?;
    out.write_all(&buf)
}

/// vaultfs.1 and a page per subcommand (vaultfs-mount.1, ...) in `dir`.
pub fn man_pages(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(Cli::command(), dir)
}
