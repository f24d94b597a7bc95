//! A hostile Vault: a minimal HTTP/1.1 server on 127.0.0.1 whose answers a
//! test chooses per request, for what OpenBao cannot be made to do (slow
//! SCANs, overflowing numbers, malformed or endless bodies). It records
//! every request line, so tests can count what vaultfs asked.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::Mount;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query, still percent-encoded as sent.
    pub target: String,
}

/// What to answer.
pub enum Reply {
    Status(u16, Vec<u8>),
    /// Wait, then answer.
    After(Duration, Box<Reply>),
    /// Headers promising 100 kB, then a byte every 100 ms for 20 s.
    Slowloris,
}

pub fn ok(v: Value) -> Option<Reply> {
    Some(Reply::Status(200, v.to_string().into_bytes()))
}

pub fn status(code: u16, body: &str) -> Option<Reply> {
    Some(Reply::Status(code, body.as_bytes().to_vec()))
}

/// A KV v2 read answer holding `data`.
pub fn kv2(data: Value) -> Option<Reply> {
    ok(
        json!({"data": {"data": data, "metadata": {"created_time": "2024-01-02T03:04:05Z",
                                                   "deletion_time": "", "destroyed": false}}}),
    )
}

/// The answers every mount needs: a token that works and one KV v2 mount
/// named `secret`.
pub fn basics(r: &Request) -> Option<Reply> {
    match (r.method.as_str(), r.target.as_str()) {
        (_, "/v1/auth/token/lookup-self") => ok(json!({"data": {"ttl": 0, "renewable": false}})),
        (_, "/v1/sys/internal/ui/mounts") => ok(
            json!({"data": {"secret": {"secret/": {"type": "kv", "options": {"version": "2"}}}}}),
        ),
        (_, "/v1/sys/internal/ui/mounts/secret") => {
            ok(json!({"data": {"path": "secret/", "type": "kv", "options": {"version": "2"}}}))
        }
        _ => None,
    }
}

type Route = dyn Fn(&Request) -> Option<Reply> + Send + Sync;

pub struct Server {
    pub addr: String,
    log: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    /// Serves `route` (unrouted requests get 404) for the life of the
    /// process, one request per connection.
    pub fn start(route: impl Fn(&Request) -> Option<Reply> + Send + Sync + 'static) -> Server {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = format!("http://{}", l.local_addr().unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let route: Arc<Route> = Arc::new(route);
        let seen = log.clone();
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let (route, seen) = (route.clone(), seen.clone());
                std::thread::spawn(move || answer(conn, &*route, &seen));
            }
        });
        Server { addr, log }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }

    /// How many requests so far satisfy `f`.
    pub fn count(&self, f: impl Fn(&Request) -> bool) -> usize {
        self.log.lock().unwrap().iter().filter(|r| f(r)).count()
    }

    pub fn clear(&self) {
        self.log.lock().unwrap().clear();
    }

    /// The real binary mounted in the foreground against this server.
    pub fn mount(&self, extra: &[&str]) -> Mount {
        self.mount_env(&[], extra)
    }

    /// [`Server::mount`] with extra environment variables.
    pub fn mount_env(&self, env: &[(&str, &str)], extra: &[&str]) -> Mount {
        let wait = Duration::from_secs(20);
        Mount::at(&self.addr, "hostile-test-token", extra, env, wait)
    }
}

fn answer(conn: TcpStream, route: &Route, seen: &Mutex<Vec<Request>>) {
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split(' ');
    let req = Request {
        method: parts.next().unwrap_or("").to_string(),
        target: parts.next().unwrap_or("").to_string(),
    };
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
    }
    seen.lock().unwrap().push(req.clone());
    let reply = route(&req).unwrap_or(Reply::Status(404, br#"{"errors":[]}"#.to_vec()));
    write_reply(conn, reply);
}

fn write_reply(mut w: TcpStream, reply: Reply) {
    match reply {
        Reply::After(d, then) => {
            std::thread::sleep(d);
            write_reply(w, *then)
        }
        Reply::Slowloris => {
            let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n{");
            for _ in 0..200 {
                std::thread::sleep(Duration::from_millis(100));
                if w.write_all(b" ").is_err() {
                    return;
                }
            }
        }
        Reply::Status(status, body) => {
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = w.write_all(head.as_bytes());
            let _ = w.write_all(&body);
        }
    }
}
