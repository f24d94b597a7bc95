//! Shell completions and man pages, from one source with the long `--help`
//! so they cannot drift: the flags from the clap definition in `cli/mod.rs`,
//! the environment from its table in `cli/help.rs` (which `--help` lists
//! with the exit statuses), the files and examples from the tables below;
//! the man pages give each its own section. `vaultfs completions SHELL`, `vaultfs man
//! [--dir DIR]`; scripts/package puts both in the release archive, and
//! tests/e2e/assets.rs checks they name every flag, every environment variable
//! the code reads and every exit status.

use std::io::{self, Write};
use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::roff::{bold, italic, roman, Roff};

use crate::cli::{Cli, CompletionShell, ENVIRONMENT};
use crate::exit::Exit;
use crate::mount_helper;

/// Files vaultfs reads or writes, and what they hold.
pub const FILES: &[(&str, &str)] = &[
    (
        "~/.vault-token",
        "The token when neither --token-file, VAULT_TOKEN nor BAO_TOKEN gives one (as `vault \
         login` writes it). Re-read when it changes.",
    ),
    ("~/secrets", "The default mount point (created if missing)."),
    (
        "$XDG_RUNTIME_DIR/vaultfs/PATH.pid",
        "The daemon's pid and Vault address, locked (flock) for the daemon's life; PATH is the \
         mount point without its leading /, percent-encoded. Without XDG_RUNTIME_DIR: \
         $XDG_STATE_HOME/vaultfs/run/, else ~/.local/state/vaultfs/run/.",
    ),
    (
        "$XDG_RUNTIME_DIR/vaultfs/PATH.lock",
        "Held by `vaultfs mount` until the mount is live, so parallel mounts of one mount \
         point mount once. Beside the pid file.",
    ),
    (
        "$XDG_STATE_HOME/vaultfs/vaultfs.log",
        "The background daemon's log (--log-file; default ~/.local/state/vaultfs/vaultfs.log), \
         mode 0600, renamed to vaultfs.log.1 past --log-max-size. Never holds a token or a \
         secret value.",
    ),
    (
        "/etc/fstab",
        "Mounts of type fuse.vaultfs: see mount.fuse.vaultfs(8).",
    ),
    (
        "/sbin/mount.fuse.vaultfs",
        "A link to vaultfs, for mount(8): see mount.fuse.vaultfs(8).",
    ),
    (
        "/dev/fuse",
        "The FUSE device; without it vaultfs exits with status 5.",
    ),
];

/// (what it does, the command line).
pub const EXAMPLES: &[(&str, &str)] = &[
    (
        "Mount at ~/secrets with the token from `vault login`; returns once the mount is live:",
        "vaultfs mount --address https://vault.example:8200",
    ),
    (
        "Read a secret's field as a file, and a secret as a .env file:",
        "cat ~/secrets/secret/app/db/password; . ~/secrets/secret/app/db.env",
    ),
    (
        "Only some KV mounts, a token written by Vault Agent, in the foreground (systemd):",
        "vaultfs mount /srv/secrets --kv secret --token-file /run/vault/token --foreground",
    ),
    (
        "Wait in a start-up script until another script's mount is live:",
        "vaultfs status --wait 60s",
    ),
    (
        "Unmount and wait for the daemon to exit:",
        "vaultfs unmount",
    ),
    (
        "Tell a rejected token (4) from an unreachable Vault (3) in a script:",
        "vaultfs mount || case $? in 3) echo retry later ;; 4) vault login ;; esac",
    ),
];

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

/// The clap definition as the man pages render it: the --help footer is
/// given its own sections there instead.
fn command() -> clap::Command {
    let mut cmd = Cli::command()
        .disable_help_subcommand(true)
        .after_long_help(None::<&str>);
    // As clap_mangen::generate_to builds it, so subcommand pages are named
    // vaultfs-mount etc.
    cmd.build();
    cmd
}

/// vaultfs(1), the top-level page.
pub fn man_page(out: &mut dyn Write) -> io::Result<()> {
    let cmd = command();
    clap_mangen::Man::new(cmd.clone()).render(out)?;
    sections(&cmd, true).to_writer(out)
}

/// vaultfs.1, a page per subcommand (vaultfs-mount.1, ...) and
/// mount.fuse.vaultfs.8 in `dir`.
pub fn man_pages(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let cmd = command();
    let write = |name: &str, page: &dyn Fn(&mut dyn Write) -> io::Result<()>| {
        let mut f = io::BufWriter::new(std::fs::File::create(dir.join(name))?);
        page(&mut f)?;
        f.flush()
    };
    write("vaultfs.1", &man_page)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let man = clap_mangen::Man::new(sub.clone());
        write(&man.get_filename(), &|out| {
            man.render(out)?;
            sections(sub, sub.get_name() == "mount").to_writer(out)
        })?;
    }
    write("mount.fuse.vaultfs.8", &mount_helper_page)
}

/// The sections clap_mangen does not write: ENVIRONMENT, FILES and EXAMPLES
/// for the top and mount pages, EXIT STATUS and SEE ALSO for all.
fn sections(cmd: &clap::Command, full: bool) -> Roff {
    let mut r = Roff::new();
    if full {
        environment(&mut r);
        files(&mut r);
    }
    exit_status(&mut r);
    if full && cmd.get_name() == "vaultfs" {
        examples(&mut r);
    }
    see_also(&mut r);
    r
}

fn environment(r: &mut Roff) {
    r.control("SH", ["ENVIRONMENT"]);
    r.text([roman(
        "Where a VAULT_ and a BAO_ name are given, a flag wins, then VAULT_, then BAO_; an \
         empty value counts as unset.",
    )]);
    for (names, what) in ENVIRONMENT {
        r.control("TP", []);
        r.text([bold(names.join(", "))]);
        r.text([roman(*what)]);
    }
}

fn files(r: &mut Roff) {
    r.control("SH", ["FILES"]);
    for (path, what) in FILES {
        r.control("TP", []);
        r.text([italic(*path)]);
        r.text([roman(*what)]);
    }
}

fn exit_status(r: &mut Roff) {
    r.control("SH", ["EXIT STATUS"]);
    for e in Exit::ALL {
        r.control("TP", []);
        r.text([bold(e.code().to_string())]);
        r.text([roman(e.meaning())]);
    }
    r.text([roman(
        "A background mount exits with the status of the daemon's failure. A panic exits 101.",
    )]);
}

fn examples(r: &mut Roff) {
    r.control("SH", ["EXAMPLES"]);
    for (what, line) in EXAMPLES {
        r.control("PP", []);
        r.text([roman(*what)]);
        r.control("IP", []);
        r.text([bold(*line)]);
    }
}

fn see_also(r: &mut Roff) {
    r.control("SH", ["SEE ALSO"]);
    r.text([roman(
        "vaultfs(1), vaultfs-mount(1), vaultfs-unmount(1), vaultfs-status(1), \
         mount.fuse.vaultfs(8), mount(8), fstab(5), fusermount3(1), vault(1)",
    )]);
}

/// mount.fuse.vaultfs(8): `mount -t fuse.vaultfs` and /etc/fstab, with
/// every -o option from the mount subcommand's flags (the same spelling
/// `mount_helper` accepts) and its help text.
fn mount_helper_page(out: &mut dyn Write) -> io::Result<()> {
    let cmd = command();
    let mount = cmd.find_subcommand("mount").expect("the mount subcommand");
    let version = cmd.get_version().unwrap_or_default();
    let mut r = Roff::new();
    let title = format!("vaultfs {version}");
    r.control("TH", ["mount.fuse.vaultfs", "8", "", title.as_str()]);
    r.control("SH", ["NAME"]);
    r.text([roman(
        "mount.fuse.vaultfs - mount Vault / OpenBao KV secrets with mount(8) and /etc/fstab",
    )]);
    r.control("SH", ["SYNOPSIS"]);
    r.text([
        bold("mount -t fuse.vaultfs"),
        roman(" [-fsnv] "),
        italic("SOURCE DIR"),
        roman(" [-o "),
        italic("OPTIONS"),
        roman("]"),
    ]);
    r.control("br", []);
    r.text([
        italic("SOURCE DIR"),
        bold(" fuse.vaultfs "),
        italic("OPTIONS"),
        roman(" 0 0  (in /etc/fstab)"),
    ]);
    r.control("SH", ["DESCRIPTION"]);
    r.text([roman(
        "mount(8) runs /sbin/mount.fuse.vaultfs (a link to vaultfs) for the type fuse.vaultfs, \
         or, without it, fuse3's mount.fuse3, which runs vaultfs found on PATH. Either way \
         vaultfs mounts as `vaultfs mount DIR` would, in the background, and mount(8) returns \
         once the mount is live; on failure it prints one line and mounts nothing. umount(8) \
         unmounts, and the daemon then exits. SOURCE is a free label (vaultfs by convention). \
         mount(8) runs helpers with a clean environment: give the address and token file as \
         options. -f checks the options and mounts nothing; -s (sloppy) drops unknown options \
         with a warning instead of failing.",
    )]);
    r.control("SH", ["OPTIONS"]);
    r.text([roman(
        "Every flag of vaultfs-mount(1) is an option: its long name in snake_case, as \
         name=value, or bare for a switch. kv= may be repeated.",
    )]);
    for (option, takes_value) in mount_helper::options() {
        let arg = mount
            .get_arguments()
            .find(|a| a.get_long() == Some(&option.replace('_', "-")));
        let help = arg.and_then(|a| a.get_help()).map(|h| h.to_string());
        let value = arg
            .and_then(|a| a.get_value_names())
            .and_then(|v| v.first())
            .map_or("VALUE".to_string(), |v| v.to_string());
        r.control("TP", []);
        if takes_value {
            r.text([bold(format!("{option}=")), italic(value)]);
        } else {
            r.text([bold(option.clone())]);
        }
        r.text([roman(help.unwrap_or_default())]);
    }
    r.control("SS", ["Generic options"]);
    r.text([roman(format!(
        "Accepted and ignored (the mount is always read-only, nosuid, nodev and noexec): {}; \
         and x-* and comment=, which are for mount(8) and systemd.",
        mount_helper::IGNORED.join(", ")
    ))]);
    environment(&mut r);
    files(&mut r);
    exit_status(&mut r);
    r.control("SH", ["EXAMPLES"]);
    r.text([roman(
        "/etc/fstab, with a token kept fresh by Vault Agent; _netdev orders it after the network:",
    )]);
    r.control("IP", []);
    r.text([bold(
        "vaultfs /srv/secrets fuse.vaultfs address=https://vault:8200,token_file=/run/vault/token,kv=secret,allow_other,_netdev 0 0",
    )]);
    r.control("PP", []);
    r.text([roman("The helper link, once (as root):")]);
    r.control("IP", []);
    r.text([bold(
        "ln -s \"$(command -v vaultfs)\" /sbin/mount.fuse.vaultfs",
    )]);
    r.control("PP", []);
    r.text([roman("Check an fstab line without mounting:")]);
    r.control("IP", []);
    r.text([bold("mount -f -v /srv/secrets")]);
    see_also(&mut r);
    r.to_writer(out)
}
