//! A user-space UDP relay that adds delay, jitter and optional loss, per
//! direction. The kernel on the test machines has no `tc netem`, so tests
//! that need a slow or noisy path (e.g. syncing through a 20 ms link) put
//! this relay between client and server.
//!
//! The relay listens on one address and forwards every datagram to a fixed
//! target. Each distinct client source gets its own upstream socket (up to
//! `max_clients`), so replies from the target find their way back to the
//! right client. Every datagram is put in a bounded delay queue with its due
//! time (`base + uniform(0..=jitter)`) and sent by a scheduler thread; when
//! jitter exceeds the spacing between packets they may be reordered, as on a
//! real path. [`Relay::set_blackout`] cuts the path (both ways, datagrams
//! already queued included) until it is restored, as a network outage would.
//! All threads stop and are joined on drop.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rand::Rng;

use super::{enter_netns, Netns};

/// How long receive calls block before re-checking the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// Delay model for one direction.
#[derive(Clone, Copy, Debug, Default)]
pub struct DelaySpec {
    /// Fixed one-way delay.
    pub base: Duration,
    /// Extra delay drawn uniformly from `0..=jitter` per datagram.
    pub jitter: Duration,
    /// Probability (0.0..=1.0) that a datagram is dropped.
    pub loss: f64,
}

impl DelaySpec {
    /// A fixed delay with jitter and no loss.
    pub fn new(base: Duration, jitter: Duration) -> DelaySpec {
        DelaySpec {
            base,
            jitter,
            loss: 0.0,
        }
    }
}

/// Relay configuration.
#[derive(Clone, Copy, Debug)]
pub struct RelayConfig {
    /// Client → target direction.
    pub to_server: DelaySpec,
    /// Target → client direction.
    pub to_client: DelaySpec,
    /// Datagrams queued at most (excess is dropped and counted).
    pub max_queue: usize,
    /// Distinct client sources served at most (others are dropped).
    pub max_clients: usize,
}

impl RelayConfig {
    /// Same delay both ways.
    pub fn symmetric(base: Duration, jitter: Duration) -> RelayConfig {
        RelayConfig {
            to_server: DelaySpec::new(base, jitter),
            to_client: DelaySpec::new(base, jitter),
            ..RelayConfig::default()
        }
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            to_server: DelaySpec::default(),
            to_client: DelaySpec::default(),
            max_queue: 4096,
            max_clients: 64,
        }
    }
}

/// Packet counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Datagrams sent on to the target.
    pub to_server: u64,
    /// Datagrams sent back to clients.
    pub to_client: u64,
    /// Datagrams dropped (loss model, full queue, too many clients, blackout).
    pub dropped: u64,
}

struct Item {
    due: Instant,
    seq: u64,
    sock: Arc<UdpSocket>,
    dest: SocketAddr,
    data: Vec<u8>,
    to_server: bool,
}

impl PartialEq for Item {
    fn eq(&self, other: &Self) -> bool {
        self.due == other.due && self.seq == other.seq
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Item {
    // Reversed: BinaryHeap is a max-heap and we want the earliest due first.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

struct Shared {
    queue: Mutex<BinaryHeap<Item>>,
    cv: Condvar,
    stop: AtomicBool,
    blackout: AtomicBool,
    seq: AtomicU64,
    to_server: AtomicU64,
    to_client: AtomicU64,
    dropped: AtomicU64,
    cfg: RelayConfig,
}

impl Shared {
    fn schedule(&self, sock: &Arc<UdpSocket>, dest: SocketAddr, data: &[u8], to_server: bool) {
        let spec = if to_server {
            self.cfg.to_server
        } else {
            self.cfg.to_client
        };
        if self.blackout.load(Ordering::Relaxed) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut rng = rand::thread_rng();
        if spec.loss > 0.0 && rng.gen_bool(spec.loss.min(1.0)) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let jitter_ns = spec.jitter.as_nanos() as u64;
        let extra = if jitter_ns == 0 {
            0
        } else {
            rng.gen_range(0..=jitter_ns)
        };
        let due = Instant::now() + spec.base + Duration::from_nanos(extra);
        let mut q = self.queue.lock().expect("relay queue");
        if q.len() >= self.cfg.max_queue {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        q.push(Item {
            due,
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            sock: Arc::clone(sock),
            dest,
            data: data.to_vec(),
            to_server,
        });
        drop(q);
        self.cv.notify_all();
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// A running relay; stops and joins its threads on drop.
pub struct Relay {
    addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Relay {
    /// Start a relay in the current network namespace, listening on `listen`
    /// (port 0 picks a free port) and forwarding to `target`.
    pub fn start(listen: SocketAddr, target: SocketAddr, cfg: RelayConfig) -> io::Result<Relay> {
        Self::start_in(None, listen, target, cfg)
    }

    /// Like [`Relay::start`], but with all sockets inside `netns`.
    pub fn start_in(
        netns: Option<&Netns>,
        listen: SocketAddr,
        target: SocketAddr,
        cfg: RelayConfig,
    ) -> io::Result<Relay> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(BinaryHeap::new()),
            cv: Condvar::new(),
            stop: AtomicBool::new(false),
            blackout: AtomicBool::new(false),
            seq: AtomicU64::new(0),
            to_server: AtomicU64::new(0),
            to_client: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            cfg,
        });
        let ns_path = netns.map(Netns::path);
        // Bind on a thread inside the namespace; threads it spawns inherit
        // the namespace, so upstream sockets are created there too.
        let (tx, rx) = std::sync::mpsc::channel::<io::Result<SocketAddr>>();
        let sh = Arc::clone(&shared);
        let listener = thread::spawn(move || {
            if let Some(p) = &ns_path {
                enter_netns(p);
            }
            let sock = match UdpSocket::bind(listen).and_then(|s| {
                s.set_read_timeout(Some(POLL))?;
                Ok(s)
            }) {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let _ = tx.send(sock.local_addr());
            listen_loop(Arc::new(sock), target, sh);
        });
        let addr = match rx.recv() {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                let _ = listener.join();
                return Err(e);
            }
            Err(_) => {
                let _ = listener.join();
                return Err(io::Error::other("relay listener thread died"));
            }
        };
        let sh = Arc::clone(&shared);
        let scheduler = thread::spawn(move || scheduler_loop(sh));
        Ok(Relay {
            addr,
            shared,
            threads: vec![listener, scheduler],
        })
    }

    /// The address clients should send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drop every datagram, both ways, from now on (`true`), or relay again
    /// (`false`).
    pub fn set_blackout(&self, on: bool) {
        self.shared.blackout.store(on, Ordering::Relaxed);
    }

    /// Counters so far.
    pub fn stats(&self) -> RelayStats {
        RelayStats {
            to_server: self.shared.to_server.load(Ordering::Relaxed),
            to_client: self.shared.to_client.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.cv.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

fn listen_loop(sock: Arc<UdpSocket>, target: SocketAddr, sh: Arc<Shared>) {
    let mut upstreams: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut readers: Vec<JoinHandle<()>> = Vec::new();
    let mut buf = vec![0u8; 65536];
    while !sh.stopped() {
        let (n, src) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e) if is_timeout(&e) => continue,
            // ICMP errors from earlier sends; keep relaying.
            Err(_) => continue,
        };
        let up = match upstreams.get(&src) {
            Some(u) => Arc::clone(u),
            None => {
                if upstreams.len() >= sh.cfg.max_clients {
                    sh.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let bind: SocketAddr = if target.is_ipv4() {
                    "0.0.0.0:0".parse().expect("addr")
                } else {
                    "[::]:0".parse().expect("addr")
                };
                let up = match UdpSocket::bind(bind).and_then(|s| {
                    s.set_read_timeout(Some(POLL))?;
                    Ok(Arc::new(s))
                }) {
                    Ok(u) => u,
                    Err(_) => {
                        sh.dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                };
                let (u2, back, sh2) = (Arc::clone(&up), Arc::clone(&sock), Arc::clone(&sh));
                readers.push(thread::spawn(move || {
                    upstream_loop(u2, target, back, src, sh2)
                }));
                upstreams.insert(src, Arc::clone(&up));
                up
            }
        };
        sh.schedule(&up, target, &buf[..n], true);
    }
    for r in readers {
        let _ = r.join();
    }
}

fn upstream_loop(
    up: Arc<UdpSocket>,
    target: SocketAddr,
    back: Arc<UdpSocket>,
    client: SocketAddr,
    sh: Arc<Shared>,
) {
    let mut buf = vec![0u8; 65536];
    while !sh.stopped() {
        match up.recv_from(&mut buf) {
            Ok((n, from)) if from == target => sh.schedule(&back, client, &buf[..n], false),
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn scheduler_loop(sh: Arc<Shared>) {
    let mut q = sh.queue.lock().expect("relay queue");
    loop {
        if sh.stopped() {
            return;
        }
        let now = Instant::now();
        match q.peek() {
            None => {
                q = sh.cv.wait_timeout(q, POLL).expect("relay queue").0;
            }
            Some(top) if top.due > now => {
                let wait = top.due - now;
                q = sh.cv.wait_timeout(q, wait).expect("relay queue").0;
            }
            Some(_) => {
                let item = q.pop().expect("non-empty");
                drop(q);
                if sh.blackout.load(Ordering::Relaxed) {
                    // Queued before the outage, lost in it.
                    sh.dropped.fetch_add(1, Ordering::Relaxed);
                } else if item.sock.send_to(&item.data, item.dest).is_ok() {
                    let c = if item.to_server {
                        &sh.to_server
                    } else {
                        &sh.to_client
                    };
                    c.fetch_add(1, Ordering::Relaxed);
                } else {
                    sh.dropped.fetch_add(1, Ordering::Relaxed);
                }
                q = sh.queue.lock().expect("relay queue");
            }
        }
    }
}
