//! A mode 6 (control) client: send one request, collect its fragments, reassemble.
//!
//! Used by `ntpq` and `ntpstat`. The socket is connected to the server, so only its
//! datagrams are read and an ICMP "port unreachable" surfaces at once as "connection
//! refused" instead of a timeout. Like ntpq, a request that times out is sent once more
//! (with a new sequence number) before giving up.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use meridian_proto::control::{ControlHeader, ErrorCode, Reassembly, HEADER_LEN, MAX_DATA_LEN};

/// A reassembled response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mode6Response {
    /// Status word of the (last) fragment.
    pub status: u16,
    /// Association id the response is about.
    pub association_id: u16,
    /// The data, all fragments in order.
    pub data: Vec<u8>,
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
}

impl std::fmt::Display for Mode6Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mode6Error::Io(e) => write!(f, "{e}"),
            Mode6Error::Timeout => f.write_str("timed out, nothing received"),
            Mode6Error::Server(code) => write!(f, "server returned error {}", code.message()),
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
        let data = &data[..data.len().min(MAX_DATA_LEN)];
        let mut attempt = 0;
        loop {
            self.sequence = self.sequence.wrapping_add(1);
            let header =
                ControlHeader::request(opcode, self.sequence, association_id, data.len() as u16);
            let mut packet = vec![0u8; HEADER_LEN];
            header.encode((&mut packet[..]).try_into().expect("header size"));
            packet.extend_from_slice(data);
            packet.resize(packet.len().div_ceil(4) * 4, 0);
            self.socket.send(&packet)?;
            match self.collect(&header) {
                Err(Mode6Error::Timeout) if attempt < self.retries => attempt += 1,
                other => return other,
            }
        }
    }

    fn collect(&self, request: &ControlHeader) -> Result<Mode6Response, Mode6Error> {
        let mut reassembly = Reassembly::new();
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
                });
            }
            deadline = Instant::now() + self.fragment_timeout;
        }
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
