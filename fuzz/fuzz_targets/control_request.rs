//! Mode 6 parsing in `meridian_proto::control`: the request header and data,
//! variable lists, timestamps, and response reassembly (what ntpq runs on
//! replies it receives).
#![no_main]

use libfuzzer_sys::fuzz_target;
use meridian_proto::control::{
    parse_request, parse_timestamp, ControlHeader, Fragmenter, Reassembly, VarList, HEADER_LEN,
    MAX_FRAGMENT_LEN,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = parse_request(data) {
        assert!(
            HEADER_LEN + req.data.len() <= data.len(),
            "data within the datagram"
        );
        assert_eq!(req.data.len(), usize::from(req.header.count));
    } else if let Err(e) = parse_request(data) {
        let _ = e.reply_code();
    }
    if let Ok(text) = std::str::from_utf8(data) {
        for item in VarList::new(text).take(1000) {
            let _ = item.unquoted();
            if let Some(v) = item.value {
                let _ = parse_timestamp(v);
            }
        }
    }
    // As a stream of response fragments: each is a header plus its data.
    let mut r = Reassembly::new();
    let mut rest = data;
    while rest.len() >= HEADER_LEN {
        let Ok(h) = ControlHeader::decode(rest) else {
            break;
        };
        let end = (HEADER_LEN + usize::from(h.count)).min(rest.len());
        if r.add(&h, &rest[HEADER_LEN..end]) {
            let _ = r.clone().into_data();
            break;
        }
        rest = &rest[end.next_multiple_of(4).min(rest.len())..];
    }
    // Fragmenting any data and reassembling it gives the data back.
    let template = ControlHeader::request(2, 1, 0, 0).response_to(0, 0);
    let mut f = Fragmenter::new(template, data);
    let mut r = Reassembly::new();
    let mut buf = [0u8; MAX_FRAGMENT_LEN];
    let mut done = false;
    let mut n = 0;
    while let Some(len) = f.next_into(&mut buf) {
        n += 1;
        let h = ControlHeader::decode(&buf[..len]).expect("own fragment decodes");
        done = r.add(&h, &buf[HEADER_LEN..HEADER_LEN + usize::from(h.count)]);
    }
    assert_eq!(n, Fragmenter::fragment_count(data.len()));
    if done && data.len() <= usize::from(u16::MAX) {
        assert_eq!(r.into_data(), data, "fragment round trip");
    }
});
