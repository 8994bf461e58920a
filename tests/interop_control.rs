//! The control protocol (mode 6) against real software, in network namespaces:
//!
//! * Debian's `ntpstat` and NTPsec's `ntpq` (`-p`, `-c rv`, `-c as`, `-c mrulist`)
//!   reading Meridian serving its local clock;
//! * `restrict … noquery` silencing mode 6 for those tools;
//! * Meridian's `ntpq -p` and `-c rv` reading NTPsec's `ntpd`, row for row the same as
//!   NTPsec's own `ntpq`.
//!
//! Every daemon runs without CAP_SYS_TIME, Meridian with `--observe`, and port 123 is
//! only used inside namespaces these tests create. Without root (or the tools) the tests
//! print `SKIP`.

mod support;

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::Path;
use std::process::Output;
use std::thread;
use std::time::{Duration, Instant};

use support::control::{
    debian_ntpstat, meridian_ntpq, ntpsec_ntpd, ntpsec_ntpq, parse_peers, parse_rv, PeerRow,
};
use support::*;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The local clock at fudge stratum 10: served at 11, as in the classic tutorial.
const LOCAL10: &str = "server 127.127.1.0\nfudge 127.127.1.0 stratum 10\nrestrict default\n";

fn tools() -> bool {
    require_root_and_tools(&[
        "ntpsec:ntpq",
        "ntpsec:ntpd",
        "/usr/bin/ntpstat",
        "/usr/bin/python3",
    ])
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn ntpstat_and_ntpsec_ntpq_read_meridian() {
    if !tools() {
        return;
    }
    let ns = Netns::new("ctl");
    let _server = meridian_server(Some(&ns), LOCAL10, 123, LOOPBACK, 11);

    // Debian's ntpstat, to the character (root dispersion 15.625 ms → "16 ms").
    let o = debian_ntpstat(&ns);
    assert_eq!(
        stdout(&o),
        "synchronised to local net at stratum 11 \n   time correct to within 16 ms\n   polling server every 64 s\n",
        "{}",
        describe_output(&o)
    );
    assert_eq!(o.status.code(), Some(0));
    // Ours prints the same.
    let mut cmd = sandboxed(Some(&ns), meridian_bin());
    cmd.arg("ntpstat");
    let ours = run_bounded(&mut cmd, Duration::from_secs(10));
    assert_eq!(stdout(&ours), stdout(&o));
    assert_eq!(ours.status.code(), Some(0));

    // NTPsec's ntpq -p: the local clock, selected, reach building up.
    let o = ntpsec_ntpq(&ns, &["-p"]);
    let rows = parse_peers(&stdout(&o));
    assert_eq!(rows.len(), 1, "{}", describe_output(&o));
    let r = &rows[0];
    assert_eq!(
        (
            r.tally,
            r.remote.as_str(),
            r.refid.as_str(),
            r.stratum.as_str(),
            r.kind.as_str(),
            r.poll.as_str()
        ),
        ('*', "LOCAL(0)", ".LOCL.", "10", "l", "64"),
        "{}",
        describe_output(&o)
    );
    assert!(matches!(r.reach.as_str(), "1" | "3"), "{r:?}");

    // ntpq -c rv: the system variables.
    let o = ntpsec_ntpq(&ns, &["-c", "rv"]);
    let text = stdout(&o);
    assert!(
        text.starts_with("associd=0 status=0515 leap_none, sync_local, 1 event, clock_sync,"),
        "{}",
        describe_output(&o)
    );
    let vars = parse_rv(&text);
    let get = |n: &str| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    assert_eq!(get("stratum"), Some("11"), "{text}");
    assert_eq!(get("leap"), Some("00"), "{text}");
    assert_eq!(get("refid"), Some("127.127.1.0"), "{text}");
    assert_eq!(get("tc"), Some("6"), "{text}");

    // ntpq -c as: one configured, reachable system peer.
    let o = ntpsec_ntpq(&ns, &["-c", "as"]);
    assert!(
        stdout(&o).contains("963a   yes   yes  none  sys.peer    sys_peer  3"),
        "{}",
        describe_output(&o)
    );

    // A time request from a known address and port, for mrulist's rport column.
    let reply = ns.run(|| {
        let s = UdpSocket::bind("127.0.0.2:45678").expect("bind 127.0.0.2:45678");
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.send_to(&NtpPacket::request_bytes(4, 1), "127.0.0.1:123")
            .unwrap();
        let mut buf = [0u8; 100];
        s.recv(&mut buf).map(|n| n == 48)
    });
    assert!(matches!(reply, Ok(true)), "{reply:?}");

    // ntpq -c mrulist (nonce, then the list): ntpq's own earlier queries are in it.
    let o = ntpsec_ntpq(&ns, &["-n", "-c", "mrulist"]);
    let text = stdout(&o);
    let row_of = |addr: &str| {
        let row = text
            .lines()
            .find(|l| l.ends_with(&format!(" {addr}")))
            .unwrap_or_else(|| panic!("no {addr} row:\n{}", describe_output(&o)));
        row.split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    // lstint avgint rstr r m v count score drop rport addr: mode 6, version 2, from
    // ntpq's own (ephemeral) port.
    let cols = row_of("127.0.0.1");
    assert_eq!((cols[4].as_str(), cols[5].as_str()), ("6", "2"), "{cols:?}");
    assert!(cols[6].parse::<u32>().unwrap() >= 4, "{cols:?}");
    assert!(cols[9].parse::<u16>().unwrap() >= 1024, "{cols:?}");
    // The client: mode 3, version 4, one packet, port 45678.
    let cols = row_of("127.0.0.2");
    assert_eq!(
        (
            cols[4].as_str(),
            cols[5].as_str(),
            cols[6].as_str(),
            cols[9].as_str()
        ),
        ("3", "4", "1", "45678"),
        "{cols:?}"
    );
    // Ours shows the same (lstint avgint rstr r m v count rport addr).
    let o = meridian_ntpq(&ns, &["-n", "-c", "mrulist"]);
    let ours = stdout(&o);
    let row = ours
        .lines()
        .find(|l| l.ends_with(" 127.0.0.2"))
        .unwrap_or_else(|| panic!("{}", describe_output(&o)));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        (cols[4], cols[5], cols[6], cols[7]),
        ("3", "4", "1", "45678"),
        "{row}"
    );

    // Our ntpq -p: classic ntpq 4.2.8's layout to the column.
    let o = meridian_ntpq(&ns, &["-p"]);
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "     remote           refid      st t when poll reach   delay   offset  jitter"
    );
    assert_eq!(lines[1], "=".repeat(78));
    assert!(
        lines[2].starts_with("*LOCAL(0)        .LOCL.          10 l "),
        "{text}"
    );
    assert!(
        lines[2].ends_with("   64    1    0.000    0.000   0.000")
            || lines[2].ends_with("   64    3    0.000    0.000   0.000"),
        "{text}"
    );
    assert_eq!(lines[2].len(), 78, "{text}");
}

#[test]
fn noquery_silences_mode_6() {
    if !tools() {
        return;
    }
    let ns = Netns::new("ctlnq");
    let conf = "server 127.127.1.0\nfudge 127.127.1.0 stratum 10\nrestrict default noquery\n";
    let _server = meridian_server(Some(&ns), conf, 123, LOOPBACK, 11);
    // Silence: Debian's ntpstat times out (exit 2, "timeout"); ours says the same.
    let o = debian_ntpstat(&ns);
    assert_eq!(o.status.code(), Some(2), "{}", describe_output(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "timeout\n",
        "{}",
        describe_output(&o)
    );
    let mut cmd = sandboxed(Some(&ns), meridian_bin());
    cmd.arg("ntpstat");
    let ours = run_bounded(&mut cmd, Duration::from_secs(10));
    assert_eq!(
        (ours.status.code(), ours.stderr.clone(), ours.stdout.clone()),
        (o.status.code(), o.stderr, o.stdout)
    );
    let o = ntpsec_ntpq(&ns, &["-p"]);
    assert!(
        parse_peers(&stdout(&o)).is_empty(),
        "{}",
        describe_output(&o)
    );
    // Time service is unaffected.
    assert!(ntp_probe_maybe_in(
        Some(&ns),
        "127.0.0.1:123".parse().unwrap(),
        Duration::from_secs(2)
    )
    .is_ok());
}

/// Whether our row says what NTPsec's ntpq says, allowing for the known presentation
/// differences: NTPsec shows four decimals (we show classic ntpq's three) and a refid
/// that is a reference clock's address raw (classic ntpq names it, `LOCAL(0)`).
fn same_row(ours: &PeerRow, theirs: &PeerRow) -> Result<(), String> {
    let refid_ok = ours.refid == theirs.refid
        || (theirs.refid.starts_with("127.127.1.") && ours.refid.starts_with("LOCAL("));
    let when = |w: &str| w.parse::<i64>().ok();
    let when_ok = ours.when == theirs.when
        || matches!((when(&ours.when), when(&theirs.when)), (Some(a), Some(b)) if (a - b).abs() <= 2);
    let close = |a: f64, b: f64| (a - b).abs() <= 0.00051;
    let fields_ok = ours.tally == theirs.tally
        && ours.remote == theirs.remote
        && refid_ok
        && ours.stratum == theirs.stratum
        && ours.kind == theirs.kind
        && when_ok
        && ours.poll == theirs.poll
        && ours.reach == theirs.reach
        && close(ours.delay, theirs.delay)
        && close(ours.offset, theirs.offset)
        && close(ours.jitter, theirs.jitter);
    if fields_ok {
        Ok(())
    } else {
        Err(format!("ours:   {ours:?}\nntpsec: {theirs:?}"))
    }
}

#[test]
fn meridian_ntpq_reads_ntpsec_ntpd_like_ntpsec_ntpq() {
    if !tools() {
        return;
    }
    // Meridian serves stratum 3 from its local clock on 10.123.0.1; NTPsec's ntpd in
    // the client namespace syncs from it and also has an (unfed) SHM reference clock.
    let lan = Lan::new("ctlx", &[2]);
    let _meridian = meridian_server(
        Some(&lan.server),
        LOCAL_CLOCK_CONF,
        123,
        lan.server_addr.into(),
        3,
    );
    let client = lan.client(2);
    let dir = TempDir::new("ntpsec");
    let conf = format!(
        "server {} iburst minpoll 4 maxpoll 4\nrefclock shm unit 0\nrestrict default\nrestrict 127.0.0.1\n\
         disable kernel\ndriftfile {}/drift\n",
        lan.server_addr,
        dir.path().display()
    );
    let mut ntpd = ntpsec_ntpd(client, &conf, dir.path());

    // Wait until NTPsec's ntpd has selected Meridian.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(ntpd.is_running(), "ntpsec ntpd exited:\n{}", ntpd.logs());
        let rows = parse_peers(&stdout(&ntpsec_ntpq(client, &["-pn"])));
        if rows.iter().any(|r| r.tally == '*') {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ntpsec ntpd never selected meridian: {rows:?}"
        );
        thread::sleep(Duration::from_secs(1));
    }

    // Row for row, field by field; retried when a poll lands between the queries.
    let mut last_err = String::new();
    let mut matched = false;
    for _ in 0..6 {
        let theirs = parse_peers(&stdout(&ntpsec_ntpq(client, &["-pn"])));
        let o = meridian_ntpq(client, &["-pn"]);
        let ours = parse_peers(&stdout(&o));
        assert_eq!(ours.len(), 2, "{}", describe_output(&o));
        assert_eq!(theirs.len(), 2);
        match ours
            .iter()
            .zip(&theirs)
            .try_for_each(|(a, b)| same_row(a, b))
        {
            Ok(()) => {
                matched = true;
                break;
            }
            Err(e) => last_err = e,
        }
        thread::sleep(Duration::from_secs(1));
    }
    assert!(matched, "rows differ:\n{last_err}");
    let ours = parse_peers(&stdout(&meridian_ntpq(client, &["-pn"])));
    assert_eq!(
        (ours[0].remote.as_str(), ours[0].kind.as_str()),
        ("10.123.0.1", "u")
    );
    assert_eq!(
        (
            ours[1].remote.as_str(),
            ours[1].refid.as_str(),
            ours[1].kind.as_str()
        ),
        ("SHM(0)", ".SHM.", "l")
    );

    // rv: the same values where both print them the same way.
    let theirs = parse_rv(&stdout(&ntpsec_ntpq(client, &["-c", "rv"])));
    let o = meridian_ntpq(client, &["-c", "rv"]);
    let ours = parse_rv(&stdout(&o));
    let get =
        |v: &[(String, String)], n: &str| v.iter().find(|(k, _)| k == n).map(|(_, x)| x.clone());
    for name in [
        "leap",
        "stratum",
        "precision",
        "refid",
        "peer",
        "mintc",
        "version",
        "processor",
    ] {
        assert_eq!(
            get(&ours, name),
            get(&theirs, name),
            "{name}\n{}",
            describe_output(&o)
        );
    }
    assert!(
        stdout(&o).starts_with("associd=0 status="),
        "{}",
        describe_output(&o)
    );
}

/// Run our `ntpstat` in `ns`.
fn meridian_ntpstat(ns: &Netns) -> std::process::Output {
    let mut cmd = sandboxed(Some(ns), meridian_bin());
    cmd.arg("ntpstat");
    run_bounded(&mut cmd, Duration::from_secs(10))
}

#[test]
fn ntpstat_without_daemon_or_sync_says_what_debians_says() {
    if !tools() {
        return;
    }
    // Nothing listening: "Unable to talk…", exit 2.
    let ns = Netns::new("ctlnone");
    let theirs = debian_ntpstat(&ns);
    assert_eq!(theirs.status.code(), Some(2));
    let ours = meridian_ntpstat(&ns);
    assert_eq!(
        (ours.status.code(), &ours.stdout, &ours.stderr),
        (theirs.status.code(), &theirs.stdout, &theirs.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&ours.stderr),
        "Unable to talk to NTP daemon. Is it running?\n"
    );

    // A daemon with nothing to sync from: unsynchronised, exit 1.
    let dir = TempDir::new("unsync");
    let conf = dir.write("ntp.conf", "restrict default\n");
    let args = [
        "ntpd",
        "-n",
        "-c",
        conf.to_str().unwrap(),
        "--port",
        "123",
        "--observe",
    ];
    let _d = Daemon::spawn(
        "meridian-unsync",
        Some(&ns),
        meridian_bin(),
        &args,
        dir.path(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let theirs = loop {
        let o = debian_ntpstat(&ns);
        if o.status.code() != Some(2) || Instant::now() > deadline {
            break o;
        }
        thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        theirs.status.code(),
        Some(1),
        "{}",
        describe_output(&theirs)
    );
    assert!(
        stdout(&theirs).starts_with("unsynchronised\n"),
        "{}",
        describe_output(&theirs)
    );
    let ours = meridian_ntpstat(&ns);
    assert_eq!(stdout(&ours), stdout(&theirs));
    assert_eq!(ours.status.code(), Some(1));
}

/// Keys for the authenticated mode 6 tests, one of each MAC type, in ntpd's keys file
/// format (which NTPsec's ntpq reads with `-k`): 1 is the `controlkey`.
const CONTROL_KEYS: &str = "1 MD5 controlpw\n\
                            2 SHA1 0123456789abcdef0123456789abcdef01234567\n\
                            3 AES128CMAC 000102030405060708090a0b0c0d0e0f\n";
/// The same ids with other secrets.
const WRONG_KEYS: &str = "1 MD5 notthepw\n\
                          2 SHA1 f123456789abcdef0123456789abcdef01234567\n\
                          3 AES128CMAC f00102030405060708090a0b0c0d0e0f\n";
/// What Meridian answers an authorized `:config` (`handler::CONFIG_UNSUPPORTED`).
const CONFIG_ANSWER: &str = "runtime configuration failed: not supported by Meridian \
                             (edit the configuration file and send SIGHUP)";

/// NTPsec's own mode 6 library (`ntp.packet`, what its ntpq is built on) sending one
/// authenticated request (`rv` of two system variables, `config` of one line, or
/// `reslist`): signed with key `keyid` of the keys file `argv[1]`, the answer's MACs
/// checked against the keys file `argv[2]`. Prints what came back and whether the
/// library found every fragment's MAC good (`authpass`); ntpq itself only says so when
/// a MAC is missing.
const NTPSEC_AUTH_PY: &str = r#"
import sys
import ntp.packet, ntp.poly
keys, verify_keys, keyid, op = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
s = ntp.packet.ControlSession()
s.logfp = sys.stderr
if not s.openhost("127.0.0.1"):
    sys.exit("cannot open 127.0.0.1")
s.auth = ntp.packet.Authenticator(keys)
s.keyid = keyid
s.password()
s.auth = ntp.packet.Authenticator(verify_keys)
try:
    if op == "rv":
        s.always_auth = True
        v = s.readvar(0, ["stratum", "leap"])
        print("stratum=%s leap=%s" % (v["stratum"], v["leap"]))
    elif op == "reslist":
        for e in s.reslist():
            print("%s %s [%s]" % (e["addr"], e["mask"], e.get("flags", "")))
    else:
        ok = s.config("restrict 10.0.0.1")
        print("config=%s succeeded=%s" % (ntp.poly.polystr(s.response), ok))
except ntp.packet.ControlException as e:
    print("error=%s" % e.message.strip())
print("authpass=%s" % s._authpass)
"#;

/// Run [`NTPSEC_AUTH_PY`] in `ns`.
fn ntpsec_auth_request(ns: &Netns, keys: &Path, verify: &Path, keyid: u32, op: &str) -> Output {
    let mut cmd = sandboxed(Some(ns), "/usr/bin/python3");
    cmd.arg("-c")
        .arg(NTPSEC_AUTH_PY)
        .arg(keys)
        .arg(verify)
        .arg(keyid.to_string())
        .arg(op);
    run_bounded(&mut cmd, Duration::from_secs(30))
}

/// Send one unsigned mode 6 request from inside `ns` to 127.0.0.1:123 and return the
/// answer's length and status word.
fn raw_control(ns: &Netns, opcode: u8, data: &'static [u8]) -> (usize, u16, u8) {
    ns.run(move || {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut req = vec![0x16, opcode, 0, 9, 0, 0, 0, 0, 0, 0, 0, data.len() as u8];
        req.extend_from_slice(data);
        req.resize(req.len().div_ceil(4) * 4, 0);
        s.send_to(&req, "127.0.0.1:123").expect("send");
        let mut buf = [0u8; 600];
        let n = s.recv(&mut buf).expect("an answer");
        (n, u16::from_be_bytes([buf[4], buf[5]]), buf[1])
    })
}

#[test]
fn authenticated_mode6_with_ntpsec_ntpq_and_ours() {
    if !tools() {
        return;
    }
    let ns = Netns::new("ctlauth");
    let dir = TempDir::new("ctlkeys");
    let keys = dir.write("ntp.keys", CONTROL_KEYS);
    let wrong = dir.write("wrong.keys", WRONG_KEYS);
    let conf = format!(
        "{LOCAL10}restrict 192.0.2.0 mask 255.255.255.0 nomodify notrap\nkeys {}\n\
         trustedkey 1 2 3\ncontrolkey 1\n",
        keys.display()
    );
    let _server = meridian_server(Some(&ns), &conf, 123, LOOPBACK, 11);
    let k = keys.to_str().unwrap();

    // NTPsec's ntpq, `:config` with the controlkey: our text answer, signed (ntpq says
    // "AUTH - packet too short for MAC" on stderr when a MAC is missing).
    let o = ntpsec_ntpq(
        &ns,
        &["-k", k, "-a", "1", "-c", ":config restrict 10.0.0.1"],
    );
    assert_eq!(
        (stdout(&o), String::from_utf8_lossy(&o.stderr).into_owned()),
        (format!("{CONFIG_ANSWER}\n"), String::new()),
        "{}",
        describe_output(&o)
    );
    // Another trusted key, or the controlkey with the wrong secret: permission.
    for (file, id) in [(k, "2"), (k, "3"), (wrong.to_str().unwrap(), "1")] {
        let o = ntpsec_ntpq(
            &ns,
            &["-k", file, "-a", id, "-c", ":config restrict 10.0.0.1"],
        );
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("***Server error code PERMISSION"),
            "key {id} of {file}: {}",
            describe_output(&o)
        );
        assert_eq!(stdout(&o), "", "{}", describe_output(&o));
    }

    // The restrict table (`reslist`), through NTPsec's library, to the controlkey only.
    // ntpd's per-entry hit counts are not kept, and NTPsec's ntpq drops entries without
    // them from its `reslist` table, so the library's parse is what is checked here.
    let o = ntpsec_auth_request(&ns, &keys, &keys, 1, "reslist");
    assert_eq!(
        stdout(&o),
        "192.0.2.0 255.255.255.0 [nomodify notrap]\n0.0.0.0 0.0.0.0 []\n:: :: []\n\
         authpass=True\n",
        "{}",
        describe_output(&o)
    );
    let o = ntpsec_auth_request(&ns, &keys, &keys, 3, "reslist");
    assert_eq!(
        stdout(&o),
        "error=***Server error code PERMISSION\nauthpass=True\n",
        "{}",
        describe_output(&o)
    );

    // NTPsec's library checks our MACs: every key type, both ways. Reads need no
    // controlkey; the answer is signed with the request's key.
    for id in [1, 2, 3] {
        let o = ntpsec_auth_request(&ns, &keys, &keys, id, "rv");
        assert_eq!(
            stdout(&o),
            "stratum=11 leap=0\nauthpass=True\n",
            "key {id}: {}",
            describe_output(&o)
        );
        // Negative control: checked against other secrets, the same answers fail.
        let o = ntpsec_auth_request(&ns, &keys, &wrong, id, "rv");
        assert_eq!(
            stdout(&o),
            "stratum=11 leap=0\nauthpass=False\n",
            "key {id}: {}",
            describe_output(&o)
        );
    }
    let o = ntpsec_auth_request(&ns, &keys, &keys, 1, "config");
    assert_eq!(
        stdout(&o),
        format!("config={CONFIG_ANSWER} succeeded=False\nauthpass=True\n"),
        "{}",
        describe_output(&o)
    );
    let o = ntpsec_auth_request(&ns, &keys, &keys, 2, "config");
    assert_eq!(
        stdout(&o),
        "error=***Server error code PERMISSION\nauthpass=True\n",
        "{}",
        describe_output(&o)
    );

    // Unauthenticated writes, straight on the wire: "permission" (code 1), unsigned.
    for op in [3u8, 8, 9] {
        let (len, status, bits) = raw_control(&ns, op, b"leap=0");
        assert_eq!((len, status, bits), (12, 0x0100, 0xc0 | op), "opcode {op}");
    }
    // Traps: "permission" too.
    assert_eq!(raw_control(&ns, 6, b""), (12, 0x0100, 0xc6));

    // Our ntpq, classic ntpq's commands.
    let ours = |args: &[&str]| {
        let o = meridian_ntpq(&ns, args);
        (
            stdout(&o),
            String::from_utf8_lossy(&o.stderr).into_owned(),
            o.status.code(),
        )
    };
    let with_key = |cmd: &str| ours(&["-a", "1", "-k", k, "-c", cmd]);
    assert_eq!(
        with_key(":config restrict 10.0.0.1"),
        (format!("{CONFIG_ANSWER}\n"), String::new(), Some(0))
    );
    assert_eq!(
        with_key("writevar 0"),
        ("done! (no data returned)\n".into(), String::new(), Some(0))
    );
    for (cmd, err) in [
        (
            "writevar 0 leap=0",
            "***Server returned an unspecified error",
        ),
        (
            "writevar 0 stratum=2",
            "***Server disallowed request (authentication?)",
        ),
        (
            "writevar 0 nosuchvar=2",
            "***A request variable unknown to the server",
        ),
        (
            "writevar 0 leap=9",
            "***Server indicates a request variable was bad",
        ),
    ] {
        assert_eq!(
            with_key(cmd),
            (String::new(), format!("{err}\n"), Some(1)),
            "{cmd}"
        );
    }
    assert_eq!(
        ours(&["-a", "2", "-k", k, "-c", "writevar 0 leap=0"]).1,
        "***Server disallowed request (authentication?)\n"
    );
    // `keyid`, `keytype` and `passwd` instead of a keys file.
    let (out, err, code) = ours(&[
        "-c",
        "keyid 2",
        "-c",
        "keytype SHA1",
        "-c",
        "passwd 0123456789abcdef0123456789abcdef01234567",
        "-c",
        "authenticate yes",
        "-c",
        "rv 0 stratum",
    ]);
    assert_eq!(
        (out.as_str(), err.as_str(), code),
        (
            "keyid is 2\nkeytype is SHA1 with 20 octet digests\nauthenticated requests being sent\n\
             associd=0 status=0515 leap_none, sync_local, 1 event, clock_sync,\nstratum=11\n",
            "",
            Some(0)
        )
    );
    // With a wrong secret the answer comes back unsigned, and ntpq says so.
    let (out, err, _) = ours(&[
        "-c",
        "keyid 2",
        "-c",
        "keytype SHA1",
        "-c",
        "passwd f123456789abcdef0123456789abcdef01234567",
        "-c",
        "authenticate yes",
        "-c",
        "rv 0 stratum",
    ]);
    assert!(out.ends_with("stratum=11\n"), "{out}");
    assert_eq!(
        err,
        "***Response not signed with our key: content untrusted\n"
    );
    assert_eq!(
        ours(&["-c", "writevar 0 leap=0"]).1,
        "***Keyid must be defined (-a KEYID, or the keyid command)\n"
    );
}

/// The value of `name` in an `ntpq -c rv` output.
fn rv_get(vars: &[(String, String)], name: &str) -> Option<String> {
    vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

#[test]
fn ntpsec_ntpq_reads_meridian_synced_to_chrony() {
    if !tools() || !require_root_and_tools(&["chronyd"]) {
        return;
    }
    // chronyd -x serves stratum 3 on 10.123.0.1; Meridian in 10.123.0.2 syncs from it.
    let lan = Lan::new("ctlnet", &[2]);
    let _chrony = chrony_server(
        Some(&lan.server),
        &ChronyServerOpts {
            stratum: 3,
            ..Default::default()
        },
    );
    let client = lan.client(2);
    let conf = format!(
        "server {} iburst minpoll 4 maxpoll 4\nrestrict default\n",
        lan.server_addr
    );
    let _meridian = meridian_server(Some(client), &conf, 123, LOOPBACK, 4);
    let server = lan.server_addr.to_string();

    // NTPsec's ntpq -p: the server selected, with what chrony serves.
    let deadline = Instant::now() + Duration::from_secs(60);
    let theirs = loop {
        let o = ntpsec_ntpq(client, &["-pn"]);
        let rows = parse_peers(&stdout(&o));
        if let Some(r) = rows.iter().find(|r| r.remote == server && r.tally == '*') {
            if r.reach != "0" && r.when != "-" {
                break r.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no selected server:\n{}",
            describe_output(&o)
        );
        thread::sleep(Duration::from_secs(1));
    };
    assert_eq!(
        (
            theirs.stratum.as_str(),
            theirs.kind.as_str(),
            theirs.poll.as_str()
        ),
        ("3", "u", "16"),
        "{theirs:?}"
    );
    assert!(u32::from_str_radix(&theirs.reach, 8).is_ok_and(|r| r > 0 && r <= 0o377));
    // Same host clock on both ends: offset and delay are tiny.
    assert!(theirs.offset.abs() < 5.0, "{theirs:?}");
    assert!(theirs.delay > 0.0 && theirs.delay < 5.0, "{theirs:?}");

    // NTPsec's ntpq -c as: the association, configured, reachable, the system peer.
    let o = ntpsec_ntpq(client, &["-c", "as"]);
    let text = stdout(&o);
    let row = text
        .lines()
        .find(|l| l.contains("sys.peer"))
        .unwrap_or_else(|| panic!("{}", describe_output(&o)));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        (cols[3], cols[4], cols[5], cols[6]),
        ("yes", "yes", "none", "sys.peer"),
        "{row}"
    );
    let assoc = cols[1].to_string();
    // Ours prints the same row.
    let o = meridian_ntpq(client, &["-c", "as"]);
    assert!(
        stdout(&o).lines().any(|l| l == row),
        "{row:?} not in\n{}",
        describe_output(&o)
    );

    // ntpq -c "rv ASSOC": the peer variables.
    let o = ntpsec_ntpq(client, &["-c", &format!("rv {assoc}")]);
    let text = stdout(&o);
    assert!(
        text.starts_with(&format!("associd={assoc} status=96")),
        "{}",
        describe_output(&o)
    );
    let vars = parse_rv(&text);
    for (name, want) in [
        ("srcadr", server.as_str()),
        ("srcport", "123"),
        ("leap", "00"),
        ("stratum", "3"),
        ("hmode", "3"),
        ("pmode", "4"),
        ("hpoll", "4"),
    ] {
        assert_eq!(rv_get(&vars, name).as_deref(), Some(want), "{name}\n{text}");
    }
    // Our address on the LAN, as the server sees it.
    assert_eq!(
        rv_get(&vars, "dstadr").as_deref(),
        Some("10.123.0.2"),
        "{text}"
    );
    for name in [
        "rootdelay",
        "rootdisp",
        "refid",
        "reftime",
        "rec",
        "reach",
        "offset",
        "delay",
        "dispersion",
        "jitter",
    ] {
        assert!(rv_get(&vars, name).is_some(), "{name} missing:\n{text}");
    }
    // NTPsec lays the clock filter out in columns (`filtdelay =0.08\t0.05…`).
    for name in ["filtdelay", "filtoffset", "filtdisp"] {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"));
        let stages = line.split_once('=').map_or(0, |(_, v)| {
            v.split_whitespace()
                .filter(|x| x.trim_end_matches(',').parse::<f64>().is_ok())
                .count()
        });
        assert_eq!(stages, 8, "{line}");
    }

    assert_eq!(
        rv_get(&vars, "refid").as_deref(),
        Some("127.127.1.1"),
        "chrony's local refid"
    );
    // Ours reads the same values where both print them alike.
    let o = meridian_ntpq(client, &["-c", &format!("rv {assoc}")]);
    let ours = parse_rv(&stdout(&o));
    for name in [
        "srcadr",
        "srcport",
        "dstadr",
        "dstport",
        "leap",
        "stratum",
        "precision",
        "hmode",
        "pmode",
        "hpoll",
        "ppoll",
        "headway",
        "keyid",
        "unreach",
    ] {
        assert_eq!(
            rv_get(&ours, name),
            rv_get(&vars, name),
            "{name}\n{}",
            describe_output(&o)
        );
    }

    // ntpq -c rv: the system, synchronised to it.
    let o = ntpsec_ntpq(client, &["-c", "rv"]);
    let text = stdout(&o);
    assert!(
        text.starts_with("associd=0 status=0615 leap_none, sync_ntp, 1 event, clock_sync,"),
        "{}",
        describe_output(&o)
    );
    let sys = parse_rv(&text);
    assert_eq!(rv_get(&sys, "leap").as_deref(), Some("00"), "{text}");
    assert_eq!(rv_get(&sys, "tc").as_deref(), Some("4"), "{text}");
    assert_eq!(rv_get(&sys, "stratum").as_deref(), Some("4"), "{text}");
    assert_eq!(rv_get(&sys, "refid"), Some(server.clone()), "{text}");
    assert_eq!(rv_get(&sys, "peer"), Some(assoc.clone()), "{text}");

    // Our ntpq -p agrees with NTPsec's, field by field.
    let mut last_err = String::new();
    let matched = (0..6).any(|_| {
        let theirs = parse_peers(&stdout(&ntpsec_ntpq(client, &["-pn"])));
        let o = meridian_ntpq(client, &["-pn"]);
        let ours = parse_peers(&stdout(&o));
        let ok = ours.len() == theirs.len()
            && ours
                .iter()
                .zip(&theirs)
                .try_for_each(|(a, b)| same_row(a, b))
                .map_err(|e| last_err = e)
                .is_ok();
        if !ok {
            thread::sleep(Duration::from_secs(1));
        }
        ok
    });
    assert!(matched, "rows differ:\n{last_err}");
}
