//! Reading the environment: one injectable reader type, so settings can be
//! resolved from a test's map as from the process.

use std::path::PathBuf;

/// An environment reader: the process's ([`process`]) or a test's.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// `VAULT_<name>`, else `BAO_<name>`; empty counts as unset.
pub fn vault_env(env: Env<'_>, name: &str) -> Option<String> {
    ["VAULT_", "BAO_"]
        .iter()
        .find_map(|p| env(&format!("{p}{name}")).filter(|v| !v.is_empty()))
}

pub fn home(env: Env<'_>) -> Option<PathBuf> {
    env("HOME").filter(|h| !h.is_empty()).map(PathBuf::from)
}

/// The process environment; `HOME`, when unset or empty, from the password
/// database: mount(8) runs its helpers with a clean environment, and the
/// log, pid and token defaults then still have a home (no kept crate reads
/// the password database, hence libc).
pub fn process(k: &str) -> Option<String> {
    let v = std::env::var(k).ok();
    if k == "HOME" && v.as_deref().is_none_or(str::is_empty) {
        return passwd_home();
    }
    v
}

fn passwd_home() -> Option<String> {
    let user = nix::unistd::User::from_uid(nix::unistd::geteuid()).ok()??;
    let dir = user.dir.into_os_string().into_string().ok()?;
    dir.starts_with('/').then_some(dir)
}
