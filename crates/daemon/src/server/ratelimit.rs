//! The per-client table behind `restrict … limited` and `discard`: classic ntpd's MRU list.
//!
//! Each client address has a leaky bucket, as ntpd's monitor does: every packet adds
//! `2^average` seconds of "headway" and elapsed time drains it; a client whose bucket
//! would pass [`BURST`] packets' worth, or who sends faster than `minimum` seconds apart
//! (with ntpd's one-second grace), is over its limit. The first packet over the limit
//! may be answered with a KoD and pushes the bucket past the limit; further packets are
//! dropped without a KoD until the client has drained its bucket, so a flood cannot turn
//! the server into a KoD cannon.
//!
//! Like ntpd's, the table has one entry per address (a client cannot dodge its limit by
//! changing ports, as a cron'ed `ntpdate` does each run) and remembers the source port of
//! its latest packet, which `ntpq -c mrulist` shows as `rport`.
//!
//! The table is bounded (`mru maxdepth`): when full, the least recently seen client is
//! evicted. Lookups and updates are O(1), and once built the table never allocates, so
//! the serving hot path stays allocation-free. Times are seconds on a monotonic scale
//! passed in by the caller.

use std::collections::HashMap;
use std::net::IpAddr;

/// Packets' worth of headway a client may bank before it is over its limit (ntpd's
/// `NTP_SHIFT`, the clock filter's depth).
pub const BURST: f64 = 8.0;

/// Rate limits from `discard average N minimum M`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimits {
    /// log2 of the minimum mean spacing in seconds (`discard average`, default 3 = 8 s).
    pub average_log2: u8,
    /// Minimum spacing between two packets in seconds (`discard minimum`, default 2).
    pub minimum: f64,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            average_log2: 3,
            minimum: 2.0,
        }
    }
}

/// What the table says about one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The client is over its limit.
    pub over_limit: bool,
    /// If over its limit, whether it may be sent a KoD now.
    pub kod_allowed: bool,
}

/// Counters of one client, as `ntpq -c mrulist` shows them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClientEntry {
    /// The client's address.
    pub addr: IpAddr,
    /// Source port of its latest packet.
    pub port: u16,
    /// Time of the first packet seen.
    pub first: f64,
    /// Time of the last packet seen.
    pub last: f64,
    /// Packets seen.
    pub count: u64,
    /// Banked headway, seconds.
    leak: f64,
    /// Last mode and version seen (for mrulist).
    pub mode_version: u8,
    prev: u32,
    next: u32,
}

const NIL: u32 = u32::MAX;

/// A bounded table of recent clients with least-recently-used eviction.
pub struct ClientTable {
    // Keyed with a random seed (attackers choose source addresses), but much cheaper
    // than SipHash on the per-packet path.
    index: HashMap<IpAddr, u32, ahash::RandomState>,
    slots: Vec<ClientEntry>,
    /// Most recently used.
    head: u32,
    /// Least recently used.
    tail: u32,
    capacity: usize,
    limits: RateLimits,
}

impl ClientTable {
    /// A table holding at most `capacity` clients (at least 1), allocated up front.
    pub fn new(capacity: usize, limits: RateLimits) -> Self {
        let capacity = capacity.max(1);
        ClientTable {
            index: HashMap::with_capacity_and_hasher(capacity, ahash::RandomState::new()),
            slots: Vec::with_capacity(capacity),
            head: NIL,
            tail: NIL,
            capacity,
            limits,
        }
    }

    /// Number of clients held.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no client is held.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The configured limits.
    pub fn limits(&self) -> RateLimits {
        self.limits
    }

    /// Record a packet from `addr`, source port `port`, at time `now` and say whether it
    /// is over the limit.
    pub fn observe(&mut self, addr: IpAddr, port: u16, now: f64, mode_version: u8) -> Verdict {
        let head = f64::from(1u32 << self.limits.average_log2.min(16));
        let limit = BURST * head;
        let slot = match self.index.get(&addr) {
            Some(&slot) => {
                self.touch(slot);
                slot
            }
            None => {
                let slot = self.insert(addr, now);
                let e = &mut self.slots[slot as usize];
                e.mode_version = mode_version;
                e.port = port;
                return Verdict {
                    over_limit: false,
                    kod_allowed: false,
                };
            }
        };
        let minimum = self.limits.minimum;
        let e = &mut self.slots[slot as usize];
        let interval = (now - e.last).max(0.0);
        e.last = now;
        e.count += 1;
        e.mode_version = mode_version;
        e.port = port;
        e.leak = (e.leak - interval).max(0.0);
        let with_packet = e.leak + head;
        // Grace of one second on the minimum spacing and two on the headway, as ntpd
        // gives, so a client polling exactly at the limits is not punished for jitter.
        if interval + 1.0 >= minimum && with_packet < limit {
            e.leak = with_packet - 2.0;
            Verdict {
                over_limit: false,
                kod_allowed: false,
            }
        } else if e.leak < limit {
            e.leak = limit + head;
            Verdict {
                over_limit: true,
                kod_allowed: true,
            }
        } else {
            Verdict {
                over_limit: true,
                kod_allowed: false,
            }
        }
    }

    /// The clients, most recently seen first.
    pub fn iter_recent(&self) -> impl Iterator<Item = &ClientEntry> {
        let mut cur = self.head;
        std::iter::from_fn(move || {
            if cur == NIL {
                return None;
            }
            let e = &self.slots[cur as usize];
            cur = e.next;
            Some(e)
        })
    }

    fn insert(&mut self, addr: IpAddr, now: f64) -> u32 {
        let entry = ClientEntry {
            addr,
            port: 0,
            first: now,
            last: now,
            count: 1,
            leak: 0.0,
            mode_version: 0,
            prev: NIL,
            next: NIL,
        };
        let slot = if self.slots.len() < self.capacity {
            self.slots.push(entry);
            (self.slots.len() - 1) as u32
        } else {
            // Reuse the least recently used slot.
            let victim = self.tail;
            self.unlink(victim);
            let old = self.slots[victim as usize].addr;
            self.index.remove(&old);
            self.slots[victim as usize] = entry;
            victim
        };
        self.index.insert(addr, slot);
        self.push_front(slot);
        slot
    }

    fn touch(&mut self, slot: u32) {
        if self.head != slot {
            self.unlink(slot);
            self.push_front(slot);
        }
    }

    fn unlink(&mut self, slot: u32) {
        let (prev, next) = {
            let e = &self.slots[slot as usize];
            (e.prev, e.next)
        };
        if prev == NIL {
            self.head = next;
        } else {
            self.slots[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.slots[next as usize].prev = prev;
        }
    }

    fn push_front(&mut self, slot: u32) {
        let old_head = self.head;
        {
            let e = &mut self.slots[slot as usize];
            e.prev = NIL;
            e.next = old_head;
        }
        if old_head != NIL {
            self.slots[old_head as usize].prev = slot;
        }
        self.head = slot;
        if self.tail == NIL {
            self.tail = slot;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn polite_client_is_never_limited() {
        let mut t = ClientTable::new(16, RateLimits::default());
        for i in 0..1000 {
            let v = t.observe(ip(1), 123, i as f64 * 64.0, 0x23);
            assert!(!v.over_limit, "packet {i}");
        }
        assert_eq!(t.iter_recent().next().unwrap().count, 1000);
    }

    #[test]
    fn burst_faster_than_minimum_is_limited_and_kod_is_rationed() {
        let mut t = ClientTable::new(16, RateLimits::default());
        let verdicts: Vec<Verdict> = (0..10)
            .map(|i| t.observe(ip(1), 123, i as f64 * 0.01, 0x23))
            .collect();
        assert!(!verdicts[0].over_limit);
        assert!(verdicts[1..].iter().all(|v| v.over_limit));
        // One KoD for the burst, not one per packet.
        assert_eq!(verdicts.iter().filter(|v| v.kod_allowed).count(), 1);
        // Still banned, without another KoD, while the bucket is past the limit
        // (the KoD left it at limit + head = 72 s of headway).
        let v = t.observe(ip(1), 123, 5.0, 0x23);
        assert!(v.over_limit && !v.kod_allowed);
        // Once drained below the limit, the client is served again.
        assert!(!t.observe(ip(1), 123, 30.0, 0x23).over_limit);
    }

    #[test]
    fn ntpdate_style_one_second_spacing_is_allowed_for_a_few_samples() {
        let mut t = ClientTable::new(16, RateLimits::default());
        for i in 0..8 {
            assert!(
                !t.observe(ip(3), 123, i as f64, 0x23).over_limit,
                "sample {i}"
            );
        }
    }

    #[test]
    fn sustained_rate_above_average_overflows_bucket() {
        // Every 3 s respects minimum (2 s) but not average (8 s): after enough packets
        // the bucket overflows.
        let mut t = ClientTable::new(4, RateLimits::default());
        let first_limited = (0..100)
            .position(|i| t.observe(ip(2), 123, i as f64 * 3.0, 0x23).over_limit)
            .expect("a client sending every 3 s must eventually be limited");
        assert!(
            first_limited > 5,
            "limited too early at packet {first_limited}"
        );
    }

    #[test]
    fn lru_eviction_keeps_table_bounded_and_recent_clients() {
        let mut t = ClientTable::new(3, RateLimits::default());
        for n in 0..3 {
            t.observe(ip(n), 123, n as f64, 0x23);
        }
        // Touch client 0 so client 1 becomes least recent.
        t.observe(ip(0), 123, 10.0, 0x23);
        t.observe(ip(7), 123, 11.0, 0x23);
        assert_eq!(t.len(), 3);
        let addrs: Vec<IpAddr> = t.iter_recent().map(|e| e.addr).collect();
        assert_eq!(addrs, vec![ip(7), ip(0), ip(2)]);
        // A returning evicted client starts afresh.
        let v = t.observe(ip(1), 123, 12.0, 0x23);
        assert!(!v.over_limit);
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn one_entry_per_address_with_the_latest_port() {
        let mut t = ClientTable::new(8, RateLimits::default());
        t.observe(ip(1), 40000, 0.0, 0x23);
        t.observe(ip(1), 40001, 64.0, 0x1b);
        let e = t.iter_recent().next().unwrap();
        assert_eq!(
            (t.len(), e.port, e.count, e.mode_version),
            (1, 40001, 2, 0x1b)
        );
    }

    #[test]
    fn table_never_grows_past_capacity() {
        let mut t = ClientTable::new(100, RateLimits::default());
        for n in 0..10_000 {
            t.observe(ip(n), 123, n as f64, 0x23);
        }
        assert_eq!(t.len(), 100);
        assert_eq!(t.iter_recent().count(), 100);
        assert_eq!(t.index.len(), 100);
    }
}
