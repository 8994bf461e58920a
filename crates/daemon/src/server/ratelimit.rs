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
//! Memory is the constraint that shapes the layout: a public server sees hundreds of
//! thousands of addresses, so an entry is [`CLIENT_BYTES`] bytes with nothing beside it
//! (no index, no list links). The table is a set-associative cache, as chrony's client
//! log is: an address hashes (keyed with a random seed, since attackers choose source
//! addresses) to two small sets of [`WAYS`] entries and lives in one of them; a new
//! client takes a free entry in either set, or else evicts the least recently seen of
//! both. So lookups and updates are O(1), the table holds exactly `mru maxdepth` entries
//! (with two choices a full table is nearly every entry in use, and a table no larger
//! than one set is exactly least-recently-used), and once built it never allocates,
//! keeping the serving hot path allocation-free. Its memory is asked for zeroed, so the
//! pages of a large table only become resident as clients arrive.
//!
//! Times are seconds on a monotonic scale passed in by the caller, kept in 1/16 s ticks.

use std::net::{IpAddr, Ipv6Addr};

/// Packets' worth of headway a client may bank before it is over its limit (ntpd's
/// `NTP_SHIFT`, the clock filter's depth).
pub const BURST: f64 = 8.0;

/// Entries in one set: few, so a lookup touches at most two short runs of memory.
pub const WAYS: usize = 4;

/// Bytes one remembered client costs; `mru maxmem` is turned into entries with it.
pub const CLIENT_BYTES: usize = std::mem::size_of::<Slot>();

/// Ticks per second of the stored times: fine enough for the one-second grace of the
/// rate limits, coarse enough that a `u32` lasts 8.5 years of uptime.
const TICKS_PER_SECOND: f64 = 16.0;

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

const SERVED: Verdict = Verdict {
    over_limit: false,
    kod_allowed: false,
};

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
    /// Last mode and version seen (for mrulist).
    pub mode_version: u8,
}

/// One entry as plain words, so that a table of them can be allocated zeroed (and its
/// pages left untouched until used): see the `W_*` indices. A zero count marks it free.
type Slot = [u32; 9];
/// Words 0..4: the address, IPv4 as IPv4-mapped IPv6, big-endian words.
const W_ADDR: usize = 0;
/// First packet, ticks.
const W_FIRST: usize = 4;
/// Latest packet, ticks.
const W_LAST: usize = 5;
/// Packets seen, saturating; 0 for a free entry.
const W_COUNT: usize = 6;
/// Tick at which the leaky bucket will be empty (the banked headway is this minus now).
const W_DRAINED: usize = 7;
/// Source port in the low half, mode and version above it.
const W_META: usize = 8;

/// A bounded table of recent clients; see the module comment.
pub struct ClientTable {
    slots: Vec<Slot>,
    sets: u64,
    len: usize,
    hasher: ahash::RandomState,
    limits: RateLimits,
    /// The limits in ticks: headway per packet, bucket size, minimum spacing.
    head: i64,
    limit: i64,
    minimum: i64,
}

impl ClientTable {
    /// A table holding at most `capacity` clients (at least 1), allocated up front.
    pub fn new(capacity: usize, limits: RateLimits) -> Self {
        let capacity = capacity.max(1);
        let head = (1i64 << limits.average_log2.min(16)) * TICKS_PER_SECOND as i64;
        ClientTable {
            // Zeroed words: `vec!` asks the allocator for zeroed memory, which a large
            // table gets as fresh pages nobody has written.
            slots: vec![[0u32; 9]; capacity],
            sets: capacity.div_ceil(WAYS) as u64,
            len: 0,
            hasher: ahash::RandomState::new(),
            limits,
            head,
            limit: (BURST as i64) * head,
            minimum: (limits.minimum * TICKS_PER_SECOND).round() as i64,
        }
    }

    /// Number of clients held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no client is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The configured limits.
    pub fn limits(&self) -> RateLimits {
        self.limits
    }

    /// Record a packet from `addr`, source port `port`, at time `now` and say whether it
    /// is over the limit.
    pub fn observe(&mut self, addr: IpAddr, port: u16, now: f64, mode_version: u8) -> Verdict {
        let key = key(addr);
        let now = to_ticks(now);
        let meta = u32::from(port) | u32::from(mode_version) << 16;
        let (a, b) = self.sets_of(&key);
        let Some(i) = self.find(a, &key).or_else(|| self.find(b, &key)) else {
            let i = self.free_or_oldest(a, b);
            let s = &mut self.slots[i];
            if s[W_COUNT] == 0 {
                self.len += 1;
            }
            s[W_ADDR..W_ADDR + 4].copy_from_slice(&key);
            s[W_FIRST] = now;
            s[W_LAST] = now;
            s[W_COUNT] = 1;
            s[W_DRAINED] = now;
            s[W_META] = meta;
            return SERVED;
        };
        let (head, limit, minimum) = (self.head, self.limit, self.minimum);
        let s = &mut self.slots[i];
        let interval = i64::from(now.saturating_sub(s[W_LAST]));
        s[W_LAST] = now;
        s[W_COUNT] = s[W_COUNT].saturating_add(1);
        s[W_META] = meta;
        let now = i64::from(now);
        let leak = (i64::from(s[W_DRAINED]) - now).max(0);
        let with_packet = leak + head;
        let one_second = TICKS_PER_SECOND as i64;
        // Grace of one second on the minimum spacing and two on the headway, as ntpd
        // gives, so a client polling exactly at the limits is not punished for jitter.
        if interval + one_second >= minimum && with_packet < limit {
            s[W_DRAINED] = saturate(now + with_packet - 2 * one_second);
            SERVED
        } else if leak < limit {
            s[W_DRAINED] = saturate(now + limit + head);
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
    pub fn iter_recent(&self) -> impl Iterator<Item = ClientEntry> + '_ {
        let mut held: Vec<&Slot> = self.slots.iter().filter(|s| s[W_COUNT] != 0).collect();
        held.sort_by_key(|s| std::cmp::Reverse(s[W_LAST]));
        held.into_iter().map(entry)
    }

    /// The two sets `key` may live in (the same one twice in a one-set table).
    fn sets_of(&self, key: &[u32; 4]) -> (usize, usize) {
        let h = self.hasher.hash_one(key);
        // Multiply-shift maps each 32-bit half of the hash onto 0..sets without a division.
        let a = ((h & 0xffff_ffff) * self.sets) >> 32;
        let b = ((h >> 32) * self.sets) >> 32;
        (a as usize, b as usize)
    }

    /// Slot indices of set `set` (the last set is short when WAYS does not divide the
    /// capacity, so the table holds exactly `capacity` entries).
    fn set_range(&self, set: usize) -> std::ops::Range<usize> {
        let start = set * WAYS;
        start..(start + WAYS).min(self.slots.len())
    }

    fn find(&self, set: usize, key: &[u32; 4]) -> Option<usize> {
        self.set_range(set)
            .find(|&i| self.slots[i][W_COUNT] != 0 && self.slots[i][W_ADDR..W_ADDR + 4] == key[..])
    }

    /// A free slot in the emptier set (keeping the sets evenly filled is what lets
    /// nearly the whole table fill up before anyone is evicted), else the least recently
    /// seen entry of both sets.
    fn free_or_oldest(&self, a: usize, b: usize) -> usize {
        let free = |set: usize| {
            let mut range = self.set_range(set);
            let n = range
                .clone()
                .filter(|&i| self.slots[i][W_COUNT] == 0)
                .count();
            (n, range.find(|&i| self.slots[i][W_COUNT] == 0))
        };
        let ((na, fa), (nb, fb)) = (free(a), free(b));
        if let Some(i) = if na >= nb { fa.or(fb) } else { fb } {
            return i;
        }
        let mut oldest = a * WAYS;
        for i in self.set_range(a).chain(self.set_range(b)) {
            if self.slots[i][W_LAST] < self.slots[oldest][W_LAST] {
                oldest = i;
            }
        }
        oldest
    }
}

fn key(addr: IpAddr) -> [u32; 4] {
    let v6 = match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    };
    let o = v6.octets();
    std::array::from_fn(|i| {
        u32::from_be_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
    })
}

fn entry(s: &Slot) -> ClientEntry {
    let mut octets = [0u8; 16];
    for (chunk, word) in octets.chunks_exact_mut(4).zip(&s[W_ADDR..W_ADDR + 4]) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    let v6 = Ipv6Addr::from(octets);
    ClientEntry {
        addr: v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        port: s[W_META] as u16,
        first: f64::from(s[W_FIRST]) / TICKS_PER_SECOND,
        last: f64::from(s[W_LAST]) / TICKS_PER_SECOND,
        count: u64::from(s[W_COUNT]),
        mode_version: (s[W_META] >> 16) as u8,
    }
}

/// Seconds to ticks; `as` saturates a negative or huge time to the ends of the range.
fn to_ticks(seconds: f64) -> u32 {
    (seconds * TICKS_PER_SECOND) as u32
}

fn saturate(ticks: i64) -> u32 {
    ticks.clamp(0, i64::from(u32::MAX)) as u32
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
    fn an_iburst_client_settling_on_a_noisy_path_is_never_limited() {
        // The client's own schedule: the train, then every start-up poll it may send
        // (it stays settling throughout), then minpoll. ntpd's default `discard`
        // (average 8 s, minimum 2 s) must serve all of it, as ours does.
        use meridian_sync::poll::{PollState, SETTLING_POLLS};
        let mut poll = PollState::new(6, 10, 0.0, true);
        let mut t = ClientTable::new(16, RateLimits::default());
        let mut times = vec![];
        for i in 0..8 + usize::from(SETTLING_POLLS) + 8 {
            let now = poll.next_at();
            poll.on_transmit(now, i == 0, true, false);
            poll.follow_settling(true, now + 0.05);
            times.push(now);
            let v = t.observe(ip(1), 123, now + 0.01, 0x23);
            assert!(!v.over_limit, "packet {i} at {now} s: {times:?}");
        }
        assert!(times.windows(2).any(|w| w[1] - w[0] == 8.0), "{times:?}");
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
        // The most recent client is always kept.
        assert_eq!(t.iter_recent().next().unwrap().addr, ip(9_999));
    }

    #[test]
    fn a_full_large_table_keeps_nearly_all_recent_clients_and_evicts_old_ones() {
        let n = 10_000;
        let mut t = ClientTable::new(n, RateLimits::default());
        for i in 0..n as u32 {
            t.observe(ip(i), 123, f64::from(i), 0x23);
        }
        // Two choices of set: few clients are pushed out before the table is full.
        assert!(t.len() > n * 9 / 10, "held {} of {n}", t.len());
        for i in n as u32..3 * n as u32 {
            t.observe(ip(i), 123, f64::from(i), 0x23);
        }
        assert_eq!(t.len(), n);
        // After twice the capacity of newer clients, next to none of the first ones is
        // left (eviction is least-recently-used within a client's two sets, not over the
        // whole table) and most of the newest are.
        let held: Vec<u32> = t
            .iter_recent()
            .map(|e| match e.addr {
                IpAddr::V4(a) => u32::from(a) - 0x0a00_0000,
                IpAddr::V6(_) => panic!("an IPv4 client came back as IPv6"),
            })
            .collect();
        let first = held.iter().filter(|&&i| i < n as u32).count();
        let newest = held.iter().filter(|&&i| i >= 2 * n as u32).count();
        assert!(first < n / 100, "first held: {first}");
        assert!(newest > n * 8 / 10, "newest held: {newest}");
        // A held client is found again, not given a second entry.
        let before = t.len();
        let e = t.iter_recent().next().unwrap();
        t.observe(e.addr, 9, 1e6, 0x23);
        assert_eq!(t.len(), before);
        assert_eq!(t.iter_recent().next().unwrap().count, 2);
    }

    #[test]
    fn ipv6_and_ipv4_clients_are_kept_apart_and_round_trip() {
        let mut t = ClientTable::new(8, RateLimits::default());
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        let low6: IpAddr = "::c000:207".parse().unwrap();
        t.observe(v4, 1, 1.0, 0x23);
        t.observe(v6, 2, 2.0, 0x23);
        t.observe(low6, 3, 3.0, 0x23);
        let got: Vec<(IpAddr, u16)> = t.iter_recent().map(|e| (e.addr, e.port)).collect();
        assert_eq!(got, vec![(low6, 3), (v6, 2), (v4, 1)]);
    }

    #[test]
    fn times_are_kept_to_a_sixteenth_of_a_second() {
        let mut t = ClientTable::new(2, RateLimits::default());
        t.observe(ip(1), 1, 10.5, 0x23);
        t.observe(ip(1), 1, 74.25, 0x23);
        let e = t.iter_recent().next().unwrap();
        assert_eq!((e.first, e.last), (10.5, 74.25));
    }
}
