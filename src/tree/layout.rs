//! How Vault's names become paths and file names: which names can be a
//! path segment, how mount paths and LIST keys become a directory's
//! children, and which files a secret's directory shows. Pure functions,
//! no state.

use std::collections::BTreeMap;

use super::inodes::Node;
use crate::naming;
use crate::naming::{ENV_VIEW, JSON_VIEW, METADATA_VIEW, SHELL_VIEW, VERSIONS_DIR};
use crate::secret::{Secret, SecretFile};
use crate::store::KvMount;

/// The longest path inside a mount shown, in bytes (Linux's PATH_MAX): a
/// folder deeper than that is left out. Every inode and cache key holds its
/// path, so without a bound a chain of folders (which one LIST answer per
/// level, or one small SCAN answer, can describe without end) would cost
/// memory quadratic in its depth.
pub const MAX_PATH: usize = 4096;

/// A folder or secret: its mount and its path inside it.
pub(super) type Key = (KvMount, String);

pub(super) fn join(parent: &str, seg: &str) -> String {
    if parent.is_empty() {
        seg.to_string()
    } else {
        format!("{parent}/{seg}")
    }
}

/// (the parent's path, the last segment).
pub(super) fn split_parent(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

/// Whether a Vault name can be one segment of a request path: `.` and
/// `..` would move the request elsewhere (docs/security.md), and a slash
/// would make it two segments. Such names are never folders or secrets
/// here (nor are names with NUL, which Vault refuses); they can still be
/// key names, which never reach a path.
pub fn is_path_segment(seg: &str) -> bool {
    !seg.is_empty() && seg != "." && seg != ".." && !seg.contains(['/', '\0'])
}

/// The children of the root (`prefix` "") or of a mount-path prefix.
pub fn mount_children(mounts: &[KvMount], prefix: &str) -> Vec<(String, Node)> {
    let mut out = BTreeMap::new();
    for m in mounts
        .iter()
        .filter(|m| m.path.len() <= MAX_PATH && m.path.split('/').all(is_path_segment))
    {
        let rest = if prefix.is_empty() {
            Some(&*m.path)
        } else {
            m.path
                .strip_prefix(prefix)
                .and_then(|r| r.strip_prefix('/'))
        };
        let Some(rest) = rest.filter(|r| !r.is_empty()) else {
            continue;
        };
        let seg = rest.split('/').next().unwrap_or(rest);
        let node = if seg == rest {
            Node::Dir {
                mount: m.clone(),
                path: String::new(),
            }
        } else {
            Node::Prefix(join(prefix, seg))
        };
        out.entry(seg.to_string()).or_insert(node);
    }
    out.into_iter().collect()
}

/// Group raw LIST keys into child names: `a` (secret) and `a/` (folder) are
/// one child. Keys that cannot be one path segment are skipped.
pub fn listing_children(keys: &[String]) -> Vec<String> {
    let mut segs: Vec<String> = keys
        .iter()
        .map(|k| k.strip_suffix('/').unwrap_or(k))
        .filter(|s| is_path_segment(s))
        .map(str::to_string)
        .collect();
    segs.sort();
    segs.dedup();
    segs
}

/// Whether a sorted LIST answer holds `key`.
pub(super) fn holds(keys: &[String], key: &str) -> bool {
    keys.binary_search_by(|k| k.as_str().cmp(key)).is_ok()
}

/// A name looked up in a directory: one of vaultfs's own names (a view,
/// `.versions`, `.metadata.json`), or the Vault name a file name decodes
/// to. The two never meet: `naming::encode` shows a Vault name equal to an
/// own name under another file name.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Name {
    Own(&'static str),
    Vault(String),
}

impl Name {
    /// `None` when the file name is neither.
    pub(super) fn of(file_name: &[u8]) -> Option<Name> {
        match naming::own_name(file_name) {
            Some(own) => Some(Name::Own(own)),
            None => naming::decode(file_name).map(Name::Vault),
        }
    }
}

/// The file of secret `s` that `name` names: a key by its Vault name, a
/// view by its own name.
pub(super) fn file_named(s: &Secret, name: &Name) -> Option<SecretFile> {
    match name {
        Name::Vault(k) => s.has_key(k).then(|| SecretFile::Key(k.clone())),
        Name::Own(JSON_VIEW) => Some(SecretFile::Json),
        Name::Own(ENV_VIEW) => Some(SecretFile::Env),
        Name::Own(SHELL_VIEW) => Some(SecretFile::Shell),
        Name::Own(_) => None,
    }
}

/// The file name of a secret's file, `None` (logged) for a key that cannot
/// be one.
pub(super) fn file_name(mount: &KvMount, path: &str, f: &SecretFile) -> Option<String> {
    match f {
        SecretFile::Key(k) => {
            let name = encoded(k);
            if name.is_none() {
                tracing::warn!(mount = %mount.path, path = %path, len = k.len(), "key name too long or empty; left out");
            }
            name
        }
        view => view_name(view).map(str::to_string),
    }
}

/// The name of a view file; `None` for a key file.
fn view_name(f: &SecretFile) -> Option<&'static str> {
    match f {
        SecretFile::Key(_) => None,
        SecretFile::Json => Some(JSON_VIEW),
        SecretFile::Env => Some(ENV_VIEW),
        SecretFile::Shell => Some(SHELL_VIEW),
    }
}

/// Where `node` shows in the mount, as the read audit records it: each
/// Vault name as its file name. A file of a metadata document (`secret`
/// is the metadata of) is its `.metadata.json`. A file of an old version
/// read through `.versions/<n>/` shows as the secret's own file of that
/// name: when `n` is the current version both are one inode, and the
/// version number is recorded beside the path.
pub(super) fn shown_path(node: &Node, secret: Option<&Secret>) -> String {
    let shown = |path: &str| -> String {
        path.split('/')
            .map(|seg| encoded(seg).unwrap_or_else(|| seg.to_string()))
            .collect::<Vec<_>>()
            .join("/")
    };
    let under = |mount: &KvMount, path: &str, tail: &str| {
        let mut p = join(&mount.path, &shown(path));
        if !tail.is_empty() {
            p = join(&p, tail);
        }
        p
    };
    match node {
        Node::Root => String::new(),
        Node::Prefix(p) => p.clone(),
        Node::Dir { mount, path } if path.is_empty() => mount.path.to_string(),
        Node::Dir { mount, path } => under(mount, path, ""),
        Node::Versions { mount, secret } => under(mount, secret, VERSIONS_DIR),
        Node::AtVersion { mount, secret, n } => {
            under(mount, secret, &format!("{VERSIONS_DIR}/{n}"))
        }
        Node::File {
            mount,
            secret: path,
            file,
            ..
        } => {
            let name = match (file, secret.is_some_and(|s| s.metadata)) {
                (SecretFile::Json, true) => METADATA_VIEW.to_string(),
                (SecretFile::Key(k), _) => encoded(k).unwrap_or_else(|| k.clone()),
                (view, _) => view_name(view).unwrap_or_default().to_string(),
            };
            under(mount, path, &name)
        }
    }
}

/// The file name a Vault name is shown as; `None` when it cannot be one.
pub(super) fn encoded(seg: &str) -> Option<String> {
    naming::encode(seg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::test_tree::m;

    #[test]
    fn mount_paths_nest() {
        let ms = vec![m("secret"), m("team/kv"), m("team/other"), m("a/b/c")];
        let root: Vec<String> = mount_children(&ms, "").into_iter().map(|c| c.0).collect();
        assert_eq!(root, ["a", "secret", "team"]);
        let team = mount_children(&ms, "team");
        assert_eq!(team.len(), 2);
        assert!(matches!(&team[0].1, Node::Dir { mount, .. } if &*mount.path == "team/kv"));
        assert_eq!(mount_children(&ms, "a")[0].1, Node::Prefix("a/b".into()));
        assert!(mount_children(&ms, "te").is_empty());
    }

    #[test]
    fn listing_merges_secret_and_folder() {
        let keys: Vec<String> = ["app", "app/", "db/", "x/y", ""]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(listing_children(&keys), ["app", "db"]);
    }
}
