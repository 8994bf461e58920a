//! The daemon's mode 6 handler, `meridian_daemon::control::handle_request`,
//! with the snapshot of a daemon serving its local clock and 40 MRU entries.
//!
//! Octet 0: which `restrict` configuration (`% 8`), whether a `controlkey`
//! (1) is configured (bit 6), and which key (if any) the target signs the
//! request with (bits 3–5: 0 none, else key `n - 1`), so authenticated
//! requests and signed responses are fuzzed too. Octet 1: the source. Every
//! `$NONCE$` in the rest is replaced by a nonce really issued to the source
//! (the header's count is adjusted), so the verified READ_MRU path is
//! reachable. Invariants: every fragment is a well-formed response of at
//! most 480 octets; without a valid nonce a request is never answered with
//! more than `MAX_UNVERIFIED_FRAGMENTS` fragments, nor at all when the
//! restrict flags refuse queries.
#![no_main]

use std::net::IpAddr;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use meridian_conf::restrict::{RestrictFlags, RestrictTable};
use meridian_conf::{parse_str, MemorySource};
use meridian_daemon::control::auth::MAX_SIGNED_FRAGMENT_LEN;
use meridian_daemon::control::handler::{MAX_MRU_FRAGMENTS, MAX_UNVERIFIED_FRAGMENTS};
use meridian_daemon::control::{
    handle_request, local_snapshot, ControlEnv, ControlOutcome, ControlSnapshot, HostInfo,
    MruEntry, NonceKey,
};
use meridian_daemon::reference::LocalReference;
use meridian_proto::control::{ControlHeader, HEADER_LEN};

struct World {
    snapshot: ControlSnapshot,
    mru: Vec<MruEntry>,
    nonce: NonceKey,
    tables: Vec<RestrictTable>,
    keys: meridian_auth::KeyStore,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let conf = "server 127.127.1.0\nfudge 127.127.1.0 stratum 10\n";
        let config = parse_str("fuzz.conf", conf, &MemorySource::new()).unwrap();
        let reference = LocalReference::from_config(&config);
        let now = meridian_fuzz::now();
        let server = reference.server_state(now, -20, 3);
        let host = HostInfo {
            version: "meridian-fuzz".into(),
            processor: "x86_64".into(),
            system: "Linux/6.1.0".into(),
        };
        let snapshot = local_snapshot(&reference, &server, now.add_seconds(-1000.0), 40123, &host);
        let mru = (1..=40u8)
            .map(|i| MruEntry {
                addr: IpAddr::from([10, 0, 0, i]),
                port: 0,
                first: now.add_seconds(-100.0 - f64::from(i)),
                last: now.add_seconds(-f64::from(i)),
                count: u64::from(i),
                mode_version: 0x23,
                restrict: if i % 2 == 0 {
                    RestrictFlags::LIMITED | RestrictFlags::KOD
                } else {
                    RestrictFlags::empty()
                },
            })
            .collect();
        let tables = (0..meridian_fuzz::RESTRICT_CONFS.len())
            .map(meridian_fuzz::restrict_table)
            .collect();
        World {
            snapshot,
            mru,
            nonce: NonceKey::new(),
            tables,
            keys: meridian_fuzz::key_store(),
        }
    })
}

const MARKER: &[u8] = b"$NONCE$";

fuzz_target!(|data: &[u8]| {
    let [ctl, src, rest @ ..] = data else {
        return;
    };
    let w = world();
    let source = meridian_fuzz::source(*src);
    let restrict = &w.tables[usize::from(ctl % 8) % w.tables.len()];
    let flags = restrict.lookup(source.ip());
    let control_key = (ctl & 0x40 != 0).then_some(1u16);
    let sign_with = match (ctl >> 3) & 7 {
        0 | 6 | 7 => None,
        k => Some(u32::from(k - 1)),
    };
    let now = meridian_fuzz::now();
    // Substitute real nonces for the marker.
    let mut datagram = rest.to_vec();
    let mut substituted = false;
    if rest.windows(MARKER.len()).any(|x| x == MARKER) && rest.len() >= HEADER_LEN {
        let nonce = w.nonce.issue(source.ip(), now);
        let mut out = rest[..HEADER_LEN].to_vec();
        let body = &rest[HEADER_LEN..];
        let mut i = 0;
        while i < body.len() {
            if body[i..].starts_with(MARKER) {
                out.extend_from_slice(nonce.as_bytes());
                i += MARKER.len();
                substituted = true;
            } else {
                out.push(body[i]);
                i += 1;
            }
        }
        let grow = out.len() - rest.len();
        let count = u16::from_be_bytes([out[10], out[11]]).wrapping_add(grow as u16);
        out[10..12].copy_from_slice(&count.to_be_bytes());
        while out.len() % 4 != 0 {
            out.push(0);
        }
        datagram = out;
    }
    if let Some(key) = sign_with {
        // ntpq's layout: header and data padded to eight octets, key id, digest.
        let start = meridian_proto::control::mac_offset(datagram.len());
        datagram.resize(start, 0);
        let mut mac = [0u8; 24];
        if let Ok(n) = w.keys.sign(&datagram, key, &mut mac) {
            datagram.extend_from_slice(&mac[..n]);
        }
    }
    let env = ControlEnv {
        flags,
        snapshot: &w.snapshot,
        mru: &w.mru,
        nonce: &w.nonce,
        now,
        keys: &w.keys,
        control_key,
        restrict,
    };
    let mut fragments: Vec<Vec<u8>> = Vec::new();
    let outcome = handle_request(&datagram, source, &env, &mut |f| fragments.push(f.to_vec()));
    for f in &fragments {
        assert!(
            f.len() >= HEADER_LEN && f.len() <= MAX_SIGNED_FRAGMENT_LEN,
            "{}",
            f.len()
        );
        let h = ControlHeader::decode(f).expect("a mode 6 header");
        assert!(h.response, "fragments are responses");
        assert!(HEADER_LEN + usize::from(h.count) <= f.len());
    }
    if !flags.allows_query() {
        assert!(fragments.is_empty(), "noquery source answered");
        assert_eq!(outcome, ControlOutcome::Dropped);
    }
    let limit = if substituted {
        MAX_MRU_FRAGMENTS
    } else {
        MAX_UNVERIFIED_FRAGMENTS
    };
    assert!(
        fragments.len() <= limit,
        "{} fragments (nonce: {substituted})",
        fragments.len()
    );
    match outcome {
        ControlOutcome::Answered { fragments: n } => assert_eq!(n, fragments.len()),
        ControlOutcome::Refused(_) => assert_eq!(fragments.len(), 1),
        ControlOutcome::Dropped => assert!(fragments.is_empty()),
    }
});
