//! `meridian status`: the daemon's state at a glance, over mode 6.
//!
//! ```text
//! meridian status [--json] [--port P] [HOST]
//! ```
//!
//! Without `--json` it reads like `chronyc tracking` followed by `chronyc sources`:
//!
//! ```text
//! Reference ID    : C0000201 (192.0.2.1)
//! Stratum         : 3
//! Ref time (UTC)  : Fri Jan 15 08:00:00 2027
//! Last offset     : -0.000116000 seconds
//! Frequency       : 11.500 ppm fast
//! ...
//!
//! MS Name/IP address         Stratum Poll Reach LastRx Last sample
//! ===============================================================================
//! ^* ntp1.example                  2   6   377    35   -116us +/-  5.1ms
//! ```
//!
//! With `--json` it prints one object with the same facts in SI units (seconds;
//! frequencies in ppm), for scripts and monitoring. [`readvar_json`] is also what
//! `ntpq -c rv --json` prints.
//!
//! HOST defaults to 127.0.0.1 (the local daemon), port 123.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use meridian_proto::control::{
    association_list, opcode, parse_timestamp, PeerSelect, PeerStatus, SystemStatus, VarList,
};

use crate::mode6_client::Mode6Client;
use crate::ntpq::{refclock_name, var_map};

/// The peer variables `status` reads for each association.
const PEER_VARS: &str = "srcadr,srcport,srchost,leap,stratum,hmode,hpoll,ppoll,reach,refid,\
                         rec,rootdelay,rootdisp,delay,offset,jitter,dispersion";
/// Seconds between 1900 and 1970.
const NTP_UNIX: i64 = 2_208_988_800;

const USAGE: &str = "usage: meridian status [--json] [--port P] [host]";

/// Command-line options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `--json`: machine-readable output.
    pub json: bool,
    /// The daemon's host.
    pub host: String,
    /// Its port.
    pub port: u16,
}

/// Parse `status`'s arguments (without the program name).
pub fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        json: false,
        host: "127.0.0.1".into(),
        port: 123,
    };
    let mut hosts = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" | "-j" => o.json = true,
            "--port" | "-p" => {
                let v = it.next().ok_or("--port needs a value")?;
                o.port = v.parse().map_err(|_| format!("bad port {v}"))?;
            }
            s if s.starts_with("--port=") => {
                let v = &s["--port=".len()..];
                o.port = v.parse().map_err(|_| format!("bad port {v}"))?;
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s => hosts.push(s.to_string()),
        }
    }
    match hosts.len() {
        0 => {}
        1 => o.host = hosts.remove(0),
        _ => return Err("one host at a time".into()),
    }
    Ok(o)
}

/// The system variables, typed, in SI units.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemInfo {
    /// The system status word.
    pub status: u16,
    /// Leap indicator (3: unsynchronised).
    pub leap: u8,
    /// Stratum.
    pub stratum: u8,
    /// Reference id as the daemon writes it (dotted quad, or text such as `LOCL`).
    pub refid: String,
    /// Reference time, Unix seconds.
    pub reftime: Option<f64>,
    /// Association id of the system peer (0: none).
    pub peer: u16,
    /// Last offset, seconds.
    pub offset: f64,
    /// Frequency correction, ppm.
    pub frequency_ppm: f64,
    /// Combined jitter of the sources, seconds.
    pub sys_jitter: f64,
    /// Clock jitter, seconds.
    pub clk_jitter: f64,
    /// Frequency wander, ppm.
    pub clk_wander_ppm: f64,
    /// Root delay, seconds.
    pub root_delay: f64,
    /// Root dispersion, seconds.
    pub root_dispersion: f64,
    /// Poll interval, log2 seconds.
    pub poll_log2: i32,
    /// Precision, log2 seconds.
    pub precision: i32,
    /// The daemon's version string.
    pub version: String,
}

/// One source, typed, in SI units.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceInfo {
    /// Association id.
    pub assoc: u16,
    /// Selection state.
    pub select: PeerSelect,
    /// Name (configured host name, `LOCAL(0)`, or the address).
    pub name: String,
    /// Address.
    pub address: String,
    /// Port.
    pub port: u16,
    /// A reference clock (127.127.t.u).
    pub refclock: bool,
    /// Our mode with it (3: client, 1: symmetric active…).
    pub mode: u8,
    /// Stratum it reports.
    pub stratum: u8,
    /// Its reference id.
    pub refid: String,
    /// Reach register.
    pub reach: u8,
    /// Poll interval, log2 seconds.
    pub poll_log2: i32,
    /// Seconds since its last sample, if any.
    pub last_rx: Option<f64>,
    /// Offset, seconds.
    pub offset: f64,
    /// Delay, seconds.
    pub delay: f64,
    /// Jitter, seconds.
    pub jitter: f64,
    /// Dispersion, seconds.
    pub dispersion: f64,
    /// Its root delay, seconds.
    pub root_delay: f64,
    /// Its root dispersion, seconds.
    pub root_dispersion: f64,
}

impl SourceInfo {
    /// chrony's "+/-" figure: the largest error of this source's time, half the
    /// round trips plus the dispersions, in seconds.
    pub fn error_bound(&self) -> f64 {
        (self.delay + self.root_delay) / 2.0 + self.dispersion + self.root_dispersion
    }
}

/// Everything `status` shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// System variables.
    pub system: SystemInfo,
    /// Sources in association-id order.
    pub sources: Vec<SourceInfo>,
}

impl Status {
    /// Whether the daemon is synchronised.
    pub fn synchronized(&self) -> bool {
        self.system.leap != 3 && self.system.stratum > 0 && self.system.stratum < 16
    }
}

fn num<T: std::str::FromStr>(v: &HashMap<String, String>, k: &str) -> Option<T> {
    v.get(k).and_then(|s| s.trim().parse().ok())
}

fn hex(v: &HashMap<String, String>, k: &str) -> Option<u64> {
    let s = v.get(k)?.trim();
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn ms(v: &HashMap<String, String>, k: &str) -> f64 {
    num::<f64>(v, k).map_or(0.0, |x| x * 1e-3)
}

fn ntp_to_unix(ntp: u64, now: f64) -> f64 {
    let secs = (ntp >> 32) as i64;
    let frac = (ntp & 0xffff_ffff) as f64 / 4_294_967_296.0;
    let mut unix = secs - NTP_UNIX;
    // Era-relative: the era nearest to now.
    while (unix as f64) < now - 2_147_483_648.0 {
        unix += 1 << 32;
    }
    unix as f64 + frac
}

fn timestamp(v: &HashMap<String, String>, k: &str, now: f64) -> Option<f64> {
    let t = parse_timestamp(v.get(k)?)?;
    (t >> 32 != 0).then(|| ntp_to_unix(t, now))
}

/// Type the system variables of an `rv` answer.
pub fn system_info(status: u16, vars: &HashMap<String, String>, now: f64) -> SystemInfo {
    SystemInfo {
        status,
        leap: num(vars, "leap").unwrap_or(3),
        stratum: num(vars, "stratum").unwrap_or(16),
        refid: vars.get("refid").cloned().unwrap_or_default(),
        reftime: timestamp(vars, "reftime", now),
        peer: num(vars, "peer").unwrap_or(0),
        offset: ms(vars, "offset"),
        frequency_ppm: num(vars, "frequency").unwrap_or(0.0),
        sys_jitter: ms(vars, "sys_jitter"),
        clk_jitter: ms(vars, "clk_jitter"),
        clk_wander_ppm: num(vars, "clk_wander").unwrap_or(0.0),
        root_delay: ms(vars, "rootdelay"),
        root_dispersion: ms(vars, "rootdisp"),
        poll_log2: num(vars, "tc").unwrap_or(6),
        precision: num(vars, "precision").unwrap_or(0),
        version: vars.get("version").cloned().unwrap_or_default(),
    }
}

/// Type one association's variables.
pub fn source_info(
    assoc: u16,
    status: u16,
    vars: &HashMap<String, String>,
    now: f64,
) -> SourceInfo {
    let address = vars.get("srcadr").cloned().unwrap_or_default();
    let refclock = refclock_name(&address);
    let name = vars
        .get("srchost")
        .filter(|h| !h.is_empty())
        .cloned()
        .or_else(|| refclock.clone())
        .unwrap_or_else(|| address.clone());
    SourceInfo {
        assoc,
        select: PeerStatus::from_word(status).select,
        name,
        address,
        port: num(vars, "srcport").unwrap_or(123),
        refclock: refclock.is_some(),
        mode: num(vars, "hmode").unwrap_or(3),
        stratum: num(vars, "stratum").unwrap_or(16),
        refid: vars.get("refid").cloned().unwrap_or_default(),
        reach: hex(vars, "reach").unwrap_or(0) as u8,
        poll_log2: num(vars, "hpoll").unwrap_or(6),
        last_rx: timestamp(vars, "rec", now).map(|t| (now - t).max(0.0)),
        offset: ms(vars, "offset"),
        delay: ms(vars, "delay"),
        jitter: ms(vars, "jitter"),
        dispersion: ms(vars, "dispersion"),
        root_delay: ms(vars, "rootdelay"),
        root_dispersion: ms(vars, "rootdisp"),
    }
}

/// Ask the daemon at `server`.
pub fn fetch(server: SocketAddr) -> Result<Status, String> {
    let mut c = Mode6Client::connect(server).map_err(|e| e.to_string())?;
    let now = unix_now();
    let sys = c
        .request(opcode::READVAR, 0, b"")
        .map_err(|e| e.to_string())?;
    let system = system_info(sys.status, &var_map(&sys.text()), now);
    let list = c
        .request(opcode::READSTAT, 0, b"")
        .map_err(|e| e.to_string())?;
    let assocs = association_list(&list.data);
    let mut sources = Vec::new();
    for (assoc, status) in assocs {
        let r = c
            .request(opcode::READVAR, assoc, PEER_VARS.as_bytes())
            .map_err(|e| format!("association {assoc}: {e}"))?;
        sources.push(source_info(assoc, status, &var_map(&r.text()), now));
    }
    Ok(Status { system, sources })
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A refid as chronyc shows it: eight hex digits, then the readable form.
fn refid_hex(refid: &str) -> String {
    let bytes: [u8; 4] = match refid.parse::<std::net::Ipv4Addr>() {
        Ok(a) => a.octets(),
        Err(_) => {
            let mut b = [0u8; 4];
            for (d, s) in b.iter_mut().zip(refid.bytes()) {
                *d = s;
            }
            b
        }
    };
    format!("{:08X} ({refid})", u32::from_be_bytes(bytes))
}

/// `Fri Jan 15 08:00:00 2027` (UTC), as chronyc prints the reference time.
fn utc_date(unix: f64) -> String {
    use meridian_proto::calendar::{civil_from_days, MONTHS, WEEKDAYS_FROM_EPOCH};
    let secs = unix.floor() as i64;
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{} {} {:02} {:02}:{:02}:{:02} {y}",
        WEEKDAYS_FROM_EPOCH[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        d,
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

/// A short signed duration as chronyc writes samples: `+12us`, `-1234ns`, `+15ms`.
fn short(seconds: f64, signed: bool) -> String {
    let a = seconds.abs();
    let (v, unit) = if a < 9999.5e-9 {
        (seconds * 1e9, "ns")
    } else if a < 9999.5e-6 {
        (seconds * 1e6, "us")
    } else if a < 9999.5e-3 {
        (seconds * 1e3, "ms")
    } else {
        (seconds, "s")
    };
    if signed {
        format!("{v:+.0}{unit}")
    } else {
        format!("{:.0}{unit}", v.abs())
    }
}

/// Seconds since the last sample as chronyc's LastRx column: `35`, `12m`, `5h`, `3d`.
fn last_rx(secs: Option<f64>) -> String {
    let Some(s) = secs else { return "-".into() };
    let s = s.round() as u64;
    if s < 1024 {
        s.to_string()
    } else if s < 60 * 1024 {
        format!("{}m", s / 60)
    } else if s < 3600 * 1024 {
        format!("{}h", s / 3600)
    } else {
        format!("{}d", s / 86_400)
    }
}

/// chronyc's two-character source state: mode (`^` server, `=` peer, `#` reference
/// clock) and selection (`*` synchronised to, `+` combined, `-` not combined, `x`
/// falseticker, `~` too variable, `?` unusable).
fn source_state(s: &SourceInfo) -> String {
    let mode = if s.refclock {
        '#'
    } else if matches!(s.mode, 1 | 2) {
        '='
    } else {
        '^'
    };
    let state = match s.select {
        PeerSelect::SysPeer | PeerSelect::PpsPeer => '*',
        PeerSelect::Candidate => '+',
        PeerSelect::Backup | PeerSelect::Excess => '-',
        PeerSelect::Falsetick => 'x',
        PeerSelect::Outlier => '~',
        PeerSelect::Reject => '?',
    };
    format!("{mode}{state}")
}

/// The human report.
pub fn format_human(s: &Status) -> String {
    let sys = &s.system;
    let mut o = String::new();
    let leap = match (s.synchronized(), sys.leap) {
        (false, _) => "Not synchronised",
        (true, 1) => "Insert second",
        (true, 2) => "Delete second",
        (true, _) => "Normal",
    };
    let peer = s
        .sources
        .iter()
        .find(|p| p.assoc == sys.peer && sys.peer != 0);
    let _ = writeln!(o, "Reference ID    : {}", refid_hex(&sys.refid));
    if let Some(p) = peer {
        let _ = writeln!(o, "System peer     : {} ({})", p.name, p.address);
    }
    let _ = writeln!(o, "Stratum         : {}", sys.stratum);
    let _ = writeln!(
        o,
        "Ref time (UTC)  : {}",
        sys.reftime.map_or_else(|| "never".to_string(), utc_date)
    );
    let _ = writeln!(o, "Last offset     : {:+.9} seconds", sys.offset);
    // ntpd's frequency is the correction applied: positive when the clock runs slow.
    let _ = writeln!(
        o,
        "Frequency       : {:.3} ppm {}",
        sys.frequency_ppm.abs(),
        if sys.frequency_ppm >= 0.0 {
            "slow"
        } else {
            "fast"
        }
    );
    let _ = writeln!(o, "Wander          : {:.3} ppm", sys.clk_wander_ppm);
    let _ = writeln!(o, "System jitter   : {:.9} seconds", sys.sys_jitter);
    let _ = writeln!(o, "Clock jitter    : {:.9} seconds", sys.clk_jitter);
    let _ = writeln!(o, "Root delay      : {:.9} seconds", sys.root_delay);
    let _ = writeln!(o, "Root dispersion : {:.9} seconds", sys.root_dispersion);
    let _ = writeln!(
        o,
        "Update interval : {:.1} seconds",
        2f64.powi(sys.poll_log2.clamp(-10, 20))
    );
    let _ = writeln!(o, "Leap status     : {leap}");
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "MS Name/IP address         Stratum Poll Reach LastRx Last sample"
    );
    let _ = writeln!(o, "{}", "=".repeat(79));
    for p in &s.sources {
        let sample = if p.last_rx.is_some() {
            format!(
                "{:>7} +/- {:>6}",
                short(p.offset, true),
                short(p.error_bound(), false)
            )
        } else {
            String::new()
        };
        let row = format!(
            "{} {:<27.27}{:>4}{:>5}{:>6o}{:>7} {}",
            source_state(p),
            p.name,
            p.stratum,
            p.poll_log2,
            p.reach,
            last_rx(p.last_rx),
            sample
        );
        // Rows without a sample would end in spaces.
        o.push_str(row.trim_end());
        o.push('\n');
    }
    o
}

/// Append `s` as a JSON string.
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Append `v` as a JSON number, `null` when not finite.
fn json_num(out: &mut String, v: f64) {
    if v.is_finite() {
        let _ = write!(out, "{v}");
    } else {
        out.push_str("null");
    }
}

/// A JSON object under construction.
struct Obj {
    out: String,
}

impl Obj {
    fn new() -> Self {
        Obj {
            out: String::from("{"),
        }
    }
    fn key(&mut self, k: &str) -> &mut String {
        if self.out.len() > 1 {
            self.out.push(',');
        }
        json_str(&mut self.out, k);
        self.out.push(':');
        &mut self.out
    }
    fn num(&mut self, k: &str, v: f64) -> &mut Self {
        json_num(self.key(k), v);
        self
    }
    fn opt(&mut self, k: &str, v: Option<f64>) -> &mut Self {
        match v {
            Some(v) => json_num(self.key(k), v),
            None => self.key(k).push_str("null"),
        }
        self
    }
    fn str(&mut self, k: &str, v: &str) -> &mut Self {
        json_str(self.key(k), v);
        self
    }
    fn bool(&mut self, k: &str, v: bool) -> &mut Self {
        self.key(k).push_str(if v { "true" } else { "false" });
        self
    }
    fn raw(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k).push_str(v);
        self
    }
    fn finish(&mut self) -> String {
        self.out.push('}');
        std::mem::take(&mut self.out)
    }
}

/// The `--json` report: seconds, ppm, Unix times.
pub fn format_json(s: &Status, server: SocketAddr) -> String {
    let sys = &s.system;
    let mut system = Obj::new();
    system
        .str("status", &format!("{:04x}", sys.status))
        .str(
            "status_text",
            &SystemStatus::from_word(sys.status).describe(),
        )
        .num("leap", f64::from(sys.leap))
        .num("stratum", f64::from(sys.stratum))
        .str("refid", &sys.refid)
        .opt("reftime", sys.reftime)
        .num("peer", f64::from(sys.peer))
        .num("offset", sys.offset)
        .num("frequency_ppm", sys.frequency_ppm)
        .num("sys_jitter", sys.sys_jitter)
        .num("clk_jitter", sys.clk_jitter)
        .num("clk_wander_ppm", sys.clk_wander_ppm)
        .num("root_delay", sys.root_delay)
        .num("root_dispersion", sys.root_dispersion)
        .num("poll", 2f64.powi(sys.poll_log2.clamp(-10, 20)))
        .num("precision", 2f64.powi(sys.precision.clamp(-60, 10)))
        .str("version", &sys.version);
    let system = system.finish();
    let mut sources = String::from("[");
    for (i, p) in s.sources.iter().enumerate() {
        if i > 0 {
            sources.push(',');
        }
        sources.push_str(
            &Obj::new()
                .num("assoc", f64::from(p.assoc))
                .str("name", &p.name)
                .str("address", &p.address)
                .num("port", f64::from(p.port))
                .bool("refclock", p.refclock)
                .str("state", &source_state(p))
                .str("selection", p.select.snake_name())
                .bool("system_peer", p.assoc == sys.peer && sys.peer != 0)
                .num("stratum", f64::from(p.stratum))
                .str("refid", &p.refid)
                .num("reach", f64::from(p.reach))
                .num("poll", 2f64.powi(p.poll_log2.clamp(-10, 20)))
                .opt("last_rx", p.last_rx)
                .num("offset", p.offset)
                .num("delay", p.delay)
                .num("jitter", p.jitter)
                .num("dispersion", p.dispersion)
                .num("error_bound", p.error_bound())
                .finish(),
        );
    }
    sources.push(']');
    let mut top = Obj::new();
    top.str("server", &server.to_string())
        .bool("synchronized", s.synchronized())
        .raw("system", &system)
        .raw("sources", &sources);
    let mut out = top.finish();
    out.push('\n');
    out
}

/// `ntpq -c rv --json`: an `rv` answer as one JSON object. Values stay as the daemon
/// sent them (ntpq's units: milliseconds, ppm), as numbers where they are decimal
/// numbers and as strings otherwise (quotes removed; timestamps and hex as sent).
pub fn readvar_json(assoc: u16, status: u16, text: &str) -> String {
    let describe = if assoc == 0 {
        SystemStatus::from_word(status).describe()
    } else {
        PeerStatus::from_word(status).describe()
    };
    let mut vars = Obj::new();
    for item in VarList::new(text) {
        match (item.value, item.unquoted()) {
            (None, _) => {
                vars.raw(item.name, "null");
            }
            (Some(raw), Some(v)) => {
                let decimal = !raw.starts_with('"')
                    && !v.is_empty()
                    && v.bytes()
                        .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.'));
                match v.parse::<f64>() {
                    Ok(n) if decimal && n.is_finite() => vars.num(item.name, n),
                    _ => vars.str(item.name, v),
                };
            }
            (Some(raw), None) => {
                vars.str(item.name, raw);
            }
        }
    }
    let vars = vars.finish();
    let mut out = Obj::new()
        .num("associd", f64::from(assoc))
        .str("status", &format!("{status:04x}"))
        .str("status_text", &describe)
        .raw("variables", &vars)
        .finish();
    out.push('\n');
    out
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    (host, port)
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| format!("{host}: no address"))
}

/// `meridian status` with its arguments (the first is the program name).
pub fn main(argv: Vec<OsString>) -> ExitCode {
    let args: Vec<String> = argv
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let opts = match parse_args(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("status: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let server = match resolve(&opts.host, opts.port) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("status: {e}");
            return ExitCode::FAILURE;
        }
    };
    match fetch(server) {
        Ok(s) => {
            if opts.json {
                print!("{}", format_json(&s, server));
            } else {
                print!("{}", format_human(&s));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("status: {server}: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: f64 = 1_800_000_100.0;

    fn ntp(unix: i64) -> String {
        format!("0x{:08x}.00000000", unix + NTP_UNIX)
    }

    fn sample() -> Status {
        let sys = var_map(&format!(
            "version=\"meridian 0.1.0\", leap=0, stratum=3, precision=-23, rootdelay=1.234, \
             rootdisp=25.123, refid=192.0.2.1, reftime={}, peer=100, tc=6, offset=-0.116185, \
             frequency=-11.469, sys_jitter=0.252154, clk_jitter=0.254, clk_wander=0.014",
            ntp(1_800_000_000)
        ));
        let p1 = var_map(&format!(
            "srcadr=192.0.2.1, srcport=123, srchost=\"ntp1.example\", stratum=2, hmode=3, hpoll=6, \
             reach=0xff, refid=GPS, rec={}, rootdelay=0.5, rootdisp=1.0, delay=0.474, \
             offset=-0.116, jitter=0.061, dispersion=2.0",
            ntp(1_800_000_065)
        ));
        let p2 = var_map(
            "srcadr=192.0.2.9, srcport=123, stratum=16, hmode=3, hpoll=6, reach=0x0, refid=INIT, \
             rec=0x00000000.00000000, delay=0.000, offset=0.000, jitter=0.000, dispersion=16000.0",
        );
        Status {
            system: system_info(0x0615, &sys, NOW),
            sources: vec![
                source_info(100, 0x961a, &p1, NOW),
                source_info(101, 0x8011, &p2, NOW),
            ],
        }
    }

    #[test]
    fn variables_are_typed_in_si_units() {
        let s = sample();
        assert!(s.synchronized());
        assert!((s.system.offset + 0.000_116_185).abs() < 1e-12);
        assert_eq!(s.system.reftime, Some(1_800_000_000.0));
        let p = &s.sources[0];
        assert_eq!(
            (p.name.as_str(), p.reach, p.select),
            ("ntp1.example", 255, PeerSelect::SysPeer)
        );
        assert_eq!(p.last_rx, Some(35.0));
        assert!((p.error_bound() - (0.000_487 + 0.003)).abs() < 1e-9);
        assert_eq!(s.sources[1].last_rx, None);
    }

    #[test]
    fn human_report_reads_like_chronyc() {
        let text = format_human(&sample());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Reference ID    : C0000201 (192.0.2.1)");
        assert_eq!(lines[1], "System peer     : ntp1.example (192.0.2.1)");
        assert_eq!(lines[2], "Stratum         : 3");
        assert_eq!(lines[3], "Ref time (UTC)  : Fri Jan 15 08:00:00 2027");
        assert!(
            text.contains("Last offset     : -0.000116185 seconds\n"),
            "{text}"
        );
        assert!(
            text.contains("Frequency       : 11.469 ppm fast\n"),
            "{text}"
        );
        assert!(text.contains("Update interval : 64.0 seconds\n"), "{text}");
        assert!(text.contains("Leap status     : Normal\n"), "{text}");
        assert!(
            text.contains(
                "^* ntp1.example                  2    6   377     35  -116us +/- 3487us\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("^? 192.0.2.9                    16    6     0      -\n"),
            "{text}"
        );
        let header = text.lines().find(|l| l.starts_with("MS ")).unwrap();
        let row = text.lines().find(|l| l.starts_with("^*")).unwrap();
        // Numbers end under the ends of their headings; the sample starts under its own.
        for heading in ["Stratum", "Poll", "Reach", "LastRx"] {
            let end = header.find(heading).unwrap() + heading.len();
            assert_ne!(row.as_bytes()[end - 1], b' ', "{heading}");
            assert_eq!(row.as_bytes()[end], b' ', "{heading}");
        }
        assert!(
            text.lines().all(|l| l.len() <= 79 && !l.ends_with(' ')),
            "{text}"
        );
    }

    #[test]
    fn json_report_is_typed() {
        let server: SocketAddr = "127.0.0.1:123".parse().unwrap();
        let j = format_json(&sample(), server);
        assert!(
            j.starts_with("{\"server\":\"127.0.0.1:123\",\"synchronized\":true,\"system\":{"),
            "{j}"
        );
        assert!(j.contains("\"offset\":-0.000116185,"), "{j}");
        assert!(j.contains("\"frequency_ppm\":-11.469,"), "{j}");
        assert!(
            j.contains("\"state\":\"^*\",\"selection\":\"sys_peer\",\"system_peer\":true"),
            "{j}"
        );
        assert!(j.contains("\"last_rx\":null"), "{j}");
        assert!(j.ends_with("}]}\n"), "{j}");
    }

    #[test]
    fn readvar_json_keeps_wire_values() {
        let j = readvar_json(
            0,
            0x0615,
            "version=\"meridian 0.1.0\", leap=0, offset=-0.116185, refid=192.0.2.1,\r\n\
             reftime=0xe2b96e9c.d1c5e6a1, reach=0xff, flag",
        );
        assert_eq!(
            j,
            "{\"associd\":0,\"status\":\"0615\",\"status_text\":\"leap_none, sync_ntp, 1 event, clock_sync\",\
             \"variables\":{\"version\":\"meridian 0.1.0\",\"leap\":0,\"offset\":-0.116185,\
             \"refid\":\"192.0.2.1\",\"reftime\":\"0xe2b96e9c.d1c5e6a1\",\"reach\":\"0xff\",\"flag\":null}}\n"
        );
    }

    #[test]
    fn arguments() {
        let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        let o = parse_args(&s(&["--json", "--port", "12300"])).unwrap();
        assert_eq!(
            (o.json, o.host.as_str(), o.port),
            (true, "127.0.0.1", 12300)
        );
        let o = parse_args(&s(&["--port=5", "::1"])).unwrap();
        assert_eq!((o.json, o.host.as_str(), o.port), (false, "::1", 5));
        assert!(parse_args(&s(&["-x"])).is_err());
        assert!(parse_args(&s(&["a", "b"])).is_err());
    }
}
