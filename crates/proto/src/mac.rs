//! The symmetric-key MAC trailer that may follow the header and extension
//! fields (RFC 5905 §7.3, RFC 7822 §7.5), plus the classic MD5 digest
//! `MD5(key || packet)` used to produce and check it.

use md5::{Digest, Md5};

/// Length of a crypto-NAK: a key identifier with no digest.
pub const CRYPTO_NAK_LEN: usize = 4;
/// Length of a MAC carrying a 16-octet (MD5) digest.
pub const MAC_LEN_MD5: usize = 20;
/// Length of a MAC carrying a 20-octet (SHA-1) digest.
pub const MAC_LEN_SHA1: usize = 24;

/// The MAC trailer of a packet, borrowed from the packet buffer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MacTrailer<'a> {
    /// A lone key identifier: the sender could not authenticate our packet.
    CryptoNak {
        /// Key identifier (normally 0).
        key_id: u32,
    },
    /// A key identifier followed by a 16- or 20-octet digest.
    Digest {
        /// Key identifier.
        key_id: u32,
        /// The message digest.
        digest: &'a [u8],
    },
}

impl MacTrailer<'_> {
    /// The key identifier, present in both forms.
    pub fn key_id(&self) -> u32 {
        match *self {
            MacTrailer::CryptoNak { key_id } | MacTrailer::Digest { key_id, .. } => key_id,
        }
    }
}

/// Parses a MAC trailer that makes up the whole of `buf`. Only the lengths
/// 4 (crypto-NAK), 20 and 24 are valid; anything else gives `None`.
pub fn parse_mac_trailer(buf: &[u8]) -> Option<MacTrailer<'_>> {
    let (key, digest) = buf.split_first_chunk::<4>()?;
    let key_id = u32::from_be_bytes(*key);
    match buf.len() {
        CRYPTO_NAK_LEN => Some(MacTrailer::CryptoNak { key_id }),
        MAC_LEN_MD5 | MAC_LEN_SHA1 => Some(MacTrailer::Digest { key_id, digest }),
        _ => None,
    }
}

/// The classic NTP MD5 MAC digest: `MD5(key || data)`, where `data` is the
/// packet up to (not including) the MAC trailer.
pub fn md5_digest(key: &[u8], data: &[u8]) -> [u8; 16] {
    let mut hasher = Md5::new();
    hasher.update(key);
    hasher.update(data);
    hasher.finalize().into()
}

/// Checks an MD5 digest in constant time (with respect to the digest
/// contents), so response timing does not leak how many octets matched.
pub fn verify_md5(key: &[u8], data: &[u8], digest: &[u8]) -> bool {
    let expected = md5_digest(key, data);
    if digest.len() != expected.len() {
        return false;
    }
    let diff = expected
        .iter()
        .zip(digest)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_trailer_length() {
        assert_eq!(
            parse_mac_trailer(&[0, 0, 0, 0]),
            Some(MacTrailer::CryptoNak { key_id: 0 })
        );
        let mut mac = [0u8; 24];
        mac[..4].copy_from_slice(&7u32.to_be_bytes());
        mac[4] = 0xAB;
        let md5 = parse_mac_trailer(&mac[..20]).unwrap();
        assert_eq!(md5.key_id(), 7);
        assert!(
            matches!(md5, MacTrailer::Digest { digest, .. } if digest.len() == 16 && digest[0] == 0xAB)
        );
        let sha1 = parse_mac_trailer(&mac).unwrap();
        assert!(matches!(sha1, MacTrailer::Digest { digest, .. } if digest.len() == 20));
        for len in [0, 1, 3, 5, 16, 19, 21, 23, 25, 28] {
            assert_eq!(parse_mac_trailer(&[0u8; 28][..len]), None, "len {len}");
        }
    }

    #[test]
    fn md5_digest_is_key_then_data() {
        // RFC 1321 test vector: MD5("abc") = 900150983cd24fb0d6963f7d28e17f72,
        // split between key and data to show they are simply concatenated.
        let expected = [
            0x90, 0x01, 0x50, 0x98, 0x3c, 0xd2, 0x4f, 0xb0, 0xd6, 0x96, 0x3f, 0x7d, 0x28, 0xe1,
            0x7f, 0x72,
        ];
        assert_eq!(md5_digest(b"a", b"bc"), expected);
        assert!(verify_md5(b"", b"abc", &expected));
        let mut wrong = expected;
        wrong[15] ^= 1;
        assert!(!verify_md5(b"a", b"bc", &wrong));
        assert!(!verify_md5(b"a", b"bc", &expected[..15]));
    }
}
