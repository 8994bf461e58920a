//! A mode 6 (control) client: send one request, collect its fragments, reassemble.
//!
//! Used by `ntpq` and `ntpstat`. The socket is connected to the server, so only its
//! datagrams are read and an ICMP "port unreachable" surfaces at once as "connection
//! refused" instead of a timeout. Like ntpq, a request that times out is sent once more
//! (with a new sequence number) before giving up.
//!
//! Authenticated requests ([`Mode6Client::request_signed`]) are padded with zeros to a
//! multiple of eight octets and followed by the key id and digest, as ntpq sends them;
//! the server signs each fragment of its answer with the same key, which is checked
//! ([`Mode6Response::authentic`]): after the data padded to eight, or right after the
//! header of an error, where ntpd and NTPsec put it.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use meridian_auth::{KeyStore, MAX_MAC_LEN};
use meridian_proto::control::{
    mac_offset, ControlHeader, ErrorCode, Reassembly, HEADER_LEN, MAX_DATA_LEN,
};

/// A key to sign requests with: a store holding it (trusted) and its id.
#[derive(Clone, Copy)]
pub struct SigningKey<'a> {
    /// The keys.
    pub keys: &'a KeyStore,
    /// The key to use.
    pub key_id: u32,
}

/// A reassembled response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mode6Response {
    /// Status word of the (last) fragment.
    pub status: u16,
    /// Association id the response is about.
    pub association_id: u16,
    /// The data, all fragments in order.
    pub data: Vec<u8>,
    /// For a signed request: whether every fragment came back signed with its key.
    /// `None` for an unsigned request.
    pub authentic: Option<bool>,
}

impl Mode6Response {
    /// The data as text (lossy: ntpd may pad with NULs).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data)
            .trim_end_matches('\0')
            .to_string()
    }
}

/// Why a request failed.
#[derive(Debug)]
pub enum Mode6Error {
    /// Socket error (connection refused: nothing listening).
    Io(io::Error),
    /// No complete response in time.
    Timeout,
    /// The server answered with an error.
    Server(ErrorCode),
    /// The request could not be signed with the key (not in the keys, or the digest
    /// type is not supported).
    Sign(String),
}

impl std::fmt::Display for Mode6Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mode6Error::Io(e) => write!(f, "{e}"),
            Mode6Error::Timeout => f.write_str("timed out, nothing received"),
            Mode6Error::Server(code) => write!(f, "server returned error {}", code.message()),
            Mode6Error::Sign(why) => write!(f, "cannot sign the request: {why}"),
        }
    }
}

impl std::error::Error for Mode6Error {}

impl From<io::Error> for Mode6Error {
    fn from(e: io::Error) -> Self {
        Mode6Error::Io(e)
    }
}

/// A control session with one server.
pub struct Mode6Client {
    socket: UdpSocket,
    sequence: u16,
    /// How long to wait for the first fragment.
    pub timeout: Duration,
    /// How long to wait for each further fragment.
    pub fragment_timeout: Duration,
    /// Extra attempts after a timeout.
    pub retries: u32,
}

impl Mode6Client {
    /// Open a socket to `server`.
    pub fn connect(server: SocketAddr) -> io::Result<Self> {
        let bind: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        }
        .parse()
        .expect("literal");
        let socket = UdpSocket::bind(bind)?;
        socket.connect(server)?;
        Ok(Mode6Client {
            socket,
            sequence: rand::random(),
            timeout: Duration::from_secs(5),
            fragment_timeout: Duration::from_secs(2),
            retries: 1,
        })
    }

    /// Send `opcode` about `association_id` with `data`, and collect the response.
    pub fn request(
        &mut self,
        opcode: u8,
        association_id: u16,
        data: &[u8],
    ) -> Result<Mode6Response, Mode6Error> {
        self.request_signed(opcode, association_id, data, None)
    }

    /// Like [`Self::request`], signed with `key` when one is given.
    pub fn request_signed(
        &mut self,
        opcode: u8,
        association_id: u16,
        data: &[u8],
        key: Option<SigningKey<'_>>,
    ) -> Result<Mode6Response, Mode6Error> {
        let data = &data[..data.len().min(MAX_DATA_LEN)];
        let mut attempt = 0;
        loop {
            self.sequence = self.sequence.wrapping_add(1);
            let header =
                ControlHeader::request(opcode, self.sequence, association_id, data.len() as u16);
            let packet = build_request(&header, data, key)?;
            self.socket.send(&packet)?;
            match self.collect(&header, key) {
                Err(Mode6Error::Timeout) if attempt < self.retries => attempt += 1,
                other => return other,
            }
        }
    }

    fn collect(
        &self,
        request: &ControlHeader,
        key: Option<SigningKey<'_>>,
    ) -> Result<Mode6Response, Mode6Error> {
        let mut reassembly = Reassembly::new();
        let mut authentic = key.map(|_| true);
        let mut deadline = Instant::now() + self.timeout;
        let mut buf = [0u8; 2048];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Mode6Error::Timeout);
            }
            self.socket.set_read_timeout(Some(left))?;
            let n = match self.socket.recv(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(Mode6Error::Timeout)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Mode6Error::Io(e)),
            };
            let packet = &buf[..n];
            let Ok(h) = ControlHeader::decode(packet) else {
                continue;
            };
            // Only the answer to this request: a late fragment of an earlier one is not.
            if !h.response || h.sequence != request.sequence || h.opcode != request.opcode {
                continue;
            }
            if let (Some(ok), Some(key)) = (authentic.as_mut(), key) {
                *ok &= fragment_is_signed(packet, &h, key);
            }
            if h.error {
                return Err(Mode6Error::Server(h.error_code()));
            }
            let Some(data) = packet.get(HEADER_LEN..HEADER_LEN + usize::from(h.count)) else {
                continue;
            };
            if reassembly.add(&h, data) {
                let status = reassembly.status;
                let association_id = h.association_id;
                return Ok(Mode6Response {
                    status,
                    association_id,
                    data: reassembly.into_data(),
                    authentic,
                });
            }
            deadline = Instant::now() + self.fragment_timeout;
        }
    }
}

/// The request datagram: header, data and zero padding to four octets; signed, padded
/// to eight and followed by key id and digest.
fn build_request(
    header: &ControlHeader,
    data: &[u8],
    key: Option<SigningKey<'_>>,
) -> Result<Vec<u8>, Mode6Error> {
    let mut packet = vec![0u8; HEADER_LEN];
    header.encode((&mut packet[..]).try_into().expect("header size"));
    packet.extend_from_slice(data);
    packet.resize(packet.len().div_ceil(4) * 4, 0);
    if let Some(k) = key {
        let body = mac_offset(packet.len());
        packet.resize(body + MAX_MAC_LEN, 0);
        let len = k
            .keys
            .sign_in_place(&mut packet, body, k.key_id)
            .map_err(|e| Mode6Error::Sign(e.to_string()))?;
        packet.truncate(len);
    }
    Ok(packet)
}

/// Whether a response fragment ends in a valid MAC with `key`: after the data padded to
/// eight octets, or right after the header of an error response.
fn fragment_is_signed(packet: &[u8], h: &ControlHeader, key: SigningKey<'_>) -> bool {
    let body = if h.error {
        HEADER_LEN
    } else {
        mac_offset(HEADER_LEN + usize::from(h.count))
    };
    let (Some(signed), Some(mac)) = (packet.get(..body), packet.get(body..)) else {
        return false;
    };
    let mut expected = [0u8; MAX_MAC_LEN];
    match key.keys.sign(signed, key.key_id, &mut expected) {
        Ok(len) => mac == &expected[..len],
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_proto::control::{opcode, Fragmenter, MAX_FRAGMENT_LEN};

    /// A one-shot server answering with `fragments` built from `data`, out of order.
    fn serve(data: Vec<u8>, error: Option<ErrorCode>) -> SocketAddr {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 600];
            let (n, from) = server.recv_from(&mut buf).unwrap();
            let req = ControlHeader::decode(&buf[..n]).unwrap();
            if let Some(code) = error {
                let mut b = [0u8; HEADER_LEN];
                req.error_response(0, code).encode(&mut b);
                server.send_to(&b, from).unwrap();
                return;
            }
            // A stale fragment of another request first: must be ignored.
            let mut stale = [0u8; HEADER_LEN];
            ControlHeader {
                sequence: req.sequence.wrapping_sub(1),
                ..req.response_to(0, 1)
            }
            .encode(&mut stale);
            server.send_to(&stale, from).unwrap();
            let mut f = Fragmenter::new(req.response_to(0, 0x0615), &data);
            let mut frags = Vec::new();
            let mut out = [0u8; MAX_FRAGMENT_LEN];
            while let Some(len) = f.next_into(&mut out) {
                frags.push(out[..len].to_vec());
            }
            for frag in frags.iter().rev() {
                server.send_to(frag, from).unwrap();
            }
        });
        addr
    }

    #[test]
    fn reassembles_out_of_order_fragments() {
        let data: Vec<u8> = (0..1500u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut c = Mode6Client::connect(serve(data.clone(), None)).unwrap();
        let r = c.request(opcode::READVAR, 0, b"").unwrap();
        assert_eq!(r.data, data);
        assert_eq!(r.status, 0x0615);
    }

    fn test_keys() -> KeyStore {
        let keys =
            meridian_auth::parse_keys("5 SHA1 0123456789abcdef0123456789abcdef01234567\n", "k");
        KeyStore::new(keys.into_result().unwrap(), [5])
    }

    /// A one-shot server checking the request's MAC (after padding to eight) and
    /// answering with `text`, signed when `sign`.
    fn serve_signed(
        text: &'static [u8],
        sign: bool,
    ) -> (SocketAddr, std::thread::JoinHandle<bool>) {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let keys = test_keys();
            let mut buf = [0u8; 600];
            let (n, from) = server.recv_from(&mut buf).unwrap();
            let req = meridian_proto::control::parse_request(&buf[..n]).unwrap();
            let mac = req.mac.expect("a MAC");
            let mut expected = [0u8; MAX_MAC_LEN];
            let len = keys.sign(mac.signed, mac.key_id, &mut expected).unwrap();
            let valid = mac.key_id == 5
                && mac.digest == &expected[4..len]
                && mac.signed.len().is_multiple_of(8)
                && req.data == b"leap=0";
            let mut out = [0u8; MAX_FRAGMENT_LEN + MAX_MAC_LEN];
            let mut f = Fragmenter::new(req.header.response_to(0, 0x0615), text);
            let mut frag = [0u8; MAX_FRAGMENT_LEN];
            let flen = f.next_into(&mut frag).unwrap();
            out[..flen].copy_from_slice(&frag[..flen]);
            let mut total = flen;
            if sign {
                let body = mac_offset(flen);
                total = keys.sign_in_place(&mut out, body, 5).unwrap();
            }
            server.send_to(&out[..total], from).unwrap();
            valid
        });
        (addr, handle)
    }

    #[test]
    fn signed_requests_and_their_signed_answers() {
        let keys = test_keys();
        let key = SigningKey {
            keys: &keys,
            key_id: 5,
        };
        for sign in [true, false] {
            let (addr, server) = serve_signed(b"abcde", sign);
            let mut c = Mode6Client::connect(addr).unwrap();
            let r = c
                .request_signed(opcode::WRITEVAR, 0, b"leap=0", Some(key))
                .unwrap();
            assert!(server.join().unwrap(), "request MAC as ntpd checks it");
            assert_eq!(
                (r.data.as_slice(), r.authentic),
                (&b"abcde"[..], Some(sign))
            );
        }
        let unknown = SigningKey {
            keys: &keys,
            key_id: 6,
        };
        let mut c = Mode6Client::connect("127.0.0.1:9".parse().unwrap()).unwrap();
        assert!(matches!(
            c.request_signed(opcode::WRITEVAR, 0, b"", Some(unknown)),
            Err(Mode6Error::Sign(_))
        ));
    }

    #[test]
    fn server_errors_are_reported() {
        let mut c =
            Mode6Client::connect(serve(Vec::new(), Some(ErrorCode::BadAssociation))).unwrap();
        match c.request(opcode::READVAR, 7, b"") {
            Err(Mode6Error::Server(ErrorCode::BadAssociation)) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn silence_times_out_after_retry() {
        let quiet = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut c = Mode6Client::connect(quiet.local_addr().unwrap()).unwrap();
        c.timeout = Duration::from_millis(100);
        let started = Instant::now();
        assert!(matches!(
            c.request(opcode::READSTAT, 0, b""),
            Err(Mode6Error::Timeout)
        ));
        assert!(started.elapsed() >= Duration::from_millis(200), "one retry");
        let mut buf = [0u8; 100];
        quiet
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        assert_eq!(
            quiet.recv(&mut buf).unwrap(),
            HEADER_LEN,
            "requests reach the server"
        );
    }
}
