//! The programs people read the `.env` and `.sh` views with, run for real:
//! bash, dash, zsh and busybox sh (`. file`), python-dotenv's
//! `dotenv_values` and Node's `dotenv.parse` (scripts/setup installs them).
//! Each runs once over many files, so a batch costs one process per reader.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// What one reader made of one file: each variable it defined (or, for a
/// shell, changed or unset: `None`) with its exact bytes.
pub type Defined = BTreeMap<String, Option<Vec<u8>>>;

/// The shells, as `program args…`.
pub const BASH: &[&str] = &["bash"];
pub const DASH: &[&str] = &["dash"];
pub const ZSH: &[&str] = &["zsh"];
pub const BUSYBOX: &[&str] = &["busybox", "sh"];

/// Runs `program args…` and returns its stdout, failing loudly.
pub fn output(program: &str, args: &[&str]) -> Vec<u8> {
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

fn env_of(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    bytes
        .split(|b| *b == 0)
        .filter(|e| !e.is_empty())
        .map(|e| {
            let i = e.iter().position(|b| *b == b'=').expect("NAME=value");
            (
                String::from_utf8_lossy(&e[..i]).into_owned(),
                e[i + 1..].to_vec(),
            )
        })
        .collect()
}

/// Each file (an absolute path) sourced by `shell` in a subshell of its
/// own (with `set -a` when `allexport`, as `.env` is read), from the
/// working directory `work`: the environment a program started next would
/// get, compared with the shell's own before. `None` for a file the shell
/// did not read to its end.
pub fn shell_reads(
    shell: &[&str],
    work: &Path,
    files: &[&Path],
    allexport: bool,
) -> Vec<Option<Defined>> {
    let (on, off) = if allexport {
        ("set -a", "set +a")
    } else {
        (":", ":")
    };
    // The positional parameters hold the file and its number: a file may
    // set any variable, but not those. A file that stops its subshell
    // leaves no `.ok`: its result is `None`, the batch goes on.
    let script = format!(
        "cd \"$1\" || exit 1; shift; /usr/bin/env -0 > .base; i=0
         for f in \"$@\"; do
           i=$((i+1))
           ( set -- \"$f\" \"$i\"; exec > \"$2.out\" 2> \"$2.err\"; {on}; . \"$1\" || exit 1; {off}; /usr/bin/env -0 && : > \"$2.ok\" )
         done
         exit 0"
    );
    let mut args: Vec<&str> = shell[1..].to_vec();
    args.extend(["-c", &script, "_", work.to_str().unwrap()]);
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    output(shell[0], &args);
    let base = env_of(&std::fs::read(work.join(".base")).unwrap());
    (1..=files.len())
        .map(|i| {
            let [out, err, ok] = ["out", "err", "ok"].map(|e| work.join(format!("{i}.{e}")));
            let read = ok.exists().then(|| env_of(&std::fs::read(&out).unwrap()));
            for f in [out, err, ok] {
                let _ = std::fs::remove_file(f);
            }
            let after = read?;
            let mut defined: Defined = after
                .iter()
                .filter(|(k, v)| base.get(*k) != Some(v))
                .map(|(k, v)| (k.clone(), Some(v.clone())))
                .collect();
            for k in base.keys().filter(|k| !after.contains_key(*k)) {
                defined.insert(k.clone(), None);
            }
            Some(defined)
        })
        .collect()
}

fn parsed(json: &[u8]) -> Vec<Defined> {
    let all: Vec<BTreeMap<String, Option<String>>> = serde_json::from_slice(json).unwrap();
    all.into_iter()
        .map(|m| {
            m.into_iter()
                .map(|(k, v)| (k, v.map(String::into_bytes)))
                .collect()
        })
        .collect()
}

/// python-dotenv's `dotenv_values` of each file.
pub fn python_dotenv(files: &[&Path]) -> Vec<Defined> {
    let code = "import json, sys\nfrom dotenv import dotenv_values\n\
                print(json.dumps([dotenv_values(p) for p in sys.argv[1:]]))";
    let mut args = vec!["-c", code];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    parsed(&output("python3", &args))
}

/// Node's `dotenv.parse` of each file (what `dotenv.config()` loads).
pub fn node_dotenv(files: &[&Path]) -> Vec<Defined> {
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
         process.stdout.write(JSON.stringify(process.argv.slice(1).map(f => d.parse(fs.readFileSync(f)))));"
    );
    let mut args = vec!["-e", code.as_str()];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    parsed(&output("node", &args))
}

/// The keys a view's `# vaultfs: left out (…): "k", …` lines name, with
/// each line's reason. Panics on a report line that is not printable ASCII.
pub fn left_out(view: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in view.split(|b| *b == b'\n') {
        if !line.starts_with(b"# vaultfs: left out (") {
            continue;
        }
        assert!(
            line.iter().all(|b| (b' '..=b'~').contains(b)),
            "report line not printable ASCII: {:?}",
            String::from_utf8_lossy(line)
        );
        let line = std::str::from_utf8(line).unwrap();
        let (reason, list) = line.split_once("): ").unwrap();
        let keys: Vec<String> = serde_json::from_str(&format!("[{list}]")).unwrap();
        out.extend(keys.into_iter().map(|k| (k, reason.to_string())));
    }
    out
}
