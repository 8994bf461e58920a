//! Installing and running Meridian as a service:
//!
//! * `dist/install.sh --destdir` stages the expected tree (binary, classic names as
//!   links that work, unit pointing at the installed paths, config only if absent),
//!   and running it again changes nothing;
//! * the shipped `dist/ntp.conf` passes `ntpd --check`, the unit passes
//!   `systemd-analyze verify` (where systemd is installed), and the cargo-deb metadata
//!   names files that exist;
//! * the daemon speaks systemd's notify protocol: `READY=1` once it serves,
//!   `WATCHDOG=1` at half of `WATCHDOG_USEC`, `STOPPING=1` on SIGTERM, to a path or an
//!   abstract-namespace `NOTIFY_SOCKET`.
//!
//! The notify test runs the daemon (root for `setpriv`, `--observe`, loopback, high
//! ports); without root it prints SKIP (CI fails instead).

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::ops::*;
use support::*;

/// Every path under `root` (relative), with `/` after directories and ` -> target`
/// after links.
fn tree(root: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for e in fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let meta = fs::symlink_metadata(&p).unwrap();
            if meta.file_type().is_symlink() {
                out.insert(format!("{rel} -> {}", fs::read_link(&p).unwrap().display()));
            } else if meta.is_dir() {
                out.insert(format!("{rel}/"));
                walk(root, &p, out);
            } else {
                out.insert(rel);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn install(args: &[&str]) -> (i32, String) {
    let mut cmd = Command::new("bash");
    cmd.arg(repo_root().join("dist/install.sh")).args(args);
    let out = run_bounded(&mut cmd, Duration::from_secs(60));
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn install_script_stages_a_working_tree_idempotently() {
    let dir = TempDir::new("install");
    let dest = dir.path().join("root");
    let bin = meridian_bin();
    let args = [
        "--destdir",
        dest.to_str().unwrap(),
        "--prefix",
        "/usr",
        "--bin",
        bin.to_str().unwrap(),
    ];
    let (code, log) = install(&args);
    assert_eq!(code, 0, "{log}");
    let expected: BTreeSet<String> = [
        "etc/",
        "etc/ntp.conf",
        "usr/",
        "usr/bin/",
        "usr/bin/ntpq -> ../sbin/meridian",
        "usr/bin/ntpstat -> ../sbin/meridian",
        "usr/lib/",
        "usr/lib/systemd/",
        "usr/lib/systemd/system/",
        "usr/lib/systemd/system/meridian.service",
        "usr/sbin/",
        "usr/sbin/meridian",
        "usr/sbin/ntpd -> meridian",
        "usr/sbin/ntpdate -> meridian",
        "usr/share/",
        "usr/share/doc/",
        "usr/share/doc/meridian/",
        "usr/share/doc/meridian/README.md",
        "var/",
        "var/lib/",
        "var/lib/meridian/",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(tree(&dest), expected, "{log}");
    assert_eq!(mode(&dest.join("usr/sbin/meridian")), 0o755);
    assert_eq!(mode(&dest.join("etc/ntp.conf")), 0o644);
    assert_eq!(
        mode(&dest.join("usr/lib/systemd/system/meridian.service")),
        0o644
    );
    assert_eq!(
        fs::read(dest.join("usr/sbin/meridian")).unwrap(),
        fs::read(&bin).unwrap()
    );
    let unit = fs::read_to_string(dest.join("usr/lib/systemd/system/meridian.service")).unwrap();
    assert!(
        unit.contains("\nExecStart=/usr/sbin/meridian ntpd -n --seccomp -c /etc/ntp.conf\n"),
        "{unit}"
    );
    assert!(unit.contains("\nType=notify\n") && unit.contains("\nWatchdogSec="));

    // The links work: each classic name runs as that program.
    let ntpd = dest.join("usr/sbin/ntpd");
    let out = run_bounded(
        Command::new(&ntpd)
            .args(["--check", "-c"])
            .arg(dest.join("etc/ntp.conf")),
        Duration::from_secs(10),
    );
    assert!(out.status.success(), "{}", describe_output(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("configuration OK"));
    let out = run_bounded(
        Command::new(dest.join("usr/bin/ntpq")).arg("--help-me"),
        Duration::from_secs(10),
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("usage: ntpq"),
        "{}",
        describe_output(&out)
    );

    // Again: same tree, and an administrator's ntp.conf is kept.
    fs::write(dest.join("etc/ntp.conf"), "server 127.127.1.0\n").unwrap();
    let (code, log) = install(&args);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("kept the existing /etc/ntp.conf"), "{log}");
    assert_eq!(tree(&dest), expected);
    assert_eq!(
        fs::read_to_string(dest.join("etc/ntp.conf")).unwrap(),
        "server 127.127.1.0\n"
    );

    // Another prefix: the unit follows it; a foreign `ntpd` is left alone.
    let other = dir.path().join("other");
    fs::create_dir_all(other.join("opt/mer/sbin")).unwrap();
    fs::write(other.join("opt/mer/sbin/ntpd"), "#!/bin/sh\n").unwrap();
    let (code, log) = install(&[
        "--destdir",
        other.to_str().unwrap(),
        "--prefix",
        "/opt/mer",
        "--bin",
        bin.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("kept /opt/mer/sbin/ntpd"), "{log}");
    assert!(!is_symlink_to(&other.join("opt/mer/sbin/ntpd"), "meridian"));
    assert!(is_symlink_to(
        &other.join("opt/mer/sbin/ntpdate"),
        "meridian"
    ));
    let unit = fs::read_to_string(other.join("etc/systemd/system/meridian.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/opt/mer/sbin/meridian ntpd -n --seccomp -c /etc/ntp.conf"),
        "{unit}"
    );
    assert!(
        unit.contains("file:/opt/mer/share/doc/meridian/README.md"),
        "{unit}"
    );

    let (code, log) = install(&[
        "--bin",
        "/nonexistent/meridian",
        "--destdir",
        other.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("no binary at /nonexistent/meridian"), "{log}");
}

#[test]
fn unit_verifies_where_systemd_is_installed() {
    let Some(analyze) = find_tool("systemd-analyze") else {
        eprintln!("SKIP: systemd-analyze not installed");
        return;
    };
    // Point the unit at this build, as install.sh would for its prefix.
    let dir = TempDir::new("unit");
    let unit = fs::read_to_string(repo_root().join("dist/meridian.service"))
        .unwrap()
        .replace("/usr/sbin/meridian", &meridian_bin().display().to_string());
    let path = dir.write("meridian.service", &unit);
    let out = run_bounded(
        Command::new(analyze).arg("verify").arg(&path),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", describe_output(&out));
    assert!(out.stderr.is_empty(), "{}", describe_output(&out));
}

#[test]
fn shipped_config_and_package_metadata_are_sound() {
    let conf = repo_root().join("dist/ntp.conf");
    let out = run_bounded(
        Command::new(meridian_bin())
            .args(["ntpd", "--check", "-c"])
            .arg(&conf),
        Duration::from_secs(10),
    );
    assert!(out.status.success(), "{}", describe_output(&out));
    let text = fs::read_to_string(&conf).unwrap();
    for line in [
        "restrict default kod limited nomodify notrap nopeer noquery",
        "restrict 127.0.0.1",
        "restrict ::1",
        "driftfile /var/lib/meridian/drift",
        "leapfile /usr/share/zoneinfo/leap-seconds.list",
    ] {
        assert!(text.lines().any(|l| l == line), "{line}");
    }
    assert!(text.lines().any(|l| l.starts_with("pool ")));

    // [package.metadata.deb]: every asset but the built binary exists, links are links.
    let manifest = fs::read_to_string(repo_root().join("Cargo.toml")).unwrap();
    let deb = manifest
        .split("[package.metadata.deb]")
        .nth(1)
        .expect("[package.metadata.deb] in Cargo.toml");
    let assets: Vec<&str> = deb
        .lines()
        .filter_map(|l| l.trim().strip_prefix("[\""))
        .filter_map(|l| l.split('"').next())
        .collect();
    assert!(assets.contains(&"target/release/meridian"), "{assets:?}");
    assert!(assets.contains(&"dist/ntp.conf"));
    for a in assets.iter().filter(|a| !a.starts_with("target/")) {
        let p = repo_root().join(a);
        assert!(fs::symlink_metadata(&p).is_ok(), "asset {a} missing");
    }
    let links = repo_root().join("dist/links");
    assert!(is_symlink_to(&links.join("sbin/ntpd"), "meridian"));
    assert!(is_symlink_to(&links.join("sbin/ntpdate"), "meridian"));
    assert!(is_symlink_to(&links.join("bin/ntpq"), "../sbin/meridian"));
    assert!(is_symlink_to(
        &links.join("bin/ntpstat"),
        "../sbin/meridian"
    ));
    for script in ["dist/debian/postinst", "dist/debian/postrm"] {
        let s = fs::read_to_string(repo_root().join(script)).unwrap();
        assert!(s.contains("#DEBHELPER#"), "{script}");
        assert_eq!(
            mode(&repo_root().join(script)) & 0o111,
            0o111,
            "{script} executable"
        );
    }
    assert!(deb.contains("unit-scripts = \"dist/\""));
    assert!(repo_root().join("dist/meridian.service").is_file());
}

/// Collect datagrams on `sock` for up to `limit` or until `done` says so.
fn collect(sock: &UnixDatagram, limit: Duration, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !done(&got) {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break;
        };
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match sock.recv(&mut buf) {
            Ok(n) => got.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => break,
        }
    }
    got
}

fn notify_session(sock: &UnixDatagram, notify_socket: String) {
    let env = [
        ("NOTIFY_SOCKET", notify_socket),
        // Half of it, 250 ms, is the ping period.
        ("WATCHDOG_USEC", "500000".to_string()),
    ];
    let mut d = OpsDaemon::start(None, LOCAL10, free_udp_port(), &[], &env);
    let got = collect(sock, Duration::from_secs(20), |g| {
        g.iter().any(|m| m.lines().any(|l| l == "READY=1"))
    });
    assert!(
        got.iter().any(|m| m.lines().any(|l| l == "READY=1")),
        "no READY=1 (got {got:?}):\n{}",
        d.logs()
    );
    // READY=1 means serving: it answers at once.
    let p = ntp_probe(d.addr(), Duration::from_secs(2)).expect("serving when ready");
    assert!(
        p.reply.stratum == 11 || p.reply.stratum == 16,
        "{}",
        p.reply.stratum
    );

    // Watchdog pings keep coming from the main loop.
    let started = Instant::now();
    let pings = collect(sock, Duration::from_secs(5), |g| {
        g.iter().filter(|m| m.as_str() == "WATCHDOG=1").count() >= 4
    });
    let n = pings.iter().filter(|m| m.as_str() == "WATCHDOG=1").count();
    assert!(n >= 4, "{n} pings in {:?}: {pings:?}", started.elapsed());
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "pings too fast"
    );

    assert_eq!(d.stop().code(), Some(0));
    let rest = collect(sock, Duration::from_secs(2), |g| {
        g.iter().any(|m| m == "STOPPING=1")
    });
    assert!(rest.iter().any(|m| m == "STOPPING=1"), "{rest:?}");
}

#[test]
fn daemon_notifies_systemd_ready_watchdog_and_stopping() {
    if !require_root_and_tools(&[]) {
        return;
    }
    // A socket path, as systemd uses for system services.
    let dir = TempDir::new("notify");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    notify_session(&sock, path.display().to_string());

    // An abstract socket ('@' in NOTIFY_SOCKET), as in containers and user services.
    use std::os::linux::net::SocketAddrExt;
    let name = format!("meridian-test-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = UnixDatagram::bind_addr(&addr).unwrap();
    notify_session(&sock, format!("@{name}"));
}
