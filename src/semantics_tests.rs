//! The rules of docs/semantics.md (and docs/reliability.md, "Stale-if-error")
//! about permissions, outages and caching, checked against [`Tree`] over the
//! in-memory store: no FUSE, no Vault. Each test is named after its rule and
//! cites the section that states it.

use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use serde_json::{json, Value};

use crate::cache::CachePolicy;
use crate::error::{FsError, VaultError};
use crate::store::memory::{Call, Fault, MemoryStore, Op};
use crate::tree::{Entry, Kind, Tree, ROOT_INO};

const LONG: Duration = Duration::from_secs(60);
/// A TTL the tests wait out.
const SHORT: Duration = Duration::from_millis(100);

type T = Arc<Tree<MemoryStore>>;

/// `secret/` (KV v2): `coder` (the README's read-only example), and
/// `team/app`, a secret and a folder at once whose key `db` is shadowed by
/// its child secret `db`.
fn vault() -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::new());
    store
        .kv2("secret")
        .put("secret", "coder", json!({"GITHUB_TOKEN": "ghp_x"}))
        .put(
            "secret",
            "team/app",
            json!({"user": "svc", "db": "shadowed"}),
        )
        .put(
            "secret",
            "team/app/db",
            json!({"password": "hunter2", "port": 5432}),
        );
    store
}

fn policy(ttl: Duration, stale_if_error: Duration) -> CachePolicy {
    CachePolicy {
        ttl,
        stale_if_error,
        max_entries: 1000,
        max_bytes: 1 << 24,
    }
}

fn tree(store: &Arc<MemoryStore>, ttl: Duration, stale_if_error: Duration) -> T {
    Arc::new(Tree::new(store.clone(), policy(ttl, stale_if_error)))
}

/// A tree whose directory reads prefetch their children, as the daemon's.
fn prefetching(store: &Arc<MemoryStore>, ttl: Duration) -> T {
    Arc::new(
        Tree::new(store.clone(), policy(ttl, LONG))
            .with_prefetch(Some(crate::slots::Slots::new(32))),
    )
}

/// The Coder module's read-only policy: [`vault`] with every LIST refused.
fn read_only() -> (Arc<MemoryStore>, T) {
    let store = vault();
    store.fail_below(Op::List, "secret", "", VaultError::Forbidden);
    let t = tree(&store, LONG, LONG);
    (store, t)
}

/// The entry at `path` (`secret/team/app`), looked up from the root one
/// name at a time, as the kernel does.
async fn at(tree: &T, path: &str) -> Result<Entry, FsError> {
    let mut e = tree.getattr(ROOT_INO)?;
    for name in path.split('/').filter(|n| !n.is_empty()) {
        e = tree.lookup(e.ino, name.as_bytes()).await?;
    }
    Ok(e)
}

/// The content of the file at `path`.
async fn cat(tree: &T, path: &str) -> Result<String, FsError> {
    let (secret, file) = tree.content(at(tree, path).await?.ino)?;
    let bytes = secret.content(&file).expect("a file's content");
    Ok(String::from_utf8(bytes.to_vec()).unwrap())
}

/// The names in the directory at `path`, sorted, directories with a `/`;
/// no prefetch.
async fn ls(tree: &T, path: &str) -> Result<Vec<String>, FsError> {
    let ino = at(tree, path).await?.ino;
    let listing = tree.readdir(ino, false).await?;
    let mut names: Vec<String> = listing
        .iter()
        .map(|(n, e)| match e.kind {
            Kind::Dir => format!("{n}/"),
            Kind::File => n.clone(),
        })
        .collect();
    names.sort();
    Ok(names)
}

/// The errno an operation fails with, through the one mapping.
fn errno<V: std::fmt::Debug>(r: Result<V, FsError>) -> libc::c_int {
    r.expect_err("an error").errno()
}

/// (operation, path) of every call, in order.
fn requests(store: &MemoryStore) -> Vec<(Op, String)> {
    let calls = store.calls().into_iter();
    calls.map(|Call { op, path, .. }| (op, path)).collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The transient errors of docs/semantics.md "Errors" (and what the
/// client makes of a timeout, a refused connection and an election).
fn transient() -> Vec<VaultError> {
    let http = |status| VaultError::Http {
        status,
        message: String::new(),
    };
    vec![
        http(500),
        http(503),
        VaultError::Sealed,
        VaultError::NoLeader,
        VaultError::RateLimited,
        VaultError::Timeout(Duration::from_secs(10)),
        VaultError::Connect("connection refused".into()),
    ]
}

// ---- Lookup without LIST ----

// semantics.md "Lookup without LIST": the Coder read-only policy.
#[tokio::test]
async fn without_list_a_token_reads_a_secret_it_knows_the_path_of() {
    let (_, t) = read_only();
    assert_eq!(cat(&t, "secret/coder/GITHUB_TOKEN").await.unwrap(), "ghp_x");
    // Through a folder nobody may list, too.
    assert_eq!(
        cat(&t, "secret/team/app/db/password").await.unwrap(),
        "hunter2"
    );
    assert_eq!(errno(ls(&t, "secret").await), libc::EACCES);
}

// semantics.md "Lookup without LIST": a non-empty LIST of `name/` is a directory.
#[tokio::test]
async fn without_list_of_the_parent_a_listable_child_folder_is_a_directory() {
    let store = vault();
    store.fail(Op::List, "secret", "", VaultError::Forbidden);
    let t = tree(&store, LONG, LONG);
    assert_eq!(at(&t, "secret/team").await.unwrap().kind, Kind::Dir);
    assert_eq!(ls(&t, "secret/team").await.unwrap(), ["app/"]);
    // Both requests can tell: no secret, no folder.
    assert_eq!(errno(at(&t, "secret/nothing").await), libc::ENOENT);
}

// semantics.md "Lookup without LIST": both denied, inside a plain folder → a folder.
#[tokio::test]
async fn without_list_an_unknown_name_in_a_plain_folder_is_an_unlistable_folder() {
    let (_, t) = read_only();
    let e = at(&t, "secret/team/no-such-name").await.unwrap();
    assert_eq!(e.kind, Kind::Dir);
    assert_eq!(
        errno(ls(&t, "secret/team/no-such-name").await),
        libc::EACCES
    );
}

// semantics.md "Lookup without LIST": every question refused (an expired
// token) → EACCES, never a directory, real secrets and their keys included.
#[tokio::test]
async fn with_every_question_refused_a_name_is_eacces_not_a_directory() {
    let (store, _) = read_only();
    store.fail_below(Op::Read, "secret", "", VaultError::Forbidden);
    let t = tree(&store, LONG, LONG);
    for path in [
        "secret/team",
        "secret/team/app/db/password",
        "secret/coder/GITHUB_TOKEN",
        "secret/no-such-name",
    ] {
        assert_eq!(errno(at(&t, path).await), libc::EACCES, "{path}");
    }
}

// semantics.md "Lookup without LIST": both denied, inside a readable secret → ENOENT.
#[tokio::test]
async fn without_list_an_unknown_name_in_a_readable_secret_is_enoent() {
    let (_, t) = read_only();
    assert_eq!(
        errno(at(&t, "secret/coder/NO_SUCH_KEY").await),
        libc::ENOENT
    );
}

// semantics.md "Lookup without LIST": a readable secret whose folder cannot be listed.
#[tokio::test]
async fn a_readable_secret_whose_folder_cannot_be_listed_shows_its_key_files() {
    let store = vault();
    store.fail(Op::List, "secret", "team/app", VaultError::Forbidden);
    let t = tree(&store, LONG, LONG);
    // Its keys (`db` among them: no child folder to shadow it), no children.
    let want = [".env", ".json", ".sh", "db", "user"];
    assert_eq!(ls(&t, "secret/team/app").await.unwrap(), want);
    // The same with no LIST allowed anywhere.
    store.fail_below(Op::List, "secret", "", VaultError::Forbidden);
    let t = tree(&store, LONG, LONG);
    let want = [".env", ".json", ".sh", "GITHUB_TOKEN"];
    assert_eq!(ls(&t, "secret/coder").await.unwrap(), want);
}

// semantics.md "Names": `%`, `/` and NUL are percent-encoded, `.` and `..` escaped, empty names left out.
#[tokio::test]
async fn names_are_percent_encoded_and_unshowable_ones_left_out() {
    let store = vault();
    let data = json!({"a/b": "1", "50%": "2", ".": "3", "..": "4", "nul\u{0}": "5", "": "6"});
    store.put("secret", "odd%name", data);
    let t = tree(&store, LONG, LONG);
    assert!(ls(&t, "secret")
        .await
        .unwrap()
        .contains(&"odd%25name/".to_string()));
    let want = [
        "%2E", "%2E%2E", ".env", ".json", ".sh", "50%25", "a%2Fb", "nul%00",
    ];
    assert_eq!(ls(&t, "secret/odd%25name").await.unwrap(), want);
    assert_eq!(cat(&t, "secret/odd%25name/a%2Fb").await.unwrap(), "1");
    assert_eq!(cat(&t, "secret/odd%25name/%2E%2E").await.unwrap(), "4");
    // A name no Vault name encodes to does not exist.
    assert_eq!(errno(at(&t, "secret/odd%name").await), libc::ENOENT);
}

// semantics.md "Names": dot names and NUL are ENOENT as folders, even where LIST is refused.
#[tokio::test]
async fn dot_and_nul_names_are_enoent_even_where_list_is_refused() {
    let store = vault();
    store.list_entry("secret", "team/..").fail_below(
        Op::List,
        "secret",
        "team",
        VaultError::Forbidden,
    );
    let t = tree(&store, LONG, LONG);
    for name in ["%2E", "%2E%2E", "a%00b", "%41", "."] {
        let path = format!("secret/team/{name}");
        assert_eq!(errno(at(&t, &path).await), libc::ENOENT, "{name}");
    }
    // A LIST key `..` is left out of its folder.
    assert_eq!(ls(&t, "secret").await.unwrap(), ["coder/", "team/"]);
}

// ---- Errors ----

// semantics.md "Errors": 403 → EACCES for a denied secret's keys.
#[tokio::test]
async fn the_keys_of_a_secret_vault_denies_are_eacces() {
    let store = vault();
    store.fail(Op::Read, "secret", "team/app/db", VaultError::Forbidden);
    let t = tree(&store, LONG, LONG);
    assert_eq!(at(&t, "secret/team/app/db").await.unwrap().kind, Kind::Dir);
    let key = at(&t, "secret/team/app/db/password").await;
    assert_eq!(errno(key), libc::EACCES);
}

// semantics.md "Errors": 404 → ENOENT for a name that does not exist.
#[tokio::test]
async fn a_missing_name_is_enoent() {
    let t = tree(&vault(), LONG, LONG);
    for path in [
        "nomount",
        "secret/nothing",
        "secret/team/nothing",
        "secret/coder/NOTHING",
        "secret/team/app/db/.versions/9",
    ] {
        assert_eq!(errno(at(&t, path).await), libc::ENOENT, "{path}");
    }
}

// semantics.md "Errors": 403 → EACCES, 404 → ENOENT, everything else → EIO (cold).
#[tokio::test]
async fn a_cold_read_maps_403_to_eacces_404_to_enoent_and_transient_errors_to_eio() {
    let mut cases = vec![
        (VaultError::Forbidden, libc::EACCES),
        (VaultError::NotFound, libc::ENOENT),
        (VaultError::BadResponse("junk".into()), libc::EIO),
    ];
    cases.extend(transient().into_iter().map(|e| (e, libc::EIO)));
    for (e, want) in cases {
        // A secret's read.
        let store = vault();
        store.fail(Op::Read, "secret", "coder", e.clone());
        let t = tree(&store, LONG, LONG);
        let got = errno(at(&t, "secret/coder/GITHUB_TOKEN").await);
        assert_eq!(got, want, "read: {e}");
        // A folder's LIST (a 404 there is an empty folder: its parent
        // named it).
        if e == VaultError::NotFound {
            continue;
        }
        let store = vault();
        store.fail(Op::List, "secret", "team", e.clone());
        let t = tree(&store, LONG, LONG);
        assert_eq!(errno(ls(&t, "secret/team").await), want, "list: {e}");
    }
    for e in transient() {
        let store = vault();
        store.fail_everything(e.clone());
        let t = tree(&store, LONG, LONG);
        assert_eq!(errno(at(&t, "secret").await), libc::EIO, "mounts: {e}");
    }
}

// ---- The tree ----

// semantics.md "The tree": a secret is a directory of its keys, `.json` and `.env`.
#[tokio::test]
async fn a_secret_is_a_directory_of_its_keys_and_the_json_and_env_views() {
    let t = tree(&vault(), LONG, LONG);
    let db = "secret/team/app/db";
    let want = [".env", ".json", ".sh", "password", "port"];
    assert_eq!(ls(&t, db).await.unwrap(), want);
    assert_eq!(cat(&t, &format!("{db}/password")).await.unwrap(), "hunter2");
    assert_eq!(cat(&t, &format!("{db}/port")).await.unwrap(), "5432");
    let json = cat(&t, &format!("{db}/.json")).await.unwrap();
    assert_eq!(json, "{\"password\":\"hunter2\",\"port\":5432}\n");
    let env = cat(&t, &format!("{db}/.env")).await.unwrap();
    assert_eq!(env, "password=hunter2\nport=5432\n");
}

// semantics.md "The tree": secret and folder at once; a child wins over a key.
#[tokio::test]
async fn a_secret_and_a_folder_of_one_name_are_one_directory_and_the_child_wins() {
    let t = tree(&vault(), LONG, LONG);
    let app = "secret/team/app";
    assert_eq!(
        ls(&t, app).await.unwrap(),
        [".env", ".json", ".sh", "db/", "user"]
    );
    assert_eq!(at(&t, &format!("{app}/db")).await.unwrap().kind, Kind::Dir);
    // The key stays readable in `.json`.
    let json: Value =
        serde_json::from_str(&cat(&t, &format!("{app}/.json")).await.unwrap()).unwrap();
    assert_eq!(json["db"], "shadowed");
}

// semantics.md "The tree": a view is always the view; a key or a child named
// like one of vaultfs's own files is shown with its leading `.` as `%2E`.
#[tokio::test]
async fn a_key_or_child_named_like_a_view_never_replaces_it() {
    let store = vault();
    let own = json!({".json": "j", ".env": "K=v\ntouch /tmp/x\n", ".sh": "s",
                     ".versions": "v", ".metadata.json": "m", "K": "v"});
    store.put("secret", "odd", own.clone());
    store.put("secret", "odd", own);
    store.put("secret", "odd/.sh", json!({"inner": "i"}));
    let t = tree(&store, LONG, LONG);
    let want = [
        "%2Eenv",
        "%2Ejson",
        "%2Emetadata.json",
        "%2Esh/",
        "%2Eversions",
        ".env",
        ".json",
        ".sh",
        "K",
    ];
    assert_eq!(ls(&t, "secret/odd").await.unwrap(), want);
    for dir in ["secret/odd", "secret/odd/.versions/1"] {
        let env = cat(&t, &format!("{dir}/.env")).await.unwrap();
        assert!(env.ends_with("\nK=v\n") && !env.contains("touch"), "{env}");
        let sh = cat(&t, &format!("{dir}/.sh")).await.unwrap();
        assert!(sh.ends_with("\nexport K='v'\n"), "{sh}");
        let json: Value =
            serde_json::from_str(&cat(&t, &format!("{dir}/.json")).await.unwrap()).unwrap();
        assert_eq!(json[".env"], "K=v\ntouch /tmp/x\n");
        let key = cat(&t, &format!("{dir}/%2Eenv")).await.unwrap();
        assert_eq!(key, "K=v\ntouch /tmp/x\n");
        assert_eq!(cat(&t, &format!("{dir}/%2Ejson")).await.unwrap(), "j");
    }
    assert_eq!(cat(&t, "secret/odd/%2Eversions").await.unwrap(), "v");
    assert_eq!(cat(&t, "secret/odd/%2Emetadata.json").await.unwrap(), "m");
    assert_eq!(ls(&t, "secret/odd/.versions").await.unwrap(), ["1/", "2/"]);
    let meta: Value =
        serde_json::from_str(&cat(&t, "secret/odd/.metadata.json").await.unwrap()).unwrap();
    assert_eq!(meta["current_version"], 2);
    // The child folder `.sh` is `%2Esh`.
    assert_eq!(cat(&t, "secret/odd/%2Esh/inner").await.unwrap(), "i");
}

// semantics.md "The tree", Deleted versions: listed, no files.
#[tokio::test]
async fn a_secret_whose_current_version_is_deleted_is_listed_but_empty() {
    let store = vault();
    store.delete_version("secret", "coder", 1);
    let t = tree(&store, LONG, LONG);
    assert!(ls(&t, "secret")
        .await
        .unwrap()
        .contains(&"coder/".to_string()));
    assert!(ls(&t, "secret/coder").await.unwrap().is_empty());
}

// semantics.md "Which mounts": a mount path with slashes nests.
#[tokio::test]
async fn a_mount_path_with_slashes_nests() {
    let store = vault();
    store.kv1("team/kv").put("team/kv", "a", json!({"k": "v"}));
    let t = tree(&store, LONG, LONG);
    assert_eq!(ls(&t, "").await.unwrap(), ["secret/", "team/"]);
    assert_eq!(ls(&t, "team").await.unwrap(), ["kv/"]);
    assert_eq!(cat(&t, "team/kv/a/k").await.unwrap(), "v");
}

// ---- History (KV v2) ----

fn with_history() -> Arc<MemoryStore> {
    let store = vault();
    store.put("secret", "team/app/db", json!({"password": "second"}));
    store
}

// semantics.md "History": not listed, reachable by name.
#[tokio::test]
async fn versions_and_metadata_are_not_listed_but_reachable_by_name() {
    let t = tree(&with_history(), LONG, LONG);
    let db = "secret/team/app/db";
    assert_eq!(
        ls(&t, db).await.unwrap(),
        [".env", ".json", ".sh", "password"]
    );
    assert_eq!(
        ls(&t, &format!("{db}/.versions")).await.unwrap(),
        ["1/", "2/"]
    );
    let old = cat(&t, &format!("{db}/.versions/1/password"))
        .await
        .unwrap();
    assert_eq!(old, "hunter2");
    let meta = cat(&t, &format!("{db}/.metadata.json")).await.unwrap();
    let meta: Value = serde_json::from_str(&meta).unwrap();
    assert_eq!(meta["current_version"], 2);
}

// semantics.md "History", Not listed: a walk makes no history request; finding `.versions` costs none.
#[tokio::test]
async fn a_walk_makes_no_history_request_and_finding_versions_costs_none() {
    let store = with_history();
    let t = tree(&store, LONG, LONG);
    ls(&t, "secret/team/app/db").await.unwrap();
    assert_eq!(store.count(Op::ReadVersion) + store.count(Op::Metadata), 0);
    store.clear_calls();
    let e = at(&t, "secret/team/app/db/.versions").await.unwrap();
    assert_eq!(e.kind, Kind::Dir);
    assert!(requests(&store).is_empty());
}

// semantics.md "History": a version is found by number without the metadata.
#[tokio::test]
async fn a_version_is_read_by_number_without_metadata_permission() {
    let store = with_history();
    store.fail(Op::Metadata, "secret", "team/app/db", VaultError::Forbidden);
    let t = tree(&store, LONG, LONG);
    let versions = "secret/team/app/db/.versions";
    assert_eq!(errno(ls(&t, versions).await), libc::EACCES);
    let old = cat(&t, &format!("{versions}/1/password")).await.unwrap();
    assert_eq!(old, "hunter2");
}

// semantics.md "History": deleted, destroyed, unwritten and non-canonical versions are ENOENT.
#[tokio::test]
async fn deleted_destroyed_unwritten_and_non_canonical_versions_are_enoent() {
    let store = with_history();
    store
        .put("secret", "team/app/db", json!({"password": "third"}))
        .delete_version("secret", "team/app/db", 1)
        .destroy_version("secret", "team/app/db", 2);
    let t = tree(&store, LONG, LONG);
    let versions = "secret/team/app/db/.versions";
    for n in ["1", "2", "4", "03", "+3", "0"] {
        let path = format!("{versions}/{n}");
        assert_eq!(errno(at(&t, &path).await), libc::ENOENT, "{n}");
    }
    assert_eq!(ls(&t, versions).await.unwrap(), ["3/"]);
}

// semantics.md "History", Caching: an old version outlives --ttl; metadata and the current version do not.
#[tokio::test]
async fn an_old_version_is_kept_past_the_ttl_and_the_metadata_is_not() {
    let store = with_history();
    let t = tree(&store, SHORT, LONG);
    let db = "secret/team/app/db";
    let old = format!("{db}/.versions/1/password");
    let meta = format!("{db}/.metadata.json");
    assert_eq!(cat(&t, &old).await.unwrap(), "hunter2");
    cat(&t, &meta).await.unwrap();
    // `.versions/<current>/` is read apart from the secret's own files.
    assert_eq!(cat(&t, &format!("{db}/password")).await.unwrap(), "second");
    store.clear_calls();
    assert_eq!(
        cat(&t, &format!("{db}/.versions/2/password"))
            .await
            .unwrap(),
        "second"
    );
    assert_eq!(store.count_at(Op::ReadVersion, "secret", "team/app/db"), 1);
    tokio::time::sleep(SHORT + SHORT / 2).await;
    store.clear_calls();
    assert_eq!(cat(&t, &old).await.unwrap(), "hunter2");
    cat(&t, &meta).await.unwrap();
    assert_eq!(store.count(Op::ReadVersion), 0, "version 1 still cached");
    assert_eq!(
        store.count(Op::Metadata),
        1,
        "the metadata expired with --ttl"
    );
}

// semantics.md "History", Names: KV v1 has no history.
#[tokio::test]
async fn kv1_has_no_history() {
    let store = vault();
    store.kv1("old").put("old", "a", json!({"k": "v"}));
    let t = tree(&store, LONG, LONG);
    for name in [".versions", ".metadata.json"] {
        let path = format!("old/a/{name}");
        assert_eq!(errno(at(&t, &path).await), libc::ENOENT, "{name}");
    }
}

// ---- Caching ----

// semantics.md "Caching": cached for --ttl; a change shows after it, not before.
#[tokio::test]
async fn a_change_in_vault_shows_after_the_ttl_and_not_before() {
    let store = vault();
    let t = tree(&store, Duration::from_millis(300), LONG);
    let key = "secret/team/app/db/password";
    assert_eq!(cat(&t, key).await.unwrap(), "hunter2");
    store.put("secret", "team/app/db", json!({"password": "rotated"}));
    store.clear_calls();
    assert_eq!(cat(&t, key).await.unwrap(), "hunter2");
    assert!(requests(&store).is_empty(), "served from the cache");
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(cat(&t, key).await.unwrap(), "rotated");
}

// semantics.md "Caching": the definite answers 403 and 404 are cached for the TTL.
#[tokio::test]
async fn a_403_and_a_404_are_cached_for_the_ttl() {
    let (store, t) = read_only();
    // A shell probing for `.git`: LIST refused, then the secret read.
    assert_eq!(errno(at(&t, "secret/coder/.git").await), libc::ENOENT);
    assert!(store.count(Op::List) > 0 && store.count(Op::Read) > 0);
    store.clear_calls();
    assert_eq!(errno(at(&t, "secret/coder/.git").await), libc::ENOENT);
    assert!(requests(&store).is_empty(), "the 403s and 404s were kept");
}

// semantics.md "Caching": transient failures are never cached.
#[tokio::test]
async fn a_transient_failure_is_not_cached() {
    let store = vault();
    store.fail(Op::Read, "secret", "coder", Fault::status(503));
    let t = tree(&store, LONG, LONG);
    let key = "secret/coder/GITHUB_TOKEN";
    assert_eq!(errno(cat(&t, key).await), libc::EIO);
    store.heal();
    assert_eq!(cat(&t, key).await.unwrap(), "ghp_x");
}

// semantics.md "Caching": concurrent misses for the same path make one request.
#[tokio::test]
async fn concurrent_misses_for_one_path_make_one_request() {
    let store = vault();
    let slow = Fault::Delay(Duration::from_millis(50));
    store.fail(Op::Read, "secret", "coder", slow);
    let t = tree(&store, LONG, LONG);
    at(&t, "secret/coder").await.unwrap();
    let key = "secret/coder/GITHUB_TOKEN";
    let (a, b) = tokio::join!(cat(&t, key), cat(&t, key));
    assert_eq!((a.unwrap(), b.unwrap()), ("ghp_x".into(), "ghp_x".into()));
    assert_eq!(store.count_at(Op::Read, "secret", "coder"), 1);
}

// semantics.md "Caching": the mount list is cached for the TTL like everything else.
#[tokio::test]
async fn the_mount_list_is_cached_for_the_ttl() {
    let store = vault();
    let t = tree(&store, SHORT, LONG);
    at(&t, "secret").await.unwrap();
    at(&t, "secret").await.unwrap();
    assert_eq!(store.count(Op::Mounts), 1);
    tokio::time::sleep(SHORT + SHORT / 2).await;
    at(&t, "secret").await.unwrap();
    assert_eq!(store.count(Op::Mounts), 2);
}

// semantics.md "Caching", Directory listings: kept no longer than the answers it was built from.
#[tokio::test]
async fn a_listing_lives_no_longer_than_the_first_answer_it_was_built_from() {
    let ttl = Duration::from_secs(5);
    let t = tree(&vault(), ttl, LONG);
    // Fetches the parent's listing, which says what `app` is.
    let app = at(&t, "secret/team/app").await.unwrap().ino;
    tokio::time::sleep(SHORT).await;
    let read = Instant::now();
    let listing = t.readdir(app, false).await.unwrap();
    assert!(listing.valid_until > Instant::now());
    // Its own LIST and secret were fetched now; the parent's LIST before.
    let first = read + ttl - SHORT / 2;
    assert!(
        listing.valid_until < first,
        "the parent's LIST expires first"
    );
}

// semantics.md "Caching", Entry TTLs: a file's entry lives no longer than its cached secret.
#[tokio::test]
async fn a_files_entry_lives_no_longer_than_its_cached_secret() {
    let t = tree(&vault(), Duration::from_secs(5), LONG);
    let before = Instant::now();
    let e = at(&t, "secret/coder/GITHUB_TOKEN").await.unwrap();
    let until = e.valid_until.expect("a file's entry has an expiry");
    assert!(until > before && until <= Instant::now() + Duration::from_secs(5));
}

// semantics.md "Caching", One inode per content version.
#[tokio::test]
async fn a_changed_value_gets_a_new_inode_and_the_old_one_keeps_its_bytes() {
    let store = vault();
    let t = tree(&store, SHORT, LONG);
    let key = "secret/team/app/db/password";
    let old = at(&t, key).await.unwrap();
    // Same size (and, most likely, the same second): only the bytes differ.
    store.put("secret", "team/app/db", json!({"password": "hunter3"}));
    tokio::time::sleep(SHORT + SHORT / 2).await;
    let new = at(&t, key).await.unwrap();
    assert_ne!(old.ino, new.ino);
    let bytes = |ino| {
        let (s, f) = t.content(ino).unwrap();
        s.content(&f).unwrap().to_vec()
    };
    assert_eq!(
        (bytes(old.ino), bytes(new.ino)),
        (b"hunter2".to_vec(), b"hunter3".to_vec())
    );
    assert_eq!(t.getattr(old.ino).unwrap().size, 7);
}

// ---- Stale-if-error ----

/// A tree with `secret/team/app/db/password` and `secret/team/app` read
/// and then expired.
async fn warm_then_expired(store: &Arc<MemoryStore>, stale_if_error: Duration) -> T {
    let t = tree(store, SHORT, stale_if_error);
    assert_eq!(
        cat(&t, "secret/team/app/db/password").await.unwrap(),
        "hunter2"
    );
    ls(&t, "secret/team/app").await.unwrap();
    tokio::time::sleep(SHORT + SHORT / 2).await;
    t
}

// reliability.md "Stale-if-error": a transient error on refresh serves the previous answer.
#[tokio::test]
async fn while_vault_is_away_the_last_answers_are_served_past_their_ttl() {
    for e in transient() {
        let store = vault();
        let t = warm_then_expired(&store, LONG).await;
        store.fail_everything(e.clone()).clear_calls();
        let got = cat(&t, "secret/team/app/db/password").await;
        assert_eq!(got.as_deref(), Ok("hunter2"), "{e}");
        let listing = ls(&t, "secret/team/app").await;
        assert_eq!(
            listing.unwrap(),
            [".env", ".json", ".sh", "db/", "user"],
            "{e}"
        );
        assert!(store.count(Op::Read) > 0, "{e}: the refresh was tried");
    }
}

// reliability.md "Stale-if-error": the previous answer may be a 404/403.
#[tokio::test]
async fn while_vault_is_away_a_name_that_was_missing_stays_enoent() {
    let store = vault();
    store.fail(Op::List, "secret", "", VaultError::Forbidden);
    let t = warm_then_expired(&store, LONG).await;
    // Probes for a folder: a LIST 403 and a read 404 kept.
    assert_eq!(errno(at(&t, "secret/nothing").await), libc::ENOENT);
    tokio::time::sleep(SHORT + SHORT / 2).await;
    store.fail_everything(Fault::status(503));
    assert_eq!(errno(at(&t, "secret/nothing").await), libc::ENOENT);
}

// reliability.md "Stale-if-error": a definite answer (403/404) replaces any older value at once.
#[tokio::test]
async fn after_the_ttl_a_403_or_404_is_not_masked_by_the_old_value() {
    let store = vault();
    let t = warm_then_expired(&store, LONG).await;
    store.fail(Op::Read, "secret", "team/app/db", VaultError::Forbidden);
    let key = "secret/team/app/db/password";
    assert_eq!(errno(cat(&t, key).await), libc::EACCES);
    let store = vault();
    let t = warm_then_expired(&store, LONG).await;
    store.fail(Op::Read, "secret", "team/app/db", VaultError::NotFound);
    assert_eq!(errno(cat(&t, key).await), libc::ENOENT);
}

// reliability.md "Stale-if-error": only within TTL + stale-if-error of the fetch; 0 disables it.
#[tokio::test]
async fn stale_answers_end_after_the_stale_if_error_window() {
    for window in [Duration::ZERO, SHORT] {
        let store = vault();
        let t = warm_then_expired(&store, window).await;
        tokio::time::sleep(window + SHORT / 2).await;
        store.fail_everything(VaultError::Sealed);
        let key = "secret/team/app/db/password";
        assert_eq!(errno(cat(&t, key).await), libc::EIO, "{window:?}");
    }
}

// reliability.md "Stale-if-error": the refresh is retried at most every clamp(TTL, 100ms, 5s).
#[tokio::test]
async fn a_failing_refresh_is_retried_at_most_every_ttl() {
    let store = vault();
    let t = warm_then_expired(&store, LONG).await;
    store.fail_everything(Fault::status(503)).clear_calls();
    let key = "secret/team/app/db/password";
    assert_eq!(cat(&t, key).await.unwrap(), "hunter2");
    let tried = store.count_at(Op::Read, "secret", "team/app/db");
    assert_eq!(tried, 1);
    assert_eq!(cat(&t, key).await.unwrap(), "hunter2");
    assert_eq!(store.count_at(Op::Read, "secret", "team/app/db"), tried);
}

// reliability.md "Stale-if-error": a refresh that is abandoned keeps the old answer.
#[tokio::test]
async fn an_abandoned_refresh_keeps_the_old_answer() {
    let store = vault();
    let t = warm_then_expired(&store, LONG).await;
    store.fail_everything(Fault::Hang);
    let key = "secret/team/app/db/password";
    let hung = tokio::time::timeout(SHORT, cat(&t, key)).await;
    assert!(hung.is_err(), "Vault hangs: no answer");
    store.fail_everything(VaultError::Connect("refused".into()));
    assert_eq!(cat(&t, key).await.unwrap(), "hunter2");
}

// ---- Requests ----

// semantics.md "Caching" and performance.md: a `cat` of a known path fetches only that path, with LISTs.
#[tokio::test]
async fn a_lookup_under_a_listable_folder_costs_one_list() {
    let store = vault();
    let t = tree(&store, LONG, LONG);
    let steps = [
        ("secret", vec![(Op::Mounts, "")]),
        ("secret/team", vec![(Op::List, "")]),
        ("secret/team/app", vec![(Op::List, "team")]),
        ("secret/team/app/db", vec![(Op::List, "team/app")]),
        // The parent's listing says `db` is no folder: no LIST of it.
        (
            "secret/team/app/db/password",
            vec![(Op::Read, "team/app/db")],
        ),
    ];
    for (path, want) in steps {
        store.clear_calls();
        at(&t, path).await.unwrap();
        let want: Vec<(Op, String)> = want.into_iter().map(|(o, p)| (o, p.into())).collect();
        assert_eq!(requests(&store), want, "{path}");
    }
}

// semantics.md "Caching" (directory listings): revalidating a directory without prefetch asks for it alone.
#[tokio::test]
async fn revalidating_a_directory_without_prefetch_fetches_none_of_its_children() {
    let store = vault();
    let t = prefetching(&store, SHORT);
    let app = at(&t, "secret/team/app").await.unwrap().ino;
    t.readdir(app, false).await.unwrap();
    tokio::time::sleep(SHORT + SHORT / 2).await;
    store.clear_calls();
    t.readdir(app, false).await.unwrap();
    // Time for a background fetch to start, had one been asked for.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut got = requests(&store);
    got.sort_by_key(|(op, p)| (format!("{op:?}"), p.clone()));
    let want = [
        (Op::List, "team"),
        (Op::List, "team/app"),
        (Op::Read, "team/app"),
    ];
    assert_eq!(got, want.map(|(o, p)| (o, p.to_string())));
}

// semantics.md "Caching": reading a directory fetches its children in the background.
#[tokio::test]
async fn reading_a_directory_prefetches_its_children() {
    let store = vault();
    store.with_scan(false);
    let t = prefetching(&store, LONG);
    let app = at(&t, "secret/team/app").await.unwrap().ino;
    t.readdir(app, true).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.count_at(Op::Read, "secret", "team/app/db") == 0 {
        assert!(Instant::now() < deadline, "the child was never fetched");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    store.clear_calls();
    assert_eq!(
        cat(&t, "secret/team/app/db/password").await.unwrap(),
        "hunter2"
    );
    assert!(requests(&store).is_empty(), "already fetched");
}

// semantics.md "Caching": a walk costs one GET per secret and one LIST per folder, or one SCAN.
#[tokio::test]
async fn a_walk_costs_one_read_per_secret_and_one_list_per_folder_or_one_scan() {
    for scan in [true, false] {
        let store = vault();
        store.with_scan(scan);
        let t = prefetching(&store, LONG);
        let root = at(&t, "secret").await.unwrap().ino;
        let mut todo = vec![root];
        while let Some(ino) = todo.pop() {
            for (_, e) in t.readdir(ino, true).await.unwrap().iter() {
                if e.kind == Kind::Dir {
                    t.hand_out(e.ino);
                    todo.push(e.ino);
                }
            }
        }
        let secrets = ["coder", "team/app", "team/app/db"];
        for s in secrets {
            assert_eq!(store.count_at(Op::Read, "secret", s), 1, "scan {scan}: {s}");
        }
        assert_eq!(store.count(Op::Read), secrets.len(), "scan {scan}");
        assert_eq!(store.count(Op::Scan), 1, "scan {scan}: tried once");
        let lists = match scan {
            true => vec![],
            // The mount, `team` and `team/app`: one LIST each.
            false => strings(&["", "team", "team/app"]),
        };
        let mut got: Vec<String> = requests(&store)
            .into_iter()
            .filter(|(op, _)| *op == Op::List)
            .map(|(_, p)| p)
            .collect();
        got.sort();
        assert_eq!(got, lists, "scan {scan}");
    }
}
