//! Symmetric-key authentication (RFC 5905 §7.3 MACs, RFC 8573 AES-CMAC)
//! between Meridian and real NTP software, with MD5, SHA1 and
//! AES-128-CMAC keys from `meridian keygen`, each peer reading the same
//! secrets in its own key-file syntax:
//!
//! * a. NTPsec's `ntpdig -k FILE -a N` against our server (port 123 in a
//!   namespace LAN): the right key gets the time in a reply signed with that
//!   key; a key the server has but does not trust, a key it does not have,
//!   and a wrong secret each get a crypto-NAK, and ntpdig prints no time;
//! * b. `restrict default notrust`: unauthenticated ntpdig (and a raw
//!   probe) get nothing, authenticated ntpdig gets the time;
//! * c. `chronyd -x -Q` with `keyfile` and `server … key N` as a client of
//!   our server: every sample passes chrony's tests (`111 111 1111`,
//!   including its authentication test); with a wrong secret or a key our
//!   server does not trust, chrony gets no sample;
//! * d. our daemon (`server … key N`) as a client of `chronyd -x` serving
//!   with a `keyfile`: synchronises (stratum 4, `*` in `ntpq -p`); with a
//!   wrong secret for the same id it never does (reach stays 0);
//! * e. our `ntpdate -q -a N -k FILE` against that chronyd: the server line
//!   (also when FILE is chrony's own keyfile); with a wrong secret or a key
//!   chrony does not have, "no server suitable for synchronization found"
//!   and exit 1.
//!
//! Key-file syntaxes, as verified against the installed peers:
//! Meridian and NTPsec (`ntp.keys`): `ID TYPE KEY`, KEY hex when longer
//! than 20 characters; NTPsec's ntpdig maps `AES128CMAC`/`AES` to OpenSSL's
//! `AES-128` but does not know chrony's `AES128`, and cannot read chrony's
//! `HEX:` prefix. chrony: `ID TYPE HEX:KEY` with `MD5`, `SHA1`, `AES128`.
//!
//! Peer behaviour this relies on (ntpsec 1.2.2, chrony 4.3): ntpdig 1.2.2
//! crashes (`AttributeError: 'bytes' object has no attribute 'trusted'`,
//! exit 1) on a reply whose MAC does not verify, so a crypto-NAK is checked
//! in the reply it dumps with `-d -d`; chronyd silently drops requests with
//! a bad MAC or an unknown key (no crypto-NAK), and does not log samples
//! that fail its authentication test.
//!
//! Every process runs without CAP_SYS_TIME, our daemon with `--observe`,
//! chronyd with `-x`, clients in query-only mode; port 123 only inside the
//! test's own namespaces. Needs root, chrony and ntpsec's ntpdig; skips
//! otherwise, fails when `CI` is set.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use support::auth::*;
use support::control::{meridian_ntpq, parse_peers, PeerRow};
use support::sync::{
    meridian_ntpdate_query, parse_ntpdate_server_line, refid_of, spawn_meridian, wait_until,
};
use support::*;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Our daemon serving its local clock (fudge stratum 2, served 3) with
/// the `restrict` lines given and the keys of `keys` (1–3 trusted).
fn local_clock_conf(restrict: &str, keys: &TestKeys) -> String {
    format!(
        "server 127.127.1.0\nfudge 127.127.1.0 stratum 2\n{restrict}{}",
        keys.server_conf_lines()
    )
}

/// Run `f` once per key type on its own thread; re-raise the first panic.
fn per_kind<F>(f: F)
where
    F: Fn(KeyKind) + Sync,
{
    thread::scope(|s| {
        let handles: Vec<_> = KeyKind::ALL
            .iter()
            .map(|&kind| {
                let f = &f;
                s.spawn(move || f(kind))
            })
            .collect();
        for h in handles {
            if let Err(e) = h.join() {
                std::panic::resume_unwind(e);
            }
        }
    });
}

// ---------------------------------------------------------------------------
// a./b. NTPsec ntpdig against our server
// ---------------------------------------------------------------------------

/// ntpdig got the time from `server` at stratum 3 in a reply signed with
/// `key`.
fn assert_authenticated_time(run: &NtpdigAuthRun, server: &str, key: &TestKey) {
    let ctx = run.describe();
    let what = format!("{:?} key {}", key.kind, key.id);
    assert!(run.output.status.success(), "{what}: ntpdig failed:\n{ctx}");
    let line = run
        .line
        .as_ref()
        .unwrap_or_else(|| panic!("{what}: no ntpdig result line:\n{ctx}"));
    assert_eq!(line.stratum, 3, "{what}: {line:?}\n{ctx}");
    assert!(
        offset_ok(line.offset, line.error),
        "{what}: {line:?}\n{ctx}"
    );
    assert!(
        run.stderr().contains(&format!(
            "MAC verification on reply from {server} succeeded"
        )),
        "{what}: ntpdig did not verify the reply's MAC:\n{ctx}"
    );
    let id = u32::from(key.id).to_be_bytes();
    assert_eq!(
        run.request.len(),
        48 + key.kind.mac_len(),
        "{what}: request not signed:\n{ctx}"
    );
    assert_eq!(run.request[48..52], id, "{what}: request key id:\n{ctx}");
    assert_eq!(
        run.reply.len(),
        48 + key.kind.mac_len(),
        "{what}: the reply must carry a {}-octet MAC:\n{ctx}",
        key.kind.mac_len()
    );
    assert_eq!(
        run.reply_key_id(),
        Some(u32::from(key.id)),
        "{what}:\n{ctx}"
    );
}

/// ntpdig signed its request with `key`, got a crypto-NAK back and printed
/// no time.
fn assert_crypto_nak(run: &NtpdigAuthRun, why: &str, key: &TestKey) {
    let ctx = run.describe();
    let what = format!("{:?} key {} ({why})", key.kind, key.id);
    assert!(
        !run.output.status.success() && run.line.is_none(),
        "{what}: ntpdig must not accept the server:\n{ctx}"
    );
    assert_eq!(
        run.request.get(48..52),
        Some(&u32::from(key.id).to_be_bytes()[..]),
        "{what}: request not signed with the key:\n{ctx}"
    );
    assert!(
        run.reply_is_crypto_nak(),
        "{what}: the server must answer with a crypto-NAK (header + key id 0):\n{ctx}"
    );
}

/// `ntpdig -k FILE -a N` against our server on port 123 in a namespace LAN
/// (client 10.123.0.2 → server 10.123.0.1), for MD5, SHA1 and AES-128-CMAC:
/// the trusted key gets the time, signed with that key; a key defined but
/// not trusted, a key the server lacks and a wrong secret get a crypto-NAK.
/// Unauthenticated ntpdig still works (no `notrust`), with an unsigned reply.
#[test]
fn ntpdig_with_keys_against_our_server() {
    if !require_root_and_tools(&["ntpdig"]) {
        return;
    }
    let started = Instant::now();
    let keys = TestKeys::generate();
    let client_keys = keys.client_file();
    let wrong_keys = keys.wrong_file();
    let lan = Lan::new("ia-dig", &[2]);
    let client = lan.client(2);
    let server = lan.server_addr.to_string();
    let conf = local_clock_conf("restrict default\n", &keys);
    let _m = meridian_server(Some(&lan.server), &conf, 123, LOOPBACK, 3);

    let plain = ntpdig_auth(client, &server, None, 2);
    let ctx = plain.describe();
    assert!(
        plain.output.status.success() && plain.line.as_ref().is_some_and(|l| l.stratum == 3),
        "unauthenticated ntpdig failed:\n{ctx}"
    );
    assert_eq!(
        plain.reply.len(),
        48,
        "unsigned request, unsigned reply:\n{ctx}"
    );

    for kind in KeyKind::ALL {
        let good = keys.trusted(kind);
        let run = ntpdig_auth(client, &server, Some((&client_keys, good)), 2);
        assert_authenticated_time(&run, &server, good);

        let untrusted = keys.untrusted(kind);
        let run = ntpdig_auth(client, &server, Some((&client_keys, untrusted)), 1);
        assert_crypto_nak(&run, "defined but not trusted by the server", untrusted);

        let unknown = keys.unknown(kind);
        let run = ntpdig_auth(client, &server, Some((&client_keys, unknown)), 1);
        assert_crypto_nak(&run, "not in the server's keys file", unknown);

        let wrong = good.corrupted();
        let run = ntpdig_auth(client, &server, Some((&wrong_keys, &wrong)), 1);
        assert_crypto_nak(&run, "wrong secret", &wrong);
    }
    eprintln!(
        "ntpdig_with_keys_against_our_server: {:?}",
        started.elapsed()
    );
}

/// `restrict default notrust` (plus `restrict 127.0.0.1` for the harness's
/// readiness probe): from 10.123.0.2, unauthenticated ntpdig and a raw
/// probe get no answer at all, ntpdig with each trusted key gets the time,
/// and a key the server does not trust still gets a crypto-NAK.
#[test]
fn notrust_serves_only_authenticated_ntpdig() {
    if !require_root_and_tools(&["ntpdig"]) {
        return;
    }
    let started = Instant::now();
    let keys = TestKeys::generate();
    let client_keys = keys.client_file();
    let lan = Lan::new("ia-notrust", &[2]);
    let client = lan.client(2);
    let server = lan.server_addr.to_string();
    let conf = local_clock_conf("restrict default notrust\nrestrict 127.0.0.1\n", &keys);
    let _m = meridian_server(Some(&lan.server), &conf, 123, LOOPBACK, 3);

    let plain = ntpdig_auth(client, &server, None, 1);
    let ctx = plain.describe();
    assert!(
        !plain.output.status.success() && plain.line.is_none(),
        "notrust: unauthenticated ntpdig must get no time:\n{ctx}"
    );
    assert!(plain.reply.is_empty(), "notrust: no reply at all:\n{ctx}");
    assert!(plain.stderr().contains("no eligible servers"), "{ctx}");
    let raw = ntp_probe_maybe_in(
        Some(client),
        SocketAddr::new(IpAddr::V4(lan.server_addr), 123),
        Duration::from_secs(1),
    );
    assert!(
        raw.is_err(),
        "notrust: an unauthenticated raw request was answered: {raw:?}"
    );

    for kind in KeyKind::ALL {
        let good = keys.trusted(kind);
        let run = ntpdig_auth(client, &server, Some((&client_keys, good)), 2);
        assert_authenticated_time(&run, &server, good);
        let untrusted = keys.untrusted(kind);
        let run = ntpdig_auth(client, &server, Some((&client_keys, untrusted)), 1);
        assert_crypto_nak(&run, "notrust, key not trusted", untrusted);
    }
    eprintln!(
        "notrust_serves_only_authenticated_ntpdig: {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// c. chronyd as a client of our server
// ---------------------------------------------------------------------------

/// `chronyd -x -Q` with chrony's keyfile (`1 MD5 HEX:…`, `2 SHA1 HEX:…`,
/// `3 AES128 HEX:…`) and `server 127.0.0.1 port 11123 key N` against our
/// server in a namespace: every logged sample passes all of chrony's tests
/// (`111 111 1111`, test 5 being authentication), stratum 3, offset ≈ 0.
/// With the same ids but wrong secrets, or with a key our server has but
/// does not trust (ids 11–13: it answers with a crypto-NAK), chrony takes no
/// sample and gives up ("No suitable source for synchronisation").
#[test]
fn chronyd_client_accepts_our_signed_replies() {
    if !require_root_and_tools(&["chronyd"]) {
        return;
    }
    let started = Instant::now();
    let keys = TestKeys::generate();
    let chrony_keys = keys.chrony_file();
    let chrony_wrong = keys.chrony_wrong_file();
    let ns = Netns::new("ia-chronyc");
    let port = 11123;
    let conf = local_clock_conf("restrict default\n", &keys);
    let _m = meridian_server(Some(&ns), &conf, port, LOOPBACK, 3);

    let rejected = |q: &ChronyAuthQuery, what: &str| {
        assert!(
            !q.success && q.measurements.is_empty(),
            "{what}: chrony must take no sample from our server:\n{}",
            q.output
        );
        assert!(
            q.output.contains("No suitable source for synchronisation"),
            "{what}:\n{}",
            q.output
        );
    };
    per_kind(|kind| {
        let id = keys.trusted(kind).id;
        let q = chrony_query_auth(&ns, LOOPBACK, port, &chrony_keys, id, 5);
        let what = format!("{kind:?} key {id}");
        assert!(q.success, "{what}: chronyd -Q failed:\n{}", q.output);
        assert!(
            !q.measurements.is_empty(),
            "{what}: no samples:\n{}",
            q.output
        );
        for m in &q.measurements {
            assert_eq!(m.ip, "127.0.0.1", "{what}: {m:?}");
            assert_eq!(
                m.tests, "111 111 1111",
                "{what}: chrony rejected a sample: {m:?}"
            );
            assert_eq!(m.stratum, 3, "{what}: {m:?}");
            assert!(offset_ok(m.offset, m.peer_delay / 2.0), "{what}: {m:?}");
        }

        let q = chrony_query_auth(&ns, LOOPBACK, port, &chrony_wrong, id, 3);
        rejected(&q, &format!("{what}, wrong secret on chrony's side"));
        let untrusted = keys.untrusted(kind).id;
        let q = chrony_query_auth(&ns, LOOPBACK, port, &chrony_keys, untrusted, 3);
        rejected(
            &q,
            &format!("{kind:?} key {untrusted}, not trusted by our server"),
        );
    });
    eprintln!(
        "chronyd_client_accepts_our_signed_replies: {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// d./e. chronyd serving with keys: our daemon and our ntpdate as clients
// ---------------------------------------------------------------------------

/// Port of the keyed chronyd server in d. and e. (inside their namespace).
const CHRONY_PORT: u16 = 11124;

/// `chronyd -x` serving `local stratum 3` on 127.0.0.1:11124 inside `ns`,
/// with chrony's keyfile holding the trusted keys (ids 1–3).
fn keyed_chrony(ns: &Netns, keys: &TestKeys) -> ChronyServer {
    let keyfile = keys.chrony_server_file();
    chrony_server(
        Some(ns),
        &ChronyServerOpts {
            port: CHRONY_PORT,
            bind: Some(LOOPBACK),
            extra: vec![format!("keyfile {}", keyfile.display())],
            ..ChronyServerOpts::default()
        },
    )
}

/// Our daemon's `ntpq -p --port PORT 127.0.0.1` row for the chrony
/// server, or what ntpq printed instead.
fn chrony_row(ns: &Netns, port: u16) -> Result<PeerRow, String> {
    let out = meridian_ntpq(ns, &["-p", "--port", &port.to_string(), "127.0.0.1"]);
    parse_peers(&String::from_utf8_lossy(&out.stdout))
        .into_iter()
        .find(|r| r.remote == "127.0.0.1")
        .ok_or_else(|| format!("no ntpq -p row for 127.0.0.1:\n{}", describe_output(&out)))
}

/// A raw probe of our daemon says it is synchronised to chrony at
/// 127.0.0.1: LI ≠ 3, stratum 4, refid 127.0.0.1.
fn synced_to_chrony(ns: &Netns, ours: SocketAddr) -> bool {
    ntp_probe_maybe_in(Some(ns), ours, Duration::from_millis(500)).is_ok_and(|p| {
        p.reply.li != 3 && p.reply.stratum == 4 && p.reply.refid == refid_of(LOOPBACK)
    })
}

/// Six of our daemons in one namespace with `keyed_chrony`: for each key
/// type one with `server 127.0.0.1 port 11124 key N iburst minpoll 4` and
/// the right secret, one with the same line but a wrong secret for N. The
/// right ones synchronise (raw probe: stratum 4, refid 127.0.0.1; `ntpq -p`:
/// `*`); the wrong ones, over at least as long, never do: no `*`, reach 0,
/// still unsynchronised.
#[test]
fn our_daemon_syncs_from_chronyd_with_keys() {
    if !require_root_and_tools(&["chronyd"]) {
        return;
    }
    let started = Instant::now();
    let keys = TestKeys::generate();
    let right = keys.client_file();
    let wrong = keys.wrong_file();
    let ns = Netns::new("ia-sync");
    let _chrony = keyed_chrony(&ns, &keys);
    let conf = |id: u16, file: &Path| {
        format!(
            "server 127.0.0.1 port {CHRONY_PORT} key {id} iburst minpoll 4\n\
             restrict default\nkeys {}\ntrustedkey {id}\n",
            file.display()
        )
    };
    let spawned = Instant::now();
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for kind in KeyKind::ALL {
        let id = keys.trusted(kind).id;
        good.push((
            kind,
            spawn_meridian(Some(&ns), &conf(id, &right), 11200 + id, LOOPBACK),
        ));
        bad.push((
            kind,
            spawn_meridian(Some(&ns), &conf(id, &wrong), 11210 + id, LOOPBACK),
        ));
    }

    let (_, took) = wait_until(Duration::from_secs(30), Duration::from_millis(250), || {
        good.iter()
            .all(|(_, m)| synced_to_chrony(&ns, m.addr))
            .then_some(())
    })
    .unwrap_or_else(|| {
        let state: Vec<String> = good
            .iter()
            .map(|(k, m)| {
                format!(
                    "{k:?}: synced {} row {:?}",
                    synced_to_chrony(&ns, m.addr),
                    chrony_row(&ns, m.addr.port())
                )
            })
            .collect();
        panic!("not all keyed daemons synced to chronyd within 30 s: {state:?}")
    });
    eprintln!(
        "keyed daemons synced {:.1} s after start ({took:?} of polling)",
        spawned.elapsed().as_secs_f64()
    );
    for (kind, m) in &good {
        let row = chrony_row(&ns, m.addr.port()).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        assert_eq!(row.tally, '*', "{kind:?}: {row:?}");
        assert_ne!(row.reach, "0", "{kind:?}: {row:?}");
    }

    // The wrong-secret daemons started with the right ones: judge them one
    // iburst interval (2 s) after the right ones had all synchronised (and
    // no sooner than 10 s after the start: five requests or more each).
    let judge_at = spawned + spawned.elapsed().max(Duration::from_secs(8)) + Duration::from_secs(2);
    thread::sleep(judge_at.saturating_duration_since(Instant::now()));
    for (kind, m) in &bad {
        let row = chrony_row(&ns, m.addr.port())
            .unwrap_or_else(|e| panic!("{kind:?} (wrong secret): {e}"));
        assert_ne!(
            row.tally, '*',
            "{kind:?} (wrong secret) selected chrony: {row:?}"
        );
        assert_eq!(
            row.reach, "0",
            "{kind:?} (wrong secret): a reply was accepted: {row:?}"
        );
        assert!(
            !synced_to_chrony(&ns, m.addr),
            "{kind:?} (wrong secret) serves as synchronised to chrony"
        );
    }
    eprintln!(
        "our_daemon_syncs_from_chronyd_with_keys: {:?} (wrong keys watched for {:.1} s)",
        started.elapsed(),
        spawned.elapsed().as_secs_f64()
    );
}

/// Our `ntpdate -q -a N -k FILE --port 11124` against `keyed_chrony`, for
/// each key type: the server line (stratum 3, offset ≈ 0) with our keys
/// file and equally with chrony's own keyfile (`HEX:` syntax, `AES128`);
/// with a wrong secret for N, or a key chrony does not have (`-p 2 -t 1`
/// to keep it short; chrony drops such requests without a crypto-NAK), no
/// reply is accepted: the stratum-0 line, "no server suitable for
/// synchronization found", exit 1. All twelve runs go in parallel.
#[test]
fn our_ntpdate_authenticates_against_chronyd() {
    if !require_root_and_tools(&["chronyd"]) {
        return;
    }
    let started = Instant::now();
    let keys = TestKeys::generate();
    let ours = keys.client_file();
    let chrony_syntax = keys.chrony_file();
    let wrong = keys.wrong_file();
    let ns = Netns::new("ia-ntpdate");
    let _chrony = keyed_chrony(&ns, &keys);
    let port = CHRONY_PORT.to_string();

    let accepted = |args: &[&str], what: &str| {
        let out = meridian_ntpdate_query(Some(&ns), args);
        let ctx = format!(
            "{what}: ntpdate -q {}\n{}",
            args.join(" "),
            describe_output(&out)
        );
        assert!(out.status.success(), "{ctx}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let (server, stratum, offset, delay) = stdout
            .lines()
            .find_map(parse_ntpdate_server_line)
            .unwrap_or_else(|| panic!("no server line:\n{ctx}"));
        assert_eq!((server.as_str(), stratum), ("127.0.0.1", 3), "{ctx}");
        assert!(offset_ok(offset, delay / 2.0), "{ctx}");
        assert!(
            stdout.contains("adjust time server 127.0.0.1 offset"),
            "{ctx}"
        );
    };
    let refused = |args: &[&str], what: &str| {
        let t = Instant::now();
        let out = meridian_ntpdate_query(Some(&ns), args);
        eprintln!("{what}: {:?}", t.elapsed());
        let ctx = format!(
            "{what}: ntpdate -q {}\n{}",
            args.join(" "),
            describe_output(&out)
        );
        assert_eq!(out.status.code(), Some(1), "{ctx}");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            all.contains("no server suitable for synchronization found"),
            "{ctx}"
        );
        assert!(
            all.lines()
                .filter_map(parse_ntpdate_server_line)
                .all(|(_, stratum, _, _)| stratum == 0),
            "a reply was accepted:\n{ctx}"
        );
    };
    per_kind(|kind| {
        let id = keys.trusted(kind).id.to_string();
        let unknown = keys.unknown(kind).id.to_string();
        let o = ours.to_string_lossy();
        let c = chrony_syntax.to_string_lossy();
        let w = wrong.to_string_lossy();
        thread::scope(|s| {
            let a = s.spawn(|| {
                accepted(
                    &["-a", &id, "-k", &o, "--port", &port, "127.0.0.1"],
                    &format!("{kind:?}, our keys file"),
                )
            });
            let b = s.spawn(|| {
                accepted(
                    &["-a", &id, "-k", &c, "--port", &port, "127.0.0.1"],
                    &format!("{kind:?}, chrony's keyfile"),
                )
            });
            let c = s.spawn(|| {
                refused(
                    &[
                        "-p",
                        "2",
                        "-t",
                        "1",
                        "-a",
                        &id,
                        "-k",
                        &w,
                        "--port",
                        &port,
                        "127.0.0.1",
                    ],
                    &format!("{kind:?}, wrong secret"),
                )
            });
            let d = s.spawn(|| {
                refused(
                    &[
                        "-p",
                        "2",
                        "-t",
                        "1",
                        "-a",
                        &unknown,
                        "-k",
                        &o,
                        "--port",
                        &port,
                        "127.0.0.1",
                    ],
                    &format!("{kind:?}, key {unknown} unknown to chrony"),
                )
            });
            for h in [a, b, c, d] {
                if let Err(e) = h.join() {
                    std::panic::resume_unwind(e);
                }
            }
        });
    });
    eprintln!(
        "our_ntpdate_authenticates_against_chronyd: {:?}",
        started.elapsed()
    );
}
