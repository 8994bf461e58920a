//! The daemon's command line: classic ntpd flags, with their classic meanings.

use std::path::PathBuf;

use clap::Parser;

/// `ntpd` / `meridian ntpd`.
#[derive(Debug, Parser)]
#[command(
    name = "ntpd",
    about = "Meridian NTP daemon",
    disable_version_flag = true
)]
pub struct Args {
    /// Configuration file.
    #[arg(short = 'c', value_name = "FILE", default_value = "/etc/ntp.conf")]
    pub config: PathBuf,
    /// Use Meridian's embedded example configuration instead of a file (local clock,
    /// loopback only); for trying Meridian out.
    #[arg(long, conflicts_with = "config")]
    pub example_config: bool,
    /// Check the configuration, print the effective configuration, and exit (0 = valid).
    #[arg(long)]
    pub check: bool,
    /// Stay in the foreground and log to standard error.
    #[arg(short = 'n')]
    pub foreground: bool,
    /// Allow the first adjustment to exceed the panic threshold.
    #[arg(short = 'g')]
    pub allow_big_first_step: bool,
    /// Set the time once and exit.
    #[arg(short = 'q')]
    pub once: bool,
    /// Slew rather than step for offsets up to 600 s.
    #[arg(short = 'x')]
    pub slew_only: bool,
    /// Write the process id to FILE.
    #[arg(short = 'p', value_name = "FILE")]
    pub pidfile: Option<PathBuf>,
    /// Log to FILE instead of syslog.
    #[arg(short = 'l', value_name = "FILE")]
    pub logfile: Option<PathBuf>,
    /// Drop root privileges to USER[:GROUP] after start-up.
    #[arg(short = 'u', value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// More debug output (repeat for more).
    #[arg(short = 'd', action = clap::ArgAction::Count)]
    pub debug: u8,
    /// After start-up, allow only the system calls the daemon needs (an allow-list);
    /// any other call (exec, ptrace, mount, module loading, namespaces, …) fails with
    /// EPERM and is recorded in the kernel log.
    #[arg(long)]
    pub seccomp: bool,
    /// Never adjust the system clock: measure, discipline and serve a corrected time
    /// in software only (like `chronyd -x`).
    #[arg(long)]
    pub observe: bool,
    /// UDP port to serve on.
    #[arg(long, default_value_t = 123)]
    pub port: u16,
    /// Serving worker threads (each with its own SO_REUSEPORT socket); default one per CPU.
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Serve Prometheus metrics (/metrics) and the status page (/) over HTTP on
    /// ADDR:PORT, e.g. 127.0.0.1:9975 (overrides `metrics` in ntp.conf).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<std::net::SocketAddr>,
}
