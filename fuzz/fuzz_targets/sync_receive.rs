//! The client side of the daemon's associations,
//! `meridian_sync::SyncCore::receive_datagram`: a reply (or anything else)
//! arriving from a configured server's address while a request is out.
//!
//! Octet 0 picks the association (plain, or `key 2`) and whether the target
//! patches the right origin timestamp into the datagram (and signs it with
//! key `octet 0 / 4 % 5`), so replies that really answer the request are
//! fuzzed too. Invariant: a datagram whose origin is not the request's
//! nonce changes nothing: the association stays, its reach stays 0 and its
//! poll interval does not move (no spoofed KoD, no poisoning).
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use meridian_nts::UID_LEN;
use meridian_proto::NtpTimestamp;
use meridian_sync::{AssocKind, SourceOptions, SyncConfig, SyncCore, MAX_REQUEST_LEN};

const NONCE: u64 = 0x9e37_79b9_7f4a_7c15;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let keyed = ctl & 1 == 1;
    let fix_origin = ctl & 2 == 2;
    let mut core = SyncCore::new(SyncConfig::default(), -20);
    core.set_keys(meridian_fuzz::key_store());
    let addr: SocketAddr = "192.0.2.1:123".parse().unwrap();
    let opts = SourceOptions {
        minpoll: 4,
        maxpoll: 10,
        iburst: true,
        key: keyed.then_some(2),
        ..SourceOptions::default()
    };
    let id = core.add("192.0.2.1", addr, AssocKind::Server, opts, 0.0);
    let t1 = NtpTimestamp::from_unix(1_800_000_000, 0);
    let mut req = [0u8; MAX_REQUEST_LEN];
    core.transmit_datagram(id, 0.0, t1, NONCE, &[0; UID_LEN], &mut req)
        .expect("request is sent");
    let poll_before = core.associations()[0].source.poll_log2();
    let mut buf = [0u8; 2048];
    let len = rest.len().min(1500);
    buf[..len].copy_from_slice(&rest[..len]);
    let mut len = len;
    if fix_origin && len >= 48 {
        buf[24..32].copy_from_slice(&NONCE.to_be_bytes());
        let key = u32::from(ctl / 4 % 5);
        if let Ok(n) = meridian_fuzz::key_store().sign_in_place(&mut buf, 48, key) {
            if ctl & 0x80 != 0 {
                len = n;
            }
        }
    }
    let datagram = &buf[..len];
    let genuine_origin = datagram.get(24..32) == Some(&NONCE.to_be_bytes()[..]);
    let t4 = t1.add_seconds(0.01);
    let r = core.receive_datagram(addr, datagram, t4, 0.01, 1_800_000_000.01);
    if !genuine_origin {
        assert_eq!(
            core.associations().len(),
            1,
            "demobilised by a spoof: {r:?}"
        );
        let a = &core.associations()[0];
        assert_eq!(a.source.reach(), 0, "spoof counted as a reply");
        assert_eq!(a.source.poll_log2(), poll_before, "spoof moved the poll");
    }
    // From anyone else, nothing at all happens.
    let other: SocketAddr = "192.0.2.2:123".parse().unwrap();
    let r = core.receive_datagram(other, datagram, t4, 0.02, 1_800_000_000.02);
    if let Ok(receipt) = r {
        assert_eq!(receipt.association, None);
    }
});
