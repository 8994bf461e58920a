//! How a server answers a client request given its [`Verification`], as
//! ntpd's `receive()` decides for `AM_FXMIT`:
//!
//! | request                         | default            | `restrict … notrust` |
//! | ------------------------------- | ------------------ | -------------------- |
//! | no MAC                          | unauthenticated reply | dropped           |
//! | valid MAC, trusted key          | reply signed with the same key | same     |
//! | bad MAC, unknown or untrusted key | crypto-NAK       | crypto-NAK           |
//! | crypto-NAK, malformed           | dropped            | dropped              |
//!
//! A crypto-NAK is the reply header followed by a 4-octet zero key id: it
//! tells an honest client its key is wrong, and is no larger than the
//! request that caused it, so it cannot amplify.

use crate::store::{KeyStore, SignError, Verification};

/// The trailer of a crypto-NAK: key id 0 and no digest.
pub const CRYPTO_NAK: [u8; 4] = [0; 4];

/// What to do with a client request, authentication-wise.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ServerAuthAction {
    /// Answer. With `Some(key_id)` the reply is signed with that key (the
    /// request's); with `None` it carries no MAC.
    Reply {
        /// The key to sign the reply with, if any.
        key_id: Option<u32>,
    },
    /// Answer with a crypto-NAK instead of a signed reply.
    CryptoNak,
    /// Do not answer.
    Drop,
}

/// Decides how to answer a request that verified as `verification`;
/// `notrust` is the client's `restrict notrust` flag (only authenticated
/// requests are served).
pub fn server_action(verification: Verification, notrust: bool) -> ServerAuthAction {
    match verification {
        Verification::Valid { key_id } => ServerAuthAction::Reply {
            key_id: Some(key_id),
        },
        Verification::Unauthenticated if notrust => ServerAuthAction::Drop,
        Verification::Unauthenticated => ServerAuthAction::Reply { key_id: None },
        Verification::Invalid { .. }
        | Verification::UnknownKey { .. }
        | Verification::Untrusted { .. } => ServerAuthAction::CryptoNak,
        // A client has no business sending a crypto-NAK; ntpd ignores it.
        Verification::CryptoNak { .. } | Verification::Malformed => ServerAuthAction::Drop,
    }
}

/// Appends the crypto-NAK trailer to `out`; returns its length (4).
pub fn write_crypto_nak(out: &mut [u8]) -> Result<usize, SignError> {
    let dst = out
        .get_mut(..CRYPTO_NAK.len())
        .ok_or(SignError::BufferTooSmall)?;
    dst.copy_from_slice(&CRYPTO_NAK);
    Ok(CRYPTO_NAK.len())
}

impl KeyStore {
    /// Finishes a reply whose header (and any extension fields) fills
    /// `buf[..len]`, as `action` says: signs it, appends a crypto-NAK, or
    /// leaves it bare. Returns the length to send, or `None` for
    /// [`ServerAuthAction::Drop`].
    pub fn finish_reply(
        &self,
        action: ServerAuthAction,
        buf: &mut [u8],
        len: usize,
    ) -> Result<Option<usize>, SignError> {
        match action {
            ServerAuthAction::Drop => Ok(None),
            ServerAuthAction::Reply { key_id: None } => Ok(Some(len)),
            ServerAuthAction::Reply { key_id: Some(id) } => {
                self.sign_in_place(buf, len, id).map(Some)
            }
            ServerAuthAction::CryptoNak => {
                let rest = buf.get_mut(len..).ok_or(SignError::BufferTooSmall)?;
                Ok(Some(len + write_crypto_nak(rest)?))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_ntpd_for_every_verification() {
        use ServerAuthAction::*;
        use Verification as V;
        let cases = [
            (V::Unauthenticated, Reply { key_id: None }, Drop),
            (
                V::Valid { key_id: 7 },
                Reply { key_id: Some(7) },
                Reply { key_id: Some(7) },
            ),
            (V::Invalid { key_id: 7 }, CryptoNak, CryptoNak),
            (V::UnknownKey { key_id: 9 }, CryptoNak, CryptoNak),
            (V::Untrusted { key_id: 8 }, CryptoNak, CryptoNak),
            (V::CryptoNak { key_id: 0 }, Drop, Drop),
            (V::Malformed, Drop, Drop),
        ];
        for (v, default, notrust) in cases {
            assert_eq!(server_action(v, false), default, "{v:?}");
            assert_eq!(server_action(v, true), notrust, "{v:?} notrust");
        }
    }

    #[test]
    fn crypto_nak_is_four_zero_octets() {
        let mut buf = [0xAAu8; 6];
        assert_eq!(write_crypto_nak(&mut buf[1..]), Ok(4));
        assert_eq!(buf, [0xAA, 0, 0, 0, 0, 0xAA]);
        assert_eq!(
            write_crypto_nak(&mut [0u8; 3]),
            Err(SignError::BufferTooSmall)
        );
    }
}
