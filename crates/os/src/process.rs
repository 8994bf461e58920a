//! Process-level calls: detaching into the background as classic `ntpd` does without `-n`.

use std::io;

/// Detach from the terminal: fork, let the parent exit, start a new session, and point
/// standard input, output and error at `/dev/null`. The working directory becomes `/`.
///
/// Must be called before any thread is started: only the calling thread survives a fork.
pub fn daemonize() -> io::Result<()> {
    // SAFETY: daemon(3) forks and calls setsid; the caller guarantees no other threads
    // exist yet, so no lock can be left held in the child.
    let rc = unsafe { libc::daemon(0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
