//! The release archive `scripts/package` builds for this machine, as the
//! release workflow does for each target: the listed files, a SHA256SUMS
//! that verifies, and a binary that runs on Ubuntu 20.04 (static, or glibc
//! 2.31 at most).

use std::path::Path;
use std::process::Command;

use crate::harness::package::package;

/// The newest glibc the release binaries may need: Ubuntu 20.04's.
const GLIBC_FLOOR: (u32, u32) = (2, 31);

fn sh(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Why `bin` would not run on a glibc-2.31 system, or None when it would:
/// a static binary (no program interpreter, nothing NEEDED) always does; a
/// dynamic one must need only libc's own libraries and no GLIBC_x.y symbol
/// version newer than the floor.
fn glibc_floor_violation(bin: &Path) -> Option<String> {
    let program = sh(Command::new("readelf").arg("-lW").arg(bin));
    let dynamic = sh(Command::new("readelf").arg("-dW").arg(bin));
    let needed: Vec<&str> = dynamic
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next())
        .collect();
    if !program.contains("program interpreter") && needed.is_empty() {
        return None; // static
    }
    let libc_own = [
        "libc.so",
        "libm.so",
        "libgcc_s.so",
        "libpthread.so",
        "libdl.so",
        "librt.so",
        "ld-linux",
    ];
    if let Some(lib) = needed
        .iter()
        .find(|n| !libc_own.iter().any(|p| n.starts_with(p)))
    {
        return Some(format!("needs {lib}, which Ubuntu 20.04 may not have"));
    }
    let symbols = sh(Command::new("objdump").arg("-T").arg(bin));
    let newest = symbols
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut it = v.split('.').map(|n| n.parse::<u32>().ok());
            Some((it.next()??, it.next().flatten().unwrap_or(0)))
        })
        .max()?;
    (newest > GLIBC_FLOOR).then(|| {
        format!(
            "needs GLIBC_{}.{}, newer than the floor {}.{}",
            newest.0, newest.1, GLIBC_FLOOR.0, GLIBC_FLOOR.1
        )
    })
}

#[test]
fn the_host_archive_has_the_listed_files_and_a_binary_for_glibc_2_31() {
    let p = package();
    let listing = sh(Command::new("tar").arg("-tzf").arg(&p.archive));
    let mut files: Vec<&str> = listing
        .lines()
        .filter(|l| !l.ends_with('/'))
        .map(|l| {
            l.strip_prefix(&format!("{}/", p.name))
                .unwrap_or_else(|| panic!("{l} is outside {}/", p.name))
        })
        .collect();
    files.sort();
    for want in [
        "LICENSE",
        "README.md",
        "completions/_vaultfs",
        "completions/vaultfs.bash",
        "completions/vaultfs.fish",
        "man/mount.fuse.vaultfs.8",
        "man/vaultfs-mount.1",
        "man/vaultfs-unmount.1",
        "man/vaultfs.1",
        "vaultfs",
    ] {
        assert!(files.contains(&want), "{want} missing from {files:?}");
    }

    let x = tempfile::tempdir().unwrap();
    sh(Command::new("tar")
        .arg("-xzf")
        .arg(&p.archive)
        .arg("-C")
        .arg(x.path()));
    let top = x.path().join(&p.name);
    let bin = top.join("vaultfs");
    // It runs, and is the version the archive is named for.
    let v = sh(Command::new(&bin).arg("--version"));
    assert_eq!(v.trim(), format!("vaultfs {}", p.version));
    if let Some(why) = glibc_floor_violation(&bin) {
        panic!("{} will not run on Ubuntu 20.04: {why}", p.name);
    }
    // Completions and man pages are generated from the real flags.
    let bash = std::fs::read_to_string(top.join("completions/vaultfs.bash")).unwrap();
    assert!(bash.contains("--token-file") && bash.contains("unmount"));
    let man = std::fs::read_to_string(top.join("man/vaultfs-mount.1")).unwrap();
    assert!(man.starts_with(".ie") || man.contains(".TH"), "{man:.200}");
    assert!(
        man.contains("token\\-file"),
        "mount page lacks --token-file"
    );
    assert!(std::fs::read_to_string(top.join("LICENSE"))
        .unwrap()
        .starts_with("MIT License"));
}

#[test]
fn sha256sums_verifies_the_archive_and_catches_a_changed_byte() {
    let p = package();
    let sums = std::fs::read_to_string(p.dir.join("SHA256SUMS")).unwrap();
    let line = format!("  {}.tar.gz", p.name);
    assert!(sums.lines().any(|l| l.ends_with(&line)), "{sums}");
    sh(Command::new("sha256sum")
        .args(["--strict", "-c", "SHA256SUMS"])
        .current_dir(&p.dir));

    // A copy with one byte changed fails the same check.
    let bad = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(&p.archive).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(bad.path().join(p.archive.file_name().unwrap()), bytes).unwrap();
    std::fs::write(bad.path().join("SHA256SUMS"), &sums).unwrap();
    let st = Command::new("sha256sum")
        .args(["--quiet", "-c", "SHA256SUMS"])
        .current_dir(bad.path())
        .output()
        .unwrap();
    assert!(!st.status.success());
}

/// The floor check can fail: a binary built against this machine's own
/// glibc, when that is 2.34 or newer (Debian 12: 2.36), references
/// `__libc_start_main@GLIBC_2.34` and is not a binary for Ubuntu 20.04.
#[test]
fn the_floor_check_rejects_a_binary_built_against_a_newer_glibc() {
    let v = sh(Command::new("getconf").arg("GNU_LIBC_VERSION"));
    let v = v.trim().trim_start_matches("glibc ");
    let mut it = v.split('.').map(|n| n.parse::<u32>().unwrap());
    let host = (it.next().unwrap(), it.next().unwrap());
    let test_build = Path::new(env!("CARGO_BIN_EXE_vaultfs"));
    let verdict = glibc_floor_violation(test_build);
    if host >= (2, 34) {
        let why = verdict.expect("a glibc >= 2.34 build passed the 2.31 floor check");
        assert!(why.contains("needs GLIBC_2.3"), "{why}");
    } else {
        assert_eq!(verdict, None, "host glibc {v}");
    }
}
