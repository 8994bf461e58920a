//! The daemon's synchronisation loop: the IO around `meridian_sync::SyncCore`.
//!
//! It resolves the configured `server`, `pool` and `peer` names, sends the requests the
//! core asks for from a socket per address family (ephemeral, kernel-randomised source
//! ports), hands every reply back with its kernel receive timestamp, applies the
//! discipline's commands to the clock, and keeps the drift file. A `peer` association
//! has a socket of its own on the serving port, so symmetric packets go port to port;
//! `pool` membership is kept by [`meridian_sync::Pool`] with the system resolver.
//! Replies are received on a thread per socket and passed over a channel, so the loop
//! itself waits on one thing.

pub mod clock_driver;
pub mod drift;
pub mod nts_client;

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_algo::{DisciplineConfig, DisciplineEvent, LeapKind, SelectConfig};
use meridian_clock::{Clock, LeapAction};
use meridian_conf::leapfile::{parse_leapfile, LeapTable};
use meridian_conf::{Config, SourceConfig, SourceKind};
use meridian_os::udp::{enable_rx_metadata, RecvBatch};
use meridian_proto::NtpTimestamp;
use meridian_sync::{
    AssocKind, Pool, PoolReview, SourceEvent, SourceOptions, SyncConfig, SyncCore, SystemVars,
    MAX_REQUEST_LEN,
};

use clock_driver::{ClockDriver, FailureLog};

/// How often the drift file is rewritten (classic ntpd: hourly).
pub const DRIFT_WRITE_INTERVAL: f64 = 3600.0;
/// How long to wait before retrying a name that did not resolve.
pub const RESOLVE_RETRY: f64 = 60.0;
/// How often pool membership is reviewed (members dropped after
/// [`meridian_sync::POOL_UNREACH_LIMIT`] unanswered polls, gaps refilled).
pub const POOL_CHECK_INTERVAL: f64 = 64.0;
/// With `-x`, offsets up to this are slewed rather than stepped (classic ntpd).
pub const SLEW_ONLY_THRESHOLD: f64 = 600.0;

/// Daemon flags that shape the discipline.
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncFlags {
    /// `-g`: the first correction may exceed the panic threshold.
    pub allow_big_first_step: bool,
    /// `-x`: slew rather than step up to 600 s.
    pub slew_only: bool,
    /// The port the server answers on, when it serves: `peer` associations send from it
    /// (see [`peer_socket`]). `None` (`-q`, tests) sends them from an ephemeral port.
    pub serving_port: Option<u16>,
}

/// What happened in one turn of the loop that the daemon must act on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LoopEvent {
    /// Nothing special.
    Idle,
    /// The discipline corrected the clock by `offset` seconds, by a step or a slew.
    ClockUpdated {
        /// Whether it was a step.
        stepped: bool,
        /// The correction, seconds.
        offset: f64,
    },
    /// The offset is beyond the panic threshold: classic ntpd exits here.
    Panic,
}

struct Received {
    from: SocketAddr,
    data: Vec<u8>,
    kernel_rx: Option<NtpTimestamp>,
    /// It came in on a `peer` association's own socket (see [`peer_socket`]).
    via_peer_socket: bool,
}

struct Pending {
    config: SourceConfig,
    next_try: f64,
}

/// The synchronisation loop's state.
pub struct SyncLoop {
    core: SyncCore,
    clock: Box<dyn Clock + Send>,
    failures: FailureLog,
    v4: Option<UdpSocket>,
    v6: Option<UdpSocket>,
    replies: Receiver<Received>,
    reply_sender: Sender<Received>,
    started: Instant,
    pending: Vec<Pending>,
    configured: HashMap<String, Vec<u16>>,
    drift_path: Option<PathBuf>,
    last_drift_write: f64,
    maxclock: usize,
    leap_table: Option<LeapTable>,
    /// The kernel inserts or deletes the second itself once armed; the observe-only
    /// clock needs the step applied at midnight.
    kernel_does_leaps: bool,
    armed_leap: Option<LeapKind>,
    key_exchanges: nts_client::KeyExchanges,
    stats: crate::stats::StatsWriter,
    /// Each `pool` line (by source key) with the members it holds.
    pools: HashMap<String, (SourceConfig, Pool)>,
    next_pool_check: f64,
    serving_port: Option<u16>,
    /// Sockets of the `peer` associations, by association id; `None` where one could
    /// not be opened (the association then sends from the ephemeral client socket).
    peer_sockets: HashMap<u16, Option<PeerSocket>>,
}

/// Read and verify the `leapfile`, warning when it has expired.
fn load_leap_table(config: &Config) -> Option<LeapTable> {
    let path = config.leapfile.as_ref()?;
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!("leapfile {}: {e}", path.display());
            return None;
        }
    };
    match parse_leapfile(&text) {
        Ok(table) => {
            let now = unix_seconds(meridian_os::read_realtime()) as i64;
            if table.is_expired(now) {
                tracing::warn!("leapfile {} has expired: get a fresh copy", path.display());
            } else {
                tracing::info!(
                    "leapfile {}: TAI offset {} s",
                    path.display(),
                    table.tai_offset(now).unwrap_or(0)
                );
            }
            Some(table)
        }
        Err(e) => {
            tracing::error!("leapfile {} rejected: {e}", path.display());
            None
        }
    }
}

/// Selection and discipline settings from `tos`, `tinker`, the drift file and the flags.
pub fn sync_config(config: &Config, flags: SyncFlags, drift_ppm: Option<f64>) -> SyncConfig {
    let tos = &config.tos;
    let tinker = &config.tinker;
    let mut discipline = DisciplineConfig {
        step_threshold: tinker.step,
        stepout: tinker.stepout,
        panic_threshold: if tinker.panic > 0.0 {
            tinker.panic
        } else {
            f64::INFINITY
        },
        allow_first_big_step: flags.allow_big_first_step,
        initial_frequency_ppm: drift_ppm,
        ..DisciplineConfig::default()
    };
    if flags.slew_only {
        discipline.step_threshold = discipline.step_threshold.max(SLEW_ONLY_THRESHOLD);
    }
    // A step threshold of 0 means "never step" in ntpd.
    if discipline.step_threshold <= 0.0 {
        discipline.step_threshold = f64::INFINITY;
    }
    if let Some(minpoll) = config
        .sources
        .iter()
        .filter(|s| !s.is_refclock())
        .map(|s| s.minpoll)
        .min()
    {
        discipline.minpoll = minpoll;
    }
    if let Some(maxpoll) = config
        .sources
        .iter()
        .filter(|s| !s.is_refclock())
        .map(|s| s.maxpoll)
        .max()
    {
        discipline.maxpoll = maxpoll.max(discipline.minpoll);
    }
    SyncConfig {
        select: SelectConfig {
            minsane: usize::from(tos.minsane),
            minclock: usize::from(tos.minclock),
            maxclock: usize::from(tos.maxclock),
            maxdist: tos.maxdist,
            mindist: tos.mindist,
        },
        discipline,
    }
}

fn source_options(s: &SourceConfig) -> SourceOptions {
    SourceOptions {
        minpoll: s.minpoll,
        maxpoll: s.maxpoll,
        iburst: s.iburst,
        burst: s.burst,
        prefer: s.prefer,
        noselect: s.noselect,
        truechimer: s.true_chimer,
        version: s.version,
        key: s.key.map(u32::from),
        nts: s.nts,
        symmetric: s.kind == SourceKind::Peer,
    }
}

fn open_client_socket(bind: &str, tx: Sender<Received>) -> io::Result<UdpSocket> {
    let addr: SocketAddr = bind.parse().map_err(io::Error::other)?;
    let socket = udp_socket_for(addr)?;
    socket.bind(&addr.into())?;
    enable_rx_metadata(&socket, addr.is_ipv6(), false)?;
    let socket: UdpSocket = socket.into();
    spawn_reader(socket.try_clone()?, tx, None)?;
    Ok(socket)
}

/// An unbound UDP socket of `addr`'s family; IPv6 ones stay IPv6-only, so an IPv4
/// socket on the same port never collides with them.
fn udp_socket_for(addr: SocketAddr) -> io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    Ok(socket)
}

/// A socket for the symmetric association with `peer`: bound to the serving port (with
/// `SO_REUSEPORT`, beside the server's sockets) and connected to the peer.
///
/// RFC 5905 peers talk port to port, and a peer that keys its association by address
/// and port (ntpd, chronyd) only takes our mode 1 packets as part of it when they come
/// from the port it sends to. Being connected, the socket also gets everything the peer
/// sends to that port: Linux prefers the connected member of a reuseport group, so the
/// peer's mode 1 packets reach the sync loop rather than the server's stateless answer
/// (and its client requests, from a peer without symmetric mode, are answered by the
/// loop: [`SyncCore::answer_peer_client`]). The reader stops when `stop` is set (the
/// association went away).
fn peer_socket(
    peer: SocketAddr,
    port: u16,
    tx: Sender<Received>,
    stop: Arc<AtomicBool>,
) -> io::Result<UdpSocket> {
    let bind: SocketAddr = if peer.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, port).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, port).into()
    };
    let socket = udp_socket_for(bind)?;
    socket.set_reuse_port(true)?;
    socket.bind(&bind.into())?;
    socket.connect(&peer.into())?;
    enable_rx_metadata(&socket, bind.is_ipv6(), false)?;
    // The reader wakes now and then to notice `stop`.
    socket.set_read_timeout(Some(Duration::from_millis(500)))?;
    let socket: UdpSocket = socket.into();
    spawn_reader(socket.try_clone()?, tx, Some(stop))?;
    Ok(socket)
}

/// Receive on `reader` until the loop goes away (or `stop` is set), passing every
/// plausible NTP datagram on with its kernel receive timestamp.
fn spawn_reader(
    reader: UdpSocket,
    tx: Sender<Received>,
    stop: Option<Arc<AtomicBool>>,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name("ntp-client-rx".into())
        .spawn(move || {
            let mut batch = RecvBatch::new();
            while !stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed)) {
                let n = match batch.recv(&reader) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => continue,
                    Err(e)
                        if stop.is_some()
                            && matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                            ) =>
                    {
                        continue
                    }
                    Err(_) => return,
                };
                for i in 0..n {
                    let Some(p) = batch.get(i) else { continue };
                    // Server replies are a 48-octet header plus optional extensions and MAC;
                    // a few per minute, so copying them out costs nothing that matters.
                    if p.data.len() < 48 || p.truncated {
                        continue;
                    }
                    let data = p.data.to_vec();
                    if tx
                        .send(Received {
                            from: p.source,
                            data,
                            kernel_rx: p.kernel_rx,
                            via_peer_socket: stop.is_some(),
                        })
                        .is_err()
                    {
                        return;
                    }
                }
            }
        })?;
    Ok(())
}

/// The socket of one `peer` association (see [`peer_socket`]).
struct PeerSocket {
    addr: SocketAddr,
    socket: UdpSocket,
    stop: Arc<AtomicBool>,
}

impl Drop for PeerSocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl SyncLoop {
    /// Set up from `config`: read the drift file, open client sockets, queue the
    /// configured sources for resolution, and install the drift frequency.
    pub fn new(
        config: &Config,
        flags: SyncFlags,
        clock: Box<dyn Clock + Send>,
        kernel_does_leaps: bool,
    ) -> Self {
        let drift_path = config.driftfile.as_ref().map(|d| d.path.clone());
        let drift_ppm = match drift_path.as_deref().map(drift::read) {
            Some(Ok(ppm)) => ppm,
            Some(Err(e)) => {
                tracing::warn!("ignoring drift file: {e}");
                None
            }
            None => None,
        };
        if let Some(ppm) = drift_ppm {
            tracing::info!("initial frequency {ppm:.3} ppm from the drift file");
        }
        let precision = clock.precision();
        let core = SyncCore::new(sync_config(config, flags, drift_ppm), precision);
        let (tx, rx) = mpsc::channel();
        let mut sync = SyncLoop {
            core,
            clock,
            failures: FailureLog::default(),
            v4: None,
            v6: None,
            replies: rx,
            reply_sender: tx,
            started: Instant::now(),
            pending: Vec::new(),
            configured: HashMap::new(),
            drift_path,
            last_drift_write: 0.0,
            maxclock: usize::from(config.tos.maxclock).max(1),
            leap_table: load_leap_table(config),
            kernel_does_leaps,
            armed_leap: None,
            key_exchanges: nts_client::KeyExchanges::default(),
            pools: HashMap::new(),
            serving_port: flags.serving_port,
            peer_sockets: HashMap::new(),
            next_pool_check: POOL_CHECK_INTERVAL,
            stats: crate::stats::StatsWriter::new(
                config,
                unix_seconds(meridian_os::read_realtime()),
            ),
        };
        if drift_ppm.is_some() {
            let command = sync.core.initial_command();
            command.apply(&mut ClockDriver::new(
                sync.clock.as_mut(),
                &mut sync.failures,
            ));
        }
        sync.reconfigure(config);
        sync
    }

    /// Seconds since the loop started (the core's monotonic scale).
    pub fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// The core, for status reports.
    pub fn core(&self) -> &SyncCore {
        &self.core
    }

    /// The system variables.
    pub fn system(&self) -> &SystemVars {
        self.core.system()
    }

    /// The clock being disciplined.
    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// Whether any network source is configured (resolved or not).
    pub fn has_sources(&self) -> bool {
        !self.configured.is_empty() || !self.pending.is_empty()
    }

    /// Bring the associations in line with `config` (start-up and SIGHUP): new names are
    /// queued for resolution, names no longer configured are removed.
    pub fn reconfigure(&mut self, config: &Config) {
        let wanted: Vec<&SourceConfig> =
            config.sources.iter().filter(|s| !s.is_refclock()).collect();
        let keys: Vec<String> = wanted.iter().map(|s| source_key(s)).collect();
        let gone: Vec<String> = self
            .configured
            .keys()
            .filter(|k| !keys.contains(k))
            .cloned()
            .collect();
        for key in gone {
            for id in self.configured.remove(&key).unwrap_or_default() {
                tracing::info!("removing association {id} ({key})");
                self.core.remove(id);
                self.key_exchanges.retain(&self.core);
            }
        }
        self.pools.retain(|k, _| keys.contains(k));
        self.pending
            .retain(|p| keys.contains(&source_key(&p.config)));
        if config.leapfile.is_some() {
            self.leap_table = load_leap_table(config);
        }
        self.core.set_keys(crate::load_keys(config));
        self.stats =
            crate::stats::StatsWriter::new(config, unix_seconds(meridian_os::read_realtime()));
        let now = self.now();
        for (s, key) in wanted.into_iter().zip(keys) {
            if !self.configured.contains_key(&key)
                && !self.pending.iter().any(|p| source_key(&p.config) == key)
            {
                self.pending.push(Pending {
                    config: s.clone(),
                    next_try: now,
                });
            }
        }
        self.resolve_pending(now);
    }

    fn socket_for(&mut self, addr: SocketAddr) -> Option<&UdpSocket> {
        let (slot, bind) = if addr.is_ipv4() {
            (&mut self.v4, "0.0.0.0:0")
        } else {
            (&mut self.v6, "[::]:0")
        };
        if slot.is_none() {
            match open_client_socket(bind, self.reply_sender.clone()) {
                Ok(s) => *slot = Some(s),
                Err(e) => {
                    tracing::warn!("cannot open a client socket for {addr}: {e}");
                    return None;
                }
            }
        }
        slot.as_ref()
    }

    /// The connected socket of `peer` association `id` sending to `addr`, opened on
    /// first use; `None` for other associations, or when it cannot be opened (another
    /// user owns the serving port's sockets after `-u`, say).
    fn peer_socket_for(&mut self, id: u16, addr: SocketAddr) -> Option<&UdpSocket> {
        let port = self.serving_port?;
        let a = self.core.associations().iter().find(|a| a.id == id)?;
        if a.kind != AssocKind::Peer {
            return None;
        }
        self.prune_peer_sockets();
        if !self.peer_sockets.contains_key(&id) {
            let stop = Arc::new(AtomicBool::new(false));
            let opened = match peer_socket(addr, port, self.reply_sender.clone(), stop.clone()) {
                Ok(socket) => {
                    if let Ok(local) = socket.local_addr() {
                        self.core.set_local_address(id, local.ip());
                    }
                    tracing::info!("peer {addr}: symmetric mode from port {port}");
                    Some(PeerSocket { addr, socket, stop })
                }
                Err(e) => {
                    tracing::warn!(
                        "peer {addr}: cannot send from port {port} ({e}); using an ephemeral port, so the peer will answer as a server"
                    );
                    None
                }
            };
            self.peer_sockets.insert(id, opened);
        }
        self.peer_sockets.get(&id)?.as_ref().map(|p| &p.socket)
    }

    /// Close the sockets of `peer` associations that are gone (reload, DENY) or aimed
    /// elsewhere now: a stale one would keep taking the old peer's packets.
    fn prune_peer_sockets(&mut self) {
        let core = &self.core;
        self.peer_sockets.retain(|id, s| {
            let assoc = core.associations().iter().find(|a| a.id == *id);
            assoc.is_some_and(|a| s.as_ref().is_none_or(|s| s.addr == a.addr))
        });
    }

    fn resolve_pending(&mut self, now: f64) {
        let mut still = Vec::new();
        for p in std::mem::take(&mut self.pending) {
            if p.next_try > now {
                still.push(p);
                continue;
            }
            // For an NTS source, `port` is the NTS-KE port; the NTP port comes from the
            // key exchange.
            let port = service_port(&p.config);
            let family = p.config.family;
            if p.config.kind == SourceKind::Pool {
                // From now on the pool reviews itself (and retries a failed name) every
                // POOL_CHECK_INTERVAL.
                self.review_pool(&source_key(&p.config), &p.config, now);
                continue;
            }
            let addrs: Vec<SocketAddr> = match (p.config.address.as_str(), port).to_socket_addrs() {
                Ok(a) => a
                    .filter(|a| family.is_none_or(|f| f.matches(a.ip())))
                    .collect(),
                Err(e) => {
                    tracing::warn!(
                        "cannot resolve {}: {e}; retrying in {RESOLVE_RETRY} s",
                        p.config.address
                    );
                    still.push(Pending {
                        next_try: now + RESOLVE_RETRY,
                        ..p
                    });
                    continue;
                }
            };
            let kind = match p.config.kind {
                SourceKind::Peer => AssocKind::Peer,
                _ => AssocKind::Server,
            };
            let mut ids = Vec::new();
            for addr in addrs.into_iter().take(1) {
                if let Some(id) = self.mobilise(&p.config, kind, addr, ids.len(), now) {
                    ids.push(id);
                }
            }
            if ids.is_empty() {
                still.push(Pending {
                    next_try: now + RESOLVE_RETRY,
                    ..p
                });
            } else {
                self.configured.insert(source_key(&p.config), ids);
            }
        }
        self.pending = still;
    }

    /// Add one association for `config` at `addr`; `nth` spreads the first polls.
    fn mobilise(
        &mut self,
        config: &SourceConfig,
        kind: AssocKind,
        addr: SocketAddr,
        nth: usize,
        now: f64,
    ) -> Option<u16> {
        self.socket_for(addr)?;
        // Spread first polls a little so several sources don't go out together.
        let first = now + 0.1 * nth as f64 + 0.5 * rand::random::<f64>();
        let id = self
            .core
            .add(&config.address, addr, kind, source_options(config), first);
        tracing::info!(
            "association {id}: {} {} ({addr}){}",
            kind_word(kind),
            config.address,
            if config.nts { " with NTS" } else { "" }
        );
        if config.nts {
            let target = nts_client::NtsTarget {
                name: config.address.clone(),
                ke_addr: addr,
                trust: meridian_nts::TrustAnchors::from_options(config.ca.as_deref(), config.noval),
            };
            self.key_exchanges.add(id, target, now);
        }
        Some(id)
    }

    /// Keep each `pool` at `tos maxclock` useful members: drop members that stopped
    /// answering, and fill the gaps with fresh addresses from the pool's name.
    fn maintain_pools(&mut self, now: f64) {
        if now < self.next_pool_check {
            return;
        }
        self.next_pool_check = now + POOL_CHECK_INTERVAL;
        let pools: Vec<(String, SourceConfig)> = self
            .pools
            .iter()
            .map(|(k, (c, _))| (k.clone(), c.clone()))
            .collect();
        for (key, config) in pools {
            self.review_pool(&key, &config, now);
        }
    }

    /// Review the pool of `config` (created on first use) with the system resolver, and
    /// do the IO side of what changed.
    fn review_pool(&mut self, key: &str, config: &SourceConfig, now: f64) {
        let (_, pool) = self.pools.entry(key.to_string()).or_insert_with(|| {
            let pool = Pool::new(
                &config.address,
                service_port(config),
                source_options(config),
            );
            (config.clone(), pool)
        });
        let mut dns = system_resolver(config.family);
        let review = pool.review(&mut self.core, &mut dns, self.maxclock, now);
        let members = pool.members();
        self.pool_reviewed(config, &review, now);
        self.configured.insert(key.to_string(), members);
    }

    fn pool_reviewed(&mut self, config: &SourceConfig, review: &PoolReview, now: f64) {
        if let Some(e) = &review.resolve_error {
            tracing::warn!("pool {}: cannot resolve: {e}", config.address);
        }
        for (id, addr) in &review.removed {
            tracing::info!(
                "pool {}: dropping unreachable member {id} ({addr})",
                config.address
            );
        }
        if !review.removed.is_empty() {
            self.key_exchanges.retain(&self.core);
        }
        for &(id, addr) in &review.added {
            // The socket opens lazily at the first send too; opening it now reports a
            // failure next to the association it concerns.
            self.socket_for(addr);
            tracing::info!(
                "association {id}: pool {} ({addr}){}",
                config.address,
                if config.nts { " with NTS" } else { "" }
            );
            if config.nts {
                let target = nts_client::NtsTarget {
                    name: config.address.clone(),
                    ke_addr: addr,
                    trust: meridian_nts::TrustAnchors::from_options(
                        config.ca.as_deref(),
                        config.noval,
                    ),
                };
                self.key_exchanges.add(id, target, now);
            }
        }
    }

    /// Run until `max_wait` has passed or something happened: send due requests, take
    /// in replies, discipline the clock.
    pub fn turn(&mut self, max_wait: Duration) -> LoopEvent {
        let now = self.now();
        if !self.pending.is_empty() {
            self.resolve_pending(now);
        }
        self.key_exchanges.drive(&mut self.core, now);
        self.maintain_pools(now);
        self.prune_peer_sockets();
        for id in self.core.due(now) {
            let t1 = match self.clock.now() {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!("cannot read the clock: {e}");
                    break;
                }
            };
            let mut bytes = [0u8; MAX_REQUEST_LEN];
            let Some((addr, len)) = self.core.transmit_datagram(
                id,
                self.now(),
                t1,
                rand::random(),
                &rand::random(),
                &mut bytes,
            ) else {
                continue;
            };
            let sent = match self.peer_socket_for(id, addr) {
                Some(socket) => Some(socket.send(&bytes[..len]).map(|_| ())),
                None => self
                    .socket_for(addr)
                    .map(|socket| socket.send_to(&bytes[..len], addr).map(|_| ())),
            };
            if let Some(Err(e)) = sent {
                tracing::debug!("send to {addr} failed: {e}");
            }
        }
        let mut wait = self.core.next_wakeup().map_or(max_wait, |at| {
            Duration::from_secs_f64((at - self.now()).clamp(0.0, max_wait.as_secs_f64()))
        });
        if let Some(to_leap) = self.seconds_to_leap() {
            // Wake right after midnight, so the observe clock's leap is on time.
            wait = wait.min(Duration::from_secs_f64(to_leap + 0.001));
        }
        let mut event = LoopEvent::Idle;
        let mut first = true;
        loop {
            let received = if first {
                first = false;
                self.replies.recv_timeout(wait)
            } else {
                self.replies
                    .try_recv()
                    .map_err(|_| RecvTimeoutError::Timeout)
            };
            let Ok(r) = received else { break };
            match self.handle_reply(r) {
                LoopEvent::Idle => {}
                e => event = e,
            }
        }
        self.handle_leap();
        if let Some(path) = self.drift_path.clone() {
            let now = self.now();
            if self.core.system().discipline.synchronised
                && now - self.last_drift_write >= DRIFT_WRITE_INTERVAL
            {
                self.last_drift_write = now;
                self.write_drift(&path);
            }
        }
        event
    }

    fn handle_reply(&mut self, r: Received) -> LoopEvent {
        let raw = r.kernel_rx.unwrap_or_else(meridian_os::read_realtime);
        let t4 = self.clock.kernel_correction().apply(raw);
        let now = self.now();
        let utc = unix_seconds(t4);
        if r.via_peer_socket && r.data.first().is_some_and(|b| b & 7 == 3) {
            self.answer_peer_client(&r, t4);
            return LoopEvent::Idle;
        }
        let receipt = match self.core.receive_datagram(r.from, &r.data, t4, now, utc) {
            Ok(receipt) => receipt,
            Err(why) => {
                tracing::debug!("{}: reply refused, authentication: {why:?}", r.from);
                return LoopEvent::Idle;
            }
        };
        match &receipt.event {
            SourceEvent::RateLimited => {
                tracing::warn!("{}: rate limited (KoD RATE); polling less often", r.from)
            }
            SourceEvent::Demobilize(code) => tracing::warn!(
                "{}: server refuses us ({code:?}); association removed",
                r.from
            ),
            SourceEvent::Rejected(e) => tracing::debug!("{}: reply rejected: {e}", r.from),
            _ => {}
        }
        if matches!(
            receipt.event,
            SourceEvent::Updated(_) | SourceEvent::Held | SourceEvent::Stale
        ) {
            self.record_peerstats(receipt.association, utc);
        }
        let Some(command) = receipt.command else {
            return LoopEvent::Idle;
        };
        if command.event == DisciplineEvent::Panic {
            return LoopEvent::Panic;
        }
        command.apply(&mut ClockDriver::new(
            self.clock.as_mut(),
            &mut self.failures,
        ));
        self.record_loopstats(utc);
        match (command.step, command.slew) {
            (Some(offset), _) => LoopEvent::ClockUpdated {
                stepped: true,
                offset,
            },
            (None, Some(offset)) => LoopEvent::ClockUpdated {
                stepped: false,
                offset,
            },
            (None, None) => LoopEvent::Idle,
        }
    }

    /// A peer polled us as a client on the port of our symmetric packets (its `peer` is
    /// a `server`, as in NTPsec): the server never sees such a request, so answer it here.
    fn answer_peer_client(&mut self, r: &Received, t2: NtpTimestamp) {
        let Ok(t3) = self.clock.now() else { return };
        let mut out = [0u8; MAX_REQUEST_LEN];
        let Some(len) = self
            .core
            .answer_peer_client(r.from, &r.data, t2, t3, &mut out)
        else {
            return;
        };
        let socket = self
            .peer_sockets
            .values()
            .flatten()
            .find(|p| p.addr == r.from)
            .map(|p| &p.socket);
        if let Some(Err(e)) = socket.map(|s| s.send(&out[..len])) {
            tracing::debug!("answer to {}: {e}", r.from);
        }
    }

    /// Keep the leap second machinery in step: feed the table's verdict for today to the
    /// core, arm (or disarm) the kernel, and at midnight let the core follow the leap,
    /// stepping the clock ourselves when the kernel does not.
    fn handle_leap(&mut self) {
        let Ok(now) = self.clock.now() else { return };
        let utc = unix_seconds(now);
        if let Some(table) = &self.leap_table {
            let vote = table.leap_at_end_of_day(utc as i64).and_then(|d| match d {
                1 => Some(LeapKind::Insert),
                -1 => Some(LeapKind::Delete),
                _ => None,
            });
            self.core.set_leap_table_vote(utc, vote);
        }
        let pending = self.core.pending_leap().map(|p| p.kind);
        if self.kernel_does_leaps && pending != self.armed_leap {
            let action = match pending {
                Some(LeapKind::Insert) => LeapAction::Insert,
                Some(LeapKind::Delete) => LeapAction::Delete,
                None => LeapAction::None,
            };
            match self.clock.set_leap(action) {
                Ok(()) => tracing::info!("kernel leap second state: {action:?}"),
                Err(e) => tracing::error!("cannot arm the kernel leap second: {e}"),
            }
            self.armed_leap = pending;
        }
        if let Some(leap) = self.core.leap_due(utc) {
            tracing::info!("leap second {:?} at the end of the UTC day", leap.kind);
            if !self.kernel_does_leaps {
                leap.command.apply(&mut ClockDriver::new(
                    self.clock.as_mut(),
                    &mut self.failures,
                ));
            }
            self.armed_leap = None;
        }
    }

    /// Seconds until the armed leap second, if one is armed (the loop wakes for it).
    pub fn seconds_to_leap(&self) -> Option<f64> {
        let at = self.core.pending_leap()?.at;
        let now = unix_seconds(self.clock.now().ok()?);
        Some((at - now).max(0.0))
    }

    fn record_peerstats(&mut self, id: Option<u16>, utc: f64) {
        use meridian_conf::StatsKind;
        if !self.stats.is_enabled(StatsKind::Peerstats) {
            return;
        }
        let Some(a) = id.and_then(|id| self.core.associations().iter().find(|a| a.id == id)) else {
            return;
        };
        let Some(sample) = a.source.last_sample() else {
            return;
        };
        let vars = crate::control::network::association_variables(a, self.core.status_of(a.id));
        let jitter = a.source.filter_output().map_or(0.0, |o| o.jitter);
        let line = crate::stats::peerstats_line(
            utc,
            a.addr.ip(),
            vars.status.to_word(),
            sample.offset,
            sample.delay,
            sample.dispersion,
            jitter,
        );
        self.stats.record(StatsKind::Peerstats, utc, &line);
    }

    fn record_loopstats(&mut self, utc: f64) {
        use meridian_conf::StatsKind;
        if !self.stats.is_enabled(StatsKind::Loopstats) {
            return;
        }
        let sys = self.core.system();
        let d = &sys.discipline;
        let line = crate::stats::loopstats_line(
            utc,
            sys.offset,
            d.frequency_ppm,
            d.jitter,
            d.wander_ppm,
            sys.poll,
        );
        self.stats.record(StatsKind::Loopstats, utc, &line);
    }

    fn write_drift(&self, path: &std::path::Path) {
        let ppm = self.core.system().discipline.frequency_ppm;
        if let Err(e) = drift::write(path, ppm) {
            tracing::error!("cannot write drift file {}: {e}", path.display());
        }
    }

    /// Save the frequency now (at exit), if it is worth saving.
    pub fn save_drift(&self) {
        if let Some(path) = &self.drift_path {
            if self.core.system().discipline.updates > 0 {
                self.write_drift(path);
            }
        }
    }
}

/// The port a source's name resolves with: for an NTS source `port` is the NTS-KE port
/// (the NTP port comes from the key exchange).
fn service_port(s: &SourceConfig) -> u16 {
    s.port.unwrap_or(if s.nts {
        meridian_nts::NTS_KE_PORT
    } else {
        123
    })
}

/// The system resolver, keeping only addresses of `family` when one is configured.
fn system_resolver(
    family: Option<meridian_conf::AddrFamily>,
) -> impl FnMut(&str, u16) -> Result<Vec<SocketAddr>, String> {
    move |name, port| {
        (name, port)
            .to_socket_addrs()
            .map(|a| {
                a.filter(|a| family.is_none_or(|f| f.matches(a.ip())))
                    .collect()
            })
            .map_err(|e| e.to_string())
    }
}

fn source_key(s: &SourceConfig) -> String {
    format!("{} {} {:?}", s.kind.keyword(), s.address, s.port)
}

fn kind_word(kind: AssocKind) -> &'static str {
    match kind {
        AssocKind::Server => "server",
        AssocKind::Pool => "pool",
        AssocKind::Peer => "peer",
    }
}

fn unix_seconds(t: NtpTimestamp) -> f64 {
    let now_hint = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (secs, nanos) = t.to_unix(now_hint);
    secs as f64 + f64::from(nanos) * 1e-9
}
