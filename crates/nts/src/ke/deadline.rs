//! A TCP stream with one deadline for the whole NTS-KE exchange: before
//! every read and write the socket timeout is set to the time left, so a
//! peer trickling one byte at a time (slow loris) cannot stretch the
//! exchange past the deadline, which per-operation timeouts alone allow.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A [`TcpStream`] whose reads and writes fail with `TimedOut` once the
/// deadline has passed.
#[derive(Debug)]
pub struct DeadlineStream {
    stream: TcpStream,
    deadline: Instant,
}

impl DeadlineStream {
    /// Wraps `stream`; every operation must finish within `budget` of now.
    pub fn new(stream: TcpStream, budget: Duration) -> Self {
        DeadlineStream {
            stream,
            deadline: Instant::now() + budget,
        }
    }

    fn arm(&self, write: bool) -> io::Result<()> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "NTS-KE deadline passed",
            ));
        }
        if write {
            self.stream.set_write_timeout(Some(left))
        } else {
            self.stream.set_read_timeout(Some(left))
        }
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &TcpStream {
        &self.stream
    }
}

impl Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.arm(false)?;
        self.stream.read(buf)
    }
}

impl Write for DeadlineStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.arm(true)?;
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// Maps socket timeouts to [`crate::KeError::Timeout`].
pub fn map_io(e: io::Error) -> crate::KeError {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => crate::KeError::Timeout,
        io::ErrorKind::UnexpectedEof => crate::KeError::Truncated,
        _ => crate::KeError::Io(e),
    }
}
