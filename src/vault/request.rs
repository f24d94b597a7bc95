//! Request paths: every API path becomes a URL here and nowhere else, so
//! no name can move a request out of the mount it belongs to.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::Url;

use crate::error::VaultError;
use crate::store::{KvMount, KvVersion};

/// The URL of API path `path` (below `/v1/`), or `UnsafePath` when the
/// request would not reach exactly that path. Every request is built here,
/// so no name, whatever Vault or a user chose, can move a request out of
/// the mount it belongs to: a `.` or `..` segment would be collapsed by the
/// URL library (escaped or not, `%2E%2E` included), an empty one may be
/// cleaned away by the server, and Vault decodes `%2F` into a separator, so
/// a slash is one whatever its escaping. The final check holds whatever
/// the escaping.
pub fn request_url(base: &Url, path: &str) -> Result<Url, VaultError> {
    let mut segments = path.split('/').peekable();
    while let Some(seg) = segments.next() {
        // Only the last may be empty: a trailing slash names a folder.
        let last = segments.peek().is_none();
        // NUL: Vault answers 400 to it; no name of its holds one.
        if seg == "." || seg == ".." || seg.contains('\0') || (seg.is_empty() && !last) {
            return Err(unsafe_path(path));
        }
    }
    let want = format!(
        "{}/v1/{}",
        base.path().trim_end_matches('/'),
        escape_path(path)
    );
    let mut u = base.clone();
    u.set_path(&want);
    u.set_query(None);
    u.set_fragment(None);
    if u.path() != want {
        return Err(unsafe_path(path));
    }
    Ok(u)
}

fn unsafe_path(path: &str) -> VaultError {
    // Debug-quoted: the name may hold control characters.
    let e = VaultError::UnsafePath(format!("{path:?}"));
    tracing::warn!(error = %e, "request refused");
    e
}

/// Every byte of a segment but RFC 3986's unreserved ones is escaped, so
/// names with `%`, `?`, `#`, spaces or unicode reach Vault as themselves.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn escape_path(path: &str) -> String {
    let segments: Vec<String> = path
        .split('/')
        .map(|s| utf8_percent_encode(s, SEGMENT).to_string())
        .collect();
    segments.join("/")
}

pub(super) fn kv_path(mount: &KvMount, section: &str, path: &str) -> String {
    match (mount.version, path.is_empty()) {
        (KvVersion::V1, true) => format!("{}/", mount.path),
        (KvVersion::V1, false) => format!("{}/{path}", mount.path),
        (KvVersion::V2, _) => format!("{}/{section}/{path}", mount.path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn kv_paths() {
        let v1 = KvMount {
            path: "kv1".into(),
            version: KvVersion::V1,
        };
        let v2 = KvMount {
            path: "team/kv".into(),
            version: KvVersion::V2,
        };
        assert_eq!(kv_path(&v1, "data", "a/b"), "kv1/a/b");
        assert_eq!(kv_path(&v1, "metadata", ""), "kv1/");
        assert_eq!(kv_path(&v2, "data", "a/b"), "team/kv/data/a/b");
        assert_eq!(kv_path(&v2, "metadata", ""), "team/kv/metadata/");
    }

    /// Names a crafted file name or a hostile answer could put in a path:
    /// every form of `.`, `..`, `/`, `?`, `#` and NUL, plain or escaped.
    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                ".",
                "..",
                "...",
                "%2E",
                "%2E%2E",
                ".%2e",
                "%2e.",
                "%2e%2e",
                "%252E%252E",
                "/",
                "../..",
                "a/../b",
                "?",
                "?list=true",
                "#",
                "#x",
                "\0",
                "..\0",
                "\\..",
                "..\\",
                "%2F",
                "%3F",
                "%23",
                "%00",
                "",
                " ",
                "\t..",
                "..\n",
            ])
            .prop_map(str::to_string),
            "[a-z.]{1,4}",
            any::<String>(),
        ]
    }

    fn decode(s: &str) -> String {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .expect("escaped from UTF-8")
            .into_owned()
    }

    proptest! {
        /// Whatever the names, a request goes exactly to the path it was
        /// built for: inside its mount and its API section, under `/v1/`,
        /// with no segment that could climb out (or it is refused).
        #[test]
        fn request_paths_stay_in_their_mount(
            mount in prop_oneof![
                "[a-z]{1,5}(/[a-z]{1,5}){0,2}",
                prop::sample::select(vec!["..", "a/..", ".", "a//b", "a/./b"]).prop_map(str::to_string),
            ],
            v2 in any::<bool>(),
            section in prop::sample::select(vec!["data", "metadata"]),
            segments in prop::collection::vec(segment(), 0..5),
        ) {
            let base = Url::parse("http://127.0.0.1:8200/prefix/").unwrap();
            let m = KvMount {
                path: mount.as_str().into(),
                version: if v2 { KvVersion::V2 } else { KvVersion::V1 },
            };
            let path = kv_path(&m, section, &segments.join("/"));
            let safe = |s: &str| s != "." && s != ".." && !s.contains('\0');
            match request_url(&base, &path) {
                Ok(u) => {
                    prop_assert_eq!(u.host_str(), Some("127.0.0.1"));
                    prop_assert_eq!(u.query(), None);
                    prop_assert_eq!(u.fragment(), None);
                    let rest = u.path().strip_prefix("/prefix/v1/").expect("under /v1/");
                    let got: Vec<String> = rest.split('/').map(decode).collect();
                    let want: Vec<&str> = path.split('/').collect();
                    prop_assert_eq!(&got, &want);
                    prop_assert!(got.iter().all(|s| safe(s)), "{:?}", got);
                    let mut inside = mount.split('/').collect::<Vec<_>>();
                    if v2 {
                        inside.push(section);
                    }
                    prop_assert!(got.starts_with(&inside.iter().map(|s| s.to_string()).collect::<Vec<_>>()));
                }
                Err(e) => {
                    prop_assert!(matches!(e, VaultError::UnsafePath(_)));
                    let bad = path.split('/').enumerate().any(|(i, s)| {
                        !safe(s) || (s.is_empty() && i + 1 < path.split('/').count())
                    });
                    prop_assert!(bad, "refused a safe path {:?}", path);
                }
            }
        }
    }

    #[test]
    fn escapes_segments() {
        assert_eq!(escape_path("a b/100%/ü?#"), "a%20b/100%25/%C3%BC%3F%23");
        assert_eq!(escape_path("secret/data/x"), "secret/data/x");
    }
}
