//! `loadgen`: offer NTP client requests to a loopback server and measure its answers.
//!
//! It sends version-4 mode-3 requests with random transmit timestamps, at a fixed rate
//! (`--rate 100000`) or as fast as one CPU can (`--rate max`), for `--duration` seconds,
//! from `--clients` distinct source addresses in 127.0.0.0/8 (never 127.127/16, which
//! servers treat as reference-clock pseudo-addresses), with batched `sendmmsg`. With as
//! many sockets as clients, each socket is bound to its own address (and a random port);
//! with more clients than sockets, the sockets are bound to the wildcard address and each
//! datagram names its source with `IP_PKTINFO`, so 100 000 clients need only a few sockets.
//!
//! Every reply is checked: from the target, mode 4 version 4, delivered to the client that
//! asked, and with an origin timestamp equal to the transmit of a request still
//! outstanding (a table keyed by transmit). Latency runs from just before the `sendmmsg`
//! that carried the request to the kernel's receive timestamp of the reply
//! (`SO_TIMESTAMPNS`), so the load generator's own scheduling does not inflate it.
//! Replies arriving within `--drain-ms` after the last send are counted; the rest of the
//! requests are lost. Drops in the load generator's own socket buffers are reported
//! separately (`SO_RXQ_OVFL`), so they are not blamed on the server.
//!
//! With `--nts KE_ADDR`, it first runs NTS-KE (RFC 8915) with that server (`--nts-sessions`
//! exchanges, by default one per socket, at most 64), fills each session's cookie jar to
//! `--nts-cookies` with unmeasured requests, then sends NTS-protected requests (a fresh
//! Unique Identifier, a cookie never sent before, the authenticator); a reply counts only
//! if `NtsClientState::process_response` accepts it (UID, first answer, authenticator
//! under S2C), and its fresh cookie goes back into the jar. See `meridian_bench::nts`.
//!
//! With `--watch-pid`, the server's CPU time over the run and its memory are read from
//! `/proc`. The last line printed is the machine-readable summary: `RESULT key=value ...`.
#![warn(missing_docs)]

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::{Duration, Instant};

use clap::Parser;
use meridian_bench::ntp::{self, ReplyKind};
use meridian_bench::nts::{Ask, InFlight, Sessions};
use meridian_bench::{clock, stats};
use meridian_nts::{NtsError, TrustAnchors, UID_LEN};
use meridian_os::poll::Epoll;
use meridian_os::udp::{self, Received, RecvBatch, SendBatch};
use rand::{rngs::SmallRng, Rng, SeedableRng};
use socket2::{Domain, Protocol, Socket, Type};

/// Requests per second, or as fast as possible.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rate {
    /// A fixed offered rate.
    PerSecond(f64),
    /// Open loop, as fast as this process can send.
    Max,
}

impl FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("max") {
            return Ok(Rate::Max);
        }
        let (num, scale) = match s.strip_suffix(['k', 'K']) {
            Some(n) => (n, 1000.0),
            None => (s, 1.0),
        };
        match num.parse::<f64>() {
            Ok(r) if r > 0.0 && r.is_finite() => Ok(Rate::PerSecond(r * scale)),
            _ => Err(format!(
                "'{s}': expected a positive number of requests per second, or 'max'"
            )),
        }
    }
}

/// NTP load generator for loopback servers.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The server; must be in 127.0.0.0/8.
    #[arg(long, default_value = "127.0.0.1:12300")]
    target: SocketAddrV4,
    /// Offered requests per second, or "max".
    #[arg(long, default_value = "50000")]
    rate: Rate,
    /// Seconds of sending.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// Stop after this many requests (with `--clients N --count N` each client sends once).
    #[arg(long)]
    count: Option<u64>,
    /// Distinct client (source) addresses.
    #[arg(long, default_value_t = 64)]
    clients: u32,
    /// Sockets; at most `--clients`. Fewer sockets than clients switches to IP_PKTINFO sources.
    #[arg(long, default_value_t = 64)]
    sockets: u32,
    /// Milliseconds to wait for late replies after the last send.
    #[arg(long, default_value_t = 300)]
    drain_ms: u64,
    /// Pin to this CPU.
    #[arg(long)]
    cpu: Option<usize>,
    /// Server process whose CPU time and memory to report.
    #[arg(long)]
    watch_pid: Option<u32>,
    /// Label for the RESULT line (no spaces).
    #[arg(long, default_value = "run")]
    label: String,
    /// Print only the RESULT line.
    #[arg(long, short)]
    quiet: bool,
    /// Seed for the transmit timestamps (random when absent).
    #[arg(long)]
    seed: Option<u64>,
    /// Send NTS-protected requests, after NTS-KE with this server (TCP; loopback only).
    #[arg(long, value_name = "KE_ADDR")]
    nts: Option<SocketAddrV4>,
    /// CA certificate (PEM) the NTS-KE server's certificate must chain to; without it the
    /// certificate is not checked (the TLS handshake still is).
    #[arg(long, value_name = "FILE")]
    nts_ca: Option<PathBuf>,
    /// Name the NTS-KE server's certificate must be valid for.
    #[arg(long, default_value = "localhost")]
    nts_name: String,
    /// NTS-KE sessions (each client uses session `client % N`); default: one per socket,
    /// at most 64.
    #[arg(long)]
    nts_sessions: Option<u32>,
    /// Cookies each session's jar holds before the measurement starts (filled with
    /// unmeasured requests asking for 8 cookies each); during the run, a request whose jar
    /// holds fewer carries placeholders for the difference (at most 7), which replaces
    /// cookies lost with unanswered requests and covers the requests in flight.
    #[arg(long, default_value_t = 64)]
    nts_cookies: usize,
}

/// A hasher for keys that are already uniformly random (the transmit timestamps).
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// A request waiting for its reply.
#[derive(Debug)]
struct Pending {
    sent_ns: u64,
    client: u32,
    /// NTS requests: the state that checks the reply.
    nts: Option<Box<InFlight>>,
}

type PendingTable = HashMap<u64, Pending, BuildHasherDefault<IdentityHasher>>;

/// The `i`th client address: 127.a.b.c with a from 1, c in 1..=254, skipping 127.127/16.
fn client_addr(i: u32) -> Ipv4Addr {
    let c = (i % 254 + 1) as u8;
    let rest = i / 254;
    let b = (rest % 256) as u8;
    let mut a = rest / 256 + 1;
    if a >= 127 {
        a += 1;
    }
    Ipv4Addr::new(127, a.min(255) as u8, b, c)
}

/// Highest client count [`client_addr`] maps to distinct addresses.
const MAX_CLIENTS: u32 = 254 * 256 * 254;

#[derive(Debug, Default)]
struct Counts {
    sent: u64,
    send_errors: u64,
    replies: u64,
    kods: u64,
    invalid: u64,
    unknown: u64,
    misdelivered: u64,
    latencies_ns: Vec<u64>,
    /// NTS replies whose UID or authenticator failed.
    nts_bad: u64,
    /// NTS NAKs (counted in `kods` too).
    nts_naks: u64,
    /// Requests skipped because their session's cookie jar was empty.
    nts_starved: u64,
    /// Milliseconds during which no request could be sent for want of cookies.
    nts_stalled_ms: f64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !args.target.ip().is_loopback() || args.nts.is_some_and(|a| !a.ip().is_loopback()) {
        eprintln!(
            "loadgen: refusing target {} (NTS-KE {:?}): loopback (127.0.0.0/8) only",
            args.target, args.nts
        );
        return ExitCode::from(2);
    }
    if args.clients == 0
        || args.clients > MAX_CLIENTS
        || !(args.duration > 0.0 && args.duration <= 600.0)
    {
        eprintln!("loadgen: need 1..={MAX_CLIENTS} clients and a duration in (0, 600] s");
        return ExitCode::from(2);
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Datagrams per receive: more than the 32 sent per batch, so that reading replies
/// costs loadgen fewer system calls than sending requests.
const RX_BATCH: usize = 64;
type RxBatch = RecvBatch<RX_BATCH>;

fn open_sockets(args: &Args) -> std::io::Result<(Vec<Socket>, bool)> {
    let sockets = args.sockets.clamp(1, args.clients);
    let pktinfo = sockets < args.clients;
    let mut out = Vec::with_capacity(sockets as usize);
    for i in 0..sockets {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        s.set_nonblocking(true)?;
        // Large buffers so that our own side never drops what the server answered.
        udp::force_buffer_sizes(&s, 8 << 20)?;
        udp::enable_rx_metadata(&s, false, true)?;
        udp::enable_drop_counter(&s)?;
        let ip = if pktinfo {
            Ipv4Addr::UNSPECIFIED
        } else {
            client_addr(i)
        };
        s.bind(&SocketAddr::V4(SocketAddrV4::new(ip, 0)).into())?;
        out.push(s);
    }
    Ok((out, pktinfo))
}

fn run(args: &Args) -> std::io::Result<()> {
    if let Some(cpu) = args.cpu {
        meridian_os::host::pin_to_cpu(cpu)?;
    }
    let (sockets, pktinfo) = open_sockets(args)?;
    let mut epoll = Epoll::new(sockets.len())?;
    for (i, s) in sockets.iter().enumerate() {
        epoll.add(s, i as u64)?;
    }
    let mut rng = match args.seed {
        Some(s) => SmallRng::seed_from_u64(s),
        None => SmallRng::from_entropy(),
    };
    let mut nts = match args.nts {
        Some(ke) => Some(setup_nts(
            args, ke, &sockets, pktinfo, &mut epoll, &mut rng,
        )?),
        None => None,
    };
    let max_count = args.count.unwrap_or(u64::MAX);
    let expected = match args.rate {
        Rate::PerSecond(r) => ((r * args.duration) as u64).min(max_count),
        Rate::Max => max_count.min(4_000_000 * args.duration as u64 + 1_000_000),
    };
    // The table only holds requests in flight; it grows if the server falls far behind.
    let mut pending: PendingTable =
        HashMap::with_capacity_and_hasher((expected as usize).min(1 << 20), Default::default());
    let mut c = Counts {
        latencies_ns: Vec::with_capacity((expected as usize).min(4 << 20)),
        ..Counts::default()
    };
    let mut socket_drops = vec![0u32; sockets.len()];
    let mut tx = SendBatch::new();
    let mut rx = RxBatch::with_slots();
    let mut ready = Vec::with_capacity(sockets.len());
    let batch = udp::BATCH;
    let (mut next_socket, mut next_client) = (0usize, 0u32);
    let mut transmits = [0u64; 32];
    let mut clients_of = [0u32; 32];
    let mut flights: [Option<Box<InFlight>>; 32] = Default::default();
    let mut stalled_since: Option<Instant> = None;
    let placeholders_before = nts.as_ref().map_or(0, |n| n.placeholders);

    let own_cpu_before = stats::process_cpu_ns(std::process::id());
    let cpu_before = args.watch_pid.and_then(stats::process_cpu_ns);
    let wait_before = args.watch_pid.and_then(stats::process_wait_ns);
    let drops_before = stats::udp_port_drops(args.target.port());
    let start = Instant::now();
    let send_for = Duration::from_secs_f64(args.duration);
    let drain = Duration::from_millis(args.drain_ms);
    let mut last_send = start;
    let mut send_end = None;
    loop {
        let now = Instant::now();
        let elapsed = now - start;
        let sending = elapsed < send_for && c.sent + c.send_errors < max_count;
        if !sending {
            let end = *send_end.get_or_insert(now);
            if pending.is_empty() || now - end >= drain {
                break;
            }
        }
        if sending {
            let due = match args.rate {
                Rate::Max => batch as u64,
                Rate::PerSecond(r) => {
                    ((r * elapsed.as_secs_f64()) as u64).saturating_sub(c.sent + c.send_errors)
                }
            }
            .min(max_count - c.sent - c.send_errors);
            // Send in bursts of at least 8 unless the last send was 100 µs ago, so that a
            // modest rate still uses batches without delaying requests noticeably.
            if due >= 8 || (due > 0 && now - last_send >= Duration::from_micros(100)) {
                let want = (due as usize).min(batch);
                let s = next_socket % sockets.len();
                next_socket += 1;
                let mut k = 0;
                for _ in 0..want {
                    let client = if pktinfo {
                        let cl = next_client;
                        next_client = (next_client + 1) % args.clients;
                        cl
                    } else {
                        s as u32
                    };
                    let j = k;
                    let mut transmit: u64 = rng.gen();
                    while transmit == 0
                        || pending.contains_key(&transmit)
                        || transmits[..j].contains(&transmit)
                    {
                        transmit = rng.gen();
                    }
                    let mut uid = [0u8; UID_LEN];
                    if nts.is_some() {
                        rng.fill(&mut uid[..]);
                    }
                    let mut failed = None;
                    let source = pktinfo.then(|| IpAddr::V4(client_addr(client)));
                    let queued = tx.push_with(SocketAddr::V4(args.target), source, |buf| {
                        let Some(n) = nts.as_mut() else {
                            let header: &mut [u8; ntp::HEADER_LEN] = (&mut buf[..ntp::HEADER_LEN])
                                .try_into()
                                .expect("header fits a slot");
                            ntp::write_request(header, transmit);
                            return Some(ntp::HEADER_LEN);
                        };
                        let session = client % n.len() as u32;
                        match n.build(session, transmit, uid, Ask::Keep(args.nts_cookies), buf) {
                            Ok(Some((len, flight))) => {
                                flights[j] = Some(flight);
                                Some(len)
                            }
                            // No cookie to send with: nothing queued.
                            Ok(None) => None,
                            Err(e) => {
                                failed = Some(e);
                                None
                            }
                        }
                    });
                    if let Some(e) = failed {
                        return Err(std::io::Error::other(format!(
                            "building an NTS request: {e}"
                        )));
                    }
                    if !queued {
                        c.nts_starved += 1;
                        continue;
                    }
                    transmits[j] = transmit;
                    clients_of[j] = client;
                    k += 1;
                }
                // Latency starts here, just before the requests go to the kernel. Replies
                // are only read after the send returns, so the table can be filled after it.
                let sent_ns = clock::realtime_ns();
                if nts.is_some() {
                    if k == 0 {
                        stalled_since.get_or_insert(now);
                    } else if let Some(t) = stalled_since.take() {
                        c.nts_stalled_ms += (now - t).as_secs_f64() * 1e3;
                    }
                }
                let (ok, err) = if k > 0 {
                    tx.send_until_refused(&sockets[s])
                } else {
                    (0, None)
                };
                for j in 0..k {
                    let flight = flights[j].take();
                    if j < ok {
                        pending.insert(
                            transmits[j],
                            Pending {
                                sent_ns,
                                client: clients_of[j],
                                nts: flight,
                            },
                        );
                    }
                }
                c.sent += ok as u64;
                c.send_errors += (k - ok) as u64;
                if let (Some(e), false) = (err, args.quiet) {
                    if c.send_errors <= 3 {
                        eprintln!("loadgen: send failed: {e}");
                    }
                }
                last_send = now;
            }
        }
        // Poll when there is more to send soon; otherwise sleep up to 1 ms for replies.
        let idle_wait = if sending { 0 } else { 1 };
        ready.clear();
        epoll.wait(idle_wait, &mut ready)?;
        for &token in &ready {
            let s = token as usize;
            // A few rounds per socket per wake-up, so one busy socket cannot starve sending.
            for _ in 0..4 {
                let n = match rx.recv_nowait(&sockets[s]) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                let after_ns = clock::realtime_ns();
                for i in 0..n {
                    let Some(reply) = rx.get(i) else {
                        // Not IPv4 or IPv6: nothing a server of ours would send.
                        c.invalid += 1;
                        continue;
                    };
                    if let Some(d) = reply.socket_drops {
                        socket_drops[s] = socket_drops[s].max(d);
                    }
                    account(
                        &mut c,
                        &mut pending,
                        nts.as_mut(),
                        &reply,
                        after_ns,
                        args.target,
                        pktinfo,
                        s,
                    );
                }
                if n < RX_BATCH {
                    break;
                }
            }
        }
    }
    let cpu_after = args.watch_pid.and_then(stats::process_cpu_ns);
    let wait_after = args.watch_pid.and_then(stats::process_wait_ns);
    let own_cpu_after = stats::process_cpu_ns(std::process::id());
    let measured = Measured {
        wait_ns: match (wait_before, wait_after) {
            (Some(b), Some(a)) => Some(a.saturating_sub(b)),
            _ => None,
        },
        own_cpu_ns: match (own_cpu_before, own_cpu_after) {
            (Some(b), Some(a)) => Some(a.saturating_sub(b)),
            _ => None,
        },
        nts: nts.as_ref().map(|n| NtsMeasured {
            placeholders: n.placeholders - placeholders_before,
            min_cookies: n.min_cookies(),
        }),
        send_secs: send_end
            .map_or(args.duration, |e| (e - start).as_secs_f64())
            .max(1e-3),
        lost_outstanding: pending.len() as u64,
        client_drops: socket_drops.iter().map(|&d| u64::from(d)).sum(),
        server_drops: match (drops_before, stats::udp_port_drops(args.target.port())) {
            (Some(b), Some(a)) => Some(a.saturating_sub(b)),
            _ => None,
        },
        cpu_ns: match (cpu_before, cpu_after) {
            (Some(b), Some(a)) => Some(a.saturating_sub(b)),
            _ => None,
        },
        memory: args.watch_pid.and_then(stats::process_memory_kib),
        pktinfo,
        sockets: sockets.len(),
    };
    report(args, &mut c, &measured);
    Ok(())
}

/// NTS-KE with the server at `ke` (one session per socket, at most 64, unless
/// `--nts-sessions`), then fill every session's cookie jar to `--nts-cookies` with
/// unmeasured requests that ask for eight cookies each.
fn setup_nts(
    args: &Args,
    ke: SocketAddrV4,
    sockets: &[Socket],
    pktinfo: bool,
    epoll: &mut Epoll,
    rng: &mut SmallRng,
) -> std::io::Result<Sessions> {
    let count = args
        .nts_sessions
        .unwrap_or(sockets.len().min(64) as u32)
        .clamp(1, args.clients) as usize;
    let trust = match &args.nts_ca {
        Some(p) => TrustAnchors::CaFile(p.clone()),
        None => TrustAnchors::NoVerification,
    };
    let (mut n, report) = Sessions::establish(
        SocketAddr::V4(ke),
        &args.nts_name,
        &trust,
        count,
        4,
        Duration::from_secs(5),
    )
    .map_err(|e| std::io::Error::other(format!("NTS-KE with {ke}: {e}")))?;
    if !args.quiet {
        eprintln!(
            "loadgen: NTS-KE with {ke}: {count} sessions in {:.2} s, {} cookies of {} octets each; NTP at {}:{} announced",
            report.secs, report.cookies_per_ke, report.cookie_len, report.ntp_server, report.ntp_port
        );
        if report.ntp_port != args.target.port() {
            eprintln!("  (requests go to --target {} all the same)", args.target);
        }
    }
    let start = Instant::now();
    let deadline = start + Duration::from_secs(10);
    let mut tx = SendBatch::new();
    let mut rx = RxBatch::with_slots();
    let mut waiting: HashMap<u64, Box<InFlight>> = HashMap::new();
    let mut ready = Vec::with_capacity(sockets.len());
    let (mut sent, mut good, mut bad) = (0u64, 0u64, 0u64);
    while n.min_cookies() < args.nts_cookies {
        if Instant::now() > deadline {
            return Err(std::io::Error::other(format!(
                "NTS: could not fill the cookie jars to {} in 10 s ({} requests, {} good replies, {} rejected; emptiest jar {})",
                args.nts_cookies, sent, good, bad, n.min_cookies()
            )));
        }
        let needy: Vec<u32> = n.needs(args.nts_cookies).collect();
        for s in needy {
            let mut uid = [0u8; UID_LEN];
            rng.fill(&mut uid[..]);
            let transmit = rng.gen::<u64>() | 1;
            let mut built = Ok(None);
            let source = pktinfo.then(|| IpAddr::V4(client_addr(s)));
            tx.push_with(SocketAddr::V4(args.target), source, |buf| {
                built = n.build(s, transmit, uid, Ask::Fill, buf);
                built.as_ref().ok()?.as_ref().map(|(len, _)| *len)
            });
            let built = built
                .map_err(|e| std::io::Error::other(format!("building an NTS request: {e}")))?;
            let Some((_, flight)) = built else { continue };
            if tx
                .send_until_refused(&sockets[s as usize % sockets.len()])
                .0
                == 1
            {
                sent += 1;
                waiting.insert(transmit, flight);
            }
        }
        let until = Instant::now() + Duration::from_millis(200);
        while !waiting.is_empty() && Instant::now() < until {
            ready.clear();
            epoll.wait(10, &mut ready)?;
            for &token in &ready {
                loop {
                    let k = match rx.recv_nowait(&sockets[token as usize]) {
                        Ok(k) => k,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    };
                    for reply in (0..k).filter_map(|i| rx.get(i)) {
                        let origin = match ntp::classify_reply(reply.data) {
                            ReplyKind::Answer { origin } | ReplyKind::Kod { origin } => origin,
                            ReplyKind::Invalid => continue,
                        };
                        if let Some(f) = waiting.remove(&origin) {
                            match n.verify(*f, reply.data) {
                                Ok(()) => good += 1,
                                Err(_) => bad += 1,
                            }
                        }
                    }
                    if k < RX_BATCH {
                        break;
                    }
                }
            }
        }
        // Unanswered requests spent their cookie; the jar goes on without it.
        waiting.clear();
        if bad > 0 && good == 0 {
            return Err(std::io::Error::other(format!(
                "NTS: the server rejected all {bad} requests (NAK or bad authenticator)"
            )));
        }
    }
    if !args.quiet {
        eprintln!(
            "loadgen: NTS cookie jars filled to {} in {:.2} s ({} requests, {} rejected)",
            n.min_cookies(),
            start.elapsed().as_secs_f64(),
            sent,
            bad
        );
    }
    Ok(n)
}

/// Check one received datagram and count it.
#[allow(clippy::too_many_arguments)]
fn account(
    c: &mut Counts,
    pending: &mut PendingTable,
    nts: Option<&mut Sessions>,
    reply: &Received<'_>,
    after_ns: u64,
    target: SocketAddrV4,
    pktinfo: bool,
    socket: usize,
) {
    if reply.truncated || reply.source != SocketAddr::V4(target) {
        c.invalid += 1;
        return;
    }
    let (origin, is_kod) = match ntp::classify_reply(reply.data) {
        ReplyKind::Answer { origin } => (origin, false),
        ReplyKind::Kod { origin } => (origin, true),
        ReplyKind::Invalid => {
            c.invalid += 1;
            return;
        }
    };
    let Some(p) = pending.remove(&origin) else {
        // Not (or no longer) outstanding: a duplicate, or an answer to nothing we sent.
        c.unknown += 1;
        return;
    };
    let expected_dest = client_addr(p.client);
    let delivered_right = match reply.destination {
        Some(d) => d == IpAddr::V4(expected_dest),
        None => true,
    } && (pktinfo || p.client as usize == socket);
    if !delivered_right {
        c.misdelivered += 1;
        return;
    }
    if let (Some(n), Some(flight)) = (nts, p.nts) {
        match n.verify(*flight, reply.data) {
            Ok(()) => {}
            Err(NtsError::Nak) => {
                c.nts_naks += 1;
                c.kods += 1;
                return;
            }
            Err(_) => {
                c.nts_bad += 1;
                c.invalid += 1;
                return;
            }
        }
    }
    if is_kod {
        c.kods += 1;
        return;
    }
    c.replies += 1;
    let rx_ns = reply.kernel_rx.map_or(after_ns, clock::unix_ns);
    c.latencies_ns.push(rx_ns.saturating_sub(p.sent_ns));
}

/// What was measured besides the reply counts.
struct Measured {
    /// Seconds from the first send to the last (the rates' denominator).
    send_secs: f64,
    /// Requests still unanswered at the end.
    lost_outstanding: u64,
    /// Datagrams dropped by loadgen's own sockets.
    client_drops: u64,
    /// Datagrams dropped by the server's sockets (`/proc/net/udp`), over the run.
    server_drops: Option<u64>,
    /// The watched server's CPU time over the run.
    cpu_ns: Option<u64>,
    /// The watched server's (VmRSS, VmHWM) in KiB at the end.
    memory: Option<(u64, u64)>,
    /// Sources given by IP_PKTINFO rather than by binding.
    pktinfo: bool,
    /// Sockets used.
    sockets: usize,
    /// Loadgen's own CPU time over the run.
    own_cpu_ns: Option<u64>,
    /// The watched server's time runnable but waiting for a CPU, over the run.
    wait_ns: Option<u64>,
    /// NTS figures, in NTS mode.
    nts: Option<NtsMeasured>,
}

/// NTS figures of a run.
struct NtsMeasured {
    /// Placeholders sent during the measurement (extra cookies asked for).
    placeholders: u64,
    /// Fewest cookies left in any session's jar at the end.
    min_cookies: usize,
}

fn report(args: &Args, c: &mut Counts, m: &Measured) {
    c.latencies_ns.sort_unstable();
    let secs = m.send_secs;
    let (lost_outstanding, client_drops, cpu_ns, pktinfo, sockets) = (
        m.lost_outstanding,
        m.client_drops,
        m.cpu_ns,
        m.pktinfo,
        m.sockets,
    );
    let server_drops = m.server_drops.map_or(-1, |d| d as i64);
    let attempted = c.sent + c.send_errors;
    let offered_rate = attempted as f64 / secs;
    let reply_rate = c.replies as f64 / secs;
    let loss_pct = if c.sent == 0 {
        0.0
    } else {
        100.0 * (c.sent - c.replies.min(c.sent)) as f64 / c.sent as f64
    };
    let us = |q: f64| stats::quantile(&c.latencies_ns, q).map_or(f64::NAN, |ns| ns as f64 / 1000.0);
    let (p50, p99, p999, max) = (us(0.5), us(0.99), us(0.999), us(1.0));
    let cpu_per_reply_us = cpu_ns.map_or(f64::NAN, |ns| {
        if c.replies == 0 {
            f64::NAN
        } else {
            ns as f64 / 1000.0 / c.replies as f64
        }
    });
    let cpu_util_pct = cpu_ns.map_or(f64::NAN, |ns| 100.0 * ns as f64 / 1e9 / secs);
    let wait_pct = m
        .wait_ns
        .map_or(f64::NAN, |ns| 100.0 * ns as f64 / 1e9 / secs);
    let own_cpu_pct = m
        .own_cpu_ns
        .map_or(f64::NAN, |ns| 100.0 * ns as f64 / 1e9 / secs);
    let (nts_on, placeholders, min_cookies) = match &m.nts {
        Some(n) => (1, n.placeholders, n.min_cookies),
        None => (0, 0, 0),
    };
    let (rss, hwm) = m.memory.unwrap_or((0, 0));
    let rate_text = match args.rate {
        Rate::Max => "max".to_string(),
        Rate::PerSecond(r) => format!("{r:.0}"),
    };
    if !args.quiet {
        eprintln!(
            "loadgen {}: {:.2} s to {}, rate {}, {} clients over {} sockets ({})",
            args.label,
            secs,
            args.target,
            rate_text,
            args.clients,
            sockets,
            if pktinfo {
                "IP_PKTINFO sources"
            } else {
                "one bound address per socket"
            }
        );
        eprintln!(
            "  offered   {offered_rate:>10.0} req/s  ({} sent, {} send errors)",
            c.sent, c.send_errors
        );
        eprintln!(
            "  answered  {reply_rate:>10.0} rep/s  ({} valid replies, loss {loss_pct:.2}%)",
            c.replies
        );
        eprintln!(
            "  rejected  {} KoD, {} invalid, {} unknown origin, {} misdelivered; {} never answered",
            c.kods, c.invalid, c.unknown, c.misdelivered, lost_outstanding
        );
        eprintln!(
            "  drops     {server_drops} in the server's socket buffers (-1: unknown), {client_drops} in loadgen's own"
        );
        eprintln!(
            "  latency   p50 {p50:.1} µs, p99 {p99:.1} µs, p99.9 {p999:.1} µs, max {max:.1} µs"
        );
        if let Some(n) = &m.nts {
            eprintln!(
                "  NTS       {} bad authenticator/UID, {} NAKs, {:.0} ms stalled for want of cookies, {} placeholders sent; fewest cookies left in a jar {}",
                c.nts_bad, c.nts_naks, c.nts_stalled_ms, n.placeholders, n.min_cookies
            );
        }
        eprintln!("  loadgen   {own_cpu_pct:.0}% of one CPU");
        if let Some(pid) = args.watch_pid {
            eprintln!(
                "  server    pid {pid}: CPU {:.3} s ({cpu_util_pct:.0}% of one CPU; runnable but waiting for a CPU {wait_pct:.0}%), {cpu_per_reply_us:.2} µs/reply; RSS {rss} KiB, peak {hwm} KiB",
                cpu_ns.map_or(f64::NAN, |n| n as f64 / 1e9)
            );
        }
    }
    println!(
        "RESULT label={} rate={} clients={} duration_s={:.3} offered_per_s={:.0} sent={} send_errors={} replies={} replies_per_s={:.0} \
         loss_pct={:.3} kods={} invalid={} unknown={} misdelivered={} client_drops={} server_sock_drops={} p50_us={:.1} p99_us={:.1} p999_us={:.1} max_us={:.1} \
         server_cpu_s={:.4} server_cpu_pct={:.1} cpu_us_per_reply={:.3} rss_kib={} hwm_kib={} loadgen_cpu_pct={:.1} server_wait_pct={:.1} \
         nts={} nts_bad={} nts_naks={} nts_starved={} nts_stalled_ms={:.0} nts_placeholders={} nts_min_cookies={}",
        args.label,
        rate_text,
        args.clients,
        secs,
        offered_rate,
        c.sent,
        c.send_errors,
        c.replies,
        reply_rate,
        loss_pct,
        c.kods,
        c.invalid,
        c.unknown,
        c.misdelivered,
        client_drops,
        server_drops,
        p50,
        p99,
        p999,
        max,
        cpu_ns.map_or(f64::NAN, |n| n as f64 / 1e9),
        cpu_util_pct,
        cpu_per_reply_us,
        rss,
        hwm,
        own_cpu_pct,
        wait_pct,
        nts_on,
        c.nts_bad,
        c.nts_naks,
        c.nts_starved,
        c.nts_stalled_ms,
        placeholders,
        min_cookies
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_addresses_are_distinct_loopback_and_avoid_refclock_range() {
        let mut seen = std::collections::HashSet::new();
        for i in (0..200_000).chain([MAX_CLIENTS - 1]) {
            let a = client_addr(i);
            assert!(a.is_loopback(), "{a}");
            let o = a.octets();
            assert!(o[1] != 127 && o[1] != 0, "{a}");
            assert!(o[3] != 0 && o[3] != 255, "{a}");
            assert!(seen.insert(a), "duplicate {a}");
        }
    }

    #[test]
    fn rates_parse() {
        assert_eq!("max".parse::<Rate>(), Ok(Rate::Max));
        assert_eq!("50000".parse::<Rate>(), Ok(Rate::PerSecond(50000.0)));
        assert_eq!("50k".parse::<Rate>(), Ok(Rate::PerSecond(50000.0)));
        assert!("0".parse::<Rate>().is_err());
        assert!("fast".parse::<Rate>().is_err());
    }
}
