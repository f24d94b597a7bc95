//! Where the Vault token comes from, and holding it safely in memory.

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use zeroize::Zeroizing;

/// Where the token was found. Logged by name; the token never is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenOrigin {
    /// `--token-file PATH`
    Flag(PathBuf),
    /// An environment variable (`VAULT_TOKEN`, `BAO_TOKEN`).
    Env(&'static str),
    /// `~/.vault-token`, as written by `vault login`.
    HomeFile(PathBuf),
}

impl TokenOrigin {
    pub fn file(&self) -> Option<&Path> {
        match self {
            TokenOrigin::Flag(p) | TokenOrigin::HomeFile(p) => Some(p),
            TokenOrigin::Env(_) => None,
        }
    }
}

impl std::fmt::Display for TokenOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenOrigin::Flag(p) => write!(f, "--token-file {}", p.display()),
            TokenOrigin::Env(v) => write!(f, "${v}"),
            TokenOrigin::HomeFile(p) => write!(f, "{}", p.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(
        "no Vault token: set VAULT_TOKEN, pass --token-file, or run `vault login` to write ~/.vault-token"
    )]
    Missing,
    #[error("cannot read token file {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("token file {0} is empty")]
    Empty(PathBuf),
}

/// The token in use. Files are re-read on demand (Vault Agent and
/// `vault login` rewrite them in place).
pub struct TokenSource {
    origin: TokenOrigin,
    token: RwLock<Zeroizing<String>>,
}

impl std::fmt::Debug for TokenSource {
    /// The origin only: a stray `{:?}` must not log the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// Env lookup, injectable for tests.
pub type EnvFn<'a> = &'a dyn Fn(&str) -> Option<String>;

impl TokenSource {
    /// First that is set wins: `--token-file`, `VAULT_TOKEN`, `BAO_TOKEN`,
    /// `~/.vault-token`.
    pub fn resolve(
        token_file: Option<&Path>,
        env: EnvFn<'_>,
        home: Option<&Path>,
    ) -> Result<TokenSource, TokenError> {
        if let Some(p) = token_file {
            return Self::from_file(TokenOrigin::Flag(p.to_path_buf()));
        }
        for var in ["VAULT_TOKEN", "BAO_TOKEN"] {
            if let Some(t) = env(var).filter(|t| !t.trim().is_empty()) {
                return Ok(Self::fixed(TokenOrigin::Env(var), t.trim().to_string()));
            }
        }
        if let Some(home) = home {
            let p = home.join(".vault-token");
            if p.exists() {
                return Self::from_file(TokenOrigin::HomeFile(p));
            }
        }
        Err(TokenError::Missing)
    }

    pub fn fixed(origin: TokenOrigin, token: String) -> TokenSource {
        TokenSource {
            origin,
            token: RwLock::new(Zeroizing::new(token)),
        }
    }

    fn from_file(origin: TokenOrigin) -> Result<TokenSource, TokenError> {
        let token = read_token_file(origin.file().expect("file origin"))?;
        Ok(TokenSource {
            origin,
            token: RwLock::new(token),
        })
    }

    pub fn origin(&self) -> &TokenOrigin {
        &self.origin
    }

    pub fn current(&self) -> Zeroizing<String> {
        self.token.read().expect("token lock").clone()
    }

    /// Re-read a token file. Returns true when the token changed.
    pub fn reload(&self) -> Result<bool, TokenError> {
        let Some(path) = self.origin.file() else {
            return Ok(false);
        };
        let new = read_token_file(path)?;
        let mut cur = self.token.write().expect("token lock");
        if *cur == new {
            return Ok(false);
        }
        *cur = new;
        Ok(true)
    }
}

fn read_token_file(path: &Path) -> Result<Zeroizing<String>, TokenError> {
    let raw =
        Zeroizing::new(
            std::fs::read_to_string(path).map_err(|source| TokenError::Unreadable {
                path: path.to_path_buf(),
                source,
            })?,
        );
    let t = raw.trim();
    if t.is_empty() {
        return Err(TokenError::Empty(path.to_path_buf()));
    }
    Ok(Zeroizing::new(t.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_of_sources() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".vault-token"), "home-tok\n").unwrap();
        let flag = dir.path().join("flag");
        std::fs::write(&flag, " flag-tok \n").unwrap();
        let env_both = |k: &str| match k {
            "VAULT_TOKEN" => Some("v".to_string()),
            "BAO_TOKEN" => Some("b".to_string()),
            _ => None,
        };
        let env_bao = |k: &str| (k == "BAO_TOKEN").then(|| "b".to_string());
        let env_none = |_: &str| None;

        let t = TokenSource::resolve(Some(&flag), &env_both, Some(dir.path())).unwrap();
        assert_eq!(t.current().as_str(), "flag-tok");
        let t = TokenSource::resolve(None, &env_both, Some(dir.path())).unwrap();
        assert_eq!(t.current().as_str(), "v");
        assert_eq!(t.origin(), &TokenOrigin::Env("VAULT_TOKEN"));
        let t = TokenSource::resolve(None, &env_bao, Some(dir.path())).unwrap();
        assert_eq!(t.current().as_str(), "b");
        let t = TokenSource::resolve(None, &env_none, Some(dir.path())).unwrap();
        assert_eq!(t.current().as_str(), "home-tok");
        assert!(matches!(
            TokenSource::resolve(None, &env_none, Some(&dir.path().join("nope"))),
            Err(TokenError::Missing)
        ));
    }

    #[test]
    fn debug_hides_the_token() {
        let t = TokenSource::fixed(TokenOrigin::Env("VAULT_TOKEN"), "hvs.SECRET".into());
        let d = format!("{t:?}");
        assert!(d.contains("VAULT_TOKEN") && !d.contains("SECRET"), "{d}");
    }

    #[test]
    fn reload_sees_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tok");
        std::fs::write(&f, "one").unwrap();
        let t = TokenSource::resolve(Some(&f), &|_| None, None).unwrap();
        assert!(!t.reload().unwrap());
        std::fs::write(&f, "two\n").unwrap();
        assert!(t.reload().unwrap());
        assert_eq!(t.current().as_str(), "two");
    }
}
