//! Why FUSE refused to mount, said so that a user can act on it: no
//! `/dev/fuse`, a `/dev/fuse` this user cannot open, no `CAP_SYS_ADMIN`
//! within reach (a container's usual state), or `allow_other` without
//! `user_allow_other`. fusermount3's own words come first, on one line.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::unistd::{access, geteuid, getuid, AccessFlags};

/// CAP_SYS_ADMIN's bit in /proc/PID/status's capability masks.
const CAP_SYS_ADMIN: u32 = 21;

/// `source` (fuser's error, often fusermount3's stderr) on one line, with
/// what to do about it.
pub(super) fn explain(source: &io::Error) -> String {
    let text = source
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let dev = Path::new("/dev/fuse");
    let (uid, root) = (getuid(), geteuid().is_root());
    let hint = if !dev.exists() {
        "there is no /dev/fuse: FUSE is not available here (a container needs the device: \
         docker run --device /dev/fuse, or a Kubernetes device plugin)"
            .to_string()
    } else if text.contains("user_allow_other") {
        "--allow-other (allow_other) needs the line user_allow_other in /etc/fuse.conf, which \
         root writes; or mount without it"
            .to_string()
    } else if !accessible(dev) {
        let (mode, owner) = dev
            .metadata()
            .map(|m| (m.mode() & 0o7777, m.uid()))
            .unwrap_or_default();
        format!(
            "/dev/fuse (mode {mode:04o}, owner uid {owner}) cannot be opened for reading and \
             writing by uid {uid}: a container needs it passed in (docker run --device \
             /dev/fuse); on a host it is normally mode 0666"
        )
    } else if !has_cap(BOUNDING, CAP_SYS_ADMIN) {
        "the capability bounding set lacks CAP_SYS_ADMIN, so neither vaultfs nor the setuid \
         fusermount3 can mount: a container needs it (docker run --cap-add SYS_ADMIN; \
         Kubernetes: securityContext.capabilities.add: [SYS_ADMIN])"
            .to_string()
    } else if root && !has_cap(EFFECTIVE, CAP_SYS_ADMIN) {
        "this process runs as root without CAP_SYS_ADMIN (dropped by its service manager or \
         container): grant it (systemd: AmbientCapabilities=CAP_SYS_ADMIN)"
            .to_string()
    } else if source.raw_os_error() == Some(libc::EPERM) || text.contains("not permitted") {
        "mount(2) was refused although CAP_SYS_ADMIN is within reach: a seccomp or AppArmor \
         profile may forbid it (Docker's default one does: --security-opt apparmor=unconfined)"
            .to_string()
    } else {
        return text;
    };
    format!("{text} ({hint})")
}

/// Whether this user may open `dev` for reading and writing.
fn accessible(dev: &Path) -> bool {
    access(dev, AccessFlags::R_OK | AccessFlags::W_OK).is_ok()
}

const BOUNDING: &str = "CapBnd:";
const EFFECTIVE: &str = "CapEff:";

/// Whether `cap` is in the mask named `field` of /proc/self/status. An
/// unreadable mask counts as holding it: no hint rather than a wrong one.
fn has_cap(field: &str, cap: u32) -> bool {
    super::harden::cap_mask(field).is_none_or(|mask| mask & (1 << cap) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fusermount_words_stay_on_one_line() {
        let e = io::Error::other(
            "fusermount3: option allow_other only allowed if 'user_allow_other' is set in \
             /etc/fuse.conf\n",
        );
        let m = explain(&e);
        assert!(!m.contains('\n'), "{m}");
        if Path::new("/dev/fuse").exists() {
            assert!(m.contains("needs the line user_allow_other"), "{m}");
            assert!(!m.contains("installed"), "{m}");
        }
    }
}
