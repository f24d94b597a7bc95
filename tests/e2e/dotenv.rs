//! The `.env` and `.sh` views of a real OpenBao secret, read through a real
//! mount by the programs people load them with: `.env` by bash, dash and zsh
//! (`set -a; . .env`), python-dotenv and Node's `dotenv`; `.sh` by bash,
//! dash, zsh and busybox sh (`. .sh`). Every key a view holds must come
//! back from every reader with exactly Vault's value, and nothing else may
//! be set or run. Then the attacks of a secret's writer: a left-out key
//! that ends the report line for Node, a key named `.env`, and names that
//! shells and runtimes act on. The property test over generated secrets is
//! tests/e2e/views_readers.rs.

use std::collections::BTreeMap;
use std::path::Path;

use crate::harness::readers::*;
use crate::harness::*;
use serde_json::{json, Value};

/// Vault's value of each key as its key file shows it.
fn vault_values(data: &Value) -> BTreeMap<String, Vec<u8>> {
    data.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let s = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), s.into_bytes())
        })
        .collect()
}

/// `want` as a reader reports what it defined.
fn defined(want: &BTreeMap<String, Vec<u8>>, keys: &[&str]) -> Defined {
    keys.iter()
        .map(|k| (k.to_string(), Some(want[*k].clone())))
        .collect()
}

/// What `view` promises: every key of `vault` but those its report names,
/// which must be exactly `want_gone`.
fn promised(view: &[u8], vault: &BTreeMap<String, Vec<u8>>, want_gone: &[&str]) -> Defined {
    let mut gone: Vec<String> = left_out(view).into_iter().map(|(k, _)| k).collect();
    gone.sort();
    assert_eq!(gone, want_gone, "{}", String::from_utf8_lossy(view));
    let kept: Vec<&str> = vault
        .keys()
        .map(String::as_str)
        .filter(|k| !want_gone.contains(k))
        .collect();
    defined(vault, &kept)
}

fn read_bytes(p: impl AsRef<Path>) -> Vec<u8> {
    std::fs::read(p.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", p.as_ref().display()))
}

#[test]
fn every_reader_gets_vaults_exact_values() {
    let b = Bao::shared();
    let long = "long-value-".repeat(2000);
    let data = json!({
        "PLAIN": "p4ss.w0rd-_:/@%+,=",
        "EMPTY": "",
        "SPACES": "  leading and trailing  ",
        "TAB": "a\tb",
        "DOLLAR": "$HOME and $PATH",
        "BRACED": "${PATH}",
        "BACKTICK": "`id` $(id)",
        "BACKSLASH": "C:\\path\\to",
        "TWO_BACKSLASHES": "a\\\\b",
        "TRAILING_BACKSLASH": "end\\",
        "HASH": "value # not a comment",
        "EQUALS": "a=b=c",
        "DOUBLE_QUOTES": "say \"hi\"",
        "SINGLE_QUOTE": "it's",
        "SINGLE_QUOTE_NEWLINE": "it's\nsecond line",
        "BOTH_QUOTES": "it's \"both\"",
        "PASSWORD": "p'2\"x",
        "QUOTE_AND_DOLLAR": "it's $HOME",
        "NEWLINES": "line1\nline2\n",
        "CRLF": "line1\r\nline2",
        "LINE_SEPARATORS": "a\u{2028}b\u{2029}c\u{85}d\u{b}e\u{c}f",
        "NUL": "a\u{0}b",
        "UNICODE": "ünïcødé ☃ 日本",
        "JSON": {"nested": [1, "two"]},
        "NUMBER": 42,
        "LONG": long,
        "not-a-name": "x",
        "1DIGIT": "x",
        "with space": "x",
        "PATH": "/nowhere",
    });
    b.put("secret", "awkward/env", data.clone());
    let vault = vault_values(&data);
    let m = Mount::new(b, ROOT_TOKEN);
    let work = tempfile::tempdir().unwrap();

    for dir in ["secret/awkward/env", "secret/awkward/env/.versions/1"] {
        let env_path = m.p(&format!("{dir}/.env"));
        let sh_path = m.p(&format!("{dir}/.sh"));
        // `st_size` is what a read returns.
        for view in [".env", ".sh", ".json"] {
            let p = m.p(&format!("{dir}/{view}"));
            let size = std::fs::metadata(&p).unwrap().len();
            assert_eq!(size, read_bytes(&p).len() as u64, "{dir}/{view}");
        }

        // `.env`: what no quoting serves every reader with, and only that,
        // is left out; names that are no variable, or that shells act on.
        let want_gone = [
            "1DIGIT",
            "BOTH_QUOTES",
            "BRACED",
            "CRLF",
            "NUL",
            "PASSWORD",
            "PATH",
            "QUOTE_AND_DOLLAR",
            "TRAILING_BACKSLASH",
            "TWO_BACKSLASHES",
            "not-a-name",
            "with space",
        ];
        let want = promised(&read_bytes(&env_path), &vault, &want_gone);
        for (reader, got) in [
            ("bash", shell_reads(BASH, work.path(), &[&env_path], true)),
            ("dash", shell_reads(DASH, work.path(), &[&env_path], true)),
            ("zsh", shell_reads(ZSH, work.path(), &[&env_path], true)),
        ] {
            assert_eq!(got[0].as_ref(), Some(&want), "{reader} on {dir}/.env");
        }
        for (reader, got) in [
            ("python-dotenv", python_dotenv(&[&env_path])),
            ("node dotenv", node_dotenv(&[&env_path])),
        ] {
            assert_eq!(got[0], want, "{reader} on {dir}/.env");
        }

        // `.sh`: every value a shell variable can hold, so only NUL and
        // the names are left out.
        let want_gone = ["1DIGIT", "NUL", "PATH", "not-a-name", "with space"];
        let want = promised(&read_bytes(&sh_path), &vault, &want_gone);
        for shell in [BASH, DASH, ZSH, BUSYBOX] {
            let got = shell_reads(shell, work.path(), &[&sh_path], false);
            assert_eq!(got[0].as_ref(), Some(&want), "{shell:?} on {dir}/.sh");
        }
    }
}

/// A key that is no variable name goes into the report line. Node's
/// `dotenv` starts a new line at U+2028 and U+2029 (its line pattern is
/// multiline), python-dotenv's at CR; the report holds none of them.
#[test]
fn a_left_out_key_cannot_end_the_report_line() {
    let b = Bao::shared();
    let mut data = serde_json::Map::new();
    data.insert("API_KEY".into(), json!("abc"));
    for (i, end) in [
        "\u{2028}", "\u{2029}", "\u{85}", "\r", "\r\n", "\n", "\u{b}", "\u{c}",
    ]
    .iter()
    .enumerate()
    {
        let evil = format!("x{end}EVIL{i}=--require=./evil.js #");
        data.insert(evil, json!("v"));
    }
    data.insert(
        "x\u{2028}NODE_OPTIONS=--require=./evil.js #".into(),
        json!("v"),
    );
    b.put("secret", "attack/report", Value::Object(data));
    let m = Mount::new(b, ROOT_TOKEN);
    let env = m.p("secret/attack/report/.env");
    let want: Defined = [("API_KEY".to_string(), Some(b"abc".to_vec()))].into();
    assert_eq!(node_dotenv(&[&env])[0], want, "node dotenv");
    assert_eq!(python_dotenv(&[&env])[0], want, "python-dotenv");
    let work = tempfile::tempdir().unwrap();
    for shell in [BASH, DASH] {
        let got = shell_reads(shell, work.path(), &[&env], true);
        assert_eq!(got[0].as_ref(), Some(&want), "{shell:?}");
    }
}

/// A key named `.env` (or `.sh`, `.json`) never replaces the view, in the
/// secret or in `.versions/<n>/`; it stays readable as `%2Eenv` and in
/// `.json`.
#[test]
fn a_key_named_like_a_view_cannot_replace_it() {
    let b = Bao::shared();
    let payload = "API_KEY=abc\ntouch pwned\n";
    let data = json!({"API_KEY": "abc", ".env": payload, ".sh": "touch pwned", ".json": "{}"});
    b.put("secret", "attack/viewname", data);
    let m = Mount::new(b, ROOT_TOKEN);
    let work = tempfile::tempdir().unwrap();
    let want: Defined = [("API_KEY".to_string(), Some(b"abc".to_vec()))].into();
    for dir in [
        "secret/attack/viewname",
        "secret/attack/viewname/.versions/1",
    ] {
        let env = m.p(&format!("{dir}/.env"));
        let sh = m.p(&format!("{dir}/.sh"));
        for shell in [BASH, DASH] {
            let got = shell_reads(shell, work.path(), &[&env], true);
            assert!(
                !work.path().join("pwned").exists(),
                "{shell:?}: {dir}/.env ran a command"
            );
            assert_eq!(got[0].as_ref(), Some(&want), "{shell:?} on {dir}/.env");
        }
        for shell in [BASH, DASH, ZSH, BUSYBOX] {
            let got = shell_reads(shell, work.path(), &[&sh], false);
            assert!(
                !work.path().join("pwned").exists(),
                "{shell:?}: {dir}/.sh ran a command"
            );
            assert_eq!(got[0].as_ref(), Some(&want), "{shell:?} on {dir}/.sh");
        }
        assert_eq!(read(m.p(&format!("{dir}/%2Eenv"))), payload);
        assert_eq!(read(m.p(&format!("{dir}/%2Ejson"))), "{}");
        let json: Value = serde_json::from_str(&read(m.p(&format!("{dir}/.json")))).unwrap();
        assert_eq!(json[".env"], payload);
    }
    let listed = names(m.p("secret/attack/viewname"));
    assert_eq!(
        listed,
        ["%2Eenv", "%2Ejson", "%2Esh", ".env", ".json", ".sh", "API_KEY"]
    );
}

/// Names that shells, the loader and runtimes act on are left out of both
/// views and named in the report: none is set, and a `set -e` script that
/// sources the view runs to its end (read-only names would stop it).
#[test]
fn names_that_shells_and_runtimes_act_on_are_left_out() {
    let b = Bao::shared();
    let dangerous = [
        ("PROMPT_COMMAND", "touch pwned"),
        ("PS1", "$(touch pwned)"),
        ("PS4", "$(touch pwned)"),
        ("BASH_ENV", "./pwned.sh"),
        ("ENV", "./pwned.sh"),
        ("LD_PRELOAD", "./pwned.so"),
        ("PATH", "."),
        ("IFS", "x"),
        ("CDPATH", "/tmp"),
        ("NODE_OPTIONS", "--require=./pwned.js"),
        ("PYTHONSTARTUP", "./pwned.py"),
        ("PERL5OPT", "-Mpwned"),
        ("RUBYOPT", "-rpwned"),
        ("JAVA_TOOL_OPTIONS", "-javaagent:pwned.jar"),
        ("GIT_SSH_COMMAND", "touch pwned"),
        ("UID", "0"),
        ("EUID", "0"),
        ("PPID", "1"),
    ];
    let mut data = serde_json::Map::new();
    for (k, v) in dangerous {
        data.insert(k.into(), json!(v));
    }
    data.insert("OK".into(), json!("1"));
    b.put("secret", "attack/names", Value::Object(data));
    let m = Mount::new(b, ROOT_TOKEN);
    let work = tempfile::tempdir().unwrap();
    let want: Defined = [("OK".to_string(), Some(b"1".to_vec()))].into();
    let env = m.p("secret/attack/names/.env");
    let sh = m.p("secret/attack/names/.sh");
    for shell in [BASH, DASH] {
        let got = shell_reads(shell, work.path(), &[&env], true);
        assert_eq!(got[0].as_ref(), Some(&want), "{shell:?} on .env");
    }
    for shell in [BASH, DASH, ZSH, BUSYBOX] {
        let got = shell_reads(shell, work.path(), &[&sh], false);
        assert_eq!(got[0].as_ref(), Some(&want), "{shell:?} on .sh");
    }
    assert_eq!(python_dotenv(&[&env])[0], want, "python-dotenv");
    assert_eq!(node_dotenv(&[&env])[0], want, "node dotenv");
    for view in [&env, &sh] {
        let mut reported: Vec<String> = left_out(&read_bytes(view))
            .into_iter()
            .map(|(k, why)| {
                assert!(why.contains("act on"), "{k}: {why}");
                k
            })
            .collect();
        reported.sort();
        let mut all: Vec<&str> = dangerous.iter().map(|(k, _)| *k).collect();
        all.sort();
        assert_eq!(reported, all, "{}", view.display());
    }
    // `set -e`: a read-only name would end the script here.
    let script = "set -e; set -a; . \"$1\"; set +a; echo done";
    let out = output("bash", &["-c", script, "_", env.to_str().unwrap()]);
    assert_eq!(out, b"done\n");
    assert!(!work.path().join("pwned").exists());
}

/// Names that build tools, editors and runtimes read, proven to run code
/// when sourced: make runs `$(CC)` and takes options from `GNUMAKEFLAGS`,
/// Python's `tempfile` writes under `TMP`/`TEMP`. Each is left out, so the
/// reader's `make` and `python3` act as if the view were never read.
#[test]
fn names_that_builds_and_runtimes_act_on_are_left_out() {
    let b = Bao::shared();
    let work = tempfile::tempdir().unwrap();
    let trap = tempfile::tempdir().unwrap();
    let trap_dir = trap.path().to_str().unwrap();
    let payload = "touch pwned;";
    let vault = json!({
        "CC": payload,
        "CXX": payload,
        "GNUMAKEFLAGS": "--eval=$(shell touch pwned)",
        "CFLAGS": "; touch pwned;",
        "RUSTC_WORKSPACE_WRAPPER": "./pwned.sh",
        "VIMINIT": ":!touch pwned",
        "SYSTEMD_PAGERSECURE": "0",
        "TEMP": trap_dir,
        "TMP": trap_dir,
        "GOFLAGS": "-toolexec=./pwned.sh",
        "LUA_INIT": "os.execute('touch pwned')",
        "OK": "1",
    });
    b.put("secret", "attack/builds", vault.clone());
    let m = Mount::new(b, ROOT_TOKEN);
    std::fs::write(
        work.path().join("Makefile"),
        "all:\n\t@$(CC) $(CFLAGS) --version >/dev/null 2>&1 || true\n",
    )
    .unwrap();
    let env = m.p("secret/attack/builds/.env");
    let sh = m.p("secret/attack/builds/.sh");
    let script = "cd \"$2\"; set -a; . \"$1\"; set +a; unset TMPDIR; make -s; \
                  python3 -c 'import tempfile; print(tempfile.gettempdir())'";
    for view in [&env, &sh] {
        let out = output(
            "bash",
            &[
                "-c",
                script,
                "_",
                view.to_str().unwrap(),
                work.path().to_str().unwrap(),
            ],
        );
        let out = String::from_utf8(out).unwrap();
        assert!(
            !work.path().join("pwned").exists(),
            "{}: make ran the payload",
            view.display()
        );
        assert!(
            !out.contains(trap_dir),
            "{}: tempfile in {out}",
            view.display()
        );
        let mut reported: Vec<String> = left_out(&read_bytes(view))
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        reported.sort();
        let mut all: Vec<&str> = vault
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .filter(|k| *k != "OK")
            .collect();
        all.sort();
        assert_eq!(reported, all, "{}", view.display());
    }
}

/// zsh expands an unquoted `=cmd` to the command's path, at a value's start
/// and after a `:`: such values are quoted, and read back exactly by zsh
/// as by every other reader.
#[test]
fn zsh_reads_env_values_with_equals_exactly() {
    let b = Bao::shared();
    let data = json!({"A": "=ls", "B": "x:=ls", "C": "=", "D": "a=b:c", "E": "==ls"});
    b.put("secret", "zsh/equals", data.clone());
    let m = Mount::new(b, ROOT_TOKEN);
    let work = tempfile::tempdir().unwrap();
    let env = m.p("secret/zsh/equals/.env");
    let vault = vault_values(&data);
    let want = promised(&read_bytes(&env), &vault, &[]);
    for (name, shell) in [("bash", BASH), ("dash", DASH), ("zsh", ZSH)] {
        let got = shell_reads(shell, work.path(), &[&env], true);
        assert_eq!(got[0].as_ref(), Some(&want), "{name} on .env");
    }
    assert_eq!(python_dotenv(&[&env])[0], want, "python-dotenv");
    assert_eq!(node_dotenv(&[&env])[0], want, "node dotenv");
}
