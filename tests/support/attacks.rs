//! Helpers for the attack-class tests (`tests/attacks.rs`).
//!
//! * [`free_udp_port`]: an unused loopback UDP port.
//! * [`loopback_socket`]: a UDP socket bound to any 127.x.y.z address (the
//!   whole 127/8 is local on Linux), so many "clients" exist without
//!   namespaces.
//! * [`TimeServer`]: a correct NTP server on loopback that records every
//!   request (who sent it, its transmit timestamp) and can hand each request
//!   to an attacker closure that sends spoofed packets from the server's own
//!   address and port to the requester (an off-path attacker who knows the
//!   addresses but never sees the nonce).
//! * [`ntpq_peers`]: `meridian ntpq -pn --port P` parsed.
//! * [`Exchange`] / [`exchange_all`]: send datagrams each from its own socket
//!   and collect every reply, to count octets in and out per request.
//!
//! Everything stays on loopback; every loop is bounded in count and time.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::control::{parse_peers, PeerRow};
use super::{meridian_bin, ntp_now, run_bounded, sandboxed};

/// An unused UDP port on 127.0.0.1 (bound and released; good enough for tests
/// that start their daemon right away).
pub fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind an ephemeral port");
    s.local_addr().expect("local addr").port()
}

/// A UDP socket bound to `ip` on an ephemeral port, with a short read timeout.
pub fn loopback_socket(ip: Ipv4Addr) -> io::Result<UdpSocket> {
    let s = UdpSocket::bind(SocketAddr::new(IpAddr::V4(ip), 0))?;
    s.set_read_timeout(Some(Duration::from_millis(20)))?;
    Ok(s)
}

/// One request a [`TimeServer`] received.
#[derive(Clone, Copy, Debug)]
pub struct SeenRequest {
    /// Who sent it.
    pub from: SocketAddr,
    /// Its transmit timestamp (the nonce a genuine reply echoes).
    pub transmit: u64,
    /// When it arrived.
    pub at: Instant,
}

/// What an attacker may do each time the server receives a request: it gets
/// the server's socket (to send from the server's address and port, as a
/// spoofer on the path's source would), the request, and all earlier ones.
pub type Attacker = Box<dyn FnMut(&UdpSocket, &SeenRequest, &[SeenRequest]) + Send>;

/// A correct stratum-1 NTP server on loopback (refid GPS), answering client
/// requests with this machine's time, recording every request. Stops and
/// joins its thread on drop.
pub struct TimeServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    thread: Option<JoinHandle<()>>,
}

/// The reply of a correct server to `req` (a ≥ 48-octet client request).
pub fn genuine_reply(req: &[u8]) -> [u8; 48] {
    let version = (req[0] >> 3) & 7;
    let mut r = [0u8; 48];
    r[0] = (version << 3) | 4;
    r[1] = 1;
    r[2] = req[2];
    r[3] = (-20i8) as u8;
    r[4..8].copy_from_slice(&16u32.to_be_bytes());
    r[8..12].copy_from_slice(&16u32.to_be_bytes());
    r[12..16].copy_from_slice(b"GPS\0");
    let rx = ntp_now();
    r[16..24].copy_from_slice(&(rx - (8u64 << 32)).to_be_bytes());
    r[24..32].copy_from_slice(&req[40..48]);
    r[32..40].copy_from_slice(&rx.to_be_bytes());
    r[40..48].copy_from_slice(&ntp_now().to_be_bytes());
    r
}

/// A kiss-o'-death with `code` and `origin`, as a server would send it.
pub fn kod(code: &[u8; 4], origin: u64, poll: i8) -> [u8; 48] {
    let mut r = [0u8; 48];
    r[0] = (3 << 6) | (4 << 3) | 4;
    r[1] = 0;
    r[2] = poll as u8;
    r[12..16].copy_from_slice(code);
    for at in [24, 32, 40] {
        r[at..at + 8].copy_from_slice(&origin.to_be_bytes());
    }
    r
}

/// A well-formed stratum-1 reply claiming a time `lie` seconds off, with
/// `origin` as its origin timestamp.
pub fn poisoned_reply(origin: u64, lie: f64) -> [u8; 48] {
    let mut req = [0u8; 48];
    req[0] = (4 << 3) | 3;
    req[40..48].copy_from_slice(&origin.to_be_bytes());
    let mut r = genuine_reply(&req);
    let shift = (lie * 4_294_967_296.0) as i64 as u64;
    for at in [16, 32, 40] {
        let v = u64::from_be_bytes(r[at..at + 8].try_into().unwrap()).wrapping_add(shift);
        r[at..at + 8].copy_from_slice(&v.to_be_bytes());
    }
    r
}

impl TimeServer {
    /// Serve on `bind` (127.0.0.1:0 for any port), calling `attacker` (if
    /// any) after answering each request.
    pub fn start(bind: SocketAddr, mut attacker: Option<Attacker>) -> io::Result<TimeServer> {
        let sock = UdpSocket::bind(bind)?;
        sock.set_read_timeout(Some(Duration::from_millis(50)))?;
        let addr = sock.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (st, sn) = (Arc::clone(&stop), Arc::clone(&seen));
        let thread = thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !st.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let req = &buf[..n];
                if n < 48 || req[0] & 7 != 3 {
                    continue;
                }
                let _ = sock.send_to(&genuine_reply(req), from);
                let this = SeenRequest {
                    from,
                    transmit: u64::from_be_bytes(req[40..48].try_into().unwrap()),
                    at: Instant::now(),
                };
                let earlier = sn.lock().unwrap().clone();
                if let Some(a) = attacker.as_mut() {
                    a(&sock, &this, &earlier);
                }
                sn.lock().unwrap().push(this);
            }
        });
        Ok(TimeServer {
            addr,
            stop,
            seen,
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for TimeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `meridian ntpq -pn --port PORT 127.0.0.1` (bounded to 20 s): its rows and
/// the raw output.
pub fn ntpq_peers(port: u16) -> (Vec<PeerRow>, String) {
    let mut cmd = sandboxed(None, meridian_bin());
    cmd.args(["ntpq", "-pn", "--port", &port.to_string(), "127.0.0.1"]);
    let out = run_bounded(&mut cmd, Duration::from_secs(20));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (parse_peers(&text), text)
}

/// One datagram sent from its own socket, and what came back to that socket.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// What was sent.
    pub request: Vec<u8>,
    /// From where.
    pub from: SocketAddr,
    /// Every datagram that came back, in order.
    pub replies: Vec<Vec<u8>>,
}

impl Exchange {
    /// Octets that came back.
    pub fn octets_out(&self) -> usize {
        self.replies.iter().map(Vec::len).sum()
    }
}

/// Send each `(source ip, datagram)` to `to` from a fresh socket bound to
/// that source, `batch` sockets at a time, collecting replies for `linger`
/// after each batch. Bounded: at most `requests.len()` datagrams, and
/// `linger` per batch.
pub fn exchange_all(
    to: SocketAddr,
    requests: &[(Ipv4Addr, Vec<u8>)],
    batch: usize,
    linger: Duration,
) -> Vec<Exchange> {
    let mut out = Vec::with_capacity(requests.len());
    for chunk in requests.chunks(batch.max(1)) {
        let mut open = Vec::new();
        for (ip, data) in chunk {
            let sock = loopback_socket(*ip).expect("bind a loopback source");
            sock.set_nonblocking(true).expect("nonblocking");
            let _ = sock.send_to(data, to);
            let from = sock.local_addr().expect("local addr");
            open.push((sock, data.clone(), from, Vec::new()));
        }
        let deadline = Instant::now() + linger;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            let mut any = false;
            for (sock, _, _, replies) in &mut open {
                while let Ok((n, src)) = sock.recv_from(&mut buf) {
                    if src == to {
                        replies.push(buf[..n].to_vec());
                        any = true;
                    }
                }
            }
            if !any {
                thread::sleep(Duration::from_millis(5));
            }
        }
        for (_, request, from, replies) in open {
            out.push(Exchange {
                request,
                from,
                replies,
            });
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Raw packets, for sources a socket cannot bind from outside a host
// ---------------------------------------------------------------------------

fn ones_complement_sum(data: &[u8], mut sum: u32) -> u32 {
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 datagram carrying UDP `payload` from `src` to `dst` (any source
/// address, including loopback ones), UDP checksum left at 0 (none).
pub fn ipv4_udp(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let total = 20 + 8 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[6] = 0x40; // don't fragment
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.ip().octets());
    p[16..20].copy_from_slice(&dst.ip().octets());
    let sum = fold(ones_complement_sum(&p[..20], 0));
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p[20..22].copy_from_slice(&src.port().to_be_bytes());
    p[22..24].copy_from_slice(&dst.port().to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p[28..].copy_from_slice(payload);
    p
}

/// Send a complete IPv4 datagram (header included) through a raw socket of
/// the calling thread's network namespace.
pub fn send_raw_ipv4(packet: &[u8], dst: Ipv4Addr) -> io::Result<()> {
    // SAFETY: plain socket/sendto/close on a descriptor we own, with a
    // sockaddr_in that lives across the call and its exact length.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_addr.s_addr = u32::from_ne_bytes(dst.octets());
        let rc = libc::sendto(
            fd,
            packet.as_ptr().cast(),
            packet.len(),
            0,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        let err = io::Error::last_os_error();
        libc::close(fd);
        if rc < 0 {
            return Err(err);
        }
    }
    Ok(())
}

/// An Ethernet frame carrying an IPv6/UDP datagram (correct UDP checksum)
/// from `src` to `dst`, for [`send_frame`].
pub fn ipv6_udp_frame(
    dst_mac: [u8; 6],
    src: SocketAddrV6,
    dst: SocketAddrV6,
    payload: &[u8],
) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let mut f = Vec::with_capacity(14 + 40 + udp_len);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f.extend_from_slice(&0x86ddu16.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.push(17);
    f.push(64);
    f.extend_from_slice(&src.ip().octets());
    f.extend_from_slice(&dst.ip().octets());
    let mut udp = Vec::with_capacity(udp_len);
    udp.extend_from_slice(&src.port().to_be_bytes());
    udp.extend_from_slice(&dst.port().to_be_bytes());
    udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let mut pseudo = Vec::with_capacity(40);
    pseudo.extend_from_slice(&src.ip().octets());
    pseudo.extend_from_slice(&dst.ip().octets());
    pseudo.extend_from_slice(&(udp_len as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 17]);
    let mut sum = fold(ones_complement_sum(&udp, ones_complement_sum(&pseudo, 0)));
    if sum == 0 {
        sum = 0xffff;
    }
    udp[6..8].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&udp);
    f
}

/// Send an Ethernet frame out of interface `ifname` of the calling thread's
/// network namespace (AF_PACKET).
pub fn send_frame(frame: &[u8], ifname: &str) -> io::Result<()> {
    let name = std::ffi::CString::new(ifname).expect("interface name");
    // SAFETY: if_nametoindex reads a NUL-terminated string; socket/sendto/
    // close on our own descriptor with a sockaddr_ll of the exact length.
    unsafe {
        let index = libc::if_nametoindex(name.as_ptr());
        if index == 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut sa: libc::sockaddr_ll = std::mem::zeroed();
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_ifindex = index as i32;
        sa.sll_halen = 6;
        sa.sll_addr[..6].copy_from_slice(&frame[..6]);
        let rc = libc::sendto(
            fd,
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&sa as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        );
        let err = io::Error::last_os_error();
        libc::close(fd);
        if rc < 0 {
            return Err(err);
        }
    }
    Ok(())
}

/// The MAC address of `ifname` in namespace `ns` (from `ip -o link`).
pub fn mac_of(ns: &super::Netns, ifname: &str) -> [u8; 6] {
    let out = ns
        .command("ip")
        .args(["-o", "link", "show", "dev", ifname])
        .output()
        .expect("ip link show");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let hex = text
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC for {ifname}: {text}"));
    let mut mac = [0u8; 6];
    for (m, h) in mac.iter_mut().zip(hex.split(':')) {
        *m = u8::from_str_radix(h, 16).expect("MAC octet");
    }
    mac
}

/// Receive on `sock` until `limit`: every datagram that arrived.
pub fn drain(sock: &UdpSocket, limit: Duration) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        let _ = sock.set_read_timeout(Some(Duration::from_millis(20)));
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            got.push(buf[..n].to_vec());
        }
    }
    got
}
