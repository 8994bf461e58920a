//! Where the daemon's log goes: standard error in the foreground (`-n`), a file with `-l`
//! or `logfile`, otherwise syslog, as classic ntpd does.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

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

/// Install the global logger; `debug` raises the level (`-d`, `-dd`).
pub fn init(destination: Destination<'_>, debug: u8) -> io::Result<()> {
    let level = match debug {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("MERIDIAN_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let result = match destination {
        Destination::Stderr => {
            // Colour only for a person at a terminal, not for a log file or a pipe.
            use std::io::IsTerminal;
            let ansi = io::stderr().is_terminal();
            builder.with_ansi(ansi).with_writer(io::stderr).try_init()
        }
        Destination::File(path) => {
            let file = OpenOptions::new().create(true).append(true).open(path)?;
            builder
                .with_ansi(false)
                .with_writer(Mutex::new(file))
                .try_init()
        }
        Destination::Syslog => builder
            .with_ansi(false)
            .without_time()
            .with_writer(MakeSyslog)
            .try_init(),
    };
    // A logger already installed (tests) is fine.
    let _ = result;
    Ok(())
}
