//! Service manager integration: systemd's notification protocol (`sd_notify(3)`).
//!
//! Under `Type=notify` systemd hands the daemon a unix datagram socket in
//! `$NOTIFY_SOCKET` and waits for `READY=1` before it counts the service as started
//! (so units ordered after `time-sync.target` start only once the sockets are bound);
//! with `WatchdogSec=` it also sets `$WATCHDOG_USEC` and restarts the service when the
//! main loop stops sending `WATCHDOG=1`.
//!
//! The protocol is one datagram of `NAME=value` lines per message. It is implemented
//! here on `std`'s [`UnixDatagram`] rather than with libsystemd, which keeps the
//! daemon free of C dependencies and of `unsafe`. Abstract-namespace sockets (an
//! address starting with `@`, which systemd uses in containers and for user services)
//! go through Linux's [`SocketAddrExt::from_abstract_name`], since a path starting
//! with `@` would name a file instead.
//!
//! Everything here is best effort: without `$NOTIFY_SOCKET` (not started by systemd)
//! the calls do nothing, and a failed send is logged, never fatal — a notification
//! must not take the time service down.

use std::io;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::time::{Duration, Instant};

#[cfg(target_os = "linux")]
use std::os::linux::net::SocketAddrExt;

/// The environment variable systemd names its notification socket in.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Start-up is complete: sockets are bound and requests are being served.
pub const READY: &str = "READY=1";
/// The daemon is shutting down.
pub const STOPPING: &str = "STOPPING=1";
/// The main loop is alive (sent by [`Watchdog::tick`]).
pub const WATCHDOG: &str = "WATCHDOG=1";

/// Where `$NOTIFY_SOCKET` points: a path, or a name in Linux's abstract namespace.
fn notify_address(value: &str) -> io::Result<UnixAddr> {
    if let Some(name) = value.strip_prefix('@') {
        #[cfg(target_os = "linux")]
        return UnixAddr::from_abstract_name(name.as_bytes());
        #[cfg(not(target_os = "linux"))]
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("abstract socket @{name} needs Linux"),
        ));
    }
    if value.starts_with('/') {
        return UnixAddr::from_pathname(value);
    }
    // systemd also knows `vsock:CID:PORT` (for VMs); Meridian does not need it.
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        format!("unsupported {NOTIFY_SOCKET} address '{value}'"),
    ))
}

/// Send `state` (one or more `NAME=value` lines, e.g. [`READY`] or
/// `"READY=1\nSTATUS=serving"`) to the service manager. Returns `Ok(false)` when no
/// service manager listens (`$NOTIFY_SOCKET` unset or empty), `Ok(true)` when sent.
pub fn try_notify(state: &str) -> io::Result<bool> {
    let Some(value) = std::env::var_os(NOTIFY_SOCKET) else {
        return Ok(false);
    };
    let value = value.to_string_lossy();
    if value.is_empty() {
        return Ok(false);
    }
    send_state(&notify_address(&value)?, state)?;
    Ok(true)
}

/// Send one notification datagram to `addr` without ever waiting.
fn send_state(addr: &UnixAddr, state: &str) -> io::Result<()> {
    // An unbound socket: systemd identifies the sender by its credentials (PID), not
    // by a return address, and nothing is ever read back. Non-blocking, because the
    // main loop sends these: a service manager that stops reading would otherwise
    // freeze syncing and signal handling once its queue (max_dgram_qlen) is full.
    let socket = UnixDatagram::unbound()?;
    socket.set_nonblocking(true)?;
    socket.send_to_addr(state.as_bytes(), addr)?;
    Ok(())
}

/// [`try_notify`], logging (at debug level) instead of failing: what the daemon calls.
pub fn notify(state: &str) {
    match try_notify(state) {
        Ok(true) => tracing::trace!("sd_notify: {state}"),
        Ok(false) => {}
        Err(e) => tracing::debug!("sd_notify '{state}' failed: {e}"),
    }
}

/// The watchdog interval systemd asks for, from `$WATCHDOG_USEC` (and `$WATCHDOG_PID`,
/// which when set must be this process): `None` when no watchdog is configured.
pub fn watchdog_interval() -> Option<Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID") {
        // The variables may have been inherited from a parent that systemd watches.
        if pid.to_str()?.trim().parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Sends `WATCHDOG=1` from the main loop at half the interval systemd asked for, as
/// `sd_watchdog_enabled(3)` recommends, so one slow turn does not trip it.
#[derive(Debug)]
pub struct Watchdog {
    every: Duration,
    last: Option<Instant>,
}

impl Watchdog {
    /// The watchdog systemd configured for this process, if any.
    pub fn from_env() -> Option<Watchdog> {
        watchdog_interval().map(Watchdog::with_interval)
    }

    /// A watchdog for a service manager timeout of `interval`.
    pub fn with_interval(interval: Duration) -> Watchdog {
        Watchdog {
            every: (interval / 2).max(Duration::from_millis(1)),
            last: None,
        }
    }

    /// How often [`Self::tick`] pings.
    pub fn period(&self) -> Duration {
        self.every
    }

    /// Call on every turn of the main loop: pings when half the interval has passed
    /// since the last ping (or on the first call). Returns whether it pinged.
    pub fn tick(&mut self) -> bool {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < self.every)
        {
            return false;
        }
        self.last = Some(now);
        notify(WATCHDOG);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_paths_or_abstract_names() {
        let p = notify_address("/run/systemd/notify").unwrap();
        assert_eq!(
            p.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
        #[cfg(target_os = "linux")]
        {
            let a = notify_address("@meridian/notify").unwrap();
            assert_eq!(a.as_abstract_name(), Some(&b"meridian/notify"[..]));
            assert!(a.as_pathname().is_none());
        }
        assert!(notify_address("vsock:2:1234").is_err());
        assert!(notify_address("relative/path").is_err());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn datagrams_reach_an_abstract_socket() {
        // The same call path as try_notify, without touching the process environment
        // (tests run in parallel threads).
        let name = format!("meridian-test-notify-{}", std::process::id());
        let listener =
            UnixDatagram::bind_addr(&UnixAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let addr = notify_address(&format!("@{name}")).unwrap();
        send_state(&addr, READY).unwrap();
        let mut buf = [0u8; 64];
        listener
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_manager_that_stops_reading_never_blocks_the_sender() {
        let name = format!("meridian-test-notify-full-{}", std::process::id());
        let _listener =
            UnixDatagram::bind_addr(&UnixAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let addr = notify_address(&format!("@{name}")).unwrap();
        // Nobody reads: the listener's queue fills after a few datagrams. A blocking
        // sender would hang here; ours must report WouldBlock instead. The thread and
        // timeout turn a hang into a failure rather than a stuck test run.
        let (done, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let refused = (0..1000)
                .map(|_| send_state(&addr, WATCHDOG))
                .filter(|r| matches!(r, Err(e) if e.kind() == io::ErrorKind::WouldBlock))
                .count();
            done.send(refused).unwrap();
        });
        let refused = result
            .recv_timeout(Duration::from_secs(30))
            .expect("sending to a full notify socket blocked");
        assert!(refused > 0, "the listener's queue never filled");
    }

    #[test]
    fn watchdog_pings_at_half_the_interval() {
        let mut w = Watchdog::with_interval(Duration::from_millis(200));
        assert_eq!(w.period(), Duration::from_millis(100));
        assert!(w.tick(), "first call pings");
        assert!(!w.tick(), "too soon");
        std::thread::sleep(Duration::from_millis(110));
        assert!(w.tick());
    }
}
