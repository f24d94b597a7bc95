//! How Vault key and path-segment names become file names, and back.
//!
//! The mapping is a bijection on the names it accepts: `%` → `%25`, `/` → `%2F`,
//! NUL → `%00`, a whole name of `.` or `..` → `%2E` / `%2E%2E`, and a whole
//! name that is one of vaultfs's own file names ([`OWN_NAMES`]) has its
//! leading `.` written `%2E` (`.env` → `%2Eenv`). Everything else (spaces,
//! unicode, control characters) is kept byte for byte. A file name that
//! could not have come out of [`encode`] decodes to `None`, so two different
//! Vault names can never meet at one file name, and no Vault name is ever
//! shown under one of vaultfs's own names.

/// Linux's NAME_MAX: longer names cannot be returned by readdir.
pub const NAME_MAX: usize = 255;

/// The view holding the whole secret as one JSON object.
pub const JSON_VIEW: &str = ".json";
/// The view holding `KEY=value` lines for dotenv readers.
pub const ENV_VIEW: &str = ".env";
/// The view holding `export KEY='value'` lines for POSIX shells.
pub const SHELL_VIEW: &str = ".sh";
/// KV v2: the directory of a secret's versions.
pub const VERSIONS_DIR: &str = ".versions";
/// KV v2: the secret's metadata.
pub const METADATA_VIEW: &str = ".metadata.json";

/// The names vaultfs gives its own files in a secret's directory. A Vault
/// name equal to one of them is shown as `%2E` and the rest, so a key or a
/// folder can never take a view's place (a key named `.env` holding shell
/// commands would otherwise be what `. .env` runs).
pub const OWN_NAMES: [&str; 5] = [JSON_VIEW, ENV_VIEW, SHELL_VIEW, VERSIONS_DIR, METADATA_VIEW];

/// Which of vaultfs's own names `file_name` is, if any.
pub fn own_name(file_name: &[u8]) -> Option<&'static str> {
    OWN_NAMES.into_iter().find(|n| n.as_bytes() == file_name)
}

/// Encode a Vault name as a file name. `None` when it cannot be shown:
/// empty, or longer than [`NAME_MAX`] bytes once encoded.
/// By hand, not with the percent-encoding crate: it always encodes every
/// non-ASCII byte, and names keep unicode as is (`ünï` stays `ünï`).
pub fn encode(name: &str) -> Option<String> {
    let out = match name {
        "" => return None,
        "." => "%2E".to_string(),
        ".." => "%2E%2E".to_string(),
        own if OWN_NAMES.contains(&own) => format!("%2E{}", &own[1..]),
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
            "2E" => '.',
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
            ".json",
            ".env",
            ".sh",
            ".versions",
            ".metadata.json",
            "%2Eenv",
            ".env.local",
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
        assert_eq!(encode(".env").unwrap(), "%2Eenv");
        assert_eq!(encode(".metadata.json").unwrap(), "%2Emetadata.json");
        assert_eq!(encode(".env.local").unwrap(), ".env.local");
        assert_eq!(encode("%2Eenv").unwrap(), "%252Eenv");
    }

    /// No Vault name is shown under one of vaultfs's own names, and only
    /// those names are taken for them.
    #[test]
    fn own_names_are_never_a_vault_name() {
        for own in OWN_NAMES {
            assert_eq!(decode(own.as_bytes()), None, "{own}");
            assert_eq!(own_name(own.as_bytes()), Some(own));
            assert_ne!(encode(own).as_deref(), Some(own));
        }
        assert_eq!(own_name(b"%2Eenv"), None);
        assert_eq!(own_name(b".env.local"), None);
    }

    #[test]
    fn rejects_non_canonical_and_unrepresentable() {
        assert_eq!(decode(b"%41"), None);
        assert_eq!(decode(b"%2Ex"), None);
        assert_eq!(decode(b"a%2E"), None);
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
