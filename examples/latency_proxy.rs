//! The benchmark's network (see scripts/bench `--rtt`): a loopback TCP proxy
//! that puts a round-trip time between a client and a server.
//!
//! Every chunk read from either side is written to the other side half the
//! RTT after it was read, in order. The chunks of one direction are queued,
//! not sent one at a time, so a direction keeps its throughput: like a long
//! wire, not like a slow one. A new connection also pays one RTT before its
//! first byte leaves (the TCP handshake of a real network), so a client that
//! opens connections pays for them as it would across a network.
//!
//! Bounded: it listens on 127.0.0.1 only, forwards only to a loopback
//! address, and stops by itself after `--max-secs`, after `--idle-secs` with
//! no byte moved, or (with `--stdin-control`) when its stdin closes. It
//! prints `{"listen": "127.0.0.1:PORT"}` once listening and, when it stops
//! (or, with `--stdin-control`, for each line read), one JSON object of counters: connections, requests (a client chunk after
//! the server's last answer on that connection), peak and mean requests in
//! flight (connections waiting for an answer), bytes each way.
//!
//! Not part of the vaultfs binary. The same code is compiled into
//! tests/latency_proxy.rs, which checks the delay it adds and that it stops.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// What the proxy does; see the module comment.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where connections go: must be a loopback address.
    pub upstream: SocketAddr,
    /// Round-trip time added: each direction is delayed by half of it.
    pub rtt: Duration,
    /// Charge a new connection one RTT before its first byte is sent.
    pub connect_rtt: bool,
    /// Stop this long after starting, whatever happens.
    pub max_life: Duration,
    /// Stop after this long with no byte moved.
    pub idle: Duration,
}

/// Counters over the proxy's life.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub connections: u64,
    pub requests: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub max_in_flight: u64,
    /// Integral of requests in flight over time, in request-seconds.
    pub in_flight_secs: f64,
    /// From the first request to the last answer, seconds.
    pub active_secs: f64,
    pub life_secs: f64,
    /// Why it stopped: "max-life", "idle" or "asked".
    pub stopped: &'static str,
}

impl Stats {
    pub fn json(&self) -> String {
        let mean = if self.active_secs > 0.0 {
            self.in_flight_secs / self.active_secs
        } else {
            0.0
        };
        format!(
            "{{\"connections\": {}, \"requests\": {}, \"bytes_up\": {}, \"bytes_down\": {}, \
             \"max_in_flight\": {}, \"in_flight_secs\": {:.4}, \"mean_in_flight\": {:.3}, \
             \"active_secs\": {:.4}, \"life_secs\": {:.3}, \"stopped\": \"{}\"}}",
            self.connections,
            self.requests,
            self.bytes_up,
            self.bytes_down,
            self.max_in_flight,
            self.in_flight_secs,
            mean,
            self.active_secs,
            self.life_secs,
            self.stopped
        )
    }
}

#[derive(Default)]
struct Flight {
    now: u64,
    last_change: Option<Instant>,
    first: Option<Instant>,
    last_answer: Option<Instant>,
}

impl Flight {
    /// Add the request-seconds in flight since the last change, up to `now`.
    fn integrate(&mut self, s: &mut Stats, now: Instant) {
        if let Some(t) = self.last_change {
            s.in_flight_secs += self.now as f64 * (now - t).as_secs_f64();
        }
        self.last_change = Some(now);
    }
}

struct Shared {
    cfg: Config,
    start: Instant,
    stop: AtomicBool,
    /// Microseconds since `start` of the last byte read.
    last_activity: AtomicU64,
    streams: Mutex<Vec<TcpStream>>,
    stats: Mutex<Stats>,
    flight: Mutex<Flight>,
}

impl Shared {
    fn touch(&self) {
        let us = self.start.elapsed().as_micros() as u64;
        self.last_activity.fetch_max(us, Ordering::Relaxed);
    }

    /// A request starts (+1) or is answered (-1) on one connection.
    fn in_flight(&self, delta: i64) {
        let now = Instant::now();
        let mut f = self.flight.lock().unwrap();
        let mut s = self.stats.lock().unwrap();
        f.integrate(&mut s, now);
        if delta > 0 {
            f.now += 1;
            s.requests += 1;
            s.max_in_flight = s.max_in_flight.max(f.now);
            f.first.get_or_insert(now);
        } else {
            f.now = f.now.saturating_sub(1);
            f.last_answer = Some(now);
        }
    }
}

impl Shared {
    /// The counters now; the peak in flight restarts from the current level.
    fn snapshot(&self) -> Stats {
        let now = Instant::now();
        let mut f = self.flight.lock().unwrap();
        let mut s = self.stats.lock().unwrap();
        if f.last_change.is_some() {
            f.integrate(&mut s, now);
        }
        let mut out = s.clone();
        s.max_in_flight = f.now;
        out.active_secs = match (f.first, f.last_answer) {
            (Some(a), Some(b)) if b > a => (b - a).as_secs_f64(),
            _ => 0.0,
        };
        out.life_secs = self.start.elapsed().as_secs_f64();
        out
    }
}

/// Counters of a running proxy, from any thread.
#[derive(Clone)]
pub struct Handle(Arc<Shared>);

impl Handle {
    pub fn snapshot(&self) -> Stats {
        self.0.snapshot()
    }
}

/// A bound proxy, not yet forwarding.
pub struct Proxy {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Listen on 127.0.0.1:`port` (0: any free port).
    pub fn bind(cfg: Config, port: u16) -> io::Result<Proxy> {
        if !cfg.upstream.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("upstream {} is not a loopback address", cfg.upstream),
            ));
        }
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))?;
        Ok(Proxy {
            listener,
            shared: Arc::new(Shared {
                cfg,
                start: Instant::now(),
                stop: AtomicBool::new(false),
                last_activity: AtomicU64::new(0),
                streams: Mutex::new(Vec::new()),
                stats: Mutex::new(Stats::default()),
                flight: Mutex::new(Flight::default()),
            }),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("local address")
    }

    pub fn handle(&self) -> Handle {
        Handle(self.shared.clone())
    }

    /// Forward until a limit is reached or `asked()` returns true; then
    /// close every connection and return the counters.
    pub fn run(self, asked: impl Fn() -> bool) -> Stats {
        let addr = self.addr();
        let sh = self.shared.clone();
        let listener = self.listener;
        let acceptor = {
            let sh = sh.clone();
            thread::spawn(move || {
                for conn in listener.incoming() {
                    if sh.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(c) = conn {
                        let (sh, accepted) = (sh.clone(), Instant::now());
                        let _ = thread::Builder::new()
                            .stack_size(128 * 1024)
                            .spawn(move || connection(sh, c, accepted));
                    }
                }
            })
        };
        let cfg = &sh.cfg;
        let why = loop {
            thread::sleep(Duration::from_millis(5));
            let now = sh.start.elapsed();
            let last = Duration::from_micros(sh.last_activity.load(Ordering::Relaxed));
            if now >= cfg.max_life {
                break "max-life";
            }
            if now.saturating_sub(last) >= cfg.idle {
                break "idle";
            }
            if asked() {
                break "asked";
            }
        };
        sh.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor, then cut every connection.
        let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
        let _ = acceptor.join();
        for s in sh.streams.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        let mut s = sh.snapshot();
        s.stopped = why;
        s
    }
}

fn connection(sh: Arc<Shared>, client: TcpStream, accepted: Instant) {
    sh.touch();
    let Ok(server) = TcpStream::connect_timeout(&sh.cfg.upstream, Duration::from_secs(5)) else {
        return;
    };
    let clones = (|| {
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        Some((
            client.try_clone().ok()?,
            client.try_clone().ok()?,
            server.try_clone().ok()?,
            server.try_clone().ok()?,
        ))
    })();
    let Some((c_read, c_reg, s_write, s_reg)) = clones else {
        return;
    };
    {
        let mut reg = sh.streams.lock().unwrap();
        if sh.stop.load(Ordering::SeqCst) {
            return;
        }
        reg.push(c_reg);
        reg.push(s_reg);
    }
    sh.stats.lock().unwrap().connections += 1;
    let half = sh.cfg.rtt / 2;
    // The client's first byte leaves once the handshake's round trip is over.
    let not_before = if sh.cfg.connect_rtt {
        accepted + sh.cfg.rtt
    } else {
        accepted
    };
    let waiting = Arc::new(AtomicBool::new(false));
    let up = {
        let (sh2, waiting) = (sh.clone(), waiting.clone());
        // A request is in flight from when the client's bytes reach the
        // proxy until the answer's first bytes are delivered back.
        let read = move || {
            sh2.touch();
            if !waiting.swap(true, Ordering::SeqCst) {
                sh2.in_flight(1);
            }
        };
        let sh = sh.clone();
        spawn_pipe(c_read, s_write, half, not_before, read, move |n| {
            sh.stats.lock().unwrap().bytes_up += n;
        })
    };
    let down = {
        let (sh, waiting) = (sh.clone(), waiting.clone());
        let read = {
            let sh = sh.clone();
            move || sh.touch()
        };
        spawn_pipe(server, client, half, accepted, read, move |n| {
            sh.stats.lock().unwrap().bytes_down += n;
            if waiting.swap(false, Ordering::SeqCst) {
                sh.in_flight(-1);
            }
        })
    };
    let _ = up.join();
    let _ = down.join();
    if waiting.load(Ordering::SeqCst) {
        sh.in_flight(-1);
    }
}

type Chunk = (Instant, Vec<u8>);

/// Copy `from` to `to`, each chunk `delay` after it was read (and not
/// before `not_before + delay`). `read()` runs as each chunk is read,
/// `sent(n)` as each chunk is written (just before, so that the answer to a
/// request is counted before the client can send the next one).
fn spawn_pipe(
    from: TcpStream,
    to: TcpStream,
    delay: Duration,
    not_before: Instant,
    read: impl Fn() + Send + 'static,
    sent: impl Fn(u64) + Send + 'static,
) -> thread::JoinHandle<()> {
    // Room for 1,024 chunks in flight per direction (up to 64 MiB): far
    // more than a benchmark's bandwidth-delay product; a full queue makes
    // the reader wait, as a full TCP window would.
    let (tx, rx) = sync_channel::<Chunk>(1024);
    let writer = thread::Builder::new()
        .stack_size(128 * 1024)
        .spawn(move || write_side(rx, to, sent));
    let _ = thread::Builder::new()
        .stack_size(128 * 1024)
        .spawn(move || read_side(from, tx, delay, not_before, read));
    writer.unwrap_or_else(|_| thread::spawn(|| ()))
}

fn read_side(
    mut from: TcpStream,
    tx: SyncSender<Chunk>,
    delay: Duration,
    not_before: Instant,
    read: impl Fn(),
) {
    loop {
        let mut buf = vec![0u8; 64 * 1024];
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.truncate(n);
        read();
        let at = Instant::now().max(not_before) + delay;
        if tx.send((at, buf)).is_err() {
            break;
        }
    }
    // Dropping `tx` tells the writer to pass the end of stream on.
}

fn write_side(rx: Receiver<Chunk>, mut to: TcpStream, sent: impl Fn(u64)) {
    while let Ok((at, buf)) = rx.recv() {
        let now = Instant::now();
        if at > now {
            thread::sleep(at - now);
        }
        sent(buf.len() as u64);
        if to.write_all(&buf).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, scale) = if let Some(v) = s.strip_suffix("ms") {
        (v, 1e-3)
    } else if let Some(v) = s.strip_suffix("us") {
        (v, 1e-6)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1.0)
    } else {
        (s, 1e-3)
    };
    let v: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    if !(0.0..=10.0).contains(&(v * scale)) {
        return Err(format!("duration {s:?} out of range (0 to 10 s)"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

#[derive(clap::Parser)]
struct Cli {
    /// Loopback address to forward to, e.g. 127.0.0.1:8200.
    #[arg(long)]
    upstream: SocketAddr,
    /// Round-trip time to add, e.g. 2ms or 40ms (each direction gets half).
    #[arg(long, value_parser = parse_duration)]
    rtt: Duration,
    /// Port to listen on at 127.0.0.1 (0: a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Do not charge new connections a handshake round trip.
    #[arg(long)]
    no_connect_rtt: bool,
    /// Stop after this many seconds in any case.
    #[arg(long, default_value_t = 600)]
    max_secs: u64,
    /// Stop after this many seconds without a byte moved.
    #[arg(long, default_value_t = 120)]
    idle_secs: u64,
    /// Control on stdin: each line read prints the counters so far (the
    /// peak in flight restarts), end of file stops the proxy.
    #[arg(long)]
    stdin_control: bool,
}

#[allow(dead_code)]
fn main() {
    use clap::Parser;
    let cli = Cli::parse();
    let cfg = Config {
        upstream: cli.upstream,
        rtt: cli.rtt,
        connect_rtt: !cli.no_connect_rtt,
        max_life: Duration::from_secs(cli.max_secs),
        idle: Duration::from_secs(cli.idle_secs),
    };
    let proxy = match Proxy::bind(cfg, cli.port) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("latency_proxy: {e}");
            std::process::exit(2);
        }
    };
    println!("{{\"listen\": \"{}\"}}", proxy.addr());
    let _ = io::stdout().flush();
    let eof = Arc::new(AtomicBool::new(false));
    if cli.stdin_control {
        let (eof, h) = (eof.clone(), proxy.handle());
        thread::spawn(move || {
            for line in io::stdin().lines() {
                if line.is_err() {
                    break;
                }
                println!("{}", h.snapshot().json());
                let _ = io::stdout().flush();
            }
            eof.store(true, Ordering::SeqCst);
        });
    }
    let stats = proxy.run(|| eof.load(Ordering::SeqCst));
    println!("{}", stats.json());
    let _ = io::stdout().flush();
    // Connection threads may still be unwinding; do not wait for them.
    std::process::exit(0);
}
