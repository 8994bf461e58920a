//! Where the daemon's log goes: standard error in the foreground (`-n`), a file with `-l`
//! or `logfile`, otherwise syslog, as classic ntpd does.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// A log destination.
pub enum Destination<'a> {
    /// Standard error.
    Stderr,
    /// Append to a file.
    File(&'a Path),
    /// The system log.
    Syslog,
}

struct SyslogWriter;

impl Write for SyslogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            meridian_os::syslog::log(meridian_os::syslog::Level::Notice, "ntpd", line);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct MakeSyslog;

impl<'a> MakeWriter<'a> for MakeSyslog {
    type Writer = SyslogWriter;
    fn make_writer(&'a self) -> SyslogWriter {
        SyslogWriter
    }
}

/// Install the global logger; `debug` raises the level (`-d`, `-dd`). `MERIDIAN_LOG`, when
/// set, overrides it with per-module levels (`warn,meridian_sync=debug`).
///
/// The filter is `tracing-subscriber`'s `Targets`, not its `EnvFilter`: directives by
/// module and level are what a daemon's log needs, and leaving out `EnvFilter`'s regular
/// expressions leaves their code out of the binary and out of resident memory.
pub fn init(destination: Destination<'_>, debug: u8) -> io::Result<()> {
    let level = match debug {
        0 => tracing::Level::INFO,
        1 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    let filter = std::env::var("MERIDIAN_LOG")
        .ok()
        .and_then(|directives| directives.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(level));
    let builder = tracing_subscriber::fmt().with_target(false);
    let result = match destination {
        Destination::Stderr => {
            // Colour only for a person at a terminal, not for a log file or a pipe.
            use std::io::IsTerminal;
            let ansi = io::stderr().is_terminal();
            builder
                .with_ansi(ansi)
                .with_writer(io::stderr)
                .finish()
                .with(filter)
                .try_init()
        }
        Destination::File(path) => {
            let file = OpenOptions::new().create(true).append(true).open(path)?;
            builder
                .with_ansi(false)
                .with_writer(Mutex::new(file))
                .finish()
                .with(filter)
                .try_init()
        }
        Destination::Syslog => builder
            .with_ansi(false)
            .without_time()
            .with_writer(MakeSyslog)
            .finish()
            .with(filter)
            .try_init(),
    };
    // A logger already installed (tests) is fine.
    let _ = result;
    Ok(())
}
