//! Interoperability of Meridian with real NTP software.
//!
//! Meridian must be a drop-in for classic ntpd/ntpdate, so these tests put it
//! next to independent implementations instead of its own code:
//!
//! * our `ntpdate -q` against `chronyd -x` (exact classic output format,
//!   offset/delay correct, also over a delayed and an asymmetric path
//!   through the user-space relay, clean failure when nobody answers);
//! * ntpsec's `ntpdig` and `ntpdate -q`, `chronyd -Q`, our own `ntpdate -q`
//!   and a raw probe against `meridian ntpd` serving its local clock (fudge
//!   stratum 2 → served stratum 3) on port 123 in a namespace LAN;
//! * `restrict` end to end: `ignore`, `noserve` and `limited kod` for
//!   distinct client source addresses;
//! * `ntpd --check` on the seed configuration and on a bad line.
//!
//! Every process runs without CAP_SYS_TIME (`setpriv --bounding-set
//! -sys_time`), Meridian's daemon with `--observe`, chronyd with `-x`, and
//! all clients in query-only mode; traffic stays on loopback or in the test's
//! own namespaces. Needs root and chrony/ntpsec-ntpdate (see
//! `scripts/install-test-deps.sh`); skips otherwise, fails when `CI` is set.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Output};
use std::time::Duration;

use support::relay::{DelaySpec, Relay, RelayConfig};
use support::*;

// ---------------------------------------------------------------------------
// Meridian ntpdate output
// ---------------------------------------------------------------------------

/// `server 127.0.0.1, stratum 3, offset 0.000123, delay 0.02579`
#[derive(Debug)]
struct ServerLine {
    server: String,
    stratum: u8,
    offset: f64,
    offset_text: String,
    delay: f64,
}

/// `25 Nov 18:02:11 ntpdate[1234]: adjust time server 127.0.0.1 offset 0.000123 sec`
#[derive(Debug)]
struct AdjustLine {
    stamp: String,
    pid: u32,
    server: String,
    offset_text: String,
}

/// `[-]digits.` followed by exactly `decimals` digits.
fn is_fixed(s: &str, decimals: usize) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    match s.split_once('.') {
        Some((int, frac)) => {
            !int.is_empty()
                && int.bytes().all(|b| b.is_ascii_digit())
                && frac.len() == decimals
                && frac.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

fn parse_server_line(line: &str) -> Option<ServerLine> {
    let rest = line.strip_prefix("server ")?;
    let parts: Vec<&str> = rest.split(", ").collect();
    if parts.len() != 4 || parts[0].is_empty() || parts[0].contains(' ') {
        return None;
    }
    let stratum_text = parts[1].strip_prefix("stratum ")?;
    if stratum_text.is_empty() || !stratum_text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let offset_text = parts[2].strip_prefix("offset ")?;
    let delay_text = parts[3].strip_prefix("delay ")?;
    if !is_fixed(offset_text, 6) || !is_fixed(delay_text, 5) {
        return None;
    }
    Some(ServerLine {
        server: parts[0].to_string(),
        stratum: stratum_text.parse().ok()?,
        offset: offset_text.parse().ok()?,
        offset_text: offset_text.to_string(),
        delay: delay_text.parse().ok()?,
    })
}

/// Shape of classic ntpdate's `%2d %b %H:%M:%S` (C locale), e.g. ` 5 Nov 18:02:11`.
fn is_syslog_stamp(s: &str) -> bool {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    b.len() == 15
        && (b[0] == b' ' || b[0].is_ascii_digit())
        && b[1].is_ascii_digit()
        && b[2] == b' '
        && MONTHS.contains(&&s[3..6])
        && b[6] == b' '
        && digits(7..9)
        && b[9] == b':'
        && digits(10..12)
        && b[12] == b':'
        && digits(13..15)
}

fn parse_adjust_line(line: &str) -> Option<AdjustLine> {
    let stamp = line.get(..15)?;
    if !is_syslog_stamp(stamp) {
        return None;
    }
    let rest = line[15..].strip_prefix(" ntpdate[")?;
    let (pid, rest) = rest.split_once("]: adjust time server ")?;
    let (server, rest) = rest.split_once(" offset ")?;
    let offset_text = rest.strip_suffix(" sec")?;
    if !is_fixed(offset_text, 6) || server.contains(' ') {
        return None;
    }
    Some(AdjustLine {
        stamp: stamp.to_string(),
        pid: pid.parse().ok()?,
        server: server.to_string(),
        offset_text: offset_text.to_string(),
    })
}

/// Run `meridian ntpdate -q ARGS...` (always `-q`) without CAP_SYS_TIME.
fn meridian_ntpdate(netns: Option<&Netns>, args: &[&str]) -> (u32, Output) {
    let mut cmd = sandboxed(netns, meridian_bin());
    cmd.args(["ntpdate", "-q"]).args(args);
    run_bounded_with_pid(&mut cmd, Duration::from_secs(30))
}

/// Check a successful `ntpdate -q` run against one server and return its
/// server line. Verifies the exact two-line format, the PID, the timestamp
/// (local time, within the run) and that both lines agree.
fn check_ntpdate_output(pid: u32, out: &Output, server: &str, started: i64) -> ServerLine {
    let ctx = describe_output(out);
    assert!(out.status.success(), "ntpdate -q failed:\n{ctx}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 2, "want exactly 2 lines:\n{ctx}");
    let s = parse_server_line(lines[0])
        .unwrap_or_else(|| panic!("bad server line {:?}:\n{ctx}", lines[0]));
    let a = parse_adjust_line(lines[1])
        .unwrap_or_else(|| panic!("bad adjust line {:?}:\n{ctx}", lines[1]));
    assert_eq!(s.server, server, "{ctx}");
    assert_eq!(a.server, server, "{ctx}");
    assert_eq!(a.pid, pid, "ntpdate[PID] must be the process id:\n{ctx}");
    assert_eq!(
        a.offset_text, s.offset_text,
        "offsets of both lines differ:\n{ctx}"
    );
    let ended = unix_now();
    let ok_stamps: Vec<String> = (started - 1..=ended + 1)
        // Classic ntpdate's day is `%2d`: space-padded, " 7 Dec" (strftime's %e).
        .map(|t| format_local_time(t, "%e %b %H:%M:%S"))
        .collect();
    assert!(
        ok_stamps.contains(&a.stamp),
        "timestamp {:?} is not local time during the run ({ok_stamps:?}):\n{ctx}",
        a.stamp
    );
    s
}

// ---------------------------------------------------------------------------
// a. our ntpdate -q against chronyd
// ---------------------------------------------------------------------------

/// `meridian ntpdate -q` against `chronyd -x` (local stratum 3) on a high
/// loopback port: exact classic output, stratum 3, offset ≈ 0 (see `offset_ok`).
#[test]
fn ntpdate_query_against_chronyd() {
    if !require_root_and_tools(&["chronyd"]) {
        return;
    }
    let ns = Netns::new("ic-ntpdate");
    let opts = ChronyServerOpts {
        port: 11123,
        ..ChronyServerOpts::default()
    };
    let _chrony = chrony_server(Some(&ns), &opts);
    let started = unix_now();
    let (pid, out) = meridian_ntpdate(Some(&ns), &["--port", "11123", "127.0.0.1"]);
    let s = check_ntpdate_output(pid, &out, "127.0.0.1", started);
    assert_eq!(s.stratum, 3, "{s:?}");
    assert!(offset_ok(s.offset, s.delay / 2.0), "{s:?}");
    assert!((0.0..0.05).contains(&s.delay), "{s:?}");
}

/// Through the relay: 20 ms each way shows as delay ≈ 0.040 with offset ≈ 0;
/// 30 ms out / 10 ms back shows offset ≈ +0.010 (server ahead by half the
/// asymmetry, classic sign convention).
#[test]
fn ntpdate_query_through_delayed_path() {
    if !require_root_and_tools(&["chronyd"]) {
        return;
    }
    let ns = Netns::new("ic-delay");
    let chrony = chrony_server(Some(&ns), &ChronyServerOpts::default());
    let ms = Duration::from_millis;
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();

    let relay = Relay::start_in(
        Some(&ns),
        listen,
        chrony.addr,
        RelayConfig::symmetric(ms(20), Duration::ZERO),
    )
    .expect("relay");
    let port = relay.local_addr().port().to_string();
    let started = unix_now();
    let (pid, out) = meridian_ntpdate(Some(&ns), &["--port", &port, "127.0.0.1"]);
    let s = check_ntpdate_output(pid, &out, "127.0.0.1", started);
    assert_eq!(s.stratum, 3);
    assert!((0.040..0.060).contains(&s.delay), "{s:?}");
    let slack = 0.001 + (s.delay - 0.040).max(0.0) / 2.0;
    assert!(s.offset.abs() <= slack, "{s:?}");
    drop(relay);

    let cfg = RelayConfig {
        to_server: DelaySpec::new(ms(30), Duration::ZERO),
        to_client: DelaySpec::new(ms(10), Duration::ZERO),
        ..RelayConfig::default()
    };
    let relay = Relay::start_in(Some(&ns), listen, chrony.addr, cfg).expect("relay");
    let port = relay.local_addr().port().to_string();
    let started = unix_now();
    let (pid, out) = meridian_ntpdate(Some(&ns), &["--port", &port, "127.0.0.1"]);
    let s = check_ntpdate_output(pid, &out, "127.0.0.1", started);
    let slack = 0.001 + (s.delay - 0.040).max(0.0) / 2.0;
    assert!((s.offset - 0.010).abs() <= slack, "{s:?}");
    assert!((0.040..0.060).contains(&s.delay), "{s:?}");
}

/// Nobody answers: `no server suitable for synchronization found` on stderr,
/// exit status 1, within the requested timeout.
#[test]
fn ntpdate_reports_no_server() {
    if !require_root_and_tools(&[]) {
        return;
    }
    let ns = Netns::new("ic-noserver");
    let t0 = std::time::Instant::now();
    let (_, out) = meridian_ntpdate(
        Some(&ns),
        &["-p", "1", "-t", "1", "--port", "11123", "127.0.0.1"],
    );
    let ctx = describe_output(&out);
    assert_eq!(out.status.code(), Some(1), "{ctx}");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no server suitable for synchronization found"),
        "{ctx}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t0.elapsed()
    );
}

// ---------------------------------------------------------------------------
// b. real clients against our server
// ---------------------------------------------------------------------------

/// Meridian serving its local clock on port 123 in the server namespace of a
/// LAN with one client, 10.123.0.2. Drops the daemon before the namespaces.
struct MeridianLan {
    server: MeridianServer,
    lan: Lan,
}

impl MeridianLan {
    fn new(tag: &str) -> MeridianLan {
        let lan = Lan::new(tag, &[2]);
        let server = meridian_server(
            Some(&lan.server),
            LOCAL_CLOCK_CONF,
            123,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            3,
        );
        MeridianLan { server, lan }
    }

    fn client(&self) -> &Netns {
        self.lan.client(2)
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.lan.server_addr), 123)
    }
}

/// Raw probe from a LAN client: a proper server reply (mode 4, NTPv4,
/// stratum 3, no leap warning, origin echoes our random transmit, sane
/// timestamps and offset). Also: the `-p` pid file holds the daemon's PID.
#[test]
fn raw_probe_meridian_reply() {
    if !require_root_and_tools(&[]) {
        return;
    }
    let m = MeridianLan::new("ic-raw");
    let addr = m.addr();
    let probes: Vec<Probe> = m.client().run(move || {
        (0..3)
            .map(|_| ntp_probe(addr, Duration::from_secs(2)).expect("reply"))
            .collect()
    });
    for p in &probes {
        let r = p.reply;
        assert_eq!((r.mode, r.vn, r.li, r.stratum), (4, 4, 0, 3), "{p:?}");
        assert_eq!(r.origin, p.sent_xmt, "origin must echo our transmit");
        assert!(ntp_diff(r.transmit, r.receive) >= 0.0, "{p:?}");
        assert!(ntp_diff(r.transmit, r.reference) >= 0.0, "{p:?}");
        assert!(offset_ok(p.offset(), p.delay() / 2.0), "{p:?}");
        assert!((0.0..0.05).contains(&p.delay()), "delay {}", p.delay());
    }
    let pid = std::fs::read_to_string(&m.server.pidfile).expect("pid file written");
    assert_eq!(pid.trim(), m.server.daemon.pid().to_string());
}

/// ntpsec's ntpdig (port 123 only) from the client namespace accepts our
/// server: stratum 3, no-leap, offset ≈ 0 (see `offset_ok`).
#[test]
fn ntpdig_accepts_meridian() {
    if !require_root_and_tools(&["ntpdig"]) {
        return;
    }
    let m = MeridianLan::new("ic-ntpdig");
    let host = m.lan.server_addr.to_string();
    let out = ntpdig(Some(m.client()), &host, 3, 2);
    let ctx = describe_output(&out);
    assert!(out.status.success(), "{ctx}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(parse_ntpdig_line)
        .unwrap_or_else(|| panic!("no ntpdig result line:\n{ctx}"));
    assert_eq!(line.host, host, "{ctx}");
    assert_eq!(line.stratum, 3, "{ctx}");
    assert_eq!(line.leap, "no-leap", "{ctx}");
    assert!(offset_ok(line.offset, line.error), "{ctx}");
}

/// ntpsec's `ntpdate -q` accepts our server the same way.
#[test]
fn ntpsec_ntpdate_accepts_meridian() {
    if !require_root_and_tools(&["ntpdate"]) {
        return;
    }
    let m = MeridianLan::new("ic-nsdate");
    let host = m.lan.server_addr.to_string();
    let out = ntpsec_ntpdate_query(Some(m.client()), &host, 2);
    let ctx = describe_output(&out);
    assert!(out.status.success(), "{ctx}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(parse_ntpdig_line)
        .unwrap_or_else(|| panic!("no ntpdate result line:\n{ctx}"));
    assert_eq!(line.stratum, 3, "{ctx}");
    assert!(offset_ok(line.offset, line.error), "{ctx}");
}

/// chrony's query-only client (`chronyd -Q`) accepts our server: every
/// sample passes all of chrony's packet tests, stratum 3, small offset.
#[test]
fn chronyd_query_accepts_meridian() {
    if !require_root_and_tools(&["chronyd"]) {
        return;
    }
    let m = MeridianLan::new("ic-chronyq");
    let q = chrony_query(Some(m.client()), IpAddr::V4(m.lan.server_addr), 123, 10)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!q.measurements.is_empty(), "no samples:\n{}", q.output);
    let max_delay = q
        .measurements
        .iter()
        .fold(0.0f64, |m, s| m.max(s.peer_delay));
    assert!(offset_ok(q.clock_wrong_by, max_delay / 2.0), "{}", q.output);
    for s in &q.measurements {
        assert_eq!(s.stratum, 3, "{s:?}");
        assert_eq!(s.leap, 'N', "{s:?}");
        assert_eq!(s.tests, "111 111 1111", "chrony rejected a sample: {s:?}");
        assert!(offset_ok(s.offset, s.peer_delay / 2.0), "{s:?}");
    }
}

/// Our own `ntpdate -q` (default port 123) against our server across the LAN.
#[test]
fn meridian_ntpdate_against_meridian() {
    if !require_root_and_tools(&[]) {
        return;
    }
    let m = MeridianLan::new("ic-self");
    let host = m.lan.server_addr.to_string();
    let started = unix_now();
    let (pid, out) = meridian_ntpdate(Some(m.client()), &[&host]);
    let s = check_ntpdate_output(pid, &out, &host, started);
    assert_eq!(s.stratum, 3, "{s:?}");
    assert!(offset_ok(s.offset, s.delay / 2.0), "{s:?}");
}

// ---------------------------------------------------------------------------
// c. restrict end to end
// ---------------------------------------------------------------------------

/// Per-source restrictions: 10.123.0.2 (default) is served; .3 (`ignore`)
/// and .4 (`noserve`) get nothing; .5 (`limited kod`) bursting past
/// `discard minimum 2 average 3` gets a RATE Kiss-o'-Death (stratum 0, LI 3,
/// refid RATE, origin = receive = transmit = our transmit). A burst from .2
/// (no `limited`) is answered in full.
#[test]
fn restrict_end_to_end() {
    if !require_root_and_tools(&[]) {
        return;
    }
    let lan = Lan::new("ic-restrict", &[2, 3, 4, 5]);
    let conf = format!(
        "{LOCAL_CLOCK_CONF}restrict 10.123.0.3 ignore\nrestrict 10.123.0.4 noserve\n\
         restrict 10.123.0.5 limited kod\ndiscard minimum 2 average 3\n"
    );
    let _server = meridian_server(
        Some(&lan.server),
        &conf,
        123,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        3,
    );
    let addr = SocketAddr::new(IpAddr::V4(lan.server_addr), 123);
    let quiet = Duration::from_millis(800);

    let ok = lan
        .client(2)
        .run(move || ntp_probe(addr, Duration::from_secs(2)))
        .expect("10.123.0.2 is served");
    assert_eq!(ok.reply.stratum, 3);

    for host in [3u8, 4] {
        let r = lan.client(host).run(move || ntp_probe(addr, quiet));
        assert!(r.is_err(), "10.123.0.{host} must get no reply, got {r:?}");
    }

    let replies = ntp_burst_in(lan.client(5), addr, 10, Duration::ZERO, quiet).expect("burst");
    let kods: Vec<_> = replies.iter().filter(|(_, p)| p.is_kod()).collect();
    assert!(
        !kods.is_empty(),
        "no KoD among {} replies to a 10-packet burst: {replies:?}",
        replies.len()
    );
    for (xmt, p) in kods {
        assert_eq!(p.refid_ascii(), "RATE", "{p:?}");
        assert_eq!(p.li, 3, "{p:?}");
        assert_eq!(p.mode, 4, "{p:?}");
        assert_eq!(
            (p.origin, p.receive, p.transmit),
            (*xmt, *xmt, *xmt),
            "KoD timestamps must all echo our transmit: {p:?}"
        );
    }

    let replies = ntp_burst_in(lan.client(2), addr, 5, Duration::ZERO, quiet).expect("burst");
    assert_eq!(replies.len(), 5, "unlimited client must get all replies");
    assert!(replies.iter().all(|(_, p)| p.stratum == 3), "{replies:?}");
}

// ---------------------------------------------------------------------------
// d. configuration check
// ---------------------------------------------------------------------------

fn check_config(text: &str) -> (std::path::PathBuf, Output, TempDir) {
    let dir = TempDir::new("check");
    let conf = dir.write("ntp.conf", text);
    let mut cmd = Command::new(meridian_bin());
    cmd.args(["ntpd", "--check", "-c"]).arg(&conf);
    let out = run_bounded(&mut cmd, Duration::from_secs(10));
    (conf, out, dir)
}

/// The seed deployment's configuration is accepted and echoed as the
/// effective configuration.
#[test]
fn seed_config_passes_check() {
    let (_, out, _dir) = check_config(
        "server 127.127.1.0\nfudge 127.127.1.0 stratum 2\n\
         restrict 192.168.44.130 mask 255.255.255.0 nomodify notrap\n",
    );
    let ctx = describe_output(&out);
    assert_eq!(out.status.code(), Some(0), "{ctx}");
    let stdout = String::from_utf8_lossy(&out.stdout).to_lowercase();
    for word in ["127.127.1.0", "nomodify", "notrap"] {
        assert!(
            stdout.contains(word),
            "effective config lacks {word}:\n{ctx}"
        );
    }
}

/// A bad line fails the check with `FILE:LINE:` pointing at it.
#[test]
fn bad_config_line_is_reported() {
    let (conf, out, _dir) = check_config(
        "server 127.127.1.0\nfudge 127.127.1.0 stratum 2\nrestrict default\n\
         restrict 10.0.0.1 no-such-flag\n",
    );
    let ctx = describe_output(&out);
    assert_eq!(out.status.code(), Some(1), "{ctx}");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let want = format!("{}:4:", conf.display());
    assert!(all.contains(&want), "want {want:?} in:\n{ctx}");
}

// ---------------------------------------------------------------------------
// parser self-tests (so a parser bug cannot pass bad output)
// ---------------------------------------------------------------------------

#[test]
fn ntpdate_line_parsers() {
    let s = parse_server_line("server 127.0.0.1, stratum 3, offset -0.000123, delay 0.02579")
        .expect("valid");
    assert_eq!((s.server.as_str(), s.stratum), ("127.0.0.1", 3));
    assert_eq!((s.offset, s.delay), (-0.000123, 0.02579));
    for bad in [
        "server 127.0.0.1, stratum 3, offset 0.00012, delay 0.02579",
        "server 127.0.0.1, stratum 3, offset 0.000123, delay 0.025790",
        "server 127.0.0.1, stratum x, offset 0.000123, delay 0.02579",
        "server 127.0.0.1 stratum 3, offset 0.000123, delay 0.02579",
    ] {
        assert!(parse_server_line(bad).is_none(), "{bad}");
    }
    let a = parse_adjust_line(
        "25 Nov 18:02:11 ntpdate[1234]: adjust time server 127.0.0.1 offset 0.000123 sec",
    )
    .expect("valid");
    assert_eq!((a.pid, a.server.as_str()), (1234, "127.0.0.1"));
    assert_eq!(
        (a.stamp.as_str(), a.offset_text.as_str()),
        ("25 Nov 18:02:11", "0.000123")
    );
    for bad in [
        "5 Nov 18:02:11 ntpdate[1234]: adjust time server 127.0.0.1 offset 0.000123 sec",
        "25 Nov 18:02:11 ntpdate[x]: adjust time server 127.0.0.1 offset 0.000123 sec",
        "25 Nov 18:02:11 ntpdate[1234]: step time server 127.0.0.1 offset 0.000123 sec",
        "25 Nov 18:02:11 ntpdate[1234]: adjust time server 127.0.0.1 offset 0.000123",
        "25 Foo 18:02:11 ntpdate[1234]: adjust time server 127.0.0.1 offset 0.000123 sec",
    ] {
        assert!(parse_adjust_line(bad).is_none(), "{bad}");
    }
    assert_eq!(format_local_time(0, "%Y").len(), 4);
}
