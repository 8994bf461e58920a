//! Writing to the system log, for `ntpdate -s` and the daemon without `-n`.

use std::ffi::CString;

/// Severity of a syslog message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Error conditions.
    Err,
    /// Warning conditions.
    Warning,
    /// Normal but significant.
    Notice,
    /// Informational.
    Info,
    /// Debug-level messages.
    Debug,
}

impl Level {
    fn priority(self) -> libc::c_int {
        match self {
            Level::Err => libc::LOG_ERR,
            Level::Warning => libc::LOG_WARNING,
            Level::Notice => libc::LOG_NOTICE,
            Level::Info => libc::LOG_INFO,
            Level::Debug => libc::LOG_DEBUG,
        }
    }
}

/// Send one message to syslog under `ident` (facility daemon, with the PID).
pub fn log(level: Level, ident: &'static str, message: &str) {
    // Interior NULs cannot cross the C interface; replace them rather than drop the line.
    let Ok(msg) = CString::new(message.replace('\0', " ")) else {
        return;
    };
    let ident = CString::new(ident).unwrap_or_default();
    // SAFETY: openlog keeps the ident pointer, so it is leaked to live for the process;
    // the format string is a literal "%s" so the message is never interpreted.
    unsafe {
        libc::openlog(ident.into_raw(), libc::LOG_PID, libc::LOG_DAEMON);
        libc::syslog(level.priority(), c"%s".as_ptr(), msg.as_ptr());
    }
}
