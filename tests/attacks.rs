//! One test per attack class of the hardening issue, asserting the defended
//! behaviour. Each runs at its natural level: the sans-IO functions the daemon
//! runs (`respond`, `SyncCore`, the discipline) where the class is about one
//! decision, and the real daemon on loopback (high ports; all of 127/8 is
//! local, so many source addresses exist without namespaces) where the class
//! is about what crosses the wire; one test uses two namespaces of its own to
//! put loopback sources on a real interface.
//!
//! | class | level |
//! | --- | --- |
//! | zero origin | `SyncCore` |
//! | origin not matching | `SyncCore` |
//! | duplicate / replayed reply | `SyncCore` |
//! | spoofed KoD (RATE/DENY) | `SyncCore`, and a syncing daemon under a spray |
//! | crypto-NAK without a keyed association | `respond`, `SyncCore`, daemon (symmetric) |
//! | MAC lengths 8/12/16, a key id not the configured one | `SyncCore`, `respond` |
//! | panic gate bypass by a slow series of steps | `SyncCore` + simulated clock |
//! | Sybil peers (`restrict default nopeer`) | daemon + `meridian ntpq -p` |
//! | 127.127.x.x and ::1 sources | `respond`; daemon (a socket bound to 127.127.1.0); daemon in a namespace fed raw packets from 127.0.0.1, 127.127.1.0 and ::1 over a veth |
//! | source port 0, multicast/broadcast sources | `respond` |
//! | mode 7 of any kind | `respond`, daemon |
//! | mode 6 over-read and overlong values | daemon |
//! | amplification, every mode 0–7 | `respond` (proptest-like), daemon octet counts |
//! | mode 6 with queries allowed, no nonce | daemon (≤ 3 fragments) |
//!
//! Safety: the daemons run under `setpriv --bounding-set -sys_time` with
//! `--observe`; traffic stays on 127/8; every loop is bounded. The daemon
//! tests need root (for setpriv) and skip without it, failing when `CI` is set.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use meridian_algo::{DisciplineConfig, DisciplineEvent};
use meridian_auth::{parse_keys, KeyStore};
use meridian_clock::TimeCorrection;
use meridian_conf::restrict::RestrictTable;
use meridian_conf::{parse_str, MemorySource};
use meridian_daemon::server::ratelimit::{ClientTable, RateLimits};
use meridian_daemon::server::respond::{respond, DropReason, Outcome, ServeContext};
use meridian_daemon::state::ServingState;
use meridian_proto::{
    LeapIndicator, Mode, NtpHeader, NtpShort, NtpTimestamp, ReferenceId, ReplyError, ServerState,
    HEADER_LEN,
};
use meridian_sim::clock::SimClock;
use meridian_sim::server::{ntp_time, EPOCH_UNIX};
use meridian_sync::{
    AssocKind, AuthRejection, SourceEvent, SourceOptions, SyncConfig, SyncCore, MAX_REQUEST_LEN,
};
use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};

use support::attacks::*;
use support::sync::{spawn_meridian, wait_until};
use support::*;

// ---------------------------------------------------------------------------
// Sans-IO fixtures
// ---------------------------------------------------------------------------

/// Keys: 1 MD5, 2 SHA-1, 3 AES-128-CMAC (all trusted), 4 MD5 (untrusted).
fn keys() -> KeyStore {
    let text = "1 MD5 abcdefgh\n\
                2 SHA1 0123456789abcdef0123456789abcdef01234567\n\
                3 AES128CMAC 000102030405060708090a0b0c0d0e0f\n\
                4 MD5 untrusted\n";
    KeyStore::new(parse_keys(text, "k").into_result().unwrap(), [1, 2, 3])
}

const SERVER: &str = "192.0.2.1:123";

fn server_addr() -> SocketAddr {
    SERVER.parse().unwrap()
}

/// Local "now" of the sans-IO client, seconds after `T0`.
const T0: i64 = 1_800_000_000;

fn ts(secs: f64) -> NtpTimestamp {
    NtpTimestamp::from_unix(T0, 0).add_seconds(secs)
}

/// A sync core with one association to [`SERVER`], optionally keyed.
struct Client {
    core: SyncCore,
    id: u16,
    now: f64,
    nonce: u64,
}

impl Client {
    fn new(key: Option<u32>) -> Client {
        let mut core = SyncCore::new(SyncConfig::default(), -20);
        core.set_keys(keys());
        let opts = SourceOptions {
            minpoll: 4,
            maxpoll: 10,
            key,
            ..SourceOptions::default()
        };
        let id = core.add(SERVER, server_addr(), AssocKind::Server, opts, 0.0);
        Client {
            core,
            id,
            now: 0.0,
            nonce: 0,
        }
    }

    /// Send the next request (signed when keyed); returns its nonce.
    fn send(&mut self) -> u64 {
        self.now = self.core.next_wakeup().unwrap().max(self.now);
        self.nonce = 0x5151_0000_0000_0000 + (self.now * 1000.0) as u64 + 1;
        let mut out = [0u8; MAX_REQUEST_LEN];
        let (_, len) = self
            .core
            .transmit_datagram(
                self.id,
                self.now,
                ts(self.now),
                self.nonce,
                &[0; 32],
                &mut out,
            )
            .expect("request sent");
        assert!(len >= HEADER_LEN);
        self.nonce
    }

    /// A correct server's reply (the server's clock `offset` s ahead) to `origin`.
    fn reply(&self, origin: u64, offset: f64) -> NtpHeader {
        NtpHeader {
            leap: LeapIndicator::NoWarning,
            version: 4,
            mode: Mode::Server,
            stratum: 1,
            poll: 4,
            precision: -20,
            root_delay: NtpShort::from_seconds_f64(0.0005),
            root_dispersion: NtpShort::from_seconds_f64(0.0005),
            reference_id: ReferenceId::from_ascii(b"GPS"),
            reference_ts: ts(self.now - 1.0),
            origin_ts: NtpTimestamp::from_bits(origin),
            receive_ts: ts(self.now + 0.005 + offset),
            transmit_ts: ts(self.now + 0.005 + offset + 0.00001),
        }
    }

    /// Deliver `datagram` from `from`, 10 ms after the request.
    fn deliver_from(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Result<meridian_sync::Receipt, AuthRejection> {
        let at = self.now + 0.010;
        self.core
            .receive_datagram(from, datagram, ts(at), at, T0 as f64 + at)
    }

    fn deliver(&mut self, datagram: &[u8]) -> Result<meridian_sync::Receipt, AuthRejection> {
        self.deliver_from(server_addr(), datagram)
    }

    fn reach(&self) -> u8 {
        self.assoc().map_or(0, |a| a.source.reach())
    }

    fn poll(&self) -> i8 {
        self.assoc().map_or(i8::MIN, |a| a.source.poll_log2())
    }

    fn assoc(&self) -> Option<&meridian_sync::Association> {
        self.core.associations().iter().find(|a| a.id == self.id)
    }
}

fn encode(h: &NtpHeader) -> Vec<u8> {
    let mut b = [0u8; HEADER_LEN];
    h.encode(&mut b);
    b.to_vec()
}

fn kod_header(code: &[u8; 4], origin: u64, poll: i8) -> Vec<u8> {
    kod(code, origin, poll).to_vec()
}

fn event(r: &Result<meridian_sync::Receipt, AuthRejection>) -> SourceEvent {
    r.as_ref()
        .map(|r| r.event.clone())
        .unwrap_or(SourceEvent::None)
}

// ---------------------------------------------------------------------------
// Origin, duplicates, replays, spoofed KoDs (SyncCore)
// ---------------------------------------------------------------------------

#[test]
fn zero_origin_reply_is_rejected() {
    let mut c = Client::new(None);
    let nonce = c.send();
    // Correct in every respect but the origin, which is zero: what a server
    // that lost our request, or a blind spoofer, sends.
    let r = c.deliver(&encode(&c.reply(0, 0.0)));
    assert_eq!(event(&r), SourceEvent::Rejected(ReplyError::BogusOrigin));
    assert_eq!(c.reach(), 0);
    assert!(r.unwrap().command.is_none());
    // The exchange stays open for the genuine reply.
    let r = c.deliver(&encode(&c.reply(nonce, 0.0)));
    assert!(
        matches!(event(&r), SourceEvent::Updated(_) | SourceEvent::Stale),
        "{r:?}"
    );
    assert_eq!(c.reach(), 1);
}

#[test]
fn reply_whose_origin_does_not_match_is_rejected() {
    let mut c = Client::new(None);
    let old = c.send();
    c.deliver(&encode(&c.reply(old, 0.0))).unwrap();
    let nonce = c.send();
    let reach = c.reach();
    for wrong in [
        nonce ^ 1,
        nonce.wrapping_add(1 << 32),
        !nonce,
        old, // the previous request's nonce
        u64::MAX,
    ] {
        // A lie of 0.5 s: accepted, it would show up as an offset.
        let r = c.deliver(&encode(&c.reply(wrong, 0.5)));
        assert_eq!(
            event(&r),
            SourceEvent::Rejected(ReplyError::BogusOrigin),
            "origin {wrong:#x} for nonce {nonce:#x}"
        );
        assert_eq!(c.reach(), reach);
    }
    // And from another address, even with the right origin, nothing happens.
    let other: SocketAddr = "192.0.2.99:123".parse().unwrap();
    let r = c
        .deliver_from(other, &encode(&c.reply(nonce, 0.5)))
        .unwrap();
    assert_eq!(r.association, None);
    assert_eq!(c.reach(), reach);
    let r = c.deliver(&encode(&c.reply(nonce, 0.0)));
    assert!(matches!(
        event(&r),
        SourceEvent::Updated(_) | SourceEvent::Stale | SourceEvent::Held
    ));
}

#[test]
fn duplicate_and_replayed_replies_count_once() {
    let mut c = Client::new(None);
    let nonce = c.send();
    let genuine = encode(&c.reply(nonce, 0.0));
    let first = c.deliver(&genuine);
    assert!(
        matches!(event(&first), SourceEvent::Updated(_)),
        "{first:?}"
    );
    // The same datagram again (network duplicate or replay), and a second
    // answer to the same request carrying another time.
    let dup = c.deliver(&genuine);
    assert_eq!(event(&dup), SourceEvent::Rejected(ReplyError::Duplicate));
    let second = c.deliver(&encode(&c.reply(nonce, 3.0)));
    assert_eq!(event(&second), SourceEvent::Rejected(ReplyError::Duplicate));
    assert!(dup.unwrap().command.is_none() && second.unwrap().command.is_none());
    // Replayed after the next request went out: its origin is stale.
    c.send();
    let replay = c.deliver(&genuine);
    assert_eq!(
        event(&replay),
        SourceEvent::Rejected(ReplyError::BogusOrigin)
    );
    let filter = c.assoc().unwrap().source.filter_output().unwrap();
    assert!(filter.offset.abs() < 0.01, "{filter:?}");
}

#[test]
fn spoofed_kods_need_our_nonce() {
    let mut c = Client::new(None);
    let nonce = c.send();
    c.deliver(&encode(&c.reply(nonce, 0.0))).unwrap();
    let nonce = c.send();
    let poll = c.poll();
    for code in [b"RATE", b"DENY", b"RSTR"] {
        for origin in [0, nonce ^ 0x8000, nonce.wrapping_sub(1)] {
            let r = c.deliver(&kod_header(code, origin, 17));
            assert_eq!(
                event(&r),
                SourceEvent::Rejected(ReplyError::BogusOrigin),
                "{} with origin {origin:#x}",
                String::from_utf8_lossy(code)
            );
            assert!(c.assoc().is_some(), "demobilised by a spoofed KoD");
            assert_eq!(c.poll(), poll, "poll moved by a spoofed KoD");
        }
    }
    // The genuine article does act, so the test would see it.
    let r = c.deliver(&kod_header(b"RATE", nonce, 10));
    assert_eq!(event(&r), SourceEvent::RateLimited);
    assert!(c.poll() > poll);
    let nonce = c.send();
    let r = c.deliver(&kod_header(b"DENY", nonce, 10));
    assert!(matches!(event(&r), SourceEvent::Demobilize(_)));
    assert!(c.assoc().is_none());
}

// ---------------------------------------------------------------------------
// MACs: crypto-NAK, truncated digests, foreign key ids
// ---------------------------------------------------------------------------

/// `header` with a trailer of key id `key` and `digest`.
fn with_trailer(header: &[u8], key: u32, digest: &[u8]) -> Vec<u8> {
    let mut v = header.to_vec();
    v.extend_from_slice(&key.to_be_bytes());
    v.extend_from_slice(digest);
    v
}

fn signed(packet: &[u8], key: u32) -> Vec<u8> {
    let mut buf = [0u8; 256];
    buf[..packet.len()].copy_from_slice(packet);
    let n = keys().sign_in_place(&mut buf, packet.len(), key).unwrap();
    buf[..n].to_vec()
}

#[test]
fn keyed_association_refuses_truncated_foreign_and_nak_macs() {
    // `server … key 2` (SHA-1, 20-octet digests).
    let mut c = Client::new(Some(2));
    let nonce = c.send();
    let reply = encode(&c.reply(nonce, 0.7));
    let good = signed(&reply, 2);
    let digest = &good[HEADER_LEN + 4..];
    assert_eq!(digest.len(), 20);
    let mut bad = Vec::new();
    // The right key id with the digest cut to 8, 12 and 16 octets (a short
    // MAC that would verify if only a prefix were compared).
    for cut in [8, 12, 16] {
        bad.push((
            format!("key 2, {cut}-octet digest"),
            with_trailer(&reply, 2, &digest[..cut]),
        ));
    }
    // Valid MACs, but made with another trusted key than the configured one.
    bad.push(("valid MD5 MAC with key 1".into(), signed(&reply, 1)));
    bad.push(("valid AES-CMAC MAC with key 3".into(), signed(&reply, 3)));
    // Untrusted and unknown key ids, and a crypto-NAK, and no MAC at all.
    bad.push((
        "untrusted key 4".into(),
        with_trailer(&reply, 4, &digest[..16]),
    ));
    bad.push(("unknown key 77".into(), with_trailer(&reply, 77, digest)));
    bad.push(("crypto-NAK".into(), with_trailer(&reply, 0, &[])));
    bad.push(("no MAC".into(), reply.clone()));
    for (what, datagram) in &bad {
        let r = c.deliver(datagram);
        assert!(r.is_err(), "{what}: accepted ({r:?})");
        assert_eq!(c.reach(), 0, "{what}");
    }
    // The exchange is still open: the correctly signed reply counts.
    let r = c.deliver(&good);
    assert!(matches!(event(&r), SourceEvent::Updated(_)), "{r:?}");
    assert_eq!(c.reach(), 1);
}

#[test]
fn crypto_nak_and_bad_macs_get_no_time_and_no_signature_from_the_server() {
    let store = keys();
    let t = table("restrict default\n");
    let req = request(4, 3, 0x1122_3344_5566_7788);
    let sha1 = signed(&req, 2);
    let digest = &sha1[HEADER_LEN + 4..];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("crypto-NAK request", with_trailer(&req, 0, &[])),
        ("crypto-NAK with key id", with_trailer(&req, 2, &[])),
        ("8-octet digest", with_trailer(&req, 2, &digest[..8])),
        ("12-octet digest", with_trailer(&req, 2, &digest[..12])),
        (
            "16-octet digest for a SHA-1 key",
            with_trailer(&req, 2, &digest[..16]),
        ),
        ("unknown key id", with_trailer(&req, 77, digest)),
        ("untrusted key", with_trailer(&req, 4, &digest[..16])),
    ];
    for (what, datagram) in &cases {
        let (o, out) = ask(&t, &store, datagram, "10.0.0.2:40000", 0.0);
        match o {
            Outcome::Drop(_) => {}
            Outcome::Reply { len, sign: None } => {
                // Only a crypto-NAK: header plus a zero key id, never time that
                // could pass as authenticated, never larger than the request.
                assert_eq!(len, HEADER_LEN + 4, "{what}");
                assert_eq!(&out[HEADER_LEN..HEADER_LEN + 4], &[0; 4], "{what}");
                assert!(len <= datagram.len(), "{what}: amplification");
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    // And to an association without a key, a crypto-NAK is at most a plain
    // reply: with a zero or foreign origin it is dropped like any other.
    let mut c = Client::new(None);
    let nonce = c.send();
    for origin in [0, nonce ^ 0x10] {
        let nak = with_trailer(&encode(&c.reply(origin, 0.4)), 0, &[]);
        let r = c.deliver(&nak);
        assert_eq!(event(&r), SourceEvent::Rejected(ReplyError::BogusOrigin));
        assert_eq!(c.reach(), 0);
    }
    // A correctly signed request is answered and signed with the same key.
    let (o, _) = ask(&t, &store, &sha1, "10.0.0.2:40000", 0.0);
    assert_eq!(
        o,
        Outcome::Reply {
            len: HEADER_LEN + 24,
            sign: Some(2)
        }
    );
}

// ---------------------------------------------------------------------------
// Panic gate
// ---------------------------------------------------------------------------

/// Drive a sync core against one server whose clock walks away by `walk`
/// seconds at every answer (just under the step threshold), for `days`
/// simulated days. Returns how far the local clock was dragged from true
/// time (it starts exact and does not drift), and whether the discipline
/// panicked.
fn walk_attack(cfg: DisciplineConfig, walk: f64, days: f64) -> (f64, bool, Vec<f64>) {
    let mut core = SyncCore::new(
        SyncConfig {
            discipline: cfg,
            ..SyncConfig::default()
        },
        -20,
    );
    let addr = server_addr();
    let opts = SourceOptions {
        minpoll: cfg.minpoll,
        maxpoll: cfg.maxpoll,
        iburst: true,
        ..SourceOptions::default()
    };
    core.add(SERVER, addr, AssocKind::Server, opts, 0.0);
    let mut clock = SimClock::new(0.0, 0.0, 0.0);
    let (mut t, mut lie, mut nonce) = (0.0f64, 0.0f64, 1u64);
    let mut steps = Vec::new();
    let end = days * 86_400.0;
    while t < end {
        let next = core.next_wakeup().expect("association stays");
        clock.advance(next - t);
        t = next;
        for id in core.due(t) {
            nonce += 1;
            let (to, bytes) = core
                .transmit(id, t, ntp_time(clock.read(t)), nonce)
                .unwrap();
            let req = NtpHeader::decode(&bytes).unwrap();
            // 10 ms each way; the server's time is true time plus its lie.
            let t2 = ntp_time(t + 0.010 + lie);
            let reply = NtpHeader {
                leap: LeapIndicator::NoWarning,
                version: 4,
                mode: Mode::Server,
                stratum: 1,
                poll: req.poll,
                precision: -20,
                root_delay: NtpShort::from_seconds_f64(0.0001),
                root_dispersion: NtpShort::from_seconds_f64(0.0001),
                reference_id: ReferenceId::from_ascii(b"GPS"),
                reference_ts: t2.add_seconds(-1.0),
                origin_ts: req.transmit_ts,
                receive_ts: t2,
                transmit_ts: t2.add_seconds(0.00001),
            };
            lie += walk;
            clock.advance(0.02001);
            t += 0.02001;
            let t4 = ntp_time(clock.read(t));
            let receipt = core.receive(to, &reply, t4, t, EPOCH_UNIX as f64 + clock.read(t));
            if let Some(cmd) = receipt.command {
                if cmd.event == DisciplineEvent::Panic {
                    return (clock.offset, true, steps);
                }
                if let Some(s) = cmd.step {
                    steps.push(s);
                }
                cmd.apply(&mut clock);
            }
        }
    }
    (clock.offset, false, steps)
}

#[test]
fn panic_gate_is_not_bypassed_by_a_slow_series_of_steps() {
    // A server whose time walks away by 90 % of the step threshold at every
    // answer. Each offset the discipline sees stays far below the panic
    // threshold; the defended behaviour is that the clock is still never
    // dragged further than the panic threshold without -g (or the daemon
    // gives up, as for one big offset). Two configurations: a panic threshold
    // of 10 s (crossed within simulated days) and ntpd's defaults (1000 s,
    // crossed within simulated weeks). Step 0.128 s, stepout 900 s, poll 64 s.
    let mut failures = Vec::new();
    for (panic, days) in [(10.0, 3.0), (1000.0, 10.0)] {
        let cfg = DisciplineConfig {
            panic_threshold: panic,
            minpoll: 6,
            maxpoll: 6,
            ..DisciplineConfig::default()
        };
        let walk = 0.9 * cfg.step_threshold;
        let (dragged, panicked, steps) = walk_attack(cfg, walk, days);
        let line = format!(
            "panic threshold {panic} s: walk {walk:.4} s per poll for {days} days dragged the \
             clock {dragged:.1} s through {} steps (largest {:.3} s); panicked: {panicked}",
            steps.len(),
            steps.iter().fold(0.0f64, |m, s| m.max(s.abs()))
        );
        eprintln!("{line}");
        if !(panicked || dragged.abs() <= panic) {
            failures.push(line);
        }
    }
    assert!(
        failures.is_empty(),
        "panic gate bypassed:\n{}",
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// respond(): sources, modes, amplification
// ---------------------------------------------------------------------------

fn table(conf: &str) -> RestrictTable {
    parse_str("attacks.conf", conf, &MemorySource::new())
        .unwrap()
        .restrict
}

fn serving() -> ServingState {
    ServingState {
        server: ServerState {
            leap: LeapIndicator::NoWarning,
            stratum: 2,
            precision: -20,
            root_delay: NtpShort::from_seconds_f64(0.01),
            root_dispersion: NtpShort::from_seconds_f64(0.01),
            reference_id: ReferenceId::from_ascii(b"GPS"),
            reference_ts: ts(-10.0),
            min_poll: 4,
        },
        correction: TimeCorrection::IDENTITY,
        smear: None,
    }
}

fn request(version: u8, mode: u8, transmit: u64) -> Vec<u8> {
    let mut b = vec![0u8; HEADER_LEN];
    b[0] = (version << 3) | mode;
    b[2] = 6;
    b[40..48].copy_from_slice(&transmit.to_be_bytes());
    b
}

fn ask(
    restrict: &RestrictTable,
    keys: &KeyStore,
    data: &[u8],
    from: &str,
    now: f64,
) -> (Outcome, Vec<u8>) {
    let mut clients = ClientTable::new(64, RateLimits::default());
    ask_with(
        restrict,
        keys,
        &mut clients,
        data,
        from.parse().unwrap(),
        now,
    )
}

fn ask_with(
    restrict: &RestrictTable,
    keys: &KeyStore,
    clients: &mut ClientTable,
    data: &[u8],
    from: SocketAddr,
    now: f64,
) -> (Outcome, Vec<u8>) {
    let state = serving();
    let read_clock = || ts(0.001);
    let ctx = ServeContext {
        state: &state,
        restrict,
        keys,
        nts: None,
        read_clock: &read_clock,
    };
    let mut out = vec![0u8; 2048];
    let o = respond(&ctx, clients, data, from, ts(0.0), now, &mut out);
    (o, out)
}

#[test]
fn source_port_zero_multicast_broadcast_and_refclock_sources_are_dropped() {
    let t = table("restrict default\n");
    let store = keys();
    let time = request(4, 3, 0xabcd);
    let readvar = [0x16, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
    for src in [
        "10.0.0.2:0",
        "[2001:db8::2]:0",
        "224.0.1.1:123",
        "239.255.255.250:40000",
        "[ff02::101]:123",
        "[ff05::1:3]:40000",
        "255.255.255.255:123",
        "0.0.0.0:123",
        "[::]:123",
        "127.127.1.0:123",
        "127.127.28.2:40000",
    ] {
        for data in [&time[..], &readvar[..]] {
            let (o, _) = ask(&t, &store, data, src, 0.0);
            assert_eq!(o, Outcome::Drop(DropReason::BadSource), "{src}");
        }
    }
    // The kernel never delivers ::1 or 127.0.0.1 from outside (martian
    // source); on loopback they are real local clients and answered.
    for src in ["[::1]:40000", "127.0.0.1:40000"] {
        let (o, _) = ask(&t, &store, &time, src, 0.0);
        assert!(matches!(o, Outcome::Reply { .. }), "{src}: {o:?}");
    }
}

/// ntpdc-style mode 7 requests: implementation, request code, with and
/// without the auth bit, at the lengths real tools send (8, 48, 192 octets).
fn mode7_requests(rng: &mut SmallRng) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for version in 1..=4u8 {
        for (implementation, code) in [(3, 42), (2, 42), (3, 20), (2, 0), (0, 1), (3, 255)] {
            for len in [8usize, 48, 192, 440] {
                for auth in [0u8, 0x80] {
                    let mut b = vec![0u8; len];
                    b[0] = (version << 3) | 7 | (rng.gen::<u8>() & 0xc0);
                    b[1] = auth;
                    b[2] = implementation;
                    b[3] = code;
                    v.push(b);
                }
            }
        }
    }
    // The canonical monlist probe, and random mode 7 garbage.
    v.push(vec![0x17, 0x00, 0x03, 0x2a, 0, 0, 0, 0]);
    for _ in 0..200 {
        let len = rng.gen_range(1..600);
        let mut b = vec![0u8; len];
        rng.fill_bytes(&mut b);
        b[0] = (b[0] & !7) | 7;
        v.push(b);
    }
    v
}

#[test]
fn mode7_is_never_answered_by_respond() {
    let store = keys();
    let mut rng = SmallRng::seed_from_u64(7);
    for conf in ["restrict default\n", "restrict default limited kod\n"] {
        let t = table(conf);
        let mut clients = ClientTable::new(64, RateLimits::default());
        for (i, r) in mode7_requests(&mut rng).iter().enumerate() {
            let from = SocketAddr::from(([10, 9, 0, (i % 250) as u8 + 1], 40_000));
            let (o, _) = ask_with(&t, &store, &mut clients, r, from, i as f64 * 0.001);
            assert!(matches!(o, Outcome::Drop(_)), "{conf}: {r:02x?} → {o:?}");
        }
    }
}

#[test]
fn no_mode_gets_an_unauthenticated_reply_larger_than_its_request() {
    // Every mode, random payloads, every restrict configuration a server
    // faces the world with; repeated sources so rate limits and KoDs fire.
    let store = keys();
    let mut rng = SmallRng::seed_from_u64(0xa11);
    for conf in [
        "restrict default kod limited nomodify notrap nopeer noquery\n",
        "restrict default\n",
        "restrict default limited kod\n",
        "restrict default notrust\n",
    ] {
        let t = table(conf);
        let mut clients = ClientTable::new(256, RateLimits::default());
        let mut replies = 0;
        for i in 0..20_000u32 {
            let mode = (i % 8) as u8;
            let len = match i % 5 {
                0 => HEADER_LEN,
                1 => 12,
                _ => rng.gen_range(0..700),
            };
            let mut b = vec![0u8; len];
            rng.fill_bytes(&mut b);
            if let Some(first) = b.first_mut() {
                *first = (*first & 0xc0) | (rng.gen_range(1..=4u8) << 3) | mode;
            }
            let from = SocketAddr::from(([10, 8, (i % 7) as u8, (i % 31) as u8 + 1], 40_000));
            let (o, out) = ask_with(&t, &store, &mut clients, &b, from, f64::from(i) * 0.01);
            if let Outcome::Reply { len, .. } | Outcome::Kod { len } | Outcome::Sealed { len } = o {
                replies += 1;
                assert!(
                    len <= b.len(),
                    "{conf}: mode {mode}, {} → {len} octets",
                    b.len()
                );
                let h = NtpHeader::decode(&out[..len]).unwrap();
                assert!(matches!(h.mode, Mode::Server | Mode::SymmetricPassive));
            }
        }
        assert!(
            replies > 0,
            "{conf}: nothing answered, the test measured nothing"
        );
    }
}

// ---------------------------------------------------------------------------
// The real daemon on loopback
// ---------------------------------------------------------------------------

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Start `meridian ntpd --observe` on `conf` (plus the local clock at stratum
/// 2) on a free port; returns it once it answers.
fn daemon(conf: &str) -> MeridianServer {
    let port = free_udp_port();
    let conf = format!("server 127.127.1.0\nfudge 127.127.1.0 stratum 2\n{conf}");
    spawn_meridian(None, &conf, port, LOOPBACK)
}

fn still_answers(m: &mut MeridianServer) {
    assert!(m.daemon.is_running(), "daemon died:\n{}", m.daemon.logs());
    assert!(
        ntp_probe(m.addr, Duration::from_secs(2)).is_ok(),
        "daemon stopped answering"
    );
    let panics: Vec<_> = m
        .daemon
        .logs()
        .lines()
        .filter(|l| l.contains("panicked"))
        .map(str::to_string)
        .collect();
    assert!(panics.is_empty(), "{panics:?}");
}

/// Source addresses 127.0.N.H outside 127.0.0.1 (which configs may trust).
fn world(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 2 + (i / 250) as u8, (i % 250) as u8 + 2)
}

#[test]
fn refclock_pseudo_address_on_the_wire_is_ignored() {
    if !require_root_and_tools(&[]) {
        return;
    }
    let mut m = daemon("restrict default\n");
    let req = NtpPacket::request_bytes(4, 0x0102_0304_0506_0708).to_vec();
    let readvar = vec![0x16, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
    // All of 127/8 is local: a socket can really send from 127.127.1.0, the
    // address ntpd gives its local clock driver.
    let mut requests = Vec::new();
    for host in [0u8, 1, 2] {
        let ip = Ipv4Addr::new(127, 127, 1, host);
        requests.push((ip, req.clone()));
        requests.push((ip, readvar.clone()));
    }
    requests.push((Ipv4Addr::new(127, 0, 9, 9), req.clone()));
    let got = exchange_all(m.addr, &requests, 16, Duration::from_millis(800));
    for e in &got[..got.len() - 1] {
        assert!(e.replies.is_empty(), "answered {}: {:?}", e.from, e.replies);
    }
    assert_eq!(
        got.last().unwrap().replies.len(),
        1,
        "control source not answered"
    );
    still_answers(&mut m);
}

#[test]
fn mode7_is_never_answered_on_the_wire() {
    if !require_root_and_tools(&[]) {
        return;
    }
    // The most permissive configuration: everything allowed, queries too.
    let mut m = daemon("restrict default\n");
    let mut rng = SmallRng::seed_from_u64(77);
    let requests: Vec<(Ipv4Addr, Vec<u8>)> = mode7_requests(&mut rng)
        .into_iter()
        .enumerate()
        .map(|(i, r)| (world(i), r))
        .collect();
    let n = requests.len();
    let got = exchange_all(m.addr, &requests, 128, Duration::from_millis(300));
    let answered: Vec<_> = got.iter().filter(|e| !e.replies.is_empty()).collect();
    assert!(
        answered.is_empty(),
        "{} of {n} mode 7 requests answered, e.g. {:02x?}",
        answered.len(),
        answered.first().map(|e| &e.request)
    );
    still_answers(&mut m);
}

/// Random datagrams of every mode, plus canonical shapes, tagged by source.
fn every_mode_requests(rng: &mut SmallRng, per_mode: usize) -> Vec<(Ipv4Addr, Vec<u8>)> {
    let mut v = Vec::new();
    let mut i = 0;
    for mode in 0..8u8 {
        for k in 0..per_mode {
            let len = match k % 6 {
                0 => 48,
                1 => 12,
                2 => 8,
                3 => 48 + 20,
                _ => rng.gen_range(0..600),
            };
            let mut b = vec![0u8; len];
            rng.fill_bytes(&mut b);
            if let Some(first) = b.first_mut() {
                *first = (*first & 0xc0) | (rng.gen_range(1..=4u8) << 3) | mode;
            }
            if mode == 6 && len >= 12 {
                // Plausible control requests: no R/E/M bits, zero offset,
                // a count that fits, READVAR/READSTAT/MRU/nonce opcodes.
                b[1] = [1u8, 2, 10, 12][k % 4];
                b[8] = 0;
                b[9] = 0;
                let count = (len - 12).min(rng.gen_range(0..64)) as u16;
                b[10..12].copy_from_slice(&count.to_be_bytes());
                b.truncate(len & !3);
            }
            v.push((world(i), b));
            i += 1;
        }
    }
    v
}

#[test]
fn world_facing_daemon_never_amplifies() {
    if !require_root_and_tools(&[]) {
        return;
    }
    // The README's world-facing line; 127.0.0.1 (the harness's readiness
    // probe) trusted as the README does, every other 127/8 source is "the
    // world".
    let mut m =
        daemon("restrict default kod limited nomodify notrap nopeer noquery\nrestrict 127.0.0.1\n");
    let mut rng = SmallRng::seed_from_u64(0xbeef);
    let requests = every_mode_requests(&mut rng, 60);
    let started = Instant::now();
    let got = exchange_all(m.addr, &requests, 120, Duration::from_millis(250));
    let (mut bytes_in, mut bytes_out, mut answered) = (0usize, 0usize, [0usize; 8]);
    for e in &got {
        bytes_in += e.request.len();
        bytes_out += e.octets_out();
        let mode = e.request.first().map_or(0, |b| b & 7);
        if !e.replies.is_empty() {
            answered[usize::from(mode)] += 1;
        }
        assert!(
            e.octets_out() <= e.request.len(),
            "mode {mode}: {} octets in, {} out ({} datagrams) to {}",
            e.request.len(),
            e.octets_out(),
            e.replies.len(),
            e.from
        );
    }
    eprintln!(
        "{} requests in {:?}: {bytes_in} octets in, {bytes_out} out; answered per mode {answered:?}",
        got.len(),
        started.elapsed()
    );
    assert!(bytes_out <= bytes_in);
    assert!(
        answered[3] > 0,
        "no client request answered: nothing was measured"
    );
    assert_eq!(answered[6], 0, "noquery: mode 6 answered");
    assert_eq!(answered[7], 0, "mode 7 answered");
    still_answers(&mut m);
}

/// A mode 6 request: opcode, association, data (padded to 4).
fn control(op: u8, assoc: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let mut b = vec![0x16, op & 0x1f];
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&assoc.to_be_bytes());
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&(data.len() as u16).to_be_bytes());
    b.extend_from_slice(data);
    while b.len() % 4 != 0 {
        b.push(0);
    }
    b
}

/// Checks each reply fragment of a mode 6 exchange: a response header whose
/// count fits in the datagram and in one fragment, printable data.
fn check_fragments(e: &Exchange) {
    for f in &e.replies {
        assert!(f.len() >= 12, "short fragment {f:02x?}");
        assert_eq!(f[0] & 7, 6, "not mode 6");
        assert!(f[1] & 0x80 != 0, "not a response");
        let count = usize::from(u16::from_be_bytes([f[10], f[11]]));
        assert!(count <= 468, "fragment claims {count} octets");
        assert!(
            12 + count <= f.len(),
            "count {count} past the datagram ({})",
            f.len()
        );
        assert!(f.len() <= 12 + 468 + 3, "fragment of {} octets", f.len());
        let data = &f[12..12 + count];
        assert!(
            data.iter()
                .all(|&b| b == b'\r' || b == b'\n' || (0x20..0x7f).contains(&b))
                || f[1] & 0x1f == 1,
            "non-text data in a variable reply: {data:02x?}"
        );
    }
}

#[test]
fn mode6_replies_without_a_nonce_are_bounded() {
    if !require_root_and_tools(&[]) {
        return;
    }
    // Queries allowed from everyone (no noquery): replies may be larger than
    // the request, as classic ntpq expects, but never more than 3 fragments
    // without a nonce, and the MRU list not at all.
    let mut m = daemon("restrict default nomodify notrap nopeer\n");
    let all_vars = "version,processor,system,leap,stratum,precision,rootdelay,rootdisp,refid,\
                    reftime,clock,peer,tc,mintc,offset,frequency,sys_jitter,clk_jitter,\
                    clk_wander,tai,leapsec,expire";
    let many: String = std::iter::repeat_n(all_vars, 20)
        .collect::<Vec<_>>()
        .join(",");
    let mut requests = Vec::new();
    let mut add = |data: Vec<u8>| {
        let i = requests.len();
        requests.push((world(i), data));
    };
    for seq in 0..10u16 {
        add(control(2, 0, seq, b""));
        add(control(1, 0, seq, b""));
        add(control(2, 0, seq, all_vars.as_bytes()));
        add(control(2, 0, seq, &many.as_bytes()[..many.len().min(468)]));
        add(control(10, 0, seq, b"frags=32, limit=256"));
        add(control(
            10,
            0,
            seq,
            b"nonce=0123456789abcdef0123456789abcdef, frags=32",
        ));
        add(control(12, 0, seq, b""));
    }
    let got = exchange_all(m.addr, &requests, 70, Duration::from_millis(500));
    let mut answered = 0;
    for e in &got {
        check_fragments(e);
        assert!(
            e.replies.len() <= 3,
            "{} fragments ({} octets) to a {}-octet request without a nonce",
            e.replies.len(),
            e.octets_out(),
            e.request.len()
        );
        if e.request[1] & 0x1f == 10 {
            assert!(e.replies.is_empty(), "MRU list sent without a valid nonce");
        }
        answered += usize::from(!e.replies.is_empty());
    }
    assert!(answered >= 30, "only {answered} queries answered");
    still_answers(&mut m);
}

#[test]
fn mode6_over_reads_and_overlong_values_are_refused() {
    if !require_root_and_tools(&[]) {
        return;
    }
    let mut m = daemon("restrict default nomodify notrap nopeer\n");
    let mut requests = Vec::new();
    let mut push = |d: Vec<u8>| {
        let i = requests.len();
        requests.push((world(i), d));
    };
    // Over-reads: a count larger than what was sent, for every short length.
    for claimed in [1u16, 4, 100, 468, 469, 500, 4096, 65535] {
        let mut b = control(2, 0, claimed, b"");
        b[10..12].copy_from_slice(&claimed.to_be_bytes());
        push(b.clone());
        b.extend_from_slice(b"stratum,");
        push(b);
    }
    // Non-zero offsets, response bits set, unknown associations.
    let mut b = control(2, 0, 1, b"stratum");
    b[8] = 1;
    push(b);
    let mut b = control(2, 0, 2, b"stratum");
    b[1] |= 0xe0;
    push(b);
    push(control(2, 0xffff, 3, b""));
    push(control(4, 7, 4, b""));
    // Overlong names and values, lists of repeated names, binary garbage.
    let long_name = "x".repeat(460);
    push(control(2, 0, 5, long_name.as_bytes()));
    push(control(
        2,
        0,
        6,
        format!("stratum={}", "9".repeat(450)).as_bytes(),
    ));
    push(control(
        3,
        0,
        7,
        format!("stratum={}", "9".repeat(450)).as_bytes(),
    ));
    push(control(2, 0, 8, "stratum,".repeat(58).as_bytes()));
    push(control(2, 0, 9, &[0xff; 200]));
    push(control(2, 0, 10, b"\"stratum\r\n,=,,=,\"\"\""));
    push(control(
        10,
        0,
        11,
        format!("nonce={}", "f".repeat(440)).as_bytes(),
    ));
    let n = requests.len();
    let got = exchange_all(m.addr, &requests, n, Duration::from_millis(600));
    for e in &got {
        check_fragments(e);
        assert!(e.replies.len() <= 3, "{} fragments", e.replies.len());
        for f in &e.replies {
            let count = usize::from(u16::from_be_bytes([f[10], f[11]]));
            let sent = usize::from(u16::from_be_bytes([e.request[10], e.request[11]]));
            if sent + 12 > e.request.len() {
                // An over-read request: at most an error response, no data.
                assert_eq!(count, 0, "over-read answered with data: {f:02x?}");
            }
        }
    }
    still_answers(&mut m);
}

#[test]
fn sybil_symmetric_peers_create_no_association() {
    if !require_root_and_tools(&[]) {
        return;
    }
    for (conf, may_answer) in [
        ("restrict default nopeer\n", false),
        // Without nopeer a symmetric active peer may get a stateless passive
        // answer, but still no association.
        ("restrict default\n", true),
    ] {
        let mut m = daemon(conf);
        let mut rng = SmallRng::seed_from_u64(0x5b11);
        let mut requests = Vec::new();
        for i in 0..200usize {
            let mut b = vec![0u8; 48];
            b[0] = (4 << 3) | 1;
            b[1] = 2;
            b[2] = 6;
            b[3] = (-20i8) as u8;
            b[12..16].copy_from_slice(&[192, 0, 2, 1]);
            let now = ntp_now();
            b[16..24].copy_from_slice(&now.to_be_bytes());
            b[40..48].copy_from_slice(&(now ^ rng.gen::<u32>() as u64).to_be_bytes());
            match i % 4 {
                1 => b.extend_from_slice(&[0, 0, 0, 0]), // crypto-NAK
                2 => {
                    b.extend_from_slice(&99u32.to_be_bytes()); // unknown key
                    b.extend_from_slice(&[0x5a; 16]);
                }
                _ => {}
            }
            let src = Ipv4Addr::new(127, 0, 50 + (i / 100) as u8, (i % 100) as u8 + 2);
            requests.push((src, b.clone()));
            requests.push((src, b));
        }
        let got = exchange_all(m.addr, &requests, 100, Duration::from_millis(300));
        for e in &got {
            for r in &e.replies {
                assert!(r.len() <= e.request.len(), "{conf}: amplification");
                assert!(
                    matches!(r[0] & 7, 2 | 4),
                    "{conf}: mode {} reply to a symmetric active packet",
                    r[0] & 7
                );
                assert!(may_answer, "{conf}: nopeer, but {} was answered", e.from);
            }
        }
        thread::sleep(Duration::from_millis(300));
        let (rows, text) = ntpq_peers(m.addr.port());
        assert!(!rows.is_empty(), "{conf}: ntpq -p shows nothing:\n{text}");
        let foreign: Vec<_> = rows
            .iter()
            .filter(|r| r.remote.starts_with("127.0.5"))
            .collect();
        assert!(
            foreign.is_empty(),
            "{conf}: associations mobilised:\n{text}"
        );
        assert_eq!(
            rows.len(),
            1,
            "{conf}: only the local clock expected:\n{text}"
        );
        still_answers(&mut m);
    }
}

#[test]
fn spoofed_kods_and_replies_do_not_disturb_a_syncing_daemon() {
    if !require_root_and_tools(&[]) {
        return;
    }
    // A correct server; after each request it answers, an attacker who knows
    // the addresses and ports (it sends from the server's own socket) but not
    // the nonce sprays kisses and poisoned replies at the daemon's client port:
    // zero, random and stale origins, and a second "answer" +1500 s off to the
    // request already answered (a duplicate carrying a lie beyond the panic
    // threshold: accepted, the daemon would exit).
    let mut rng = SmallRng::seed_from_u64(0xd0d);
    let attacker: Attacker = Box::new(move |sock, req, earlier| {
        let stale = earlier.last().map_or(1, |r| r.transmit);
        let mut sprays: Vec<[u8; 48]> = Vec::new();
        for origin in [0, rng.gen::<u64>(), stale, req.transmit ^ 1] {
            sprays.push(kod(b"DENY", origin, 10));
            sprays.push(kod(b"RSTR", origin, 10));
            sprays.push(kod(b"RATE", origin, 17));
            sprays.push(poisoned_reply(origin, 1500.0));
            sprays.push(poisoned_reply(origin, -0.9));
        }
        sprays.push(poisoned_reply(req.transmit, 1500.0));
        for s in &sprays {
            let _ = sock.send_to(s, req.from);
        }
    });
    let server = TimeServer::start("127.0.0.1:0".parse().unwrap(), Some(attacker)).unwrap();
    let conf = format!(
        "server 127.0.0.1 port {} iburst minpoll 4 maxpoll 4\nrestrict default\n",
        server.addr().port()
    );
    let port = free_udp_port();
    let mut m = spawn_meridian(None, &conf, port, LOOPBACK);
    let start = Instant::now();
    // minpoll = maxpoll = 4: polls every 16 s, so a genuine RATE (or DENY) would
    // show at once in the poll column, the association list and the request log.
    let synced = wait_until(Duration::from_secs(40), Duration::from_millis(500), || {
        assert!(m.daemon.is_running(), "daemon exited:\n{}", m.daemon.logs());
        let (rows, _) = ntpq_peers(port);
        rows.iter().find(|r| r.tally == '*').cloned()
    });
    // Keep it under fire for a further stretch past the first regular poll.
    let observe_until = start + Duration::from_secs(45);
    while Instant::now() < observe_until {
        assert!(m.daemon.is_running(), "daemon exited:\n{}", m.daemon.logs());
        thread::sleep(Duration::from_millis(500));
    }
    let (rows, text) = ntpq_peers(port);
    let seen = server.requests();
    let row = rows
        .iter()
        .find(|r| r.remote.starts_with("127.0.0.1"))
        .unwrap_or_else(|| panic!("association gone (demobilised by a spoofed kiss?):\n{text}"));
    assert!(
        synced.is_some(),
        "never synchronised under the spray:\n{text}"
    );
    if let Some((_, took)) = &synced {
        eprintln!(
            "synchronised after {took:?} under the spray; {} requests",
            seen.len()
        );
    }
    assert_ne!(row.reach, "0", "{text}");
    let poll: u32 = row.poll.parse().unwrap_or(u32::MAX);
    assert!(
        poll <= 16,
        "poll raised to {} by a spoofed RATE:\n{text}",
        row.poll
    );
    assert!(
        row.offset.abs() < 100.0,
        "offset {} ms: poisoned\n{text}",
        row.offset
    );
    let last = seen.last().expect("requests").at;
    assert!(
        seen.len() >= 6 && last.elapsed() < Duration::from_secs(20),
        "{} requests, the last {:?} ago: polling slowed or stopped",
        seen.len(),
        last.elapsed()
    );
    still_answers(&mut m);
}

#[test]
fn loopback_and_refclock_sources_from_an_interface_get_nothing() {
    if !require_root_and_tools(&[]) {
        return;
    }
    // Two namespaces on a veth: A (10.123.7.1, fd00:7::1) crafts datagrams
    // whose source is 127.0.0.1, 127.127.1.0 or ::1 and sends them to the
    // daemon in B. B listens on those addresses itself, where the daemon's
    // answer would go if it took such a packet for a local one.
    let a = Netns::new("atk-a");
    let b = Netns::new("atk-b");
    VethPair::new(
        &a,
        "eth0",
        Some("10.123.7.1/24"),
        &b,
        "eth0",
        Some("10.123.7.2/24"),
    );
    a.ip(&["addr", "add", "fd00:7::1/64", "dev", "eth0", "nodad"]);
    b.ip(&["addr", "add", "fd00:7::2/64", "dev", "eth0", "nodad"]);
    let conf = "server 127.127.1.0\nfudge 127.127.1.0 stratum 2\nrestrict default\n";
    let mut m = spawn_meridian(Some(&b), conf, 123, LOOPBACK);
    let mac_b = mac_of(&b, "eth0");
    let request = NtpPacket::request_bytes(4, 0x0a0b_0c0d_0e0f_1011).to_vec();
    let daemon_v4 = SocketAddrV4::new(Ipv4Addr::new(10, 123, 7, 2), 123);
    let daemon_v6 = SocketAddrV6::new("fd00:7::2".parse().unwrap(), 123, 0, 0);
    let listen = |ns: &Netns, addr: &str| {
        let addr: SocketAddr = addr.parse().unwrap();
        ns.run(move || UdpSocket::bind(addr).expect("bind listener"))
    };
    let send_v4 = |src: &str| {
        let src: SocketAddrV4 = src.parse().unwrap();
        let p = ipv4_udp(src, daemon_v4, &request);
        a.run(move || send_raw_ipv4(&p, *daemon_v4.ip()))
            .expect("raw send");
    };
    let send_v6 = |src: &str| {
        let src: SocketAddrV6 = src.parse().unwrap();
        let f = ipv6_udp_frame(mac_b, src, daemon_v6, &request);
        a.run(move || send_frame(&f, "eth0")).expect("frame send");
    };
    // Controls: the same crafted packets from A's own addresses are answered,
    // so the raw paths deliver.
    let a_v4 = listen(&a, "10.123.7.1:40124");
    let a_v6 = listen(&a, "[fd00:7::1]:40124");
    send_v4("10.123.7.1:40124");
    send_v6("[fd00:7::1]:40124");
    let got_v4 = drain(&a_v4, Duration::from_millis(800));
    let got_v6 = drain(&a_v6, Duration::from_millis(800));
    assert_eq!(got_v4.len(), 1, "raw IPv4 control not answered");
    assert_eq!(got_v6.len(), 1, "raw IPv6 control not answered");
    // Loopback and refclock sources arriving on eth0.
    let spoofed = [
        ("127.0.0.1:40125", listen(&b, "127.0.0.1:40125")),
        ("127.127.1.0:40125", listen(&b, "127.127.1.0:40125")),
        ("[::1]:40125", listen(&b, "[::1]:40125")),
    ];
    for (src, _) in &spoofed {
        if src.starts_with('[') {
            send_v6(src);
        } else {
            send_v4(src);
        }
    }
    for (src, sock) in &spoofed {
        let got = drain(sock, Duration::from_millis(500));
        assert!(got.is_empty(), "a packet from {src} on eth0 was answered");
    }
    // Let the kernel through (route_localnet, accept_local, no rp_filter):
    // loopback sources now reach the daemon, which must still refuse the
    // refclock pseudo-address.
    let sysctl = |key: &str| {
        let path = format!("/proc/sys/net/ipv4/conf/{key}");
        let status = b
            .command("sh")
            .args([
                "-c",
                &format!(
                    "echo {} > {path}",
                    if key.ends_with("rp_filter") { 0 } else { 1 }
                ),
            ])
            .status()
            .expect("sysctl");
        assert!(status.success(), "{path}");
    };
    for key in [
        "all/route_localnet",
        "eth0/route_localnet",
        "all/accept_local",
        "eth0/accept_local",
        "all/rp_filter",
        "eth0/rp_filter",
    ] {
        sysctl(key);
    }
    let local = listen(&b, "127.0.0.5:40126");
    let refclock = listen(&b, "127.127.1.0:40126");
    send_v4("127.0.0.5:40126");
    send_v4("127.127.1.0:40126");
    let got_local = drain(&local, Duration::from_millis(800));
    let got_refclock = drain(&refclock, Duration::from_millis(200));
    assert_eq!(
        got_local.len(),
        1,
        "with route_localnet the kernel should deliver 127.0.0.5 from eth0 (control)"
    );
    assert!(
        got_refclock.is_empty(),
        "127.127.1.0 from eth0 was answered"
    );
    assert!(m.daemon.is_running(), "{}", m.daemon.logs());
}
