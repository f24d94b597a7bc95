//! The `.env` view read by the readers people load it with: bash and dash
//! (`set -a; . .env`), python-dotenv's `dotenv_values` and Node's
//! `dotenv.parse` (installed by scripts/setup). Every key the view holds
//! must come back from every reader with exactly Vault's value.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::{json, Value};

type Values = BTreeMap<String, String>;

/// Runs `program args…` and returns its stdout, failing loudly.
fn output(program: &str, args: &[&str]) -> Vec<u8> {
    let o = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (scripts/setup installs it)"));
    assert!(
        o.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

fn shell(sh: &str, env: &Path, keys: &[&String]) -> Values {
    // NUL-separated, so any value comes back whole.
    let script = format!(
        "set -a; . \"$1\"; set +a; for k in {}; do eval \"printf '%s\\0' \\\"\\${{$k}}\\\"\"; done",
        keys.iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = output(sh, &["-c", &script, "_", env.to_str().unwrap()]);
    let text = String::from_utf8(out).unwrap();
    let vals: Vec<&str> = text.split('\0').collect();
    assert_eq!(vals.len(), keys.len() + 1, "{sh}: {text:?}");
    keys.iter()
        .zip(vals)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn python_dotenv(env: &Path) -> Values {
    let code = "import json, sys\nfrom dotenv import dotenv_values\n\
                print(json.dumps(dotenv_values(sys.argv[1])))";
    let out = output("python3", &["-c", code, env.to_str().unwrap()]);
    serde_json::from_slice(&out).unwrap()
}

fn node_dotenv(env: &Path) -> Values {
    let module = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/node/node_modules/dotenv"
    );
    assert!(
        Path::new(module).exists(),
        "Node's dotenv is missing: run scripts/setup"
    );
    let code = format!(
        "const d = require({module:?}); const fs = require('fs');\
         process.stdout.write(JSON.stringify(d.parse(fs.readFileSync(process.argv[1]))));"
    );
    let out = output("node", &["-e", &code, env.to_str().unwrap()]);
    serde_json::from_slice(&out).unwrap()
}

/// The keys the view's comment line names as left out.
fn left_out(env: &str) -> Vec<String> {
    let Some(line) = env.lines().next().filter(|l| l.starts_with('#')) else {
        return Vec::new();
    };
    let list = line.split_once("): ").unwrap().1;
    serde_json::from_str::<Vec<String>>(&format!("[{list}]")).unwrap()
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
        "QUOTE_AND_DOLLAR": "it's $HOME",
        "NEWLINES": "line1\nline2\n",
        "CRLF": "line1\r\nline2",
        "UNICODE": "ünïcødé ☃ 日本",
        "JSON": {"nested": [1, "two"]},
        "NUMBER": 42,
        "LONG": long,
        "not-a-name": "x",
        "1DIGIT": "x",
        "with space": "x",
    });
    b.put("secret", "awkward/env", data.clone());
    let m = Mount::new(b, ROOT_TOKEN);
    let path = m.p("secret/awkward/env/.env");
    let env = read(&path);

    let vault: Values = data
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let s = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), s)
        })
        .collect();
    let gone = left_out(&env);
    let kept: Vec<&String> = vault.keys().filter(|k| !gone.contains(k)).collect();
    // What no quoting can serve every reader with, and only that.
    let mut want_gone = vec![
        "1DIGIT",
        "BOTH_QUOTES",
        "BRACED",
        "CRLF",
        "QUOTE_AND_DOLLAR",
        "TRAILING_BACKSLASH",
        "TWO_BACKSLASHES",
        "not-a-name",
        "with space",
    ];
    want_gone.sort();
    let mut gone_sorted = gone.clone();
    gone_sorted.sort();
    assert_eq!(gone_sorted, want_gone, "{env}");

    let readers = [
        ("bash", shell("bash", &path, &kept)),
        ("dash", shell("dash", &path, &kept)),
        ("python-dotenv", python_dotenv(&path)),
        ("node dotenv", node_dotenv(&path)),
    ];
    for (reader, got) in &readers {
        for k in &kept {
            assert_eq!(
                got.get(*k),
                Some(&vault[*k]),
                "{reader} reads {k} differently from Vault"
            );
        }
    }
    // The dotenv readers see nothing else (the comment is no key).
    for (reader, got) in &readers[2..] {
        let keys: Vec<&String> = got.keys().collect();
        assert_eq!(keys, kept, "{reader}");
    }
}
