use super::*;
use crate::system::SyncConfig;
use meridian_proto::{LeapIndicator, Mode, NtpHeader, NtpShort, NtpTimestamp, ReferenceId};

const T0: i64 = 1_800_000_000;

fn ts(secs: f64) -> NtpTimestamp {
    NtpTimestamp::from_unix(T0, 0).add_seconds(secs)
}

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, n], 123))
}

/// An honest stratum-2 answer to `request`, 1 ms away.
fn answer(request: &[u8; 48], sent_at: f64) -> (NtpHeader, f64) {
    let req = NtpHeader::decode(request).unwrap();
    let header = NtpHeader {
        leap: LeapIndicator::NoWarning,
        version: 4,
        mode: Mode::Server,
        stratum: 2,
        poll: req.poll,
        precision: -20,
        root_delay: NtpShort::from_seconds_f64(0.0005),
        root_dispersion: NtpShort::from_seconds_f64(0.001),
        reference_id: ReferenceId::from_ascii(b"GPS"),
        reference_ts: ts(sent_at - 5.0),
        origin_ts: req.transmit_ts,
        receive_ts: ts(sent_at + 0.001),
        transmit_ts: ts(sent_at + 0.001),
    };
    (header, sent_at + 0.002)
}

/// Poll until `until` (mono); only the addresses in `alive` answer.
fn run(core: &mut SyncCore, alive: &[SocketAddr], from: f64, until: f64) {
    let mut random = 1u64;
    while let Some(now) = core.next_wakeup() {
        let now = now.max(from);
        if now > until {
            break;
        }
        for id in core.due(now) {
            random += 1;
            let (to, request) = core.transmit(id, now, ts(now), random).unwrap();
            if alive.contains(&to) {
                let (reply, at) = answer(&request, now);
                core.receive(to, &reply, ts(at), at, T0 as f64 + at);
            }
        }
    }
}

fn member_addrs(core: &SyncCore, pool: &Pool) -> Vec<SocketAddr> {
    pool.members()
        .iter()
        .map(|id| {
            core.associations()
                .iter()
                .find(|a| a.id == *id)
                .unwrap()
                .addr
        })
        .collect()
}

/// A resolver that answers with the addresses in `dns`, counting its calls.
fn fixed(
    dns: Vec<SocketAddr>,
    calls: &mut u32,
) -> impl FnMut(&str, u16) -> Result<Vec<SocketAddr>, String> + '_ {
    move |name, port| {
        assert_eq!((name, port), ("pool.example", 123));
        *calls += 1;
        Ok(dns.clone())
    }
}

#[test]
fn a_pool_takes_up_to_maxclock_distinct_addresses() {
    let mut core = SyncCore::new(SyncConfig::default(), -20);
    // A server line already uses .1: the pool must not mobilise it twice.
    core.add(
        "s",
        addr(1),
        AssocKind::Server,
        SourceOptions::default(),
        0.0,
    );
    let mut pool = Pool::new("pool.example", 123, SourceOptions::default());
    let mut calls = 0;
    let dns = vec![
        addr(1),
        addr(2),
        addr(2),
        addr(3),
        addr(4),
        addr(5),
        addr(6),
    ];
    let review = pool.review(&mut core, &mut fixed(dns, &mut calls), 4, 0.0);
    assert_eq!(review.added.len(), 4);
    assert_eq!(
        member_addrs(&core, &pool),
        vec![addr(2), addr(3), addr(4), addr(5)]
    );
    assert!(core
        .associations()
        .iter()
        .filter(|a| a.addr != addr(1))
        .all(|a| a.kind == AssocKind::Pool && a.name == "pool.example"));
    // Full: a review does not even ask the resolver.
    let review = pool.review(&mut core, &mut fixed(vec![], &mut calls), 4, 1.0);
    assert_eq!(review, PoolReview::default());
    assert_eq!(calls, 1);
}

#[test]
fn an_unreachable_member_is_replaced_from_a_fresh_resolution() {
    let mut core = SyncCore::new(SyncConfig::default(), -20);
    let mut pool = Pool::new("pool.example", 123, SourceOptions::default());
    let mut calls = 0;
    let dns = vec![addr(1), addr(2), addr(3)];
    pool.review(&mut core, &mut fixed(dns, &mut calls), 3, 0.0);
    let dead = pool.members()[2];
    // .3 never answers. Early on, a review keeps it: it is not unreachable for long.
    run(&mut core, &[addr(1), addr(2)], 0.0, 200.0);
    let review = pool.review(&mut core, &mut fixed(vec![], &mut calls), 3, 200.0);
    assert!(review.removed.is_empty(), "{review:?}");
    assert_eq!(pool.members().len(), 3);
    // After POOL_UNREACH_LIMIT unanswered polls it goes, and the name (which now also
    // lists .4) gives a replacement; the dead address is not taken back.
    run(&mut core, &[addr(1), addr(2)], 200.0, 2000.0);
    let unreach = core.associations().iter().find(|a| a.id == dead).unwrap();
    assert!(unreach.source.unreach() >= POOL_UNREACH_LIMIT);
    let dns = vec![addr(3), addr(1), addr(4), addr(2)];
    let review = pool.review(&mut core, &mut fixed(dns, &mut calls), 3, 2000.0);
    assert_eq!(review.removed, vec![(dead, addr(3))]);
    assert_eq!(review.added.len(), 1);
    assert_eq!(review.added[0].1, addr(4));
    assert!(core.associations().iter().all(|a| a.id != dead));
    assert_eq!(member_addrs(&core, &pool), vec![addr(1), addr(2), addr(4)]);
    // The replacement is polled and, answering, becomes reachable and selectable.
    run(&mut core, &[addr(1), addr(2), addr(4)], 2000.0, 2300.0);
    let new = review.added[0].0;
    let member = core.associations().iter().find(|a| a.id == new).unwrap();
    assert_ne!(member.source.reach(), 0);
    assert!(core.system().system_peer.is_some());
    // Once the shun has passed, the old address may come back if the name gives it.
    pool.forget(new);
    core.remove(new);
    let later = 2000.0 + POOL_SHUN + 1.0;
    let review = pool.review(&mut core, &mut fixed(vec![addr(3)], &mut calls), 3, later);
    assert_eq!(
        review.added.iter().map(|a| a.1).collect::<Vec<_>>(),
        vec![addr(3)]
    );
}

#[test]
fn a_resolution_failure_keeps_the_members_that_answer() {
    let mut core = SyncCore::new(SyncConfig::default(), -20);
    let mut pool = Pool::new("pool.example", 123, SourceOptions::default());
    let mut calls = 0;
    pool.review(&mut core, &mut fixed(vec![addr(1)], &mut calls), 3, 0.0);
    run(&mut core, &[addr(1)], 0.0, 600.0);
    let mut failing = |_: &str, _: u16| Err::<Vec<SocketAddr>, _>("SERVFAIL".to_string());
    let review = pool.review(&mut core, &mut failing, 3, 600.0);
    assert_eq!(review.resolve_error.as_deref(), Some("SERVFAIL"));
    assert!(review.removed.is_empty());
    assert_eq!(member_addrs(&core, &pool), vec![addr(1)]);
}

#[test]
fn a_member_that_sent_deny_is_replaced_and_not_taken_back() {
    let mut core = SyncCore::new(SyncConfig::default(), -20);
    let mut pool = Pool::new("pool.example", 123, SourceOptions::default());
    let mut calls = 0;
    pool.review(
        &mut core,
        &mut fixed(vec![addr(1), addr(2)], &mut calls),
        1,
        0.0,
    );
    let first = pool.members()[0];
    let (to, request) = core.transmit(first, 0.0, ts(0.0), 42).unwrap();
    let (mut kod, at) = answer(&request, 0.0);
    kod.stratum = 0;
    kod.leap = LeapIndicator::Unsynchronized;
    kod.reference_id = ReferenceId::from_ascii(b"DENY");
    let receipt = core.receive(to, &kod, ts(at), at, T0 as f64);
    assert!(matches!(receipt.event, crate::SourceEvent::Demobilize(_)));
    assert!(core.associations().is_empty(), "the core removed it");
    let dns = vec![addr(1), addr(2)];
    let review = pool.review(&mut core, &mut fixed(dns, &mut calls), 1, 1.0);
    assert_eq!(
        review.added.iter().map(|a| a.1).collect::<Vec<_>>(),
        vec![addr(2)]
    );
    assert_eq!(member_addrs(&core, &pool), vec![addr(2)]);
}
