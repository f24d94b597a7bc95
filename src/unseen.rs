//! Characters that must not reach a terminal or a line-based file raw: a
//! name a secret's writer chose is shown escaped wherever vaultfs prints it
//! (mount points, the read audit's table and its JSON lines), so that it is
//! one field on one line, reads in the order its bytes are in, and no
//! character of it acts as a command or moves text around.

/// Control characters (C0, DEL, C1), every white space and separator
/// (space, U+00A0, U+2028 LINE SEPARATOR, U+2029 PARAGRAPH SEPARATOR...)
/// and every format character ([`is_format`]: bidi controls such as U+202E
/// and U+061C, zero-width ones, U+FEFF...).
pub fn unseen(c: char) -> bool {
    c.is_control() || c.is_whitespace() || is_format(c)
}

/// Unicode's format characters (general category Cf, Unicode 16), which
/// std does not classify: bidi controls reorder what a terminal shows,
/// others are invisible. By hand: no crate already in the tree has the
/// table, and it changes rarely.
fn is_format(c: char) -> bool {
    matches!(
        c,
        '\u{AD}'
            | '\u{600}'..='\u{605}'
            | '\u{61C}'
            | '\u{6DD}'
            | '\u{70F}'
            | '\u{890}'..='\u{891}'
            | '\u{8E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

/// A JSON text with every non-ASCII [`unseen`] character (and DEL) written
/// as `\uXXXX`, which serde_json leaves raw: a line of the audit file then
/// shows on a terminal, and splits in a line-based tool, as one line.
/// Outside strings a compact JSON text is ASCII, so only strings change,
/// into equal strings.
pub fn json_escaped(json: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if (c == '\u{7f}' || !c.is_ascii()) && unseen(c) {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{u:04x}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_and_format_characters_are_unseen() {
        for c in [
            '\n',
            '\u{7f}',
            '\u{85}',
            '\u{a0}',
            '\u{2028}',
            '\u{2029}',
            '\u{61c}',
            '\u{202e}',
            '\u{200b}',
            '\u{feff}',
            '\u{e0041}',
        ] {
            assert!(unseen(c), "{c:?}");
        }
        for c in ['a', 'é', '/', '\u{1f600}'] {
            assert!(!unseen(c), "{c:?}");
        }
    }

    #[test]
    fn json_escaped_is_the_same_json_in_ascii_lines() {
        let v = serde_json::json!({"k\u{2028}": "a\u{2029}b\u{61c}\u{7f}\u{85}\u{e0041}é"});
        let raw = serde_json::to_string(&v).unwrap();
        let esc = json_escaped(&raw);
        assert!(
            !esc.contains([
                '\u{2028}',
                '\u{2029}',
                '\u{61c}',
                '\u{7f}',
                '\u{85}',
                '\u{e0041}'
            ]),
            "{esc}"
        );
        assert!(
            esc.contains("\\u2028") && esc.contains("\\udb40\\udc41") && esc.contains('é'),
            "{esc}"
        );
        let back: serde_json::Value = serde_json::from_str(&esc).unwrap();
        assert_eq!(back, v);
    }
}
