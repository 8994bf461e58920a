//! Self-check of the interop test harness (`tests/support`) against real
//! NTP software, independent of Meridian.
//!
//! The interop tests in `interop_core.rs` trust this harness to tell good
//! NTP behaviour from bad: the raw probe and its parser, the namespace LAN,
//! the daemon guard, the delay relay, and the output parsers for ntpdig,
//! ntpsec's ntpdate and `chronyd -Q`. Here every one of them is pointed at
//! chronyd (run with `-x`, without CAP_SYS_TIME), whose behaviour is known,
//! so a harness bug shows up as a failure here rather than as a bogus verdict
//! on Meridian.
//!
//! Needs root (namespaces) and chrony/ntpsec-ntpdate; skips otherwise
//! (fails when `CI` is set).

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use support::relay::{DelaySpec, Relay, RelayConfig};
use support::*;

fn chrony_in_netns(tag: &str) -> (Netns, ChronyServer) {
    let ns = Netns::new(tag);
    let chrony = chrony_server(Some(&ns), &ChronyServerOpts::default());
    (ns, chrony)
}

/// Raw probe against chronyd: a well-formed stratum-3 server reply that
/// echoes our random transmit timestamp, with sane timestamps.
#[test]
fn raw_probe_reads_chronyd_reply() {
    if !require_root_and_tools(&["chronyd"]) {
        return;
    }
    let (ns, chrony) = chrony_in_netns("sc-raw");
    let addr = chrony.addr;
    let p = ns
        .run(move || ntp_probe(addr, Duration::from_secs(2)))
        .expect("chronyd answers");
    assert_eq!(p.reply.mode, 4, "{p:?}");
    assert_eq!(p.reply.vn, 4, "{p:?}");
    assert_eq!(p.reply.li, 0, "{p:?}");
    assert_eq!(p.reply.stratum, 3, "{p:?}");
    assert_eq!(p.reply.origin, p.sent_xmt, "origin must echo our transmit");
    // chrony's local reference: refid 127.127.1.1.
    assert_eq!(p.reply.refid, [127, 127, 1, 1], "{p:?}");
    assert!(ntp_diff(p.reply.transmit, p.reply.receive) >= 0.0, "{p:?}");
    assert!(
        offset_ok(p.offset(), p.delay() / 2.0),
        "offset {} s, delay {} s",
        p.offset(),
        p.delay()
    );
    assert!(
        (0.0..0.05).contains(&p.delay()),
        "loopback delay {} s",
        p.delay()
    );
    // Nothing listens on another port: the probe must time out, not hang.
    let other = SocketAddr::new(addr.ip(), 124);
    let err = ns
        .run(move || ntp_probe(other, Duration::from_millis(300)))
        .expect_err("no server on port 124");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
}

/// Probe `via` `n` times from inside `ns`.
fn probes_via(ns: &Netns, via: SocketAddr, n: usize) -> Vec<Probe> {
    ns.run(move || {
        (0..n)
            .map(|_| ntp_probe(via, Duration::from_secs(2)).expect("reply via relay"))
            .collect()
    })
}

/// The probe with the smallest round trip: like NTP's clock filter, it is the
/// one least disturbed by scheduling noise on a loaded machine.
fn best(probes: &[Probe]) -> Probe {
    *probes
        .iter()
        .min_by(|a, b| a.delay().total_cmp(&b.delay()))
        .expect("at least one probe")
}

/// Any round trip beyond the configured `path` delay bounds the asymmetry
/// the relay's scheduling may have added.
fn slack(p: &Probe, path: f64) -> f64 {
    0.001 + (p.delay() - path).max(0.0) / 2.0
}

/// The relay adds the configured per-direction delay: round trip ≈ sum of
/// both directions (never less); an asymmetric path shifts the measured
/// offset by half the asymmetry; jitter spreads the delays within its bound.
#[test]
fn relay_adds_configured_delay_and_jitter() {
    if !require_root_and_tools(&["chronyd"]) {
        return;
    }
    let (ns, chrony) = chrony_in_netns("sc-relay");
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let ms = Duration::from_millis;

    // Symmetric 20 ms each way, no jitter.
    let relay = Relay::start_in(
        Some(&ns),
        listen,
        chrony.addr,
        RelayConfig::symmetric(ms(20), Duration::ZERO),
    )
    .expect("relay");
    let probes = probes_via(&ns, relay.local_addr(), 4);
    for p in &probes {
        assert!(
            p.delay() >= 0.040,
            "delay {} s below the relay's 40 ms",
            p.delay()
        );
    }
    let b = best(&probes);
    assert!(
        b.delay() < 0.060,
        "best delay {} s, want ≈ 0.040",
        b.delay()
    );
    assert!(
        b.offset().abs() <= slack(&b, 0.040),
        "{b:?}: offset {}",
        b.offset()
    );
    let st = relay.stats();
    assert_eq!(
        (st.to_server, st.to_client, st.dropped),
        (4, 4, 0),
        "{st:?}"
    );
    drop(relay);

    // Asymmetric: 30 ms out, 10 ms back → offset ≈ +10 ms, delay ≈ 40 ms.
    let cfg = RelayConfig {
        to_server: DelaySpec::new(ms(30), Duration::ZERO),
        to_client: DelaySpec::new(ms(10), Duration::ZERO),
        ..RelayConfig::default()
    };
    let relay = Relay::start_in(Some(&ns), listen, chrony.addr, cfg).expect("relay");
    let b = best(&probes_via(&ns, relay.local_addr(), 3));
    assert!(
        (b.offset() - 0.010).abs() <= slack(&b, 0.040),
        "offset {} s, want ≈ +0.010 (delay {})",
        b.offset(),
        b.delay()
    );
    assert!((0.040..0.060).contains(&b.delay()), "delay {}", b.delay());
    drop(relay);

    // Jitter: 5 ms + U(0, 10 ms) each way → delays in [10, 30] ms (plus
    // scheduling noise), and not all alike.
    let relay = Relay::start_in(
        Some(&ns),
        listen,
        chrony.addr,
        RelayConfig::symmetric(ms(5), ms(10)),
    )
    .expect("relay");
    let mut delays: Vec<f64> = probes_via(&ns, relay.local_addr(), 10)
        .iter()
        .map(Probe::delay)
        .collect();
    delays.sort_by(f64::total_cmp);
    assert!(delays[0] >= 0.010, "delays {delays:?}");
    assert!(delays[5] < 0.032, "median too high: {delays:?}");
    assert!(
        delays[9] - delays[0] > 0.002,
        "jitter had no effect: {delays:?}"
    );
}

/// `chronyd -Q` through a 20 ms + 20 ms relay: the measurements log shows
/// stratum 3, all tests passed and a peer delay ≈ 40 ms; the final offset
/// line parses and is small.
#[test]
fn chrony_query_through_relay() {
    if !require_root_and_tools(&["chronyd"]) {
        return;
    }
    let (ns, chrony) = chrony_in_netns("sc-chq");
    let relay = Relay::start_in(
        Some(&ns),
        "127.0.0.1:0".parse().unwrap(),
        chrony.addr,
        RelayConfig::symmetric(Duration::from_millis(20), Duration::ZERO),
    )
    .expect("relay");
    let via = relay.local_addr();
    let q = chrony_query(Some(&ns), via.ip(), via.port(), 10).expect("chronyd -Q succeeds");
    assert!(!q.measurements.is_empty(), "no measurements:\n{}", q.output);
    for m in &q.measurements {
        assert_eq!(m.ip, "127.0.0.1");
        assert_eq!(m.stratum, 3, "{m:?}");
        assert_eq!(m.leap, 'N', "{m:?}");
        assert_eq!(m.tests, "111 111 1111", "{m:?}");
        assert!(
            m.peer_delay >= 0.040,
            "peer delay {} s < 40 ms",
            m.peer_delay
        );
    }
    let min_delay = q
        .measurements
        .iter()
        .fold(f64::MAX, |a, m| a.min(m.peer_delay));
    let max_delay = q
        .measurements
        .iter()
        .fold(0.0f64, |a, m| a.max(m.peer_delay));
    assert!(min_delay < 0.060, "peer delay {min_delay} s, want ≈ 0.040");
    assert!(
        q.clock_wrong_by.abs() <= 0.001 + (max_delay - 0.040) / 2.0,
        "offset {} s\n{}",
        q.clock_wrong_by,
        q.output
    );
    // And with nobody answering, chronyd -Q fails within its timeout.
    let err = chrony_query(Some(&ns), via.ip(), 9, 2).expect_err("no server on port 9");
    assert!(err.contains("Timeout reached"), "{err}");
}

/// ntpsec's ntpdig and ntpdate -q in a client namespace against chronyd on
/// port 123 in the server namespace of a LAN: both accept the server
/// (stratum 3, small offset), and fail cleanly when no server answers.
#[test]
fn ntpsec_clients_against_chronyd_on_lan() {
    if !require_root_and_tools(&["chronyd", "ntpdig", "ntpdate"]) {
        return;
    }
    let lan = Lan::new("sc-lan", &[2]);
    let opts = ChronyServerOpts {
        allow: vec!["10.123.0.0/24".into()],
        ..ChronyServerOpts::default()
    };
    let _chrony = chrony_server(Some(&lan.server), &opts);
    let client = lan.client(2);
    let server = lan.server_addr.to_string();

    let out = ntpdig(Some(client), &server, 3, 2);
    assert!(out.status.success(), "{}", describe_output(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(parse_ntpdig_line)
        .unwrap_or_else(|| panic!("no ntpdig result line:\n{}", describe_output(&out)));
    assert_eq!(line.host, server);
    assert_eq!(line.stratum, 3, "{line:?}");
    assert_eq!(line.leap, "no-leap", "{line:?}");
    assert!(offset_ok(line.offset, line.error), "{line:?}");

    let out = ntpsec_ntpdate_query(Some(client), &server, 2);
    assert!(out.status.success(), "{}", describe_output(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(parse_ntpdig_line)
        .unwrap_or_else(|| panic!("no ntpdate result line:\n{}", describe_output(&out)));
    assert_eq!(line.stratum, 3, "{line:?}");
    assert!(offset_ok(line.offset, line.error), "{line:?}");

    // Unanswered: 10.123.0.99 does not exist on the LAN.
    let out = ntpdig(Some(client), "10.123.0.99", 1, 1);
    assert!(!out.status.success(), "{}", describe_output(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no eligible servers"),
        "{}",
        describe_output(&out)
    );
}

/// LAN clients have distinct source addresses: chronyd allowing only
/// 10.123.0.2 answers that client and ignores 10.123.0.3 (probe times out).
#[test]
fn lan_clients_have_distinct_sources() {
    if !require_root_and_tools(&["chronyd"]) {
        return;
    }
    let lan = Lan::new("sc-src", &[2, 3]);
    let opts = ChronyServerOpts {
        allow: vec!["10.123.0.2".into()],
        ..ChronyServerOpts::default()
    };
    let chrony = chrony_server(Some(&lan.server), &opts);
    let server = SocketAddr::new(IpAddr::V4(lan.server_addr), chrony.addr.port());
    let ok = lan
        .client(2)
        .run(move || ntp_probe(server, Duration::from_secs(2)));
    let p = ok.expect("10.123.0.2 is allowed");
    assert_eq!(p.reply.stratum, 3);
    let denied = lan
        .client(3)
        .run(move || ntp_probe(server, Duration::from_millis(700)));
    assert!(denied.is_err(), "10.123.0.3 is not allowed: {denied:?}");
}

/// The burst helper sees server-side rate limiting: chronyd with a strict
/// `ratelimit` answers only a few of 10 back-to-back requests.
#[test]
fn burst_sees_chrony_rate_limit() {
    if !require_root_and_tools(&["chronyd"]) {
        return;
    }
    let lan = Lan::new("sc-rate", &[2]);
    let opts = ChronyServerOpts {
        allow: vec!["10.123.0.0/24".into()],
        extra: vec!["ratelimit interval 1 burst 1 leak 4".into()],
        ..ChronyServerOpts::default()
    };
    let _chrony = chrony_server(Some(&lan.server), &opts);
    let server = SocketAddr::new(IpAddr::V4(lan.server_addr), 123);
    let replies = ntp_burst_in(
        lan.client(2),
        server,
        10,
        Duration::ZERO,
        Duration::from_millis(800),
    )
    .expect("burst");
    assert!(
        !replies.is_empty() && replies.len() < 5,
        "expected 1..5 of 10 answered, got {}",
        replies.len()
    );
    for (xmt, p) in &replies {
        assert_eq!(p.origin, *xmt);
        assert_eq!(p.stratum, 3);
    }
}

/// The unpacked ntpsec package (ntpd, ntpq) from install-test-deps.sh runs.
#[test]
fn ntpsec_package_is_unpacked() {
    if !require_root_and_tools(&["ntpsec:ntpd", "ntpsec:ntpq"]) {
        return;
    }
    for tool in ["ntpsec:ntpd", "ntpsec:ntpq"] {
        let path = find_tool(tool).unwrap();
        let mut cmd = std::process::Command::new(&path);
        cmd.arg("--version");
        let out = run_bounded(&mut cmd, Duration::from_secs(10));
        assert!(out.status.success(), "{tool}: {}", describe_output(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("ntpsec-"),
            "{tool}: {}",
            describe_output(&out)
        );
    }
}

/// The ntpdig line parser accepts the real formats and rejects others.
#[test]
fn ntpdig_parser_formats() {
    let l = parse_ntpdig_line(
        "2026-11-25 17:43:31.626934 (+0000) +0.000082 +/- 0.000235 127.0.0.1 s3 no-leap",
    )
    .unwrap();
    assert_eq!(
        l,
        NtpdigLine {
            offset: 0.000082,
            error: 0.000235,
            host: "127.0.0.1".into(),
            stratum: 3,
            leap: "no-leap".into()
        }
    );
    let l = parse_ntpdig_line(
        "2026-11-25 17:43:32.900071 (+0000) -1.500000 +/- 0.000147 localhost 127.0.0.1 s2 add-leap",
    )
    .unwrap();
    assert_eq!(
        (l.offset, l.stratum, l.host.as_str()),
        (-1.5, 2, "localhost")
    );
    assert!(parse_ntpdig_line("ntpdig: no eligible servers").is_none());
}
