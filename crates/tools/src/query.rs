//! One client query to one server: send a request, wait for its reply, make a sample.
//!
//! This is the IO shell around `meridian_proto::Exchange`: it stamps the transmit time
//! just before sending and uses the kernel's receive timestamp for the reply.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use meridian_clock::Clock;
use meridian_os::udp::{enable_rx_metadata, RecvBatch};
use meridian_proto::{new_client_request, Exchange, NtpHeader, ReplyError, Sample, HEADER_LEN};

/// How one query ended.
#[derive(Debug)]
pub enum QueryOutcome {
    /// A valid reply.
    Sample(Sample),
    /// A reply that failed validation (a KoD among them).
    Rejected(ReplyError),
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
        enable_rx_metadata(&socket, target.is_ipv6())?;
        Ok(QuerySocket { socket: socket.into(), batch: RecvBatch::new() })
    }

    /// Query `server` once, waiting at most `timeout` for a valid reply.
    pub fn query(
        &mut self,
        clock: &dyn Clock,
        server: SocketAddr,
        version: u8,
        timeout: Duration,
    ) -> io::Result<QueryOutcome> {
        let request = new_client_request(version, 6, rand::random());
        let mut buf = [0u8; HEADER_LEN];
        request.header.encode(&mut buf);
        let t1 = clock.now().map_err(io::Error::other)?;
        self.socket.send_to(&buf, server)?;
        let mut exchange = Exchange::new(request, t1);
        let deadline = Instant::now() + timeout;
        let mut last_rejection = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(last_rejection.map_or(QueryOutcome::Timeout, QueryOutcome::Rejected));
            }
            self.socket.set_read_timeout(Some(left))?;
            let n = match self.batch.recv(&self.socket) {
                Ok(n) => n,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ICMP port unreachable from an earlier send: nobody there.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e),
            };
            for i in 0..n {
                let Some(packet) = self.batch.get(i) else { continue };
                if packet.source != server || packet.truncated {
                    continue;
                }
                let Ok(reply) = NtpHeader::decode(packet.data) else { continue };
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
                return Ok(QueryOutcome::Rejected(last_rejection.take().expect("checked")));
            }
        }
    }
}
