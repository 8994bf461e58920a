//! The NTP bytes the load generator sends and checks, and the echo responder's rewrite.
//!
//! Only the 48-byte header matters here; offsets follow RFC 5905 figure 8.

/// Length of an NTP header.
pub const HEADER_LEN: usize = 48;
/// Offset of the origin timestamp (the client's transmit, echoed by the server).
pub const ORIGIN_OFFSET: usize = 24;
/// Offset of the transmit timestamp.
pub const TRANSMIT_OFFSET: usize = 40;

/// Write a version-4 client (mode 3) request carrying `transmit` into `buf`.
pub fn write_request(buf: &mut [u8; HEADER_LEN], transmit: u64) {
    *buf = [0; HEADER_LEN];
    buf[0] = (4 << 3) | 3; // LI 0, VN 4, mode 3
    buf[2] = 6; // poll 64 s
    buf[3] = (-20i8) as u8; // precision ~1 µs
    buf[TRANSMIT_OFFSET..].copy_from_slice(&transmit.to_be_bytes());
}

/// What a reply turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// A server reply (mode 4, version 4) answering the request with this transmit.
    Answer {
        /// The origin timestamp: the transmit of the request it answers.
        origin: u64,
    },
    /// A kiss-o'-death (stratum 0 with a non-zero kiss code) answering that request.
    Kod {
        /// The origin timestamp.
        origin: u64,
    },
    /// Not a server reply to one of our version-4 requests.
    Invalid,
}

/// Classify a datagram received in answer to [`write_request`].
pub fn classify_reply(data: &[u8]) -> ReplyKind {
    if data.len() < HEADER_LEN {
        return ReplyKind::Invalid;
    }
    let mode = data[0] & 7;
    let version = (data[0] >> 3) & 7;
    if mode != 4 || version != 4 {
        return ReplyKind::Invalid;
    }
    let mut o = [0u8; 8];
    o.copy_from_slice(&data[ORIGIN_OFFSET..ORIGIN_OFFSET + 8]);
    let origin = u64::from_be_bytes(o);
    let refid_nonzero = data[12..16] != [0, 0, 0, 0];
    if data[1] == 0 && refid_nonzero {
        ReplyKind::Kod { origin }
    } else {
        ReplyKind::Answer { origin }
    }
}

/// The echo responder's whole "protocol": turn a request into something that passes
/// [`classify_reply`] (mode 4, origin = the request's transmit) without reading a clock.
/// Datagrams shorter than a header are left as they are.
pub fn echo_in_place(data: &mut [u8]) {
    if data.len() < HEADER_LEN {
        return;
    }
    data[0] = (data[0] & !7) | 4;
    data.copy_within(TRANSMIT_OFFSET..TRANSMIT_OFFSET + 8, ORIGIN_OFFSET);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_request_is_a_valid_answer_for_its_transmit() {
        let mut b = [0u8; HEADER_LEN];
        write_request(&mut b, 0x0123_4567_89ab_cdef);
        assert_eq!(
            classify_reply(&b),
            ReplyKind::Invalid,
            "a request is not a reply"
        );
        echo_in_place(&mut b);
        assert_eq!(
            classify_reply(&b),
            ReplyKind::Answer {
                origin: 0x0123_4567_89ab_cdef
            }
        );
    }

    #[test]
    fn kod_and_junk_are_told_apart() {
        let mut b = [0u8; HEADER_LEN];
        write_request(&mut b, 7);
        echo_in_place(&mut b);
        b[12..16].copy_from_slice(b"RATE");
        assert_eq!(classify_reply(&b), ReplyKind::Kod { origin: 7 });
        assert_eq!(classify_reply(&b[..47]), ReplyKind::Invalid);
        b[0] = (3 << 3) | 4;
        assert_eq!(classify_reply(&b), ReplyKind::Invalid, "wrong version");
    }
}
