//! `meridian_proto::parse_packet`: header, RFC 7822 extension fields, MAC
//! trailer. Also re-encodes the header (must round-trip), walks the fields,
//! and hands the header to a client exchange as if it were a reply.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meridian_proto::{
    extension_fields, new_client_request, parse_mac_trailer, parse_packet, Exchange, NtpHeader,
    NtpTimestamp, HEADER_LEN,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = NtpHeader::decode(data) {
        let mut out = [0u8; HEADER_LEN];
        h.encode(&mut out);
        assert_eq!(
            NtpHeader::decode(&out).expect("re-decodes"),
            h,
            "header round trip"
        );
        let _ = h.kiss_code();
        // As a reply to a request whose nonce is the reply's own origin (so the
        // validation goes as deep as it can) and to one with another nonce.
        for nonce in [h.origin_ts.to_bits(), 0x1234_5678_9abc_def0] {
            let req = new_client_request(4, 6, nonce);
            let mut ex = Exchange::new(req, NtpTimestamp::from_unix(1_800_000_000, 0));
            if let Ok(s) = ex.on_reply(&h, NtpTimestamp::from_unix(1_800_000_000, 1_000), -20) {
                assert!(s.delay >= 2f64.powi(-20), "delay floored at the precision");
                assert!(s.offset.is_finite());
                assert!(
                    ex.on_reply(&h, NtpTimestamp::ZERO, -20).is_err(),
                    "duplicate"
                );
            }
        }
    }
    match parse_packet(data) {
        Ok(p) => {
            assert!(data.len() >= HEADER_LEN);
            let mut framed = HEADER_LEN + p.extensions.len();
            for f in extension_fields(p.extensions) {
                let f = f.expect("parse_packet checked the framing");
                assert!(f.value.len() + 4 >= 16);
            }
            if let Some(mac) = p.mac {
                framed += match mac {
                    meridian_proto::mac::MacTrailer::CryptoNak { .. } => 4,
                    meridian_proto::mac::MacTrailer::Digest { digest, .. } => 4 + digest.len(),
                };
            }
            assert_eq!(framed, data.len(), "every octet is framed");
        }
        Err(_) => {}
    }
    let _ = parse_mac_trailer(data);
    for f in extension_fields(data) {
        if f.is_err() {
            break;
        }
    }
});
