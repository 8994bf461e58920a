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
