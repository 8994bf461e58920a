//! Authenticated mode 6: checking the MAC of a request and signing the response, the way
//! classic ntpd and NTPsec do (RFC 9327 §4.1, ntpd's `process_control` and
//! `ctl_flushpkt`).
//!
//! * A request is authenticated when, after its header and data padded with zeros to a
//!   multiple of eight octets ([`mac_offset`]), it carries a key id and a digest that
//!   verify with that key — which must be in the keys file and trusted, as ntpd's
//!   `authistrusted` requires. The digest covers everything before the key id.
//! * Writes (`WRITEVAR`, `:config`, `saveconfig`, and the authenticated ordered lists)
//!   need more: the key must be the `controlkey` ([`ControlAuth::authorizes`]).
//! * The response to an authenticated request is signed with the same key, each
//!   fragment on its own: data padded with zeros to eight octets, then key id and
//!   digest, which is where NTPsec's ntpq checks it. An error response is twelve octets
//!   with the MAC straight after the header, as both ntpd and NTPsec send it.
//! * A request whose MAC does not verify is answered unsigned (ntpd signs with key 0,
//!   that is not at all); the answer tells nothing a forger could use.

use meridian_auth::{KeyStore, MAX_MAC_LEN};
use meridian_proto::control::{mac_offset, RequestMac, HEADER_LEN, MAX_FRAGMENT_LEN};

/// Longest signed fragment: a full fragment, padding to eight (a full fragment is
/// already aligned) and the longest MAC.
pub const MAX_SIGNED_FRAGMENT_LEN: usize = MAX_FRAGMENT_LEN + MAX_MAC_LEN;

/// What a request's MAC says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlAuth {
    /// No MAC.
    None,
    /// A MAC that verifies with this trusted key.
    Valid {
        /// The key.
        key_id: u32,
    },
    /// A MAC that does not verify: unknown or untrusted key, or a wrong digest.
    Failed {
        /// The key id the request claims.
        key_id: u32,
    },
}

impl ControlAuth {
    /// Check `mac` (from [`meridian_proto::control::parse_request`]) against `keys`.
    /// The digests are compared in constant time.
    pub fn verify(keys: &KeyStore, mac: Option<RequestMac<'_>>) -> ControlAuth {
        let Some(mac) = mac else {
            return ControlAuth::None;
        };
        let key_id = mac.key_id;
        let mut expected = [0u8; MAX_MAC_LEN];
        match keys.sign(mac.signed, key_id, &mut expected) {
            Ok(len) if len == 4 + mac.digest.len() && same(&expected[4..len], mac.digest) => {
                ControlAuth::Valid { key_id }
            }
            _ => ControlAuth::Failed { key_id },
        }
    }

    /// The key to sign the response with.
    pub fn signing_key(self) -> Option<u32> {
        match self {
            ControlAuth::Valid { key_id } => Some(key_id),
            ControlAuth::None | ControlAuth::Failed { .. } => None,
        }
    }

    /// Whether the request may write: authenticated with the `controlkey`. Without a
    /// `controlkey` nothing may (ntpd's `ctl_auth_keyid` 0 matches no key).
    pub fn authorizes(self, control_key: Option<u16>) -> bool {
        matches!((self, control_key), (ControlAuth::Valid { key_id }, Some(k)) if key_id == u32::from(k))
    }
}

/// Constant-time equality of two digests of the same length.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

/// Sign one response fragment (`fragment`, header and data padded to four) with
/// `key_id` into `out`; returns the signed length, or `None` if the key cannot sign
/// (it verified a moment ago, so only if the keys were swapped in between: then the
/// caller sends nothing rather than an unsigned reply to a signed request).
///
/// An error response (a bare header) gets its MAC right after the twelve octets, as
/// ntpd's and NTPsec's `ctl_error` put it; anything else is padded to eight first.
pub fn sign_fragment(
    keys: &KeyStore,
    key_id: u32,
    fragment: &[u8],
    error: bool,
    out: &mut [u8; MAX_SIGNED_FRAGMENT_LEN],
) -> Option<usize> {
    let body = if error {
        HEADER_LEN
    } else {
        mac_offset(fragment.len())
    };
    let src = fragment.get(..fragment.len().min(body))?;
    out.get_mut(..body)?.fill(0);
    out.get_mut(..src.len())?.copy_from_slice(src);
    keys.sign_in_place(out, body, key_id).ok()
}

/// The `controlkey` of `config`, with a warning in the log when `keys` cannot use it
/// (not in the keys file, or not a `trustedkey`): then no write will ever be authorized,
/// which is safe but rarely what the administrator meant.
pub fn control_key(config: &meridian_conf::Config, keys: &KeyStore) -> Option<u16> {
    let key = config.control_key?;
    if !keys.is_trusted(u32::from(key)) {
        tracing::warn!(
            "controlkey {key} is not a trusted key in the keys file: mode 6 writes will be \
             refused (add it to the keys file and to trustedkey)"
        );
    }
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_auth::parse_keys;

    fn keys() -> KeyStore {
        let parsed = parse_keys(
            "1 MD5 abcdefgh\n2 SHA1 0123456789abcdef0123456789abcdef01234567\n\
             3 AES128CMAC 000102030405060708090a0b0c0d0e0f\n4 MD5 untrusted\n",
            "k",
        );
        KeyStore::new(parsed.into_result().unwrap(), [1, 2, 3])
    }

    fn signed_request(keys: &KeyStore, key: u32, data: &[u8]) -> Vec<u8> {
        let mut b = vec![0x16, 3, 0, 1, 0, 0, 0, 0, 0, 0, 0, data.len() as u8];
        b.extend_from_slice(data);
        b.resize(mac_offset(b.len()), 0);
        let mut buf = [0u8; 128];
        buf[..b.len()].copy_from_slice(&b);
        let n = keys.sign_in_place(&mut buf, b.len(), key).unwrap();
        buf[..n].to_vec()
    }

    fn auth_of(keys: &KeyStore, datagram: &[u8]) -> ControlAuth {
        let r = meridian_proto::control::parse_request(datagram).unwrap();
        ControlAuth::verify(keys, r.mac)
    }

    #[test]
    fn every_key_type_verifies_and_tampering_fails() {
        let k = keys();
        for key in [1u32, 2, 3] {
            let req = signed_request(&k, key, b"leap=0");
            assert_eq!(auth_of(&k, &req), ControlAuth::Valid { key_id: key });
            let mut bad = req.clone();
            bad[13] ^= 1;
            assert_eq!(auth_of(&k, &bad), ControlAuth::Failed { key_id: key });
            let mut bad = req.clone();
            *bad.last_mut().unwrap() ^= 1;
            assert_eq!(auth_of(&k, &bad), ControlAuth::Failed { key_id: key });
        }
        // Unknown, untrusted, and a digest of the wrong length for the key.
        let all = KeyStore::new(
            parse_keys("4 MD5 untrusted\n9 MD5 whatever\n", "k")
                .into_result()
                .unwrap(),
            [4, 9],
        );
        for key in [4u32, 9] {
            let req = signed_request(&all, key, b"x");
            assert_eq!(auth_of(&k, &req), ControlAuth::Failed { key_id: key });
        }
        let mut md5_as_sha1 = signed_request(&k, 2, b"x");
        md5_as_sha1.truncate(md5_as_sha1.len() - 4);
        assert_eq!(auth_of(&k, &md5_as_sha1), ControlAuth::Failed { key_id: 2 });
        let plain = [0x16, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(auth_of(&k, &plain), ControlAuth::None);
    }

    #[test]
    fn only_the_control_key_authorizes() {
        let valid = ControlAuth::Valid { key_id: 2 };
        assert!(valid.authorizes(Some(2)));
        assert!(!valid.authorizes(Some(1)));
        assert!(!valid.authorizes(None));
        assert!(!ControlAuth::Failed { key_id: 2 }.authorizes(Some(2)));
        assert!(!ControlAuth::None.authorizes(Some(2)));
        assert_eq!(valid.signing_key(), Some(2));
        assert_eq!(ControlAuth::Failed { key_id: 2 }.signing_key(), None);
    }

    #[test]
    fn fragments_are_signed_after_eight_octet_padding() {
        let k = keys();
        let mut out = [0u8; MAX_SIGNED_FRAGMENT_LEN];
        // 12 header + 8 data = 20: padded to 24, then key id and SHA-1.
        let frag: Vec<u8> = (0..20u8).collect();
        let n = sign_fragment(&k, 2, &frag, false, &mut out).unwrap();
        assert_eq!(n, 24 + 24);
        assert_eq!(&out[..20], &frag[..]);
        assert_eq!(&out[20..24], &[0; 4]);
        assert_eq!(&out[24..28], &2u32.to_be_bytes());
        let mut check = [0u8; MAX_MAC_LEN];
        k.sign(&out[..24], 2, &mut check).unwrap();
        assert_eq!(&out[24..n], &check[..]);
        // An error: MAC right after the header.
        let n = sign_fragment(&k, 1, &frag[..12], true, &mut out).unwrap();
        assert_eq!((n, &out[12..16]), (12 + 20, &1u32.to_be_bytes()[..]));
        // A full fragment is already aligned.
        let full = [0u8; MAX_FRAGMENT_LEN];
        assert_eq!(
            sign_fragment(&k, 2, &full, false, &mut out),
            Some(MAX_SIGNED_FRAGMENT_LEN)
        );
        assert_eq!(sign_fragment(&k, 4, &frag, false, &mut out), None);
    }
}
