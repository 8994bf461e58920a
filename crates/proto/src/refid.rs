//! The 32-bit reference identifier ([`ReferenceId`]) and the kiss-o'-death
//! codes ([`KissCode`]) it carries when the stratum is 0 (RFC 5905 §7.3, §7.4).

use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use md5::{Digest, Md5};

/// The reference identifier field of an NTP header.
///
/// Its meaning depends on the stratum: an ASCII tag for stratum 0 (kiss
/// code) and 1 (reference clock type), otherwise the IPv4 address of the
/// upstream server, or a hash of its IPv6 address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct ReferenceId(pub [u8; 4]);

impl ReferenceId {
    /// Kiss code: rate exceeded, the client must reduce its poll rate.
    pub const RATE: ReferenceId = ReferenceId(*b"RATE");
    /// Kiss code: access denied, the client must stop polling this server.
    pub const DENY: ReferenceId = ReferenceId(*b"DENY");
    /// Kiss code: access restricted, the client must stop polling this server.
    pub const RSTR: ReferenceId = ReferenceId(*b"RSTR");
    /// The association has not synchronized yet (classic ntpd's start-up refid).
    pub const INIT: ReferenceId = ReferenceId(*b"INIT");
    /// Undisciplined local clock.
    pub const LOCL: ReferenceId = ReferenceId(*b"LOCL");
    /// The clock was stepped; the association restarts.
    pub const STEP: ReferenceId = ReferenceId(*b"STEP");

    /// The refid a downstream server uses for an IPv4 upstream: its address.
    pub fn from_ipv4(addr: Ipv4Addr) -> Self {
        ReferenceId(addr.octets())
    }

    /// The refid for an IPv6 upstream: the first four octets of the MD5
    /// digest of the 16 address octets, as classic ntpd's `addr2refid`
    /// computes it (RFC 5905 §7.3). Hashed on the stack, no allocation.
    pub fn from_ipv6(addr: Ipv6Addr) -> Self {
        let digest = Md5::digest(addr.octets());
        ReferenceId([digest[0], digest[1], digest[2], digest[3]])
    }

    /// Dispatches to [`ReferenceId::from_ipv4`] or [`ReferenceId::from_ipv6`].
    pub fn from_ip(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(v4) => Self::from_ipv4(v4),
            IpAddr::V6(v6) => Self::from_ipv6(v6),
        }
    }

    /// An ASCII tag such as `b"GPS"`: at most 4 bytes are used, shorter
    /// tags are NUL-padded on the right.
    pub fn from_ascii(tag: &[u8]) -> Self {
        let mut id = [0u8; 4];
        for (dst, src) in id.iter_mut().zip(tag) {
            *dst = *src;
        }
        ReferenceId(id)
    }

    /// Interprets the identifier as a kiss code. Only meaningful when the
    /// stratum is 0; see [`crate::NtpHeader::kiss_code`].
    pub fn kiss_code(self) -> KissCode {
        match &self.0 {
            b"RATE" => KissCode::Rate,
            b"DENY" => KissCode::Deny,
            b"RSTR" => KissCode::Rstr,
            other => KissCode::Other(*other),
        }
    }

    /// The identifier as a big-endian integer (wire order).
    pub fn to_u32(self) -> u32 {
        u32::from_be_bytes(self.0)
    }

    /// Builds the identifier from a big-endian integer (wire order).
    pub fn from_u32(v: u32) -> Self {
        ReferenceId(v.to_be_bytes())
    }

    /// Formats the identifier the way ntpq shows it for a peer at `stratum`:
    /// `.GPS.`-style ASCII for stratum 0, 1 and ≥ 16, a dotted quad for
    /// 2..=15.
    ///
    /// Stratum ≥ 16 is shown as ASCII because that is how classic ntpd
    /// reports an unsynchronized peer (stratum 16 with refid `INIT`, `STEP`,
    /// ...); showing `73.78.73.84` there would hide the useful tag.
    pub fn display(self, stratum: u8) -> impl fmt::Display {
        RefIdDisplay { id: self, stratum }
    }
}

/// Display adapter returned by [`ReferenceId::display`].
struct RefIdDisplay {
    id: ReferenceId,
    stratum: u8,
}

impl fmt::Display for RefIdDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d] = self.id.0;
        if (2..16).contains(&self.stratum) {
            return write!(f, "{a}.{b}.{c}.{d}");
        }
        f.write_str(".")?;
        // Like ntpd's ctl_putrefid: stop at the first NUL and mask bytes a
        // terminal should not see, so a hostile peer cannot inject escapes.
        for &byte in self.id.0.iter().take_while(|&&byte| byte != 0) {
            let shown = if byte.is_ascii_graphic() || byte == b' ' {
                byte as char
            } else {
                '.'
            };
            fmt::Write::write_char(f, shown)?;
        }
        f.write_str(".")
    }
}

/// A kiss-o'-death code (RFC 5905 §7.4): the reference identifier of a
/// stratum-0 packet.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum KissCode {
    /// `RATE`: reduce the polling rate.
    Rate,
    /// `DENY`: access denied; stop polling.
    Deny,
    /// `RSTR`: access restricted; stop polling.
    Rstr,
    /// Any other code (e.g. `INIT`); RFC 5905 says to ignore unknown codes.
    Other([u8; 4]),
}

impl KissCode {
    /// The reference identifier that carries this code on the wire.
    pub fn to_reference_id(self) -> ReferenceId {
        match self {
            KissCode::Rate => ReferenceId::RATE,
            KissCode::Deny => ReferenceId::DENY,
            KissCode::Rstr => ReferenceId::RSTR,
            KissCode::Other(raw) => ReferenceId(raw),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_refid_is_the_address() {
        let id = ReferenceId::from_ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(id.0, [192, 0, 2, 1]);
        assert_eq!(id.to_u32(), 0xC000_0201);
        assert_eq!(ReferenceId::from_u32(0xC000_0201), id);
        assert_eq!(id.display(2).to_string(), "192.0.2.1");
    }

    #[test]
    fn ipv6_refid_is_md5_prefix() {
        // MD5 of 16 zero octets is 4ae71336e44bf9bf79d2752e234818a5.
        let id = ReferenceId::from_ip(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        assert_eq!(id.0, [0x4a, 0xe7, 0x13, 0x36]);
    }

    #[test]
    fn ascii_tags_pad_and_truncate() {
        assert_eq!(ReferenceId::from_ascii(b"GPS").0, *b"GPS\0");
        assert_eq!(ReferenceId::from_ascii(b"LOCL"), ReferenceId::LOCL);
        assert_eq!(ReferenceId::from_ascii(b"TOOLONG").0, *b"TOOL");
        assert_eq!(ReferenceId::from_ascii(b"").0, [0; 4]);
    }

    #[test]
    fn display_follows_ntpq() {
        assert_eq!(
            ReferenceId::from_ascii(b"GPS").display(1).to_string(),
            ".GPS."
        );
        assert_eq!(ReferenceId::RATE.display(0).to_string(), ".RATE.");
        assert_eq!(ReferenceId::INIT.display(16).to_string(), ".INIT.");
        assert_eq!(ReferenceId::LOCL.display(15).to_string(), "76.79.67.76");
        // Control characters are masked.
        assert_eq!(
            ReferenceId([b'A', 0x1b, b'B', 0x7f]).display(1).to_string(),
            ".A.B.."
        );
    }

    #[test]
    fn kiss_codes_round_trip() {
        assert_eq!(ReferenceId::RATE.kiss_code(), KissCode::Rate);
        assert_eq!(ReferenceId::DENY.kiss_code(), KissCode::Deny);
        assert_eq!(ReferenceId::RSTR.kiss_code(), KissCode::Rstr);
        assert_eq!(ReferenceId::INIT.kiss_code(), KissCode::Other(*b"INIT"));
        for code in [
            KissCode::Rate,
            KissCode::Deny,
            KissCode::Rstr,
            KissCode::Other(*b"STEP"),
        ] {
            assert_eq!(code.to_reference_id().kiss_code(), code);
        }
    }
}
