//! The MAC primitives: `H(key || data)` for the classic digest keys (MD5,
//! SHA-1) and AES-CMAC (RFC 4493, as RFC 8573 uses it) for the cipher keys.
//!
//! A [`MacKey`] holds the algorithm state already keyed (the digest state
//! after absorbing the secret, or the expanded AES key schedule), so each
//! MAC is a clone of that state plus one pass over the packet: no
//! allocation and no per-packet key setup on the server's hot path.

use std::fmt;

use aes::{Aes128, Aes192, Aes256};
use cmac::{Cmac, Mac as _};
use md5::{Digest as _, Md5};
use sha1::Sha1;

use crate::keytype::KeyType;

/// The longest digest any key type produces (SHA-1's 20 octets).
pub const MAX_DIGEST_LEN: usize = 20;

/// A computed digest: up to [`MAX_DIGEST_LEN`] octets, on the stack.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    bytes: [u8; MAX_DIGEST_LEN],
    len: usize,
}

impl Digest {
    fn new(src: &[u8]) -> Digest {
        let mut bytes = [0u8; MAX_DIGEST_LEN];
        let len = src.len().min(MAX_DIGEST_LEN);
        bytes[..len].copy_from_slice(&src[..len]);
        Digest { bytes, len }
    }

    /// The digest octets.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Why a secret cannot be used with a key type.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct KeyLengthError {
    /// The key type.
    pub key_type: KeyType,
    /// The secret's length in octets.
    pub len: usize,
}

impl fmt::Display for KeyLengthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.key_type.required_key_len() {
            Some(want) => write!(
                f,
                "{} keys are {want} octets ({} hex digits), this one is {}",
                self.key_type,
                want * 2,
                self.len
            ),
            None => write!(
                f,
                "{} key of {} octets is not usable",
                self.key_type, self.len
            ),
        }
    }
}

/// The keyed state, one variant per algorithm.
#[derive(Clone)]
enum State {
    Md5(Md5),
    Sha1(Sha1),
    Aes128(Cmac<Aes128>),
    Aes192(Cmac<Aes192>),
    Aes256(Cmac<Aes256>),
}

/// A secret bound to its algorithm, ready to compute MACs.
///
/// Its `Debug` output names the type only: secrets never reach logs.
#[derive(Clone)]
pub struct MacKey {
    key_type: KeyType,
    state: State,
}

impl fmt::Debug for MacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MacKey({}, <secret>)", self.key_type)
    }
}

impl MacKey {
    /// Binds `secret` to `key_type`. CMAC keys must be exactly the cipher's
    /// key length; digest keys may be any length but empty.
    pub fn new(key_type: KeyType, secret: &[u8]) -> Result<MacKey, KeyLengthError> {
        let err = KeyLengthError {
            key_type,
            len: secret.len(),
        };
        if secret.is_empty() {
            return Err(err);
        }
        let state = match key_type {
            KeyType::Md5 => State::Md5(Md5::new_with_prefix(secret)),
            KeyType::Sha1 => State::Sha1(Sha1::new_with_prefix(secret)),
            KeyType::Aes128Cmac => State::Aes128(Cmac::new_from_slice(secret).map_err(|_| err)?),
            KeyType::Aes192Cmac => State::Aes192(Cmac::new_from_slice(secret).map_err(|_| err)?),
            KeyType::Aes256Cmac => State::Aes256(Cmac::new_from_slice(secret).map_err(|_| err)?),
        };
        Ok(MacKey { key_type, state })
    }

    /// The key's type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The MAC of `data`: `H(secret || data)` or `CMAC(secret, data)`,
    /// [`KeyType::digest_len`] octets long.
    pub fn compute(&self, data: &[u8]) -> Digest {
        match &self.state {
            State::Md5(h) => Digest::new(&h.clone().chain_update(data).finalize()),
            State::Sha1(h) => Digest::new(&h.clone().chain_update(data).finalize()),
            State::Aes128(m) => Digest::new(&m.clone().chain_update(data).finalize().into_bytes()),
            State::Aes192(m) => Digest::new(&m.clone().chain_update(data).finalize().into_bytes()),
            State::Aes256(m) => Digest::new(&m.clone().chain_update(data).finalize().into_bytes()),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Decodes hex test vectors.
    pub(crate) fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn mac(t: KeyType, key: &[u8], data: &[u8]) -> Vec<u8> {
        MacKey::new(t, key)
            .unwrap()
            .compute(data)
            .as_bytes()
            .to_vec()
    }

    #[test]
    fn issue_vector_md5() {
        assert_eq!(
            mac(KeyType::Md5, b"abcdefgh", b"ijklmnopqrstuvwx"),
            unhex("0c0e84cf0bb7a8688e5238dbbc1c3953")
        );
    }

    #[test]
    fn issue_vector_aes128_cmac() {
        assert_eq!(
            mac(
                KeyType::Aes128Cmac,
                b"0123456789abcdef",
                b"ijklmnopqrstuvwx"
            ),
            unhex("b0a1cfd27f690c43a75d6c55914b1514")
        );
    }

    #[test]
    fn sha1_is_key_then_data() {
        // python3 -c "import hashlib;print(hashlib.sha1(b'abcdefgh'+b'ijklmnopqrstuvwx').hexdigest())"
        assert_eq!(
            mac(KeyType::Sha1, b"abcdefgh", b"ijklmnopqrstuvwx"),
            unhex("d717e22e1659305fad6ef08864923db64aba9c08")
        );
    }

    #[test]
    fn md5_matches_rfc1321_split_between_key_and_data() {
        // MD5("abc") = 900150983cd24fb0d6963f7d28e17f72 (RFC 1321 A.5).
        assert_eq!(
            mac(KeyType::Md5, b"a", b"bc"),
            unhex("900150983cd24fb0d6963f7d28e17f72")
        );
    }

    /// RFC 4493 §4 examples: key 2b7e1516 28aed2a6 abf71588 09cf4f3c.
    #[test]
    fn aes128_cmac_rfc4493_examples() {
        let key = unhex("2b7e151628aed2a6abf7158809cf4f3c");
        let m = unhex(
            "6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51
             30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710",
        );
        for (len, want) in [
            (0, "bb1d6929e95937287fa37d129b756746"),
            (16, "070a16b46b4d4144f79bdd9dd04a287c"),
            (40, "dfa66747de9ae63030ca32611497c827"),
            (64, "51f0bebf7e3b9d92fc49741779363cfe"),
        ] {
            assert_eq!(
                mac(KeyType::Aes128Cmac, &key, &m[..len]),
                unhex(want),
                "Mlen {len}"
            );
        }
    }

    /// NIST SP 800-38B D.3 / RFC 4493-style example for AES-256-CMAC
    /// (key 603deb10…, 16-octet message).
    #[test]
    fn aes256_cmac_sp800_38b_example() {
        let key = unhex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4");
        let m = unhex("6bc1bee22e409f96e93d7e117393172a");
        assert_eq!(
            mac(KeyType::Aes256Cmac, &key, &[]),
            unhex("028962f61b7bf89efc6b551f4667d983")
        );
        assert_eq!(
            mac(KeyType::Aes256Cmac, &key, &m),
            unhex("28a7023f452e8f82bd4bf28d8c37c35c")
        );
    }

    /// NIST SP 800-38B D.2 example 1 (AES-192, empty message).
    #[test]
    fn aes192_cmac_sp800_38b_example() {
        let key = unhex("8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b");
        assert_eq!(
            mac(KeyType::Aes192Cmac, &key, &[]),
            unhex("d17ddf46adaacde531cac483de7a9367")
        );
    }

    #[test]
    fn cmac_keys_must_have_the_cipher_length() {
        assert!(MacKey::new(KeyType::Aes128Cmac, &[0; 15]).is_err());
        assert!(MacKey::new(KeyType::Aes128Cmac, &[0; 32]).is_err());
        assert!(MacKey::new(KeyType::Aes256Cmac, &[0; 16]).is_err());
        assert!(MacKey::new(KeyType::Md5, &[]).is_err());
        assert!(MacKey::new(KeyType::Sha1, &[0; 64]).is_ok());
    }

    #[test]
    fn the_keyed_state_is_reused_not_consumed() {
        let k = MacKey::new(KeyType::Md5, b"abcdefgh").unwrap();
        assert_eq!(k.compute(b"x"), k.compute(b"x"));
        assert_ne!(k.compute(b"x"), k.compute(b"y"));
    }

    #[test]
    fn debug_hides_the_secret() {
        let k = MacKey::new(KeyType::Md5, b"sekrit").unwrap();
        assert_eq!(format!("{k:?}"), "MacKey(MD5, <secret>)");
    }
}
