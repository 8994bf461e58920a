//! The bench crate's only `unsafe` code: thin wrappers over Linux system calls.
//!
//! * [`Batch`]: preallocated storage for one `recvmmsg` or `sendmmsg` call, IPv4 only,
//!   with per-message source addresses on send (`IP_PKTINFO`) and the kernel's receive
//!   timestamp, destination address and socket drop counter on receive.
//! * [`Epoll`]: readiness of many sockets with one call.
//! * [`enable_rx_metadata`], [`force_buffers`]: socket options `socket2` does not cover.
//! * [`pin_to_cpu`], [`realtime_ns`], [`clock_ticks_per_second`].
//!
//! Invariants relied on by every `unsafe` block: a [`Batch`]'s headers only ever point into
//! the batch's own boxed storage (which does not move while a call runs, because the call
//! borrows the batch mutably), every length handed to the kernel is the size of the
//! storage it describes, and every C struct read back was written by the kernel with the
//! length it reported.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Most datagrams one [`Batch`] holds.
pub const MAX_BATCH: usize = 64;
/// Bytes of payload storage per datagram; longer datagrams are cut and flagged truncated.
/// Room for an NTS request or reply carrying eight 100-octet cookies (956 octets).
pub const BUF_LEN: usize = 1024;
const CONTROL_LEN: usize = 128;

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn set_int(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` outlives the call and its exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    check(rc).map(|_| ())
}

/// Ask the kernel to report, with each received datagram, its receive time
/// (`SO_TIMESTAMPNS`, CLOCK_REALTIME), its destination address (`IP_PKTINFO`) and the
/// socket's running count of datagrams dropped for lack of buffer space (`SO_RXQ_OVFL`).
pub fn enable_rx_metadata(fd: &impl AsRawFd) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    set_int(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)?;
    set_int(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)?;
    set_int(fd, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1)
}

/// Set the receive and send buffers to `bytes`, past `rmem_max`/`wmem_max` when the
/// process may (`SO_RCVBUFFORCE`, root), else as far as the limits allow.
pub fn force_buffers(fd: &impl AsRawFd, bytes: usize) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    let v = bytes.min(i32::MAX as usize) as libc::c_int;
    if set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, v).is_err() {
        set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, v)?;
    }
    if set_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, v).is_err() {
        set_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, v)?;
    }
    Ok(())
}

/// Pin the calling thread to one CPU.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is a plain bit array (all-zero is the empty set); CPU_SET bounds-
    // checks `cpu` against the set's size; the set outlives the call and its size is exact.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set)
    };
    check(rc).map(|_| ())
}

/// CLOCK_REALTIME in nanoseconds since the Unix epoch (the scale of `SO_TIMESTAMPNS`).
pub fn realtime_ns() -> u64 {
    // SAFETY: all-zero is a valid timespec, which clock_gettime overwrites; the pointer is valid.
    let ts = unsafe {
        let mut ts: libc::timespec = zeroed();
        libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts);
        ts
    };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The kernel's clock tick rate (`_SC_CLK_TCK`), the unit of CPU times in `/proc/PID/stat`.
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf reads a constant and has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// What the kernel reported about one received datagram.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxMeta {
    /// Kernel receive time, nanoseconds since the Unix epoch (CLOCK_REALTIME).
    pub kernel_ns: Option<u64>,
    /// The local address the datagram was sent to.
    pub destination: Option<Ipv4Addr>,
    /// The socket's running count of datagrams dropped for lack of buffer space.
    pub socket_drops: Option<u32>,
    /// The datagram was longer than [`BUF_LEN`] and was cut.
    pub truncated: bool,
}

/// Preallocated storage for one `recvmmsg` or `sendmmsg` call of up to [`MAX_BATCH`]
/// IPv4 datagrams. The same slots serve both directions, so an echo responder can receive
/// a batch, edit it in place and send it back to the senders.
pub struct Batch {
    bufs: Box<[[u8; BUF_LEN]; MAX_BATCH]>,
    lens: [usize; MAX_BATCH],
    addrs: Box<[libc::sockaddr_in; MAX_BATCH]>,
    sources: [Option<Ipv4Addr>; MAX_BATCH],
    controls: Box<[[u64; CONTROL_LEN / 8]; MAX_BATCH]>,
    iovecs: Box<[libc::iovec; MAX_BATCH]>,
    headers: Box<[libc::mmsghdr; MAX_BATCH]>,
}

// SAFETY: the raw pointers inside `iovecs`/`headers` only point into the batch's own boxed
// storage, which moves with it; they are rewritten before every call anyway.
unsafe impl Send for Batch {}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    /// Allocate the storage once.
    pub fn new() -> Self {
        // SAFETY: sockaddr_in, iovec and mmsghdr are plain C structs; all-zero is valid
        // (null pointers are never handed to the kernel: `recv`/`send` set them first).
        unsafe {
            Batch {
                bufs: Box::new([[0; BUF_LEN]; MAX_BATCH]),
                lens: [0; MAX_BATCH],
                addrs: Box::new(zeroed()),
                sources: [None; MAX_BATCH],
                controls: Box::new([[0; CONTROL_LEN / 8]; MAX_BATCH]),
                iovecs: Box::new(zeroed()),
                headers: Box::new(zeroed()),
            }
        }
    }

    /// Slot `i`'s payload storage, to fill before [`Batch::send`].
    pub fn buf_mut(&mut self, i: usize) -> &mut [u8; BUF_LEN] {
        &mut self.bufs[i]
    }

    /// Slot `i`'s payload: what was received, or what will be sent.
    pub fn payload(&self, i: usize) -> &[u8] {
        &self.bufs[i][..self.lens[i].min(BUF_LEN)]
    }

    /// Slot `i`'s payload, mutable, at its current length.
    pub fn payload_mut(&mut self, i: usize) -> &mut [u8] {
        let len = self.lens[i].min(BUF_LEN);
        &mut self.bufs[i][..len]
    }

    /// Set slot `i`'s payload length for sending.
    pub fn set_len(&mut self, i: usize, len: usize) {
        self.lens[i] = len.min(BUF_LEN);
    }

    /// Slot `i`'s peer: the sender after a receive, the destination for a send.
    pub fn peer(&self, i: usize) -> SocketAddrV4 {
        let a = &self.addrs[i];
        SocketAddrV4::new(
            Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
            u16::from_be(a.sin_port),
        )
    }

    /// Set slot `i`'s destination.
    pub fn set_peer(&mut self, i: usize, addr: SocketAddrV4) {
        self.addrs[i] = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: addr.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*addr.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
    }

    /// Send slot `i` from `source` (`IP_PKTINFO`; the socket must be bound to the wildcard
    /// address for replies to reach it), or from the socket's own address with `None`.
    pub fn set_source(&mut self, i: usize, source: Option<Ipv4Addr>) {
        self.sources[i] = source;
    }

    /// Receive up to `max` datagrams (at most [`MAX_BATCH`]) with `flags` (for example
    /// `MSG_DONTWAIT` or `MSG_WAITFORONE`). Returns how many arrived; slots `0..n` then
    /// hold their payloads and senders, and their sources are reset to `None`.
    pub fn recv(&mut self, fd: &impl AsRawFd, max: usize, flags: libc::c_int) -> io::Result<usize> {
        let max = max.clamp(1, MAX_BATCH);
        for i in 0..max {
            self.iovecs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: BUF_LEN,
            };
            let h = &mut self.headers[i];
            h.msg_len = 0;
            h.msg_hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_in).cast();
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_hdr.msg_iov = &mut self.iovecs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = self.controls[i].as_mut_ptr().cast();
            h.msg_hdr.msg_controllen = CONTROL_LEN as _;
            h.msg_hdr.msg_flags = 0;
        }
        // SAFETY: headers 0..max point at storage owned by `self`, valid for the call, with
        // the lengths of that storage.
        let n = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.headers.as_mut_ptr(),
                max as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        let n = check(n)? as usize;
        for i in 0..n {
            self.lens[i] = self.headers[i].msg_len as usize;
            self.sources[i] = None;
        }
        Ok(n)
    }

    /// What the kernel said about received slot `i` (valid after [`Batch::recv`]).
    pub fn meta(&self, i: usize) -> RxMeta {
        let hdr = &self.headers[i].msg_hdr;
        let mut meta = RxMeta {
            truncated: hdr.msg_flags & libc::MSG_TRUNC != 0,
            ..RxMeta::default()
        };
        if hdr.msg_control.is_null() {
            return meta;
        }
        // SAFETY: after recvmmsg the kernel wrote `msg_controllen` bytes of well-formed
        // cmsgs into this slot's control buffer; CMSG_* stay within that length, and the
        // payloads are read unaligned with the types their level/type pairs define.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
            while !cmsg.is_null() {
                let c = &*cmsg;
                let data = libc::CMSG_DATA(cmsg);
                match (c.cmsg_level, c.cmsg_type) {
                    (libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS) => {
                        let ts: libc::timespec = std::ptr::read_unaligned(data.cast());
                        meta.kernel_ns = Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
                    }
                    (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                        let info: libc::in_pktinfo = std::ptr::read_unaligned(data.cast());
                        meta.destination = Some(Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr)));
                    }
                    (libc::SOL_SOCKET, libc::SO_RXQ_OVFL) => {
                        meta.socket_drops = Some(std::ptr::read_unaligned(data.cast::<u32>()));
                    }
                    _ => {}
                }
                cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
            }
        }
        meta
    }

    /// Send slots `0..n` (each to its peer, from its source) with as few `sendmmsg` calls
    /// as the kernel allows. Stops at the first datagram the kernel refuses and returns
    /// how many went out before it, with the error if there was one.
    pub fn send(&mut self, fd: &impl AsRawFd, n: usize) -> (usize, Option<io::Error>) {
        let n = n.min(MAX_BATCH);
        for i in 0..n {
            self.iovecs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: self.lens[i],
            };
            let control_len = match self.sources[i] {
                Some(src) => write_pktinfo(src, &mut self.controls[i]),
                None => 0,
            };
            let h = &mut self.headers[i];
            h.msg_len = 0;
            h.msg_hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_in).cast();
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_hdr.msg_iov = &mut self.iovecs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = if control_len == 0 {
                std::ptr::null_mut()
            } else {
                self.controls[i].as_mut_ptr().cast()
            };
            h.msg_hdr.msg_controllen = control_len as _;
            h.msg_hdr.msg_flags = 0;
        }
        let mut sent = 0;
        while sent < n {
            // SAFETY: headers sent..n point at storage owned by `self`, valid for the call.
            let rc = unsafe {
                libc::sendmmsg(
                    fd.as_raw_fd(),
                    self.headers.as_mut_ptr().add(sent),
                    (n - sent) as libc::c_uint,
                    0,
                )
            };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return (sent, Some(e));
            }
            sent += rc as usize;
        }
        (sent, None)
    }
}

/// Write an `IP_PKTINFO` control message asking for source address `src`; returns its
/// space in bytes.
fn write_pktinfo(src: Ipv4Addr, control: &mut [u64; CONTROL_LEN / 8]) -> usize {
    // SAFETY: the control buffer is CONTROL_LEN bytes, more than CMSG_SPACE(in_pktinfo),
    // and 8-byte aligned as cmsghdr requires; msghdr is only used to locate the first cmsg.
    unsafe {
        let space = libc::CMSG_SPACE(size_of::<libc::in_pktinfo>() as u32) as usize;
        let mut msg: libc::msghdr = zeroed();
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::IPPROTO_IP;
        (*cmsg).cmsg_type = libc::IP_PKTINFO;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as _;
        let info = libc::in_pktinfo {
            ipi_ifindex: 0,
            ipi_spec_dst: libc::in_addr {
                s_addr: u32::from(src).to_be(),
            },
            ipi_addr: libc::in_addr { s_addr: 0 },
        };
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast(), info);
        space
    }
}

/// An epoll instance watching sockets for readability (level-triggered).
pub struct Epoll {
    fd: OwnedFd,
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    /// A new instance able to report up to `capacity` ready sockets per wait.
    pub fn new(capacity: usize) -> io::Result<Self> {
        // SAFETY: epoll_create1 takes no pointers; a non-negative result is a new fd we own.
        let fd = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `fd` was just returned by the kernel and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Epoll {
            fd,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; capacity.max(1)],
        })
    }

    /// Watch `fd` for readability, reporting it as `token`.
    pub fn add(&mut self, fd: &impl AsRawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `ev` is valid for the call; the kernel copies it.
        check(unsafe {
            libc::epoll_ctl(
                self.fd.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd.as_raw_fd(),
                &mut ev,
            )
        })
        .map(|_| ())
    }

    /// Wait up to `timeout_ms` (0: just poll) and append the ready tokens to `ready`.
    pub fn wait(&mut self, timeout_ms: i32, ready: &mut Vec<u64>) -> io::Result<()> {
        // SAFETY: `events` has room for exactly the count passed.
        let n = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as libc::c_int,
                timeout_ms,
            )
        };
        match check(n) {
            Ok(n) => {
                ready.extend(self.events[..n as usize].iter().map(|e| e.u64));
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::{Domain, Protocol, Socket, Type};

    fn socket(addr: &str) -> Socket {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        s.bind(&addr.parse::<std::net::SocketAddr>().unwrap().into())
            .unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        s
    }

    fn v4(s: &Socket) -> SocketAddrV4 {
        match s.local_addr().unwrap().as_socket().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            other => panic!("not IPv4: {other}"),
        }
    }

    #[test]
    fn batch_round_trip_with_pktinfo_source_and_metadata() {
        let server = socket("127.0.0.1:0");
        enable_rx_metadata(&server).unwrap();
        let client = socket("0.0.0.0:0");
        let server_addr = v4(&server);
        let mut tx = Batch::new();
        for i in 0..3 {
            tx.buf_mut(i)[..4].copy_from_slice(&[i as u8, 1, 2, 3]);
            tx.set_len(i, 4);
            tx.set_peer(i, server_addr);
            tx.set_source(i, Some(Ipv4Addr::new(127, 9, 0, 1 + i as u8)));
        }
        let (sent, err) = tx.send(&client, 3);
        assert_eq!((sent, err.map(|e| e.to_string())), (3, None));
        let mut rx = Batch::new();
        let mut got = 0;
        let before = realtime_ns();
        while got < 3 {
            let n = rx.recv(&server, MAX_BATCH, libc::MSG_WAITFORONE).unwrap();
            for i in 0..n {
                let k = rx.payload(i)[0];
                assert_eq!(rx.payload(i), &[k, 1, 2, 3]);
                assert_eq!(*rx.peer(i).ip(), Ipv4Addr::new(127, 9, 0, 1 + k));
                assert_eq!(rx.peer(i).port(), v4(&client).port());
                let m = rx.meta(i);
                assert_eq!(m.destination, Some(Ipv4Addr::LOCALHOST));
                let stamp = m.kernel_ns.expect("kernel timestamp");
                assert!(stamp.abs_diff(before) < 2_000_000_000);
                assert!(!m.truncated);
            }
            got += n;
        }
    }
}
