//! `peer`: symmetric active associations (RFC 5905 mode 1), on the wire.
//!
//! A small LAN of namespaces: the server namespace (10.123.0.1) runs a Meridian serving
//! its local clock at stratum 3; each client namespace runs one daemon on port 123.
//!
//! * a. Two Meridian daemons, A (server 10.123.0.1 and `peer` B) and B (only `peer` A):
//!   B must synchronise to A through the symmetric association (stratum 5, refid A),
//!   A must take samples from B's mode 1 packets (reach ≠ 0) without selecting it (B
//!   follows A: a timing loop), and A's packets must reach B's association, port to
//!   port, not B's server (B's MRU list never sees A).
//! * b. chronyd as a symmetric peer, both ways: chronyd (`peer` A, `local stratum 10`)
//!   synchronises to Meridian A (stratum 5, refid A), and a Meridian B whose only
//!   source is `peer` chronyd synchronises to it (stratum 6, refid chronyd).
//!
//! * c. NTPsec has no symmetric mode (`peer` is an alias of `server` there, and it
//!   drops mode 1 packets): an NTPsec whose `peer` is Meridian A polls A in mode 3
//!   from port 123, and A (whose peer socket receives those) answers it: NTPsec
//!   synchronises to A (stratum 5, refid A), while A's association with NTPsec stays
//!   unreachable and A keeps its server.
//!
//! Every daemon runs without CAP_SYS_TIME, ours with `--observe`, chronyd with `-x`;
//! port 123 is only used inside the test's own namespaces. Needs root, chrony (b) and the
//! unpacked NTPsec (c, see `scripts/install-test-deps.sh`); skips
//! otherwise, fails when `CI` is set.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use support::control::{meridian_ntpq, parse_peers, PeerRow};
use support::sync::*;
use support::*;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// How long a daemon may take to synchronise through a chain of peers.
const SYNC_LIMIT: Duration = Duration::from_secs(180);

fn lan_ip(host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 123, 0, host))
}

/// The local-clock Meridian (stratum 3) in the LAN's server namespace.
fn stratum3_server(lan: &Lan) -> MeridianServer {
    meridian_server(Some(&lan.server), LOCAL_CLOCK_CONF, 123, LOOPBACK, 3)
}

/// Wait until whatever serves on port 123 in `ns` is synchronised at `stratum` to
/// `ip`; panics with `context` (and the daemons' logs, on drop) if it never is.
fn wait_synced(ns: &Netns, stratum: u8, ip: IpAddr, context: &str) {
    let addr = SocketAddr::new(LOOPBACK, 123);
    let mut last = None;
    let synced = wait_until(SYNC_LIMIT, Duration::from_secs(1), || {
        let p = ntp_probe_maybe_in(Some(ns), addr, Duration::from_secs(1)).ok()?;
        let ok = p.reply.li != 3 && p.reply.stratum == stratum && p.reply.refid == refid_of(ip);
        last = Some(p.reply);
        ok.then_some(())
    });
    assert!(
        synced.is_some(),
        "{context}: not synchronised at stratum {stratum} to {ip} within {SYNC_LIMIT:?}; last reply {last:?}"
    );
}

/// The `ntpq -p` row of `remote` in the Meridian of `ns`.
fn peer_row(ns: &Netns, remote: &str) -> Option<PeerRow> {
    let o = meridian_ntpq(ns, &["-n", "-p"]);
    parse_peers(&String::from_utf8_lossy(&o.stdout))
        .into_iter()
        .find(|r| r.remote == remote)
}

/// Wait until the Meridian of `ns` has heard from `remote` (reach ≠ 0); returns the row.
fn wait_reached(ns: &Netns, remote: &str) -> PeerRow {
    let reached = wait_until(SYNC_LIMIT, Duration::from_secs(2), || {
        peer_row(ns, remote).filter(|r| r.reach != "0")
    });
    let shown = meridian_ntpq(ns, &["-n", "-p"]);
    reached
        .unwrap_or_else(|| {
            panic!(
                "{remote} never reached:\n{}",
                String::from_utf8_lossy(&shown.stdout)
            )
        })
        .0
}

#[test]
fn two_meridian_peers_talk_symmetric_mode_port_to_port() {
    if !require_root_and_tools(&[]) {
        return;
    }
    let lan = Lan::new("peers", &[2, 3]);
    let _server = stratum3_server(&lan);
    let a = spawn_meridian(
        Some(lan.client(2)),
        "server 10.123.0.1 iburst minpoll 4 maxpoll 4\n\
         peer 10.123.0.3 iburst minpoll 4 maxpoll 4\nrestrict default\n",
        123,
        LOOPBACK,
    );
    let b = spawn_meridian(
        Some(lan.client(3)),
        "peer 10.123.0.2 iburst minpoll 4 maxpoll 4\nrestrict default\n",
        123,
        LOOPBACK,
    );
    wait_synced(lan.client(2), 4, lan_ip(1), "A, from its server");
    wait_synced(lan.client(3), 5, lan_ip(2), "B, from its peer A");
    // A hears B's own mode 1 packets, but B follows A: never a source for A.
    let row = wait_reached(lan.client(2), "10.123.0.3");
    assert_ne!(row.tally, '*', "A must not follow B: {row:?}");
    assert_eq!(row.kind, "s", "a peer line is symmetric in ntpq: {row:?}");
    let server_row = peer_row(lan.client(2), "10.123.0.1").expect("A's server row");
    assert_eq!(server_row.kind, "u", "{server_row:?}");
    wait_synced(lan.client(2), 4, lan_ip(1), "A, still from its server");
    for (m, name) in [(&a, "A"), (&b, "B")] {
        let lines = log_lines_with(&m.daemon, "symmetric mode from port 123");
        assert_eq!(lines.len(), 1, "{name}: {}", m.daemon.logs());
    }
    // A's packets go to B's association, port 123 to port 123: B's server does not see
    // them (it would answer them statelessly and count A in its MRU list). Only while B
    // starts, before its peer socket is open, may one of A's first packets reach the
    // server; so the count must not grow over a whole poll interval (16 s) from now.
    let before = mru_count(lan.client(3), "10.123.0.2");
    std::thread::sleep(Duration::from_secs(20));
    let after = mru_count(lan.client(3), "10.123.0.2");
    assert_eq!(before, after, "A's packets keep reaching B's server");
}

/// How many requests from `remote` the server in `ns` has counted (its `mrulist`).
fn mru_count(ns: &Netns, remote: &str) -> u64 {
    let o = meridian_ntpq(ns, &["-n", "-c", "mrulist"]);
    let mru = String::from_utf8_lossy(&o.stdout);
    mru.lines()
        .filter(|l| l.ends_with(&format!(" {remote}")))
        .map(|l| {
            // lstint avgint rstr r m v count rport remote
            let count = l.split_whitespace().nth(6);
            count
                .and_then(|c| c.parse::<u64>().ok())
                .expect("mrulist count column")
        })
        .sum()
}

/// `chronyd -x` in `ns` whose sources are its `peer` lines, with `local stratum 10`
/// as a fallback until a peer is usable.
fn chrony_peer(ns: &Netns, peers: &[&str]) -> ChronyServer {
    chrony_server(
        Some(ns),
        &ChronyServerOpts {
            stratum: 10,
            extra: peers
                .iter()
                .map(|p| format!("peer {p} minpoll 4 maxpoll 4 iburst"))
                .collect(),
            ..ChronyServerOpts::default()
        },
    )
}

#[test]
fn chronyd_is_a_symmetric_peer_both_ways() {
    if !require_root_and_tools(&["chronyd"]) {
        return;
    }
    // C (stratum 3) → Meridian A (.2) ⇄ chronyd X (.3) ⇄ Meridian B (.4).
    let lan = Lan::new("peersc", &[2, 3, 4]);
    let _server = stratum3_server(&lan);
    let a = spawn_meridian(
        Some(lan.client(2)),
        "server 10.123.0.1 iburst minpoll 4 maxpoll 4\n\
         peer 10.123.0.3 iburst minpoll 4 maxpoll 4\nrestrict default\n",
        123,
        LOOPBACK,
    );
    let _x = chrony_peer(lan.client(3), &["10.123.0.2", "10.123.0.4"]);
    let b = spawn_meridian(
        Some(lan.client(4)),
        "peer 10.123.0.3 iburst minpoll 4 maxpoll 4\nrestrict default\n",
        123,
        LOOPBACK,
    );
    wait_synced(lan.client(2), 4, lan_ip(1), "Meridian A, from its server");
    // Meridian → chronyd: chronyd takes A's mode 1 packets as its peer's.
    wait_synced(lan.client(3), 5, lan_ip(2), "chronyd, from its peer A");
    // chronyd → Meridian: B's only source is its peer chronyd.
    wait_synced(
        lan.client(4),
        6,
        lan_ip(3),
        "Meridian B, from its peer chronyd",
    );
    // And A hears chronyd's mode 1 packets (a loop for A, so not selected).
    let row = wait_reached(lan.client(2), "10.123.0.3");
    assert_ne!(row.tally, '*', "A must not follow chronyd: {row:?}");
    for (m, name) in [(&a, "A"), (&b, "B")] {
        let lines = log_lines_with(&m.daemon, "symmetric mode from port 123");
        assert_eq!(lines.len(), 1, "{name}: {}", m.daemon.logs());
    }
}

#[test]
fn ntpsec_peer_line_syncs_to_us_as_a_client() {
    if !require_root_and_tools(&["ntpsec:ntpd"]) {
        return;
    }
    // C (stratum 3) → Meridian A (.2, `peer` NTPsec) ← NTPsec ntpd (.3, `peer` A).
    // NTPsec's `peer` is a `server`: it polls A in mode 3 from its port 123, which is
    // where A's symmetric packets to it come from, so A's peer socket takes those
    // requests and must answer them itself.
    let lan = Lan::new("peersn", &[2, 3]);
    let _server = stratum3_server(&lan);
    let _a = spawn_meridian(
        Some(lan.client(2)),
        "server 10.123.0.1 iburst minpoll 4 maxpoll 4\n\
         peer 10.123.0.3 iburst minpoll 4 maxpoll 4\nrestrict default\n",
        123,
        LOOPBACK,
    );
    let dir = TempDir::new("ntpsec-peer");
    let _ntpsec = support::control::ntpsec_ntpd(
        lan.client(3),
        "peer 10.123.0.2 iburst minpoll 4 maxpoll 4\nrestrict default\n",
        dir.path(),
    );
    wait_synced(lan.client(2), 4, lan_ip(1), "Meridian A, from its server");
    wait_synced(lan.client(3), 5, lan_ip(2), "NTPsec, from its `peer` A");
    // NTPsec drops mode 1, so A's side of the association never hears from it; A is
    // unaffected and keeps its server.
    let row = peer_row(lan.client(2), "10.123.0.3").expect("A's peer row");
    eprintln!("A's association with NTPsec: {row:?}");
    assert_eq!(row.reach, "0", "NTPsec answered mode 1 after all: {row:?}");
    wait_synced(
        lan.client(2),
        4,
        lan_ip(1),
        "Meridian A, still from its server",
    );
}
