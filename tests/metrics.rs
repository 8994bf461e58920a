//! The operations endpoints against running daemons on loopback:
//!
//! * `/metrics` parses strictly as Prometheus text format 0.0.4 (every sample has HELP
//!   and TYPE, valid names, numeric values, counters end in `_total`) and its values
//!   match reality: the stratum the daemon serves, its two sources, the replies, KoDs
//!   and rate-limited drops a client actually saw;
//! * `/api/status`, `meridian status [--json]` and `ntpq -c rv --json` agree with it;
//! * the HTTP server is bounded and strict (404, 405, 431, HEAD);
//! * `metrics ADDR:PORT` in ntp.conf works like `--metrics`, and a busy port is
//!   reported before the daemon starts.
//!
//! Daemons run with `--observe` and without CAP_SYS_TIME, on high ports of 127.0.0.0/8.
//! They need root (for `setpriv`); without it the tests print SKIP (CI fails instead).

mod support;

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use support::ops::*;
use support::*;

fn can_run() -> bool {
    require_root_and_tools(&[])
}

fn scrape(d: &OpsDaemon, metrics: SocketAddr) -> Exposition {
    let r = d
        .http_get(metrics, "/metrics")
        .unwrap_or_else(|e| panic!("GET /metrics: {e}"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = r.text();
    parse_exposition(&text).unwrap_or_else(|e| panic!("invalid exposition: {e}\n{text}"))
}

/// Naming conventions beyond the format itself.
fn check_conventions(e: &Exposition) {
    for (name, help) in &e.help {
        assert!(
            name.starts_with("ntp_") || name.starts_with("meridian_"),
            "{name}: prefix"
        );
        assert!(!help.trim().is_empty(), "{name}: empty HELP");
        for bad in ["_ms", "_milliseconds", "_ppm", "_usec", "_microseconds"] {
            assert!(!name.contains(bad), "{name}: not a base unit");
        }
        assert!(e.types.contains_key(name), "{name}: HELP without TYPE");
    }
    for s in &e.samples {
        assert!(s.value.is_finite(), "{s:?}");
    }
}

/// The sources in an exposition: `source` label → (name, selection, reach, offset, delay).
fn sources(e: &Exposition) -> BTreeMap<String, (String, String, f64, f64, f64)> {
    let mut out = BTreeMap::new();
    for s in e.all("ntp_source_offset_seconds") {
        let key = s.label("source").unwrap().to_string();
        let name = s.label("name").unwrap().to_string();
        let l = [("source", key.as_str())];
        let on: Vec<&str> = e
            .all("ntp_source_selection")
            .into_iter()
            .filter(|x| x.label("source") == Some(&key) && x.value == 1.0)
            .map(|x| x.label("selection").unwrap())
            .collect();
        assert_eq!(on.len(), 1, "{key}: exactly one selection state: {on:?}");
        let states = e
            .all("ntp_source_selection")
            .into_iter()
            .filter(|x| x.label("source") == Some(&key))
            .count();
        assert_eq!(states, 8, "{key}: every selection state has a series");
        out.insert(
            key.clone(),
            (
                name,
                on[0].to_string(),
                e.value_with("ntp_source_reach", &l),
                s.value,
                e.value_with("ntp_source_delay_seconds", &l),
            ),
        );
    }
    out
}

#[test]
fn metrics_match_a_synchronised_daemon() {
    if !can_run() {
        return;
    }
    let upstream = local_upstream(None);
    let (client, metrics) = synced_client(None, &upstream, "");
    let up = upstream.port;
    let expected: Vec<String> = vec![format!("127.0.0.1:{up}"), format!("127.0.0.2:{up}")];

    // Both sources heard and one of them selected.
    let e = poll_until(Duration::from_secs(40), || {
        let e = scrape(&client, metrics);
        let s = sources(&e);
        let ready =
            s.len() == 2 && s.values().all(|v| v.2 > 0.0) && s.values().any(|v| v.1 == "sys_peer");
        ready.then_some(e)
    })
    .unwrap_or_else(|| {
        panic!(
            "sources not both reachable and selected:\n{}",
            client
                .http_get(metrics, "/metrics")
                .map(|r| r.text())
                .unwrap_or_default()
        )
    });
    check_conventions(&e);
    for family in [
        "ntp_system_offset_seconds",
        "ntp_system_frequency_ratio",
        "ntp_system_jitter_seconds",
        "ntp_system_stratum",
        "ntp_system_synchronized",
        "ntp_system_leap_indicator",
        "ntp_system_root_delay_seconds",
        "ntp_system_root_dispersion_seconds",
        "ntp_source_jitter_seconds",
        "ntp_server_responses_total",
        "ntp_server_dropped_packets_total",
        "ntp_server_kod_responses_total",
        "ntp_server_rate_limited_packets_total",
        "ntp_server_rate_limit_clients",
    ] {
        assert!(e.types.contains_key(family), "{family} missing");
    }

    // The system: what the daemon serves on the wire.
    let probe = ntp_probe(client.addr(), Duration::from_secs(2)).expect("probe");
    assert_eq!(probe.reply.stratum, 12);
    assert_eq!(e.value("ntp_system_stratum"), 12.0);
    assert_eq!(e.value("ntp_system_synchronized"), 1.0);
    assert_eq!(
        e.value("ntp_system_leap_indicator"),
        f64::from(probe.reply.li)
    );
    assert!(e.value("ntp_system_root_dispersion_seconds") > 0.0);
    assert!(e.value("ntp_system_root_delay_seconds") >= 0.0);
    let poll = e.value("ntp_system_poll_interval_seconds");
    assert!((8.0..=1024.0).contains(&poll), "poll {poll}");
    assert!(e.value("ntp_system_offset_seconds").abs() < 0.05);
    assert!(e.value("ntp_system_frequency_ratio").abs() < 500e-6);
    let info = &e.all("ntp_system_sync_info")[0];
    assert_eq!(info.label("sync_source"), Some("ntp"));

    // The sources: both loopback addresses, on loopback's delay and offset.
    let s = sources(&e);
    assert_eq!(s.keys().cloned().collect::<Vec<_>>(), expected);
    for (key, (name, _, reach, offset, delay)) in &s {
        assert_eq!(name, &key[..9], "name of {key}");
        assert!(*reach >= 1.0 && *reach <= 255.0);
        assert!(offset.abs() < 0.05, "{key} offset {offset}");
        assert!((0.0..0.05).contains(delay), "{key} delay {delay}");
    }
    let peer = info.label("system_peer").unwrap();
    assert_eq!(s[peer].1, "sys_peer", "system_peer label is the sys_peer");

    // Served requests: N probes later the counter moved by at least N, and counts
    // everything this client was answered.
    let before = e.value("ntp_server_responses_total");
    let n = 25;
    let mut answered = 0;
    for _ in 0..n {
        if ntp_probe(client.addr(), Duration::from_secs(2)).is_ok() {
            answered += 1;
        }
    }
    assert_eq!(answered, n, "loopback probes all answered");
    let e2 = scrape(&client, metrics);
    let after = e2.value("ntp_server_responses_total");
    assert!(after - before >= f64::from(n), "{before} -> {after}");
    assert!(e2.value("ntp_server_received_packets_total") >= after);
    assert!(e2.value("ntp_server_rate_limit_clients") >= 1.0);
    assert_eq!(e2.value("ntp_server_kod_responses_total"), 0.0);

    // /api/status says the same.
    let r = client.http_get(metrics, "/api/status").expect("status");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let j = Json::parse(&r.text()).unwrap_or_else(|e| panic!("{e}: {}", r.text()));
    assert!(j.at("synchronized").bool());
    assert_eq!(j.at("stratum").num(), 12.0);
    assert_eq!(j.at("system_peer").str(), peer);
    let keys: Vec<&str> = j
        .at("sources")
        .arr()
        .iter()
        .map(|s| s.at("source").str())
        .collect();
    assert_eq!(
        keys,
        expected.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert!(j.at("server").at("responses").num() >= after);

    // `meridian status --json` over mode 6.
    let port = client.port.to_string();
    let (code, out, err) = meridian_tool(&["status", "--json", "--port", &port]);
    assert_eq!(code, 0, "{err}");
    let st = Json::parse(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(st.at("synchronized").bool(), "{out}");
    assert_eq!(st.at("system").at("stratum").num(), 12.0);
    let srcs = st.at("sources").arr();
    assert_eq!(srcs.len(), 2, "{out}");
    for src in srcs {
        let key = format!("{}:{}", src.at("address").str(), src.at("port").num());
        assert!(expected.contains(&key), "{key}");
        assert!(src.at("reach").num() > 0.0);
        assert!((src.at("offset").num() - s[&key].3).abs() < 0.05);
    }
    assert_eq!(
        srcs.iter().filter(|s| s.at("system_peer").bool()).count(),
        1,
        "{out}"
    );

    // ... and for people: chronyc's layout.
    let (code, out, err) = meridian_tool(&["status", "--port", &port]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Stratum         : 12\n"), "{out}");
    assert!(out.contains("Leap status     : Normal\n"), "{out}");
    assert!(out.contains("\nMS Name/IP address"), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("^*")).count(),
        1,
        "{out}"
    );
    assert_eq!(
        out.lines().filter(|l| l.starts_with('^')).count(),
        2,
        "{out}"
    );

    // `ntpq -c rv --json`: the wire values, typed.
    let (code, out, err) =
        meridian_tool(&["ntpq", "-c", "rv", "--json", "--port", &port, "127.0.0.1"]);
    assert_eq!(code, 0, "{err}");
    let rv = Json::parse(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(rv.at("associd").num(), 0.0);
    let vars = rv.at("variables");
    assert_eq!(vars.at("stratum").num(), 12.0);
    assert_eq!(vars.at("leap").num(), 0.0);
    assert_eq!(vars.at("refid").str(), info.label("refid").unwrap());
    assert!(vars.at("version").str().starts_with("meridian "));
    assert!(rv.at("status_text").str().contains("sync_ntp"), "{out}");

    // A status request to a port where nothing listens fails cleanly.
    let dead = free_udp_port().to_string();
    let (code, _, err) = meridian_tool(&["status", "--port", &dead]);
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("status: 127.0.0.1:"), "{err}");
}

/// A client at 127.0.0.3 that sends `count` requests at once and counts what comes back:
/// (time replies, KoDs).
fn burst_from_127_0_0_3(server: SocketAddr, count: usize) -> (u32, u32) {
    let sock = UdpSocket::bind("127.0.0.3:0").expect("bind 127.0.0.3");
    for i in 0..count {
        let xmt = 0x1234_5678_0000_0000u64 + i as u64;
        sock.send_to(&NtpPacket::request_bytes(4, xmt), server)
            .expect("send");
    }
    let (mut replies, mut kods) = (0, 0);
    let deadline = Instant::now() + Duration::from_millis(1500);
    let mut buf = [0u8; 512];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            break;
        };
        match NtpPacket::parse(&buf[..n]) {
            Some(p) if p.is_kod() => kods += 1,
            Some(_) => replies += 1,
            None => {}
        }
    }
    (replies, kods)
}

#[test]
fn rate_limiting_and_kods_are_counted_exactly() {
    if !can_run() {
        return;
    }
    // `metrics` from ntp.conf rather than the command line. Everyone but 127.0.0.1
    // (the readiness probes) is rate limited.
    let metrics = SocketAddr::new(LOOPBACK, free_tcp_port());
    let conf = format!(
        "server 127.127.1.0\nfudge 127.127.1.0 stratum 10\nrestrict default kod limited\n\
         restrict 127.0.0.1\nmetrics {metrics}\n"
    );
    let mut d = OpsDaemon::start(None, &conf, free_udp_port(), &[], &[]);
    d.wait_serving(Some(11), Duration::from_secs(30));
    poll_until(Duration::from_secs(10), || {
        d.http_get(metrics, "/metrics").ok()
    })
    .expect("metrics listener from ntp.conf");

    let e1 = scrape(&d, metrics);
    let sent = 40;
    let (replies, kods) = burst_from_127_0_0_3(d.addr(), sent);
    let e2 = scrape(&d, metrics);
    let delta = |name: &str| e2.value(name) - e1.value(name);
    eprintln!("burst of {sent}: {replies} replies, {kods} KoDs");
    assert!(replies >= 1 && kods >= 1, "{replies} replies, {kods} KoDs");
    assert!(replies + kods < sent as u32, "some requests were dropped");
    // Exactly what the client saw: no other traffic reaches this daemon.
    assert_eq!(delta("ntp_server_received_packets_total"), sent as f64);
    assert_eq!(delta("ntp_server_responses_total"), f64::from(replies));
    assert_eq!(delta("ntp_server_kod_responses_total"), f64::from(kods));
    let dropped = sent as f64 - f64::from(replies + kods);
    assert_eq!(delta("ntp_server_rate_limited_packets_total"), dropped);
    assert_eq!(delta("ntp_server_dropped_packets_total"), dropped);
    // 127.0.0.1 (the readiness probes) and 127.0.0.3.
    assert!(e2.value("ntp_server_rate_limit_clients") >= 2.0);
    // Only the local clock: one source, selected, reference clock address.
    assert_eq!(
        e2.value_with(
            "ntp_source_selection",
            &[
                ("source", "127.127.1.0"),
                ("name", "LOCAL(0)"),
                ("selection", "sys_peer")
            ]
        ),
        1.0
    );
    let info = &e2.all("ntp_system_sync_info")[0];
    assert_eq!(info.label("sync_source"), Some("local"));

    // The HTTP server: strict and bounded.
    let r = d.http_get(metrics, "/nope").unwrap();
    assert_eq!(r.status, 404);
    let r = http_raw(
        metrics,
        b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        false,
    )
    .unwrap();
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
    let r = http_raw(metrics, b"HEAD /metrics HTTP/1.1\r\n\r\n", true).unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap()
            > 1000
    );
    let mut big = b"GET /metrics HTTP/1.1\r\n".to_vec();
    while big.len() < 20_000 {
        big.extend_from_slice(b"X-Padding: 0123456789012345678901234567890123456789\r\n");
    }
    big.extend_from_slice(b"\r\n");
    let r = http_raw(metrics, &big, false).unwrap();
    assert_eq!(r.status, 431);
    let r = d.http_get(metrics, "/api/history").unwrap();
    let h = Json::parse(&r.text()).unwrap_or_else(|e| panic!("{e}: {}", r.text()));
    assert_eq!(h.at("keep").num(), 86_400.0);
    assert!(!h.at("system").arr().is_empty());
    let r = d.http_get(metrics, "/").unwrap();
    assert_eq!(r.status, 200);
    assert!(r.header("content-security-policy").is_some());
    assert!(r.text().contains("<script src=\"/app.js\">"));
    // Still serving after all that.
    d.assert_running();
    assert_eq!(d.stop().code(), Some(0));
}

#[test]
fn a_busy_metrics_port_is_reported_at_start() {
    if !can_run() {
        return;
    }
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = holder.local_addr().unwrap();
    let mut d = OpsDaemon::start(
        None,
        LOCAL10,
        free_udp_port(),
        &["--metrics".into(), busy.to_string()],
        &[],
    );
    let status = poll_until(Duration::from_secs(10), || {
        (!d.is_running()).then(|| d.stop())
    })
    .expect("daemon exits");
    assert_eq!(status.code(), Some(1));
    let logs = d.logs();
    assert!(
        logs.contains(&format!("cannot listen for metrics on {busy}")),
        "{logs}"
    );
}

#[test]
fn exposition_parser_is_strict() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total 3\n\
                # HELP g G.\n# TYPE g gauge\ng{x=\"1\",y=\"a\\\"b\"} -0.5\ng{x=\"2\"} NaN\n";
    let e = parse_exposition(good).unwrap();
    assert_eq!(e.value("a_total"), 3.0);
    assert_eq!(e.all("g")[0].label("y"), Some("a\"b"));
    for bad in [
        "a 1\n",                                    // no HELP/TYPE
        "# HELP a A.\n# TYPE a counter\na 1\n",     // counter without _total
        "# HELP g G.\n# TYPE g gauge\ng one\n",     // not a number
        "# HELP g G.\n# TYPE g gauge\ng 1",         // no final newline
        "# HELP g G.\n# TYPE g gauge\ng{x=1} 1\n",  // unquoted label
        "# HELP g G.\n# TYPE g gauge\ng 1\ng 2\n",  // duplicate series
        "# HELP g G.\n# TYPE g gauge\n# HELP h H.\n# TYPE h gauge\ng{a=\"1\"} 1\nh 1\ng{a=\"2\"} 1\n",
    ] {
        assert!(parse_exposition(bad).is_err(), "accepted {bad:?}");
    }
}

#[test]
fn json_parser_is_strict() {
    let v = Json::parse(r#" {"a": [1, -2.5e3, true, null], "b": "x\"\u00e9"} "#).unwrap();
    assert_eq!(v.at("a").arr()[1].num(), -2500.0);
    assert_eq!(v.at("b").str(), "x\"é");
    for bad in [
        "{\"a\":1,}",
        "[01]",
        "{\"a\":1 \"b\":2}",
        "\"\u{1}\"",
        "{} x",
        "{\"a\":1,\"a\":2}",
    ] {
        assert!(Json::parse(bad).is_err(), "accepted {bad:?}");
    }
}
