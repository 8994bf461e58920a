//! `ntpd --seccomp` with its system-call allow-list, end to end: one daemon under the
//! filter uses every feature it has after start-up, and each must still work.
//!
//! The daemon under test syncs from an upstream Meridian (plain NTP, and NTS through
//! the name `localhost`, so a name lookup and a TLS client run under the filter),
//! serves NTP and NTS (its NTS-KE server is used by this test's own NTS client), answers
//! ntpq (mode 6, including the MRU list's nonce exchange), tells systemd it is ready and
//! alive (sd_notify READY=1 and WATCHDOG=1, as the unit runs it), serves /metrics and the
//! status page, writes loopstats and peerstats with their day links, reloads twice on
//! SIGHUP (a new source, re-read keys and certificate), and writes its drift file on
//! SIGTERM. Asserted: every thread is in filter mode with no_new_privs; each feature
//! works; the daemon exits cleanly; and the kernel refused it nothing (the filter asks
//! the kernel to log refusals, type=1326 lines naming the pid, when the kernel log is
//! readable). That the filter does refuse what it must is tested by a forked child in
//! crates/os/tests/seccomp.rs.
//!
//! Loopback and free high ports only; every daemon without CAP_SYS_TIME and with
//! `--observe`. Needs root (for the kernel log and the harness); skips otherwise, fails
//! under CI.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use meridian_nts::{key_exchange, TrustAnchors, UID_LEN};
use meridian_proto::{new_client_request, Exchange, NtpTimestamp};
use support::dns;
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

fn now() -> NtpTimestamp {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).expect("time");
    NtpTimestamp::from_unix(d.as_secs() as i64, d.subsec_nanos())
}

/// The `Seccomp:` and `NoNewPrivs:` fields of every thread of `pid`.
fn thread_filter_modes(pid: u32) -> Vec<(String, String)> {
    let mut modes = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("task dir") {
        let Ok(status) = std::fs::read_to_string(task.expect("task").path().join("status")) else {
            continue; // a thread that just ended
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        modes.push((field("Seccomp:"), field("NoNewPrivs:")));
    }
    modes
}

/// The kernel's seccomp refusal records (audit type 1326) naming `pid`, or `None`
/// when the kernel log cannot be read here.
fn refusals_logged_for(pid: u32) -> Option<Vec<String>> {
    let out = Command::new("dmesg").output().ok()?;
    if !out.status.success() {
        return None;
    }
    let needle = format!(" pid={pid} ");
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("type=1326") && l.contains(&needle))
            .map(str::to_string)
            .collect(),
    )
}

/// One NTS key exchange with the daemon's NTS-KE server, then an NTS-protected time
/// request to the NTP port it names; returns the verified reply's stratum.
fn nts_round_trip(ke: SocketAddr, ca: &Path) -> Result<u8, String> {
    let trust = TrustAnchors::CaFile(ca.to_path_buf());
    let mut state = key_exchange("localhost", ke, &trust, Duration::from_secs(3))
        .map_err(|e| format!("NTS-KE: {e}"))?;
    let sock = UdpSocket::bind((LOCALHOST, 0)).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    let mut uid = [0u8; UID_LEN];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut uid);
    let req = new_client_request(4, 6, rand::random::<u64>() | 1);
    let mut request = [0u8; 1500];
    let len = state
        .build_request(&req.header, &uid, &mut request)
        .map_err(|e| format!("build: {e}"))?;
    let mut exchange = Exchange::new(req, now());
    sock.send_to(&request[..len], SocketAddr::new(LOCALHOST, state.port))
        .map_err(|e| e.to_string())?;
    let mut reply = [0u8; 1500];
    let (n, _) = sock
        .recv_from(&mut reply)
        .map_err(|e| format!("no NTS reply: {e}"))?;
    let header = state
        .process_response(&reply[..n], &uid)
        .map_err(|e| format!("reply rejected: {e}"))?;
    let sample = exchange
        .on_reply(&header, now(), -20)
        .map_err(|e| format!("not a valid time reply: {e:?}"))?;
    Ok(sample.stratum)
}

fn ntpq(port: u16, args: &[&str]) -> String {
    let port = port.to_string();
    let mut all = vec!["ntpq"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["127.0.0.1", "--port", &port]);
    let (code, out, err) = meridian_tool(&all);
    assert_eq!(code, 0, "ntpq {args:?} failed: {out}{err}");
    out
}

#[test]
fn every_feature_works_under_the_allow_list_and_nothing_is_refused() {
    if !require_root_and_tools(&[]) {
        return;
    }
    let files = TempDir::new("seccomp-files");
    let certs = meridian_nts::generate_test_ca_and_server_cert(
        &files.path().join("certs"),
        &["localhost", "127.0.0.1"],
    )
    .expect("certificates");
    let keys = files.write(
        "ntp.keys",
        "1 AES128CMAC 0102030405060708090a0b0c0d0e0f10\n",
    );
    let stats = files.path().join("stats");
    std::fs::create_dir(&stats).expect("stats dir");
    let drift = files.path().join("ntp.drift");
    let nts_server = |ke_port: u16| {
        format!(
            "nts enable\nnts cert {}\nnts key {}\nnts port {ke_port}\n",
            certs.server_cert.display(),
            certs.server_key.display()
        )
    };

    // The upstream: local clock (served at stratum 3), plain NTP and NTS, no filter.
    let (up_port, up_ke) = (free_port(), free_port());
    let mut upstream = OpsDaemon::start(
        None,
        &format!(
            "server 127.127.1.0\nfudge 127.127.1.0 stratum 2\nrestrict default\n{}",
            nts_server(up_ke)
        ),
        up_port,
        &[],
        &[],
    );
    upstream.wait_serving(Some(3), Duration::from_secs(30));

    // The daemon under test.
    let (port, ke_port, metrics_port) = (free_port(), free_port(), free_port());
    let conf = format!(
        "server 127.0.0.1 port {up_port} iburst minpoll 3 maxpoll 3\n\
         server localhost nts port {up_ke} ca {ca} iburst minpoll 3 maxpoll 3\n\
         restrict default\n\
         driftfile {drift}\n\
         statsdir {stats}/\n\
         statistics loopstats peerstats\n\
         filegen loopstats file loopstats type day enable\n\
         filegen peerstats file peerstats type day enable\n\
         keys {keys}\ntrustedkey 1\ncontrolkey 1\n\
         {nts}nts cookie {cookie}\n",
        ca = certs.ca_cert.display(),
        drift = drift.display(),
        stats = stats.display(),
        keys = keys.display(),
        nts = nts_server(ke_port),
        cookie = files.path().join("cookies").display(),
    );
    let metrics = SocketAddr::new(LOCALHOST, metrics_port);
    // Started as the systemd unit starts it: readiness and watchdog over sd_notify,
    // read as systemd reads them, all the time (a full queue would block the sender).
    let notify_path = files.path().join("notify");
    let notify = UnixDatagram::bind(&notify_path).expect("notify socket");
    notify
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let notified: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop_reading = Arc::new(AtomicBool::new(false));
    let (sink, stop) = (Arc::clone(&notified), Arc::clone(&stop_reading));
    let reader = thread::spawn(move || {
        let mut buf = [0u8; 256];
        while !stop.load(Ordering::Relaxed) {
            if let Ok(n) = notify.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                sink.lock().expect("notify log").push(text);
            }
        }
    });
    let mut d = OpsDaemon::start(
        None,
        &conf,
        port,
        &["--seccomp".into(), "--metrics".into(), metrics.to_string()],
        &[
            ("NOTIFY_SOCKET", notify_path.to_string_lossy().into_owned()),
            ("WATCHDOG_USEC", "1000000".into()),
        ],
    );
    // Synchronised to the upstream: stratum 4.
    d.wait_serving(Some(4), Duration::from_secs(60));
    let pid = d.pid();
    assert!(
        d.logs().contains("system-call filter installed"),
        "{}",
        d.logs()
    );

    // Every thread (workers, NTS-KE, metrics, client-socket readers) is filtered.
    let modes = thread_filter_modes(pid);
    assert!(modes.len() >= 4, "{modes:?}");
    for (seccomp, nnp) in &modes {
        assert_eq!((seccomp.as_str(), nnp.as_str()), ("2", "1"), "{modes:?}");
    }

    // sd_notify from the filtered main loop: READY=1, then watchdog pings.
    let pings = poll_until(Duration::from_secs(5), || {
        let m = notified.lock().expect("notify log");
        let watchdogs = m.iter().filter(|m| *m == "WATCHDOG=1").count();
        (m.iter().any(|m| m.contains("READY=1")) && watchdogs >= 2).then_some(())
    });
    assert!(
        pings.is_some(),
        "{:?}",
        notified.lock().expect("notify log")
    );

    // NTS as a client (a name lookup and a TLS connection under the filter).
    let nts_client = poll_until(Duration::from_secs(20), || {
        d.logs()
            .contains("NTS key exchange with localhost done")
            .then_some(())
    });
    assert!(nts_client.is_some(), "no NTS-KE as a client:\n{}", d.logs());

    // NTS as a server: TLS accept, cookies, an AEAD-protected reply.
    let stratum = nts_round_trip(SocketAddr::new(LOCALHOST, ke_port), &certs.ca_cert)
        .unwrap_or_else(|e| panic!("NTS with the filtered daemon: {e}\n{}", d.logs()));
    assert_eq!(stratum, 4);

    // Mode 6: variables, peers, and the MRU list (nonce, then the list).
    let rv = ntpq(port, &["-c", "rv"]);
    assert!(rv.contains("stratum=4"), "{rv}");
    let peers = ntpq(port, &["-c", "pe"]);
    // Both associations reach the same upstream: either may be the system peer,
    // whichever train's samples arrived first.
    assert!(
        peers
            .lines()
            .any(|l| l.starts_with("*127.0.0.1") || l.starts_with("*localhost")),
        "{peers}"
    );
    // The NTS source shares the upstream's address with the plain one: its replies must
    // reach it (reach register not zero), not be taken for the plain source's.
    let nts_reached = poll_until(Duration::from_secs(30), || {
        let pe = ntpq(port, &["-c", "pe"]);
        pe.lines()
            .find(|l| l.get(1..).is_some_and(|rest| rest.starts_with("localhost")))
            .and_then(|l| l.split_whitespace().nth(6).map(str::to_owned))
            .filter(|reach| reach != "0")
    });
    assert!(
        nts_reached.is_some(),
        "the NTS source is never reached:\n{}",
        ntpq(port, &["-c", "pe"])
    );
    let mru = ntpq(port, &["-c", "mrulist"]);
    assert!(mru.contains("127.0.0.1"), "{mru}");

    // Metrics and the status page.
    let m = d.http_get(metrics, "/metrics").expect("GET /metrics");
    assert_eq!(m.status, 200);
    assert!(m.text().contains("meridian_"), "{}", m.text());
    let page = d.http_get(metrics, "/").expect("GET /");
    assert_eq!(page.status, 200);

    // SIGHUP twice: the second reload adds a source, which must be polled.
    let conf_path = d.dir.path().join("ntp.conf");
    for extra in [
        "",
        "server 127.0.0.2 port PORT iburst minpoll 3 maxpoll 3\n",
    ] {
        let text = format!("{conf}{}", extra.replace("PORT", &up_port.to_string()));
        std::fs::write(&conf_path, text).expect("rewrite config");
        let before = d.logs().matches("reloaded ").count();
        d.signal(libc::SIGHUP);
        let reloaded = poll_until(Duration::from_secs(5), || {
            (d.logs().matches("reloaded ").count() > before).then_some(())
        });
        assert!(reloaded.is_some(), "no reload:\n{}", d.logs());
    }
    let new_source = poll_until(Duration::from_secs(20), || {
        let pe = ntpq(port, &["-c", "pe"]);
        pe.lines()
            .any(|l| l.contains("127.0.0.2") && !l.contains(".INIT."))
            .then_some(())
    });
    assert!(
        new_source.is_some(),
        "new source never answered:\n{}",
        d.logs()
    );

    // Statistics files and their day links.
    for name in ["loopstats", "peerstats"] {
        let text = std::fs::read_to_string(stats.join(name)).unwrap_or_default();
        assert!(!text.is_empty(), "{name} empty or missing");
    }

    // SIGTERM: a clean exit that saves the frequency.
    d.assert_running();
    let status = d.stop();
    assert!(status.success(), "exit status {status}:\n{}", d.logs());
    let saved = std::fs::read_to_string(&drift).expect("drift file written at exit");
    assert!(saved.trim().parse::<f64>().is_ok(), "{saved:?}");
    let log = d.logs();
    assert!(!log.contains("Operation not permitted"), "{log}");
    stop_reading.store(true, Ordering::Relaxed);
    reader.join().expect("notify reader");
    let notified = notified.lock().expect("notify log");
    assert!(
        notified.iter().any(|m| m.contains("STOPPING=1")),
        "{notified:?}"
    );

    // And the kernel refused nothing along the way.
    thread::sleep(Duration::from_millis(200));
    match refusals_logged_for(pid) {
        Some(lines) => assert!(lines.is_empty(), "calls refused by the filter:\n{lines:#?}"),
        None => eprintln!("NOTE: kernel log not readable; refusals not checked"),
    }
}

/// Name lookups through a real resolver under the filter. In a namespace whose
/// resolv.conf names 127.0.0.1, where this test's DNS server knows `upstream.test`
/// (127.0.0.1) and `second.test` (127.0.0.2): the filtered daemon resolves its source
/// by DNS at start (socket, connect, sendmmsg, poll, recvfrom to the resolver) and
/// syncs from it (stratum 12 from a stratum-11 upstream); on SIGHUP with a second name
/// added it resolves that one too and polls it. Nothing is refused by the kernel.
#[test]
fn dns_lookups_at_start_and_on_reload_work_under_the_filter() {
    if !require_root_and_tools(&[]) {
        return;
    }
    let ns = Netns::new("seccomp-dns");
    let _resolv = dns::NetnsResolvConf::new(&ns);
    let server = dns::DnsServer::start_in(
        &ns,
        &[
            ("upstream.test", Ipv4Addr::new(127, 0, 0, 1)),
            ("second.test", Ipv4Addr::new(127, 0, 0, 2)),
        ],
    );
    let _upstream = support::ops::local_upstream(Some(&ns)); // port 1123, stratum 11
    let conf = "server upstream.test port 1123 iburst minpoll 3 maxpoll 3\nrestrict default\n";
    let mut d = OpsDaemon::start(Some(&ns), conf, 2123, &["--seccomp".into()], &[]);
    d.wait_serving(Some(12), Duration::from_secs(60));
    let at_start = server.queries();
    assert!(at_start >= 1, "no DNS query at start");
    assert!(
        d.logs().contains("server upstream.test (127.0.0.1:1123)"),
        "{}",
        d.logs()
    );

    std::fs::write(
        d.dir.path().join("ntp.conf"),
        format!("{conf}server second.test port 1123 iburst minpoll 3 maxpoll 3\n"),
    )
    .expect("rewrite config");
    d.signal(libc::SIGHUP);
    let resolved = poll_until(Duration::from_secs(10), || {
        d.logs()
            .contains("server second.test (127.0.0.2:1123)")
            .then_some(())
    });
    assert!(
        resolved.is_some(),
        "second name not resolved:\n{}",
        d.logs()
    );
    assert!(server.queries() > at_start);
    let pid = d.pid();
    d.assert_running();
    let log = d.logs();
    assert!(!log.contains("Operation not permitted"), "{log}");
    assert!(d.stop().success());
    match refusals_logged_for(pid) {
        Some(lines) => assert!(lines.is_empty(), "calls refused by the filter:\n{lines:#?}"),
        None => eprintln!("NOTE: kernel log not readable; refusals not checked"),
    }
}

#[test]
fn the_test_dns_server_answers_a_nodata_and_nxdomain() {
    let names = [("ntp.test".to_string(), Ipv4Addr::new(127, 0, 0, 2))].into();
    let query = |name: &str, qtype: u16| {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, (qtype >> 8) as u8, qtype as u8, 0, 1]);
        q
    };
    let a = dns::answer(&query("NTP.test", dns::TYPE_A), &names).expect("A");
    assert_eq!(&a[..4], &[0x12, 0x34, 0x81, 0x80]);
    assert_eq!(&a[6..8], &[0, 1]);
    assert_eq!(&a[a.len() - 4..], &[127, 0, 0, 2]);
    let aaaa = dns::answer(&query("ntp.test", dns::TYPE_AAAA), &names).expect("AAAA");
    assert_eq!((aaaa[3] & 0x0f, &aaaa[6..8]), (0, &[0u8, 0][..]));
    let nx = dns::answer(&query("other.test", dns::TYPE_A), &names).expect("NX");
    assert_eq!(nx[3] & 0x0f, 3);
}
