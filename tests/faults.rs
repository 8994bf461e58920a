//! Hardening checks of the running daemon (the parts of the hardening issue
//! that apply now), from the outside:
//!
//! * a. a flood of up to 1 000 000 datagrams (random lengths 0–1500 and
//!   bytes, well-formed requests with bad modes and versions, valid
//!   requests with and without trailing garbage), capped at 20 s: the daemon
//!   survives without a panic, its RSS grows by less than 16 MiB, it still
//!   answers, and it never answers a datagram with a longer reply (no
//!   amplification);
//! * b. 10 000 distinct client addresses bursting under `restrict default
//!   limited kod` while one well-behaved client polls every second: that
//!   client gets a real answer every time, the bursters are limited;
//! * c. a source that dies and comes back: the daemon keeps serving its last
//!   good state while the source is silent, keeps polling, and picks the
//!   source up again when it returns;
//! * d. the network to a source gone (a relay dropping everything) until the
//!   source is unreachable, then back: served throughout, reachable again;
//! * e. SIGHUP six times under a steady 2000 requests/s: (almost) every
//!   request answered, every change applied;
//! * f. the drift file's disk full or read-only (a tmpfs in a private mount
//!   namespace): the old file intact, a clear message, the daemon running.
//!
//! The simulator's side of these faults (an hour without network, the local
//! clock stepped under the daemon) is in `crates/sim/tests/faults.rs`.
//!
//! Everything runs inside namespaces the tests create (so port 123 is ours
//! alone), every daemon without CAP_SYS_TIME, ours with `--observe`, chronyd
//! with `-x`. Needs root (and chrony for c, unshare and nsenter for f); skips
//! otherwise, fails when `CI` is set.

mod support;

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};

use support::control::parse_peers;
use support::ops::{free_udp_port, meridian_tool};
use support::relay::{Relay, RelayConfig};
use support::sync::*;
use support::*;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Lines of a daemon log that show a panic or a crash.
fn panic_lines(daemon: &Daemon) -> Vec<String> {
    daemon
        .logs()
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("panicked") || l.contains("panic:") || l.contains("stack backtrace")
        })
        .map(str::to_string)
        .collect()
}

// ---------------------------------------------------------------------------
// a. garbage flood
// ---------------------------------------------------------------------------

/// Datagrams to send at most, and the time cap for sending them.
const FLOOD_COUNT: u64 = 1_000_000;
const FLOOD_CAP: Duration = Duration::from_secs(20);
/// Allowed RSS growth over the flood.
const RSS_MARGIN_KIB: u64 = 16 * 1024;

/// Tag in the upper 16 bits of the transmit timestamp of every flood
/// datagram of 48 octets or more; the next 16 bits carry its length. A
/// reply's origin timestamp echoes it, so each reply can be matched with
/// the length of the datagram it answers.
const TAG: u64 = 0x4d52;

fn tagged_xmt(len: usize, n: u64) -> u64 {
    (TAG << 48) | ((len as u64) << 32) | (n & 0xffff_ffff)
}

/// The request length a reply's origin timestamp names, if it is ours.
fn tagged_len(origin: u64) -> Option<usize> {
    (origin >> 48 == TAG).then_some(((origin >> 32) & 0xffff) as usize)
}

/// Fill `buf` with flood datagram number `n` and return its length: mostly
/// random lengths and bytes; every 8th a well-formed 48-octet header with a
/// bad mode or version; every 32nd a valid client request; every 32nd a
/// valid request with random trailing octets (up to 1500 in all).
fn flood_datagram(n: u64, rng: &mut SmallRng, pool: &[u8], buf: &mut [u8; 1500]) -> usize {
    let kind = n % 32;
    let len = match kind {
        0 => 48,
        1 => rng.gen_range(49..=1500),
        2..=5 => 48,
        _ => rng.gen_range(0..=1500),
    };
    let start = rng.gen_range(0..pool.len() - 1500);
    buf[..len].copy_from_slice(&pool[start..start + len]);
    match kind {
        // Valid NTPv4 client request header (then trailing garbage for kind 1).
        0 | 1 => {
            buf[..48].fill(0);
            buf[0] = (4 << 3) | 3;
            buf[2] = 6;
        }
        // Well-formed header with a bad mode (any but 3) and any version, or a
        // client request with a version outside 1..=4.
        2..=5 => {
            buf[..48].fill(0);
            let (version, mode) = if kind & 1 == 0 {
                (
                    rng.gen_range(0..8u8),
                    [0u8, 1, 2, 4, 5, 6, 7][rng.gen_range(0..7)],
                )
            } else {
                ([0u8, 5, 6, 7][rng.gen_range(0..4)], 3)
            };
            buf[0] = (rng.gen_range(0..4u8) << 6) | (version << 3) | mode;
            buf[2] = 6;
        }
        _ => {}
    }
    if len >= 48 {
        buf[40..48].copy_from_slice(&tagged_xmt(len, n).to_be_bytes());
    }
    if len >= 4 && buf[0] & 7 == 6 {
        buf[2..4].copy_from_slice(&control_tag(len).to_be_bytes());
    }
    len
}

/// Control (mode 6) datagrams carry their length in their sequence number
/// (bytes 2–3), which every response fragment echoes: 0b10101 then 11 bits.
const CONTROL_TAG: u16 = 0xa800;

fn control_tag(len: usize) -> u16 {
    CONTROL_TAG | (len as u16 & 0x07ff)
}

/// The request length a control response's sequence number names, if ours.
fn control_tagged_len(seq: u16) -> Option<usize> {
    (seq & 0xf800 == CONTROL_TAG).then_some(usize::from(seq & 0x07ff))
}

#[derive(Debug, Default)]
struct ReplyTally {
    /// Time replies and KoDs (mode 4).
    replies: AtomicU64,
    kods: AtomicU64,
    /// Control (mode 6) response datagrams.
    control: AtomicU64,
    /// Octets received in all replies.
    octets: AtomicU64,
    /// Replies longer than the datagram they answer.
    amplified: AtomicU64,
    /// Replies that name no datagram we sent.
    unmatched: AtomicU64,
    longest: AtomicU64,
}

/// Count the replies arriving on `sock` until `stop`, matching each with
/// the length of the datagram it answers (see [`tagged_xmt`],
/// [`control_tag`]).
fn tally_replies(sock: UdpSocket, daemon: SocketAddr, stop: Arc<AtomicBool>, t: Arc<ReplyTally>) {
    let _ = sock.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = [0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        if from != daemon {
            continue;
        }
        t.octets.fetch_add(n as u64, Ordering::Relaxed);
        t.longest.fetch_max(n as u64, Ordering::Relaxed);
        let request_len = if n >= 4 && buf[0] & 7 == 6 {
            t.control.fetch_add(1, Ordering::Relaxed);
            control_tagged_len(u16::from_be_bytes([buf[2], buf[3]]))
        } else {
            match NtpPacket::parse(&buf[..n]) {
                Some(p) => {
                    t.replies.fetch_add(1, Ordering::Relaxed);
                    if p.is_kod() {
                        t.kods.fetch_add(1, Ordering::Relaxed);
                    }
                    tagged_len(p.origin)
                }
                None => None,
            }
        };
        match request_len {
            Some(len) if n > len => {
                t.amplified.fetch_add(1, Ordering::Relaxed);
            }
            Some(_) => {}
            None => {
                t.unmatched.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Meridian serving its local clock (served stratum 3) on 127.0.0.1:123 in
/// its own namespace, `restrict default` (no rate limiting and no
/// `noquery`, so every valid request, time or control, is answered and
/// every code path is reachable). Up to 1 000 000 datagrams (see
/// [`flood_datagram`]; about one in nine is a mode 6 control request) are
/// sent back to back from one socket within 20 s, replies counted on that
/// socket by a second thread. Asserts: the number sent is reported and is
/// at least 100 000; the daemon is alive, has no panic in its log and
/// answers a normal probe (stratum 3) afterwards; its VmRSS grew by less
/// than 16 MiB; no reply datagram is longer than the datagram it answers
/// (time replies are matched by their origin timestamp, control responses
/// by their sequence number) and every reply answers one of ours; the valid
/// time requests were answered; a graceful stop reports what it received.
#[test]
fn garbage_flood_is_survived() {
    if !require_root_and_tools(&[]) {
        return;
    }
    let ns = Netns::new("ft-flood");
    let mut m = meridian_server(Some(&ns), LOCAL_CLOCK_CONF, 123, LOOPBACK, 3);
    let daemon = m.addr;
    for _ in 0..5 {
        ntp_probe_maybe_in(Some(&ns), daemon, Duration::from_secs(1)).expect("warm-up probe");
    }
    let pid = m.daemon.pid();
    let rss_before = vm_rss_kib(pid).expect("VmRSS before");

    let tally = Arc::new(ReplyTally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (t2, s2) = (Arc::clone(&tally), Arc::clone(&stop));
    let (sent, bytes, send_errors, took, counter) = ns.run(move || {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind flood socket");
        let rx = sock.try_clone().expect("clone");
        let counter = thread::spawn(move || tally_replies(rx, daemon, s2, t2));
        let mut rng = SmallRng::from_entropy();
        let mut pool = vec![0u8; 1 << 16];
        rng.fill_bytes(&mut pool);
        let mut buf = [0u8; 1500];
        let (mut sent, mut bytes, mut errors) = (0u64, 0u64, 0u64);
        let start = Instant::now();
        let mut n = 0u64;
        while sent < FLOOD_COUNT {
            if n & 1023 == 0 && start.elapsed() >= FLOOD_CAP {
                break;
            }
            let len = flood_datagram(n, &mut rng, &pool, &mut buf);
            n += 1;
            match sock.send_to(&buf[..len], daemon) {
                Ok(_) => {
                    sent += 1;
                    bytes += len as u64;
                }
                Err(_) => errors += 1,
            }
        }
        (sent, bytes, errors, start.elapsed(), counter)
    });
    // Let the daemon drain its queue and the last replies come back.
    thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    counter.join().expect("reply counter");
    eprintln!(
        "flood: {sent} datagrams ({bytes} octets) sent in {:.1} s ({:.0}/s), {send_errors} send \
         errors; replies {:?}",
        took.as_secs_f64(),
        sent as f64 / took.as_secs_f64(),
        tally
    );

    assert!(m.daemon.is_running(), "daemon died");
    let rss_after = vm_rss_kib(pid).expect("VmRSS after");
    eprintln!(
        "VmRSS before {rss_before} KiB, after {rss_after} KiB ({:+} KiB)",
        rss_after as i64 - rss_before as i64
    );
    let p = ntp_probe_maybe_in(Some(&ns), daemon, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("no answer after the flood: {e}"));
    assert_eq!(
        (p.reply.mode, p.reply.stratum, p.reply.li),
        (4, 3, 0),
        "{p:?}"
    );
    assert!(offset_ok(p.offset(), p.delay() / 2.0), "{p:?}");
    let panics = panic_lines(&m.daemon);
    assert!(panics.is_empty(), "{panics:?}");
    assert!(
        rss_after <= rss_before + RSS_MARGIN_KIB,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    assert!(
        sent >= 100_000,
        "only {sent} datagrams sent within {FLOOD_CAP:?}"
    );
    if sent < FLOOD_COUNT {
        eprintln!("NOTE: {sent} of {FLOOD_COUNT} datagrams fit in the {FLOOD_CAP:?} cap");
    }
    let amplified = tally.amplified.load(Ordering::Relaxed);
    let unmatched = tally.unmatched.load(Ordering::Relaxed);
    assert_eq!(amplified, 0, "replies longer than their request: {tally:?}");
    assert_eq!(
        unmatched, 0,
        "replies answering no datagram we sent: {tally:?}"
    );
    assert!(
        tally.replies.load(Ordering::Relaxed) > 0,
        "not even the valid requests were answered: {tally:?}"
    );

    // A graceful stop reports the counters.
    let status = m.daemon.stop();
    assert!(status.success(), "exit status {status}");
    let exit = log_lines_with(&m.daemon, "exiting on signal");
    eprintln!("daemon: {exit:?}");
    assert_eq!(exit.len(), 1, "{}", m.daemon.logs());
}

#[test]
fn flood_datagrams_have_the_promised_shapes() {
    let mut rng = SmallRng::seed_from_u64(7);
    let mut pool = vec![0u8; 1 << 16];
    rng.fill_bytes(&mut pool);
    let mut buf = [0u8; 1500];
    let (mut valid, mut bad_header, mut short) = (0, 0, 0);
    for n in 0..3200u64 {
        let len = flood_datagram(n, &mut rng, &pool, &mut buf);
        assert!(len <= 1500);
        if len < 48 {
            short += 1;
            continue;
        }
        let xmt = u64::from_be_bytes(buf[40..48].try_into().unwrap());
        assert_eq!(tagged_len(xmt), Some(len));
        if buf[0] & 7 == 6 {
            assert_eq!(
                control_tagged_len(u16::from_be_bytes([buf[2], buf[3]])),
                Some(len)
            );
        }
        let (version, mode) = ((buf[0] >> 3) & 7, buf[0] & 7);
        match n % 32 {
            0 | 1 => {
                assert_eq!((version, mode), (4, 3));
                valid += 1;
            }
            2..=5 => {
                assert!(
                    mode != 3 || !(1..=4).contains(&version),
                    "{n}: {:#x}",
                    buf[0]
                );
                bad_header += 1;
            }
            _ => {}
        }
    }
    assert_eq!((valid, bad_header), (200, 400));
    assert!(short > 0);
}

// ---------------------------------------------------------------------------
// b. many bursting clients and one polite one
// ---------------------------------------------------------------------------

const BURSTERS: u32 = 10_000;
const BURST_LEN: u64 = 20;
/// Bursters handled together (their sockets open at once).
const BURST_CHUNK: u32 = 100;
const BURST_CAP: Duration = Duration::from_secs(25);
/// Polls of the polite client at most: its bucket gains 1 s per poll and
/// its 30th poll in a row would be over the limit (see the test), so it
/// stops at 27 even if the storm runs to its cap.
const POLITE_MAX_POLLS: u32 = 27;

/// The i-th burster's address: 127.1.x.y (all of 127/8 is on `lo`).
fn burster_ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8)
}

#[derive(Debug, Default, Clone, Copy)]
struct BurstTally {
    clients: u32,
    sent: u64,
    replies: u64,
    kods: u64,
    /// Bursters that got more than BURST_LIMIT time replies.
    over_answered: u32,
    /// Bursters that got more than one KoD.
    multi_kod: u32,
    max_replies_one_client: u64,
}

/// Time replies a burster may get under `discard average 2 minimum 1`: a
/// packet adds 4 s of headway and earns 2 s of grace, the limit is 8 × 4 s,
/// and the bucket drains as time passes. Back to back, packets 1..=15 pass;
/// the 16th lands exactly on the limit and passes if any time at all passed
/// since the 15th (they were not in the same receive batch); the 17th is
/// over (it gets the one KoD) and the rest are dropped: 15 or 16 time
/// replies (both were seen), never more.
const BURST_LIMIT: u64 = 16;

/// Run one chunk of bursters: open their sockets, send BURST_LEN requests
/// from each back to back, then collect replies until 100 ms pass without
/// one (≤ 1 s).
fn run_burst_chunk(first: u32, count: u32, daemon: SocketAddr, tally: &mut BurstTally) {
    let socks: Vec<UdpSocket> = (first..first + count)
        .map(|i| {
            let s = UdpSocket::bind(SocketAddr::new(IpAddr::V4(burster_ip(i)), 0))
                .expect("bind burster");
            s.set_nonblocking(true).expect("nonblocking");
            s
        })
        .collect();
    for s in &socks {
        for k in 0..BURST_LEN {
            if s.send_to(&NtpPacket::request_bytes(4, tagged_xmt(48, k)), daemon)
                .is_ok()
            {
                tally.sent += 1;
            }
        }
    }
    let mut got = vec![(0u64, 0u64); socks.len()];
    let mut buf = [0u8; 1024];
    let start = Instant::now();
    let mut last_seen = Instant::now();
    while last_seen.elapsed() < Duration::from_millis(100)
        && start.elapsed() < Duration::from_secs(1)
    {
        let mut any = false;
        for (s, g) in socks.iter().zip(got.iter_mut()) {
            loop {
                match s.recv_from(&mut buf) {
                    Ok((n, from)) if from == daemon => {
                        any = true;
                        match NtpPacket::parse(&buf[..n]) {
                            Some(p) if p.is_kod() => g.1 += 1,
                            Some(_) => g.0 += 1,
                            None => {}
                        }
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => break,
                }
            }
        }
        if any {
            last_seen = Instant::now();
        } else {
            thread::sleep(Duration::from_millis(5));
        }
    }
    for (replies, kods) in got {
        tally.clients += 1;
        tally.replies += replies;
        tally.kods += kods;
        tally.max_replies_one_client = tally.max_replies_one_client.max(replies);
        if replies > BURST_LIMIT {
            tally.over_answered += 1;
        }
        if kods > 1 {
            tally.multi_kod += 1;
        }
    }
}

/// Result of each poll of the polite client.
#[derive(Debug, Clone, Copy, PartialEq)]
enum PoliteResult {
    Answered,
    Kod,
    Lost,
}

/// `restrict default limited kod` with `discard average 2 minimum 1`.
/// ntpd's default `discard average 3` already limits a client polling every
/// second (it would be KoD'd after about 13 s); with `average 2` a 1 s poller
/// gains 1 s of headway per poll and its 30th poll in a row would be over
/// the 32 s limit, while a back-to-back burst is over the limit at its
/// 16th or 17th packet. The polite client (127.0.0.2, one socket) polls
/// every second from 1.5 s before the storm until 2 s after it (at most 27
/// polls, whatever the storm's length); 10 000 bursters (127.1.x.y,
/// one socket each, 100 at a time) send 20 requests each. Asserts: every
/// one of the polite client's polls got a time reply (not a KoD, not lost);
/// all 10 000 bursters ran within 25 s; limiting worked (no burster got more
/// than 16 time replies or more than one KoD, and at least 90 % got their
/// 15 replies and their KoD, so the daemon limited rather than dropped); the
/// daemon is alive without panics.
#[test]
fn polite_client_is_served_during_a_burst_storm() {
    if !require_root_and_tools(&[]) {
        return;
    }
    let ns = Netns::new("ft-burst");
    let conf = "server 127.127.1.0\nfudge 127.127.1.0 stratum 2\n\
                restrict default limited kod\ndiscard average 2 minimum 1\n";
    let mut m = meridian_server(Some(&ns), conf, 123, LOOPBACK, 3);
    let daemon = m.addr;
    let rss_before = vm_rss_kib(m.daemon.pid()).expect("VmRSS");

    let stop = Arc::new(AtomicBool::new(false));
    let polls: Arc<Mutex<Vec<(Duration, PoliteResult)>>> = Arc::default();
    let (st, pl) = (Arc::clone(&stop), Arc::clone(&polls));
    let ns_path = ns.path();
    let polite = thread::spawn(move || {
        enter_netns(&ns_path);
        let sock = UdpSocket::bind("127.0.0.2:0").expect("bind polite client");
        let start = Instant::now();
        let mut k = 0u32;
        while !st.load(Ordering::Relaxed) && k < POLITE_MAX_POLLS {
            let at = start.elapsed();
            let r = match probe_on(&sock, daemon, Duration::from_millis(900)) {
                Ok(p) if p.reply.is_kod() => PoliteResult::Kod,
                Ok(_) => PoliteResult::Answered,
                Err(_) => PoliteResult::Lost,
            };
            pl.lock().expect("polls").push((at, r));
            k += 1;
            let next = Duration::from_secs(u64::from(k));
            thread::sleep(next.saturating_sub(start.elapsed()));
        }
    });

    // Let the polite client establish itself, then the storm.
    thread::sleep(Duration::from_millis(1500));
    let storm_start = Instant::now();
    let tally = ns.run(move || {
        let mut tally = BurstTally::default();
        let mut first = 0;
        while first < BURSTERS && storm_start.elapsed() < BURST_CAP {
            let count = BURST_CHUNK.min(BURSTERS - first);
            run_burst_chunk(first, count, daemon, &mut tally);
            first += count;
        }
        tally
    });
    let storm = storm_start.elapsed();
    thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    polite.join().expect("polite client");
    let polls = polls.lock().expect("polls").clone();
    let rss_after = vm_rss_kib(m.daemon.pid()).expect("VmRSS");
    eprintln!(
        "storm: {tally:?} in {:.1} s; polite client: {} polls, {:?}; VmRSS {rss_before} → \
         {rss_after} KiB",
        storm.as_secs_f64(),
        polls.len(),
        polls
            .iter()
            .map(|(t, r)| format!("{:.1}:{r:?}", t.as_secs_f64()))
            .collect::<Vec<_>>()
    );

    let failed: Vec<_> = polls
        .iter()
        .filter(|(_, r)| *r != PoliteResult::Answered)
        .collect();
    assert!(
        failed.is_empty(),
        "the polite client was not served {} of {} times: {failed:?}",
        failed.len(),
        polls.len()
    );
    assert!(polls.len() >= 5, "only {} polls", polls.len());
    assert_eq!(
        tally.clients, BURSTERS,
        "not all bursters ran within {BURST_CAP:?}"
    );
    assert_eq!(tally.over_answered, 0, "{tally:?}");
    assert_eq!(tally.multi_kod, 0, "{tally:?}");
    // Limiting, not blanket dropping: nearly every burster got its first 15
    // answers and its one KoD (replies can only be lost on the way back).
    let n = u64::from(BURSTERS);
    assert!(tally.kods >= n * 9 / 10, "too few KoDs: {tally:?}");
    assert!(
        tally.replies >= n * 15 * 9 / 10,
        "too few replies: {tally:?}"
    );
    assert!(m.daemon.is_running(), "{}", m.daemon.logs());
    let panics = panic_lines(&m.daemon);
    assert!(panics.is_empty(), "{panics:?}");
    assert!(
        rss_after <= rss_before + RSS_MARGIN_KIB,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    m.daemon.stop();
}

// ---------------------------------------------------------------------------
// c. a source that dies and comes back
// ---------------------------------------------------------------------------

/// How long the source stays dead: a bit more than three polls at 8 s, so
/// the daemon's clock filter ages the source (three unanswered polls) but
/// the 8-bit reach register is not yet empty.
const OUTAGE: Duration = Duration::from_secs(27);

/// chronyd (`local stratum 3`) on 127.0.0.1:123 in the server namespace,
/// behind the relay on 10.123.0.1:123 (1 ms each way; its counters show the
/// daemon's requests and the replies). Our daemon in the client namespace
/// polls it (`iburst minpoll 3 maxpoll 3`: every 8 s) and syncs (stratum 4,
/// refid 10.123.0.1). Once its iburst train is over (8 replies relayed),
/// chronyd is killed (SIGKILL) for 27 s.
///
/// What is asserted is classic ntpd's behaviour while a source is silent
/// but not yet unreachable: the daemon keeps serving its last good state —
/// every probe (every 500 ms) answered with LI 0, stratum 4, refid
/// 10.123.0.1 and the right time (|offset| < 1 ms) — and keeps polling (≥ 3
/// requests relayed, no reply). Then chronyd is started again, now with
/// `local stratum 5`: the daemon must pick it up within 20 s, visibly, by
/// serving stratum 6 with the same refid (replies flow through the relay
/// again). The daemon answers every probe throughout and never steps its
/// clock. Root dispersion before and during the outage is reported, not
/// asserted (it stays as it was: ntpd's served `sys_rootdisp` also changes
/// only at clock updates, while chrony's grows with time).
#[test]
fn source_dies_and_comes_back() {
    if !require_root_and_tools(&["chronyd"]) {
        return;
    }
    let lan = Lan::new("ft-death", &[2]);
    let client = lan.client(2);
    let server_ip = IpAddr::V4(lan.server_addr);
    let refid = refid_of(server_ip);
    let chrony_opts = |stratum| ChronyServerOpts {
        bind: Some(LOOPBACK),
        stratum,
        ..ChronyServerOpts::default()
    };
    let mut chrony = chrony_server(Some(&lan.server), &chrony_opts(3));
    let ms = Duration::from_millis;
    let relay = Relay::start_in(
        Some(&lan.server),
        SocketAddr::new(server_ip, 123),
        chrony.addr,
        RelayConfig::symmetric(ms(1), Duration::ZERO),
    )
    .expect("relay");
    let conf = format!("restrict default\nserver {server_ip} iburst minpoll 3 maxpoll 3\n");
    let mut m = spawn_meridian(Some(client), &conf, 123, LOOPBACK);
    let ours = m.addr;
    let probe = |ns: &Netns| ntp_probe_maybe_in(Some(ns), ours, Duration::from_secs(1));

    let (_, took) = wait_until(Duration::from_secs(40), ms(200), || {
        probe(client)
            .ok()
            .filter(|p| p.reply.li != 3 && p.reply.stratum == 4 && p.reply.refid == refid)
    })
    .unwrap_or_else(|| panic!("never synced"));
    eprintln!("synced in {took:?}; relay {:?}", relay.stats());
    // Kill it only once the iburst train (8 exchanges) is over, so that the
    // outage is seen by regular 8 s polls.
    wait_until(Duration::from_secs(30), ms(200), || {
        (relay.stats().to_client >= 8).then_some(())
    })
    .unwrap_or_else(|| panic!("iburst never completed: {:?}", relay.stats()));
    let p = probe(client).expect("answer before the outage");
    assert!(
        p.reply.li == 0 && p.reply.stratum == 4 && p.reply.refid == refid,
        "{p:?}"
    );
    let disp_synced = f64::from(p.reply.root_dispersion) / 65536.0;

    chrony.daemon.signal(libc::SIGKILL);
    chrony.daemon.stop();
    let killed = Instant::now();
    let at_kill = relay.stats();
    let mut outage_probes = 0u32;
    let mut max_offset = 0f64;
    let mut disp_outage = disp_synced;
    while killed.elapsed() < OUTAGE {
        let p = probe(client).unwrap_or_else(|e| {
            panic!(
                "no answer {:?} into the outage: {e}\n{}",
                killed.elapsed(),
                m.daemon.logs()
            )
        });
        let r = p.reply;
        assert!(
            r.li == 0 && r.stratum == 4 && r.refid == refid,
            "{:?} into the outage the daemon no longer serves its last good state: {r:?}",
            killed.elapsed()
        );
        assert!(
            p.offset().abs() < 0.001,
            "holdover time off by {} s",
            p.offset()
        );
        max_offset = max_offset.max(p.offset().abs());
        disp_outage = f64::from(r.root_dispersion) / 65536.0;
        outage_probes += 1;
        thread::sleep(ms(500));
    }
    let at_restart = relay.stats();
    eprintln!(
        "outage {OUTAGE:?}: {outage_probes} probes answered with the last good state, max \
         |offset| {max_offset:.6} s; root dispersion {disp_synced:.6} s synced → \
         {disp_outage:.6} s at the end; relay at kill {at_kill:?}, at restart {at_restart:?}"
    );
    let polls_in_outage = at_restart.to_server - at_kill.to_server;
    assert!(
        polls_in_outage >= 3,
        "the daemon stopped polling its dead source: {polls_in_outage} requests in {OUTAGE:?}"
    );
    // Replies at most for requests already in flight at the kill.
    assert!(
        at_restart.to_client - at_kill.to_client <= 1,
        "{at_restart:?}"
    );

    chrony = chrony_server(Some(&lan.server), &chrony_opts(5));
    let restarted = Instant::now();
    let back = wait_until(Duration::from_secs(20), ms(250), || {
        let p = probe(client).unwrap_or_else(|e| panic!("no answer after restart: {e}"));
        assert!(
            p.reply.li != 3,
            "unsynchronised after the source came back: {p:?}"
        );
        (p.reply.stratum == 6 && p.reply.refid == refid).then_some(p)
    });
    let after = relay.stats();
    eprintln!(
        "source back: {:?} after restart; relay {after:?}",
        back.as_ref().map(|_| restarted.elapsed())
    );
    assert!(
        back.is_some(),
        "the daemon did not pick up the restarted source within 20 s"
    );
    assert!(after.to_client > at_restart.to_client, "{after:?}");
    assert!(m.daemon.is_running());
    let steps = log_lines_with(&m.daemon, "clock stepped");
    assert!(steps.is_empty(), "{steps:?}");
    let panics = panic_lines(&m.daemon);
    assert!(panics.is_empty(), "{panics:?}");
    m.daemon.stop();
    drop(chrony);
}

// ---------------------------------------------------------------------------
// d. the network to the source gone for a while, then back
// ---------------------------------------------------------------------------

/// The tally character and reach column (octal, as printed) of the `ntpq -p` row for
/// `remote`.
fn reach_of(port: u16, remote: &str) -> Option<(char, String)> {
    let (code, out, _) = meridian_tool(&["ntpq", "-p", "127.0.0.1", "--port", &port.to_string()]);
    if code != 0 {
        return None;
    }
    parse_peers(&out)
        .into_iter()
        .find(|r| r.remote == remote)
        .map(|r| (r.tally, r.reach))
}

/// Longest the relay stays dark: the source must be unreachable by then (eight
/// unanswered polls at 8 s, with room for the poll timer's randomisation).
const BLACKOUT_CAP: Duration = Duration::from_secs(100);

/// A Meridian upstream (local clock, served stratum 3) behind the relay on loopback
/// (1 ms each way); our daemon polls it through the relay (`iburst minpoll 3 maxpoll
/// 3`) and syncs (stratum 4). Then the relay drops everything, both ways, until our
/// daemon shows the source unreachable (reach 0 in `ntpq -p`; at most 100 s), then
/// relays again. Asserted: the daemon answers every probe (every 500 ms) throughout,
/// with a well-formed reply; it keeps polling during the outage (the relay drops its
/// requests); the source does become unreachable; while its reach is 0 it is not the
/// system peer (no `*`: RFC 5905 `fit()` rejects an unreachable source, and with no
/// survivor there is no system peer), so the daemon, which has no local clock driver or
/// orphan mode to fall back on, serves LI 3 at stratum 0 (16, unspecified, as ntpd
/// puts it on the wire) and `ntpstat` says unsynchronised (exit 1); once the path is
/// back the source is reachable again and system peer (`*`), served at stratum 4 and
/// `ntpstat` synchronised (exit 0), within 40 s; no clock step, no panic. (Until reach
/// gets to 0 the daemon holds over on its last state; that is reported, not asserted.)
#[test]
fn source_unreachable_through_a_dead_network_then_back() {
    if !require_root_and_tools(&[]) {
        return;
    }
    let upstream = meridian_server(None, LOCAL_CLOCK_CONF, free_udp_port(), LOOPBACK, 3);
    let ms = Duration::from_millis;
    let relay = Relay::start(
        SocketAddr::new(LOOPBACK, 0),
        upstream.addr,
        RelayConfig::symmetric(ms(1), Duration::ZERO),
    )
    .expect("relay");
    let conf = format!(
        "restrict default\nserver 127.0.0.1 port {} iburst minpoll 3 maxpoll 3\n",
        relay.local_addr().port()
    );
    let port = free_udp_port();
    let mut m = spawn_meridian(None, &conf, port, LOOPBACK);
    let probe = || ntp_probe(m.addr, Duration::from_secs(1));
    wait_until(Duration::from_secs(40), ms(200), || {
        probe()
            .ok()
            .filter(|p| p.reply.li != 3 && p.reply.stratum == 4)
    })
    .unwrap_or_else(|| panic!("never synced:\n{}", m.daemon.logs()));
    wait_until(Duration::from_secs(30), ms(200), || {
        (relay.stats().to_client >= 8).then_some(())
    })
    .expect("iburst over");

    relay.set_blackout(true);
    let cut = Instant::now();
    let at_cut = relay.stats();
    let mut served = Vec::new();
    let mut last_reach_check = Instant::now();
    let mut unreachable_after = None;
    while cut.elapsed() < BLACKOUT_CAP {
        let p = probe().unwrap_or_else(|e| {
            panic!(
                "no answer {:?} into the outage: {e}\n{}",
                cut.elapsed(),
                m.daemon.logs()
            )
        });
        assert_eq!(p.reply.mode, 4, "{p:?}");
        served.push((cut.elapsed().as_secs(), p.reply.li, p.reply.stratum));
        if last_reach_check.elapsed() >= Duration::from_secs(2) {
            last_reach_check = Instant::now();
            if let Some((tally, reach)) = reach_of(port, "127.0.0.1").filter(|r| r.1 == "0") {
                unreachable_after = Some((cut.elapsed(), tally, reach));
                break;
            }
        }
        thread::sleep(ms(500));
    }
    let during = relay.stats();
    served.dedup_by_key(|s| (s.1, s.2));
    eprintln!(
        "outage: unreachable after {unreachable_after:?}; served (s, li, stratum) changes \
         {served:?}; relay at cut {at_cut:?}, now {during:?}"
    );
    let (unreachable_after, tally, _) =
        unreachable_after.unwrap_or_else(|| panic!("still reachable after {BLACKOUT_CAP:?}"));
    assert_ne!(tally, '*', "still the system peer with reach 0");
    assert!(
        during.dropped - at_cut.dropped >= 8,
        "the daemon stopped polling in the outage: {during:?}"
    );
    assert_eq!(during.to_client, at_cut.to_client, "a reply got through");
    // Still unreachable a few seconds on: no `*` comes back without a reply, and what is
    // served and reported says unsynchronised.
    let ntpstat = || meridian_tool(&["ntpstat", "--port", &port.to_string()]);
    let unsynced = wait_until(Duration::from_secs(10), ms(500), || {
        let (tally, reach) = reach_of(port, "127.0.0.1")?;
        assert_eq!(reach, "0", "a reply got through");
        assert_ne!(tally, '*', "the system peer again with reach 0");
        let p = probe().unwrap_or_else(|e| panic!("no answer in the outage: {e}"));
        let (code, out, _) = ntpstat();
        (p.reply.li == 3 && p.reply.stratum == 0 && code == 1).then_some(out)
    });
    assert!(
        unsynced
            .as_ref()
            .is_some_and(|(o, _)| o.starts_with("unsynchronised")),
        "not reported unsynchronised with the source unreachable: {unsynced:?}, \
         ntpstat {:?}, served {:?}\n{}",
        ntpstat(),
        probe().map(|p| (p.reply.li, p.reply.stratum)),
        m.daemon.logs()
    );

    relay.set_blackout(false);
    let restored = Instant::now();
    let back = wait_until(Duration::from_secs(40), ms(500), || {
        let p = probe().unwrap_or_else(|e| panic!("no answer after the restore: {e}"));
        let (tally, reach) = reach_of(port, "127.0.0.1")?;
        (tally == '*' && reach != "0" && p.reply.stratum == 4 && p.reply.li != 3).then_some(reach)
    });
    eprintln!(
        "path restored: back after {:?} (reach {back:?}); relay {:?}",
        back.as_ref().map(|_| restored.elapsed()),
        relay.stats()
    );
    assert!(back.is_some(), "not back within 40 s:\n{}", m.daemon.logs());
    let (code, out, _) = ntpstat();
    assert_eq!(code, 0, "ntpstat once back: {out}");
    assert!(
        unreachable_after >= Duration::from_secs(50),
        "{unreachable_after:?}"
    );
    assert!(m.daemon.is_running());
    let steps = log_lines_with(&m.daemon, "clock stepped");
    assert!(steps.is_empty(), "{steps:?}");
    let panics = panic_lines(&m.daemon);
    assert!(panics.is_empty(), "{panics:?}");
    m.daemon.stop();
}

// ---------------------------------------------------------------------------
// e. SIGHUP under load
// ---------------------------------------------------------------------------

/// Requests per second of the steady client stream.
const LOAD_RATE: u64 = 2000;

/// What the load's replies showed.
#[derive(Clone, Debug, Default)]
struct LoadTally {
    /// By request number: answered.
    answered: Vec<bool>,
    /// Requests answered more than once.
    twice: u64,
    kods: u64,
    /// Replies served at stratum 3 and at stratum 6.
    strata: [u64; 2],
}

/// Meridian serves its local clock; a client streams requests at 2000/s from one
/// socket (each tagged in its transmit timestamp), a second thread counts the answers.
/// Meanwhile the daemon gets six SIGHUPs a second apart, the configuration switching
/// between `fudge stratum 2` and `fudge stratum 5` before each. Asserted: at most 0.5 %
/// of the requests go unanswered (each reply matched to its request, none twice),
/// every one of the six reloads is logged, the answers show both served strata (3 and
/// 6: the changes applied while serving), the last configuration is what is served at
/// the end, no KoD, and the daemon is alive without panics.
#[test]
fn sighup_under_load_answers_every_request_and_applies_each_change() {
    if !require_root_and_tools(&[]) {
        return;
    }
    let conf_for = |stratum: u8| {
        format!("server 127.127.1.0\nfudge 127.127.1.0 stratum {stratum}\nrestrict default\n")
    };
    let mut m = meridian_server(None, &conf_for(2), free_udp_port(), LOOPBACK, 3);
    let daemon = m.addr;
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let rx = sock.try_clone().expect("clone");
    let stop = Arc::new(AtomicBool::new(false));
    let answered: Arc<Mutex<LoadTally>> = Arc::default();
    let (st, an) = (Arc::clone(&stop), Arc::clone(&answered));
    let counter = thread::spawn(move || {
        let _ = rx.set_read_timeout(Some(Duration::from_millis(50)));
        let mut buf = [0u8; 1024];
        while !st.load(Ordering::Relaxed) {
            let Ok((n, from)) = rx.recv_from(&mut buf) else {
                continue;
            };
            let Some(p) = NtpPacket::parse(&buf[..n]).filter(|_| from == daemon) else {
                continue;
            };
            let mut a = an.lock().expect("tally");
            if p.is_kod() {
                a.kods += 1;
                continue;
            }
            match p.stratum {
                3 => a.strata[0] += 1,
                6 => a.strata[1] += 1,
                _ => {}
            }
            let Some(n) = (p.origin >> 32 == TAG << 16).then_some(p.origin & 0xffff_ffff) else {
                continue;
            };
            let n = n as usize;
            if a.answered.len() <= n {
                a.answered.resize(n + 1, false);
            }
            if a.answered[n] {
                a.twice += 1;
            }
            a.answered[n] = true;
        }
    });
    let st = Arc::clone(&stop);
    let sender = thread::spawn(move || {
        let start = Instant::now();
        let mut sent = 0u64;
        while !st.load(Ordering::Relaxed) {
            let xmt = (TAG << 48) | sent;
            if sock
                .send_to(&NtpPacket::request_bytes(4, xmt), daemon)
                .is_ok()
            {
                sent += 1;
            }
            let due = Duration::from_micros(sent * 1_000_000 / LOAD_RATE);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                thread::sleep(wait);
            }
        }
        sent
    });

    thread::sleep(Duration::from_secs(1));
    let conf_file = conf_path(&m);
    let mut last = 2;
    for i in 0..6 {
        last = if i % 2 == 0 { 5 } else { 2 };
        std::fs::write(&conf_file, conf_for(last)).expect("rewrite config");
        m.daemon.signal(libc::SIGHUP);
        thread::sleep(Duration::from_secs(1));
    }
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().expect("sender");
    thread::sleep(Duration::from_millis(300));
    counter.join().expect("counter");
    let LoadTally {
        answered: got,
        twice,
        kods,
        strata,
    } = answered.lock().expect("tally").clone();
    let answered_count = got.iter().filter(|a| **a).count() as u64;
    let lost = sent - answered_count;
    eprintln!(
        "load: {sent} requests, {answered_count} answered, {lost} lost, {twice} twice, {kods} \
         KoDs; replies at stratum 3: {}, at 6: {}",
        strata[0], strata[1]
    );
    assert!(sent >= 6 * LOAD_RATE, "only {sent} requests sent");
    assert!(lost * 200 <= sent, "{lost} of {sent} requests unanswered");
    assert_eq!((twice, kods), (0, 0));
    assert!(strata[0] > 0 && strata[1] > 0, "{strata:?}");
    let reloads = log_lines_with(&m.daemon, "reloaded ");
    assert_eq!(reloads.len(), 6, "{reloads:?}");
    let p = ntp_probe(daemon, Duration::from_secs(1)).expect("answer after the reloads");
    assert_eq!(p.reply.stratum, last + 1, "{p:?}");
    assert!(m.daemon.is_running());
    let panics = panic_lines(&m.daemon);
    assert!(panics.is_empty(), "{panics:?}");
}

// ---------------------------------------------------------------------------
// f. the drift file's disk full or read-only
// ---------------------------------------------------------------------------

/// A tmpfs of `size` mounted over `dir` in a private mount namespace, held by a
/// `sleep` whose mount namespace it is: the host never sees the mount, and it goes
/// away with the holder (killed by PID on drop). The test reaches the files through
/// `/proc/PID/root`, and daemons enter the namespace with `nsenter`.
struct PrivateTmpfs {
    holder: std::process::Child,
    dir: PathBuf,
}

impl PrivateTmpfs {
    fn new(dir: &Path, size: &str) -> PrivateTmpfs {
        let holder = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount -t tmpfs -o size="$1" meridian-test "$2" && exec sleep 600"#)
            .args(["sh", size])
            .arg(dir)
            .spawn()
            .expect("unshare");
        let t = PrivateTmpfs {
            holder,
            dir: dir.to_path_buf(),
        };
        let mountinfo = format!("/proc/{}/mountinfo", t.holder.id());
        let mounted = wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            std::fs::read_to_string(&mountinfo)
                .ok()
                .filter(|m| m.contains("meridian-test"))
        });
        assert!(mounted.is_some(), "tmpfs not mounted");
        t
    }

    /// `name` inside the tmpfs, as seen from here.
    fn path(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.holder.id()))
            .join(self.dir.strip_prefix("/").expect("absolute"))
            .join(name)
    }

    /// Fill the file system up to the last byte.
    fn fill(&self) {
        let mut f = std::fs::File::create(self.path("filler")).expect("filler");
        let chunk = [0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        // Whatever is left below a page.
        while f.write_all(&chunk[..1]).is_ok() {}
    }

    fn remount_read_only(&self) {
        let out = Command::new("nsenter")
            .args([
                "-t",
                &self.holder.id().to_string(),
                "-m",
                "mount",
                "-o",
                "remount,ro",
            ])
            .arg(&self.dir)
            .output()
            .expect("nsenter mount");
        assert!(out.status.success(), "{}", describe_output(&out));
    }

    /// Start `meridian ntpd -n --observe -c CONF --port PORT` inside the namespace
    /// (without CAP_SYS_TIME, like every daemon of the tests).
    fn spawn_daemon(&self, conf: &Path, port: u16, log_dir: &Path) -> Daemon {
        let args: Vec<String> = vec![
            "-t".into(),
            self.holder.id().to_string(),
            "-m".into(),
            "--".into(),
            meridian_bin().to_string_lossy().into_owned(),
            "ntpd".into(),
            "-n".into(),
            "--observe".into(),
            "-c".into(),
            conf.to_string_lossy().into_owned(),
            "--port".into(),
            port.to_string(),
        ];
        Daemon::spawn("meridian-drift", None, "nsenter", &args, log_dir)
    }
}

impl Drop for PrivateTmpfs {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

#[derive(Clone, Copy, Debug)]
enum DiskFault {
    Full,
    ReadOnly,
}

/// The previous drift file holds 12.345 ppm on a small tmpfs (private mount
/// namespace), which is then filled up or remounted read-only; the statistics go to
/// the same file system. The daemon, in that namespace, reads the drift file, syncs
/// from a Meridian upstream on loopback and keeps serving while its statistics cannot
/// be written (one clear error line, not one per record); at SIGTERM it cannot save the
/// frequency: it says so with the file's name and the system's reason, exits cleanly,
/// and the old file is intact (12.345, no temporary file left next to it).
fn drift_file_fault(fault: DiskFault, reason: &str) {
    if !require_root_and_tools(&["unshare", "nsenter"]) {
        return;
    }
    let upstream = meridian_server(None, LOCAL_CLOCK_CONF, free_udp_port(), LOOPBACK, 3);
    let dir = TempDir::new("drift-fault");
    let mount_point = dir.path().join("state");
    std::fs::create_dir(&mount_point).expect("mount point");
    let fs = PrivateTmpfs::new(&mount_point, "64k");
    std::fs::write(fs.path("ntp.drift"), "12.345\n").expect("old drift file");
    std::fs::create_dir(fs.path("stats")).expect("stats dir");
    match fault {
        DiskFault::Full => fs.fill(),
        DiskFault::ReadOnly => fs.remount_read_only(),
    }
    let drift = mount_point.join("ntp.drift");
    let conf = dir.write(
        "ntp.conf",
        &format!(
            "restrict default\nserver 127.0.0.1 port {} iburst minpoll 3 maxpoll 3\n\
             driftfile {}\nstatsdir {}/\nstatistics loopstats peerstats\n",
            upstream.addr.port(),
            drift.display(),
            mount_point.join("stats").display()
        ),
    );
    let port = free_udp_port();
    let mut d = fs.spawn_daemon(&conf, port, dir.path());
    let addr = SocketAddr::new(LOOPBACK, port);
    wait_for_stratum(&mut d, None, addr, 4, Duration::from_secs(60));
    let read_drift = log_lines_with(&d, "from the drift file");
    assert!(
        read_drift.iter().any(|l| l.contains("12.345 ppm")),
        "{}",
        d.logs()
    );
    // A few more polls with statistics failing: still serving, one error line.
    for _ in 0..10 {
        let p = ntp_probe(addr, Duration::from_secs(1)).expect("serving");
        assert_eq!(p.reply.stratum, 4);
        thread::sleep(Duration::from_secs(1));
    }
    let stats_errors = log_lines_with(&d, "cannot write statistics file");
    assert_eq!(stats_errors.len(), 1, "{stats_errors:?}");
    assert!(stats_errors[0].contains(reason), "{stats_errors:?}");

    let status = d.stop();
    assert!(status.success(), "exit status {status}:\n{}", d.logs());
    let drift_errors = log_lines_with(&d, "cannot write drift file");
    eprintln!("{fault:?}: {drift_errors:?}");
    assert_eq!(drift_errors.len(), 1, "{}", d.logs());
    assert!(
        drift_errors[0].contains(&drift.display().to_string()) && drift_errors[0].contains(reason),
        "{drift_errors:?}"
    );
    assert!(log_lines_with(&d, "exiting on signal").len() == 1);
    assert_eq!(
        std::fs::read_to_string(fs.path("ntp.drift")).expect("drift file"),
        "12.345\n",
        "the previous drift file was damaged"
    );
    assert!(
        !fs.path("ntp.drift.TEMP").exists(),
        "temporary file left behind"
    );
}

#[test]
fn drift_file_on_a_full_disk_keeps_the_old_file_and_the_daemon_running() {
    drift_file_fault(DiskFault::Full, "No space left on device");
}

#[test]
fn drift_file_on_a_read_only_disk_keeps_the_old_file_and_the_daemon_running() {
    drift_file_fault(DiskFault::ReadOnly, "Read-only file system");
}
