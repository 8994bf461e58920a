//! `pool`: a name that stands for up to `tos maxclock` servers, with unreachable members
//! replaced from a fresh resolution, on the wire.
//!
//! The client namespace gets its own `/etc/hosts` (`ip netns exec` bind-mounts
//! `/etc/netns/NAME/hosts` over it), so `pool.test` resolves without any DNS server.
//! It first names a live Meridian (10.123.0.1) and an address where nothing answers
//! (10.123.0.9); with `tos maxclock 2` the daemon mobilises both. Then the name also
//! lists a second live address (10.123.0.10): after the dead member has missed enough
//! polls, the daemon must drop it and mobilise 10.123.0.10 instead, which then answers.
//!
//! The daemons run without CAP_SYS_TIME, with `--observe`; port 123 is only used inside
//! the test's own namespaces. Needs root; skips otherwise, fails when `CI` is set.

mod support;

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use support::control::{meridian_ntpq, parse_peers, PeerRow};
use support::sync::*;
use support::*;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// `/etc/netns/NAME/hosts` for one namespace; removed (with its directory) on drop.
struct NetnsHosts {
    dir: PathBuf,
}

impl NetnsHosts {
    fn new(ns: &Netns, names: &str) -> NetnsHosts {
        let dir = PathBuf::from("/etc/netns").join(ns.name());
        fs::create_dir_all(&dir).expect("create /etc/netns/NAME");
        let hosts = NetnsHosts { dir };
        hosts.write(names);
        hosts
    }

    /// Rewrite in place: the bind mount follows the inode, not the name.
    fn write(&self, names: &str) {
        fs::write(
            self.dir.join("hosts"),
            format!("127.0.0.1 localhost\n{names}"),
        )
        .expect("write hosts");
    }
}

impl Drop for NetnsHosts {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn peers(ns: &Netns) -> Vec<PeerRow> {
    let o = meridian_ntpq(ns, &["-n", "-p"]);
    parse_peers(&String::from_utf8_lossy(&o.stdout))
}

#[test]
fn an_unreachable_pool_member_is_replaced() {
    if !require_root_and_tools(&[]) {
        return;
    }
    let lan = Lan::new("pool", &[2]);
    lan.server
        .ip(&["addr", "add", "10.123.0.10/24", "dev", "br0"]);
    let _server = meridian_server(Some(&lan.server), LOCAL_CLOCK_CONF, 123, LOOPBACK, 3);
    let ns = lan.client(2);
    let hosts = NetnsHosts::new(ns, "10.123.0.1 pool.test\n10.123.0.9 pool.test\n");
    let m = spawn_meridian(
        Some(ns),
        "tos minclock 1 maxclock 2\npool pool.test iburst minpoll 3 maxpoll 3\nrestrict default\n",
        123,
        LOOPBACK,
    );
    // ntpq -p names pool members by the pool's name; the log names their addresses.
    for ip in ["10.123.0.1", "10.123.0.9"] {
        assert_eq!(
            log_lines_with(&m.daemon, &format!("pool pool.test ({ip}:123)")).len(),
            1,
            "{ip} mobilised:\n{}",
            m.daemon.logs()
        );
    }
    hosts.write("10.123.0.1 pool.test\n10.123.0.9 pool.test\n10.123.0.10 pool.test\n");
    // Eight unanswered 8 s polls, then the next 64 s review: about two minutes.
    let replaced = wait_until(Duration::from_secs(240), Duration::from_secs(2), || {
        let rows = peers(ns);
        let answering = rows.len() == 2 && rows.iter().all(|r| r.reach != "0");
        let added = !log_lines_with(&m.daemon, "pool pool.test (10.123.0.10:123)").is_empty();
        (answering && added).then_some(rows)
    });
    let (rows, _) = replaced.unwrap_or_else(|| {
        panic!(
            "the dead member was not replaced: {:?}\n{}",
            peers(ns),
            m.daemon.logs()
        )
    });
    assert!(
        rows.iter()
            .all(|r| r.remote == "pool.test" && r.stratum == "3"),
        "two live members at stratum 3: {rows:?}"
    );
    let dropped = log_lines_with(&m.daemon, "dropping unreachable member");
    assert!(
        dropped.len() == 1 && dropped[0].contains("10.123.0.9"),
        "{dropped:?}"
    );
    assert_eq!(
        log_lines_with(&m.daemon, "(10.123.0.10:123)").len(),
        1,
        "mobilised once"
    );
}
