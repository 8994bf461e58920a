//! Client ↔ server packet tests through the public API, without TLS: keys
//! and cookies are made directly, as NTS-KE would.

use meridian_proto::{
    build_server_reply, new_client_request, Exchange, KissCode, LeapIndicator, NtpHeader, NtpShort,
    NtpTimestamp, ReferenceId, ReplyError, ServerState,
};
use proptest::prelude::*;

use crate::aead::AeadKey;
use crate::cookie::{KeyRing, SessionKeys, SharedKeyRing, COOKIE_LEN};
use crate::error::NtsError;
use crate::fields::{
    located_fields, open_authenticator, parse_authenticator, seal_authenticator, write_field,
    EF_COOKIE, EF_COOKIE_PLACEHOLDER, EF_UNIQUE_ID, UID_LEN,
};
use crate::{NtsClientState, NtsOutcome, NtsServer};

fn state() -> ServerState {
    ServerState {
        leap: LeapIndicator::NoWarning,
        stratum: 2,
        precision: -20,
        root_delay: NtpShort::from_seconds_f64(0.01),
        root_dispersion: NtpShort::from_seconds_f64(0.02),
        reference_id: ReferenceId([192, 0, 2, 1]),
        reference_ts: NtpTimestamp::from_unix(1_700_000_000, 0),
        min_poll: 3,
    }
}

/// A server and a client holding `cookies` cookies issued by it.
fn setup(cookies: usize) -> (NtsServer, NtsClientState) {
    let ring = SharedKeyRing::new(KeyRing::generate(1_700_000_000));
    let keys = SessionKeys {
        c2s: AeadKey::random(),
        s2c: AeadKey::random(),
    };
    let jar = (0..cookies)
        .map(|_| {
            let mut c = [0u8; COOKIE_LEN];
            ring.read().seal_cookie(&keys, &mut c);
            c.to_vec()
        })
        .collect();
    let client = NtsClientState::new(
        keys.c2s.clone(),
        keys.s2c.clone(),
        jar,
        "127.0.0.1".into(),
        123,
    );
    (NtsServer::new(ring), client)
}

fn uid(n: u8) -> [u8; UID_LEN] {
    [n; UID_LEN]
}

/// Client request for `uid`, the server's outcome and reply bytes.
fn round(
    server: &NtsServer,
    client: &mut NtsClientState,
    u: &[u8; UID_LEN],
) -> (Exchange, Vec<u8>, NtsOutcome, Vec<u8>) {
    let req = new_client_request(4, 6, 0x1234_5678_9ABC_DEF0 ^ u64::from(u[0]));
    let mut buf = [0u8; 1500];
    let expected = client.request_len();
    let len = client.build_request(&req.header, u, &mut buf).unwrap();
    assert_eq!(len, expected);
    let request = buf[..len].to_vec();
    let t = NtpTimestamp::from_unix(1_700_000_100, 0);
    let header = NtpHeader::decode(&request).unwrap();
    let reply_header = build_server_reply(&header, &state(), t, t.add_seconds(0.0001));
    let mut out = [0u8; 1500];
    let outcome = server.process_request(&request, &reply_header, &mut out);
    let reply = match outcome {
        NtsOutcome::Reply(n) | NtsOutcome::Nak(n) => out[..n].to_vec(),
        _ => Vec::new(),
    };
    (Exchange::new(req, t), request, outcome, reply)
}

#[test]
fn request_layout_and_authenticated_round_trip() {
    let (server, mut client) = setup(8);
    assert_eq!(client.request_len(), 48 + 36 + 104 + 40);
    let (mut ex, request, outcome, reply) = round(&server, &mut client, &uid(1));
    // header, UID, one cookie, no placeholders (jar was full), authenticator.
    let types: Vec<u16> = located_fields(&request)
        .map(|f| f.unwrap().1.field_type)
        .collect();
    assert_eq!(types, [EF_UNIQUE_ID, EF_COOKIE, 0x0404]);
    assert_eq!(client.cookies.len(), 7);
    assert!(matches!(outcome, NtsOutcome::Reply(_)));
    let header = client.process_response(&reply, &uid(1)).unwrap();
    assert_eq!(
        client.cookies.len(),
        8,
        "one fresh cookie replaces the one used"
    );
    let sample = ex
        .on_reply(&header, NtpTimestamp::from_unix(1_700_000_100, 1000), -20)
        .unwrap();
    assert_eq!(sample.stratum, 2);
}

#[test]
fn placeholders_refill_the_jar_and_response_never_exceeds_request() {
    for have in 1..=8 {
        let (server, mut client) = setup(have);
        let (_, request, outcome, reply) = round(&server, &mut client, &uid(2));
        let placeholders = located_fields(&request)
            .filter(|f| f.as_ref().unwrap().1.field_type == EF_COOKIE_PLACEHOLDER)
            .count();
        assert_eq!(placeholders, 8 - have);
        assert!(matches!(outcome, NtsOutcome::Reply(_)));
        assert!(
            reply.len() <= request.len(),
            "amplification: {} > {}",
            reply.len(),
            request.len()
        );
        client.process_response(&reply, &uid(2)).unwrap();
        assert_eq!(client.cookies.len(), 8, "started with {have}");
    }
}

#[test]
fn forged_placeholders_cannot_amplify() {
    // A client (or attacker holding one valid cookie) sends a small
    // request whose placeholders are smaller than the cookie: they must
    // not be honoured, or the reply would outgrow the request.
    let (server, client) = setup(1);
    let cookie = client.cookies[0].clone();
    let mut buf = [0u8; 1500];
    let header = new_client_request(4, 6, 99).header;
    let mut n = header.encode_into(&mut buf).unwrap();
    n += write_field(&mut buf[n..], EF_UNIQUE_ID, &uid(3)).unwrap();
    n += write_field(&mut buf[n..], EF_COOKIE, &cookie).unwrap();
    for _ in 0..7 {
        n += write_field(&mut buf[n..], EF_COOKIE_PLACEHOLDER, &[0; 12]).unwrap();
    }
    n += seal_authenticator(&mut buf, n, &client.c2s, &[1; 16], 0).unwrap();
    let mut out = [0u8; 1500];
    let NtsOutcome::Reply(len) = server.process_request(&buf[..n], &header, &mut out) else {
        panic!("valid request not answered");
    };
    assert!(len <= n, "reply {len} > request {n}");
    let cookies = count_reply_cookies(&out[..len], &client.s2c);
    assert_eq!(cookies, 1, "undersized placeholders ignored");
    // Correctly sized placeholders are honoured, still without growth.
    let (server, mut client) = setup(1);
    let (_, request, _, reply) = round(&server, &mut client, &uid(4));
    assert!(reply.len() <= request.len());
    assert_eq!(count_reply_cookies(&reply, &client.s2c), 8);
    // A buffer smaller than the minimal reply drops instead of panicking.
    let header = NtpHeader::decode(&request).unwrap();
    let mut tiny = [0u8; 60];
    assert_eq!(
        server.process_request(&request, &header, &mut tiny),
        NtsOutcome::Drop
    );
}

/// Decrypts a reply's authenticator and counts the cookies inside.
fn count_reply_cookies(reply: &[u8], s2c: &AeadKey) -> usize {
    let (at, f) = located_fields(reply)
        .map(|f| f.unwrap())
        .find(|(_, f)| f.field_type == 0x0404)
        .unwrap();
    let auth = parse_authenticator(f.value).unwrap();
    let mut pt = [0u8; 2048];
    let n = open_authenticator(reply, at, &auth, s2c, &mut pt).unwrap();
    meridian_proto::extension_fields(&pt[..n])
        .filter(|f| f.unwrap().field_type == EF_COOKIE)
        .count()
}

#[test]
fn tampered_or_foreign_cookie_gets_a_nak_and_client_rekeys() {
    let (server, mut client) = setup(2);
    // Flip one octet of the cookie inside the request.
    let req = new_client_request(4, 6, 42);
    let mut buf = [0u8; 1500];
    let len = client
        .build_request(&req.header, &uid(4), &mut buf)
        .unwrap();
    let cookie_at = 48 + 36 + 4;
    buf[cookie_at + 50] ^= 0x80;
    let header = NtpHeader::decode(&buf).unwrap();
    let mut out = [0u8; 1500];
    let NtsOutcome::Nak(n) = server.process_request(&buf[..len], &header, &mut out) else {
        panic!("expected NAK");
    };
    assert!(n <= len);
    let nak = NtpHeader::decode(&out).unwrap();
    assert_eq!(nak.kiss_code(), Some(KissCode::Other(*b"NTSN")));
    assert_eq!(nak.origin_ts, req.header.transmit_ts);
    // The client recognises it (UID matches) and must re-key.
    assert!(!client.needs_key_exchange());
    assert_eq!(
        client.process_response(&out[..n], &uid(4)),
        Err(NtsError::Nak)
    );
    assert!(client.needs_key_exchange());
    assert_eq!(
        client.build_request(&req.header, &uid(5), &mut buf),
        Err(NtsError::Nak)
    );
    // A cookie from another server's ring: NAK too.
    let (other, _) = setup(0);
    let (_, mut client) = setup(1);
    let (_, _, outcome, _) = round(&other, &mut client, &uid(6));
    assert!(matches!(outcome, NtsOutcome::Nak(_)));
}

#[test]
fn bad_authenticator_gets_a_nak_and_spoofed_nak_is_ignored() {
    let (server, mut client) = setup(3);
    let req = new_client_request(4, 6, 7);
    let mut buf = [0u8; 1500];
    let len = client
        .build_request(&req.header, &uid(7), &mut buf)
        .unwrap();
    // Change the header after sealing: authenticator no longer matches.
    buf[2] ^= 1;
    let header = NtpHeader::decode(&buf).unwrap();
    let mut out = [0u8; 1500];
    assert!(matches!(
        server.process_request(&buf[..len], &header, &mut out),
        NtsOutcome::Nak(_)
    ));
    // A NAK with another UID (off-path spoof) is rejected and harmless.
    let mut spoof = [0u8; 1500];
    let mut n = meridian_proto::build_kod(&req.header, ReferenceId(*b"NTSN"))
        .encode_into(&mut spoof)
        .unwrap();
    n += crate::fields::write_field(&mut spoof[n..], EF_UNIQUE_ID, &uid(99)).unwrap();
    assert_eq!(
        client.process_response(&spoof[..n], &uid(7)),
        Err(NtsError::UidMismatch)
    );
    assert!(!client.needs_key_exchange());
}

#[test]
fn replays_are_answered_by_the_stateless_server_but_rejected_by_the_client() {
    let (server, mut client) = setup(8);
    let (mut ex, request, _, reply) = round(&server, &mut client, &uid(8));
    client.process_response(&reply, &uid(8)).unwrap();
    ex.on_reply(
        &NtpHeader::decode(&reply).unwrap(),
        NtpTimestamp::from_unix(1_700_000_100, 0),
        -20,
    )
    .unwrap();
    // The server answers a replayed request again (it keeps no state) …
    let header = NtpHeader::decode(&request).unwrap();
    let mut out = [0u8; 1500];
    let NtsOutcome::Reply(n) = server.process_request(&request, &header, &mut out) else {
        panic!("replayed request not answered");
    };
    // … but the client has no outstanding request with that UID any more.
    let cookies = client.cookies.len();
    assert_eq!(
        client.process_response(&out[..n], &uid(8)),
        Err(NtsError::UidMismatch)
    );
    assert_eq!(
        client.process_response(&reply, &uid(8)),
        Err(NtsError::UidMismatch),
        "replayed response"
    );
    assert_eq!(client.cookies.len(), cookies, "replay added no cookies");
    // An old response offered to a newer request fails on the UID too.
    let (_, _, _, _) = round(&server, &mut client, &uid(9));
    assert_eq!(
        client.process_response(&reply, &uid(9)),
        Err(NtsError::UidMismatch)
    );
    // And the protocol layer would refuse it as a duplicate anyway.
    assert_eq!(
        ex.on_reply(
            &NtpHeader::decode(&reply).unwrap(),
            NtpTimestamp::from_unix(1_700_000_100, 0),
            -20
        ),
        Err(ReplyError::Duplicate)
    );
}

#[test]
fn tampered_response_is_rejected_without_side_effects() {
    let (server, mut client) = setup(4);
    let (_, _, _, reply) = round(&server, &mut client, &uid(10));
    let cookies = client.cookies.len();
    for i in 0..reply.len() {
        let mut t = reply.clone();
        t[i] ^= 0x04;
        assert!(
            client.process_response(&t, &uid(10)).is_err(),
            "flip at {i} accepted"
        );
    }
    assert_eq!(client.cookies.len(), cookies);
    // The genuine one still works afterwards.
    client.process_response(&reply, &uid(10)).unwrap();
}

#[test]
fn plain_ntp_is_not_nts_and_broken_nts_is_dropped() {
    let (server, mut client) = setup(2);
    let req = new_client_request(4, 6, 11);
    let mut buf = [0u8; 1500];
    req.header.encode_into(&mut buf).unwrap();
    let mut out = [0u8; 1500];
    assert_eq!(
        server.process_request(&buf[..48], &req.header, &mut out),
        NtsOutcome::NotNts
    );
    assert_eq!(
        server.process_request(&buf[..20], &req.header, &mut out),
        NtsOutcome::Drop
    );
    // A request missing its authenticator (cut off) is dropped.
    let len = client
        .build_request(&req.header, &uid(11), &mut buf)
        .unwrap();
    assert_eq!(
        server.process_request(&buf[..len - 40], &req.header, &mut out),
        NtsOutcome::Drop
    );
    // Two cookies in one request: dropped.
    let mut twice = buf[..len - 40].to_vec();
    let cookie = twice[48 + 36..48 + 36 + 104].to_vec();
    twice.extend_from_slice(&cookie);
    twice.extend_from_slice(&buf[len - 40..len]);
    assert_eq!(
        server.process_request(&twice, &req.header, &mut out),
        NtsOutcome::Drop
    );
}

#[test]
fn expired_master_key_naks_until_rekeyed() {
    let (server, mut client) = setup(2);
    for i in 0..=crate::cookie::DEFAULT_RETAIN as u64 {
        let mut ring = server.keys().read().clone();
        ring.rotate(1_800_000_000 + i);
        server.keys().replace(ring);
    }
    let (_, _, outcome, reply) = round(&server, &mut client, &uid(12));
    assert!(matches!(outcome, NtsOutcome::Nak(_)));
    assert_eq!(
        client.process_response(&reply, &uid(12)),
        Err(NtsError::Nak)
    );
}

proptest! {
    #[test]
    fn server_never_panics_on_garbage(tail in proptest::collection::vec(any::<u8>(), 0..400), first in any::<u8>()) {
        let (server, _) = setup(0);
        let mut pkt = vec![0u8; 48];
        pkt[0] = first;
        pkt.extend(tail);
        let header = NtpHeader::default();
        let mut out = [0u8; 1500];
        match server.process_request(&pkt, &header, &mut out) {
            NtsOutcome::Reply(n) | NtsOutcome::Nak(n) => prop_assert!(n <= pkt.len()),
            _ => {}
        }
    }

    #[test]
    fn server_never_panics_on_mutated_requests(flips in proptest::collection::vec((0usize..300, any::<u8>()), 1..6)) {
        let (server, mut client) = setup(3);
        let req = new_client_request(4, 6, 5);
        let mut buf = [0u8; 1500];
        let len = client.build_request(&req.header, &uid(13), &mut buf).unwrap();
        for (at, x) in flips {
            buf[at % len] ^= x;
        }
        let mut out = [0u8; 1500];
        match server.process_request(&buf[..len], &req.header, &mut out) {
            NtsOutcome::Reply(n) | NtsOutcome::Nak(n) => prop_assert!(n <= len),
            _ => {}
        }
    }

    #[test]
    fn client_never_panics_on_garbage(tail in proptest::collection::vec(any::<u8>(), 0..400)) {
        let (_, mut client) = setup(3);
        let mut pkt = vec![0u8; 48];
        pkt.extend(tail);
        let _ = client.process_response(&pkt, &uid(1));
    }
}
