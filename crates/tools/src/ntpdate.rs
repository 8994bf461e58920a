//! `ntpdate`: query servers once and set (or just report) the clock.
//!
//! Flags and output follow classic ntpdate 4.2.8: four samples per server, the
//! minimum-delay sample of each, the best server by stratum then distance, a step when the
//! offset is 0.5 s or more and a slew otherwise (`-b`/`-B` force one), and the lines
//!
//! ```text
//! server 192.168.44.130, stratum 3, offset 0.034930, delay 0.02579
//! 29 Sep 22:59:31 ntpdate[5323]: adjust time server 192.168.44.130 offset 0.034930 sec
//! ```
//!
//! `-a KEYID -k KEYFILE` authenticates with a symmetric key: requests carry its MAC and
//! replies without a valid MAC for it are ignored (said why with `-d`), so a server that
//! cannot authenticate ends in "no server suitable for synchronization found".

use std::ffi::OsString;
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use meridian_clock::Clock;
use meridian_os::KernelClock;
use meridian_proto::{KissCode, ReplyError, Sample};

use crate::query::{ClientAuth, QueryOutcome, QuerySocket};

/// Offsets at or above this are stepped rather than slewed (classic ntpdate's CLOCK_ADJ).
pub const STEP_THRESHOLD: f64 = 0.5;

/// Command line of `ntpdate`, with the classic flags.
#[derive(Debug, Parser)]
#[command(
    name = "ntpdate",
    about = "Set the date and time via NTP (Meridian)",
    disable_version_flag = true
)]
pub struct Args {
    /// Resolve host names to IPv4 addresses only.
    #[arg(short = '4', conflicts_with = "ipv6")]
    pub ipv4: bool,
    /// Resolve host names to IPv6 addresses only.
    #[arg(short = '6')]
    pub ipv6: bool,
    /// Authenticate with key KEYID of the key file: sign requests, accept only replies signed with it.
    #[arg(short = 'a', value_name = "KEYID")]
    pub key: Option<u16>,
    /// Always slew (adjtime), even for large offsets.
    #[arg(short = 'B', conflicts_with = "always_step")]
    pub always_slew: bool,
    /// Always step (settimeofday), even for small offsets.
    #[arg(short = 'b')]
    pub always_step: bool,
    /// Debug: go through all the steps and print them, but do not adjust the clock.
    #[arg(short = 'd')]
    pub debug: bool,
    /// Authentication delay in seconds (accepted for compatibility; Meridian computes the MAC
    /// before taking the send time, so there is nothing to compensate).
    #[arg(short = 'e', value_name = "AUTHDELAY", default_value_t = 0.0)]
    pub authdelay: f64,
    /// Key file.
    #[arg(short = 'k', value_name = "KEYFILE", default_value = "/etc/ntp.keys")]
    pub keyfile: std::path::PathBuf,
    /// NTP version of the requests (1–4).
    #[arg(short = 'o', value_name = "VERSION", default_value_t = 4,
          value_parser = clap::value_parser!(u8).range(1..=4))]
    pub version: u8,
    /// Samples to take from each server (1–8).
    #[arg(short = 'p', value_name = "SAMPLES", default_value_t = 4,
          value_parser = clap::value_parser!(u8).range(1..=8))]
    pub samples: u8,
    /// Query only: print the offsets, do not set the clock.
    #[arg(short = 'q')]
    pub query_only: bool,
    /// Log to syslog instead of standard output (for cron).
    #[arg(short = 's')]
    pub syslog: bool,
    /// Seconds to wait for each reply.
    #[arg(short = 't', value_name = "TIMEOUT", default_value_t = 2.0)]
    pub timeout: f64,
    /// Use an unprivileged source port (Meridian always does: the kernel picks a random one).
    #[arg(short = 'u')]
    pub unprivileged: bool,
    /// Verbose: print the version at start.
    #[arg(short = 'v')]
    pub verbose: bool,
    /// Server UDP port (Meridian extension, for tests and unprivileged servers).
    #[arg(long, default_value_t = 123)]
    pub port: u16,
    /// The servers to query.
    #[arg(required = true, value_name = "SERVER")]
    pub servers: Vec<String>,
}

/// The best sample of one server.
#[derive(Debug, Clone)]
pub struct ServerResult {
    /// The address queried.
    pub addr: SocketAddr,
    /// Its minimum-delay sample, if any reply was valid.
    pub best: Option<Sample>,
    /// Whether it sent a KoD RATE.
    pub rate_limited: bool,
}

impl ServerResult {
    /// Synchronisation distance: what ntpdate ranks servers by within a stratum.
    fn distance(&self) -> f64 {
        self.best.as_ref().map_or(f64::INFINITY, |s| {
            s.delay / 2.0 + s.dispersion + s.root_delay / 2.0 + s.root_dispersion
        })
    }
}

/// Choose the server to trust: lowest stratum, then shortest distance.
pub fn choose_server(results: &[ServerResult]) -> Option<&ServerResult> {
    results.iter().filter(|r| r.best.is_some()).min_by(|a, b| {
        let sa = a.best.as_ref().map_or(u8::MAX, |s| s.stratum);
        let sb = b.best.as_ref().map_or(u8::MAX, |s| s.stratum);
        sa.cmp(&sb).then(a.distance().total_cmp(&b.distance()))
    })
}

/// The `-q` line for one server, as classic ntpdate prints it.
pub fn format_server_line(result: &ServerResult) -> String {
    let ip = result.addr.ip();
    match &result.best {
        Some(s) => format!(
            "server {ip}, stratum {}, offset {:.6}, delay {:.5}",
            s.stratum, s.offset, s.delay
        ),
        None => format!("server {ip}, stratum 0, offset 0.000000, delay 0.00000"),
    }
}

/// The closing line's message (without the time and program prefix).
pub fn format_adjust_message(addr: SocketAddr, offset: f64, step: bool) -> String {
    let verb = if step { "step" } else { "adjust" };
    format!("{verb} time server {} offset {offset:.6} sec", addr.ip())
}

/// Whether an offset is stepped, given the flags.
pub fn should_step(offset: f64, args: &Args) -> bool {
    if args.always_step {
        true
    } else if args.always_slew {
        false
    } else {
        offset.abs() >= STEP_THRESHOLD
    }
}

/// Where ntpdate's log lines go.
struct Logger {
    syslog: bool,
}

impl Logger {
    fn prefix() -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        format!(
            "{} ntpdate[{}]: ",
            meridian_os::localtime::human_log_time(now),
            std::process::id()
        )
    }

    fn info(&self, msg: &str) {
        if self.syslog {
            meridian_os::syslog::log(meridian_os::syslog::Level::Notice, "ntpdate", msg);
        } else {
            println!("{}{msg}", Self::prefix());
        }
    }

    fn error(&self, msg: &str) {
        if self.syslog {
            meridian_os::syslog::log(meridian_os::syslog::Level::Err, "ntpdate", msg);
        } else {
            let _ = std::io::stdout().flush();
            eprintln!("{}{msg}", Self::prefix());
        }
    }
}

fn resolve(args: &Args, name: &str) -> Vec<SocketAddr> {
    match (name, args.port).to_socket_addrs() {
        Ok(addrs) => addrs
            .filter(|a| !((args.ipv4 && a.is_ipv6()) || (args.ipv6 && a.is_ipv4())))
            .take(1)
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn query_server(
    args: &Args,
    clock: &dyn Clock,
    addr: SocketAddr,
    auth: Option<&ClientAuth>,
    log: &Logger,
) -> ServerResult {
    let mut result = ServerResult {
        addr,
        best: None,
        rate_limited: false,
    };
    let mut socket = match QuerySocket::for_target(addr) {
        Ok(s) => s,
        Err(e) => {
            log.error(&format!("socket for {addr}: {e}"));
            return result;
        }
    };
    let timeout = Duration::from_secs_f64(args.timeout.clamp(0.2, 60.0));
    for n in 0..args.samples {
        if n > 0 {
            // Space samples as classic ntpdate does, so servers' rate limits let them through.
            std::thread::sleep(Duration::from_millis(1000));
        }
        if args.debug {
            println!("transmit({})", addr.ip());
        }
        match socket.query(clock, addr, args.version, timeout, auth) {
            Ok(QueryOutcome::Sample(sample)) => {
                if args.debug {
                    println!(
                        "receive({}): offset {:.6} delay {:.6} stratum {}",
                        addr.ip(),
                        sample.offset,
                        sample.delay,
                        sample.stratum
                    );
                }
                let better = result.best.as_ref().is_none_or(|b| sample.delay < b.delay);
                if better {
                    result.best = Some(sample);
                }
            }
            Ok(QueryOutcome::Rejected(ReplyError::Kiss(KissCode::Rate))) => {
                log.error(&format!("{} rate limit response from server.", addr.ip()));
                result.rate_limited = true;
                break;
            }
            Ok(QueryOutcome::Rejected(ReplyError::Kiss(code))) => {
                log.error(&format!(
                    "{}: kiss-o'-death {code:?}, server refuses us",
                    addr.ip()
                ));
                break;
            }
            Ok(QueryOutcome::Rejected(e)) => {
                if args.debug {
                    println!("receive({}): rejected: {e}", addr.ip());
                }
            }
            Ok(QueryOutcome::Unauthentic(why)) => {
                if args.debug {
                    println!("receive({}): authentication failed: {why}", addr.ip());
                }
            }
            Ok(QueryOutcome::Timeout) => {
                if args.debug {
                    println!("timeout({})", addr.ip());
                }
            }
            Err(e) => {
                log.error(&format!("sendto({}) failed: {e}", addr.ip()));
                break;
            }
        }
    }
    result
}

/// Reads `-k KEYFILE` for `-a KEYID`, printing the file's diagnostics; fails with classic
/// ntpdate's messages when the file cannot be read or lacks the key.
fn load_auth(args: &Args, key_id: u16, log: &Logger) -> Result<ClientAuth, ()> {
    let name = args.keyfile.display().to_string();
    let text = match std::fs::read(&args.keyfile) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => {
            log.error(&format!("no key file <{name}>, exiting"));
            return Err(());
        }
    };
    let (diagnostics, auth) = ClientAuth::from_keys_text(&text, &name, key_id);
    for d in &diagnostics {
        log.error(&d.to_string());
    }
    auth.map_err(|msg| log.error(&msg))
}

/// Run `ntpdate` with these arguments (the first is the program name).
pub fn main<I, T>(argv: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Args = match crate::cli::parse(argv) {
        Ok(a) => a,
        Err(code) => return code,
    };
    run(&args)
}

fn run(args: &Args) -> ExitCode {
    let log = Logger {
        syslog: args.syslog,
    };
    if args.verbose {
        log.info(&format!("ntpdate (Meridian {})", env!("CARGO_PKG_VERSION")));
    }
    let auth = match args.key.map(|id| load_auth(args, id, &log)) {
        None => None,
        Some(Ok(auth)) => Some(auth),
        Some(Err(())) => return ExitCode::FAILURE,
    };
    let mut clock = KernelClock::new();
    let mut results = Vec::new();
    for name in &args.servers {
        let addrs = resolve(args, name);
        if addrs.is_empty() {
            log.error(&format!("can't find host {name}"));
            continue;
        }
        for addr in addrs {
            results.push(query_server(args, &clock, addr, auth.as_ref(), &log));
        }
    }
    if args.query_only || args.debug {
        for r in &results {
            println!("{}", format_server_line(r));
        }
    }
    let Some(chosen) = choose_server(&results) else {
        log.error("no server suitable for synchronization found");
        return ExitCode::FAILURE;
    };
    let sample = chosen.best.as_ref().expect("chosen servers have a sample");
    let step = should_step(sample.offset, args);
    log.info(&format_adjust_message(chosen.addr, sample.offset, step));
    if args.query_only || args.debug {
        return ExitCode::SUCCESS;
    }
    let applied = if step {
        clock.step(sample.offset)
    } else {
        clock.slew(sample.offset)
    };
    match applied {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log.error(&format!("can't adjust the time of day: {e}"));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_proto::{LeapIndicator, NtpTimestamp, ReferenceId};

    fn sample(stratum: u8, offset: f64, delay: f64) -> Sample {
        Sample {
            offset,
            delay,
            dispersion: 0.001,
            t1: NtpTimestamp::ZERO,
            t2: NtpTimestamp::ZERO,
            t3: NtpTimestamp::ZERO,
            t4: NtpTimestamp::ZERO,
            stratum,
            leap: LeapIndicator::NoWarning,
            root_delay: 0.0,
            root_dispersion: 0.0,
            reference_id: ReferenceId::from_ascii(b"LOCL"),
            poll: 6,
            precision: -20,
        }
    }

    fn result(ip: &str, s: Option<Sample>) -> ServerResult {
        ServerResult {
            addr: format!("{ip}:123").parse().unwrap(),
            best: s,
            rate_limited: false,
        }
    }

    fn args(extra: &[&str]) -> Args {
        let mut v = vec!["ntpdate"];
        v.extend_from_slice(extra);
        v.push("127.0.0.1");
        Args::try_parse_from(v).unwrap()
    }

    #[test]
    fn server_line_matches_classic_format() {
        let r = result("192.168.44.130", Some(sample(3, 0.034930, 0.025_79)));
        assert_eq!(
            format_server_line(&r),
            "server 192.168.44.130, stratum 3, offset 0.034930, delay 0.02579"
        );
    }

    #[test]
    fn adjust_line_matches_classic_format() {
        let addr: SocketAddr = "192.168.44.130:123".parse().unwrap();
        assert_eq!(
            format_adjust_message(addr, 0.034930, false),
            "adjust time server 192.168.44.130 offset 0.034930 sec"
        );
        assert_eq!(
            format_adjust_message(addr, -1.5, true),
            "step time server 192.168.44.130 offset -1.500000 sec"
        );
    }

    #[test]
    fn lowest_stratum_wins_then_shortest_distance() {
        let results = vec![
            result("10.0.0.1", Some(sample(4, 0.0, 0.001))),
            result("10.0.0.2", Some(sample(2, 0.0, 0.050))),
            result("10.0.0.3", Some(sample(2, 0.0, 0.010))),
            result("10.0.0.4", None),
        ];
        assert_eq!(
            choose_server(&results).unwrap().addr.ip().to_string(),
            "10.0.0.3"
        );
        assert!(choose_server(&[result("10.0.0.4", None)]).is_none());
    }

    #[test]
    fn step_or_slew_follows_threshold_and_flags() {
        assert!(!should_step(0.4999, &args(&[])));
        assert!(should_step(0.5, &args(&[])));
        assert!(should_step(-0.7, &args(&[])));
        assert!(should_step(0.001, &args(&["-b"])));
        assert!(!should_step(10.0, &args(&["-B"])));
    }

    #[test]
    fn classic_flags_parse_with_classic_defaults() {
        let a = args(&[]);
        assert_eq!((a.samples, a.version, a.timeout, a.port), (4, 4, 2.0, 123));
        let a = Args::try_parse_from([
            "ntpdate", "-q", "-u", "-p", "8", "-t", "0.4", "-o", "3", "h1", "h2",
        ])
        .unwrap();
        assert!(a.query_only && a.unprivileged);
        assert_eq!((a.samples, a.version, a.timeout), (8, 3, 0.4));
        assert_eq!(a.servers, vec!["h1", "h2"]);
        assert!(Args::try_parse_from(["ntpdate", "-p", "9", "h"]).is_err());
        assert!(Args::try_parse_from(["ntpdate", "-b", "-B", "h"]).is_err());
        assert!(Args::try_parse_from(["ntpdate"]).is_err());
    }

    #[test]
    fn a_and_k_load_the_key_or_fail_like_classic_ntpdate() {
        let log = Logger { syslog: false };
        let path =
            std::env::temp_dir().join(format!("meridian-ntpdate-{}.keys", std::process::id()));
        std::fs::write(&path, "1 MD5 abcdefgh\n").unwrap();
        let k = path.to_str().unwrap();
        let parsed = args(&["-a", "1", "-k", k]);
        assert_eq!(
            (parsed.key, parsed.keyfile.as_path()),
            (Some(1), path.as_path())
        );
        assert!(load_auth(&parsed, 1, &log).is_ok());
        assert!(
            load_auth(&args(&["-a", "2", "-k", k]), 2, &log).is_err(),
            "key not in file"
        );
        std::fs::remove_file(&path).unwrap();
        assert!(load_auth(&parsed, 1, &log).is_err(), "no key file");
        assert_eq!(args(&[]).keyfile.as_os_str(), "/etc/ntp.keys");
    }
}
