//! The NTS client's check of a response, `NtsClientState::process_response`.
//!
//! First octet even: the rest is the response datagram as received. Odd: the
//! rest is `header || 0xFF 0xFF || extra fields || 0xFF 0xFF || plaintext`,
//! sealed by the target under the fixture's S2C key with the right UID, so
//! the cookie harvesting behind the AEAD check is fuzzed too.
//! Invariants: a response is accepted at most once (a replay of it is
//! refused); the cookie jar never holds more than 8 cookies; a refused
//! response leaves the state as it was.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meridian_nts::aead::AeadKey;
use meridian_nts::NtsClientState;
use meridian_proto::{new_client_request, NtpHeader};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let keys = meridian_fuzz::session_keys();
    let cookies = vec![meridian_fuzz::cookie().to_vec(); usize::from(ctl >> 5) + 1];
    let mut state = NtsClientState::new(
        AeadKey::from_bytes(*keys.c2s.as_bytes()),
        AeadKey::from_bytes(*keys.s2c.as_bytes()),
        cookies,
        "127.0.0.1".into(),
        123,
    );
    let req = new_client_request(4, 6, 0x0102_0304_0506_0708);
    let mut out = [0u8; 2048];
    state
        .build_request(&req.header, &meridian_fuzz::UID, &mut out)
        .expect("request fits");
    let mut buf = [0u8; 4096];
    let datagram: &[u8] = if ctl & 1 == 0 {
        rest
    } else {
        let (header, rest) = meridian_fuzz::split2(rest, &[0xff, 0xff]);
        let (extra, plaintext) = meridian_fuzz::split2(rest, &[0xff, 0xff]);
        match meridian_fuzz::sealed_response(header, extra, plaintext, &mut buf) {
            Some(n) => &buf[..n],
            None => return,
        }
    };
    let before = state.cookies.len();
    let r = state.process_response(datagram, &meridian_fuzz::UID);
    assert!(state.cookies.len() <= 8);
    match r {
        Ok(h) => {
            assert_eq!(Some(h), NtpHeader::decode(datagram).ok());
            assert!(
                state
                    .process_response(datagram, &meridian_fuzz::UID)
                    .is_err(),
                "replayed response accepted"
            );
        }
        Err(meridian_nts::NtsError::Nak) => assert!(state.needs_key_exchange()),
        Err(_) => assert_eq!(
            state.cookies.len(),
            before,
            "refused response changed the jar"
        ),
    }
});
