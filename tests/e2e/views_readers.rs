//! Differential property test of the `.env` and `.sh` views against the
//! real readers. Secrets (keys and values both) are generated from an
//! alphabet of what breaks readers: quotes, `$`, backquote, backslash, `#`,
//! `=`, spaces, every line end a reader knows (LF, CR, CR LF, U+2028,
//! U+2029, U+0085, VT, FF), NUL, non-ASCII, commands and long strings. They
//! are rendered by the crate's own code (`Secret::from_data`), and then:
//! - `.env` is read by bash, dash and zsh (`set -a; .`), python-dotenv and Node's
//!   `dotenv`;
//! - `.sh` by bash, dash, zsh and busybox sh (`.`).
//!
//! Every reader must define exactly the keys the view does not report as
//! left out, with Vault's exact bytes, and no other variable; no reader may
//! run anything (a payload would create the file `pwned`). `.sh` may leave
//! out a value only for NUL. Many secrets go to each reader process, so a
//! case costs one process per reader. Failing cases are shrunk and kept in
//! proptest-regressions/views_readers.txt.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::harness::readers::*;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, FileFailurePersistence};
use serde_json::{json, Map, Value};
use vaultfs::testing::secret::{Secret, SecretFile};
use vaultfs::testing::views::{is_dangerous, is_variable_name};

/// Pieces strings are made of.
const PIECES: &[&str] = &[
    "'",
    "\"",
    "$",
    "`",
    "\\",
    "#",
    "=",
    " ",
    "\t",
    "\n",
    "\r",
    "\r\n",
    "\u{2028}",
    "\u{2029}",
    "\u{85}",
    "\u{b}",
    "\u{c}",
    "\0",
    "\u{7f}",
    "\u{1b}",
    "é",
    "☃",
    "日本",
    "𝄞",
    "{",
    "}",
    "(",
    ")",
    ";",
    "&",
    "|",
    "<",
    ">",
    "*",
    "?",
    "~",
    "!",
    "%",
    ":",
    ",",
    ".",
    "-",
    "_",
    "A",
    "z",
    "0",
    "9",
    "$(touch pwned)",
    "`touch pwned`",
    ";touch pwned;",
    "\ntouch pwned\n",
    "${PATH}",
    "${X:-y}",
    "$HOME",
    "\\'",
    "'\\''",
    "\\n",
    "\\\\",
    "export ",
    "K=",
    "# c",
    "x\u{2028}NODE_OPTIONS=--require=./pwned.js #",
];

/// Names: plain ones, names shells and runtimes act on, vaultfs's own file
/// names.
const NAMES: &[&str] = &[
    "A",
    "B_1",
    "_x",
    "pass",
    "NODE_ENV",
    "PATH",
    "PS1",
    "PROMPT_COMMAND",
    "BASH_ENV",
    "ENV",
    "IFS",
    "LD_PRELOAD",
    "NODE_OPTIONS",
    "PYTHONPATH",
    "PERL5OPT",
    "RUBYOPT",
    "GIT_DIR",
    "UID",
    "EUID",
    "PPID",
    "HOME",
    "path",
    "status",
    "_",
    "SHELLOPTS",
    "BASH_FUNC_f",
    "LANG",
    ".env",
    ".sh",
    ".json",
    ".versions",
    "f",
    "i",
    "export",
    "set",
];

fn text() -> impl Strategy<Value = String> {
    let short = prop::collection::vec(select(PIECES), 0..10).prop_map(|p| p.concat());
    prop_oneof![
        8 => short.clone(),
        1 => short.prop_map(|s| s.repeat(200)),
    ]
}

fn key() -> impl Strategy<Value = String> {
    let first = select(&["A", "b", "_", "Z"][..]);
    let rest = prop::collection::vec(select(&["A", "b", "_", "0", "9", "Q"][..]), 0..6);
    prop_oneof![
        3 => (first, rest).prop_map(|(f, r)| format!("{f}{}", r.concat())),
        2 => select(NAMES).prop_map(str::to_string),
        2 => text(),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => text().prop_map(Value::String),
        1 => (any::<i32>(), text()).prop_map(|(n, s)| json!({ "n": n, "s": [s] })),
    ]
}

fn secret() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(key(), value(), 0..8).prop_map(|m| m.into_iter().collect())
}

/// Vault's value as its key file shows it.
fn bytes_of(v: &Value) -> Vec<u8> {
    match v {
        Value::String(s) => s.as_bytes().to_vec(),
        other => other.to_string().into_bytes(),
    }
}

/// One view of each secret, written to `dir/<prefix><i>`.
struct Rendered {
    files: Vec<PathBuf>,
    /// What each file promises: its keys that the report does not name.
    promised: Vec<Defined>,
}

fn render(
    dir: &std::path::Path,
    secrets: &[Map<String, Value>],
    view: SecretFile,
    prefix: &str,
) -> Result<Rendered, TestCaseError> {
    let mut out = Rendered {
        files: Vec::new(),
        promised: Vec::new(),
    };
    for (i, data) in secrets.iter().enumerate() {
        let s = Secret::from_data(data.clone(), None);
        let bytes = s.content(&view).unwrap().to_vec();
        let gone: Vec<(String, String)> = left_out(&bytes);
        let mut promised = Defined::new();
        for (k, v) in data {
            let reported = gone.iter().filter(|(g, _)| g == k).count();
            let named = is_variable_name(k) && !is_dangerous(k);
            prop_assert!(reported <= 1, "{k:?} reported twice");
            prop_assert!(
                named || reported == 1,
                "{k:?}: no variable name, or one shells act on, not reported"
            );
            if view == SecretFile::Shell && named {
                // Only NUL keeps a value out of `.sh`.
                prop_assert_eq!(reported == 1, bytes_of(v).contains(&0), "{:?}", k);
            }
            if reported == 0 {
                promised.insert(k.clone(), Some(bytes_of(v)));
            }
        }
        prop_assert!(
            gone.iter().all(|(g, _)| data.contains_key(g)),
            "report names a key the secret does not have: {gone:?}"
        );
        let file = dir.join(format!("{prefix}{i}"));
        std::fs::write(&file, &bytes).unwrap();
        out.files.push(file);
        out.promised.push(promised);
    }
    Ok(out)
}

fn check(
    reader: &str,
    r: &Rendered,
    got: Vec<Option<Defined>>,
    work: &std::path::Path,
) -> Result<(), TestCaseError> {
    prop_assert!(!work.join("pwned").exists(), "{} ran a command", reader);
    prop_assert_eq!(got.len(), r.files.len());
    for ((file, want), got) in r.files.iter().zip(&r.promised).zip(got) {
        let view = String::from_utf8_lossy(&std::fs::read(file).unwrap()).into_owned();
        prop_assert_eq!(
            got.as_ref(),
            Some(want),
            "{} read {} differently from what it promises:\n{}",
            reader,
            file.display(),
            view
        );
    }
    Ok(())
}

fn config() -> Config {
    Config {
        cases: 5,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/views_readers.txt",
        ))),
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn every_reader_reads_exactly_what_the_views_promise(
        secrets in prop::collection::vec(secret(), 40)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        let env = render(dir.path(), &secrets, SecretFile::Env, "env")?;
        let sh = render(dir.path(), &secrets, SecretFile::Shell, "sh")?;
        let env_files: Vec<&std::path::Path> = env.files.iter().map(|f| f.as_path()).collect();
        let sh_files: Vec<&std::path::Path> = sh.files.iter().map(|f| f.as_path()).collect();
        for (name, shell) in [("bash", BASH), ("dash", DASH), ("zsh", ZSH)] {
            check(&format!("{name} on .env"), &env, shell_reads(shell, &work, &env_files, true), &work)?;
        }
        let some = |v: Vec<Defined>| v.into_iter().map(Some).collect::<Vec<_>>();
        check("python-dotenv", &env, some(python_dotenv(&env_files)), &work)?;
        check("node dotenv", &env, some(node_dotenv(&env_files)), &work)?;
        for (name, shell) in [("bash", BASH), ("dash", DASH), ("zsh", ZSH), ("busybox sh", BUSYBOX)] {
            check(&format!("{name} on .sh"), &sh, shell_reads(shell, &work, &sh_files, false), &work)?;
        }
    }
}

/// Every variable bash, dash, zsh and busybox sh define for themselves in
/// an empty environment is a name the views leave out: the list is built
/// from the shells, not only from their manuals.
#[test]
fn every_variable_a_shell_sets_itself_is_left_out() {
    let mut names: BTreeMap<String, &str> = BTreeMap::new();
    for (shell, args) in [
        ("bash", vec!["-c", "compgen -v"]),
        (
            "zsh",
            vec!["-c", "zmodload zsh/parameter; print -l ${(k)parameters}"],
        ),
        ("dash", vec!["-c", "set"]),
        ("busybox", vec!["sh", "-c", "set"]),
    ] {
        let mut cmd_args = vec!["-i", shell];
        cmd_args.extend(args);
        let out = String::from_utf8(output("env", &cmd_args)).unwrap();
        for line in out.lines() {
            let name = line.split('=').next().unwrap_or("");
            if is_variable_name(name) {
                names.insert(name.to_string(), shell);
            }
        }
    }
    assert!(names.len() > 100, "{names:?}");
    let missed: Vec<_> = names.iter().filter(|(n, _)| !is_dangerous(n)).collect();
    assert!(missed.is_empty(), "set by the shell, yet kept: {missed:?}");
}
