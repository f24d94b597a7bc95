//! The benchmark's helper (see scripts/bench): seeds a KV v2 tree, and is
//! the *HTTP floor* — a minimal keep-alive client that issues exactly the
//! LIST and GET requests a workload needs, at a given concurrency, with no
//! filesystem in between. vaultfs is measured against it.
//!
//! Not part of the vaultfs binary. Reads VAULT_ADDR and VAULT_TOKEN; prints
//! one JSON object per run on stdout.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use clap::{Parser, Subcommand};
use reqwest::{Client, Method};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

#[derive(Parser)]
struct Cli {
    /// KV v2 mount
    #[arg(long, default_value = "secret")]
    mount: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write FOLDERS x SECRETS secrets of KEYS keys, VALUE_BYTES each.
    Seed {
        #[arg(long, default_value_t = 50)]
        folders: usize,
        #[arg(long, default_value_t = 100)]
        secrets: usize,
        #[arg(long, default_value_t = 3)]
        keys: usize,
        #[arg(long, default_value_t = 32)]
        value_bytes: usize,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// Walk the whole mount: LIST every folder, GET every secret.
    Walk {
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// What a cold `cat` of one file needs: LIST each parent, then GET (serial).
    One { path: String },
}

struct Floor {
    http: Client,
    base: String,
    token: String,
    mount: String,
    lists: AtomicUsize,
    gets: AtomicUsize,
}

impl Floor {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method, format!("{}/v1/{}", self.base, path))
            .header("X-Vault-Token", &self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let bytes = resp.bytes().await.expect("body");
        assert!(status.is_success(), "{path}: HTTP {status}");
        // Parse like any client must; an empty body (204) is null.
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    }

    async fn list(&self, folder: &str) -> Vec<String> {
        self.lists.fetch_add(1, Ordering::Relaxed);
        let v = self
            .call(
                Method::GET,
                &format!("{}/metadata/{folder}?list=true", self.mount),
                None,
            )
            .await;
        v["data"]["keys"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|k| k.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn get(&self, secret: &str) -> Value {
        self.gets.fetch_add(1, Ordering::Relaxed);
        self.call(Method::GET, &format!("{}/data/{secret}", self.mount), None)
            .await
    }
}

/// LIST a folder; queue its subfolders and secrets. Tasks run as soon as a
/// permit is free, so the walk keeps `concurrency` requests in flight.
async fn walk(floor: Arc<Floor>, concurrency: usize) {
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut set = JoinSet::new();
    let spawn_list = |set: &mut JoinSet<Vec<(bool, String)>>, folder: String| {
        let (f, p) = (floor.clone(), permits.clone());
        set.spawn(async move {
            let _permit = p.acquire_owned().await.expect("semaphore");
            f.list(&folder)
                .await
                .into_iter()
                .map(|k| (k.ends_with('/'), format!("{folder}{k}")))
                .collect()
        });
    };
    spawn_list(&mut set, String::new());
    while let Some(r) = set.join_next().await {
        for (is_folder, path) in r.expect("task") {
            if is_folder {
                spawn_list(&mut set, path);
            } else {
                let (f, p) = (floor.clone(), permits.clone());
                set.spawn(async move {
                    let _permit = p.acquire_owned().await.expect("semaphore");
                    f.get(&path).await;
                    Vec::new()
                });
            }
        }
    }
}

async fn seed(
    floor: Arc<Floor>,
    folders: usize,
    secrets: usize,
    keys: usize,
    size: usize,
    c: usize,
) {
    let permits = Arc::new(Semaphore::new(c));
    let mut set = JoinSet::new();
    for f in 0..folders {
        for s in 0..secrets {
            let (fl, p) = (floor.clone(), permits.clone());
            set.spawn(async move {
                let _permit = p.acquire_owned().await.expect("semaphore");
                let data: serde_json::Map<String, Value> = (0..keys)
                    .map(|k| (format!("k{k}"), Value::String(value(f, s, k, size))))
                    .collect();
                fl.call(
                    Method::POST,
                    &format!("{}/data/f{f:03}/s{s:04}", fl.mount),
                    Some(json!({ "data": data })),
                )
                .await;
            });
        }
    }
    while let Some(r) = set.join_next().await {
        r.expect("task");
    }
}

/// A deterministic printable value of `size` bytes.
fn value(f: usize, s: usize, k: usize, size: usize) -> String {
    let mut x = (f * 1_000_003 + s * 1009 + k * 7 + 1) as u64;
    (0..size)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let c = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
            c[(x >> 33) as usize % c.len()] as char
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let cli = Cli::parse();
    let floor = Arc::new(Floor {
        http: Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .expect("client"),
        base: std::env::var("VAULT_ADDR")
            .expect("VAULT_ADDR")
            .trim_end_matches('/')
            .to_string(),
        token: std::env::var("VAULT_TOKEN").expect("VAULT_TOKEN"),
        mount: cli.mount.trim_matches('/').to_string(),
        lists: AtomicUsize::new(0),
        gets: AtomicUsize::new(0),
    });
    let t = Instant::now();
    match cli.cmd {
        Cmd::Seed {
            folders,
            secrets,
            keys,
            value_bytes,
            concurrency,
        } => {
            seed(
                floor.clone(),
                folders,
                secrets,
                keys,
                value_bytes,
                concurrency,
            )
            .await
        }
        Cmd::Walk { concurrency } => walk(floor.clone(), concurrency.max(1)).await,
        Cmd::One { path } => {
            let parts: Vec<&str> = path.split('/').collect();
            for i in 0..parts.len() {
                let folder: String = parts[..i].iter().map(|p| format!("{p}/")).collect();
                floor.list(&folder).await;
            }
            floor.get(&path).await;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({
            "secs": secs,
            "lists": floor.lists.load(Ordering::Relaxed),
            "gets": floor.gets.load(Ordering::Relaxed),
        })
    );
}
