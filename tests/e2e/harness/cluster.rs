//! A real OpenBao HA cluster for the tests: three `bao server` processes on
//! integrated storage (raft), on loopback, initialised with one unseal key,
//! unsealed and joined with the CLI (`operator init`, `operator unseal`,
//! `operator raft join`), exactly as an operator would. Nothing is mocked.
//!
//! Each node has its own data directory, config, log and (optionally) a file
//! audit device declared in its config, so requests can be counted per node.
//! Processes are spawned with `spawn_kept` (they die with the test process)
//! and killed on drop; the temporary directory goes with the `Cluster`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{bao_bin, free_port, http, init_and_unseal, poll, spawn_kept, wait_until, Mount};

/// One `bao server` of the cluster.
pub struct Node {
    pub name: String,
    pub port: u16,
    pub cluster_port: u16,
    pub config: PathBuf,
    pub log: PathBuf,
    /// The node's own audit log (only with `Cluster::start_audited`).
    pub audit: PathBuf,
    child: Option<Child>,
}

impl Node {
    pub fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

pub struct Cluster {
    pub bin: PathBuf,
    pub nodes: Mutex<Vec<Node>>,
    pub root_token: String,
    pub unseal_key: String,
    _dir: tempfile::TempDir,
}

/// What `sys/health` says of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Active,
    Standby,
    Sealed,
    Down,
    Other(u16),
}

/// The config of one node. The audit device's table is replicated, so its
/// options must be the same on every node (a standby whose config differs
/// fails its read-only setup and forwards everything): a relative path,
/// which each node resolves in its own working directory.
fn node_config(dir: &Path, name: &str, port: u16, cport: u16, audit: bool) -> String {
    let audit = if audit {
        "audit \"file\" \"a\" {\n  options {\n    file_path = \"audit.log\"\n  }\n}\n"
    } else {
        ""
    };
    format!(
        "storage \"raft\" {{\n  path = \"{data}\"\n  node_id = \"{name}\"\n  autopilot_reconcile_interval = \"2s\"\n  autopilot_update_interval = \"1s\"\n  performance_multiplier = 1\n}}\n\
         listener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  cluster_address = \"127.0.0.1:{cport}\"\n  tls_disable = true\n}}\n\
         api_addr = \"http://127.0.0.1:{port}\"\ncluster_addr = \"http://127.0.0.1:{cport}\"\n\
         ui = false\n{audit}",
        data = dir.display()
    )
}

impl Cluster {
    /// Three nodes, initialised, unsealed, joined, all voters, with KV v2 at
    /// `secret/` readable on every node.
    pub fn start() -> Cluster {
        Cluster::start_with(3, false)
    }

    /// As `start`, each node logging every request to its own audit file.
    pub fn start_audited() -> Cluster {
        Cluster::start_with(3, true)
    }

    pub fn start_with(n: usize, audit: bool) -> Cluster {
        let t0 = Instant::now();
        let dir = tempfile::tempdir().unwrap();
        let bin = bao_bin();
        let mut nodes = Vec::new();
        for i in 0..n {
            let name = format!("n{i}");
            let data = dir.path().join(&name);
            std::fs::create_dir_all(&data).unwrap();
            // Two ports per node; free_port can repeat, so check.
            let (port, cluster_port) = loop {
                let (a, b) = (free_port(), free_port());
                let used = nodes
                    .iter()
                    .any(|n: &Node| [n.port, n.cluster_port].iter().any(|p| *p == a || *p == b));
                if a != b && !used {
                    break (a, b);
                }
            };
            let audit_log = data.join("audit.log");
            let config = dir.path().join(format!("{name}.hcl"));
            std::fs::write(
                &config,
                node_config(&data, &name, port, cluster_port, audit),
            )
            .unwrap();
            nodes.push(Node {
                log: dir.path().join(format!("{name}.log")),
                name,
                port,
                cluster_port,
                config,
                audit: audit_log,
                child: None,
            });
        }
        let mut c = Cluster {
            bin,
            nodes: Mutex::new(nodes),
            root_token: String::new(),
            unseal_key: String::new(),
            _dir: dir,
        };
        for i in 0..n {
            c.spawn(i);
        }
        for i in 0..n {
            c.wait_listening(i);
        }
        (c.root_token, c.unseal_key) = init_and_unseal(|args| c.cli_output(0, "", args));
        eprintln!("cluster: initialised and unsealed at {:.1?}", t0.elapsed());
        c.wait_health(0, Health::Active, Duration::from_secs(60));
        eprintln!("cluster: first node active at {:.1?}", t0.elapsed());
        // Joined nodes become voters once healthy this long (default 10 s).
        c.cli(
            0,
            &c.root_token,
            &[
                "operator",
                "raft",
                "autopilot",
                "set-config",
                "-server-stabilization-time=2s",
            ],
        );
        let leader = c.addr(0);
        for i in 1..n {
            c.cli(i, "", &["operator", "raft", "join", &leader]);
            c.unseal(i);
        }
        for i in 1..n {
            c.wait_health(i, Health::Standby, Duration::from_secs(60));
        }
        eprintln!("cluster: joined at {:.1?}", t0.elapsed());
        wait_until("every node a raft voter", Duration::from_secs(60), || {
            c.voters() == n
        });
        eprintln!("cluster: voters at {:.1?}", t0.elapsed());
        c.cli(
            0,
            &c.root_token,
            &["secrets", "enable", "-version=2", "-path=secret", "kv"],
        );
        // A KV v2 mount answers "waiting for the primary to upgrade" on
        // standbys for a few seconds after it is enabled.
        c.put("cluster-ready", json!({"v": "1"}));
        for i in 0..n {
            let a = c.addr(i);
            let tok = c.root_token.clone();
            wait_until("KV readable on every node", Duration::from_secs(60), || {
                http(&a, "GET", "secret/data/cluster-ready", &tok, None)
                    .is_some_and(|(s, _)| s == 200)
            });
        }
        eprintln!("cluster: {n} nodes up in {:.1?}", t0.elapsed());
        c
    }

    pub fn len(&self) -> usize {
        self.nodes.lock().unwrap().len()
    }

    pub fn addr(&self, i: usize) -> String {
        self.nodes.lock().unwrap()[i].addr()
    }

    pub fn node_log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes.lock().unwrap()[i].log).unwrap_or_default()
    }

    pub fn audit_path(&self, i: usize) -> PathBuf {
        self.nodes.lock().unwrap()[i].audit.clone()
    }

    fn spawn(&self, i: usize) {
        let mut nodes = self.nodes.lock().unwrap();
        let node = &mut nodes[i];
        assert!(node.child.is_none(), "{} already running", node.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .unwrap();
        let mut cmd = Command::new(&self.bin);
        cmd.arg("server")
            .arg(format!("-config={}", node.config.display()))
            .current_dir(node.audit.parent().unwrap())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_TOKEN");
        node.child = Some(spawn_kept(cmd));
    }

    /// The bao CLI against node `i` (empty `token`: none). Panics on failure.
    pub fn cli(&self, i: usize, token: &str, args: &[&str]) -> String {
        let o = self.cli_output(i, token, args);
        assert!(
            o.status.success(),
            "bao {args:?} on node {i} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    pub fn cli_output(&self, i: usize, token: &str, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env("VAULT_ADDR", self.addr(i))
            .env_remove("VAULT_TOKEN")
            .env_remove("VAULT_NAMESPACE")
            .stdin(Stdio::null());
        if !token.is_empty() {
            cmd.env("VAULT_TOKEN", token);
        }
        cmd.output().unwrap()
    }

    pub fn unseal(&self, i: usize) {
        self.cli(i, "", &["operator", "unseal", &self.unseal_key]);
    }

    pub fn health(&self, i: usize) -> Health {
        match http(&self.addr(i), "GET", "sys/health", "", None) {
            None => Health::Down,
            Some((200, _)) => Health::Active,
            Some((429, _)) => Health::Standby,
            Some((503, _)) => Health::Sealed,
            Some((s, _)) => Health::Other(s),
        }
    }

    pub fn wait_health(&self, i: usize, want: Health, timeout: Duration) {
        wait_until(&format!("node {i} {want:?}"), timeout, || {
            self.health(i) == want
        });
    }

    /// The node that is active now, if any.
    pub fn active(&self) -> Option<usize> {
        (0..self.len()).find(|&i| self.health(i) == Health::Active)
    }

    /// Wait for an active node other than `not`; returns it.
    pub fn wait_new_active(&self, not: Option<usize>, timeout: Duration) -> usize {
        let mut got = None;
        wait_until("a new active node", timeout, || {
            got = self.active().filter(|&a| Some(a) != not);
            got.is_some()
        });
        got.unwrap()
    }

    /// When node `i` became the active node (`sys/leader`'s `active_time`).
    pub fn active_since(&self, i: usize) -> Option<std::time::SystemTime> {
        let (_, body) = http(&self.addr(i), "GET", "sys/leader", "", None)?;
        let v: Value = serde_json::from_str(&body).ok()?;
        if v["is_self"] != true {
            return None;
        }
        humantime::parse_rfc3339_weak(v["active_time"].as_str()?).ok()
    }

    /// A standby (unsealed, not active) node.
    pub fn standby(&self) -> usize {
        (0..self.len())
            .find(|&i| self.health(i) == Health::Standby)
            .expect("no standby node")
    }

    fn voters(&self) -> usize {
        let o = self.cli_output(
            0,
            &self.root_token,
            &["operator", "raft", "list-peers", "-format=json"],
        );
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
        v["data"]["config"]["servers"]
            .as_array()
            .map(|s| s.iter().filter(|s| s["voter"] == true).count())
            .unwrap_or(0)
    }

    /// Write a KV v2 secret at `secret/<path>` through whichever node is
    /// active, retrying (for up to 60 s) through an election.
    pub fn put(&self, path: &str, data: Value) {
        let body = json!({ "data": data });
        let written = poll(Duration::from_secs(60), || {
            self.active().is_some_and(|a| {
                let r = http(
                    &self.addr(a),
                    "POST",
                    &format!("secret/data/{path}"),
                    &self.root_token,
                    Some(&body),
                );
                matches!(r, Some((200 | 204, _)))
            })
        });
        assert!(written, "could not write secret/{path}");
    }

    /// Wait until every node that answers as active or standby serves
    /// `secret/<path>` (standbys serve reads from their own copy, which
    /// lags the active node's).
    pub fn wait_replicated(&self, path: &str) {
        for i in 0..self.len() {
            if !matches!(self.health(i), Health::Active | Health::Standby) {
                continue;
            }
            let (a, tok) = (self.addr(i), self.root_token.clone());
            wait_until(
                &format!("secret/{path} on node {i}"),
                Duration::from_secs(30),
                || {
                    http(&a, "GET", &format!("secret/data/{path}"), &tok, None)
                        .is_some_and(|(s, _)| s == 200)
                },
            );
        }
    }

    /// `bao operator step-down` on the active node; returns which it was.
    pub fn step_down(&self) -> usize {
        let a = self.active().expect("no active node");
        self.cli(a, &self.root_token, &["operator", "step-down"]);
        a
    }

    /// SIGKILL node `i` and reap it.
    pub fn kill(&self, i: usize) {
        let child = self.nodes.lock().unwrap()[i].child.take();
        if let Some(mut c) = child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start node `i` again from its data: it comes up sealed.
    pub fn restart(&self, i: usize) {
        self.spawn(i);
        self.wait_listening(i);
    }

    fn wait_listening(&self, i: usize) {
        let up = poll(Duration::from_secs(30), || {
            if http(&self.addr(i), "GET", "sys/health", "", None).is_some() {
                return true;
            }
            let exited = self.nodes.lock().unwrap()[i]
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            assert!(!exited, "node {i} exited: {}", self.node_log(i));
            false
        });
        assert!(up, "node {i} did not come up: {}", self.node_log(i));
    }

    /// A token with `ttl` (renewable, no max beyond the mount's), root policy.
    pub fn token(&self, ttl: &str) -> String {
        let a = self.active().expect("no active node");
        self.cli(
            a,
            &self.root_token,
            &[
                "token",
                "create",
                "-field=token",
                "-policy=root",
                &format!("-ttl={ttl}"),
            ],
        )
        .trim()
        .to_string()
    }

    /// `vaultfs mount --foreground` on a temporary directory, talking to
    /// node `i`.
    pub fn mount(&self, i: usize, token: &str, args: &[&str]) -> Mount {
        Mount::at(&self.addr(i), token, args, &[], Duration::from_secs(30))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in self.nodes.lock().unwrap().iter_mut() {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
