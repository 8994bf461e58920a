//! Helpers for the tests of Meridian syncing from network sources
//! (`tests/interop_sync.rs`) and of its hardening (`tests/faults.rs`).
//!
//! * [`spawn_meridian`]: start `meridian ntpd --observe` on a config that
//!   syncs from network sources, without waiting for a particular stratum.
//! * [`wait_until`]: bounded polling of a condition.
//! * [`LiarServer`]: a tiny NTP server that answers every client request
//!   with a well-formed reply whose timestamps are off by a fixed amount
//!   (e.g. +1 s): a falseticker for the selection tests.
//! * [`meridian_ntpdate_query`] and [`parse_ntpdate_server_line`]: our own
//!   `ntpdate -q` as an offset meter.
//! * [`vm_rss_kib`]: a process's resident set size.

use std::fs;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::{
    enter_netns, meridian_bin, ntp_now, ntp_probe_maybe_in, run_bounded_with_pid, sandboxed,
    spawn_observe_daemon, Daemon, MeridianServer, Netns, NtpPacket,
};

/// Poll `f` every `every` until it returns `Some`, at most for `limit`.
/// Returns the value and how long it took.
pub fn wait_until<T>(
    limit: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<(T, Duration)> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some((v, start.elapsed()));
        }
        if start.elapsed() >= limit {
            return None;
        }
        thread::sleep(every);
    }
}

/// Start `meridian ntpd -n -c CONF --port PORT --observe -p PIDFILE`
/// (without CAP_SYS_TIME, optionally in `netns`) and wait (≤ 10 s) until it
/// answers a raw request on `probe_ip`:`port`, whatever it serves. Unlike
/// [`super::meridian_server`] this does not wait for a stratum: a daemon
/// syncing from the network serves "unsynchronised" until its sources are
/// selected, and the tests want to time that themselves.
pub fn spawn_meridian(
    netns: Option<&Netns>,
    conf: &str,
    port: u16,
    probe_ip: IpAddr,
) -> MeridianServer {
    let (mut daemon, pidfile, dir) = spawn_observe_daemon(netns, conf, port, "meridian-sync");
    let addr = SocketAddr::new(probe_ip, port);
    let answered = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        assert!(
            daemon.is_running(),
            "meridian ntpd exited early ({:?}):\n{}",
            daemon.exit_status(),
            daemon.logs()
        );
        ntp_probe_maybe_in(netns, addr, Duration::from_millis(250)).ok()
    });
    assert!(
        answered.is_some(),
        "meridian ntpd does not answer on {addr} within 10 s"
    );
    MeridianServer {
        daemon,
        addr,
        pidfile,
        dir,
    }
}

/// The configuration file a [`spawn_meridian`] (or
/// [`super::meridian_server`]) daemon was started with; rewrite it and send
/// SIGHUP to reconfigure.
pub fn conf_path(m: &MeridianServer) -> PathBuf {
    m.dir.path().join("ntp.conf")
}

/// Resident set size of process `pid` in KiB (`VmRSS` of
/// `/proc/PID/status`).
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The lines of a daemon's stderr containing `needle`.
pub fn log_lines_with(daemon: &Daemon, needle: &str) -> Vec<String> {
    daemon
        .stderr_text()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// The refid a server whose system peer is the IPv4 `ip` announces.
pub fn refid_of(ip: IpAddr) -> [u8; 4] {
    match ip {
        IpAddr::V4(v4) => v4.octets(),
        IpAddr::V6(_) => panic!("IPv6 refids are hashes; not used by these tests"),
    }
}

/// `server 127.0.0.1, stratum 4, offset 0.000123, delay 0.02579` as
/// `(server, stratum, offset, delay)`.
pub fn parse_ntpdate_server_line(line: &str) -> Option<(String, u8, f64, f64)> {
    let rest = line.strip_prefix("server ")?;
    let parts: Vec<&str> = rest.split(", ").collect();
    if parts.len() != 4 {
        return None;
    }
    Some((
        parts[0].to_string(),
        parts[1].strip_prefix("stratum ")?.parse().ok()?,
        parts[2].strip_prefix("offset ")?.parse().ok()?,
        parts[3].strip_prefix("delay ")?.parse().ok()?,
    ))
}

/// Run `meridian ntpdate -q ARGS...` (always `-q`: query only) without
/// CAP_SYS_TIME, optionally in `netns`, bounded to 30 s.
pub fn meridian_ntpdate_query(netns: Option<&Netns>, args: &[&str]) -> Output {
    let mut cmd = sandboxed(netns, meridian_bin());
    cmd.args(["ntpdate", "-q"]).args(args);
    run_bounded_with_pid(&mut cmd, Duration::from_secs(30)).1
}

// ---------------------------------------------------------------------------
// A lying server
// ---------------------------------------------------------------------------

/// How a [`LiarServer`] presents itself.
#[derive(Clone, Copy, Debug)]
pub struct LiarOpts {
    /// Added to every timestamp it serves, seconds (e.g. 1.0).
    pub lie: f64,
    /// Stratum it claims (a low one makes it attractive to selection).
    pub stratum: u8,
    /// Reference id it claims.
    pub refid: [u8; 4],
}

impl Default for LiarOpts {
    fn default() -> Self {
        LiarOpts {
            lie: 1.0,
            stratum: 2,
            refid: [192, 0, 2, 1],
        }
    }
}

/// A UDP responder that answers NTP client requests (mode 3, versions 1–4,
/// at least 48 octets) with a correct-looking server reply (mode 4, LI 0,
/// the request's version, origin = the request's transmit timestamp, tiny
/// root delay and dispersion) whose receive, transmit and reference
/// timestamps are all `lie` seconds ahead of this machine's clock. Stops
/// and joins its thread on drop.
pub struct LiarServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

fn shifted(ts: u64, by: f64) -> u64 {
    ts.wrapping_add((by * 4_294_967_296.0) as i64 as u64)
}

/// Build the liar's reply to `req` (which must be a valid client request).
fn liar_reply(req: &[u8], opts: &LiarOpts) -> [u8; 48] {
    let version = (req[0] >> 3) & 7;
    let mut r = [0u8; 48];
    r[0] = (version << 3) | 4;
    r[1] = opts.stratum;
    r[2] = req[2];
    r[3] = (-20i8) as u8;
    // Root delay and dispersion: 2^-12 s (≈ 0.24 ms) each, in NTP short format.
    r[4..8].copy_from_slice(&16u32.to_be_bytes());
    r[8..12].copy_from_slice(&16u32.to_be_bytes());
    r[12..16].copy_from_slice(&opts.refid);
    let rx = shifted(ntp_now(), opts.lie);
    r[16..24].copy_from_slice(&shifted(rx, -8.0).to_be_bytes());
    r[24..32].copy_from_slice(&req[40..48]);
    r[32..40].copy_from_slice(&rx.to_be_bytes());
    r[40..48].copy_from_slice(&shifted(ntp_now(), opts.lie).to_be_bytes());
    r
}

impl LiarServer {
    /// Bind `bind` (inside `netns` when given) and start answering.
    pub fn start(netns: Option<&Netns>, bind: SocketAddr, opts: LiarOpts) -> io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let ns_path = netns.map(Netns::path);
        let (tx, rx) = std::sync::mpsc::channel::<io::Result<SocketAddr>>();
        let (st, an) = (Arc::clone(&stop), Arc::clone(&answered));
        let thread = thread::spawn(move || {
            if let Some(p) = &ns_path {
                enter_netns(p);
            }
            let sock = match UdpSocket::bind(bind).and_then(|s| {
                s.set_read_timeout(Some(Duration::from_millis(50)))?;
                Ok(s)
            }) {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let _ = tx.send(sock.local_addr());
            let mut buf = [0u8; 2048];
            while !st.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let req = &buf[..n];
                if n < 48 || req[0] & 7 != 3 || !(1..=4).contains(&((req[0] >> 3) & 7)) {
                    continue;
                }
                if sock.send_to(&liar_reply(req, &opts), from).is_ok() {
                    an.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        match rx.recv() {
            Ok(Ok(addr)) => Ok(LiarServer {
                addr,
                stop,
                answered,
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(io::Error::other("liar thread died"))
            }
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests answered so far.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }
}

impl Drop for LiarServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Self-check of the liar's reply, used by the tests' parser checks.
pub fn liar_reply_for_test(lie: f64) -> (NtpPacket, u64) {
    let xmt = 0x0123_4567_89ab_cdef_u64;
    let req = NtpPacket::request_bytes(4, xmt);
    let before = ntp_now();
    let r = liar_reply(
        &req,
        &LiarOpts {
            lie,
            ..LiarOpts::default()
        },
    );
    (NtpPacket::parse(&r).expect("48 octets"), before)
}
