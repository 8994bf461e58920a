//! Network Time Security interoperability with chrony 4.3.
//!
//! * a. our NTS-KE client (`meridian_nts::key_exchange`) against
//!   `chronyd -x` running an NTS server (`ntsserverkey`/`ntsservercert`,
//!   `ntsport`, NTP on a high `port`): chrony must tell us its NTP port,
//!   and NTS-protected NTP exchanges with our client state must verify,
//!   refill the cookie jar, and give a sane sample; a replayed request is
//!   answered by chrony (servers are stateless) and rejected by our client.
//! * b. `chronyd -x -Q` as NTS client (`server 127.0.0.1 port P nts ntsport
//!   K` + `ntstrustedcerts CA`) against an in-test NTS server built from
//!   our `NtsKeServer` and a UDP loop around `NtsServer::process_request`
//!   and `meridian_proto::build_server_reply`: chrony must accept our
//!   certificate, cookies and authenticated replies and measure ~0 offset,
//!   and must have sent only NTS requests.
//!
//! * c. `chronyd -x -Q` as NTS client of the real `meridian ntpd` with `nts enable`.
//! * d. the real `meridian ntpd` syncing over NTS from chronyd's NTS server.
//!
//! Everything runs on 127.0.0.1 with high ports; chronyd always with `-x`
//! and without CAP_SYS_TIME (see `support::sandboxed`). The self-signed CA
//! comes from `meridian_nts::generate_test_ca_and_server_cert`. Needs root
//! and chronyd; skips otherwise, fails when `CI` is set.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use meridian_nts::{
    generate_test_ca_and_server_cert, key_exchange, KeyRing, NtpServerInfo, NtsKeConfig,
    NtsKeServer, NtsOutcome, NtsServer, SharedKeyRing, TrustAnchors, UID_LEN,
};
use meridian_proto::{
    build_server_reply, new_client_request, Exchange, LeapIndicator, NtpHeader, NtpShort,
    NtpTimestamp, ReferenceId, ServerState,
};
use support::*;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn now() -> NtpTimestamp {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    NtpTimestamp::from_unix(d.as_secs() as i64, d.subsec_nanos())
}

/// A currently free TCP+UDP port on 127.0.0.1 (for daemons that need a
/// fixed port in their configuration).
fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind((LOCALHOST, 0)).unwrap();
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind((LOCALHOST, port)).is_ok() {
            return port;
        }
    }
}

fn random_uid() -> [u8; UID_LEN] {
    let mut u = [0u8; UID_LEN];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut u);
    u
}

/// `chronyd -x` serving NTS (stratum 3) on free ports, with a fresh test CA.
struct ChronyNts {
    certs: meridian_nts::CertPaths,
    ntp_port: u16,
    ke_port: u16,
    chrony: ChronyServer,
    // Kept for their lifetime: the certificates and chrony's cookie dump live there.
    _dirs: (TempDir, TempDir),
}

impl ChronyNts {
    fn start(tag: &str) -> ChronyNts {
        let certs_dir = TempDir::new(&format!("nts-{tag}-certs"));
        let certs = generate_test_ca_and_server_cert(certs_dir.path(), &["localhost", "127.0.0.1"])
            .expect("certificates");
        let ntp_port = free_port();
        let ke_port = free_port();
        let dump = TempDir::new(&format!("nts-{tag}-dump"));
        let chrony = chrony_server(
            None,
            &ChronyServerOpts {
                port: ntp_port,
                stratum: 3,
                extra: vec![
                    format!("ntsserverkey {}", certs.server_key.display()),
                    format!("ntsservercert {}", certs.server_cert.display()),
                    format!("ntsport {ke_port}"),
                    format!("ntsdumpdir {}", dump.path().display()),
                ],
                ..ChronyServerOpts::default()
            },
        );
        ChronyNts {
            certs,
            ntp_port,
            ke_port,
            chrony,
            _dirs: (certs_dir, dump),
        }
    }
}

// ---------------------------------------------------------------------------
// a. our client against chronyd's NTS server
// ---------------------------------------------------------------------------

#[test]
fn a_our_nts_client_against_chrony_server() {
    if !require_root_and_tools(&["chronyd"]) {
        return;
    }
    let nts = ChronyNts::start("a");
    let (certs, ntp_port, ke_port, chrony) = (&nts.certs, nts.ntp_port, nts.ke_port, &nts.chrony);
    let ke_addr = SocketAddr::new(LOCALHOST, ke_port);
    // chronyd answers NTP before its NTS-KE helper may be listening: retry
    // for a few seconds.
    let trust = TrustAnchors::CaFile(certs.ca_cert.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut state = loop {
        match key_exchange("127.0.0.1", ke_addr, &trust, Duration::from_secs(3)) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                eprintln!("NTS-KE not ready yet: {e}");
                thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("NTS-KE with chronyd failed: {e}\n{}", chrony.daemon.logs()),
        }
    };
    assert_eq!(state.cookies.len(), 8, "chrony issues 8 cookies");
    assert_eq!(state.port, ntp_port, "chrony announces its NTP port");

    let sock = UdpSocket::bind((LOCALHOST, 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let server = SocketAddr::new(LOCALHOST, state.port);
    let mut last = None;
    for i in 0..3 {
        let uid = random_uid();
        let req = new_client_request(4, 6, rand::random::<u64>() | 1);
        let mut request = [0u8; 1500];
        let len = state
            .build_request(&req.header, &uid, &mut request)
            .unwrap();
        let mut ex = Exchange::new(req, now());
        sock.send_to(&request[..len], server).unwrap();
        let mut reply = [0u8; 1500];
        let (n, _) = sock.recv_from(&mut reply).unwrap_or_else(|e| {
            panic!("no NTS reply from chronyd ({e})\n{}", chrony.daemon.logs())
        });
        assert!(
            n <= len,
            "chrony's reply ({n}) larger than our request ({len})"
        );
        let header = state
            .process_response(&reply[..n], &uid)
            .unwrap_or_else(|e| panic!("reply {i} rejected: {e}"));
        let sample = ex.on_reply(&header, now(), -20).expect("valid NTP reply");
        assert_eq!(sample.stratum, 3);
        assert!(
            sample.offset.abs() < 0.01,
            "offset {} (same clock)",
            sample.offset
        );
        assert_eq!(state.cookies.len(), 8, "jar refilled after exchange {i}");
        last = Some((request[..len].to_vec(), reply[..n].to_vec(), uid));
    }

    // Replays: chronyd is stateless and answers a replayed request again,
    // but our client has no outstanding request with that UID any more and
    // rejects the answer, as it rejects the replayed original reply; the
    // cookie jar is untouched by either.
    let (request, reply, uid) = last.unwrap();
    sock.send_to(&request, server).unwrap();
    let mut again = [0u8; 1500];
    let (n, _) = sock
        .recv_from(&mut again)
        .expect("chronyd answers a replayed request");
    assert_eq!(NtpHeader::decode(&again[..n]).unwrap().stratum, 3);
    assert_eq!(
        state.process_response(&again[..n], &uid),
        Err(meridian_nts::NtsError::UidMismatch)
    );
    assert_eq!(
        state.process_response(&reply, &uid),
        Err(meridian_nts::NtsError::UidMismatch)
    );
    assert_eq!(state.cookies.len(), 8);

    // A forged cookie makes chronyd answer with an NTS NAK, which our
    // client recognises (its UID matches) and turns into "re-key".
    let uid = random_uid();
    let req = new_client_request(4, 6, rand::random::<u64>() | 1);
    state.cookies[0][10] ^= 0xFF;
    let mut request = [0u8; 1500];
    let len = state
        .build_request(&req.header, &uid, &mut request)
        .unwrap();
    sock.send_to(&request[..len], server).unwrap();
    let mut nak = [0u8; 1500];
    let (n, _) = sock
        .recv_from(&mut nak)
        .expect("chronyd answers a bad cookie with a NAK");
    assert_eq!(
        state.process_response(&nak[..n], &uid),
        Err(meridian_nts::NtsError::Nak)
    );
    assert!(state.needs_key_exchange());
}

// ---------------------------------------------------------------------------
// b. chronyd's NTS client against our NTS-KE + NTS-NTP server
// ---------------------------------------------------------------------------

fn served_state() -> ServerState {
    ServerState {
        leap: LeapIndicator::NoWarning,
        stratum: 2,
        precision: -20,
        root_delay: NtpShort::from_seconds_f64(0.0005),
        root_dispersion: NtpShort::from_seconds_f64(0.0005),
        reference_id: ReferenceId(*b"GPS\0"),
        reference_ts: now(),
        min_poll: 0,
    }
}

/// Counts of what the UDP loop did.
#[derive(Default, Debug)]
struct Outcomes {
    replies: usize,
    naks: usize,
    drops: usize,
    plain: usize,
}

/// A minimal NTS NTP server: what the daemon's respond path will do.
fn spawn_udp_server(
    sock: UdpSocket,
    nts: NtsServer,
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Outcomes>>,
) -> thread::JoinHandle<()> {
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut out = [0u8; 2048];
        while !stop.load(Ordering::Acquire) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let t2 = now();
            let Ok(request) = NtpHeader::decode(&buf[..n]) else {
                continue;
            };
            let reply = build_server_reply(&request, &served_state(), t2, now());
            let outcome = nts.process_request(&buf[..n], &reply, &mut out);
            let mut o = outcomes.lock().unwrap();
            match outcome {
                NtsOutcome::Reply(len) => {
                    o.replies += 1;
                    let _ = sock.send_to(&out[..len], from);
                }
                NtsOutcome::Nak(len) => {
                    o.naks += 1;
                    let _ = sock.send_to(&out[..len], from);
                }
                NtsOutcome::Drop => o.drops += 1,
                // This server is NTS-only: plain requests go unanswered.
                NtsOutcome::NotNts => o.plain += 1,
            }
        }
    })
}

#[test]
fn b_chrony_nts_client_against_our_server() {
    if !require_root_and_tools(&["chronyd"]) {
        return;
    }
    let dir = TempDir::new("nts-b");
    let certs =
        generate_test_ca_and_server_cert(dir.path(), &["localhost", "127.0.0.1"]).expect("certs");
    let ring = SharedKeyRing::new(KeyRing::generate(now().to_unix(0).0 as u64));

    let udp = UdpSocket::bind((LOCALHOST, 0)).unwrap();
    let ntp_port = udp.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let udp_thread = spawn_udp_server(
        udp,
        NtsServer::new(ring.clone()),
        stop.clone(),
        outcomes.clone(),
    );

    let mut cfg = NtsKeConfig::new(&certs.server_cert, &certs.server_key);
    cfg.ntp = NtpServerInfo {
        server: None,
        port: Some(ntp_port),
    };
    let ke = NtsKeServer::new(cfg, ring).expect("NTS-KE server");
    let listener = TcpListener::bind((LOCALHOST, 0)).unwrap();
    let ke_port = listener.local_addr().unwrap().port();
    let accept = ke.spawn(listener).unwrap();

    let qdir = TempDir::new("nts-b-chronyq");
    let d = qdir.path().display();
    let mut cmd = sandboxed(None, "chronyd");
    cmd.args(["-x", "-u", "root", "-Q", "-t", "20"])
        .arg(format!(
            "server 127.0.0.1 port {ntp_port} nts ntsport {ke_port} iburst minpoll 0 maxpoll 0"
        ))
        .arg(format!("ntstrustedcerts {}", certs.ca_cert.display()))
        .arg(format!("pidfile {d}/chronyd.pid"))
        .arg(format!("logdir {d}"))
        .arg("log measurements");
    let out = run_bounded(&mut cmd, Duration::from_secs(30));
    stop.store(true, Ordering::Release);
    udp_thread.join().unwrap();
    ke.shutdown();
    accept.join().unwrap();

    let output = describe_output(&out);
    let measurements = parse_chrony_measurements(
        &std::fs::read_to_string(qdir.path().join("measurements.log")).unwrap_or_default(),
    );
    let o = outcomes.lock().unwrap();
    let stats = ke.stats();
    let ctx = format!(
        "{output}\nUDP outcomes: {o:?}\nKE stats: {stats:?}\nmeasurements: {measurements:?}"
    );
    assert!(out.status.success(), "chronyd -Q failed:\n{ctx}");
    assert!(stats.served >= 1, "chrony never completed NTS-KE:\n{ctx}");
    assert!(o.replies >= 1, "no authenticated exchange:\n{ctx}");
    assert_eq!(
        (o.plain, o.naks, o.drops),
        (0, 0, 0),
        "unexpected requests:\n{ctx}"
    );
    let wrong_by = output
        .lines()
        .find_map(|l| {
            l.split("System clock wrong by ")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        })
        .unwrap_or_else(|| panic!("no `System clock wrong by` line:\n{ctx}"));
    assert!(
        wrong_by.abs() < 0.01,
        "chrony measured {wrong_by} s against the same clock:\n{ctx}"
    );
    assert!(!measurements.is_empty(), "no measurements:\n{ctx}");
    for m in &measurements {
        assert_eq!(m.stratum, 2, "{ctx}");
        assert_eq!(
            m.tests, "111 111 1111",
            "chrony's packet tests failed:\n{ctx}"
        );
    }
}

// ---------------------------------------------------------------------------
// c. chronyd as NTS client of the real Meridian daemon (`nts enable`)
// d. the real Meridian daemon as NTS client of chronyd's NTS server
// ---------------------------------------------------------------------------

#[test]
fn c_chrony_nts_client_against_the_meridian_daemon() {
    if !require_root_and_tools(&["chronyd"]) {
        return;
    }
    let dir = TempDir::new("nts-c");
    let certs =
        generate_test_ca_and_server_cert(dir.path(), &["localhost", "127.0.0.1"]).expect("certs");
    let ntp_port = free_port();
    let ke_port = free_port();
    let conf = format!(
        "server 127.127.1.0\nfudge 127.127.1.0 stratum 2\nrestrict default\ninterface listen 127.0.0.1\n\
         nts enable\nnts cert {}\nnts key {}\nnts port {ke_port}\nnts cookie {}\n",
        certs.server_cert.display(),
        certs.server_key.display(),
        dir.path().join("cookie-keys").display()
    );
    let server = meridian_server(None, &conf, ntp_port, LOCALHOST, 3);

    let qdir = TempDir::new("nts-c-chronyq");
    let d = qdir.path().display();
    let mut cmd = sandboxed(None, "chronyd");
    cmd.args(["-x", "-u", "root", "-Q", "-t", "20"])
        .arg(format!(
            "server 127.0.0.1 nts ntsport {ke_port} iburst minpoll 0 maxpoll 0"
        ))
        .arg(format!("ntstrustedcerts {}", certs.ca_cert.display()))
        .arg(format!("pidfile {d}/chronyd.pid"))
        .arg(format!("logdir {d}"))
        .arg("log measurements");
    let out = run_bounded(&mut cmd, Duration::from_secs(30));
    let measurements = parse_chrony_measurements(
        &std::fs::read_to_string(qdir.path().join("measurements.log")).unwrap_or_default(),
    );
    let ctx = format!(
        "{}\nmeasurements: {measurements:?}\ndaemon:\n{}",
        describe_output(&out),
        server.daemon.logs()
    );
    assert!(out.status.success(), "chronyd -Q failed:\n{ctx}");
    assert!(!measurements.is_empty(), "no measurements:\n{ctx}");
    for m in &measurements {
        assert_eq!(m.stratum, 3, "{ctx}");
        assert_eq!(
            m.tests, "111 111 1111",
            "chrony's packet tests failed:\n{ctx}"
        );
    }
    assert!(
        dir.path().join("cookie-keys").exists(),
        "the cookie keys were saved for restarts:\n{ctx}"
    );
}

#[test]
fn d_meridian_daemon_syncs_over_nts_from_chrony() {
    if !require_root_and_tools(&["chronyd"]) {
        return;
    }
    let nts = ChronyNts::start("d");
    let (certs, ke_port, chrony) = (&nts.certs, nts.ke_port, &nts.chrony);
    let our_port = free_port();
    let conf = format!(
        "server 127.0.0.1 nts port {ke_port} ca {} iburst minpoll 4\nrestrict default\n\
         interface listen 127.0.0.1\n",
        certs.ca_cert.display()
    );
    // Synchronised over NTS: we serve stratum 4 (chrony's 3 + 1).
    let ours = meridian_server(None, &conf, our_port, LOCALHOST, 4);
    let probe = ntp_probe(ours.addr, Duration::from_secs(2)).expect("our daemon answers");
    assert_eq!(probe.reply.stratum, 4);
    assert!(
        probe.offset().abs() < 0.005,
        "offset {} against the same clock\n{}",
        probe.offset(),
        chrony.daemon.logs()
    );
    let logs = ours.daemon.logs();
    assert!(
        logs.contains("NTS key exchange with 127.0.0.1 done"),
        "{logs}"
    );
}
