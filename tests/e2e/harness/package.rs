//! The release archive that `scripts/package` builds for this machine,
//! built once per test run (the package and coder modules).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub struct Package {
    /// The --out directory: the archive and SHA256SUMS.
    pub dir: PathBuf,
    pub archive: PathBuf,
    /// `vaultfs-<version>-<target>`, the archive's top directory.
    pub name: String,
    pub version: String,
}

/// `$VAULTFS_PACKAGE_TARGET`, else what scripts/package builds by default.
pub fn target() -> String {
    std::env::var("VAULTFS_PACKAGE_TARGET")
        .unwrap_or_else(|_| format!("{}-unknown-linux-musl", std::env::consts::ARCH))
}

/// Runs scripts/package into a directory of this test binary's own under
/// CARGO_TARGET_TMPDIR (cargo serialises the build itself).
pub fn package() -> &'static Package {
    static P: OnceLock<Package> = OnceLock::new();
    P.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let exe = std::env::current_exe().unwrap();
        // `coder-<hash>` → `coder`: one directory per test file, reused.
        let stem = exe.file_stem().unwrap().to_string_lossy().to_string();
        let who = stem.rsplit_once('-').map_or(stem.as_str(), |(w, _)| w);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("dist-{who}"));
        let _ = std::fs::remove_dir_all(&dir);
        let target = target();
        let mut c = Command::new(root.join("scripts/package"));
        c.args(["--target", &target, "--out"]).arg(&dir);
        // The variables cargo sets for this test (CARGO_PKG_NAME, ...) are
        // rerun-if-env-changed triggers of build scripts (ring's): passed on,
        // they would rebuild ring and all above it, here and at the next
        // plain `cargo build`.
        for (k, _) in std::env::vars() {
            if k.starts_with("CARGO_PKG_")
                || k.starts_with("CARGO_MANIFEST_")
                || k.starts_with("CARGO_BIN_")
                || [
                    "CARGO_CRATE_NAME",
                    "CARGO_TARGET_TMPDIR",
                    "CARGO_PRIMARY_PACKAGE",
                ]
                .contains(&k.as_str())
            {
                c.env_remove(k);
            }
        }
        let o = c.output().expect("run scripts/package");
        assert!(
            o.status.success(),
            "scripts/package failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let archive = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
        let version = env!("CARGO_PKG_VERSION").to_string();
        let name = format!("vaultfs-{version}-{target}");
        assert_eq!(archive, dir.join(format!("{name}.tar.gz")));
        Package {
            dir,
            archive,
            name,
            version,
        }
    })
}
