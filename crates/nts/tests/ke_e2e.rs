//! End to end in one process: NTS-KE over real TLS on 127.0.0.1 (high,
//! kernel-chosen ports), then NTS-protected NTP over UDP loopback, plus the
//! KE server's abuse bounds (busy slots, slow loris) and certificate
//! reload.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use meridian_nts::{
    generate_test_ca_and_server_cert, key_exchange, CertPaths, KeError, KeyRing, NtpServerInfo,
    NtsKeConfig, NtsKeServer, NtsOutcome, NtsServer, SharedKeyRing, TrustAnchors, UID_LEN,
};
use meridian_proto::{
    build_server_reply, new_client_request, Exchange, LeapIndicator, NtpHeader, NtpShort,
    NtpTimestamp, ReferenceId, ServerState,
};

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("meridian-nts-{}-{n}-{tag}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Ke {
    server: NtsKeServer,
    addr: SocketAddr,
    ring: SharedKeyRing,
    certs: CertPaths,
    _dir: TempDir,
}

impl Drop for Ke {
    fn drop(&mut self) {
        self.server.shutdown();
    }
}

fn start_ke(tag: &str, tweak: impl FnOnce(&mut NtsKeConfig)) -> Ke {
    let dir = TempDir::new(tag);
    let certs = generate_test_ca_and_server_cert(&dir.0, &["localhost", "127.0.0.1"]).unwrap();
    let mut cfg = NtsKeConfig::new(&certs.server_cert, &certs.server_key);
    tweak(&mut cfg);
    let ring = SharedKeyRing::new(KeyRing::generate(1_700_000_000));
    let server = NtsKeServer::new(cfg, ring.clone()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    server.spawn(listener).unwrap();
    Ke {
        server,
        addr,
        ring,
        certs,
        _dir: dir,
    }
}

fn ca(ke: &Ke) -> TrustAnchors {
    TrustAnchors::CaFile(ke.certs.ca_cert.clone())
}

const T: Duration = Duration::from_secs(5);

fn server_state() -> ServerState {
    ServerState {
        leap: LeapIndicator::NoWarning,
        stratum: 3,
        precision: -20,
        root_delay: NtpShort::from_seconds_f64(0.001),
        root_dispersion: NtpShort::from_seconds_f64(0.001),
        reference_id: ReferenceId([10, 0, 0, 1]),
        reference_ts: NtpTimestamp::from_unix(1_700_000_000, 0),
        min_poll: 3,
    }
}

fn now() -> NtpTimestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    NtpTimestamp::from_unix(d.as_secs() as i64, d.subsec_nanos())
}

/// A UDP NTS server on 127.0.0.1 answering `count` datagrams, then exiting.
fn udp_server(nts: NtsServer, count: usize) -> (SocketAddr, thread::JoinHandle<Vec<&'static str>>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(T)).unwrap();
    let addr = sock.local_addr().unwrap();
    let h = thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 1500];
        let mut out = [0u8; 1500];
        for _ in 0..count {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                break;
            };
            let t2 = now();
            let req = NtpHeader::decode(&buf[..n]).unwrap();
            let reply = build_server_reply(&req, &server_state(), t2, now());
            match nts.process_request(&buf[..n], &reply, &mut out) {
                NtsOutcome::Reply(len) => {
                    seen.push("reply");
                    sock.send_to(&out[..len], from).unwrap();
                }
                NtsOutcome::Nak(len) => {
                    seen.push("nak");
                    sock.send_to(&out[..len], from).unwrap();
                }
                NtsOutcome::Drop => seen.push("drop"),
                NtsOutcome::NotNts => seen.push("plain"),
            }
        }
        seen
    });
    (addr, h)
}

#[test]
fn key_exchange_then_authenticated_ntp_over_udp() {
    let ke = start_ke("e2e", |_| {});
    let mut state = key_exchange("localhost", ke.addr, &ca(&ke), T).unwrap();
    assert_eq!(state.cookies.len(), 8);
    assert_eq!((state.server.as_str(), state.port), ("localhost", 123));
    // The server counts the exchange once its thread has finished.
    let deadline = Instant::now() + T;
    while ke.server.stats().served == 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(ke.server.stats().served, 1);

    let (udp, handle) = udp_server(NtsServer::new(ke.ring.clone()), 3);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(T)).unwrap();
    for i in 0..3u8 {
        let uid = [i + 1; UID_LEN];
        let req = new_client_request(4, 4, 0xDEAD_0000 + u64::from(i));
        let mut buf = [0u8; 1500];
        let len = state.build_request(&req.header, &uid, &mut buf).unwrap();
        let mut ex = Exchange::new(req, now());
        sock.send_to(&buf[..len], udp).unwrap();
        let (n, _) = sock.recv_from(&mut buf).unwrap();
        assert!(n <= len, "reply larger than request");
        let header = state.process_response(&buf[..n], &uid).unwrap();
        let sample = ex.on_reply(&header, now(), -20).unwrap();
        assert!(sample.offset.abs() < 0.1, "offset {}", sample.offset);
        assert_eq!(sample.stratum, 3);
        assert_eq!(state.cookies.len(), 8);
    }
    assert_eq!(handle.join().unwrap(), ["reply"; 3]);
}

#[test]
fn ke_server_announces_ntp_port_and_name() {
    let ke = start_ke("port", |c| {
        c.ntp = NtpServerInfo {
            server: Some("127.0.0.1".into()),
            port: Some(12_345),
        }
    });
    let state = key_exchange("127.0.0.1", ke.addr, &ca(&ke), T).unwrap();
    assert_eq!((state.server.as_str(), state.port), ("127.0.0.1", 12_345));
}

#[test]
fn certificate_checks() {
    let ke = start_ke("certs", |_| {});
    // A CA that did not sign the server certificate.
    let other = TempDir::new("other-ca");
    let other_ca = generate_test_ca_and_server_cert(&other.0, &["localhost"]).unwrap();
    let err = key_exchange(
        "localhost",
        ke.addr,
        &TrustAnchors::CaFile(other_ca.ca_cert),
        T,
    )
    .unwrap_err();
    assert!(matches!(err, KeError::Io(_) | KeError::Tls(_)), "{err:?}");
    // A name the certificate does not cover.
    assert!(key_exchange("ntp.example.org", ke.addr, &ca(&ke), T).is_err());
    // `noval` accepts it anyway (testing only).
    assert!(key_exchange("ntp.example.org", ke.addr, &TrustAnchors::NoVerification, T).is_ok());
    // A missing CA file is a configuration error, before any connection.
    let err = key_exchange(
        "localhost",
        ke.addr,
        &TrustAnchors::CaFile("/nonexistent/ca.pem".into()),
        T,
    )
    .unwrap_err();
    assert!(matches!(err, KeError::Config(_)), "{err:?}");
}

#[test]
fn reload_switches_certificates() {
    let ke = start_ke("reload", |_| {});
    let old_ca = TempDir::new("old-ca");
    let old = old_ca.0.join("ca.pem");
    std::fs::copy(&ke.certs.ca_cert, &old).unwrap();
    // New CA + certificate written over the same paths, then reload.
    let dir = ke.certs.server_cert.parent().unwrap().to_path_buf();
    generate_test_ca_and_server_cert(&dir, &["localhost"]).unwrap();
    assert!(
        key_exchange("localhost", ke.addr, &TrustAnchors::CaFile(old.clone()), T).is_ok(),
        "before reload"
    );
    ke.server.reload().unwrap();
    assert!(
        key_exchange("localhost", ke.addr, &TrustAnchors::CaFile(old), T).is_err(),
        "old CA after reload"
    );
    assert!(
        key_exchange("localhost", ke.addr, &ca(&ke), T).is_ok(),
        "new CA after reload"
    );
    // A broken file keeps the working configuration.
    std::fs::write(&ke.certs.server_key, "not a key").unwrap();
    assert!(ke.server.reload().is_err());
    assert!(key_exchange("localhost", ke.addr, &ca(&ke), T).is_ok());
}

/// Reads until EOF or error; returns how long that took.
fn time_to_close(mut s: TcpStream) -> Duration {
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut b = [0u8; 64];
    while let Ok(n) = s.read(&mut b) {
        if n == 0 {
            break;
        }
    }
    start.elapsed()
}

#[test]
fn busy_slots_and_slow_loris_are_bounded() {
    let ke = start_ke("loris", |c| {
        c.max_connections = 2;
        c.timeout = Duration::from_millis(800);
    });
    // Two silent clients take both slots …
    let a = TcpStream::connect(ke.addr).unwrap();
    let b = TcpStream::connect(ke.addr).unwrap();
    let deadline = Instant::now() + T;
    while ke.server.active() < 2 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(ke.server.active(), 2);
    // … so a third is closed at once …
    let c = TcpStream::connect(ke.addr).unwrap();
    assert!(time_to_close(c) < Duration::from_millis(500));
    assert_eq!(ke.server.stats().rejected_busy, 1);
    // … and the silent ones are dropped at the deadline, trickling or not.
    let trickle = thread::spawn(move || {
        let mut a = a;
        for _ in 0..20 {
            if std::io::Write::write_all(&mut a, &[0x16]).is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(100));
        }
        a
    });
    let waited = time_to_close(b);
    assert!(
        waited < Duration::from_secs(2),
        "slow client held a slot for {waited:?}"
    );
    let _a = trickle.join().unwrap();
    let deadline = Instant::now() + T;
    while ke.server.active() > 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(ke.server.active(), 0, "slots freed");
    assert!(
        key_exchange("localhost", ke.addr, &ca(&ke), T).is_ok(),
        "serving again"
    );
}

#[test]
fn client_times_out_on_a_silent_server() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let dir = TempDir::new("silent");
    let certs = generate_test_ca_and_server_cert(&dir.0, &["localhost"]).unwrap();
    let start = Instant::now();
    let err = key_exchange(
        "localhost",
        addr,
        &TrustAnchors::CaFile(certs.ca_cert),
        Duration::from_millis(500),
    )
    .unwrap_err();
    assert!(matches!(err, KeError::Timeout), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(2));
    drop(listener);
}
