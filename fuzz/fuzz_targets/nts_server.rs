//! The NTS server's per-datagram path, `meridian_nts::NtsServer::process_request`.
//!
//! First octet even: the rest is the datagram, as received (the seeds hold
//! valid requests under the fixture's cookie key). Odd: the rest is
//! `header || 0xFF 0xFF || extra fields || 0xFF 0xFF || plaintext`, and the
//! target builds a request with a valid cookie and seals `plaintext` under
//! its C2S key, so the code behind the AEAD check is fuzzed too.
//! Invariants: no reply is longer than its request (no amplification), and
//! every reply is a server packet echoing the request's UID.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use meridian_nts::{NtsOutcome, NtsServer};
use meridian_proto::{
    build_server_reply, LeapIndicator, Mode, NtpHeader, NtpShort, ReferenceId, ServerState,
};

fn server() -> &'static NtsServer {
    static S: OnceLock<NtsServer> = OnceLock::new();
    S.get_or_init(|| NtsServer::new(meridian_fuzz::key_ring()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let mut buf = [0u8; 4096];
    let datagram: &[u8] = if ctl & 1 == 0 {
        rest
    } else {
        let (header, rest) = meridian_fuzz::split2(rest, &[0xff, 0xff]);
        let (extra, plaintext) = meridian_fuzz::split2(rest, &[0xff, 0xff]);
        match meridian_fuzz::sealed_request(header, extra, plaintext, &mut buf) {
            Some(n) => &buf[..n],
            None => return,
        }
    };
    let Ok(request) = NtpHeader::decode(datagram) else {
        let mut out = [0u8; 4096];
        let r = server().process_request(datagram, &NtpHeader::default(), &mut out);
        assert!(matches!(r, NtsOutcome::Drop | NtsOutcome::NotNts), "{r:?}");
        return;
    };
    let state = ServerState {
        leap: LeapIndicator::NoWarning,
        stratum: 2,
        precision: -20,
        root_delay: NtpShort::from_seconds_f64(0.01),
        root_dispersion: NtpShort::from_seconds_f64(0.01),
        reference_id: ReferenceId::from_ascii(b"GPS"),
        reference_ts: meridian_fuzz::now(),
        min_poll: 4,
    };
    let reply = build_server_reply(&request, &state, meridian_fuzz::now(), meridian_fuzz::now());
    // An output buffer as large as the daemon's, and one barely larger than the request.
    for out_len in [2048usize, datagram.len()] {
        let mut out = vec![0u8; out_len];
        match server().process_request(datagram, &reply, &mut out) {
            NtsOutcome::Reply(n) | NtsOutcome::Nak(n) => {
                assert!(
                    n <= datagram.len(),
                    "amplification: {n} > {}",
                    datagram.len()
                );
                assert!(n <= out.len());
                let h = NtpHeader::decode(&out[..n]).expect("reply has a header");
                assert_eq!(h.mode, Mode::Server);
                assert_eq!(h.origin_ts, request.transmit_ts);
            }
            NtsOutcome::Drop | NtsOutcome::NotNts => {}
        }
    }
});
