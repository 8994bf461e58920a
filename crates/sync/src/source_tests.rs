use super::*;
use meridian_proto::{LeapIndicator, Mode, NtpShort};

const T0: i64 = 1_800_000_000;

fn ts(secs: f64) -> NtpTimestamp {
    NtpTimestamp::from_unix(T0, 0).add_seconds(secs)
}

/// A server reply to `request` bytes, with the server's clock `offset` ahead of ours and
/// a symmetric one-way delay.
fn reply_to(
    request: &[u8; 48],
    sent_at: f64,
    offset: f64,
    one_way: f64,
) -> (NtpHeader, NtpTimestamp) {
    let req = NtpHeader::decode(request).unwrap();
    let header = NtpHeader {
        leap: LeapIndicator::NoWarning,
        version: 4,
        mode: Mode::Server,
        stratum: 2,
        poll: req.poll,
        precision: -20,
        root_delay: NtpShort::from_seconds_f64(0.001),
        root_dispersion: NtpShort::from_seconds_f64(0.002),
        reference_id: ReferenceId::from_ascii(b"GPS"),
        reference_ts: ts(sent_at - 10.0),
        origin_ts: req.transmit_ts,
        receive_ts: ts(sent_at + one_way + offset),
        transmit_ts: ts(sent_at + one_way + offset + 0.0001),
    };
    (header, ts(sent_at + 2.0 * one_way + 0.0001))
}

fn kod(request: &[u8; 48], code: &[u8; 4], poll: i8) -> NtpHeader {
    let req = NtpHeader::decode(request).unwrap();
    NtpHeader {
        leap: LeapIndicator::Unsynchronized,
        version: 4,
        mode: Mode::Server,
        stratum: 0,
        poll,
        precision: 0,
        root_delay: NtpShort::ZERO,
        root_dispersion: NtpShort::ZERO,
        reference_id: ReferenceId(*code),
        reference_ts: NtpTimestamp::ZERO,
        origin_ts: req.transmit_ts,
        receive_ts: req.transmit_ts,
        transmit_ts: req.transmit_ts,
    }
}

#[test]
fn iburst_sends_a_fast_train_then_settles_to_minpoll() {
    let opts = SourceOptions {
        iburst: true,
        ..Default::default()
    };
    let mut s = Source::new(opts, -20, 0.0);
    let mut now = s.next_poll();
    let mut times = vec![];
    for i in 0..10 {
        times.push(now);
        let req = s.transmit(now, ts(now), 1000 + i);
        let (reply, t4) = reply_to(&req, now, 0.25, 0.01);
        s.receive(&reply, t4, now + 0.02);
        now = s.next_poll();
    }
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps[..7].iter().all(|g| (*g - BURST_INTERVAL).abs() < 1e-9),
        "{gaps:?}"
    );
    assert_eq!(gaps[7], 64.0);
    assert_eq!(
        s.reach(),
        0b111,
        "reach moves once per poll, not per burst packet"
    );
    let out = s.filter_output().expect("filter has output");
    assert!((out.offset - 0.25).abs() < 1e-3, "{out:?}");
}

#[test]
fn reach_register_records_answered_and_missed_polls() {
    let mut s = Source::new(SourceOptions::default(), -20, 0.0);
    let pattern = [true, true, false, true, false, false, true, true, true];
    for (i, answered) in pattern.iter().enumerate() {
        let now = s.next_poll();
        let req = s.transmit(now, ts(now), 7 + i as u64);
        if *answered {
            let (reply, t4) = reply_to(&req, now, 0.0, 0.005);
            s.receive(&reply, t4, now + 0.01);
        }
    }
    // Last eight polls, oldest in the high bit: 1,0,1,0,0,1,1,1
    assert_eq!(s.reach(), 0b1010_0111);
}

#[test]
fn replies_not_answering_our_request_are_rejected() {
    let mut s = Source::new(SourceOptions::default(), -20, 0.0);
    let req = s.transmit(0.0, ts(0.0), 42);
    let (mut reply, t4) = reply_to(&req, 0.0, 0.0, 0.005);
    reply.origin_ts = ts(1.0);
    assert_eq!(
        s.receive(&reply, t4, 0.01),
        SourceEvent::Rejected(ReplyError::BogusOrigin)
    );
    assert_eq!(s.reach(), 0);
    let (good, t4) = reply_to(&req, 0.0, 0.0, 0.005);
    assert!(matches!(
        s.receive(&good, t4, 0.01),
        SourceEvent::Updated(_)
    ));
    assert_eq!(
        s.receive(&good, t4, 0.02),
        SourceEvent::Rejected(ReplyError::Duplicate)
    );
}

#[test]
fn rate_kod_raises_poll_and_never_hammers() {
    let opts = SourceOptions {
        iburst: true,
        minpoll: 4,
        ..Default::default()
    };
    let mut s = Source::new(opts, -20, 0.0);
    let req = s.transmit(0.0, ts(0.0), 5);
    assert_eq!(
        s.receive(&kod(&req, b"RATE", 8), ts(0.01), 0.01),
        SourceEvent::RateLimited
    );
    assert!(
        s.poll_log2() >= 8,
        "poll {} follows the server's request",
        s.poll_log2()
    );
    assert!(s.next_poll() >= 256.0, "next poll at {}", s.next_poll());
    // The discipline can't pull it back under the server's rate.
    s.set_system_poll(4, false, 1.0);
    assert!(s.poll_log2() >= 8);
}

#[test]
fn spoofed_kod_with_wrong_origin_is_ignored() {
    let mut s = Source::new(SourceOptions::default(), -20, 0.0);
    let req = s.transmit(0.0, ts(0.0), 5);
    let mut k = kod(&req, b"DENY", 6);
    k.origin_ts = ts(3.0);
    assert_eq!(
        s.receive(&k, ts(0.01), 0.01),
        SourceEvent::Rejected(ReplyError::BogusOrigin)
    );
}

#[test]
fn deny_and_rstr_demobilise() {
    for code in [b"DENY", b"RSTR"] {
        let mut s = Source::new(SourceOptions::default(), -20, 0.0);
        let req = s.transmit(0.0, ts(0.0), 5);
        assert!(matches!(
            s.receive(&kod(&req, code, 6), ts(0.01), 0.01),
            SourceEvent::Demobilize(_)
        ));
    }
}

#[test]
fn unreachable_source_backs_off_to_maxpoll() {
    let opts = SourceOptions {
        minpoll: 6,
        maxpoll: 10,
        ..Default::default()
    };
    let mut s = Source::new(opts, -20, 0.0);
    for i in 0..40 {
        let now = s.next_poll();
        s.transmit(now, ts(now), i);
    }
    assert_eq!(s.poll_log2(), 10);
    assert!(s.unreach() >= 40);
}

#[test]
fn candidate_carries_root_distance_parts() {
    let mut s = Source::new(
        SourceOptions {
            prefer: true,
            ..Default::default()
        },
        -20,
        0.0,
    );
    assert!(s.candidate(0, 0.0).is_none());
    let req = s.transmit(0.0, ts(0.0), 9);
    let (reply, t4) = reply_to(&req, 0.0, 0.1, 0.005);
    s.receive(&reply, t4, 0.01);
    let c = s.candidate(3, 1.0).expect("candidate after a sample");
    assert_eq!((c.id, c.stratum, c.prefer, c.reachable), (3, 2, true, true));
    assert!((c.offset - 0.1).abs() < 1e-3);
    assert!(c.delay >= 0.001, "root delay included: {}", c.delay);
    assert!(
        c.dispersion >= 0.002,
        "root dispersion included: {}",
        c.dispersion
    );
}

#[test]
fn iburst_source_back_from_a_long_outage_is_found_with_a_train() {
    let opts = SourceOptions {
        iburst: true,
        minpoll: 6,
        maxpoll: 10,
        ..Default::default()
    };
    let mut s = Source::new(opts, -20, 0.0);
    // A long outage: polls back off to maxpoll, but each still starts a train.
    let mut sent = vec![];
    for i in 0..200 {
        let now = s.next_poll();
        s.transmit(now, ts(now), 100 + i);
        sent.push(now);
    }
    assert_eq!(s.poll_log2(), 10);
    let gaps: Vec<f64> = sent.windows(2).map(|w| w[1] - w[0]).collect();
    let tail = &gaps[gaps.len() - 16..];
    assert_eq!(
        tail.iter().filter(|g| **g == BURST_INTERVAL).count(),
        14,
        "{tail:?}"
    );
    assert_eq!(tail.iter().filter(|g| **g == 1024.0).count(), 2, "{tail:?}");
    // The server is back: the train brings enough samples within seconds for the
    // filter to output a usable (low-dispersion) sample.
    let start = s.next_poll();
    let mut now = start;
    while now < start + 16.0 {
        let req = s.transmit(now, ts(now), 7);
        let (reply, t4) = reply_to(&req, now, 0.01, 0.005);
        s.receive(&reply, t4, now + 0.01);
        now = s.next_poll();
    }
    let out = s.filter_output().expect("filter has output");
    assert!(out.dispersion < 1.0, "{out:?}");
    assert_ne!(s.reach(), 0);
}

#[test]
fn a_step_moves_the_request_in_flight_and_clears_the_filter() {
    let mut s = Source::new(SourceOptions::default(), -20, 0.0);
    let req = s.transmit(0.0, ts(0.0), 5);
    let (reply, t4) = reply_to(&req, 0.0, 0.2, 0.005);
    s.receive(&reply, t4, 0.01);
    assert!(s.filter_output().is_some());
    // The server is 0.2 s ahead; the discipline steps our clock by +0.2 s while the
    // next request is in flight, so its T4 is read from the stepped clock.
    let now = s.next_poll();
    let req = s.transmit(now, ts(now), 6);
    s.clock_stepped(0.2);
    assert!(s.filter_output().is_none(), "pre-step samples are dropped");
    let (reply, t4) = reply_to(&req, now, 0.2, 0.005);
    let t4 = t4.add_seconds(0.2);
    let SourceEvent::Updated(out) = s.receive(&reply, t4, now + 0.01) else {
        panic!("no sample")
    };
    assert!(
        out.offset.abs() < 1e-6,
        "offset {} should be 0 after the step",
        out.offset
    );
    assert!((out.delay - 0.010).abs() < 1e-6, "delay {}", out.delay);
}

#[test]
fn a_leap_second_keeps_the_filter_and_moves_the_request_in_flight() {
    let mut s = Source::new(SourceOptions::default(), -20, 0.0);
    let req = s.transmit(0.0, ts(0.0), 5);
    let (reply, t4) = reply_to(&req, 0.0, 0.001, 0.005);
    s.receive(&reply, t4, 0.01);
    let now = s.next_poll();
    let req = s.transmit(now, ts(now), 6);
    // Both clocks insert the second while the request is in flight.
    s.leap_second(-1.0);
    assert!(
        s.filter_output().is_some(),
        "offsets stay valid across a leap"
    );
    let (reply, t4) = reply_to(&req, now - 1.0, 0.001, 0.005);
    let event = s.receive(&reply, t4, now + 0.01);
    let sample = s.last_sample().expect("accepted");
    assert!((sample.offset - 0.001).abs() < 1e-6, "{event:?} {sample:?}");
}

#[test]
fn a_peer_sends_symmetric_active_and_accepts_a_passive_reply() {
    let opts = SourceOptions {
        symmetric: true,
        ..Default::default()
    };
    let mut s = Source::new(opts, -20, 0.0);
    let req = s.transmit(0.0, ts(0.0), 11);
    assert_eq!(NtpHeader::decode(&req).unwrap().mode, Mode::SymmetricActive);
    let (mut reply, t4) = reply_to(&req, 0.0, 0.05, 0.005);
    reply.mode = Mode::SymmetricPassive;
    assert!(matches!(
        s.receive(&reply, t4, 0.01),
        SourceEvent::Updated(_) | SourceEvent::Held | SourceEvent::Stale
    ));
    assert_eq!(s.reach(), 1);
}

/// The peer's mode-1 packet at its own poll: its clock `offset` ahead, answering our
/// packet `ours` (sent at `sent_at`) after holding it `hold` seconds.
fn peer_poll(ours: &[u8; 48], sent_at: f64, offset: f64, hold: f64) -> (NtpHeader, NtpTimestamp) {
    let (mut h, _) = reply_to(ours, sent_at, offset, 0.001);
    h.mode = Mode::SymmetricActive;
    h.transmit_ts = ts(sent_at + 0.001 + offset + hold);
    (h, ts(sent_at + 0.002 + hold))
}

#[test]
fn symmetric_packets_echo_the_peer_and_carry_our_clock() {
    let opts = SourceOptions {
        symmetric: true,
        ..Default::default()
    };
    let mut s = Source::new(opts, -20, 0.0);
    let first = s.transmit(0.0, ts(0.0), u64::MAX);
    let h = NtpHeader::decode(&first).unwrap();
    assert_eq!(h.mode, Mode::SymmetricActive);
    assert!(
        h.origin_ts.is_zero() && h.receive_ts.is_zero(),
        "nothing heard yet"
    );
    // The transmit timestamp is our clock to within our precision: the peer uses it.
    let err = h.transmit_ts.diff(ts(0.0)).to_seconds_f64();
    assert!((0.0..2f64.powi(-20)).contains(&err), "{err}");
    // The peer's poll, 10 s later, answers it: a sample, the hold time taken out.
    let (poll, t4) = peer_poll(&first, 0.0, 0.25, 10.0);
    let event = s.receive(&poll, t4, 10.0);
    assert!(matches!(event, SourceEvent::Updated(_)), "{event:?}");
    let sample = s.last_sample().unwrap();
    assert!((sample.offset - 0.25).abs() < 1e-5, "{sample:?}");
    assert!((sample.delay - 0.002).abs() < 1e-5, "{sample:?}");
    assert_eq!(s.reach(), 1);
    // Our next packet answers the peer's: its transmit time as origin, and when it came.
    let next = NtpHeader::decode(&s.transmit(64.0, ts(64.0), 3)).unwrap();
    assert_eq!(next.origin_ts, poll.transmit_ts);
    assert_eq!(next.receive_ts, t4);
    // The same packet again (a replay) teaches nothing.
    assert_eq!(
        s.receive(&poll, t4, 64.5),
        SourceEvent::Rejected(ReplyError::Duplicate)
    );
}

#[test]
fn a_peer_poll_that_does_not_answer_us_still_sets_our_next_origin() {
    let opts = SourceOptions {
        symmetric: true,
        ..Default::default()
    };
    let mut s = Source::new(opts, -20, 0.0);
    let first = s.transmit(0.0, ts(0.0), 5);
    // The peer started at the same time: its first packet has heard nothing (org 0).
    let (mut poll, t4) = peer_poll(&first, 0.0, 0.0, 0.5);
    poll.origin_ts = NtpTimestamp::ZERO;
    poll.receive_ts = NtpTimestamp::ZERO;
    assert_eq!(
        s.receive(&poll, t4, 0.5),
        SourceEvent::Rejected(ReplyError::BogusOrigin)
    );
    assert_eq!(s.reach(), 0);
    // Ours now answers it, so the peer can take a sample from it.
    let second = NtpHeader::decode(&s.transmit(2.0, ts(2.0), 6)).unwrap();
    assert_eq!(second.origin_ts, poll.transmit_ts);
    assert_eq!(second.receive_ts, t4);
    // A forged mode-1 packet whose origin is not our latest transmission gives no sample.
    let (mut forged, t4) = peer_poll(&first, 0.0, 5.0, 3.0);
    forged.transmit_ts = ts(9.0);
    assert_eq!(
        s.receive(&forged, t4, 3.0),
        SourceEvent::Rejected(ReplyError::BogusOrigin)
    );
    assert_eq!(s.reach(), 0);
}

#[test]
fn a_client_association_ignores_symmetric_active_packets() {
    let mut s = Source::new(SourceOptions::default(), -20, 0.0);
    let req = s.transmit(0.0, ts(0.0), 8);
    let (poll, t4) = peer_poll(&req, 0.0, 0.0, 0.1);
    assert_eq!(
        s.receive(&poll, t4, 0.2),
        SourceEvent::Rejected(ReplyError::WrongMode)
    );
}
