//! Readiness of many sockets with one call (`epoll`), for tools that drive several
//! sockets from one thread (the load generator).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// An epoll instance watching sockets for readability (level-triggered).
pub struct Epoll {
    fd: OwnedFd,
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    /// A new instance able to report up to `capacity` ready sockets per wait.
    pub fn new(capacity: usize) -> io::Result<Self> {
        // SAFETY: epoll_create1 takes no pointers.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by the kernel and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Epoll {
            fd,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; capacity.max(1)],
        })
    }

    /// Watch `socket` for readability, reporting it as `token`.
    pub fn add(&mut self, socket: &impl AsRawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `ev` is valid for the call; the kernel copies it.
        let rc = unsafe {
            libc::epoll_ctl(
                self.fd.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                socket.as_raw_fd(),
                &mut ev,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Wait up to `timeout_ms` (0: just poll) and append the ready tokens to `ready`.
    /// An interrupted wait reports nothing ready.
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
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            };
        }
        ready.extend(self.events[..n as usize].iter().map(|e| e.u64));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn reports_the_sockets_with_data_by_token() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut ep = Epoll::new(2).unwrap();
        ep.add(&a, 7).unwrap();
        ep.add(&b, 9).unwrap();
        let mut ready = Vec::new();
        ep.wait(0, &mut ready).unwrap();
        assert!(ready.is_empty());
        UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .send_to(b"x", b.local_addr().unwrap())
            .unwrap();
        ep.wait(2000, &mut ready).unwrap();
        assert_eq!(ready, vec![9]);
    }
}
