//! A tiny DNS server for tests that need real name lookups (glibc's resolver, as the
//! daemon uses it) without leaving the machine.
//!
//! * [`DnsServer`]: answers `A` queries for the names it is given (TTL 0), `AAAA` with no
//!   records, anything else with NXDOMAIN, and counts the queries; its thread stops on
//!   drop.
//! * [`NetnsResolvConf`]: `/etc/netns/NAME/resolv.conf` naming 127.0.0.1, which
//!   `ip netns exec NAME` (how [`super::sandboxed`] enters a namespace) bind-mounts
//!   over `/etc/resolv.conf` for the programs it starts; removed on drop.

use std::collections::HashMap;
use std::fs;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::{enter_netns, Netns};

/// Record types.
pub const TYPE_A: u16 = 1;
/// IPv6 address record.
pub const TYPE_AAAA: u16 = 28;
const RCODE_NXDOMAIN: u16 = 3;

/// A running DNS server; stopped and joined on drop.
pub struct DnsServer {
    queries: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DnsServer {
    /// Serve `names` (lower case, without the final dot) on 127.0.0.1:53 inside
    /// `netns`.
    pub fn start_in(netns: &Netns, names: &[(&str, Ipv4Addr)]) -> DnsServer {
        let names: HashMap<String, Ipv4Addr> =
            names.iter().map(|(n, a)| (n.to_string(), *a)).collect();
        let queries = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let path = netns.path();
        let (q, st) = (Arc::clone(&queries), Arc::clone(&stop));
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = thread::spawn(move || {
            enter_netns(&path);
            let sock = UdpSocket::bind("127.0.0.1:53").expect("bind 127.0.0.1:53");
            sock.set_read_timeout(Some(Duration::from_millis(50)))
                .expect("timeout");
            tx.send(()).expect("ready");
            let mut buf = [0u8; 1500];
            while !st.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(reply) = answer(&buf[..n], &names) {
                    q.fetch_add(1, Ordering::Relaxed);
                    let _ = sock.send_to(&reply, from);
                }
            }
        });
        rx.recv().expect("DNS server started");
        DnsServer {
            queries,
            stop,
            thread: Some(thread),
        }
    }

    /// Queries answered so far.
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The reply to `query` from a server of `names`, or `None` if it is not a
/// one-question query.
pub fn answer(query: &[u8], names: &HashMap<String, Ipv4Addr>) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 || query[4..6] != [0, 1] {
        return None;
    }
    // The question: labels, then type and class.
    let mut labels = Vec::new();
    let mut i = 12;
    loop {
        let len = usize::from(*query.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(query.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*query.get(i)?, *query.get(i + 1)?]);
    let question_end = i + 4;
    if query.len() < question_end {
        return None;
    }
    let address = names.get(&labels.join("."));
    let (rcode, record) = match (address, qtype) {
        (Some(a), TYPE_A) => (0, Some(a)),
        (Some(_), TYPE_AAAA) => (0, None),
        (Some(_), _) => (0, None),
        (None, _) => (RCODE_NXDOMAIN, None),
    };
    let mut reply = Vec::with_capacity(question_end + 16);
    reply.extend_from_slice(&query[..2]); // id
                                          // QR, the query's RD, RA, the rcode.
    let flags = 0x8080 | (u16::from(query[2] & 0x01) << 8) | rcode;
    reply.extend_from_slice(&flags.to_be_bytes());
    reply.extend_from_slice(&[0, 1]); // one question
    reply.extend_from_slice(&u16::from(record.is_some()).to_be_bytes());
    reply.extend_from_slice(&[0, 0, 0, 0]); // no authority, no additional
    reply.extend_from_slice(&query[12..question_end]);
    if let Some(a) = record {
        reply.extend_from_slice(&[0xc0, 12]); // the question's name
        reply.extend_from_slice(&TYPE_A.to_be_bytes());
        reply.extend_from_slice(&[0, 1]); // IN
        reply.extend_from_slice(&[0, 0, 0, 0]); // TTL 0
        reply.extend_from_slice(&[0, 4]);
        reply.extend_from_slice(&a.octets());
    }
    Some(reply)
}

/// `/etc/netns/NAME/resolv.conf` pointing at 127.0.0.1 (quick tries), removed with its
/// directory on drop.
pub struct NetnsResolvConf {
    dir: PathBuf,
    /// Whether `/etc/netns` itself was made here (then removed too, if empty).
    made_parent: bool,
}

impl NetnsResolvConf {
    /// Create it for `netns`.
    pub fn new(netns: &Netns) -> NetnsResolvConf {
        let made_parent = !std::path::Path::new("/etc/netns").exists();
        let dir = PathBuf::from("/etc/netns").join(netns.name());
        fs::create_dir_all(&dir).expect("create /etc/netns/NAME");
        fs::write(
            dir.join("resolv.conf"),
            "nameserver 127.0.0.1\noptions timeout:1 attempts:2\n",
        )
        .expect("write resolv.conf");
        NetnsResolvConf { dir, made_parent }
    }
}

impl Drop for NetnsResolvConf {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
        if self.made_parent {
            let _ = fs::remove_dir("/etc/netns");
        }
    }
}
