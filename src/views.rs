//! The `.env` and `.sh` views: a secret's keys as lines other programs read
//! as variables. Whoever can write one secret chooses its keys and values,
//! so nothing from Vault is written outside a quoted value: a key that is
//! no variable name, or that shells and runtimes act on ([`is_dangerous`]),
//! is left out and named in a comment that holds printable ASCII only
//! (docs/semantics.md, docs/security.md; tests/e2e/dotenv.rs runs the readers).

use crate::wiped::{Bytes, SecretBuf};

/// `[A-Za-z_][A-Za-z0-9_]*`: what every shell and dotenv reader takes for a
/// variable name.
pub fn is_variable_name(k: &str) -> bool {
    let mut chars = k.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Names a shell, the dynamic loader or a language runtime acts on (runs a
/// command, loads code, changes what later commands run or where they
/// connect), or that a shell keeps for itself (read-only or dynamic), from
/// the documentation of bash, dash, zsh, busybox ash, ld.so, Node, Python,
/// Perl, Ruby, Java, git, ssh, OpenSSL and curl. Exact names.
#[rustfmt::skip]
const DANGEROUS_NAMES: &[&str] = &[
    // POSIX sh, bash, dash, busybox ash.
    "_", "BASH", "CDPATH", "CHILD_MAX", "COLUMNS", "COMPREPLY", "COPROC", "DIRSTACK",
    "EMACS", "ENV", "EUID", "EXECIGNORE", "FCEDIT", "FIGNORE", "FUNCNAME", "FUNCNEST",
    "GLOBIGNORE", "GLOBSORT", "GROUPS", "HISTCMD", "HISTCONTROL", "HISTFILE",
    "HISTFILESIZE", "HISTIGNORE", "HISTSIZE", "HISTTIMEFORMAT", "HOME", "HOSTFILE",
    "HOSTNAME", "HOSTTYPE", "IFS", "IGNOREEOF", "INPUTRC", "INSIDE_EMACS", "LINENO",
    "LINES", "MACHTYPE", "MAIL", "MAILCHECK", "MAILPATH", "MAPFILE", "OLDPWD", "OPTARG",
    "OPTERR", "OPTIND", "OSTYPE", "PATH", "PIPESTATUS", "POSIXLY_CORRECT", "PPID",
    "PROMPT_COMMAND", "PROMPT_DIRTRIM", "PS0", "PS1", "PS2", "PS3", "PS4", "PWD",
    "RANDOM", "REPLY", "SECONDS", "SHELL", "SHELLOPTS", "SHLVL", "SRANDOM", "TIMEFORMAT",
    "TMOUT", "TMPDIR", "UID", "USER", "LOGNAME", "EPOCHREALTIME", "EPOCHSECONDS",
    // zsh, upper case.
    "ARGC", "BAUD", "CORRECT_IGNORE", "CORRECT_IGNORE_FILE", "CPUTYPE", "DIRSTACKSIZE",
    "EGID", "ERRNO", "FPATH", "GID", "HISTCHARS", "HISTORY_IGNORE", "HOST",
    "KEYBOARD_HACK", "KEYTIMEOUT", "LISTMAX", "LOGCHECK", "MANPATH", "MATCH", "MBEGIN",
    "MEND", "MODULE_PATH", "NULLCMD", "POSTEDIT", "PROMPT", "PROMPT2", "PROMPT3",
    "PROMPT4", "PSVAR", "READNULLCMD", "REPORTMEMORY", "REPORTTIME", "RPROMPT",
    "RPROMPT2", "RPS1", "RPS2", "SAVEHIST", "SPROMPT", "STTY", "TIMEFMT", "TMPPREFIX",
    "TMPSUFFIX", "TRY_BLOCK_ERROR", "TRY_BLOCK_INTERRUPT", "TTY", "TTYIDLE", "USERNAME",
    "VENDOR", "WATCH", "WATCHFMT", "WORDCHARS", "ZBEEP", "ZDOTDIR",
    // zsh, lower case: arrays tied to the variables above, and the
    // shell's own tables (zsh/parameter).
    "aliases", "argv", "builtins", "cdpath", "commands", "dirstack", "epochtime", "errnos",
    "fignore", "fpath", "funcfiletrace", "funcsourcetrace", "funcstack", "functions",
    "functions_source", "functrace", "galiases", "histchars", "history", "historywords",
    "jobdirs", "jobstates", "jobtexts", "keymaps", "langinfo", "mailpath", "manpath",
    "mapfile", "match", "mbegin", "mend", "module_path", "modules", "nameddirs", "options",
    "parameters", "patchars", "path", "pipestatus", "prompt", "psvar", "reply", "reswords",
    "saliases", "signals", "status", "sysparams", "termcap", "terminfo", "userdirs",
    "usergroups", "watch", "widgets", "zsh_eval_context", "zsh_scheduled_events",
    // Terminal, editors and pagers other programs start.
    "TERM", "TERMCAP", "TERMINFO", "TERMINFO_DIRS", "EDITOR", "VISUAL", "PAGER",
    "MANPAGER", "LESS", "LESSOPEN", "LESSCLOSE", "LESSKEY", "BROWSER", "SUDO_ASKPASS",
    "SUDO_EDITOR", "SYSTEMD_EDITOR", "SYSTEMD_PAGER",
    // The C library: modules and files it loads.
    "GCONV_PATH", "GETCONF_DIR", "GLIBC_TUNABLES", "HOSTALIASES", "LOCALDOMAIN",
    "LOCPATH", "NLSPATH", "RES_OPTIONS", "RESOLV_HOST_CONF", "TZDIR", "LANG", "LANGUAGE",
    // Java.
    "CLASSPATH", "JDK_JAVA_OPTIONS", "_JAVA_OPTIONS", "MAVEN_OPTS", "GRADLE_OPTS",
    // Builds.
    "MAKEFLAGS", "MAKEFILES", "MFLAGS", "RUSTC", "RUSTC_WRAPPER", "RUSTFLAGS",
    "RUSTDOCFLAGS",
    // Where TLS, D-Bus, Docker and Kubernetes clients connect and what they run.
    "CURL_CA_BUNDLE", "CURL_HOME", "REQUESTS_CA_BUNDLE", "DBUS_SESSION_BUS_ADDRESS",
    "DOCKER_HOST", "DOCKER_CONFIG", "KUBECONFIG", "GNUPGHOME", "WGETRC", "SSLKEYLOGFILE",
    "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CA_BUNDLE",
    "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    // Where programs put temporary files (Python's tempfile, mktemp).
    "TEMP", "TMP",
    // make's implicit rules run these programs (`$(CC) $(CFLAGS) …`).
    "AR", "AS", "CC", "CO", "CPP", "CTANGLE", "CWEAVE", "CXX", "FC", "GET", "LD", "LEX",
    "LINT", "M2C", "M4", "NM", "OBJC", "OBJCOPY", "OBJCXX", "OBJDUMP", "PC", "RANLIB",
    "RM", "STRIP", "TANGLE", "TEX", "TEXI2DVI", "WEAVE", "YACC", "LDLIBS", "LOADLIBES",
    // Editors' start-up commands, and where graphical programs connect.
    "EXINIT", "MYVIMRC", "MYGVIMRC", "HGRCPATH", "DISPLAY", "WAYLAND_DISPLAY",
    "XAUTHORITY", "PHPRC",
];

/// Prefixes of names the same programs act on (every `LD_*` the loader
/// reads, every `GIT_*` git reads, and the families that keep growing).
#[rustfmt::skip]
const DANGEROUS_PREFIXES: &[&str] = &[
    "BASH", "COMP_", "READLINE_", "HIST", "ZSH_", "ZLE_", "LC_",
    "LD_", "DYLD_", "MALLOC_", "NODE_", "PYTHON", "PIP_", "PERL", "RUBY",
    "GEM_", "BUNDLE_", "JAVA_", "GIT_", "SSH_", "XDG_", "OPENSSL_", "SSL_CERT_", "CARGO_",
    "RUSTUP_", "RUSTC", "RUSTDOC", "VAULT_", "BAO_", "dis_",
    // make (`MAKEFLAGS`, `MAKEFILES`, `MAKESHELL`…), the Go toolchain and
    // Google's client libraries (`GOFLAGS`, `GOPROXY`, `GOTOOLCHAIN`,
    // `GOOGLE_APPLICATION_CREDENTIALS`…), cgo.
    "MAKE", "GNUMAKE", "GO", "CGO_",
    // Editors and pagers: start-up commands and what they run.
    "VIM", "GVIM", "LESS", "SYSTEMD_", "GH_", "CVS", "SVN_",
    // Runtimes' start-up code, module paths and options.
    "LUA_", "ERL_", "ELIXIR_", "PHP_", "DOTNET_", "COREHOST_", "QT_", "GTK_", "GST_",
    // Tools that read their configuration, or connect, where these say.
    "DOTENV_", "COMPOSE_", "TF_", "STARSHIP_", "CONSUL_", "NOMAD_", "AWS_ENDPOINT_URL",
    "AWS_CONTAINER_",
];

/// Suffixes of whole families: every `*FLAGS` a build passes to a compiler
/// or tool (`CFLAGS`, `LDFLAGS`, `GOFLAGS`…), the editor, pager or browser
/// any program starts (`KUBE_EDITOR`, `HGEDITOR`, `GH_PAGER`…), the options
/// a runtime takes from the environment (`MAVEN_OPTS`, `ELIXIR_ERL_OPTIONS`)
/// and where a tool reads its configuration (`TF_CLI_CONFIG_FILE`).
#[rustfmt::skip]
const DANGEROUS_SUFFIXES: &[&str] = &[
    "FLAGS", "EDITOR", "PAGER", "BROWSER", "_OPTS", "_OPTIONS", "CONFIG", "CONFIG_FILE",
    "_FOR_BUILD",
];

/// Names exempt from a prefix above: read by the programs as plain
/// settings, and common keys of an application's own environment.
const SAFE_NAMES: &[&str] = &["NODE_ENV"];

/// npm reads its `npm_config_*` settings in either case; one names the
/// shell its scripts run with.
const NPM_CONFIG: &str = "NPM_CONFIG_";

/// Proxy variables, which programs read in either case (`https_proxy`,
/// `HTTPS_PROXY`): they decide where every later request goes.
const PROXY_NAMES: &[&str] = &[
    "http_proxy",
    "https_proxy",
    "ftp_proxy",
    "all_proxy",
    "no_proxy",
];

/// Whether `.env` and `.sh` leave `name` out because a shell, the loader or
/// a runtime acts on it (docs/security.md, "Names the .env and shell views
/// leave out").
pub fn is_dangerous(name: &str) -> bool {
    if SAFE_NAMES.contains(&name) {
        return false;
    }
    DANGEROUS_NAMES.contains(&name)
        || DANGEROUS_PREFIXES.iter().any(|p| name.starts_with(p))
        || DANGEROUS_SUFFIXES.iter().any(|x| name.ends_with(x))
        || name.to_ascii_uppercase().starts_with(NPM_CONFIG)
        || PROXY_NAMES.iter().any(|p| name.eq_ignore_ascii_case(p))
}

/// How one value is written in `.env` so that every common reader gets its
/// exact bytes: POSIX shells (`set -a; . .env`), python-dotenv and Node's
/// `dotenv` (docs/semantics.md has the table, tests/e2e/dotenv.rs runs them).
#[derive(Debug, PartialEq, Eq)]
enum EnvQuote {
    /// `K=v`: also what `docker run --env-file` reads literally.
    Bare,
    /// `K='v'`: literal everywhere but for python-dotenv's `\\`, `\'` and
    /// `${…}`, and a backslash just before the closing quote (both dotenv
    /// readers take it for an escaped quote).
    Single,
    /// `K="v"`: for values with `'`; no reader agrees on `$`, backquote or
    /// backslash inside.
    Double,
    /// No form reads back the same everywhere.
    None,
}

fn env_quote(v: &[u8]) -> EnvQuote {
    let has = |n: &[u8]| v.windows(n.len()).any(|w| w == n);
    // NUL: no shell variable holds it. CR: Node turns CR LF into LF before
    // parsing, and python-dotenv drops it. `${…}`: python-dotenv expands
    // it in any quotes.
    let interpolated = v
        .windows(2)
        .position(|w| w == b"${")
        .is_some_and(|i| v[i..].contains(&b'}'));
    if v.contains(&0) || v.contains(&b'\r') || interpolated {
        return EnvQuote::None;
    }
    let bare = |b: &u8| b.is_ascii_alphanumeric() || b"_-./:@%+,=".contains(b);
    // zsh expands an unquoted `=cmd` to the command's path, at a word's
    // start and after a `:` in an assignment (`A==ls`, `A=x:=ls`).
    let zsh_equals = v.first() == Some(&b'=') || has(b":=");
    if v.iter().all(bare) && !zsh_equals {
        EnvQuote::Bare
    } else if !v.contains(&b'\'') && !has(b"\\\\") && v.last() != Some(&b'\\') {
        EnvQuote::Single
    } else if !v.iter().any(|b| b"\"$`\\".contains(b)) {
        EnvQuote::Double
    } else {
        EnvQuote::None
    }
}

/// Why a key is left out of a view, in the order the report lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum LeftOut {
    NotAName,
    Dangerous,
    Value,
}

impl LeftOut {
    fn reason(self, view: View) -> &'static str {
        match (self, view) {
            (LeftOut::NotAName, _) => "not a variable name; see .json",
            (LeftOut::Dangerous, _) => {
                "a name shells or runtimes act on; see .json and docs/security.md"
            }
            (LeftOut::Value, View::Env) => "a value .env readers cannot agree on; see .sh, .json",
            (LeftOut::Value, View::Shell) => {
                "a value holding NUL, which no shell variable holds; see .json"
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    Env,
    Shell,
}

/// `.env`: `KEY=value` lines, each value quoted as [`env_quote`] chooses.
pub fn render_env(entries: &[(String, Bytes)]) -> Bytes {
    render(entries, View::Env)
}

/// `.sh`: `export KEY='value'` lines, POSIX single quotes with each `'`
/// written `'\''`, which every POSIX shell reads back byte for byte.
pub fn render_shell(entries: &[(String, Bytes)]) -> Bytes {
    render(entries, View::Shell)
}

fn render(entries: &[(String, Bytes)], view: View) -> Bytes {
    let mut left_out: Vec<(LeftOut, &str)> = Vec::new();
    let mut out = SecretBuf::default();
    let mut lines = SecretBuf::default();
    for (k, v) in entries {
        let why = if !is_variable_name(k) {
            Some(LeftOut::NotAName)
        } else if is_dangerous(k) {
            Some(LeftOut::Dangerous)
        } else {
            None
        };
        if let Some(why) = why {
            left_out.push((why, k));
            continue;
        }
        match view {
            View::Env => {
                let quote: &[u8] = match env_quote(v) {
                    EnvQuote::None => {
                        left_out.push((LeftOut::Value, k));
                        continue;
                    }
                    EnvQuote::Bare => b"",
                    EnvQuote::Single => b"'",
                    EnvQuote::Double => b"\"",
                };
                lines.extend(k.as_bytes());
                lines.extend(b"=");
                lines.extend(quote);
                lines.extend(v);
                lines.extend(quote);
            }
            View::Shell => {
                if v.contains(&0) {
                    left_out.push((LeftOut::Value, k));
                    continue;
                }
                lines.extend(b"export ");
                lines.extend(k.as_bytes());
                lines.extend(b"='");
                for (i, part) in v.split(|b| *b == b'\'').enumerate() {
                    if i > 0 {
                        lines.extend(b"'\\''");
                    }
                    lines.extend(part);
                }
                lines.extend(b"'");
            }
        }
        lines.extend(b"\n");
    }
    left_out.sort();
    for (why, group) in group_by_reason(&left_out) {
        let names: Vec<String> = group.iter().map(|k| ascii_quoted(k)).collect();
        out.extend(
            format!(
                "# vaultfs: left out ({}): {}\n",
                why.reason(view),
                names.join(", ")
            )
            .as_bytes(),
        );
    }
    out.extend(&lines.0);
    out.0
}

fn group_by_reason<'a>(left_out: &[(LeftOut, &'a str)]) -> Vec<(LeftOut, Vec<&'a str>)> {
    let mut groups: Vec<(LeftOut, Vec<&str>)> = Vec::new();
    for &(why, k) in left_out {
        match groups.last_mut() {
            Some((w, ks)) if *w == why => ks.push(k),
            _ => groups.push((why, vec![k])),
        }
    }
    groups
}

/// `k` as a JSON string of printable ASCII only: `"` and `\` escaped, every
/// other character outside `' '..='~'` written `\uXXXX` (UTF-16, as JSON
/// does). No reader finds a line end in it: not LF, CR, NEL, VT, FF, NUL,
/// nor U+2028/U+2029, which Node's `dotenv` takes for line ends.
fn ascii_quoted(k: &str) -> String {
    let mut out = String::with_capacity(k.len() + 2);
    out.push('"');
    for c in k.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            other => {
                let mut units = [0u16; 2];
                for u in other.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroize::Zeroizing;

    fn entries(kv: &[(&str, &str)]) -> Vec<(String, Bytes)> {
        let mut e: Vec<(String, Bytes)> = kv
            .iter()
            .map(|(k, v)| (k.to_string(), Zeroizing::new(v.as_bytes().to_vec())))
            .collect();
        e.sort_by(|a, b| a.0.cmp(&b.0));
        e
    }

    fn text(b: Bytes) -> String {
        String::from_utf8(b.to_vec()).unwrap()
    }

    /// The names a report line lists, parsed back from its JSON.
    fn reported(view: &str, reason: &str) -> Vec<String> {
        let Some(line) = view
            .lines()
            .find(|l| l.starts_with("# vaultfs: left out (") && l.contains(reason))
        else {
            return Vec::new();
        };
        let list = line.split_once("): ").unwrap().1;
        serde_json::from_str(&format!("[{list}]")).unwrap()
    }

    #[test]
    fn env_quotes_and_leaves_out() {
        let e = entries(&[
            ("A", "$HOME `x`\nline2"),
            ("Q", "it's \"so\"\n"),
            ("bad-name", "x"),
            ("_ok1", "7"),
            ("1x", "y"),
            ("N", "a\u{0}b"),
            ("MIX", "it's $HOME"),
            ("P", "a.b:c/d@e"),
            ("E", ""),
            ("PATH", "/evil"),
        ]);
        let env = text(render_env(&e));
        assert!(env.starts_with("# vaultfs: left out"), "{env}");
        assert_eq!(reported(&env, "not a variable name"), ["1x", "bad-name"]);
        assert_eq!(reported(&env, "act on"), ["PATH"]);
        assert_eq!(reported(&env, "cannot agree"), ["MIX", "N", "Q"]);
        assert!(env.contains("\nA='$HOME `x`\nline2'\n"), "{env}");
        assert!(env.contains("\n_ok1=7\n"), "{env}");
        assert!(env.contains("\nP=a.b:c/d@e\n"), "{env}");
        assert!(env.contains("\nE=\n"), "{env}");
        assert!(!env.contains("/evil"), "{env}");
    }

    #[test]
    fn shell_quotes_every_value_but_nul() {
        let e = entries(&[
            ("Q", "it's \"so\" $HOME `id` \\ ${X}\r\n"),
            ("N", "a\u{0}b"),
            ("E", ""),
            ("PS1", "$(id)"),
        ]);
        let sh = text(render_shell(&e));
        assert!(
            sh.contains("\nexport Q='it'\\''s \"so\" $HOME `id` \\ ${X}\r\n'\n"),
            "{sh}"
        );
        assert!(sh.contains("\nexport E=''\n"), "{sh}");
        assert_eq!(reported(&sh, "NUL"), ["N"]);
        assert_eq!(reported(&sh, "act on"), ["PS1"]);
        assert!(!sh.contains("$(id)"), "{sh}");
    }

    #[test]
    fn env_quote_per_value() {
        use EnvQuote::*;
        for (v, want) in [
            ("plain-1.2:3/x@y%z+,=", Bare),
            ("=ls", Single),
            ("a:=ls", Single),
            ("a=b", Bare),
            ("", Bare),
            ("with space", Single),
            ("$HOME and `cmd` \"q\" # not a comment", Single),
            ("trailing\\", None),
            ("a\\b", Single),
            ("multi\nline", Single),
            ("ünï ☃", Single),
            ("it's", Double),
            ("it's\nmulti", Double),
            ("it's $HOME", None),
            ("it's \"q\"", None),
            ("it's a\\b", None),
            ("two\\\\slashes", None),
            ("${PATH}", None),
            ("a${X}b", None),
            ("cr\r\nlf", None),
            ("nul\0", None),
        ] {
            assert_eq!(env_quote(v.as_bytes()), want, "{v:?}");
        }
        // `${` alone is no interpolation.
        assert_eq!(env_quote(b"a${b"), Single);
    }

    /// Every line terminator a reader knows, in a left-out key, stays
    /// inside the one report line, escaped: the report is printable ASCII.
    #[test]
    fn the_report_is_printable_ascii() {
        let keys = [
            "x\nEVIL=1",
            "x\rEVIL=1",
            "x\r\nEVIL=1",
            "x\u{2028}NODE_OPTIONS=--require=/tmp/evil.js #",
            "x\u{2029}EVIL=1",
            "x\u{85}EVIL=1",
            "x\u{b}EVIL=1",
            "x\u{c}EVIL=1",
            "x\0EVIL=1",
            "x\u{7f}\u{1b}[31m \"q\" \\ 𝄞 é",
        ];
        let e: Vec<(&str, &str)> = keys.iter().map(|k| (*k, "v")).collect();
        for view in [render_env(&entries(&e)), render_shell(&entries(&e))] {
            assert!(
                view.iter()
                    .all(|b| (b' '..=b'~').contains(b) || *b == b'\n'),
                "{view:?}"
            );
            let view = text(view);
            assert_eq!(view.lines().count(), 1, "{view}");
            let mut want: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
            want.sort();
            assert_eq!(reported(&view, "not a variable name"), want);
        }
    }

    #[test]
    fn dangerous_names() {
        for n in [
            "PATH",
            "PS1",
            "PROMPT_COMMAND",
            "BASH_ENV",
            "BASH_FUNC_x",
            "ENV",
            "IFS",
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "NODE_OPTIONS",
            "PYTHONSTARTUP",
            "PERL5OPT",
            "RUBYOPT",
            "JAVA_TOOL_OPTIONS",
            "_JAVA_OPTIONS",
            "GIT_SSH_COMMAND",
            "GIT_CONFIG_COUNT",
            "UID",
            "EUID",
            "PPID",
            "https_proxy",
            "HTTPS_PROXY",
            "npm_config_script_shell",
            "path",
            "VAULT_ADDR",
            "LC_ALL",
            "CC",
            "VIMINIT",
            "GNUMAKEFLAGS",
            "RUSTC_WORKSPACE_WRAPPER",
            "TEMP",
            "TMP",
            "SYSTEMD_PAGERSECURE",
            "EXINIT",
            "GVIMINIT",
            "KUBE_EDITOR",
            "HGEDITOR",
            "SVN_EDITOR",
            "CVSEDITOR",
            "GH_EDITOR",
            "GH_PAGER",
            "GH_BROWSER",
            "LESSEDIT",
            "SYSTEMD_LESS",
            "CXX",
            "CPP",
            "LD",
            "AR",
            "FC",
            "CFLAGS",
            "LDFLAGS",
            "GOFLAGS",
            "GOPROXY",
            "GOSUMDB",
            "GOINSECURE",
            "GOTOOLCHAIN",
            "LUA_INIT",
            "LUA_INIT_5_4",
            "LUA_PATH",
            "LUA_CPATH",
            "ERL_AFLAGS",
            "ERL_ZFLAGS",
            "ERL_FLAGS",
            "ELIXIR_ERL_OPTIONS",
            "SSLKEYLOGFILE",
            "CONSUL_HTTP_ADDR",
            "NOMAD_ADDR",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3",
            "DOTENV_CONFIG_PATH",
            "DOTENV_KEY",
            "COMPOSE_FILE",
            "PHPRC",
            "PHP_INI_SCAN_DIR",
            "DOTNET_STARTUP_HOOKS",
            "COREHOST_TRACE",
            "QT_PLUGIN_PATH",
            "GTK_MODULES",
            "GST_PLUGIN_PATH",
            "AWS_CONFIG_FILE",
            "AWS_SHARED_CREDENTIALS_FILE",
            "GOOGLE_APPLICATION_CREDENTIALS",
            "TF_CLI_CONFIG_FILE",
            "STARSHIP_CONFIG",
            "DISPLAY",
            "WAYLAND_DISPLAY",
            "XAUTHORITY",
        ] {
            assert!(is_dangerous(n), "{n}");
        }
        for n in [
            "NODE_ENV",
            "GITHUB_TOKEN",
            "API_KEY",
            "password",
            "DATABASE_URL",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_ACCESS_KEY_ID",
            "STRIPE_KEY",
            "CC_NUMBER",
        ] {
            assert!(!is_dangerous(n), "{n}");
        }
    }

    /// docs/security.md names every family the code leaves out, so a
    /// reader can check a name against the doc alone.
    #[test]
    fn every_family_is_in_the_threat_model() {
        let doc = include_str!("../docs/security.md");
        let section = doc
            .split("## Names the .env and shell views leave out")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("the section");
        for p in DANGEROUS_PREFIXES {
            assert!(section.contains(&format!("`{p}*`")), "prefix {p}");
        }
        for x in DANGEROUS_SUFFIXES {
            assert!(section.contains(&format!("`*{x}`")), "suffix {x}");
        }
    }
}
