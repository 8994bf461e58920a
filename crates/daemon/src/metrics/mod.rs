//! Operations endpoints: Prometheus metrics and a web status page, on one opt-in HTTP
//! listener (`--metrics ADDR:PORT` or `metrics ADDR:PORT` in `ntp.conf`).
//!
//! | path | what |
//! | --- | --- |
//! | `/metrics` | Prometheus text exposition format 0.0.4 ([`exposition`]) |
//! | `/` | the status page: sync state at a glance, plots per source ([`web`]) |
//! | `/api/status` | the same data as JSON ([`json::status`]) |
//! | `/api/history` | the recorded history as JSON ([`json::history`]) |
//!
//! Everything is read from what the daemon already publishes: the mode 6
//! [`ControlSnapshot`](crate::control::ControlSnapshot) in
//! [`SharedControl`] (system and peer variables, published on every turn of the main
//! loop), the workers' [`ServerCounters`] and their client tables. Nothing on the
//! serving path changes: a scrape costs the workers nothing but one brief lock of each
//! client table to count its entries.
//!
//! Threads (all started by [`MetricsListener::start`], after the daemon has forked):
//!
//! * the HTTP server ([`http`]): one accept thread and a small fixed pool of handlers,
//!   with a bounded queue, per-request deadlines and a request size limit;
//! * the history sampler ([`history`]): once a second it looks at the snapshot and
//!   records a point per source whenever that source has a new sample (one per poll),
//!   and a system point when the discipline changed, into bounded rings (24 h, capped).
//!
//! Binding is split from starting ([`MetricsListener::bind`]) so that a busy or
//! forbidden address is reported on the terminal before the daemon detaches, while no
//! thread exists before the fork.

pub mod exposition;
pub mod history;
pub mod http;
pub mod json;
pub mod web;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use meridian_conf::restrict::RestrictTable;
use meridian_proto::PeerSelect;

use crate::control::{ControlSnapshot, MruView, PeerVariables, SharedControl};
use crate::server::ServerCounters;
use history::History;
use http::{Request, Response};

/// What the endpoints read: handed over by the daemon when it starts the listener.
#[derive(Clone)]
pub struct Sources {
    /// The mode 6 snapshot (system and peer variables) and the workers' client tables.
    pub control: SharedControl,
    /// The workers' packet counters.
    pub counters: Arc<ServerCounters>,
}

/// The server counters at one instant, plus the size of the rate-limit tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Datagrams received.
    pub received: u64,
    /// Replies sent (time and control).
    pub replied: u64,
    /// KoDs sent.
    pub kods: u64,
    /// Datagrams dropped, for any reason.
    pub dropped: u64,
    /// Of those, dropped by rate limiting.
    pub rate_limited: u64,
    /// Client addresses held in the rate-limit (MRU) tables, merged over workers.
    pub clients: u64,
}

impl Sources {
    /// Read the counters and count the clients in the workers' tables.
    pub fn server_stats(&self) -> ServerStats {
        let c = &self.counters;
        // Counting goes through the MRU view, which merges a client seen by several
        // workers into one; the restrict table only colours entries, so an empty one
        // does. At the default `mru maxmem` this is a few thousand entries per worker.
        let clients = self
            .control
            .tables
            .view(&RestrictTable::new())
            .entries()
            .len() as u64;
        ServerStats {
            received: c.received.load(Ordering::Relaxed),
            replied: c.replied.load(Ordering::Relaxed),
            kods: c.kods.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            rate_limited: c.rate_limited.load(Ordering::Relaxed),
            clients,
        }
    }
}

/// The metrics listener, bound but not yet serving.
#[derive(Debug)]
pub struct MetricsListener {
    listener: TcpListener,
    addr: SocketAddr,
}

impl MetricsListener {
    /// Bind `addr` (call before the daemon detaches, so errors reach the terminal).
    pub fn bind(addr: SocketAddr) -> io::Result<MetricsListener> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        Ok(MetricsListener { listener, addr })
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Start the HTTP server and the history sampler (call after the fork).
    pub fn start(self, sources: Sources) -> io::Result<MetricsService> {
        let stop = Arc::new(AtomicBool::new(false));
        let history = Arc::new(Mutex::new(History::new()));
        let started = unix_now();
        {
            let (sources, history, stop) = (sources.clone(), history.clone(), stop.clone());
            std::thread::Builder::new()
                .name("metrics-history".into())
                .spawn(move || sample_history(&sources, &history, &stop))?;
        }
        let app = App {
            sources,
            history: history.clone(),
            started,
        };
        http::serve(
            self.listener,
            Arc::new(move |req: &Request| app.route(req)),
            stop.clone(),
        )?;
        tracing::info!(
            "metrics and status page on http://{}/ (/metrics, /api/status)",
            self.addr
        );
        Ok(MetricsService {
            stop,
            addr: self.addr,
            history,
        })
    }
}

/// Bind and start in one step (for callers that do not fork).
pub fn start(addr: SocketAddr, sources: Sources) -> io::Result<MetricsService> {
    MetricsListener::bind(addr)?.start(sources)
}

/// The running endpoints; dropping this stops them.
pub struct MetricsService {
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
    history: Arc<Mutex<History>>,
}

impl MetricsService {
    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The recorded history (for tests and diagnostics).
    pub fn history(&self) -> Arc<Mutex<History>> {
        self.history.clone()
    }
}

impl Drop for MetricsService {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // The accept thread blocks in accept(): one connection wakes it to see `stop`.
        let wake = match self.addr.ip() {
            IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let _ = std::net::TcpStream::connect_timeout(
            &SocketAddr::new(wake, self.addr.port()),
            Duration::from_millis(200),
        );
    }
}

/// How often the sampler looks at the published snapshot. Sources are polled every
/// 8 s at the fastest (iburst: 2 s), so one look a second sees every new sample.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

fn sample_history(sources: &Sources, history: &Mutex<History>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let snapshot = sources.control.load();
        if let Ok(mut h) = history.lock() {
            h.record(&snapshot, unix_now());
        }
        std::thread::sleep(SAMPLE_EVERY);
    }
}

/// The request router, owning what the handlers read.
struct App {
    sources: Sources,
    history: Arc<Mutex<History>>,
    started: f64,
}

impl App {
    fn route(&self, req: &Request) -> Response {
        match req.path.as_str() {
            "/metrics" => {
                let snapshot = self.sources.control.load();
                let stats = self.sources.server_stats();
                Response::ok(
                    exposition::CONTENT_TYPE,
                    exposition::render(&snapshot, &stats, self.started).into_bytes(),
                )
            }
            "/api/status" => {
                let snapshot = self.sources.control.load();
                let stats = self.sources.server_stats();
                Response::ok(
                    json::CONTENT_TYPE,
                    json::status(&snapshot, &stats, unix_now(), self.started).into_bytes(),
                )
            }
            "/api/history" => {
                let since = req.query_param("since").and_then(|s| s.parse::<f64>().ok());
                let body = match self.history.lock() {
                    Ok(h) => json::history(&h, unix_now(), since.unwrap_or(f64::NEG_INFINITY)),
                    Err(_) => return Response::error(500, "history unavailable"),
                };
                Response::ok(json::CONTENT_TYPE, body.into_bytes())
            }
            path => match web::asset(path) {
                Some((content_type, body)) => Response::ok(content_type, body.as_bytes().to_vec()),
                None => Response::error(404, "not found"),
            },
        }
    }
}

/// Seconds since 1970 on the system clock (the page's time axis).
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Whether the daemon is synchronised: leap not "alarm" and a usable stratum, as
/// `ntpstat` decides.
pub fn is_synchronised(snapshot: &ControlSnapshot) -> bool {
    snapshot.system.leap != 3 && snapshot.system.stratum > 0 && snapshot.system.stratum < 16
}

/// The `source` label and key of a peer: its address, with the port when it is not
/// 123 (so two sources on one address stay distinct), `127.127.t.u` for reference
/// clocks.
pub fn source_key(p: &PeerVariables) -> String {
    if p.is_refclock() || p.srcport == 123 || p.srcport == 0 {
        p.srcadr.to_string()
    } else {
        SocketAddr::new(p.srcadr, p.srcport).to_string()
    }
}

/// A peer's name: the configured host name (`LOCAL(0)` for the local clock), else the
/// address.
pub fn source_name(p: &PeerVariables) -> String {
    p.srchost.clone().unwrap_or_else(|| p.srcadr.to_string())
}

/// Every selection state, in code order.
pub const SELECTIONS: [PeerSelect; 8] = [
    PeerSelect::Reject,
    PeerSelect::Falsetick,
    PeerSelect::Excess,
    PeerSelect::Outlier,
    PeerSelect::Candidate,
    PeerSelect::Backup,
    PeerSelect::SysPeer,
    PeerSelect::PpsPeer,
];

#[cfg(test)]
pub(crate) mod testdata {
    use std::net::{IpAddr, Ipv4Addr};

    use meridian_proto::{NtpTimestamp, PeerSelect, PeerStatus, ReferenceId, SystemStatus};

    use crate::control::{ControlSnapshot, PeerVariables, SystemVariables};

    /// A synchronised daemon with one network source and the local clock.
    pub fn snapshot() -> ControlSnapshot {
        let system = SystemVariables {
            status: SystemStatus::from_word(0x0615),
            version: "meridian 0.1.0".into(),
            processor: "x86_64".into(),
            system: "Linux/6.1.0".into(),
            leap: 0,
            stratum: 3,
            precision: -23,
            root_delay: 0.001_234,
            root_dispersion: 0.025_123,
            refid: ReferenceId::from_ipv4(Ipv4Addr::new(192, 0, 2, 1)),
            reftime: NtpTimestamp::from_unix(1_800_000_000, 0),
            peer: 100,
            tc: 6,
            mintc: 3,
            offset: -0.000_116,
            frequency: -11.5,
            sys_jitter: 0.000_25,
            clk_jitter: 0.000_3,
            clk_wander: 0.014,
            tai: Some(37),
            leapsec: None,
            expire: None,
        };
        let peer = |id: u16, addr: [u8; 4], port: u16, select: PeerSelect, name: Option<&str>| {
            PeerVariables {
                assoc_id: id,
                status: PeerStatus {
                    configured: true,
                    reachable: true,
                    select,
                    ..Default::default()
                },
                srcadr: IpAddr::V4(Ipv4Addr::from(addr)),
                srcport: port,
                srchost: name.map(str::to_string),
                dstadr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                dstport: 0,
                leap: 0,
                stratum: 2,
                precision: -20,
                root_delay: 0.01,
                root_dispersion: 0.02,
                refid: ReferenceId::from_ascii(b"GPS"),
                reftime: NtpTimestamp::from_unix(1_800_000_000, 0),
                rec: NtpTimestamp::from_unix(1_800_000_000, 0),
                reach: 0o377,
                unreach: 0,
                hmode: 3,
                pmode: 4,
                hpoll: 6,
                ppoll: 6,
                headway: 0,
                flash: 0,
                keyid: 0,
                offset: -0.000_116,
                delay: 0.000_474,
                dispersion: 0.001,
                jitter: 0.000_061,
                filter: Vec::new(),
            }
        };
        ControlSnapshot {
            system,
            peers: vec![
                peer(
                    100,
                    [192, 0, 2, 1],
                    123,
                    PeerSelect::SysPeer,
                    Some("ntp1.example"),
                ),
                peer(
                    101,
                    [127, 127, 1, 0],
                    123,
                    PeerSelect::Candidate,
                    Some("LOCAL(0)"),
                ),
                peer(102, [192, 0, 2, 1], 10123, PeerSelect::Falsetick, None),
            ],
        }
    }
}
