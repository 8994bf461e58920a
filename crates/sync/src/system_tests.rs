use super::*;
use meridian_proto::{Mode, NtpShort};

const T0: i64 = 1_800_000_000;

fn ts(secs: f64) -> NtpTimestamp {
    NtpTimestamp::from_unix(T0, 0).add_seconds(secs)
}

/// A server whose clock is `offset` seconds ahead of ours, `one_way` seconds away.
struct FakeServer {
    addr: SocketAddr,
    offset: f64,
    one_way: f64,
    stratum: u8,
    leap: LeapIndicator,
}

impl FakeServer {
    fn answer(&self, request: &[u8; 48], sent_at: f64) -> (NtpHeader, f64) {
        let req = NtpHeader::decode(request).unwrap();
        let header = NtpHeader {
            leap: self.leap,
            version: 4,
            mode: Mode::Server,
            stratum: self.stratum,
            poll: req.poll,
            precision: -20,
            root_delay: NtpShort::from_seconds_f64(0.0005),
            root_dispersion: NtpShort::from_seconds_f64(0.001),
            reference_id: ReferenceId::from_ascii(b"GPS"),
            reference_ts: ts(sent_at - 5.0),
            origin_ts: req.transmit_ts,
            receive_ts: ts(sent_at + self.one_way + self.offset),
            transmit_ts: ts(sent_at + self.one_way + self.offset + 0.00005),
        };
        (header, sent_at + 2.0 * self.one_way + 0.00005)
    }
}

fn core_with(servers: &[FakeServer]) -> SyncCore {
    let mut core = SyncCore::new(SyncConfig::default(), -20);
    for (i, s) in servers.iter().enumerate() {
        let opts = SourceOptions {
            iburst: true,
            ..Default::default()
        };
        core.add(
            s.addr.to_string(),
            s.addr,
            AssocKind::Server,
            opts,
            i as f64 * 0.1,
        );
    }
    core
}

/// Run the exchange loop for `seconds` of mono time without applying commands (the
/// fake clock never moves), returning every command issued.
fn run(core: &mut SyncCore, servers: &[FakeServer], seconds: f64) -> Vec<ClockCommand> {
    let mut commands = vec![];
    let mut random = 1u64;
    while let Some(now) = core.next_wakeup() {
        if now > seconds {
            break;
        }
        for id in core.due(now) {
            random += 1;
            let (addr, request) = core.transmit(id, now, ts(now), random).unwrap();
            let server = servers.iter().find(|s| s.addr == addr).unwrap();
            let (reply, arrival) = server.answer(&request, now);
            let receipt = core.receive(addr, &reply, ts(arrival), arrival, T0 as f64 + arrival);
            commands.extend(receipt.command);
        }
    }
    commands
}

fn server(n: u8, offset: f64) -> FakeServer {
    FakeServer {
        addr: format!("192.0.2.{n}:123").parse().unwrap(),
        offset,
        one_way: 0.002,
        stratum: 2,
        leap: LeapIndicator::NoWarning,
    }
}

#[test]
fn three_agreeing_servers_synchronise_at_stratum_plus_one() {
    let servers = [server(1, 0.010), server(2, 0.0101), server(3, 0.0099)];
    let mut core = core_with(&servers);
    let commands = run(&mut core, &servers, 60.0);
    assert!(!commands.is_empty(), "the discipline was consulted");
    let sys = core.system();
    assert_eq!(sys.stratum, 3);
    assert!(sys.system_peer.is_some());
    assert!(
        (sys.offset - 0.010).abs() < 0.001,
        "combined offset {}",
        sys.offset
    );
    let peer = core
        .associations()
        .iter()
        .find(|a| Some(a.id) == sys.system_peer)
        .unwrap();
    assert_eq!(sys.reference_id, ReferenceId::from_ip(peer.addr.ip()));
    assert!(
        sys.root_delay >= 0.0005 + 0.004 - 1e-6,
        "root delay {}",
        sys.root_delay
    );
    assert_eq!(core.status_of(peer.id), SelectStatus::SysPeer);
}

#[test]
fn a_falseticker_among_four_is_never_chosen() {
    let servers = [
        server(1, 0.0),
        server(2, 0.0002),
        server(3, -0.0001),
        server(4, 1.0),
    ];
    let mut core = core_with(&servers);
    run(&mut core, &servers, 120.0);
    let liar = core
        .associations()
        .iter()
        .find(|a| a.addr == servers[3].addr)
        .unwrap()
        .id;
    assert_ne!(core.system().system_peer, Some(liar));
    assert_eq!(core.status_of(liar), SelectStatus::Falseticker);
    assert!(
        core.system().offset.abs() < 0.001,
        "offset {}",
        core.system().offset
    );
}

#[test]
fn no_answers_means_unsynchronised() {
    let mut core = SyncCore::new(SyncConfig::default(), -20);
    core.add(
        "a",
        "192.0.2.9:123".parse().unwrap(),
        AssocKind::Server,
        SourceOptions::default(),
        0.0,
    );
    let id = core.due(0.0)[0];
    core.transmit(id, 0.0, ts(0.0), 5).unwrap();
    assert_eq!(core.system().leap, LeapIndicator::Unsynchronized);
    assert_eq!(core.system().stratum, 16);
    assert_eq!(core.associations()[0].source.reach(), 0);
}

#[test]
fn packets_from_unknown_addresses_are_ignored() {
    let servers = [server(1, 0.0)];
    let mut core = core_with(&servers);
    let (_, request) = core.transmit(core.due(0.0)[0], 0.0, ts(0.0), 5).unwrap();
    let (reply, arrival) = servers[0].answer(&request, 0.0);
    let r = core.receive(
        "198.51.100.1:123".parse().unwrap(),
        &reply,
        ts(arrival),
        arrival,
        0.0,
    );
    assert_eq!(r.association, None);
    assert_eq!(core.associations()[0].source.reach(), 0);
}

#[test]
fn samples_the_filter_passes_over_still_reach_the_discipline() {
    let mut servers = [server(1, 0.001)];
    let mut core = core_with(&servers);
    run(&mut core, &servers, 20.0);
    // A slower exchange: the filter keeps its older, faster sample (stale), but the
    // discipline weighs every measurement by its own delay and must see this one too.
    servers[0].one_way = 0.02;
    let now = core.next_wakeup().unwrap();
    let id = core.due(now)[0];
    let (addr, request) = core.transmit(id, now, ts(now), 99).unwrap();
    let (reply, arrival) = servers[0].answer(&request, now);
    let before = core.system().discipline.updates;
    let receipt = core.receive(addr, &reply, ts(arrival), arrival, T0 as f64 + arrival);
    assert_eq!(receipt.event, SourceEvent::Stale);
    assert!(receipt.command.is_some());
    assert_eq!(core.system().discipline.updates, before + 1);
}

#[test]
fn an_announced_leap_second_is_armed_then_taken_once() {
    let mut servers = [server(1, 0.0), server(2, 0.0001), server(3, -0.0001)];
    for s in &mut servers {
        s.leap = LeapIndicator::InsertSecond;
    }
    let mut core = core_with(&servers);
    run(&mut core, &servers, 60.0);
    let pending = core.pending_leap().expect("a majority announced it");
    let midnight = ((T0 as f64 / 86_400.0).floor() + 1.0) * 86_400.0;
    assert_eq!(pending.at, midnight);
    assert_eq!(
        core.system().leap,
        LeapIndicator::InsertSecond,
        "passed on to our clients"
    );
    assert_eq!(core.leap_due(midnight - 0.5), None);
    let leap = core.leap_due(midnight + 0.001).expect("due at midnight");
    assert_eq!(leap.kind, LeapKind::Insert);
    assert_eq!(leap.at, midnight);
    assert_eq!(leap.command.step, Some(-1.0));
    assert_eq!(leap.command.slew, None, "a slew in progress goes on");
    assert_eq!(
        leap.command.frequency_ppm,
        core.system().discipline.frequency_ppm
    );
    assert_eq!(core.leap_due(midnight + 1.0), None, "taken once");
    assert_eq!(core.pending_leap(), None);
    assert_eq!(core.system().leap, LeapIndicator::NoWarning);
    // Offsets measured before the leap are still offsets after it.
    assert!(core
        .associations()
        .iter()
        .all(|a| a.source.filter_output().is_some()));
}

#[test]
fn one_announcing_server_of_three_does_not_arm_a_leap() {
    let mut servers = [server(1, 0.0), server(2, 0.0001), server(3, -0.0001)];
    servers[0].leap = LeapIndicator::InsertSecond;
    let mut core = core_with(&servers);
    run(&mut core, &servers, 60.0);
    assert_eq!(core.pending_leap(), None);
    assert_eq!(core.leap_due(T0 as f64 + 86_400.0 * 2.0), None);
}

#[test]
fn a_leap_table_arms_the_leap_even_when_servers_do_not_announce_it() {
    let servers = [server(1, 0.0), server(2, 0.0), server(3, 0.0)];
    let mut core = core_with(&servers);
    // The fake world's UTC is T0 (2027-01-15 08:00) plus seconds.
    core.set_leap_table_vote(T0 as f64, Some(LeapKind::Insert));
    run(&mut core, &servers, 60.0);
    let pending = core.pending_leap().expect("armed from the table");
    assert_eq!(pending.kind, LeapKind::Insert);
    assert_eq!(pending.at, 1_800_057_600.0, "end of 15 Jan 2027");
    assert_eq!(core.system().leap, LeapIndicator::InsertSecond);
    assert!(core.leap_due(pending.at - 1.0).is_none());
    let leap = core.leap_due(pending.at + 0.1).expect("due at midnight");
    assert_eq!(leap.command.step, Some(-1.0));
    assert!(core.leap_due(pending.at + 1.0).is_none(), "only once");
}

#[test]
fn keyed_associations_sign_requests_and_require_signed_replies() {
    let keys = || {
        let parsed =
            meridian_auth::parse_keys("7 AES128CMAC 000102030405060708090a0b0c0d0e0f\n", "k");
        KeyStore::new(parsed.into_result().unwrap(), [7])
    };
    let s = server(1, 0.01);
    let mut core = SyncCore::new(SyncConfig::default(), -20);
    core.set_keys(keys());
    let opts = SourceOptions {
        key: Some(7),
        ..Default::default()
    };
    let id = core.add("a", s.addr, AssocKind::Server, opts, 0.0);
    let mut out = [0u8; MAX_REQUEST_LEN];
    let (_, len) = core
        .transmit_datagram(id, 0.0, ts(0.0), 77, &[9; 32], &mut out)
        .unwrap();
    assert_eq!(len, 48 + 20, "key id + 16-octet CMAC");
    assert!(
        keys().verify(&out[..len]).is_valid(),
        "the server can verify our request"
    );
    let request: [u8; 48] = out[..48].try_into().unwrap();
    let (reply, arrival) = s.answer(&request, 0.0);
    let mut bytes = [0u8; 128];
    reply.encode((&mut bytes[..48]).try_into().unwrap());
    // Unsigned: refused, the association learns nothing.
    let r = core.receive_datagram(s.addr, &bytes[..48], ts(arrival), arrival, T0 as f64);
    assert_eq!(r, Err(AuthRejection::Unauthenticated));
    assert_eq!(core.associations()[0].source.reach(), 0);
    // Tampered MAC: refused.
    let signed = keys().sign_in_place(&mut bytes, 48, 7).unwrap();
    let mut tampered = bytes;
    tampered[signed - 1] ^= 0x80;
    let r = core.receive_datagram(s.addr, &tampered[..signed], ts(arrival), arrival, T0 as f64);
    assert_eq!(r, Err(AuthRejection::BadMac));
    // Properly signed: accepted.
    let r = core
        .receive_datagram(s.addr, &bytes[..signed], ts(arrival), arrival, T0 as f64)
        .unwrap();
    assert_eq!(r.association, Some(id));
    assert_eq!(core.associations()[0].source.reach(), 1);
}

#[test]
fn at_start_a_fast_liar_cannot_win_before_the_majority_is_usable() {
    // The liar is polled first, so its filter fills first; the honest three follow.
    let servers = vec![
        server(4, 1.0),
        server(1, 0.0),
        server(2, 0.0001),
        server(3, -0.0001),
    ];
    let mut core = core_with(&servers);
    let commands = run(&mut core, &servers, 120.0);
    assert!(
        commands
            .iter()
            .all(|c| c.step.is_none_or(|s| s.abs() < 0.5)),
        "the clock was stepped towards the liar: {commands:?}"
    );
    let liar = core
        .associations()
        .iter()
        .find(|a| a.addr == servers[0].addr)
        .unwrap()
        .id;
    assert_ne!(core.system().system_peer, Some(liar));
    assert!(
        core.system().system_peer.is_some(),
        "the honest majority is selected"
    );
}

#[test]
fn a_true_source_is_kept_against_a_disagreeing_one() {
    // Two sources a second apart: neither is a majority, so nobody is selected...
    let servers = [server(1, 0.0), server(2, 1.0)];
    let mut core = core_with(&servers);
    run(&mut core, &servers, 60.0);
    assert_eq!(core.system().system_peer, None);
    // ...unless the operator vouches for one with `true`: it survives the intersection
    // and the start-up majority rule, and becomes the system peer.
    let mut core = SyncCore::new(SyncConfig::default(), -20);
    for (i, s) in servers.iter().enumerate() {
        let opts = SourceOptions {
            iburst: true,
            truechimer: i == 0,
            ..Default::default()
        };
        core.add(s.addr.to_string(), s.addr, AssocKind::Server, opts, 0.0);
    }
    let commands = run(&mut core, &servers, 60.0);
    let trusted = core.associations()[0].id;
    assert_eq!(core.system().system_peer, Some(trusted));
    assert_eq!(core.status_of(trusted), SelectStatus::SysPeer);
    assert!(
        commands
            .iter()
            .all(|c| c.step.is_none_or(|s| s.abs() < 0.5)),
        "never stepped towards the untrusted one: {commands:?}"
    );
}

#[test]
fn two_symmetric_peers_exchange_samples_and_the_one_without_a_server_follows() {
    // A has a server and B as its peer; B has only A. Both clocks tell the same time;
    // the server is 10 ms ahead. Every packet between A and B is mode 1: neither
    // answers the other, each sends at its own poll.
    let a_addr: SocketAddr = "192.0.2.10:123".parse().unwrap();
    let b_addr: SocketAddr = "192.0.2.20:123".parse().unwrap();
    let s = server(1, 0.010);
    let peer = SourceOptions {
        symmetric: true,
        iburst: true,
        ..Default::default()
    };
    let mut a = SyncCore::new(SyncConfig::default(), -20);
    let iburst = SourceOptions {
        iburst: true,
        ..Default::default()
    };
    a.add("s", s.addr, AssocKind::Server, iburst, 0.0);
    let a_to_b = a.add("b", b_addr, AssocKind::Peer, peer, 0.3);
    let mut b = SyncCore::new(SyncConfig::default(), -20);
    let b_to_a = b.add("a", a_addr, AssocKind::Peer, peer, 0.7);
    // Each learns the address it sends from, so a peer following it is not a source.
    a.set_local_address(a_to_b, a_addr.ip());
    b.set_local_address(b_to_a, b_addr.ip());
    // (arrival, to B?, bytes) of the packets in flight between the peers.
    let mut wire: Vec<(f64, bool, [u8; 48])> = Vec::new();
    let mut random = 100u64;
    let mut now = 0.0;
    let mut b_modes = Vec::new();
    while now < 400.0 {
        let next_packet = wire.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
        now = [
            a.next_wakeup().unwrap(),
            b.next_wakeup().unwrap(),
            next_packet,
        ]
        .into_iter()
        .fold(f64::INFINITY, f64::min);
        let (arrived, flying): (Vec<_>, Vec<_>) = wire.drain(..).partition(|p| p.0 <= now);
        wire = flying;
        for (at, to_b, bytes) in arrived {
            let h = NtpHeader::decode(&bytes).unwrap();
            let (core, from) = if to_b {
                (&mut b, a_addr)
            } else {
                (&mut a, b_addr)
            };
            core.receive(from, &h, ts(at), at, T0 as f64 + at);
        }
        for id in a.due(now) {
            random += 1;
            let (to, bytes) = a.transmit(id, now, ts(now), random).unwrap();
            if to == s.addr {
                let (reply, at) = s.answer(&bytes, now);
                a.receive(to, &reply, ts(at), at, T0 as f64 + at);
            } else {
                wire.push((now + 0.001, true, bytes));
            }
        }
        for id in b.due(now) {
            random += 1;
            let (to, bytes) = b.transmit(id, now, ts(now), random).unwrap();
            assert_eq!(to, a_addr);
            b_modes.push(NtpHeader::decode(&bytes).unwrap().mode);
            wire.push((now + 0.001, false, bytes));
        }
    }
    assert!(b_modes.iter().all(|m| *m == Mode::SymmetricActive));
    assert_eq!(a.system().stratum, 3, "A follows its server");
    assert_eq!(b.system().system_peer, Some(b_to_a), "B follows its peer");
    assert_eq!(b.system().stratum, 4);
    assert_eq!(
        b.system().reference_id,
        ReferenceId::from_ip(a_addr.ip()),
        "B's refid names A"
    );
    let b_sample = b.associations()[0].source.last_sample().unwrap();
    assert!(b_sample.offset.abs() < 1e-4, "{b_sample:?}");
    assert!(
        b_sample.delay < 0.003,
        "the hold time is not delay: {b_sample:?}"
    );
    // A hears B too, once B is synchronised and its packets carry a stratum.
    let a_peer = a.associations().iter().find(|x| x.id == a_to_b).unwrap();
    assert_ne!(a_peer.source.reach(), 0, "A takes samples from B");
    assert_eq!(a_peer.source.info().unwrap().stratum, 4);
    assert!(
        a_peer.is_loop(),
        "B follows A: a timing loop, not a source for A"
    );
    assert_eq!(a.status_of(a_to_b), SelectStatus::Reject);
    assert_ne!(a.system().system_peer, Some(a_to_b));
}

#[test]
fn a_peer_polling_as_a_client_is_answered_from_our_system_variables() {
    let s = server(1, 0.0);
    let peer_addr: SocketAddr = "192.0.2.30:123".parse().unwrap();
    let mut core = core_with(std::slice::from_ref(&s));
    let peer = SourceOptions {
        symmetric: true,
        ..Default::default()
    };
    core.add("p", peer_addr, AssocKind::Peer, peer, 1000.0);
    run(&mut core, std::slice::from_ref(&s), 60.0);
    assert_eq!(core.system().stratum, 3);
    let request = meridian_proto::new_client_request(4, 6, 0x1234_5678);
    let mut bytes = [0u8; 48];
    request.header.encode(&mut bytes);
    let mut out = [0u8; MAX_REQUEST_LEN];
    let len = core
        .answer_peer_client(peer_addr, &bytes, ts(61.0), ts(61.001), &mut out)
        .expect("answered");
    assert_eq!(len, 48);
    let reply = NtpHeader::decode(&out[..48]).unwrap();
    assert_eq!(reply.mode, Mode::Server);
    assert_eq!(reply.stratum, 3);
    assert_eq!(reply.reference_id, ReferenceId::from_ip(s.addr.ip()));
    assert_eq!(reply.origin_ts, request.sent_transmit);
    assert_eq!(
        (reply.receive_ts, reply.transmit_ts),
        (ts(61.0), ts(61.001))
    );
    // Only for a peer association, and only client requests.
    let other: SocketAddr = "192.0.2.31:123".parse().unwrap();
    assert!(core
        .answer_peer_client(other, &bytes, ts(61.0), ts(61.0), &mut out)
        .is_none());
    assert!(core
        .answer_peer_client(s.addr, &bytes, ts(61.0), ts(61.0), &mut out)
        .is_none());
    bytes[0] = (bytes[0] & !7) | 1;
    assert!(core
        .answer_peer_client(peer_addr, &bytes, ts(61.0), ts(61.0), &mut out)
        .is_none());
}

#[test]
fn symmetric_packets_carry_our_system_variables() {
    let s = server(1, 0.0);
    let peer_addr: SocketAddr = "192.0.2.30:123".parse().unwrap();
    let mut core = core_with(std::slice::from_ref(&s));
    let peer = SourceOptions {
        symmetric: true,
        ..Default::default()
    };
    let id = core.add("p", peer_addr, AssocKind::Peer, peer, 0.05);
    // Before we are synchronised: stratum 0 (unspecified) and LI 3, as ntpd sends.
    let (_, bytes) = core.transmit(id, 0.05, ts(0.05), 9).unwrap();
    let h = NtpHeader::decode(&bytes).unwrap();
    assert_eq!(
        (h.mode, h.stratum, h.leap),
        (Mode::SymmetricActive, 0, LeapIndicator::Unsynchronized)
    );
    run(&mut core, std::slice::from_ref(&s), 60.0);
    let now = core.associations()[1].source.next_poll();
    let (_, bytes) = core.transmit(id, now, ts(now), 10).unwrap();
    let h = NtpHeader::decode(&bytes).unwrap();
    assert_eq!(h.mode, Mode::SymmetricActive);
    assert_eq!(h.stratum, 3);
    assert_ne!(h.leap, LeapIndicator::Unsynchronized);
    assert_eq!(h.reference_id, ReferenceId::from_ip(s.addr.ip()));
    assert_eq!(h.precision, -20);
}

/// Like [`run`], but the servers at the addresses in `silent` never answer (their
/// requests are lost on the way), and `watch` sees the core after every request sent.
fn run_watching(
    core: &mut SyncCore,
    servers: &[FakeServer],
    seconds: f64,
    silent: &[SocketAddr],
    mut watch: impl FnMut(&SyncCore, f64),
) -> Vec<ClockCommand> {
    let mut commands = vec![];
    let mut random = 1_000_000u64;
    while let Some(now) = core.next_wakeup() {
        if now > seconds {
            break;
        }
        for id in core.due(now) {
            random += 1;
            let (addr, request) = core.transmit(id, now, ts(now), random).unwrap();
            watch(core, now);
            if silent.contains(&addr) {
                continue;
            }
            let server = servers.iter().find(|s| s.addr == addr).unwrap();
            let (reply, arrival) = server.answer(&request, now);
            let receipt = core.receive(addr, &reply, ts(arrival), arrival, T0 as f64 + arrival);
            commands.extend(receipt.command);
        }
    }
    commands
}

#[test]
fn a_silent_system_peer_is_dropped_once_unreachable_and_taken_back_when_it_answers() {
    let servers = [server(1, 0.001)];
    let mut core = core_with(&servers);
    run(&mut core, &servers, 600.0);
    let id = core.associations()[0].id;
    let sys = *core.system();
    assert_eq!(sys.system_peer, Some(id));
    assert_eq!(core.status_of(id), SelectStatus::SysPeer);
    assert_eq!(sys.stratum, 3);
    assert_ne!(sys.leap, LeapIndicator::Unsynchronized);

    // The network goes: the source stays the system peer while any of its last eight
    // polls was answered, and loses it at the poll that empties its reach register.
    let mut lost_at = None;
    let commands = run_watching(&mut core, &servers, 1800.0, &[servers[0].addr], |c, now| {
        let reach = c.associations()[0].source.reach();
        if reach != 0 {
            assert_eq!(
                c.system().system_peer,
                Some(id),
                "at {now}, reach {reach:o}"
            );
            return;
        }
        lost_at.get_or_insert(now);
        assert_eq!(c.system().system_peer, None, "at {now}");
        assert_eq!(c.status_of(id), SelectStatus::Reject, "at {now}");
        assert_eq!(c.system().leap, LeapIndicator::Unsynchronized);
        assert_eq!(c.system().stratum, 16);
        assert_eq!(c.system().reference_id, ReferenceId::INIT);
    });
    let lost_at = lost_at.expect("the source never became unreachable");
    assert!(lost_at > 600.0 + 7.0 * 64.0, "lost at {lost_at}");
    // Holdover: nothing to discipline with, so the clock is left alone and the
    // discipline keeps the frequency it had.
    assert!(commands.is_empty(), "{commands:?}");
    assert_eq!(core.system().discipline.updates, sys.discipline.updates);
    assert_eq!(
        core.system().discipline.frequency_ppm,
        sys.discipline.frequency_ppm
    );

    // The network is back: once the clock filter holds enough samples again (four,
    // as in ntpd, for its dispersion to come under `maxdist`), the source is the
    // system peer again.
    run(&mut core, &servers, 2200.0);
    let back = core.system();
    assert_eq!(back.system_peer, Some(id));
    assert_eq!(core.status_of(id), SelectStatus::SysPeer);
    assert_eq!(back.stratum, 3);
    assert_ne!(back.leap, LeapIndicator::Unsynchronized);
    assert_eq!(
        back.reference_id,
        ReferenceId::from_ip(servers[0].addr.ip())
    );
}

#[test]
fn when_the_system_peer_goes_silent_another_survivor_takes_over() {
    let servers = [server(1, 0.001), server(2, 0.0011)];
    let mut core = core_with(&servers);
    run(&mut core, &servers, 600.0);
    let peer = core.system().system_peer.expect("synchronised");
    let (gone, other) = match core.associations() {
        [a, b] if a.id == peer => (a.addr, b.id),
        [a, b] => (b.addr, a.id),
        _ => unreachable!(),
    };
    run_watching(&mut core, &servers, 1500.0, &[gone], |_, _| {});
    assert_eq!(core.status_of(peer), SelectStatus::Reject);
    assert_eq!(core.status_of(other), SelectStatus::SysPeer);
    let sys = core.system();
    assert_eq!(sys.system_peer, Some(other));
    assert_eq!(sys.stratum, 3);
    assert_ne!(sys.leap, LeapIndicator::Unsynchronized);
}

#[test]
fn a_peer_without_fresh_samples_ages_out_by_distance_while_still_reachable() {
    let servers = [server(1, 0.001)];
    // The source's root distance at `now`, as selection judges it.
    let distance = |core: &SyncCore, now: f64| {
        let a = &core.associations()[0];
        a.source
            .candidate(0, now)
            .unwrap()
            .root_distance(SelectConfig::default().mindist)
    };
    // What it is after ten minutes of answers, at the last sample (no aging yet).
    let mut probe = core_with(&servers);
    run(&mut probe, &servers, 600.0);
    let sampled = probe.associations()[0].source.filter_output().unwrap().time;
    let fresh = distance(&probe, sampled);

    // The same, with `tos maxdist` 1.5 ms above that: at PHI (15 ppm) the distance gets
    // there 100 s after the last sample, well before eight polls go unanswered.
    let maxdist = fresh + 1.5e-3;
    let config = SyncConfig {
        select: SelectConfig {
            maxdist,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut core = SyncCore::new(config, -20);
    let opts = SourceOptions {
        iburst: true,
        ..Default::default()
    };
    let id = core.add("a", servers[0].addr, AssocKind::Server, opts, 0.0);
    run(&mut core, &servers, 600.0);
    assert_eq!(core.system().system_peer, Some(id));

    let mut lost = None;
    run_watching(&mut core, &servers, 1000.0, &[servers[0].addr], |c, now| {
        if lost.is_none() && c.system().system_peer.is_none() {
            lost = Some((now, c.associations()[0].source.reach(), distance(c, now)));
        }
        if c.system().system_peer.is_some() {
            assert!(distance(c, now) <= maxdist, "kept beyond maxdist at {now}");
        }
    });
    let (at, reach, at_loss) = lost.expect("a stale source stayed the system peer");
    assert_ne!(reach, 0, "lost only when unreachable, at {at}");
    assert!(at_loss > maxdist, "{at_loss} <= {maxdist}");
    assert_eq!(core.status_of(id), SelectStatus::Reject);

    // Fresh samples make it fit again (this tight `maxdist` wants a full filter).
    run(&mut core, &servers, 1700.0);
    assert_eq!(core.system().system_peer, Some(id));
    assert_eq!(core.status_of(id), SelectStatus::SysPeer);
}

#[test]
fn associations_sharing_an_address_each_get_their_own_replies() {
    // As a plain and an NTS source of one server do once the NTS-KE server has named its
    // NTP address: replies are told apart by the origin timestamp, not the address.
    let servers = [server(1, 0.0), server(1, 0.0)];
    let mut core = core_with(&servers);
    let ids: Vec<u16> = core.associations().iter().map(|a| a.id).collect();
    let (addr, first) = core.transmit(ids[0], 0.0, ts(0.0), 11).unwrap();
    let (_, second) = core.transmit(ids[1], 0.1, ts(0.1), 12).unwrap();
    // Answered in the other order, so neither "first match" nor "latest" would do.
    for (id, request, sent) in [(ids[1], &second, 0.1), (ids[0], &first, 0.0)] {
        let (reply, arrival) = servers[0].answer(request, sent);
        let r = core.receive(addr, &reply, ts(arrival), arrival, T0 as f64 + arrival);
        assert_eq!(r.association, Some(id));
        assert!(matches!(r.event, SourceEvent::Updated(_)), "{:?}", r.event);
    }
    for a in core.associations() {
        assert_eq!(a.source.reach(), 1, "association {}", a.id);
    }
    // A reply echoing neither request still goes to the first, which refuses it.
    let (mut stray, arrival) = servers[0].answer(&first, 0.0);
    stray.origin_ts = ts(42.0);
    let r = core.receive(addr, &stray, ts(arrival), arrival, T0 as f64 + arrival);
    assert_eq!(r.association, Some(ids[0]));
    assert!(matches!(r.event, SourceEvent::Rejected(_)), "{:?}", r.event);
}
