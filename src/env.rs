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
    use std::ffi::CStr;
    // SAFETY: getpwuid_r writes into the buffers we own; pw_dir is checked
    // non-null and points into `buf`, which outlives its use.
    unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let rc = libc::getpwuid_r(
            libc::geteuid(),
            &mut pw,
            buf.as_mut_ptr(),
            buf.len(),
            &mut out,
        );
        if rc != 0 || out.is_null() || pw.pw_dir.is_null() {
            return None;
        }
        let dir = CStr::from_ptr(pw.pw_dir).to_str().ok()?;
        dir.starts_with('/').then(|| dir.to_string())
    }
}
