//! The MRU list as mode 6 sees it, and the nonce that guards it.
//!
//! The list is large, so a reply to `READ_MRU` can be many fragments: classic ntpd only
//! sends it to a client that first fetched a nonce (`REQ_NONCE`) and echoes it back. The
//! nonce is a keyed hash of the client's address and the time it was issued, so only a
//! client that really receives at that address can present a valid one: a spoofer cannot
//! make the server send the big reply to a victim.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use meridian_conf::restrict::{RestrictFlags, RestrictTable};
use meridian_proto::NtpTimestamp;

use crate::server::ratelimit::ClientTable;

/// Seconds a nonce stays valid (ntpd's and ntpq's 16).
pub const NONCE_LIFETIME: u32 = 16;

/// One client, merged over all workers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MruEntry {
    /// The client's address.
    pub addr: IpAddr,
    /// Source port of its latest packet (`rport` in `ntpq -c mrulist`).
    pub port: u16,
    /// First packet seen.
    pub first: NtpTimestamp,
    /// Last packet seen.
    pub last: NtpTimestamp,
    /// Packets seen.
    pub count: u64,
    /// Mode and version of its last packet (`(version << 3) | mode`).
    pub mode_version: u8,
    /// The `restrict` flags that apply to it.
    pub restrict: RestrictFlags,
}

/// Read access to the clients the server has seen.
pub trait MruView {
    /// Every client, least recently seen first (the order `READ_MRU` walks).
    fn entries(&self) -> Vec<MruEntry>;
}

impl MruView for Vec<MruEntry> {
    fn entries(&self) -> Vec<MruEntry> {
        let mut v = self.to_vec();
        v.sort_by_key(|e| e.last);
        v
    }
}

/// The workers' client tables, each behind its own lock (held by its worker for one
/// batch at a time), with the mapping of their monotonic seconds to NTP time.
#[derive(Clone)]
pub struct WorkerTables {
    tables: Arc<Mutex<Vec<Arc<Mutex<ClientTable>>>>>,
    /// NTP time at monotonic second 0 of the tables.
    epoch: NtpTimestamp,
}

impl WorkerTables {
    /// No tables yet; their times count seconds from `epoch`.
    pub fn new(epoch: NtpTimestamp) -> Self {
        WorkerTables {
            tables: Arc::new(Mutex::new(Vec::new())),
            epoch,
        }
    }

    /// Register one worker's table.
    pub fn register(&self, table: Arc<Mutex<ClientTable>>) {
        if let Ok(mut t) = self.tables.lock() {
            t.push(table);
        }
    }

    /// A view with the restrict flags of `restrict`.
    pub fn view<'a>(&'a self, restrict: &'a RestrictTable) -> TablesView<'a> {
        TablesView {
            tables: self,
            restrict,
        }
    }
}

/// [`WorkerTables`] read through one restrict table.
pub struct TablesView<'a> {
    tables: &'a WorkerTables,
    restrict: &'a RestrictTable,
}

impl MruView for TablesView<'_> {
    fn entries(&self) -> Vec<MruEntry> {
        let tables: Vec<_> = match self.tables.tables.lock() {
            Ok(t) => t.clone(),
            Err(_) => return Vec::new(),
        };
        // One client can be in several workers' tables (SO_REUSEPORT spreads its source
        // ports): merge by address, keeping the mode, version and port of the latest.
        let mut merged: HashMap<IpAddr, (f64, f64, u64, u8, u16)> = HashMap::new();
        for table in tables {
            let Ok(t) = table.lock() else { continue };
            for e in t.iter_recent() {
                let m =
                    merged
                        .entry(e.addr)
                        .or_insert((e.first, e.last, 0, e.mode_version, e.port));
                m.0 = m.0.min(e.first);
                if e.last >= m.1 {
                    m.1 = e.last;
                    m.3 = e.mode_version;
                    m.4 = e.port;
                }
                m.2 += e.count;
            }
        }
        let epoch = self.tables.epoch;
        let mut v: Vec<MruEntry> = merged
            .into_iter()
            .map(
                |(addr, (first, last, count, mode_version, port))| MruEntry {
                    addr,
                    port,
                    first: epoch.add_seconds(first),
                    last: epoch.add_seconds(last),
                    count,
                    mode_version,
                    restrict: self.restrict.lookup(addr),
                },
            )
            .collect();
        v.sort_by_key(|e| (e.last, e.addr));
        v
    }
}

/// The secret behind nonces: a randomly keyed SipHash.
#[derive(Debug, Clone, Default)]
pub struct NonceKey(std::collections::hash_map::RandomState);

impl NonceKey {
    /// A fresh random key.
    pub fn new() -> Self {
        Self::default()
    }

    fn tag(&self, addr: IpAddr, issued: NtpTimestamp) -> u64 {
        let mut h = self.0.build_hasher();
        addr.hash(&mut h);
        issued.to_bits().hash(&mut h);
        h.finish()
    }

    /// The nonce for a client at `addr`, issued at `now`.
    pub fn issue(&self, addr: IpAddr, now: NtpTimestamp) -> String {
        format!("{:016x}{:016x}", now.to_bits(), self.tag(addr, now))
    }

    /// Whether `nonce` was issued to `addr` less than [`NONCE_LIFETIME`] s before `now`.
    pub fn verify(&self, nonce: &str, addr: IpAddr, now: NtpTimestamp) -> bool {
        if nonce.len() != 32 || !nonce.is_ascii() {
            return false;
        }
        let (Ok(issued), Ok(tag)) = (
            u64::from_str_radix(&nonce[..16], 16),
            u64::from_str_radix(&nonce[16..], 16),
        ) else {
            return false;
        };
        let issued = NtpTimestamp::from_bits(issued);
        let age = now.diff(issued).to_seconds_f64();
        (0.0..f64::from(NONCE_LIFETIME)).contains(&age) && self.tag(addr, issued) == tag
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::ratelimit::RateLimits;

    #[test]
    fn nonce_binds_address_and_time() {
        let k = NonceKey::new();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let t = NtpTimestamp::from_unix(1_800_000_000, 0);
        let n = k.issue(a, t);
        assert!(k.verify(&n, a, t.add_seconds(1.0)));
        assert!(!k.verify(&n, b, t.add_seconds(1.0)), "another address");
        assert!(!k.verify(&n, a, t.add_seconds(17.0)), "expired");
        assert!(!k.verify(&n, a, t.add_seconds(-1.0)), "from the future");
        assert!(!NonceKey::new().verify(&n, a, t), "another key");
        let mut forged = n.clone();
        forged.replace_range(31.., if n.ends_with('0') { "1" } else { "0" });
        assert!(!k.verify(&forged, a, t));
        assert!(!k.verify("zz", a, t));
        assert!(!k.verify(&"é".repeat(16), a, t));
    }

    #[test]
    fn tables_merge_by_address_oldest_first() {
        let epoch = NtpTimestamp::from_unix(1_800_000_000, 0);
        let w = WorkerTables::new(epoch);
        let (t1, t2) = (
            Arc::new(Mutex::new(ClientTable::new(8, RateLimits::default()))),
            Arc::new(Mutex::new(ClientTable::new(8, RateLimits::default()))),
        );
        w.register(t1.clone());
        w.register(t2.clone());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        t1.lock().unwrap().observe(a, 40000, 1.0, 0x23);
        t1.lock().unwrap().observe(b, 123, 2.0, 0x23);
        t2.lock().unwrap().observe(a, 40001, 5.0, 0x16);
        t1.lock().unwrap().observe(a, 40002, 3.0, 0x23);
        let restrict = RestrictTable::default();
        let e = w.view(&restrict).entries();
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].addr, e[1].addr), (b, a));
        assert_eq!((e[1].count, e[1].mode_version, e[1].port), (3, 0x16, 40001));
        assert_eq!(e[0].port, 123);
        assert_eq!(e[1].first, epoch.add_seconds(1.0));
        assert_eq!(e[1].last, epoch.add_seconds(5.0));
    }
}
