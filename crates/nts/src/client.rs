//! The client side of NTS-protected NTP (RFC 8915 §5.7): per-association
//! state from NTS-KE, building authenticated requests into a caller buffer
//! and verifying responses (refilling the cookie jar from them).
//!
//! Sans-IO: the caller owns the socket and the clock and supplies the
//! randomness for the Unique Identifier; it also keeps validating the NTP
//! header itself (origin timestamp, duplicates) with `meridian_proto`'s
//! `Exchange`, which this module complements rather than replaces.

use std::collections::VecDeque;

use meridian_proto::{NtpHeader, HEADER_LEN};

use crate::aead::{random_bytes, AeadKey, NONCE_LEN};
use crate::error::NtsError;
use crate::fields::{
    located_fields, open_authenticator, parse_authenticator, seal_authenticator, write_field,
    write_zero_field, AUTH_OVERHEAD, EF_AUTHENTICATOR, EF_COOKIE, EF_COOKIE_PLACEHOLDER,
    EF_UNIQUE_ID, MAX_PLAINTEXT, NTS_NAK, UID_LEN,
};
use crate::ke::message::MAX_COOKIES;
use crate::ke::record::MAX_COOKIE_LEN;

/// Outstanding requests remembered per association (their UIDs); a
/// response must answer one of them, once.
const MAX_OUTSTANDING: usize = 8;

/// Default NTP port when NTS-KE does not name one.
pub const NTP_PORT: u16 = 123;

/// One client association's NTS state, as established by NTS-KE
/// ([`crate::key_exchange`]).
#[derive(Clone, Debug)]
pub struct NtsClientState {
    /// Client-to-server key: seals our requests.
    pub c2s: AeadKey,
    /// Server-to-client key: verifies responses.
    pub s2c: AeadKey,
    /// Unused cookies, oldest first. Each is sent once (reuse would let
    /// an observer link our requests).
    pub cookies: VecDeque<Vec<u8>>,
    /// Where to send NTP: the NTS-KE server's answer, else the KE host.
    pub server: String,
    /// NTP port: the NTS-KE server's answer, else 123.
    pub port: u16,
    outstanding: VecDeque<[u8; UID_LEN]>,
    nak: bool,
}

impl NtsClientState {
    /// State from negotiated keys and cookies.
    pub fn new(
        c2s: AeadKey,
        s2c: AeadKey,
        cookies: Vec<Vec<u8>>,
        server: String,
        port: u16,
    ) -> Self {
        NtsClientState {
            c2s,
            s2c,
            cookies: cookies.into_iter().take(MAX_COOKIES).collect(),
            server,
            port,
            outstanding: VecDeque::new(),
            nak: false,
        }
    }

    /// True when the association must run NTS-KE again before its next
    /// request: no cookies left, or the server sent an NTS NAK.
    pub fn needs_key_exchange(&self) -> bool {
        self.nak || self.cookies.is_empty()
    }

    /// Octets [`Self::build_request`] will write (to size the buffer).
    pub fn request_len(&self) -> usize {
        let Some(cookie) = self.cookies.front() else {
            return 0;
        };
        let field = 4 + cookie.len().next_multiple_of(4).max(12);
        HEADER_LEN + 4 + UID_LEN + field * (1 + self.placeholders()) + AUTH_OVERHEAD
    }

    /// Placeholders to send so that the response refills the jar to
    /// [`MAX_COOKIES`] (the cookie we send is replaced by the response too).
    fn placeholders(&self) -> usize {
        MAX_COOKIES.saturating_sub(self.cookies.len())
    }

    /// Builds an NTS request into `out`: `header` (the caller's mode-3
    /// header, whose transmit timestamp is its nonce), the Unique
    /// Identifier `uid` (32 random octets from the caller, to be passed
    /// back to [`Self::process_response`]), one cookie, placeholders for
    /// the missing cookies, and the authenticator over all of it under
    /// C2S. Consumes one cookie. Returns the packet length.
    pub fn build_request(
        &mut self,
        header: &NtpHeader,
        uid: &[u8; UID_LEN],
        out: &mut [u8],
    ) -> Result<usize, NtsError> {
        if self.nak {
            return Err(NtsError::Nak);
        }
        let cookie = self.cookies.front().ok_or(NtsError::NoCookies)?;
        if out.len() < self.request_len() {
            return Err(NtsError::BufferTooSmall);
        }
        let mut n = header
            .encode_into(out)
            .map_err(|_| NtsError::BufferTooSmall)?;
        n += write_field(&mut out[n..], EF_UNIQUE_ID, uid)?;
        let cookie_field = write_field(&mut out[n..], EF_COOKIE, cookie)?;
        n += cookie_field;
        for _ in 0..self.placeholders() {
            // Same total size as the cookie field, as servers require.
            n += write_zero_field(&mut out[n..], EF_COOKIE_PLACEHOLDER, cookie_field - 4)?;
        }
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce);
        n += seal_authenticator(out, n, &self.c2s, &nonce, 0)?;
        self.cookies.pop_front();
        if self.outstanding.len() == MAX_OUTSTANDING {
            self.outstanding.pop_front();
        }
        self.outstanding.push_back(*uid);
        Ok(n)
    }

    /// Verifies a response to the request sent with `uid`: it must echo
    /// that UID, be the first answer to it, and carry a valid authenticator
    /// under S2C; fresh cookies from its encrypted fields join the jar.
    /// Returns the header, which the caller still checks (origin, mode,
    /// stratum) as for plain NTP.
    ///
    /// An NTS NAK echoing our UID yields [`NtsError::Nak`] and marks the
    /// state as needing NTS-KE. Any other failure leaves the state as it
    /// was, so a forged packet cannot disturb the association.
    pub fn process_response(
        &mut self,
        datagram: &[u8],
        uid: &[u8; UID_LEN],
    ) -> Result<NtpHeader, NtsError> {
        let header = NtpHeader::decode(datagram).map_err(|_| NtsError::Malformed)?;
        let mut seen_uid = false;
        let mut auth_at = None;
        for field in located_fields(datagram) {
            let (at, f) = field?;
            if auth_at.is_some() {
                // Fields after the authenticator are unauthenticated:
                // ignored (RFC 8915 §5.7).
                continue;
            }
            match f.field_type {
                EF_UNIQUE_ID => {
                    if seen_uid || f.value != uid {
                        return Err(NtsError::UidMismatch);
                    }
                    seen_uid = true;
                }
                EF_AUTHENTICATOR => auth_at = Some((at, f.value)),
                _ => {}
            }
        }
        if !seen_uid {
            return Err(NtsError::UidMismatch);
        }
        let Some(slot) = self.outstanding.iter().position(|u| u == uid) else {
            // Already answered, or never sent: a replay.
            return Err(NtsError::UidMismatch);
        };
        if header.stratum == 0 && header.reference_id.0 == NTS_NAK && auth_at.is_none() {
            self.outstanding.remove(slot);
            self.nak = true;
            return Err(NtsError::Nak);
        }
        let (at, value) = auth_at.ok_or(NtsError::BadAuth)?;
        let auth = parse_authenticator(value)?;
        let mut plain = [0u8; MAX_PLAINTEXT];
        let len = open_authenticator(datagram, at, &auth, &self.s2c, &mut plain)?;
        let mut fresh: [Option<&[u8]>; MAX_COOKIES] = [None; MAX_COOKIES];
        let mut count = 0;
        for f in meridian_proto::extension_fields(&plain[..len]) {
            let f = f.map_err(|_| NtsError::Malformed)?;
            if f.field_type == EF_COOKIE && count < MAX_COOKIES && f.value.len() <= MAX_COOKIE_LEN {
                fresh[count] = Some(f.value);
                count += 1;
            }
        }
        self.outstanding.remove(slot);
        for c in fresh.iter().flatten() {
            if self.cookies.len() < MAX_COOKIES {
                self.cookies.push_back(c.to_vec());
            }
        }
        Ok(header)
    }
}
