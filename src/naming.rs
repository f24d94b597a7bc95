//! How Vault key and path-segment names become file names, and back.
//!
//! The mapping is a bijection on the names it accepts: `%` → `%25`, `/` → `%2F`,
//! NUL → `%00`, and a whole name of `.` or `..` → `%2E` / `%2E%2E`. Everything
//! else (spaces, unicode, control characters) is kept byte for byte. A file
//! name that could not have come out of [`encode`] decodes to `None`, so two
//! different Vault names can never meet at one file name.

/// Linux's NAME_MAX: longer names cannot be returned by readdir.
pub const NAME_MAX: usize = 255;

/// Encode a Vault name as a file name. `None` when it cannot be shown:
/// empty, or longer than [`NAME_MAX`] bytes once encoded.
/// By hand, not with the percent-encoding crate: it always encodes every
/// non-ASCII byte, and names keep unicode as is (`ünï` stays `ünï`).
pub fn encode(name: &str) -> Option<String> {
    let out = match name {
        "" => return None,
        "." => "%2E".to_string(),
        ".." => "%2E%2E".to_string(),
        _ => {
            let mut out = String::with_capacity(name.len());
            for c in name.chars() {
                match c {
                    '%' => out.push_str("%25"),
                    '/' => out.push_str("%2F"),
                    '\0' => out.push_str("%00"),
                    c => out.push(c),
                }
            }
            out
        }
    };
    (out.len() <= NAME_MAX).then_some(out)
}

/// Decode a file name back to the Vault name, or `None` if no Vault name
/// encodes to it.
pub fn decode(file_name: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(file_name).ok()?;
    match s {
        "%2E" => return Some(".".into()),
        "%2E%2E" => return Some("..".into()),
        "" | "." | ".." => return None,
        _ => {}
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 3)?;
        out.push(match code {
            "25" => '%',
            "2F" => '/',
            "00" => '\0',
            _ => return None,
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    // Only canonical encodings are accepted (see module doc).
    (encode(&out).as_deref() == Some(s)).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for n in [
            "plain",
            "a/b",
            "%",
            "100%",
            ".",
            "..",
            "...",
            ".hidden",
            "with space",
            "ünïcødé ☃",
            "nul\0byte",
            "%2F",
            "%2E",
            "tab\there",
            "new\nline",
        ] {
            let e = encode(n).unwrap();
            assert!(!e.contains('/'), "{e}");
            assert!(!e.contains('\0'), "{e}");
            assert_ne!(e, ".");
            assert_ne!(e, "..");
            assert_eq!(decode(e.as_bytes()).as_deref(), Some(n), "{n:?} via {e:?}");
        }
    }

    #[test]
    fn specific_encodings() {
        assert_eq!(encode("a/b").unwrap(), "a%2Fb");
        assert_eq!(encode("%").unwrap(), "%25");
        assert_eq!(encode(".").unwrap(), "%2E");
        assert_eq!(encode("..").unwrap(), "%2E%2E");
        assert_eq!(encode("a.b").unwrap(), "a.b");
        assert_eq!(encode("with space").unwrap(), "with space");
        assert_eq!(encode("ünï ☃\ttab").unwrap(), "ünï ☃\ttab");
    }

    #[test]
    fn rejects_non_canonical_and_unrepresentable() {
        assert_eq!(decode(b"%41"), None);
        assert_eq!(decode(b"%2f"), None);
        assert_eq!(decode(b"%"), None);
        assert_eq!(decode(b"%2"), None);
        assert_eq!(decode(b"."), None);
        assert_eq!(decode(b".."), None);
        assert_eq!(decode(b""), None);
        assert_eq!(decode(b"\xff"), None);
        assert_eq!(encode(""), None);
        assert_eq!(encode(&"x".repeat(256)), None);
        assert!(encode(&"x".repeat(255)).is_some());
        // 100 slashes become 300 bytes: too long.
        assert_eq!(encode(&"/".repeat(100)), None);
    }
}
