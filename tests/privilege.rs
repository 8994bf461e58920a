//! `ntpd -u user[:group]`: after binding, the daemon gives up root and keeps only the
//! capabilities it needs (CAP_SYS_TIME, CAP_NET_BIND_SERVICE), and still serves.
//!
//! The daemon runs under `setpriv --bounding-set -sys_time`, so CAP_SYS_TIME can't be
//! kept here: what must remain is CAP_NET_BIND_SERVICE alone, with the uid and gid of
//! `nobody`. Needs root (to change user); skips otherwise, fails under CI.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use support::*;

const CAP_NET_BIND_SERVICE: u64 = 1 << 10;

fn status_field(pid: u32, field: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(field))
        .map(|l| l[field.len()..].trim().to_string())
}

#[test]
fn dropping_to_nobody_keeps_only_the_needed_capabilities_and_still_serves() {
    if !require_root_and_tools(&["setpriv"]) {
        return;
    }
    let dir = TempDir::new("privdrop");
    let conf = dir.write(
        "ntp.conf",
        "server 127.127.1.0\nfudge 127.127.1.0 stratum 2\nrestrict default\n",
    );
    let port = 24_000 + (std::process::id() % 1000) as u16;
    let args: Vec<String> = vec![
        "ntpd".into(),
        "-n".into(),
        "-c".into(),
        conf.to_string_lossy().into_owned(),
        "--port".into(),
        port.to_string(),
        "--observe".into(),
        "-u".into(),
        "nobody".into(),
    ];
    let mut daemon = Daemon::spawn("ntpd-u", None, meridian_bin(), &args, dir.path());
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    wait_for_stratum(&mut daemon, None, addr, 3, Duration::from_secs(20));
    // `setpriv` execs the daemon, so the child's pid is the daemon's.
    let pid = daemon.pid();
    let deadline = Instant::now() + Duration::from_secs(5);
    let uid = loop {
        let uid = status_field(pid, "Uid:").unwrap_or_default();
        if uid.starts_with("65534") || Instant::now() > deadline {
            break uid;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        uid.split_whitespace().collect::<Vec<_>>(),
        ["65534"; 4],
        "{}",
        daemon.logs()
    );
    let cap_eff = u64::from_str_radix(&status_field(pid, "CapEff:").unwrap(), 16).unwrap();
    let cap_prm = u64::from_str_radix(&status_field(pid, "CapPrm:").unwrap(), 16).unwrap();
    assert_eq!(
        cap_eff, CAP_NET_BIND_SERVICE,
        "effective capabilities {cap_eff:x}"
    );
    assert_eq!(
        cap_prm, CAP_NET_BIND_SERVICE,
        "permitted capabilities {cap_prm:x}"
    );
    // Every thread, not just the main one, runs without root.
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert!(
            uid_line.contains("65534"),
            "thread still privileged: {uid_line}"
        );
    }
    let probe = ntp_probe(addr, Duration::from_secs(2)).expect("still serving after the drop");
    assert_eq!(probe.reply.stratum, 3);
}

#[test]
fn an_unknown_user_is_a_clear_start_up_error() {
    if !require_root_and_tools(&["setpriv"]) {
        return;
    }
    let dir = TempDir::new("privdrop-bad");
    let conf = dir.write("ntp.conf", "server 127.127.1.0\nrestrict default\n");
    let port = 25_000 + (std::process::id() % 1000) as u16;
    let out = run_bounded(
        sandboxed(None, meridian_bin()).args([
            "ntpd",
            "-n",
            "-c",
            conf.to_str().unwrap(),
            "--port",
            &port.to_string(),
            "--observe",
            "-u",
            "no-such-user-meridian",
        ]),
        Duration::from_secs(10),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no such user"), "{stderr}");
}

/// `--seccomp`: the daemon runs in seccomp filter mode (Seccomp: 2 in /proc, on every
/// thread, with no_new_privs) and still serves.
#[test]
fn seccomp_filter_is_installed_on_every_thread_and_the_daemon_still_serves() {
    if !require_root_and_tools(&["setpriv"]) {
        return;
    }
    let dir = TempDir::new("seccomp");
    let conf = dir.write(
        "ntp.conf",
        "server 127.127.1.0\nfudge 127.127.1.0 stratum 2\nrestrict default\n",
    );
    let port = 26_000 + (std::process::id() % 1000) as u16;
    let args: Vec<String> = vec![
        "ntpd".into(),
        "-n".into(),
        "--seccomp".into(),
        "-c".into(),
        conf.to_string_lossy().into_owned(),
        "--port".into(),
        port.to_string(),
        "--observe".into(),
    ];
    let mut daemon = Daemon::spawn("ntpd-seccomp", None, meridian_bin(), &args, dir.path());
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    wait_for_stratum(&mut daemon, None, addr, 3, Duration::from_secs(20));
    let pid = daemon.pid();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .map(|l| l[name.len()..].trim().to_string())
                .unwrap_or_default()
        };
        assert_eq!(field("Seccomp:"), "2", "filter mode on every thread");
        assert_eq!(field("NoNewPrivs:"), "1");
    }
    let probe = ntp_probe(addr, Duration::from_secs(2)).expect("still serving under the filter");
    assert_eq!(probe.reply.stratum, 3);
    assert!(daemon.is_running(), "{}", daemon.logs());
}
