//! The 48-octet NTP header (RFC 5905 §7.3) and the framing of a whole packet:
//! header, RFC 7822 extension fields, optional MAC trailer. Decoding borrows
//! from the input and encoding writes into a caller buffer: no allocation.

use crate::extension::split_field;
use crate::mac::{parse_mac_trailer, MacTrailer, CRYPTO_NAK_LEN, MAC_LEN_MD5, MAC_LEN_SHA1};
use crate::refid::{KissCode, ReferenceId};
use crate::timestamp::{NtpShort, NtpTimestamp};

/// Length of the fixed NTP header.
pub const HEADER_LEN: usize = 48;

/// Errors from decoding or encoding packets.
#[derive(thiserror::Error, Clone, Copy, PartialEq, Eq, Debug)]
pub enum PacketError {
    /// Fewer than 48 octets: not an NTP packet.
    #[error("packet shorter than the 48-octet NTP header")]
    TooShort,
    /// The octets after the header are neither extension fields nor a MAC.
    #[error("malformed extension fields or MAC trailer")]
    Malformed,
    /// The output buffer cannot hold what was to be written.
    #[error("output buffer too small")]
    BufferTooSmall,
}

/// Leap indicator: warning of an impending leap second, or "unsynchronized".
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum LeapIndicator {
    /// No warning.
    #[default]
    NoWarning = 0,
    /// The last minute of the day has 61 seconds.
    InsertSecond = 1,
    /// The last minute of the day has 59 seconds.
    DeleteSecond = 2,
    /// The clock is unsynchronized (alarm condition).
    Unsynchronized = 3,
}

impl LeapIndicator {
    /// Decodes the low two bits of `bits` (higher bits are ignored, so this
    /// is total).
    pub fn from_bits(bits: u8) -> Self {
        match bits & 0b11 {
            0 => LeapIndicator::NoWarning,
            1 => LeapIndicator::InsertSecond,
            2 => LeapIndicator::DeleteSecond,
            _ => LeapIndicator::Unsynchronized,
        }
    }

    /// The two-bit wire value.
    pub fn to_bits(self) -> u8 {
        self as u8
    }
}

/// Association mode (RFC 5905 §3).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum Mode {
    /// Reserved.
    #[default]
    Reserved = 0,
    /// Symmetric active.
    SymmetricActive = 1,
    /// Symmetric passive.
    SymmetricPassive = 2,
    /// Client request.
    Client = 3,
    /// Server reply.
    Server = 4,
    /// Broadcast.
    Broadcast = 5,
    /// NTP control message (ntpq, mode 6).
    Control = 6,
    /// Private use (ntpdc, mode 7).
    Private = 7,
}

impl Mode {
    /// Decodes the low three bits of `bits` (total over every input).
    pub fn from_bits(bits: u8) -> Self {
        match bits & 0b111 {
            0 => Mode::Reserved,
            1 => Mode::SymmetricActive,
            2 => Mode::SymmetricPassive,
            3 => Mode::Client,
            4 => Mode::Server,
            5 => Mode::Broadcast,
            6 => Mode::Control,
            _ => Mode::Private,
        }
    }

    /// The three-bit wire value.
    pub fn to_bits(self) -> u8 {
        self as u8
    }
}

/// The fixed 48-octet NTP header.
///
/// Decoding accepts any version and mode; deciding what is acceptable is up
/// to the caller (see [`crate::validate_reply`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct NtpHeader {
    /// Leap indicator.
    pub leap: LeapIndicator,
    /// Version number (3 bits on the wire; higher bits are dropped on encode).
    pub version: u8,
    /// Association mode.
    pub mode: Mode,
    /// Stratum: 0 kiss-o'-death / unspecified, 1 primary, 2..=15 secondary,
    /// 16 unsynchronized.
    pub stratum: u8,
    /// Poll exponent: log2 of the poll interval in seconds.
    pub poll: i8,
    /// Precision exponent: log2 of the clock resolution in seconds.
    pub precision: i8,
    /// Round-trip delay to the reference clock.
    pub root_delay: NtpShort,
    /// Dispersion to the reference clock.
    pub root_dispersion: NtpShort,
    /// Reference identifier (or kiss code when stratum is 0).
    pub reference_id: ReferenceId,
    /// When the system clock was last set or corrected.
    pub reference_ts: NtpTimestamp,
    /// T1: the request's transmit timestamp, echoed by the server.
    pub origin_ts: NtpTimestamp,
    /// T2: when the server received the request.
    pub receive_ts: NtpTimestamp,
    /// T3: when the packet left the sender.
    pub transmit_ts: NtpTimestamp,
}

fn read_u32(buf: &[u8; HEADER_LEN], at: usize) -> u32 {
    let mut word = [0u8; 4];
    // `at` is always a constant below 45, so the range is in bounds; the
    // fallback keeps this panic-free regardless.
    if let Some(src) = buf.get(at..at + 4) {
        word.copy_from_slice(src);
    }
    u32::from_be_bytes(word)
}

fn read_u64(buf: &[u8; HEADER_LEN], at: usize) -> u64 {
    (u64::from(read_u32(buf, at)) << 32) | u64::from(read_u32(buf, at + 4))
}

fn write_bytes(out: &mut [u8; HEADER_LEN], at: usize, bytes: &[u8]) {
    if let Some(dst) = out.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

impl NtpHeader {
    /// Decodes the first 48 octets of `buf`; trailing octets are ignored
    /// (use [`parse_packet`] to frame them). Fails only if `buf` is short.
    pub fn decode(buf: &[u8]) -> Result<NtpHeader, PacketError> {
        let (b, _) = buf
            .split_first_chunk::<HEADER_LEN>()
            .ok_or(PacketError::TooShort)?;
        // First octet: LI (2 bits) | VN (3 bits) | Mode (3 bits).
        let flags = b[0];
        Ok(NtpHeader {
            leap: LeapIndicator::from_bits(flags >> 6),
            version: (flags >> 3) & 0b111,
            mode: Mode::from_bits(flags),
            stratum: b[1],
            poll: b[2] as i8,
            precision: b[3] as i8,
            root_delay: NtpShort::from_bits(read_u32(b, 4)),
            root_dispersion: NtpShort::from_bits(read_u32(b, 8)),
            reference_id: ReferenceId::from_u32(read_u32(b, 12)),
            reference_ts: NtpTimestamp::from_bits(read_u64(b, 16)),
            origin_ts: NtpTimestamp::from_bits(read_u64(b, 24)),
            receive_ts: NtpTimestamp::from_bits(read_u64(b, 32)),
            transmit_ts: NtpTimestamp::from_bits(read_u64(b, 40)),
        })
    }

    /// Encodes the header into exactly 48 octets.
    pub fn encode(&self, out: &mut [u8; HEADER_LEN]) {
        out[0] = (self.leap.to_bits() << 6) | ((self.version & 0b111) << 3) | self.mode.to_bits();
        out[1] = self.stratum;
        out[2] = self.poll as u8;
        out[3] = self.precision as u8;
        write_bytes(out, 4, &self.root_delay.to_bits().to_be_bytes());
        write_bytes(out, 8, &self.root_dispersion.to_bits().to_be_bytes());
        write_bytes(out, 12, &self.reference_id.0);
        write_bytes(out, 16, &self.reference_ts.to_bits().to_be_bytes());
        write_bytes(out, 24, &self.origin_ts.to_bits().to_be_bytes());
        write_bytes(out, 32, &self.receive_ts.to_bits().to_be_bytes());
        write_bytes(out, 40, &self.transmit_ts.to_bits().to_be_bytes());
    }

    /// Encodes the header into the start of a larger buffer and returns
    /// [`HEADER_LEN`]; convenient when extension fields or a MAC follow.
    pub fn encode_into(&self, out: &mut [u8]) -> Result<usize, PacketError> {
        let (head, _) = out
            .split_first_chunk_mut::<HEADER_LEN>()
            .ok_or(PacketError::BufferTooSmall)?;
        self.encode(head);
        Ok(HEADER_LEN)
    }

    /// The kiss-o'-death code, if this is a stratum-0 packet.
    pub fn kiss_code(&self) -> Option<KissCode> {
        (self.stratum == 0).then(|| self.reference_id.kiss_code())
    }
}

/// A framed packet borrowed from the receive buffer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Packet<'a> {
    /// The fixed header.
    pub header: NtpHeader,
    /// The raw extension field region (possibly empty); iterate it with
    /// [`crate::extension_fields`]. Its framing has already been checked.
    pub extensions: &'a [u8],
    /// The MAC trailer, if any.
    pub mac: Option<MacTrailer<'a>>,
}

/// Frames a received packet: header, extension fields, optional MAC.
///
/// After the header, fields are walked one at a time. Whenever the
/// remainder is exactly 4, 20 or 24 octets it is taken as the MAC trailer
/// (crypto-NAK, MD5 or SHA-1), as RFC 7822 §7.5 and classic ntpd do;
/// otherwise it must start with a valid extension field (≥ 16 octets,
/// multiple of 4, within the buffer). Anything else is `Malformed`.
///
/// A remainder of 20 or 24 is never read as a final extension field
/// because a real MAC with key id 20 or 24 also "parses" as a field of type
/// 0 and that length; RFC 7822 requires a last field without MAC to be at
/// least 28 octets, so a conforming sender never produces that ambiguity.
/// Shorter last fields of 16 octets are accepted, to be liberal.
pub fn parse_packet(buf: &[u8]) -> Result<Packet<'_>, PacketError> {
    let header = NtpHeader::decode(buf)?;
    let after_header = buf.get(HEADER_LEN..).unwrap_or_default();
    let mut ext_len = 0;
    loop {
        let rest = after_header.get(ext_len..).unwrap_or_default();
        let extensions = after_header.get(..ext_len).unwrap_or_default();
        match rest.len() {
            0 => {
                return Ok(Packet {
                    header,
                    extensions,
                    mac: None,
                })
            }
            CRYPTO_NAK_LEN | MAC_LEN_MD5 | MAC_LEN_SHA1 => {
                return Ok(Packet {
                    header,
                    extensions,
                    mac: parse_mac_trailer(rest),
                })
            }
            _ => {
                let (_, field_len) = split_field(rest)?;
                ext_len += field_len;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extension::{extension_fields, write_extension_field};
    use proptest::prelude::*;

    /// A typical sntp v4 client request: 0xE3 is LI 3 | VN 4 | mode 3,
    /// poll 6, precision -20.
    fn client_request_bytes() -> [u8; 48] {
        let mut b = [0u8; 48];
        b[0] = 0xE3;
        b[2] = 6;
        b[3] = 0xEC; // precision -20
        b[40..48].copy_from_slice(&0xE0B1_C2D3_1234_5678u64.to_be_bytes());
        b
    }

    #[test]
    fn first_octet_bit_layout() {
        let h = NtpHeader::decode(&client_request_bytes()).unwrap();
        assert_eq!(h.leap, LeapIndicator::Unsynchronized);
        assert_eq!(h.version, 4);
        assert_eq!(h.mode, Mode::Client);
        assert_eq!(h.poll, 6);
        assert_eq!(h.precision, -20);
        assert_eq!(h.transmit_ts.to_bits(), 0xE0B1_C2D3_1234_5678);
        // 0x1B: LI 0, VN 3, mode 3 (classic ntpdate v3 request).
        let mut b = [0u8; 48];
        b[0] = 0x1B;
        let h = NtpHeader::decode(&b).unwrap();
        assert_eq!(
            (h.leap, h.version, h.mode),
            (LeapIndicator::NoWarning, 3, Mode::Client)
        );
        // 0x24: LI 0, VN 4, mode 4; 0x5C: LI 1, VN 3, mode 4.
        b[0] = 0x24;
        assert_eq!(NtpHeader::decode(&b).unwrap().mode, Mode::Server);
        b[0] = 0x5C;
        let h = NtpHeader::decode(&b).unwrap();
        assert_eq!(
            (h.leap, h.version, h.mode),
            (LeapIndicator::InsertSecond, 3, Mode::Server)
        );
    }

    #[test]
    fn field_offsets() {
        let h = NtpHeader {
            leap: LeapIndicator::DeleteSecond,
            version: 4,
            mode: Mode::Server,
            stratum: 2,
            poll: -1,
            precision: -23,
            root_delay: NtpShort::from_bits(0x0102_0304),
            root_dispersion: NtpShort::from_bits(0x0506_0708),
            reference_id: ReferenceId(*b"ABCD"),
            reference_ts: NtpTimestamp::from_bits(0x1111_1111_2222_2222),
            origin_ts: NtpTimestamp::from_bits(0x3333_3333_4444_4444),
            receive_ts: NtpTimestamp::from_bits(0x5555_5555_6666_6666),
            transmit_ts: NtpTimestamp::from_bits(0x7777_7777_8888_8888),
        };
        let mut b = [0u8; 48];
        h.encode(&mut b);
        assert_eq!(b[0], 0b10_100_100);
        assert_eq!(&b[1..4], &[2, 0xFF, 0xE9]);
        assert_eq!(&b[4..12], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&b[12..16], b"ABCD");
        assert_eq!(&b[16..20], &[0x11; 4]);
        assert_eq!(&b[28..32], &[0x44; 4]);
        assert_eq!(&b[32..36], &[0x55; 4]);
        assert_eq!(&b[44..48], &[0x88; 4]);
        assert_eq!(NtpHeader::decode(&b), Ok(h));
    }

    #[test]
    fn version_is_masked_to_three_bits_on_encode() {
        let h = NtpHeader {
            version: 12,
            mode: Mode::Client,
            ..NtpHeader::default()
        };
        let mut b = [0u8; 48];
        h.encode(&mut b);
        assert_eq!(b[0], (4 << 3) | 3);
    }

    #[test]
    fn short_buffers_are_rejected() {
        assert_eq!(NtpHeader::decode(&[0u8; 47]), Err(PacketError::TooShort));
        assert_eq!(parse_packet(&[]), Err(PacketError::TooShort));
        assert_eq!(
            NtpHeader::default().encode_into(&mut [0u8; 47]),
            Err(PacketError::BufferTooSmall)
        );
        assert_eq!(NtpHeader::default().encode_into(&mut [0u8; 60]), Ok(48));
    }

    #[test]
    fn kiss_code_only_at_stratum_zero() {
        let mut h = NtpHeader {
            reference_id: ReferenceId::RATE,
            ..NtpHeader::default()
        };
        assert_eq!(h.kiss_code(), Some(KissCode::Rate));
        h.stratum = 1;
        assert_eq!(h.kiss_code(), None);
    }

    #[test]
    fn bare_header_has_no_extensions_or_mac() {
        let buf = client_request_bytes();
        let p = parse_packet(&buf).unwrap();
        assert!(p.extensions.is_empty());
        assert_eq!(p.mac, None);
    }

    #[test]
    fn mac_trailers_after_header() {
        let mut buf = [0u8; 72];
        buf[..48].copy_from_slice(&client_request_bytes());
        buf[48..52].copy_from_slice(&42u32.to_be_bytes());
        let nak = parse_packet(&buf[..52]).unwrap();
        assert_eq!(nak.mac, Some(MacTrailer::CryptoNak { key_id: 42 }));
        let md5 = parse_packet(&buf[..68]).unwrap();
        assert!(
            matches!(md5.mac, Some(MacTrailer::Digest { key_id: 42, digest }) if digest.len() == 16)
        );
        let sha1 = parse_packet(&buf[..72]).unwrap();
        assert!(
            matches!(sha1.mac, Some(MacTrailer::Digest { key_id: 42, digest }) if digest.len() == 20)
        );
        // Key id 20 would also frame as a 20-octet type-0 extension field;
        // it must still be taken as a MAC.
        buf[48..52].copy_from_slice(&20u32.to_be_bytes());
        let ambiguous = parse_packet(&buf[..68]).unwrap();
        assert!(ambiguous.extensions.is_empty());
        assert_eq!(ambiguous.mac.map(|m| m.key_id()), Some(20));
    }

    #[test]
    fn extensions_with_and_without_mac() {
        let mut buf = [0u8; 200];
        buf[..48].copy_from_slice(&client_request_bytes());
        let mut n = 48;
        n += write_extension_field(&mut buf[n..], 0x0104, &[7; 32], 0).unwrap();
        n += write_extension_field(&mut buf[n..], 0x0204, &[8; 60], 0).unwrap();
        let ext_end = n;
        let p = parse_packet(&buf[..n]).unwrap();
        assert_eq!(p.extensions.len(), ext_end - 48);
        assert_eq!(p.mac, None);
        let types: Vec<u16> = extension_fields(p.extensions)
            .map(|f| f.unwrap().field_type)
            .collect();
        assert_eq!(types, [0x0104, 0x0204]);

        // Same fields followed by a 20-octet MD5 MAC.
        buf[n..n + 4].copy_from_slice(&9u32.to_be_bytes());
        n += 20;
        let p = parse_packet(&buf[..n]).unwrap();
        assert_eq!(p.extensions.len(), ext_end - 48);
        assert_eq!(p.mac.map(|m| m.key_id()), Some(9));

        // A 16-octet last field without MAC is accepted (liberal).
        let mut small = [0u8; 64];
        small[..48].copy_from_slice(&client_request_bytes());
        write_extension_field(&mut small[48..], 0x0104, &[], 0).unwrap();
        assert_eq!(parse_packet(&small).unwrap().extensions.len(), 16);
    }

    #[test]
    fn malformed_tails_are_rejected() {
        let mut buf = [0u8; 100];
        buf[..48].copy_from_slice(&client_request_bytes());
        // Remainders that are neither a MAC length nor a field.
        for len in [49, 51, 56, 60, 63, 70] {
            assert_eq!(
                parse_packet(&buf[..len]),
                Err(PacketError::Malformed),
                "len {len}"
            );
        }
        // A field whose length points beyond the buffer.
        buf[50..52].copy_from_slice(&64u16.to_be_bytes());
        assert_eq!(parse_packet(&buf[..80]), Err(PacketError::Malformed));
        // A field that leaves 8 stray octets behind.
        buf[50..52].copy_from_slice(&24u16.to_be_bytes());
        assert_eq!(parse_packet(&buf[..80]), Err(PacketError::Malformed));
    }

    fn arb_header() -> impl Strategy<Value = NtpHeader> {
        (
            (
                0u8..4,
                0u8..8,
                0u8..8,
                any::<u8>(),
                any::<i8>(),
                any::<i8>(),
            ),
            (any::<u32>(), any::<u32>(), any::<[u8; 4]>()),
            (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()),
        )
            .prop_map(
                |((li, vn, mode, stratum, poll, precision), (rd, rdisp, refid), (r, o, rx, tx))| {
                    NtpHeader {
                        leap: LeapIndicator::from_bits(li),
                        version: vn,
                        mode: Mode::from_bits(mode),
                        stratum,
                        poll,
                        precision,
                        root_delay: NtpShort::from_bits(rd),
                        root_dispersion: NtpShort::from_bits(rdisp),
                        reference_id: ReferenceId(refid),
                        reference_ts: NtpTimestamp::from_bits(r),
                        origin_ts: NtpTimestamp::from_bits(o),
                        receive_ts: NtpTimestamp::from_bits(rx),
                        transmit_ts: NtpTimestamp::from_bits(tx),
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn header_round_trips(h in arb_header()) {
            let mut b = [0u8; 48];
            h.encode(&mut b);
            prop_assert_eq!(NtpHeader::decode(&b), Ok(h));
        }

        #[test]
        fn bytes_round_trip(b in any::<[u8; 48]>()) {
            let mut out = [0u8; 48];
            NtpHeader::decode(&b).unwrap().encode(&mut out);
            prop_assert_eq!(out, b);
        }

        #[test]
        fn parse_never_panics_and_partitions(buf in proptest::collection::vec(any::<u8>(), 0..160)) {
            if let Ok(p) = parse_packet(&buf) {
                let mac_len = match p.mac {
                    None => 0,
                    Some(MacTrailer::CryptoNak { .. }) => 4,
                    Some(MacTrailer::Digest { digest, .. }) => 4 + digest.len(),
                };
                prop_assert_eq!(48 + p.extensions.len() + mac_len, buf.len());
                prop_assert!(extension_fields(p.extensions).all(|f| f.is_ok()));
            }
        }

        #[test]
        fn enums_are_total(bits: u8) {
            prop_assert_eq!(LeapIndicator::from_bits(bits).to_bits(), bits & 3);
            prop_assert_eq!(Mode::from_bits(bits).to_bits(), bits & 7);
        }
    }
}
