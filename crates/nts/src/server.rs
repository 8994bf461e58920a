//! The server side of NTS-protected NTP (RFC 8915 §5.7), for the daemon's
//! hot path: one call per request datagram, writing the reply into a
//! caller buffer without allocating.
//!
//! The server keeps no per-client state: the request's cookie carries the
//! client's keys, sealed under one of our master keys. So a replayed
//! request is answered like the original; the client rejects the answer by
//! its Unique Identifier. Replies are never larger than requests, and
//! carry at most as many fresh cookies as the request had cookie plus
//! placeholders, so NTS gives an attacker no amplification.

use meridian_proto::{build_kod, Mode, NtpHeader, ReferenceId, HEADER_LEN};

use crate::aead::{random_bytes, NONCE_LEN};
use crate::cookie::{SessionKeys, SharedKeyRing, COOKIE_LEN};
use crate::fields::{
    located_fields, open_authenticator, parse_authenticator, seal_authenticator, write_field,
    AUTH_OVERHEAD, EF_AUTHENTICATOR, EF_COOKIE, EF_COOKIE_PLACEHOLDER, EF_UNIQUE_ID, MAX_PLAINTEXT,
    NTS_NAK, UID_LEN,
};
use crate::ke::message::MAX_COOKIES;

/// What to do with a request datagram.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum NtsOutcome {
    /// Send `out[..len]`: the authenticated reply.
    Reply(usize),
    /// Send `out[..len]`: an NTS NAK (kiss code NTSN) telling the client
    /// to run NTS-KE again (its cookie is unknown, expired or forged, or
    /// its authenticator failed).
    Nak(usize),
    /// Send nothing: malformed NTS request, or `out` too small.
    Drop,
    /// The request carries no NTS fields: handle it as plain NTP.
    NotNts,
}

/// The NTS part of an NTP server. Cheap to clone; all clones share the key
/// ring with the NTS-KE server that issues the cookies.
#[derive(Clone, Debug)]
pub struct NtsServer {
    keys: SharedKeyRing,
}

/// What a request holds, located in the datagram.
struct Parsed<'a> {
    uid: &'a [u8],
    cookie: &'a [u8],
    /// Cookie field plus placeholders of the same size.
    requested: usize,
    /// Offset of the authenticator field.
    auth_at: usize,
    /// Its value.
    auth_value: &'a [u8],
}

fn parse_request(datagram: &[u8]) -> Result<Option<Parsed<'_>>, ()> {
    let mut uid = None;
    let mut cookie: Option<&[u8]> = None;
    let mut placeholder_lens = [0usize; MAX_COOKIES];
    let mut placeholders = 0;
    let mut auth = None;
    let mut any_nts = false;
    for field in located_fields(datagram) {
        let (at, f) = field.map_err(|_| ())?;
        if auth.is_some() {
            // Unauthenticated trailing fields are ignored (RFC 8915 §5.7).
            continue;
        }
        match f.field_type {
            EF_UNIQUE_ID => {
                any_nts = true;
                if uid.replace(f.value).is_some() || f.value.len() < UID_LEN {
                    return Err(());
                }
            }
            EF_COOKIE => {
                any_nts = true;
                if cookie.replace(f.value).is_some() {
                    return Err(());
                }
            }
            EF_COOKIE_PLACEHOLDER => {
                any_nts = true;
                if placeholders < MAX_COOKIES {
                    placeholder_lens[placeholders] = f.value.len();
                    placeholders += 1;
                }
            }
            EF_AUTHENTICATOR => {
                any_nts = true;
                auth = Some((at, f.value));
            }
            _ => {}
        }
    }
    if !any_nts {
        return Ok(None);
    }
    let (Some(uid), Some(cookie), Some((auth_at, auth_value))) = (uid, cookie, auth) else {
        return Err(());
    };
    // Placeholders of another size than the cookie are ignored: honouring
    // them could make the response larger than the request.
    let requested = 1 + placeholder_lens[..placeholders]
        .iter()
        .filter(|&&l| l == cookie.len())
        .count();
    Ok(Some(Parsed {
        uid,
        cookie,
        requested,
        auth_at,
        auth_value,
    }))
}

impl NtsServer {
    /// A server opening cookies with `keys`.
    pub fn new(keys: SharedKeyRing) -> Self {
        NtsServer { keys }
    }

    /// The shared key ring.
    pub fn keys(&self) -> &SharedKeyRing {
        &self.keys
    }

    /// Handles one request datagram.
    ///
    /// `reply_header` is the complete mode-4 header the daemon would send
    /// for plain NTP (`meridian_proto::build_server_reply`, including T3):
    /// it is authenticated as is, so it must be final. `out` should be at
    /// least as long as `datagram` (the reply never exceeds it).
    pub fn process_request(
        &self,
        datagram: &[u8],
        reply_header: &NtpHeader,
        out: &mut [u8],
    ) -> NtsOutcome {
        let Ok(request) = NtpHeader::decode(datagram) else {
            return NtsOutcome::Drop;
        };
        let parsed = match parse_request(datagram) {
            Ok(Some(p)) => p,
            Ok(None) => return NtsOutcome::NotNts,
            Err(()) => return NtsOutcome::Drop,
        };
        if request.mode != Mode::Client {
            return NtsOutcome::Drop;
        }
        let Some(keys) = self.keys.read().open_cookie(parsed.cookie) else {
            return nak(&request, parsed.uid, out);
        };
        let Ok(auth) = parse_authenticator(parsed.auth_value) else {
            return NtsOutcome::Drop;
        };
        let mut plain = [0u8; MAX_PLAINTEXT];
        let Ok(plain_len) =
            open_authenticator(datagram, parsed.auth_at, &auth, &keys.c2s, &mut plain)
        else {
            return nak(&request, parsed.uid, out);
        };
        // Placeholders may also travel encrypted (RFC 8915 §5.7).
        let mut requested = parsed.requested;
        for f in meridian_proto::extension_fields(&plain[..plain_len]) {
            match f {
                Ok(f)
                    if f.field_type == EF_COOKIE_PLACEHOLDER
                        && f.value.len() == parsed.cookie.len() =>
                {
                    requested += 1
                }
                Ok(_) => {}
                Err(_) => return NtsOutcome::Drop,
            }
        }
        self.reply(
            datagram.len(),
            reply_header,
            parsed.uid,
            &keys,
            requested,
            out,
        )
    }

    fn reply(
        &self,
        request_len: usize,
        header: &NtpHeader,
        uid: &[u8],
        keys: &SessionKeys,
        requested: usize,
        out: &mut [u8],
    ) -> NtsOutcome {
        const COOKIE_FIELD: usize = 4 + COOKIE_LEN;
        let limit = request_len.min(out.len());
        let fixed = HEADER_LEN + 4 + uid.len() + AUTH_OVERHEAD;
        // No amplification: as many cookies as asked for and as fit in
        // the request's size.
        let room = limit.saturating_sub(fixed) / COOKIE_FIELD;
        let count = requested.min(MAX_COOKIES).min(room);
        if fixed > limit {
            return NtsOutcome::Drop;
        }
        let Ok(mut n) = header.encode_into(out) else {
            return NtsOutcome::Drop;
        };
        let Ok(uid_len) = write_field(&mut out[n..], EF_UNIQUE_ID, uid) else {
            return NtsOutcome::Drop;
        };
        n += uid_len;
        let ring = self.keys.read();
        let mut pt = n + AUTH_OVERHEAD;
        for _ in 0..count {
            let mut cookie = [0u8; COOKIE_LEN];
            ring.seal_cookie(keys, &mut cookie);
            match write_field(&mut out[pt..], EF_COOKIE, &cookie) {
                Ok(len) => pt += len,
                Err(_) => return NtsOutcome::Drop,
            }
        }
        drop(ring);
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce);
        match seal_authenticator(out, n, &keys.s2c, &nonce, pt - n - AUTH_OVERHEAD) {
            Ok(len) => NtsOutcome::Reply(n + len),
            Err(_) => NtsOutcome::Drop,
        }
    }
}

/// An NTS NAK: a kiss-o'-death with code NTSN echoing the request's UID
/// and nothing else (RFC 8915 §5.7).
fn nak(request: &NtpHeader, uid: &[u8], out: &mut [u8]) -> NtsOutcome {
    let header = build_kod(request, ReferenceId(NTS_NAK));
    let Ok(n) = header.encode_into(out) else {
        return NtsOutcome::Drop;
    };
    match write_field(&mut out[n..], EF_UNIQUE_ID, uid) {
        Ok(len) => NtsOutcome::Nak(n + len),
        Err(_) => NtsOutcome::Drop,
    }
}
