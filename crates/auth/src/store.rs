//! The key store: the keys file plus the `trustedkey` set, and the two
//! operations on packets, [`KeyStore::sign`] and [`KeyStore::verify`].
//!
//! Both work on caller buffers and never allocate, so the server can use
//! them per packet. As in ntpd, a key that is defined but not trusted can
//! neither sign nor verify.

use std::collections::BTreeMap;
use std::fmt;

use meridian_proto::{parse_packet, MacTrailer, Packet};
use subtle::ConstantTimeEq;

use crate::keyfile::KeyFile;
use crate::mac::MacKey;

/// The longest MAC trailer any key produces (key id + SHA-1 digest).
pub const MAX_MAC_LEN: usize = 24;

/// What the MAC trailer of a received packet says about it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Verification {
    /// No MAC trailer.
    Unauthenticated,
    /// The MAC is correct for this trusted key.
    Valid {
        /// The key that authenticated the packet.
        key_id: u32,
    },
    /// The key is known and trusted but the MAC is wrong: a forged or
    /// damaged packet, or a digest whose length is not the key type's.
    Invalid {
        /// The key id the packet claims.
        key_id: u32,
    },
    /// A lone key id: the sender could not authenticate what we sent.
    CryptoNak {
        /// The key id of the crypto-NAK (normally 0).
        key_id: u32,
    },
    /// A MAC for a key id not in the keys file (including 0 and the Autokey
    /// range above 65535).
    UnknownKey {
        /// The key id the packet claims.
        key_id: u32,
    },
    /// A MAC for a key in the keys file that is not trusted.
    Untrusted {
        /// The key id the packet claims.
        key_id: u32,
    },
    /// The octets after the header are neither extension fields nor a MAC
    /// of a recognised length: no MAC can be found, and the packet should
    /// be dropped rather than treated as unauthenticated.
    Malformed,
}

impl Verification {
    /// Whether the packet is authenticated by a trusted key.
    pub fn is_valid(&self) -> bool {
        matches!(self, Verification::Valid { .. })
    }
}

impl fmt::Display for Verification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verification::Unauthenticated => f.write_str("no MAC"),
            Verification::Valid { key_id } => write!(f, "authenticated with key {key_id}"),
            Verification::Invalid { key_id } => write!(f, "bad MAC for key {key_id}"),
            Verification::CryptoNak { key_id } => {
                write!(
                    f,
                    "crypto-NAK (key {key_id}): the peer could not authenticate our packet"
                )
            }
            Verification::UnknownKey { key_id } => write!(f, "MAC with unknown key {key_id}"),
            Verification::Untrusted { key_id } => write!(f, "MAC with untrusted key {key_id}"),
            Verification::Malformed => f.write_str("malformed packet"),
        }
    }
}

/// Why a packet could not be signed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SignError {
    /// No such key in the keys file.
    UnknownKey(u32),
    /// The key is defined but not trusted.
    Untrusted(u32),
    /// The output buffer cannot hold the trailer.
    BufferTooSmall,
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignError::UnknownKey(id) => write!(f, "key {id} is not in the keys file"),
            SignError::Untrusted(id) => write!(f, "key {id} is not trusted"),
            SignError::BufferTooSmall => f.write_str("buffer too small for the MAC"),
        }
    }
}

impl std::error::Error for SignError {}

#[derive(Clone, Debug)]
struct Entry {
    key: MacKey,
    trusted: bool,
}

/// Keys by id, each marked trusted or not.
#[derive(Clone, Debug, Default)]
pub struct KeyStore {
    keys: BTreeMap<u16, Entry>,
}

impl KeyStore {
    /// The keys of `file`, trusting those in `trusted` (the `trustedkey`
    /// ids). Trusted ids the file does not define are ignored; find them
    /// with [`KeyFile::get`] beforehand to warn about them.
    pub fn new(file: KeyFile, trusted: impl IntoIterator<Item = u16>) -> KeyStore {
        let mut keys: BTreeMap<u16, Entry> = file
            .into_map()
            .into_iter()
            .map(|(id, key)| {
                (
                    id,
                    Entry {
                        key,
                        trusted: false,
                    },
                )
            })
            .collect();
        for id in trusted {
            if let Some(e) = keys.get_mut(&id) {
                e.trusted = true;
            }
        }
        KeyStore { keys }
    }

    /// The trusted key `key_id`, or why it cannot be used.
    fn trusted_key(&self, key_id: u32) -> Result<&MacKey, SignError> {
        let entry = u16::try_from(key_id)
            .ok()
            .and_then(|id| self.keys.get(&id))
            .ok_or(SignError::UnknownKey(key_id))?;
        if entry.trusted {
            Ok(&entry.key)
        } else {
            Err(SignError::Untrusted(key_id))
        }
    }

    /// Whether `key_id` is defined and trusted.
    pub fn is_trusted(&self, key_id: u32) -> bool {
        self.trusted_key(key_id).is_ok()
    }

    /// The length of the trailer [`KeyStore::sign`] writes for `key_id`
    /// (20 or 24), if the key is usable: lets the caller size its buffer.
    pub fn mac_len(&self, key_id: u32) -> Option<usize> {
        self.trusted_key(key_id)
            .ok()
            .map(|k| k.key_type().mac_len())
    }

    /// Writes the MAC trailer for `packet_without_mac` (header and any
    /// extension fields) into the start of `out`: the key id in network
    /// order, then the digest. Returns the trailer length.
    ///
    /// To append in place, split the buffer:
    /// `let (pkt, rest) = buf.split_at_mut(len); store.sign(pkt, id, rest)`,
    /// or use [`KeyStore::sign_in_place`].
    pub fn sign(
        &self,
        packet_without_mac: &[u8],
        key_id: u32,
        out: &mut [u8],
    ) -> Result<usize, SignError> {
        let key = self.trusted_key(key_id)?;
        let len = key.key_type().mac_len();
        let trailer = out.get_mut(..len).ok_or(SignError::BufferTooSmall)?;
        let digest = key.compute(packet_without_mac);
        trailer[..4].copy_from_slice(&key_id.to_be_bytes());
        trailer[4..].copy_from_slice(digest.as_bytes());
        Ok(len)
    }

    /// Signs the first `len` octets of `buf` and appends the trailer
    /// after them; returns the new packet length.
    pub fn sign_in_place(
        &self,
        buf: &mut [u8],
        len: usize,
        key_id: u32,
    ) -> Result<usize, SignError> {
        if len > buf.len() {
            return Err(SignError::BufferTooSmall);
        }
        let (packet, rest) = buf.split_at_mut(len);
        Ok(len + self.sign(packet, key_id, rest)?)
    }

    /// Checks the MAC trailer of a received packet.
    ///
    /// The trailer is found as [`meridian_proto::parse_packet`] frames it
    /// (a remainder of 4, 20 or 24 octets after the extension fields); the
    /// digest length must then be the claimed key's, so a 16-octet digest
    /// for a SHA-1 key is `Invalid`. The comparison takes the same time
    /// wherever the digests differ.
    pub fn verify(&self, packet: &[u8]) -> Verification {
        let Ok(parsed) = parse_packet(packet) else {
            return Verification::Malformed;
        };
        self.verify_parsed(packet, &parsed)
    }

    /// [`KeyStore::verify`] for a packet the caller has already parsed (the server's hot
    /// path parses every request once): `parsed` must be `parse_packet(packet)`.
    pub fn verify_parsed(&self, packet: &[u8], parsed: &Packet<'_>) -> Verification {
        let (key_id, digest) = match parsed.mac {
            None => return Verification::Unauthenticated,
            Some(MacTrailer::CryptoNak { key_id }) => return Verification::CryptoNak { key_id },
            Some(MacTrailer::Digest { key_id, digest }) => (key_id, digest),
        };
        let key = match self.trusted_key(key_id) {
            Ok(key) => key,
            Err(SignError::Untrusted(_)) => return Verification::Untrusted { key_id },
            Err(_) => return Verification::UnknownKey { key_id },
        };
        if digest.len() != key.key_type().digest_len() {
            return Verification::Invalid { key_id };
        }
        // The trailer is the last 4 + digest octets, so this cannot fail.
        let Some(signed) = packet.get(..packet.len() - 4 - digest.len()) else {
            return Verification::Malformed;
        };
        let expected = key.compute(signed);
        if bool::from(expected.as_bytes().ct_eq(digest)) {
            Verification::Valid { key_id }
        } else {
            Verification::Invalid { key_id }
        }
    }
}
