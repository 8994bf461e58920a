//! NTS between two Meridian daemons, end to end over loopback.
//!
//! The upstream serves its local clock (stratum 3) over plain NTP and NTS (`nts enable`
//! with a certificate made by `meridian nts-certs`, NTS-KE and NTP on free high ports,
//! so its NTS-KE server must announce the NTP port). The daemon under test syncs from
//! it through the name `localhost` with `server localhost nts port KE ca CA`: the key
//! exchange must succeed, the source must become reachable and be selected (`*` in
//! `ntpq -p`), and the daemon must serve stratum 4 with an offset near 0 (same clock).
//!
//! The second test adds a plain source on the very address the NTS-KE server sends the
//! NTP packets to, as `tests/seccomp.rs` does: both associations then share one server
//! address, and each must still get its own replies (they used to all go to the first,
//! leaving the NTS source at reach 0 although its key exchanges succeeded).
//!
//! Every daemon runs with `--observe` and without CAP_SYS_TIME. Needs root (for the
//! harness); skips otherwise, fails under CI.

mod support;

use std::net::{IpAddr, Ipv4Addr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use support::ops::{meridian_tool, poll_until, OpsDaemon};
use support::*;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A port free for both TCP and UDP on 127.0.0.1.
fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind((LOCALHOST, 0)).expect("bind");
        let port = tcp.local_addr().expect("addr").port();
        if UdpSocket::bind((LOCALHOST, port)).is_ok() {
            return port;
        }
    }
}

/// One line of `ntpq -p`.
#[derive(Debug)]
struct PeerLine {
    tally: char,
    remote: String,
    stratum: u8,
    reach: u16,
    /// Milliseconds.
    offset: f64,
}

/// The peer lines of `ntpq -p` against the daemon on `port`.
fn peers(port: u16) -> Vec<PeerLine> {
    let port = port.to_string();
    let (code, out, err) = meridian_tool(&["ntpq", "-p", "127.0.0.1", "--port", &port]);
    assert_eq!(code, 0, "ntpq -p failed: {out}{err}");
    out.lines()
        .skip_while(|l| !l.starts_with("===="))
        .skip(1)
        .filter_map(|l| {
            let tally = l.chars().next()?;
            let f: Vec<&str> = l[tally.len_utf8()..].split_whitespace().collect();
            // remote refid st t when poll reach delay offset jitter
            (f.len() >= 10).then(|| PeerLine {
                tally,
                remote: f[0].to_string(),
                stratum: f[2].parse().unwrap_or(16),
                reach: u16::from_str_radix(f[6], 8).unwrap_or(0),
                offset: f[8].parse().unwrap_or(f64::NAN),
            })
        })
        .collect()
}

/// The upstream (stratum 3, NTS on) and the CA that signed its certificate.
struct Upstream {
    daemon: OpsDaemon,
    ke_port: u16,
    ca: PathBuf,
    _certs: TempDir,
}

fn start_upstream() -> Upstream {
    let certs = TempDir::new("nts-meridian-certs");
    let dir = certs.path().join("pki");
    let dir_arg = dir.to_string_lossy().into_owned();
    let (code, out, err) = meridian_tool(&["nts-certs", &dir_arg, "localhost", "127.0.0.1"]);
    assert_eq!(code, 0, "meridian nts-certs failed: {out}{err}");
    let (port, ke_port) = (free_port(), free_port());
    let conf = format!(
        "server 127.127.1.0\nfudge 127.127.1.0 stratum 2\nrestrict default\n\
         nts enable\nnts cert {}\nnts key {}\nnts port {ke_port}\n",
        dir.join("server.pem").display(),
        dir.join("server.key").display(),
    );
    let mut daemon = OpsDaemon::start(None, &conf, port, &[], &[]);
    daemon.wait_serving(Some(3), Duration::from_secs(30));
    Upstream {
        daemon,
        ke_port,
        ca: dir.join("ca.pem"),
        _certs: certs,
    }
}

/// Wait (≤ 60 s) until the `localhost` (NTS) source is the system peer with a few
/// replies in its reach register, and, with `plain_too`, the plain source on
/// 127.0.0.1 answers as well; panics with the logs otherwise.
fn wait_nts_selected(d: &mut OpsDaemon, plain_too: bool) -> Vec<PeerLine> {
    // Answering at all first: before that, ntpq would find nobody listening.
    d.wait_serving(None, Duration::from_secs(30));
    let done = poll_until(Duration::from_secs(60), || {
        let p = peers(d.port);
        let nts = p.iter().find(|l| l.remote == "localhost")?;
        let nts_ok = nts.tally == '*' && nts.reach.count_ones() >= 3;
        let plain_ok = !plain_too
            || p.iter()
                .any(|l| l.remote == "127.0.0.1" && l.reach.count_ones() >= 3);
        (nts_ok && plain_ok).then_some(p)
    });
    done.unwrap_or_else(|| {
        panic!(
            "the NTS source never became reachable and selected:\n{:#?}\n{}",
            peers(d.port),
            d.logs()
        )
    })
}

/// Checks shared by both tests: the key exchange named the upstream's NTP port, the
/// NTS source is at stratum 3 with an offset near 0, and the daemon serves stratum 4
/// with an offset near 0.
fn assert_synced_over_nts(d: &mut OpsDaemon, up: &Upstream, lines: &[PeerLine]) {
    let logs = d.logs();
    let expected = "NTS key exchange with localhost done: 8 cookies, NTP at 127.0.0.1:";
    let ntp_at = logs
        .lines()
        .find_map(|l| l.split(expected).nth(1))
        .unwrap_or_else(|| panic!("no NTS key exchange:\n{logs}"));
    assert_eq!(ntp_at.trim(), up.daemon.port.to_string(), "{logs}");
    let nts = lines.iter().find(|l| l.remote == "localhost").expect("NTS");
    assert_eq!(nts.stratum, 3, "{lines:#?}");
    assert!(
        nts.offset.abs() < 5.0,
        "NTS offset {} ms:\n{lines:#?}",
        nts.offset
    );
    d.wait_serving(Some(4), Duration::from_secs(30));
    let probe = ntp_probe(d.addr(), Duration::from_secs(2)).expect("the daemon answers");
    assert_eq!(probe.reply.stratum, 4);
    assert!(
        probe.offset().abs() < 0.005,
        "offset {} s against the same clock",
        probe.offset()
    );
}

#[test]
fn nts_source_served_by_meridian_is_reached_and_selected() {
    if !require_root_and_tools(&[]) {
        return;
    }
    let up = start_upstream();
    let conf = format!(
        "server localhost nts port {} ca {} iburst minpoll 3 maxpoll 3\nrestrict default\n",
        up.ke_port,
        up.ca.display()
    );
    let mut d = OpsDaemon::start(None, &conf, free_port(), &[], &[]);
    let lines = wait_nts_selected(&mut d, false);
    assert_synced_over_nts(&mut d, &up, &lines);
}

#[test]
fn nts_and_plain_sources_on_one_server_address_both_get_their_replies() {
    if !require_root_and_tools(&[]) {
        return;
    }
    let up = start_upstream();
    // The plain source comes first, so it used to take the NTS source's replies too;
    // `prefer` makes the NTS source the one to select.
    let conf = format!(
        "server 127.0.0.1 port {} iburst minpoll 3 maxpoll 3\n\
         server localhost nts port {} ca {} iburst minpoll 3 maxpoll 3 prefer\n\
         restrict default\n",
        up.daemon.port,
        up.ke_port,
        up.ca.display()
    );
    let mut d = OpsDaemon::start(None, &conf, free_port(), &[], &[]);
    let lines = wait_nts_selected(&mut d, true);
    assert_synced_over_nts(&mut d, &up, &lines);
    let plain = lines
        .iter()
        .find(|l| l.remote == "127.0.0.1")
        .expect("plain");
    assert!(
        matches!(plain.tally, '+' | '#'),
        "the plain source is a candidate too:\n{lines:#?}"
    );
}
