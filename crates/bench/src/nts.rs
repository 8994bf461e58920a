//! NTS for the load generator: NTS-KE sessions, their cookie jars, and building and
//! checking NTS-protected requests one at a time through `meridian_nts`'s client API.
//!
//! A *session* is one NTS-KE exchange (keys C2S/S2C and the cookies it handed out); the
//! load generator maps its clients onto a few sessions. Every request carries a cookie
//! never sent before, a fresh random Unique Identifier and the authenticator; the reply's
//! fresh cookie goes back into the session's jar, so a session never needs a second key
//! exchange. Because many requests of one session are in flight at once (more than the
//! eight a real client keeps), each request gets its own [`NtsClientState`] built from the
//! session's keys and up to eight cookies from its jar. The cookies the request did not use
//! go straight back into the jar, and the state waits in the loader's table of outstanding
//! requests until its reply is checked by [`NtsClientState::process_response`].
//!
//! When a jar holds fewer than eight cookies, `build_request` adds placeholders for the
//! missing ones and the server answers with that many extra cookies, so the jars grow by
//! themselves to the depth of requests in flight. [`Sessions::build`] can also be asked for
//! requests with seven placeholders, to fill jars before a measurement
//! ([`Sessions::needs`]).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use meridian_nts::{key_exchange, AeadKey, NtsClientState, NtsError, TrustAnchors, UID_LEN};
use meridian_proto::NtpHeader;

use crate::ntp;

/// Cookies a client state holds at most (RFC 8915 recommends 8; requests carry
/// placeholders for the missing ones).
pub const JAR: usize = 8;

/// One NTS-KE exchange's keys and its unused cookies.
struct Session {
    c2s: AeadKey,
    s2c: AeadKey,
    cookies: VecDeque<Vec<u8>>,
}

/// A request in flight: the state that built it and the UID its reply must echo.
pub struct InFlight {
    state: NtsClientState,
    uid: [u8; UID_LEN],
    session: u32,
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InFlight(session {})", self.session)
    }
}

/// What NTS-KE reported, besides the sessions.
#[derive(Debug, Clone)]
pub struct KeReport {
    /// Wall time of all the exchanges.
    pub secs: f64,
    /// The NTP server and port the KE server told clients to use (from the first session).
    pub ntp_server: String,
    /// See `ntp_server`.
    pub ntp_port: u16,
    /// Cookies handed out by the first exchange.
    pub cookies_per_ke: usize,
    /// Their length in octets.
    pub cookie_len: usize,
}

/// The load generator's NTS sessions.
pub struct Sessions {
    list: Vec<Session>,
    /// Placeholders sent so far (each asks the server for one more cookie).
    pub placeholders: u64,
}

/// How a request should ask for cookies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// Keep the jar at (at least) this many cookies: while it holds fewer, the request
    /// carries placeholders for the difference (at most seven), so cookies spent on
    /// requests that were never answered are replaced, and the jar covers the requests
    /// in flight. At or above it, no placeholders: one cookie out, one back.
    Keep(usize),
    /// Send one cookie and seven placeholders: eight cookies come back.
    Fill,
}

impl Sessions {
    /// Run `count` NTS-KE exchanges with the server at `ke` (certificate valid for `name`
    /// under `trust`), `parallel` at a time, each bounded by `timeout`.
    pub fn establish(
        ke: SocketAddr,
        name: &str,
        trust: &TrustAnchors,
        count: usize,
        parallel: usize,
        timeout: Duration,
    ) -> Result<(Sessions, KeReport), String> {
        let start = Instant::now();
        let parallel = parallel.clamp(1, count.max(1));
        let mut results: Vec<Option<Result<NtsClientState, String>>> = vec![None; count];
        std::thread::scope(|scope| {
            let chunks: Vec<_> = results
                .chunks_mut(count.div_ceil(parallel).max(1))
                .collect();
            for chunk in chunks {
                scope.spawn(move || {
                    for slot in chunk {
                        *slot =
                            Some(key_exchange(name, ke, trust, timeout).map_err(|e| e.to_string()));
                    }
                });
            }
        });
        let mut list = Vec::with_capacity(count);
        let mut report = None;
        for r in results {
            let state = r.unwrap_or_else(|| Err("not run".into()))?;
            if state.cookies.is_empty() {
                return Err("NTS-KE handed out no cookies".into());
            }
            report.get_or_insert_with(|| KeReport {
                secs: 0.0,
                ntp_server: state.server.clone(),
                ntp_port: state.port,
                cookies_per_ke: state.cookies.len(),
                cookie_len: state.cookies.front().map_or(0, Vec::len),
            });
            list.push(Session {
                c2s: state.c2s.clone(),
                s2c: state.s2c.clone(),
                cookies: state.cookies.clone(),
            });
        }
        let mut report = report.ok_or("no NTS-KE session requested")?;
        report.secs = start.elapsed().as_secs_f64();
        Ok((
            Sessions {
                list,
                placeholders: 0,
            },
            report,
        ))
    }

    /// One session from keys and cookies obtained elsewhere (tests, microbenchmarks).
    pub fn from_parts(c2s: AeadKey, s2c: AeadKey, cookies: Vec<Vec<u8>>) -> Sessions {
        Sessions {
            list: vec![Session {
                c2s,
                s2c,
                cookies: cookies.into(),
            }],
            placeholders: 0,
        }
    }

    /// Number of sessions.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// True with no sessions.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Unused cookies in session `s`'s jar.
    pub fn cookies(&self, s: u32) -> usize {
        self.list[s as usize].cookies.len()
    }

    /// Fewest unused cookies in any jar.
    pub fn min_cookies(&self) -> usize {
        self.list.iter().map(|s| s.cookies.len()).min().unwrap_or(0)
    }

    /// Sessions whose jars hold fewer than `target` cookies.
    pub fn needs(&self, target: usize) -> impl Iterator<Item = u32> + '_ {
        self.list
            .iter()
            .enumerate()
            .filter(move |(_, s)| s.cookies.len() < target)
            .map(|(i, _)| i as u32)
    }

    /// Build an NTS request of session `s` whose NTP header is [`ntp::write_request`]'s
    /// with `transmit`, into `out`. `None` when the jar is empty.
    pub fn build(
        &mut self,
        s: u32,
        transmit: u64,
        uid: [u8; UID_LEN],
        ask: Ask,
        out: &mut [u8],
    ) -> Result<Option<(usize, Box<InFlight>)>, NtsError> {
        let session = &mut self.list[s as usize];
        let have = session.cookies.len();
        let give = match ask {
            Ask::Keep(target) => JAR.saturating_sub(target.saturating_sub(have)).max(1),
            Ask::Fill => 1,
        }
        .min(have);
        if give == 0 {
            return Ok(None);
        }
        let mut head = [0u8; ntp::HEADER_LEN];
        ntp::write_request(&mut head, transmit);
        let header = NtpHeader::decode(&head).map_err(|_| NtsError::Malformed)?;
        let cookies: Vec<Vec<u8>> = session.cookies.drain(..give).collect();
        let mut state = NtsClientState::new(
            session.c2s.clone(),
            session.s2c.clone(),
            cookies,
            String::new(),
            0,
        );
        let built = state.build_request(&header, &uid, out);
        // Whatever the request did not use goes back to the front of the jar, in order.
        while let Some(c) = state.cookies.pop_back() {
            session.cookies.push_front(c);
        }
        let len = built?;
        self.placeholders += (JAR - give) as u64;
        Ok(Some((
            len,
            Box::new(InFlight {
                state,
                uid,
                session: s,
            }),
        )))
    }

    /// Check the reply to `request` (UID, first answer, authenticator under S2C) and put
    /// the cookies it brought into the session's jar. An NTS NAK is `Err(NtsError::Nak)`.
    pub fn verify(&mut self, request: InFlight, datagram: &[u8]) -> Result<(), NtsError> {
        let InFlight {
            mut state,
            uid,
            session,
        } = request;
        state.process_response(datagram, &uid)?;
        self.list[session as usize]
            .cookies
            .extend(state.cookies.drain(..));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_nts::{KeyRing, NtsOutcome, NtsServer, SharedKeyRing};

    fn sessions(ring: &SharedKeyRing, cookies: usize) -> Sessions {
        let c2s = AeadKey::random();
        let s2c = AeadKey::random();
        let keys = meridian_nts::SessionKeys {
            c2s: c2s.clone(),
            s2c: s2c.clone(),
        };
        let mut jar = VecDeque::new();
        for _ in 0..cookies {
            let mut c = [0u8; meridian_nts::COOKIE_LEN];
            ring.read().seal_cookie(&keys, &mut c);
            jar.push_back(c.to_vec());
        }
        Sessions {
            list: vec![Session {
                c2s,
                s2c,
                cookies: jar,
            }],
            placeholders: 0,
        }
    }

    fn serve(server: &NtsServer, request: &[u8]) -> Vec<u8> {
        let req = NtpHeader::decode(request).unwrap();
        let mut reply_head = [0u8; ntp::HEADER_LEN];
        reply_head.copy_from_slice(&request[..ntp::HEADER_LEN]);
        ntp::echo_in_place(&mut reply_head);
        let mut reply = NtpHeader::decode(&reply_head).unwrap();
        reply.stratum = 2;
        assert_eq!(reply.origin_ts, req.transmit_ts);
        let mut out = vec![0u8; 2048];
        match server.process_request(request, &reply, &mut out) {
            NtsOutcome::Reply(n) => out[..n].to_vec(),
            other => panic!("server said {other:?}"),
        }
    }

    #[test]
    fn requests_round_trip_and_cookies_replenish() {
        let ring = SharedKeyRing::new(KeyRing::generate(1_700_000_000));
        let server = NtsServer::new(ring.clone());
        let mut s = sessions(&ring, 8);
        let mut buf = [0u8; meridian_os::udp::MAX_DATAGRAM];
        // Three in flight at once: the jar lends cookies and gets them back.
        let mut flights = Vec::new();
        for t in 1..=3u64 {
            let (len, f) = s
                .build(0, t, [t as u8; UID_LEN], Ask::Keep(JAR), &mut buf)
                .unwrap()
                .unwrap();
            flights.push((buf[..len].to_vec(), f));
        }
        assert_eq!(s.cookies(0), 5);
        // The second and third requests asked for the missing cookies.
        assert_eq!(s.placeholders, 1 + 2);
        for (req, f) in flights {
            let reply = serve(&server, &req);
            assert_eq!(
                ntp::classify_reply(&reply),
                ntp::ReplyKind::Answer {
                    origin: u64::from(req[47])
                }
            );
            s.verify(*f, &reply).unwrap();
        }
        assert_eq!(s.cookies(0), 5 + 1 + 2 + 3);
        // A fill request brings eight and fits the buffers.
        let (len, f) = s
            .build(0, 9, [9; UID_LEN], Ask::Fill, &mut buf)
            .unwrap()
            .unwrap();
        assert!(len <= meridian_os::udp::MAX_DATAGRAM, "{len}");
        let reply = serve(&server, &buf[..len]);
        s.verify(*f, &reply).unwrap();
        assert_eq!(s.cookies(0), 11 - 1 + 8);
    }

    #[test]
    fn forged_or_replayed_replies_are_rejected() {
        let ring = SharedKeyRing::new(KeyRing::generate(1_700_000_000));
        let server = NtsServer::new(ring.clone());
        let mut s = sessions(&ring, 8);
        let mut buf = [0u8; meridian_os::udp::MAX_DATAGRAM];
        let (len, f) = s
            .build(0, 5, [5; UID_LEN], Ask::Keep(JAR), &mut buf)
            .unwrap()
            .unwrap();
        let mut reply = serve(&server, &buf[..len]);
        let last = reply.len() - 1;
        reply[last] ^= 1;
        assert!(s.verify(*f, &reply).is_err());
        // Empty jar: nothing to send.
        let mut empty = sessions(&ring, 0);
        assert!(empty
            .build(0, 6, [6; UID_LEN], Ask::Keep(JAR), &mut buf)
            .unwrap()
            .is_none());
    }
}
