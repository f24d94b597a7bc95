//! A daemon unmounts only its own mount, identified by its mount id and its
//! FUSE connection's device, never whatever is at its path: after a lazy
//! detach and a new mount at the same path, and after a rename of a
//! directory above the mount point with another filesystem mounted at the
//! old path. As root (umount2) and as a normal user (fusermount3), against
//! a real OpenBao and real mounts.

use std::path::Path;
#[cfg(feature = "root_tests")]
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::harness::*;
use serde_json::json;

fn bao() -> &'static Bao {
    static SEEDED: OnceLock<()> = OnceLock::new();
    let b = Bao::shared();
    SEEDED.get_or_init(|| {
        b.put("secret", "ident/db", json!({"password": "id3nt"}));
    });
    b
}

#[cfg(feature = "root_tests")]
/// Another filesystem, with the user's files, at `at`.
fn mount_tmpfs(at: &Path) {
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "usertmp"])
        .arg(at)
        .status()
        .unwrap();
    assert!(st.success());
}

fn status(h: &Home, mp: &Path) -> std::process::Output {
    run(
        h.cmd(bao(), ROOT_TOKEN, &["status", mp.to_str().unwrap()]),
        20,
    )
}

/// The issue's repro, as root: a daemon detached lazily while a file is
/// open, a new mount at the same path, then the old daemon's last file
/// closes. The new mount must stay.
#[test]
fn a_lazily_detached_daemon_leaves_the_next_mount_alone() {
    let h = Home::new();
    let mp = h.path().join("mnt");
    let m = mp.to_str().unwrap();
    assert_ok(&run(h.cmd(bao(), ROOT_TOKEN, &["mount", m]), 40), "mount");
    let old = h.pid(&mp);
    let f = std::fs::File::open(mp.join("secret/ident/db/password")).unwrap();
    assert_ok(
        &run(h.cmd(bao(), ROOT_TOKEN, &["unmount", "--lazy", m]), 20),
        "unmount --lazy",
    );
    assert_ok(&run(h.cmd(bao(), ROOT_TOKEN, &["mount", m]), 40), "remount");
    let new = h.pid(&mp);
    assert_ne!(old, new);
    assert_ok(&status(&h, &mp), "status before the old file closes");
    drop(f);
    wait_until("the old daemon's exit", Duration::from_secs(10), || {
        !alive(old)
    });
    // Give a wrong unmount time to land.
    std::thread::sleep(Duration::from_millis(300));
    assert_ok(&status(&h, &mp), "status after the old daemon exited");
    assert_eq!(mount_count(&mp), 1);
    assert_eq!(read(mp.join("secret/ident/db/password")), "id3nt");
    assert!(alive(new));
    assert_ok(
        &run(h.cmd(bao(), ROOT_TOKEN, &["unmount", m]), 20),
        "unmount",
    );
    assert!(!is_mounted(&mp));
}

/// The rename repro, as root: mount at dp/mnt, `mv dp dp3`, a tmpfs at a
/// new dp/mnt, SIGTERM. The tmpfs (and its file) stays; the vaultfs mount
/// is unmounted where it went, dp3/mnt.
#[cfg(feature = "root_tests")]
#[test]
fn sigterm_after_a_rename_unmounts_ours_where_it_went_and_nothing_else() {
    let h = Home::new();
    let mp = h.path().join("dp/mnt");
    std::fs::create_dir_all(&mp).unwrap();
    let m = mp.to_str().unwrap();
    assert_ok(&run(h.cmd(bao(), ROOT_TOKEN, &["mount", m]), 40), "mount");
    let pid = h.pid(&mp);
    std::fs::rename(h.path().join("dp"), h.path().join("dp3")).unwrap();
    let moved = h.path().join("dp3/mnt");
    assert_eq!(read(moved.join("secret/ident/db/password")), "id3nt");
    std::fs::create_dir_all(&mp).unwrap();
    mount_tmpfs(&mp);
    std::fs::write(mp.join("work.txt"), "the user's files").unwrap();

    signal(pid, Signal::SIGTERM);
    wait_until("daemon exit on SIGTERM", Duration::from_secs(10), || {
        !alive(pid)
    });
    let tmpfs_kept = mounts()
        .iter()
        .any(|e| e.target == mp && e.fstype == "tmpfs");
    let file = std::fs::read_to_string(mp.join("work.txt"));
    let _ = Command::new("umount").arg(&mp).status();
    assert!(tmpfs_kept, "the tmpfs at the old path was unmounted");
    assert_eq!(file.unwrap(), "the user's files");
    assert!(
        !is_mounted(&moved),
        "the vaultfs mount was left at {}",
        moved.display()
    );
    assert!(
        h.log()
            .contains("unmounted our mount where it was moved to"),
        "{}",
        h.log()
    );
}

/// Both repros as a normal user through fusermount3, with the issue's
/// commands.
#[cfg(feature = "root_tests")]
#[test]
fn normal_user_busy_remount_and_rename() {
    let o = run_as_nobody(
        r#"
as_user "$BIN" mount || exit 21
F="$H/secrets/secret/ident/db/password"
# The old daemon's file, held open by a process of the user.
as_user sh -c "exec 3<'$F'; sleep 4" &
READER=$!
sleep 0.5
as_user "$BIN" unmount --lazy || exit 22
as_user "$BIN" mount || exit 23
as_user "$BIN" status | sed 's/^/before: /'
wait $READER
sleep 0.5
as_user "$BIN" status 2>&1 | sed 's/^/after: /'
echo "value=$(as_user cat "$F")"
as_user "$BIN" unmount || exit 24

# Rename: mount at dp/mnt, mv dp dp3, a tmpfs at a new dp/mnt, SIGTERM.
as_user mkdir -p "$H/dp/mnt"
as_user "$BIN" mount "$H/dp/mnt" || exit 25
P=$(head -n1 "$PIDS"/*dp%2Fmnt.pid)
as_user mv "$H/dp" "$H/dp3"
mkdir -p "$H/dp/mnt"
mount -t tmpfs -o size=1m usertmp "$H/dp/mnt" || exit 26
echo kept > "$H/dp/mnt/work.txt"
kill -TERM "$P"
for i in $(seq 100); do kill -0 "$P" 2>/dev/null || break; sleep 0.1; done
grep -q " $H/dp/mnt .* - tmpfs " /proc/self/mountinfo && echo "tmpfs=$(cat "$H/dp/mnt/work.txt")"
grep -q " $H/dp3/mnt " /proc/self/mountinfo && echo "left-at-dp3"
umount "$H/dp/mnt"
echo done
"#,
        &[("ADDR", &bao().addr), ("TOKEN", ROOT_TOKEN)],
        90,
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(out.contains("before: ") && out.contains(": live"), "{out}");
    let after = out.lines().find(|l| l.starts_with("after: ")).unwrap_or("");
    assert!(after.contains(": live"), "{out}");
    assert!(out.contains("value=id3nt\n"), "{out}");
    assert!(out.contains("tmpfs=kept\n"), "{out}");
    assert!(!out.contains("left-at-dp3"), "{out}");
    assert!(out.ends_with("done\n"), "{out}");
}

/// A mount point elsewhere whose name is not UTF-8 (mountinfo shows such
/// bytes raw) must not hide ours from the mount table: the mount is found,
/// `status` sees it, SIGTERM unmounts it.
#[cfg(feature = "root_tests")]
#[test]
fn a_mount_point_named_in_non_utf8_elsewhere_hides_nothing() {
    use std::os::unix::ffi::OsStrExt;
    let h = Home::new();
    let odd = h.path().join(std::ffi::OsStr::from_bytes(b"odd-\xff-name"));
    std::fs::create_dir(&odd).unwrap();
    mount_tmpfs(&odd);
    let mp = h.path().join("mnt");
    let m = mp.to_str().unwrap();
    let o = run(h.cmd(bao(), ROOT_TOKEN, &["mount", m]), 40);
    let live = status(&h, &mp);
    let pid = h.pid_file(&mp).exists().then(|| h.pid(&mp));
    if let Some(pid) = pid {
        signal(pid, Signal::SIGTERM);
        wait_until("daemon exit on SIGTERM", Duration::from_secs(10), || {
            !alive(pid)
        });
    }
    let left = mounts().iter().any(|e| e.target == mp);
    let _ = Command::new("umount").arg(&odd).status();
    assert_ok(&o, "mount");
    assert_ok(&live, "status");
    assert!(!left, "SIGTERM left the mount");
}
