//! The server's whole receive → reply decision,
//! `meridian_daemon::server::respond::respond`, with symmetric keys, NTS and
//! each restrict configuration of the fixtures.
//!
//! Octet 0: restrict configuration (`% 6`), NTS on or off, and how to treat
//! the rest: as received; signed by the target with key `octet 1 % 5`
//! (MD5/SHA-1/AES-CMAC/untrusted/unknown), so the authenticated paths run;
//! or built into a valid NTS request (see the `nts_server` target). Octet 1
//! also picks the source address. Before the datagram, octet 1 / 50 earlier
//! copies of it arrive (rate limiting, KoD).
//!
//! Invariants: no reply or KoD longer than the request (no amplification);
//! every reply answers the request (server mode to a client, symmetric
//! passive to a symmetric active peer not barred by `nopeer`); nothing is
//! answered to an implausible source, to mode 7 or to any other mode; only
//! mode 6 goes to the control handler.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use meridian_auth::KeyStore;
use meridian_clock::TimeCorrection;
use meridian_conf::restrict::{RestrictFlags, RestrictTable};
use meridian_daemon::server::ratelimit::{ClientTable, RateLimits};
use meridian_daemon::server::respond::{respond, DropReason, Outcome, ServeContext};
use meridian_daemon::state::ServingState;
use meridian_nts::NtsServer;
use meridian_proto::{
    LeapIndicator, Mode, NtpHeader, NtpShort, NtpTimestamp, ReferenceId, ServerState,
};

struct World {
    tables: Vec<RestrictTable>,
    keys: KeyStore,
    nts: NtsServer,
    state: ServingState,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| World {
        tables: (0..meridian_fuzz::RESTRICT_CONFS.len())
            .map(meridian_fuzz::restrict_table)
            .collect(),
        keys: meridian_fuzz::key_store(),
        nts: NtsServer::new(meridian_fuzz::key_ring()),
        state: ServingState {
            server: ServerState {
                leap: LeapIndicator::NoWarning,
                stratum: 3,
                precision: -20,
                root_delay: NtpShort::from_seconds_f64(0.01),
                root_dispersion: NtpShort::from_seconds_f64(0.02),
                reference_id: ReferenceId::from_ascii(b"GPS"),
                reference_ts: meridian_fuzz::now(),
                min_poll: 4,
            },
            correction: TimeCorrection::IDENTITY,
            smear: None,
        },
    })
}

fn plausible(addr: std::net::SocketAddr) -> bool {
    use std::net::IpAddr;
    addr.port() != 0
        && match addr.ip() {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                !(v4.is_unspecified()
                    || v4.is_multicast()
                    || v4.is_broadcast()
                    || (o[0] == 127 && o[1] == 127))
            }
            IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
        }
}

fuzz_target!(|data: &[u8]| {
    let [c0, c1, rest @ ..] = data else {
        return;
    };
    let w = world();
    let restrict = &w.tables[usize::from(*c0) % w.tables.len()];
    let nts = (c0 / 6) % 2 == 1;
    let source = meridian_fuzz::source(*c1);
    let mut buf = [0u8; 2048];
    let datagram: &[u8] = match (c0 / 12) % 4 {
        1 => {
            let len = rest.len().min(1500);
            buf[..len].copy_from_slice(&rest[..len]);
            match w.keys.sign_in_place(&mut buf, len, u32::from(c1 % 5)) {
                Ok(n) => &buf[..n],
                Err(_) => rest,
            }
        }
        2 => {
            let (header, r) = meridian_fuzz::split2(rest, &[0xff, 0xff]);
            let (extra, plaintext) = meridian_fuzz::split2(r, &[0xff, 0xff]);
            match meridian_fuzz::sealed_request(header, extra, plaintext, &mut buf) {
                Some(n) => &buf[..n],
                None => return,
            }
        }
        _ => rest,
    };
    let read_clock = || meridian_fuzz::now().add_seconds(0.001);
    let ctx = ServeContext {
        state: &w.state,
        restrict,
        keys: &w.keys,
        nts: if nts { Some(&w.nts) } else { None },
        read_clock: &read_clock,
    };
    let mut clients = ClientTable::new(
        16,
        RateLimits {
            average_log2: 3,
            minimum: 2.0,
        },
    );
    let rx = meridian_fuzz::now();
    let mut out = [0u8; 2048];
    let earlier = usize::from(*c1 / 50);
    for i in 0..=earlier {
        let now = i as f64 * 0.25;
        let outcome = respond(&ctx, &mut clients, datagram, source, rx, now, &mut out);
        check(
            datagram,
            source,
            restrict.lookup(source.ip()),
            outcome,
            &out,
        );
    }
});

fn check(
    datagram: &[u8],
    source: std::net::SocketAddr,
    flags: RestrictFlags,
    outcome: Outcome,
    out: &[u8],
) {
    let mode = datagram.first().map(|b| b & 7);
    if !plausible(source) {
        assert_eq!(outcome, Outcome::Drop(DropReason::BadSource), "{source}");
        return;
    }
    match outcome {
        Outcome::Reply { len, .. } | Outcome::Sealed { len } | Outcome::Kod { len } => {
            assert!(
                len <= datagram.len(),
                "amplification: {len} octets for {}",
                datagram.len()
            );
            let request = NtpHeader::decode(datagram).expect("answered request has a header");
            let h = NtpHeader::decode(&out[..len]).expect("reply has a header");
            // Clients get server replies; a symmetric active peer (allowed to peer)
            // a stateless symmetric passive one; nothing else gets time.
            match mode {
                Some(3) => assert_eq!(h.mode, Mode::Server),
                Some(1) => {
                    assert_eq!(h.mode, Mode::SymmetricPassive);
                    assert!(!flags.contains(RestrictFlags::NOPEER), "nopeer answered");
                }
                _ => panic!("mode {mode:?} answered with time"),
            }
            assert_eq!(h.version, request.version);
            assert_eq!(
                h.origin_ts, request.transmit_ts,
                "reply answers the request"
            );
            if let Outcome::Kod { .. } = outcome {
                assert_eq!(h.stratum, 0);
            } else if h.stratum != 0 {
                // Time, not a kiss (an NTS NAK is a kiss inside a Sealed outcome).
                assert_ne!(h.receive_ts, NtpTimestamp::ZERO);
            }
        }
        Outcome::Control { .. } => assert_eq!(mode, Some(6)),
        Outcome::Drop(_) => {}
    }
}
