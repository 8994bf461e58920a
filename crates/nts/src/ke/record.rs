//! NTS-KE record framing (RFC 8915 §4): a 16-bit word holding the critical
//! bit and a 15-bit type, a 16-bit body length, then the body.
//!
//! [`split_record`] borrows one record from a buffer without allocating;
//! [`Record`] is the typed, owned form used to build and inspect messages.
//! Every decoder is total: malformed input yields an error, never a panic.

use crate::error::KeError;

/// End of Message (must be critical).
pub const END_OF_MESSAGE: u16 = 0;
/// NTS Next Protocol Negotiation (must be critical).
pub const NEXT_PROTOCOL: u16 = 1;
/// Error (must be critical).
pub const ERROR: u16 = 2;
/// Warning (must be critical).
pub const WARNING: u16 = 3;
/// AEAD Algorithm Negotiation.
pub const AEAD_ALGORITHM: u16 = 4;
/// New Cookie for NTPv4 (must not be critical).
pub const NEW_COOKIE: u16 = 5;
/// NTPv4 Server Negotiation.
pub const NTPV4_SERVER: u16 = 6;
/// NTPv4 Port Negotiation.
pub const NTPV4_PORT: u16 = 7;

/// Next-protocol identifier of NTPv4.
pub const PROTOCOL_NTPV4: u16 = 0;

/// Error code: unrecognized critical record.
pub const ERR_UNRECOGNIZED_CRITICAL: u16 = 0;
/// Error code: bad request.
pub const ERR_BAD_REQUEST: u16 = 1;
/// Error code: internal server error.
pub const ERR_INTERNAL: u16 = 2;

/// Size of a record header.
pub const RECORD_HEADER_LEN: usize = 4;

/// Longest cookie we accept or issue: it has to fit in an NTP packet, and
/// ours are 100 octets.
pub const MAX_COOKIE_LEN: usize = 1024;

/// Longest server name in an NTPv4 Server Negotiation record (a DNS name
/// is at most 253 characters; an IPv6 literal much less).
pub const MAX_SERVER_NAME_LEN: usize = 255;

/// Most identifiers accepted in one Next Protocol or AEAD record.
pub const MAX_IDS: usize = 64;

const CRITICAL_BIT: u16 = 0x8000;

/// One record borrowed from a buffer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RawRecord<'a> {
    /// The critical bit.
    pub critical: bool,
    /// The 15-bit record type.
    pub record_type: u16,
    /// The body.
    pub body: &'a [u8],
}

/// Reads the record at the start of `buf`: `Ok(None)` when `buf` does not
/// yet hold all of it (read more), otherwise the record and its total
/// length.
pub fn split_record(buf: &[u8]) -> Result<Option<(RawRecord<'_>, usize)>, KeError> {
    let Some([t0, t1, l0, l1]) = buf.first_chunk::<4>().copied() else {
        return Ok(None);
    };
    let word = u16::from_be_bytes([t0, t1]);
    let len = usize::from(u16::from_be_bytes([l0, l1]));
    let total = RECORD_HEADER_LEN + len;
    let Some(body) = buf.get(RECORD_HEADER_LEN..total) else {
        return Ok(None);
    };
    Ok(Some((
        RawRecord {
            critical: word & CRITICAL_BIT != 0,
            record_type: word & !CRITICAL_BIT,
            body,
        },
        total,
    )))
}

/// If `buf` starts with a complete message (records up to and including
/// End of Message), returns its length; `Ok(None)` means read more. Fails
/// once `max_len` octets have been seen without an End of Message, so a
/// peer cannot make us buffer without bound.
pub fn complete_message_len(buf: &[u8], max_len: usize) -> Result<Option<usize>, KeError> {
    let mut at = 0;
    loop {
        if at > max_len {
            return Err(KeError::TooLarge);
        }
        match split_record(buf.get(at..).unwrap_or_default())? {
            None => {
                return if buf.len() > max_len {
                    Err(KeError::TooLarge)
                } else {
                    Ok(None)
                }
            }
            Some((rec, len)) => {
                at += len;
                if rec.record_type == END_OF_MESSAGE {
                    return if at > max_len {
                        Err(KeError::TooLarge)
                    } else {
                        Ok(Some(at))
                    };
                }
            }
        }
    }
}

/// Iterates over the records of a complete message, stopping after End of
/// Message. Trailing bytes after it, or a truncated record, are an error.
pub fn records(msg: &[u8]) -> impl Iterator<Item = Result<RawRecord<'_>, KeError>> {
    let mut rest = msg;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        match split_record(rest) {
            Ok(Some((rec, len))) => {
                rest = rest.get(len..).unwrap_or_default();
                if rec.record_type == END_OF_MESSAGE {
                    done = true;
                    if !rest.is_empty() {
                        return Some(Err(KeError::Malformed("data after End of Message")));
                    }
                }
                Some(Ok(rec))
            }
            Ok(None) => {
                done = true;
                Some(Err(KeError::Malformed("missing End of Message")))
            }
            Err(e) => {
                done = true;
                Some(Err(e))
            }
        }
    })
}

/// A typed NTS-KE record.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Record {
    /// End of Message.
    EndOfMessage,
    /// Next protocols (a request lists candidates; a response one, or none
    /// to refuse).
    NextProtocol(Vec<u16>),
    /// Error code.
    Error(u16),
    /// Warning code.
    Warning(u16),
    /// AEAD algorithms (same convention as [`Record::NextProtocol`]).
    AeadAlgorithm(Vec<u16>),
    /// One cookie.
    NewCookie(Vec<u8>),
    /// The NTP server to use: a DNS name or an IP address literal.
    Server(String),
    /// The NTP port to use.
    Port(u16),
    /// Any other type, kept so it can be reported.
    Unknown {
        /// The critical bit.
        critical: bool,
        /// The type.
        record_type: u16,
        /// The body.
        body: Vec<u8>,
    },
}

fn u16_list(body: &[u8]) -> Result<Vec<u16>, KeError> {
    if body.len() & 1 != 0 {
        return Err(KeError::Malformed("odd-length identifier list"));
    }
    if body.len() / 2 > MAX_IDS {
        return Err(KeError::Malformed("identifier list too long"));
    }
    Ok(body
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect())
}

fn single_u16(body: &[u8]) -> Result<u16, KeError> {
    match *body {
        [a, b] => Ok(u16::from_be_bytes([a, b])),
        _ => Err(KeError::Malformed("record body must be 2 octets")),
    }
}

impl Record {
    /// Decodes a raw record, checking the body of each known type. The
    /// critical bit is the caller's concern (request and response rules
    /// differ); it is only kept for unknown types.
    pub fn decode(raw: &RawRecord<'_>) -> Result<Record, KeError> {
        let body = raw.body;
        Ok(match raw.record_type {
            END_OF_MESSAGE => {
                if !body.is_empty() {
                    return Err(KeError::Malformed("End of Message with a body"));
                }
                Record::EndOfMessage
            }
            NEXT_PROTOCOL => Record::NextProtocol(u16_list(body)?),
            ERROR => Record::Error(single_u16(body)?),
            WARNING => Record::Warning(single_u16(body)?),
            AEAD_ALGORITHM => Record::AeadAlgorithm(u16_list(body)?),
            NEW_COOKIE => {
                if body.is_empty() || body.len() > MAX_COOKIE_LEN {
                    return Err(KeError::Malformed("cookie length"));
                }
                Record::NewCookie(body.to_vec())
            }
            NTPV4_SERVER => {
                if body.is_empty() || body.len() > MAX_SERVER_NAME_LEN {
                    return Err(KeError::Malformed("server name length"));
                }
                // RFC 8915 §4.1.7: ASCII-encoded name or address.
                let name = std::str::from_utf8(body)
                    .ok()
                    .filter(|s| s.bytes().all(|b| b.is_ascii_graphic()))
                    .ok_or(KeError::Malformed("server name is not printable ASCII"))?;
                Record::Server(name.to_string())
            }
            NTPV4_PORT => Record::Port(single_u16(body)?),
            other => Record::Unknown {
                critical: raw.critical,
                record_type: other,
                body: body.to_vec(),
            },
        })
    }

    /// The critical bit we send for this record: set where RFC 8915 says
    /// MUST, and for negotiation records so a peer that does not know them
    /// fails loudly rather than silently ignoring them; never for cookies.
    pub fn critical(&self) -> bool {
        match self {
            Record::NewCookie(_) => false,
            Record::Unknown { critical, .. } => *critical,
            _ => true,
        }
    }

    fn record_type(&self) -> u16 {
        match self {
            Record::EndOfMessage => END_OF_MESSAGE,
            Record::NextProtocol(_) => NEXT_PROTOCOL,
            Record::Error(_) => ERROR,
            Record::Warning(_) => WARNING,
            Record::AeadAlgorithm(_) => AEAD_ALGORITHM,
            Record::NewCookie(_) => NEW_COOKIE,
            Record::Server(_) => NTPV4_SERVER,
            Record::Port(_) => NTPV4_PORT,
            Record::Unknown { record_type, .. } => *record_type & !CRITICAL_BIT,
        }
    }

    /// Appends the encoded record to `out`. Bodies longer than 65535 octets
    /// cannot be framed; they are truncated to keep the output well-formed
    /// (no typed record we build comes near that).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut word = self.record_type();
        if self.critical() {
            word |= CRITICAL_BIT;
        }
        out.extend_from_slice(&word.to_be_bytes());
        let len_at = out.len();
        out.extend_from_slice(&[0, 0]);
        let body_start = out.len();
        match self {
            Record::EndOfMessage => {}
            Record::NextProtocol(ids) | Record::AeadAlgorithm(ids) => {
                for id in ids {
                    out.extend_from_slice(&id.to_be_bytes());
                }
            }
            Record::Error(v) | Record::Warning(v) | Record::Port(v) => {
                out.extend_from_slice(&v.to_be_bytes())
            }
            Record::NewCookie(b) | Record::Unknown { body: b, .. } => out.extend_from_slice(b),
            Record::Server(s) => out.extend_from_slice(s.as_bytes()),
        }
        let body_len = out.len() - body_start;
        let wire = u16::try_from(body_len).unwrap_or(u16::MAX);
        out.truncate(body_start + usize::from(wire));
        out[len_at..len_at + 2].copy_from_slice(&wire.to_be_bytes());
    }
}

/// Encodes a sequence of records (the caller includes End of Message).
pub fn encode_records(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + records.len() * 8);
    for r in records {
        r.encode(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wire_layout_of_known_records() {
        let bytes = encode_records(&[
            Record::NextProtocol(vec![PROTOCOL_NTPV4]),
            Record::AeadAlgorithm(vec![15]),
            Record::NewCookie(vec![0xAB; 3]),
            Record::Port(4123),
            Record::EndOfMessage,
        ]);
        assert_eq!(
            bytes,
            [
                0x80, 1, 0, 2, 0, 0, // next protocol: NTPv4, critical
                0x80, 4, 0, 2, 0, 15, // AEAD 15
                0x00, 5, 0, 3, 0xAB, 0xAB, 0xAB, // cookie, not critical
                0x80, 7, 0, 2, 0x10, 0x1B, // port 4123
                0x80, 0, 0, 0, // end
            ]
        );
        assert_eq!(
            complete_message_len(&bytes, 1000).unwrap(),
            Some(bytes.len())
        );
        let decoded: Vec<Record> = records(&bytes)
            .map(|r| Record::decode(&r.unwrap()).unwrap())
            .collect();
        assert_eq!(decoded.len(), 5);
        assert_eq!(decoded[2], Record::NewCookie(vec![0xAB; 3]));
        assert_eq!(decoded[3], Record::Port(4123));
    }

    #[test]
    fn incomplete_and_oversized_messages() {
        let bytes = encode_records(&[Record::NextProtocol(vec![0]), Record::EndOfMessage]);
        for cut in 0..bytes.len() {
            assert_eq!(
                complete_message_len(&bytes[..cut], 1000).unwrap(),
                None,
                "cut {cut}"
            );
        }
        assert!(matches!(
            complete_message_len(&bytes, 5),
            Err(KeError::TooLarge)
        ));
        // Endless non-End records are refused once past the bound.
        let junk = encode_records(&vec![Record::Warning(1); 100]);
        assert!(matches!(
            complete_message_len(&junk, 200),
            Err(KeError::TooLarge)
        ));
        // Trailing data after End of Message.
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(records(&trailing).any(|r| r.is_err()));
        // Missing End of Message.
        assert!(records(&bytes[..6]).any(|r| r.is_err()));
    }

    #[test]
    fn bad_bodies_are_rejected() {
        let raw = |t: u16, body: &'static [u8]| RawRecord {
            critical: true,
            record_type: t,
            body,
        };
        assert!(Record::decode(&raw(END_OF_MESSAGE, &[0])).is_err());
        assert!(Record::decode(&raw(NEXT_PROTOCOL, &[0])).is_err());
        assert!(Record::decode(&raw(ERROR, &[0, 0, 0])).is_err());
        assert!(Record::decode(&raw(NTPV4_PORT, &[])).is_err());
        assert!(Record::decode(&raw(NEW_COOKIE, &[])).is_err());
        assert!(Record::decode(&raw(NTPV4_SERVER, b"bad name")).is_err());
        assert!(Record::decode(&raw(NTPV4_SERVER, &[0xC3, 0xA9])).is_err());
        assert_eq!(
            Record::decode(&raw(NTPV4_SERVER, b"ntp.example.org")).unwrap(),
            Record::Server("ntp.example.org".into())
        );
        assert_eq!(
            Record::decode(&raw(0x1234, b"xy")).unwrap(),
            Record::Unknown {
                critical: true,
                record_type: 0x1234,
                body: b"xy".to_vec()
            }
        );
        let long = [0u8; 2 * (MAX_IDS + 1)];
        assert!(Record::decode(&RawRecord {
            critical: true,
            record_type: AEAD_ALGORITHM,
            body: &long
        })
        .is_err());
    }

    fn arb_record() -> impl Strategy<Value = Record> {
        prop_oneof![
            Just(Record::EndOfMessage),
            proptest::collection::vec(any::<u16>(), 0..8).prop_map(Record::NextProtocol),
            any::<u16>().prop_map(Record::Error),
            any::<u16>().prop_map(Record::Warning),
            proptest::collection::vec(any::<u16>(), 0..8).prop_map(Record::AeadAlgorithm),
            proptest::collection::vec(any::<u8>(), 1..200).prop_map(Record::NewCookie),
            "[a-z0-9.:-]{1,60}".prop_map(Record::Server),
            any::<u16>().prop_map(Record::Port),
            (
                any::<bool>(),
                8u16..0x7FFF,
                proptest::collection::vec(any::<u8>(), 0..40)
            )
                .prop_map(|(critical, record_type, body)| Record::Unknown {
                    critical,
                    record_type,
                    body
                }),
        ]
    }

    proptest! {
        #[test]
        fn records_round_trip(recs in proptest::collection::vec(arb_record(), 0..10)) {
            let mut all = recs.clone();
            all.retain(|r| *r != Record::EndOfMessage);
            all.push(Record::EndOfMessage);
            let bytes = encode_records(&all);
            prop_assert_eq!(complete_message_len(&bytes, 1 << 16).unwrap(), Some(bytes.len()));
            let back: Vec<Record> = records(&bytes)
                .map(|r| Record::decode(&r.unwrap()).unwrap())
                .collect();
            prop_assert_eq!(back, all);
        }

        #[test]
        fn decoding_garbage_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = complete_message_len(&buf, 256);
            for r in records(&buf) {
                match r {
                    Ok(raw) => { let _ = Record::decode(&raw); }
                    Err(_) => break,
                }
            }
        }
    }
}
