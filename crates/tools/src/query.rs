//! One client query to one server: send a request, wait for its reply, make a sample.
//!
//! This is the IO shell around `meridian_proto::Exchange`: it stamps the transmit time
//! just before sending and uses the kernel's receive timestamp for the reply. With `-a`
//! the request carries a MAC ([`encode_request`]) and only replies with a valid MAC for
//! the same key count ([`check_reply`]); both are pure so they are tested without sockets.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use meridian_auth::{KeyDiagnostic, KeyStore, SignError, Verification, MAX_MAC_LEN};
use meridian_clock::Clock;
use meridian_os::udp::{enable_rx_metadata, RecvBatch};
use meridian_proto::{new_client_request, Exchange, NtpHeader, ReplyError, Sample, HEADER_LEN};

/// The longest request ntpdate sends: a header and a SHA-1 MAC.
pub const MAX_REQUEST_LEN: usize = HEADER_LEN + MAX_MAC_LEN;

/// `-a KEYID -k KEYFILE`: the keys file with only the `-a` key trusted, as classic
/// ntpdate does (`authtrust(sys_authkey, 1)`), so replies signed with any other key of
/// the file are rejected too.
#[derive(Debug, Clone)]
pub struct ClientAuth {
    store: KeyStore,
    key_id: u32,
}

impl ClientAuth {
    /// Reads the text of the keys file `name` for key `key_id`. Returns the file's
    /// diagnostics (for the caller to print) and the authentication, or classic
    /// ntpdate's message when the key is not in the file.
    pub fn from_keys_text(
        text: &str,
        name: &str,
        key_id: u16,
    ) -> (Vec<KeyDiagnostic>, Result<ClientAuth, String>) {
        let parsed = meridian_auth::parse_keys(text, name);
        let auth = if parsed.keys.get(key_id).is_some() {
            let store = KeyStore::new(parsed.keys, [key_id]);
            Ok(ClientAuth {
                store,
                key_id: u32::from(key_id),
            })
        } else {
            Err(format!("authentication key {key_id} unknown"))
        };
        (parsed.diagnostics, auth)
    }
}

/// Encodes a request into `buf`, followed by its MAC when authenticating; returns the
/// length to send.
pub fn encode_request(
    header: &NtpHeader,
    auth: Option<&ClientAuth>,
    buf: &mut [u8; MAX_REQUEST_LEN],
) -> Result<usize, SignError> {
    let len = header
        .encode_into(buf)
        .map_err(|_| SignError::BufferTooSmall)?;
    match auth {
        Some(a) => a.store.sign_in_place(buf, len, a.key_id),
        None => Ok(len),
    }
}

/// Whether a reply may be used: always without `-a`; with it, only when it carries a
/// valid MAC for our key. The error says what was wrong, for `-d`.
pub fn check_reply(data: &[u8], auth: Option<&ClientAuth>) -> Result<(), Verification> {
    let Some(a) = auth else { return Ok(()) };
    match a.store.verify(data) {
        Verification::Valid { key_id } if key_id == a.key_id => Ok(()),
        other => Err(other),
    }
}

/// How one query ended.
#[derive(Debug)]
pub enum QueryOutcome {
    /// A valid reply.
    Sample(Sample),
    /// A reply that failed validation (a KoD among them).
    Rejected(ReplyError),
    /// Only replies without a valid MAC for our key arrived (with `-a`); the last one's
    /// verification says why.
    Unauthentic(Verification),
    /// Nothing valid arrived in time.
    Timeout,
}

/// A UDP socket for queries, with kernel receive timestamps.
pub struct QuerySocket {
    socket: UdpSocket,
    batch: RecvBatch,
}

impl QuerySocket {
    /// Bind an ephemeral port (randomised by the kernel) of the family of `target`.
    pub fn for_target(target: SocketAddr) -> io::Result<QuerySocket> {
        let bind: SocketAddr = if target.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal")
        } else {
            "[::]:0".parse().expect("literal")
        };
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(bind),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        socket.bind(&bind.into())?;
        enable_rx_metadata(&socket, target.is_ipv6(), false)?;
        Ok(QuerySocket {
            socket: socket.into(),
            batch: RecvBatch::new(),
        })
    }

    /// Query `server` once, waiting at most `timeout` for a valid reply; with `auth` the
    /// request is signed and unauthentic replies are ignored.
    pub fn query(
        &mut self,
        clock: &dyn Clock,
        server: SocketAddr,
        version: u8,
        timeout: Duration,
        auth: Option<&ClientAuth>,
    ) -> io::Result<QueryOutcome> {
        let request = new_client_request(version, 6, rand::random());
        let mut buf = [0u8; MAX_REQUEST_LEN];
        // The MAC is computed before T1 is read, so its cost is not part of the
        // measured delay (classic ntpdate adds the -e authdelay estimate instead).
        let len = encode_request(&request.header, auth, &mut buf).map_err(io::Error::other)?;
        let t1 = clock.now().map_err(io::Error::other)?;
        self.socket.send_to(&buf[..len], server)?;
        let mut exchange = Exchange::new(request, t1);
        let deadline = Instant::now() + timeout;
        let mut last_rejection = None;
        let mut last_unauthentic = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(match (last_rejection, last_unauthentic) {
                    (Some(e), _) => QueryOutcome::Rejected(e),
                    (None, Some(v)) => QueryOutcome::Unauthentic(v),
                    (None, None) => QueryOutcome::Timeout,
                });
            }
            self.socket.set_read_timeout(Some(left))?;
            let n = match self.batch.recv(&self.socket) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ICMP port unreachable from an earlier send: nobody there.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e),
            };
            for i in 0..n {
                let Some(packet) = self.batch.get(i) else {
                    continue;
                };
                if packet.source != server || packet.truncated {
                    continue;
                }
                // Authenticate before anything else: an unauthentic reply must not
                // answer the exchange (and so shut out the real one), nor be believed
                // as a kiss-o'-death. Classic ntpdate drops it silently and waits on.
                if let Err(v) = check_reply(packet.data, auth) {
                    last_unauthentic = Some(v);
                    continue;
                }
                let Ok(reply) = NtpHeader::decode(packet.data) else {
                    continue;
                };
                let raw_t4 = packet.kernel_rx.unwrap_or_else(meridian_os::read_realtime);
                let t4 = clock.kernel_correction().apply(raw_t4);
                match exchange.on_reply(&reply, t4, clock.precision()) {
                    Ok(sample) => return Ok(QueryOutcome::Sample(sample)),
                    // A reply that doesn't answer our request (wrong origin) may be a
                    // spoof or a late duplicate: keep waiting for the real one.
                    Err(ReplyError::BogusOrigin) | Err(ReplyError::Duplicate) => {}
                    Err(e) => last_rejection = Some(e),
                }
            }
            if matches!(last_rejection, Some(ReplyError::Kiss(_))) {
                return Ok(QueryOutcome::Rejected(
                    last_rejection.take().expect("checked"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_auth::{server_action, KeyStore};
    use meridian_proto::{
        build_server_reply, parse_packet, LeapIndicator, MacTrailer, NtpShort, ReferenceId,
        ServerState,
    };
    use std::net::UdpSocket;

    /// The client's keys file; the server below has its own.
    const KEYS: &str = "1 MD5 abcdefgh\n2 SHA1 0123456789abcdef0123456789abcdef01234567\n";

    fn auth(key_id: u16) -> ClientAuth {
        let (diagnostics, auth) = ClientAuth::from_keys_text(KEYS, "ntp.keys", key_id);
        assert!(diagnostics.is_empty());
        auth.unwrap()
    }

    /// A server's key store: all of `KEYS` trusted.
    fn server_store(keys: &str) -> KeyStore {
        KeyStore::new(
            meridian_auth::parse_keys(keys, "server.keys")
                .into_result()
                .unwrap(),
            [1, 2],
        )
    }

    fn request() -> NtpHeader {
        new_client_request(4, 6, 0x1234_5678_9abc_def0).header
    }

    fn encode(auth: Option<&ClientAuth>) -> Vec<u8> {
        let mut buf = [0u8; MAX_REQUEST_LEN];
        let len = encode_request(&request(), auth, &mut buf).unwrap();
        buf[..len].to_vec()
    }

    /// A synchronized server's reply to `req`, finished as the server's policy says.
    fn reply_to(req: &[u8], store: &KeyStore, now: meridian_proto::NtpTimestamp) -> Vec<u8> {
        let state = ServerState {
            leap: LeapIndicator::NoWarning,
            stratum: 2,
            root_delay: NtpShort::ZERO,
            root_dispersion: NtpShort::ZERO,
            reference_id: ReferenceId::from_ascii(b"TEST"),
            reference_ts: now,
            ..ServerState::unsynchronized(-20)
        };
        let header = build_server_reply(&NtpHeader::decode(req).unwrap(), &state, now, now);
        let mut buf = [0u8; MAX_REQUEST_LEN];
        let len = header.encode_into(&mut buf).unwrap();
        let action = server_action(store.verify(req), false);
        let len = store
            .finish_reply(action, &mut buf, len)
            .unwrap()
            .expect("answered");
        buf[..len].to_vec()
    }

    #[test]
    fn unauthenticated_requests_are_the_bare_header() {
        let mut plain = [0u8; HEADER_LEN];
        request().encode(&mut plain);
        assert_eq!(encode(None), plain);
    }

    #[test]
    fn requests_carry_the_mac_of_the_a_key() {
        let server = server_store(KEYS);
        for (key_id, len) in [(1u16, HEADER_LEN + 20), (2, HEADER_LEN + 24)] {
            let pkt = encode(Some(&auth(key_id)));
            assert_eq!(pkt.len(), len);
            let Some(MacTrailer::Digest { key_id: id, .. }) = parse_packet(&pkt).unwrap().mac
            else {
                panic!("no MAC")
            };
            assert_eq!(id, u32::from(key_id));
            assert_eq!(
                server.verify(&pkt),
                Verification::Valid {
                    key_id: key_id.into()
                }
            );
        }
    }

    #[test]
    fn without_a_only_the_reply_matters_not_its_mac() {
        assert_eq!(check_reply(&[0xFF; 3], None), Ok(()));
        assert_eq!(check_reply(&encode(Some(&auth(1))), None), Ok(()));
    }

    #[test]
    fn with_a_only_replies_signed_with_our_key_pass() {
        let server = server_store(KEYS);
        let now = meridian_proto::NtpTimestamp::from_bits(0xE000_0000_0000_0000);
        let ours = auth(1);
        let good = reply_to(&encode(Some(&ours)), &server, now);
        assert_eq!(check_reply(&good, Some(&ours)), Ok(()));
        // Unsigned, tampered, signed with another key of the file, crypto-NAK.
        assert_eq!(
            check_reply(&good[..HEADER_LEN], Some(&ours)),
            Err(Verification::Unauthenticated)
        );
        let mut tampered = good.clone();
        tampered[40] ^= 1;
        assert_eq!(
            check_reply(&tampered, Some(&ours)),
            Err(Verification::Invalid { key_id: 1 })
        );
        let other = reply_to(&encode(Some(&auth(2))), &server, now);
        assert_eq!(
            check_reply(&other, Some(&ours)),
            Err(Verification::Untrusted { key_id: 2 })
        );
        let wrong_secret = server_store("1 MD5 hgfedcba\n");
        let nak = reply_to(&encode(Some(&ours)), &wrong_secret, now);
        assert_eq!(nak.len(), HEADER_LEN + 4);
        assert_eq!(
            check_reply(&nak, Some(&ours)),
            Err(Verification::CryptoNak { key_id: 0 })
        );
    }

    #[test]
    fn the_a_key_must_be_in_the_file() {
        let (diagnostics, auth) = ClientAuth::from_keys_text(KEYS, "ntp.keys", 7);
        assert!(diagnostics.is_empty());
        assert_eq!(auth.unwrap_err(), "authentication key 7 unknown");
        let (diagnostics, auth) =
            ClientAuth::from_keys_text("1 MD5 abc\n7 AES128CMAC short\n", "k", 7);
        assert_eq!(auth.unwrap_err(), "authentication key 7 unknown");
        assert_eq!(diagnostics.len(), 1);
        assert!(
            diagnostics[0].to_string().starts_with("k:2: error: '7': "),
            "{}",
            diagnostics[0]
        );
    }

    /// A one-shot server on loopback: answers one request with `keys`, then returns
    /// how it verified that request. Bounded by a 5 s receive timeout.
    fn fake_server(keys: &'static str) -> (SocketAddr, std::thread::JoinHandle<Verification>) {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let store = server_store(keys);
            let mut buf = [0u8; 512];
            let (n, from) = socket.recv_from(&mut buf).expect("a request");
            let now = meridian_os::read_realtime();
            let reply = reply_to(&buf[..n], &store, now);
            socket.send_to(&reply, from).unwrap();
            store.verify(&buf[..n])
        });
        (addr, handle)
    }

    #[test]
    fn loopback_exchange_with_an_authenticating_server() {
        let (addr, server) = fake_server(KEYS);
        let clock = meridian_os::KernelClock::new();
        let mut socket = QuerySocket::for_target(addr).unwrap();
        let outcome = socket
            .query(&clock, addr, 4, Duration::from_secs(3), Some(&auth(2)))
            .unwrap();
        assert!(matches!(outcome, QueryOutcome::Sample(_)), "{outcome:?}");
        assert_eq!(server.join().unwrap(), Verification::Valid { key_id: 2 });
    }

    #[test]
    fn loopback_exchange_with_a_server_that_has_another_secret() {
        let (addr, server) = fake_server("1 MD5 hgfedcba\n");
        let clock = meridian_os::KernelClock::new();
        let mut socket = QuerySocket::for_target(addr).unwrap();
        let outcome = socket
            .query(&clock, addr, 4, Duration::from_millis(500), Some(&auth(1)))
            .unwrap();
        assert!(
            matches!(
                outcome,
                QueryOutcome::Unauthentic(Verification::CryptoNak { key_id: 0 })
            ),
            "{outcome:?}"
        );
        assert_eq!(server.join().unwrap(), Verification::Invalid { key_id: 1 });
    }
}
