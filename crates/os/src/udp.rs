//! Batched UDP with kernel receive timestamps and destination addresses.
//!
//! A server's hot path lives here: one `recvmmsg` fills up to [`BATCH`] preallocated
//! slots, and one `sendmmsg` sends the replies, each from the local address its request
//! arrived on. No allocation happens per packet: [`RecvBatch`] and [`SendBatch`] own all
//! their storage and are reused. Both take the number of slots as a parameter (the server
//! uses [`BATCH`]); the load generator in `crates/bench` uses the same code with larger
//! batches, non-blocking receives and the socket drop counter, so that this crate stays
//! the only one with `unsafe` code.

use std::io;
use std::mem::{size_of, size_of_val, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

use meridian_proto::NtpTimestamp;

/// Datagrams per system call.
pub const BATCH: usize = 32;
/// Largest datagram accepted; anything longer is truncated by the kernel and dropped here.
pub const MAX_DATAGRAM: usize = 2048;
const CONTROL_LEN: usize = 128;

/// Ask the kernel to stamp received datagrams and, with `destination`, to report the
/// address each was sent to (only a wildcard-bound server needs that: it costs a control
/// message on every receive and send).
pub fn enable_rx_metadata(
    socket: &socket2::Socket,
    ipv6: bool,
    destination: bool,
) -> io::Result<()> {
    let fd = socket.as_raw_fd();
    set_int_option(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)?;
    if !destination {
        Ok(())
    } else if ipv6 {
        set_int_option(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)
    } else {
        set_int_option(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)
    }
}

/// Also report, with each received datagram, the socket's running count of datagrams
/// dropped for lack of buffer space (`SO_RXQ_OVFL`), as [`Received::socket_drops`].
pub fn enable_drop_counter(socket: &socket2::Socket) -> io::Result<()> {
    set_int_option(socket.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1)
}

/// The socket's running count of datagrams dropped for lack of buffer space, read on
/// demand (`SO_MEMINFO`). A server asks for it every few milliseconds instead of using
/// [`enable_drop_counter`], which once any drop has happened makes the kernel attach the
/// count to every datagram received: a second control message per request.
pub fn socket_drops(socket: &impl AsRawFd) -> io::Result<u32> {
    // The generic (x86, Arm, RISC-V) value; the libc crate exports it only for its
    // newer UAPI layout. SK_MEMINFO_VARS is 9 words since Linux 4.x; a newer kernel may
    // return more, which the length we pass cuts off.
    const SO_MEMINFO: libc::c_int = 55;
    const SK_MEMINFO_DROPS: usize = libc::SK_MEMINFO_DROPS as usize;
    let mut info = [0u32; 16];
    let mut len = size_of_val(&info) as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `info`, and updates `len`.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if (len as usize) < (SK_MEMINFO_DROPS + 1) * size_of::<u32>() {
        return Err(io::Error::from(io::ErrorKind::Unsupported));
    }
    Ok(info[SK_MEMINFO_DROPS])
}

/// Set the receive and send buffers to `bytes`, past `rmem_max`/`wmem_max` when the
/// process may (`SO_RCVBUFFORCE`, `CAP_NET_ADMIN`), else as far as those limits allow.
pub fn force_buffer_sizes(socket: &socket2::Socket, bytes: usize) -> io::Result<()> {
    let fd = socket.as_raw_fd();
    let v = bytes.min(i32::MAX as usize) as libc::c_int;
    if set_int_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, v).is_err() {
        set_int_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, v)?;
    }
    if set_int_option(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, v).is_err() {
        set_int_option(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, v)?;
    }
    Ok(())
}

fn set_int_option(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` outlives the call and its size is passed exactly.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One received datagram, borrowed from a [`RecvBatch`].
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    /// The payload.
    pub data: &'a [u8],
    /// Who sent it.
    pub source: SocketAddr,
    /// The local address it was sent to, when the kernel said.
    pub destination: Option<IpAddr>,
    /// The kernel's receive time (CLOCK_REALTIME), when the kernel stamped it.
    pub kernel_rx: Option<NtpTimestamp>,
    /// Whether the datagram was longer than [`MAX_DATAGRAM`] (and so cut).
    pub truncated: bool,
    /// The socket's running count of drops, with [`enable_drop_counter`].
    pub socket_drops: Option<u32>,
}

/// Preallocated storage for one `recvmmsg` call of up to `N` datagrams.
pub struct RecvBatch<const N: usize = BATCH> {
    buffers: Box<[[u8; MAX_DATAGRAM]; N]>,
    controls: Box<[[u64; CONTROL_LEN / 8]; N]>,
    addrs: Box<[libc::sockaddr_storage; N]>,
    iovecs: Box<[libc::iovec; N]>,
    headers: Box<[libc::mmsghdr; N]>,
    received: usize,
}

// SAFETY: the raw pointers inside `iovecs`/`headers` only ever point into the batch's own
// boxed storage, which moves with it.
unsafe impl<const N: usize> Send for RecvBatch<N> {}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RecvBatch {
    /// Allocate the storage once, for [`BATCH`] datagrams.
    pub fn new() -> Self {
        Self::with_slots()
    }
}

impl<const N: usize> RecvBatch<N> {
    /// Allocate the storage once, for `N` datagrams.
    pub fn with_slots() -> Self {
        // SAFETY: all of these are plain C structs for which all-zero is a valid value.
        unsafe {
            RecvBatch {
                buffers: Box::new([[0; MAX_DATAGRAM]; N]),
                controls: Box::new([[0; CONTROL_LEN / 8]; N]),
                addrs: Box::new(zeroed()),
                iovecs: Box::new(zeroed()),
                headers: Box::new(zeroed()),
                received: 0,
            }
        }
    }

    /// Block (subject to the socket's read timeout) until at least one datagram arrives,
    /// then take up to `N` without waiting further. Returns how many arrived.
    pub fn recv(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
        self.recv_flags(socket, libc::MSG_WAITFORONE)
    }

    /// Take up to `N` datagrams already queued, without waiting: `WouldBlock` if none is.
    pub fn recv_nowait(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
        self.recv_flags(socket, libc::MSG_DONTWAIT)
    }

    fn recv_flags(&mut self, socket: &impl AsRawFd, flags: libc::c_int) -> io::Result<usize> {
        for i in 0..N {
            self.iovecs[i] = libc::iovec {
                iov_base: self.buffers[i].as_mut_ptr().cast(),
                iov_len: MAX_DATAGRAM,
            };
            let hdr = &mut self.headers[i].msg_hdr;
            hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = &mut self.iovecs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = self.controls[i].as_mut_ptr().cast();
            hdr.msg_controllen = CONTROL_LEN as _;
            hdr.msg_flags = 0;
            self.headers[i].msg_len = 0;
        }
        // SAFETY: every header points at storage owned by `self` that lives across the call,
        // with the lengths given.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.headers.as_mut_ptr(),
                N as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            self.received = 0;
            return Err(io::Error::last_os_error());
        }
        self.received = n as usize;
        Ok(self.received)
    }

    /// How many datagrams the last [`RecvBatch::recv`] took.
    pub fn len(&self) -> usize {
        self.received
    }

    /// Whether the last receive took nothing.
    pub fn is_empty(&self) -> bool {
        self.received == 0
    }

    /// The `i`th datagram of the last receive; `None` past the end or for an address
    /// family other than IPv4/IPv6.
    pub fn get(&self, i: usize) -> Option<Received<'_>> {
        if i >= self.received {
            return None;
        }
        let hdr = &self.headers[i].msg_hdr;
        let len = (self.headers[i].msg_len as usize).min(MAX_DATAGRAM);
        let source = sockaddr_to_std(&self.addrs[i])?;
        let mut destination = None;
        let mut kernel_rx = None;
        let mut socket_drops = None;
        // SAFETY: the kernel wrote `msg_controllen` bytes of well-formed cmsgs into our
        // control buffer; the CMSG_* macros stay within that length.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
            while !cmsg.is_null() {
                let c = &*cmsg;
                let data = libc::CMSG_DATA(cmsg);
                match (c.cmsg_level, c.cmsg_type) {
                    (libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS) => {
                        let ts: libc::timespec = std::ptr::read_unaligned(data.cast());
                        kernel_rx = Some(NtpTimestamp::from_unix(ts.tv_sec, ts.tv_nsec as u32));
                    }
                    (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                        let info: libc::in_pktinfo = std::ptr::read_unaligned(data.cast());
                        destination = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                            info.ipi_addr.s_addr,
                        ))));
                    }
                    (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                        let info: libc::in6_pktinfo = std::ptr::read_unaligned(data.cast());
                        destination = Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
                    }
                    (libc::SOL_SOCKET, libc::SO_RXQ_OVFL) => {
                        socket_drops = Some(std::ptr::read_unaligned(data.cast::<u32>()));
                    }
                    _ => {}
                }
                cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
            }
        }
        Some(Received {
            data: &self.buffers[i][..len],
            source,
            destination,
            kernel_rx,
            truncated: hdr.msg_flags & libc::MSG_TRUNC != 0,
            socket_drops,
        })
    }
}

/// Preallocated storage for one `sendmmsg` call of up to `N` datagrams.
pub struct SendBatch<const N: usize = BATCH> {
    buffers: Box<[[u8; MAX_DATAGRAM]; N]>,
    lens: [usize; N],
    controls: Box<[[u64; CONTROL_LEN / 8]; N]>,
    addrs: Box<[libc::sockaddr_storage; N]>,
    addr_lens: [libc::socklen_t; N],
    sources: [Option<IpAddr>; N],
    iovecs: Box<[libc::iovec; N]>,
    headers: Box<[libc::mmsghdr; N]>,
    queued: usize,
}

// SAFETY: as for RecvBatch, pointers only refer to the batch's own storage.
unsafe impl<const N: usize> Send for SendBatch<N> {}

impl Default for SendBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl SendBatch {
    /// Allocate the storage once, for [`BATCH`] datagrams.
    pub fn new() -> Self {
        Self::with_slots()
    }
}

impl<const N: usize> SendBatch<N> {
    /// Allocate the storage once, for `N` datagrams.
    pub fn with_slots() -> Self {
        // SAFETY: plain C structs; all-zero is valid.
        unsafe {
            SendBatch {
                buffers: Box::new([[0; MAX_DATAGRAM]; N]),
                lens: [0; N],
                controls: Box::new([[0; CONTROL_LEN / 8]; N]),
                addrs: Box::new(zeroed()),
                addr_lens: [0; N],
                sources: [None; N],
                iovecs: Box::new(zeroed()),
                headers: Box::new(zeroed()),
                queued: 0,
            }
        }
    }

    /// Whether no more datagrams fit.
    pub fn is_full(&self) -> bool {
        self.queued == N
    }

    /// Number of queued datagrams.
    pub fn len(&self) -> usize {
        self.queued
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Let `fill` write a datagram into the next slot's buffer and return its length, or
    /// `None` to queue nothing; it goes to `dest`, from `source` when given. Returns
    /// whether a datagram was queued (never when the batch is full).
    pub fn push_with(
        &mut self,
        dest: SocketAddr,
        source: Option<IpAddr>,
        fill: impl FnOnce(&mut [u8; MAX_DATAGRAM]) -> Option<usize>,
    ) -> bool {
        if self.is_full() {
            return false;
        }
        let i = self.queued;
        let Some(len) = fill(&mut self.buffers[i]) else {
            return false;
        };
        let len = len.min(MAX_DATAGRAM);
        self.lens[i] = len;
        self.addr_lens[i] = std_to_sockaddr(dest, &mut self.addrs[i]);
        self.sources[i] = source;
        self.queued += 1;
        true
    }

    /// The queued datagrams' payloads, to patch (for example the transmit timestamp,
    /// written last, just before [`SendBatch::send`]).
    pub fn payloads_mut(&mut self) -> impl Iterator<Item = &mut [u8]> {
        let lens = self.lens;
        self.buffers[..self.queued]
            .iter_mut()
            .zip(lens)
            .map(|(b, l)| &mut b[..l])
    }

    /// Send everything queued with one `sendmmsg` (retrying for a partial send), then
    /// empty the batch. Returns how many datagrams the kernel took.
    pub fn send(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
        let n = self.prepare();
        let mut sent = 0;
        let mut result = Ok(0);
        while sent < n {
            match self.sendmmsg(socket, sent, n) {
                Ok(k) => {
                    sent += k;
                    result = Ok(sent);
                }
                Err(err) => {
                    // Skip the datagram that failed (for example an unreachable
                    // destination) so one bad client cannot stall the rest of the batch.
                    sent += 1;
                    result = Err(err);
                }
            }
        }
        self.queued = 0;
        result.map(|_| sent)
    }

    /// Send the queued datagrams in order until the kernel refuses one (a full send
    /// buffer on a non-blocking socket, say), then empty the batch. Returns how many went
    /// out, all before the refused one, and the refusal.
    pub fn send_until_refused(&mut self, socket: &impl AsRawFd) -> (usize, Option<io::Error>) {
        let n = self.prepare();
        let mut sent = 0;
        let mut refused = None;
        while sent < n {
            match self.sendmmsg(socket, sent, n) {
                Ok(k) => sent += k,
                Err(err) => {
                    refused = Some(err);
                    break;
                }
            }
        }
        self.queued = 0;
        (sent, refused)
    }

    /// Point the headers of the queued datagrams at their storage; returns how many.
    fn prepare(&mut self) -> usize {
        let n = self.queued;
        for i in 0..n {
            self.iovecs[i] = libc::iovec {
                iov_base: self.buffers[i].as_mut_ptr().cast(),
                iov_len: self.lens[i],
            };
            let control_len = write_source_cmsg(self.sources[i], &mut self.controls[i]);
            let hdr = &mut self.headers[i].msg_hdr;
            hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = self.addr_lens[i];
            hdr.msg_iov = &mut self.iovecs[i];
            hdr.msg_iovlen = 1;
            if control_len == 0 {
                hdr.msg_control = std::ptr::null_mut();
            } else {
                hdr.msg_control = self.controls[i].as_mut_ptr().cast();
            }
            hdr.msg_controllen = control_len as _;
            hdr.msg_flags = 0;
        }
        n
    }

    /// One `sendmmsg` of prepared datagrams `[from, to)`, retried on EINTR; how many
    /// the kernel took (at least one), or why it took none.
    fn sendmmsg(&mut self, socket: &impl AsRawFd, from: usize, to: usize) -> io::Result<usize> {
        loop {
            // SAFETY: `prepare` pointed headers [from, to) at storage owned by `self`, valid
            // across the call; `to` never exceeds the slots queued.
            let rc = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    self.headers.as_mut_ptr().add(from),
                    (to - from) as libc::c_uint,
                    0,
                )
            };
            if rc > 0 {
                return Ok(rc as usize);
            }
            let err = if rc == 0 {
                io::Error::from(io::ErrorKind::WriteZero)
            } else {
                io::Error::last_os_error()
            };
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

fn write_source_cmsg(source: Option<IpAddr>, control: &mut [u64; CONTROL_LEN / 8]) -> usize {
    let Some(source) = source else { return 0 };
    if source.is_unspecified() {
        return 0;
    }
    // SAFETY: the control buffer is CONTROL_LEN bytes, more than CMSG_SPACE of either
    // pktinfo struct, and 8-byte aligned as cmsghdr requires.
    unsafe {
        let mut msg: libc::msghdr = zeroed();
        msg.msg_control = control.as_mut_ptr().cast();
        match source {
            IpAddr::V4(v4) => {
                let space = libc::CMSG_SPACE(size_of::<libc::in_pktinfo>() as u32) as usize;
                msg.msg_controllen = space as _;
                let cmsg = libc::CMSG_FIRSTHDR(&msg);
                (*cmsg).cmsg_level = libc::IPPROTO_IP;
                (*cmsg).cmsg_type = libc::IP_PKTINFO;
                (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as _;
                let info = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(v4).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast(), info);
                space
            }
            IpAddr::V6(v6) => {
                let space = libc::CMSG_SPACE(size_of::<libc::in6_pktinfo>() as u32) as usize;
                msg.msg_controllen = space as _;
                let cmsg = libc::CMSG_FIRSTHDR(&msg);
                (*cmsg).cmsg_level = libc::IPPROTO_IPV6;
                (*cmsg).cmsg_type = libc::IPV6_PKTINFO;
                (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<libc::in6_pktinfo>() as u32) as _;
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: v6.octets(),
                    },
                    ipi6_ifindex: 0,
                };
                std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast(), info);
                space
            }
        }
    }
}

fn sockaddr_to_std(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let sin: &libc::sockaddr_in =
                unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let sin6: &libc::sockaddr_in6 =
                unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                u32::from_be(sin6.sin6_flowinfo),
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn std_to_sockaddr(addr: SocketAddr, storage: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large enough and suitably aligned for sockaddr_in.
            let sin: &mut libc::sockaddr_in =
                unsafe { &mut *(storage as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            };
            sin.sin_zero = [0; 8];
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6: &mut libc::sockaddr_in6 =
                unsafe { &mut *(storage as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_flowinfo = v6.flowinfo().to_be();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: v6.ip().octets(),
            };
            sin6.sin6_scope_id = v6.scope_id();
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::{Domain, Protocol, Socket, Type};
    use std::net::UdpSocket;
    use std::time::Duration;

    fn bound_v4() -> Socket {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        s.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        enable_rx_metadata(&s, false, true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s
    }

    #[test]
    fn batch_round_trip_carries_timestamp_destination_and_source() {
        let server = bound_v4();
        let server_addr = server.local_addr().unwrap().as_socket().unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        for i in 0..3u8 {
            client.send_to(&[i; 48], server_addr).unwrap();
        }
        let mut rx = RecvBatch::new();
        let mut got = 0;
        while got < 3 {
            let n = rx.recv(&server).unwrap();
            for i in 0..n {
                let p = rx.get(i).unwrap();
                assert_eq!(p.data.len(), 48);
                assert_eq!(p.source, client.local_addr().unwrap());
                assert_eq!(p.destination, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
                let rx_unix = p
                    .kernel_rx
                    .expect("kernel timestamp")
                    .to_unix(1_700_000_000)
                    .0;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs() as i64;
                assert!(
                    (rx_unix - now).abs() <= 2,
                    "kernel stamp {rx_unix} vs now {now}"
                );
                assert!(!p.truncated);
            }
            got += n;
        }
        let mut tx = SendBatch::new();
        let dest = client.local_addr().unwrap();
        for i in 0..2u8 {
            assert!(
                tx.push_with(dest, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), |b| {
                    b[..4].copy_from_slice(&[i, 1, 2, 3]);
                    Some(4)
                })
            );
        }
        assert!(
            !tx.push_with(dest, None, |_| None),
            "a declined fill queues nothing"
        );
        assert_eq!(tx.len(), 2);
        for p in tx.payloads_mut() {
            p[3] = 9;
        }
        assert_eq!(tx.send(&server).unwrap(), 2);
        let mut buf = [0u8; 64];
        for i in 0..2u8 {
            let (n, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[i, 1, 2, 9]);
            assert_eq!(from, server_addr);
        }
    }

    #[test]
    fn socket_drops_counts_what_a_full_receive_buffer_refused() {
        let server = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        server
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        // The smallest buffer the kernel grants holds a few datagrams; nobody reads.
        server.set_recv_buffer_size(1).unwrap();
        let addr = server.local_addr().unwrap().as_socket().unwrap();
        assert_eq!(socket_drops(&server).unwrap(), 0);
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..200 {
            client.send_to(&[0u8; 48], addr).unwrap();
        }
        let drops = socket_drops(&server).unwrap();
        assert!(drops > 100 && drops < 200, "{drops} of 200 dropped");
    }

    #[test]
    fn larger_batches_nowait_receive_drop_counter_and_send_until_refused() {
        let server = bound_v4();
        enable_drop_counter(&server).unwrap();
        let server_addr = server.local_addr().unwrap().as_socket().unwrap();
        let mut rx = RecvBatch::<64>::with_slots();
        assert_eq!(
            rx.recv_nowait(&server).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        // 40 datagrams from a wildcard-bound client, each from its own loopback source.
        let client = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        client
            .bind(&"0.0.0.0:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        let mut tx = SendBatch::<64>::with_slots();
        for i in 0..40u8 {
            let source = IpAddr::V4(Ipv4Addr::new(127, 8, 0, 1 + i));
            assert!(tx.push_with(server_addr, Some(source), |b| {
                b[0] = i;
                Some(1)
            }));
        }
        assert_eq!(tx.send_until_refused(&client).0, 40);
        assert!(tx.is_empty());
        let mut got = 0;
        while got < 40 {
            let n = rx.recv(&server).unwrap();
            for i in 0..n {
                let p = rx.get(i).unwrap();
                let k = p.data[0];
                assert_eq!(p.source.ip(), IpAddr::V4(Ipv4Addr::new(127, 8, 0, 1 + k)));
                // The kernel only says once there have been drops.
                assert_eq!(p.socket_drops, None);
            }
            got += n;
        }
        // Overfill a small buffer: a datagram queued after the drops carries their count.
        server.set_recv_buffer_size(4096).unwrap();
        for _ in 0..4 {
            for _ in 0..50 {
                tx.push_with(server_addr, None, |_| Some(1));
            }
            tx.send_until_refused(&client);
        }
        while rx.recv_nowait(&server).is_ok() {}
        tx.push_with(server_addr, None, |_| Some(1));
        assert_eq!(tx.send_until_refused(&client).0, 1);
        assert_eq!(rx.recv(&server).unwrap(), 1);
        let drops = rx.get(0).unwrap().socket_drops.expect("a drop count");
        assert!(drops > 0 && drops < 200, "{drops}");
        // A destination the kernel refuses at once (port 0): nothing goes, and why is said.
        let mut tx = SendBatch::new();
        tx.push_with("127.0.0.1:0".parse().unwrap(), None, |_| Some(1));
        tx.push_with(server_addr, None, |_| Some(1));
        let (sent, refused) = tx.send_until_refused(&client);
        assert_eq!(sent, 0);
        assert!(refused.is_some());
        assert!(tx.is_empty());
    }

    #[test]
    fn oversize_datagram_is_flagged_truncated() {
        let server = bound_v4();
        let server_addr = server.local_addr().unwrap().as_socket().unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .send_to(&vec![7u8; MAX_DATAGRAM + 100], server_addr)
            .unwrap();
        let mut rx = RecvBatch::new();
        assert_eq!(rx.recv(&server).unwrap(), 1);
        let p = rx.get(0).unwrap();
        assert!(p.truncated);
        assert_eq!(p.data.len(), MAX_DATAGRAM);
    }
}
