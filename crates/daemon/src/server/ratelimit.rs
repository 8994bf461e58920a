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
//! thousands of addresses, so an IPv4 client costs one entry of [`CLIENT_BYTES`] bytes
//! with nothing beside it (no index, no list links) and an IPv6 client, whose address
//! alone is 16 bytes, two adjacent entries. The table is a set-associative cache, as chrony's client
//! log is: an address hashes (keyed with a random seed, since attackers choose source
//! addresses) to two small sets of [`WAYS`] entries and lives in one of them; a new
//! client takes a free entry (an IPv6 client an aligned free pair) in either set, or else
//! evicts the least recently seen of both. So lookups and updates are O(1), the table
//! holds exactly `mru maxdepth` entries
//! (with two choices a full table is nearly every entry in use, and a table no larger
//! than one set is exactly least-recently-used), and once built it never allocates,
//! keeping the serving hot path allocation-free. Its memory is asked for zeroed, so the
//! pages of a large table only become resident as clients arrive.
//!
//! Times are seconds on a monotonic scale passed in by the caller, kept in 1/16 s ticks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Packets' worth of headway a client may bank before it is over its limit (ntpd's
/// `NTP_SHIFT`, the clock filter's depth).
pub const BURST: f64 = 8.0;

/// Entries in one set: few, so a lookup touches at most two short runs of memory. Even,
/// so that an IPv6 client's pair of entries never straddles two sets.
pub const WAYS: usize = 4;

/// Bytes one entry costs (an IPv4 client; an IPv6 client takes two); `mru maxmem` is
/// turned into entries with it.
pub const CLIENT_BYTES: usize = WORDS * std::mem::size_of::<u32>();

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
    /// Packets seen (counting stops at 2^20 − 1, about a million).
    pub count: u64,
    /// Last mode and version seen (for mrulist).
    pub mode_version: u8,
}

// The table is one array of `u32` words, allocated zeroed (so its pages stay untouched
// until used), WORDS to an entry. The last word of every entry is its meta word: what
// the entry holds in the top byte (zero: free), and for a client's first entry the
// source port (low half) and mode and version (third byte) of its latest packet.
//
// An IPv4 client: address, first, last, bucket, meta.
// An IPv6 client, two entries: address (4 words), meta; first, last, bucket, one unused
// word, meta (marked as the tail of a pair).
//
// Times are ticks. The bucket word holds the packet count (low COUNT_BITS, saturating)
// and, in its high DRAINED_BITS, when the leaky bucket will be empty: that time in units
// of 2^`ClientTable::unit_log2` ticks, modulo DRAINED_MODULUS, never earlier than the last
// packet (an empty bucket is empty from then on), so it is recovered from `last`. An
// absolute time rather than the headway banked at `last`, so that packets that leave the
// bucket alone (dropped ones) leave the stored value alone, rounding included.
const WORDS: usize = 5;
const META: usize = WORDS - 1;
const KIND_SHIFT: u32 = 24;
const FREE: u32 = 0;
const V4: u32 = 1;
const V6: u32 = 2;
const V6_TAIL: u32 = 3;
const COUNT_BITS: u32 = 20;
const COUNT_MAX: u32 = (1 << COUNT_BITS) - 1;
const DRAINED_BITS: u32 = 32 - COUNT_BITS;
const DRAINED_MODULUS: i64 = 1 << DRAINED_BITS;
/// Units of the drained time per packet's headway when a headway is long. The bucket
/// never holds more than `BURST + 1` headways, so the drained time lies within
/// 9 × 256 + 2 units after the last packet: fewer than DRAINED_MODULUS, so its low
/// DRAINED_BITS identify it.
const UNITS_PER_HEAD: i64 = 256;

/// Where a client's fields are, as word indices into the table.
#[derive(Debug, Clone, Copy)]
struct Fields {
    first: usize,
    last: usize,
    bucket: usize,
    meta: usize,
}

impl Fields {
    /// The fields of the client whose first entry is `slot`, of `kind` (V4 or V6).
    fn of(slot: usize, kind: u32) -> Fields {
        let w = slot * WORDS;
        if kind == V4 {
            Fields {
                first: w + 1,
                last: w + 2,
                bucket: w + 3,
                meta: w + META,
            }
        } else {
            Fields {
                first: w + WORDS,
                last: w + WORDS + 1,
                bucket: w + WORDS + 2,
                meta: w + META,
            }
        }
    }
}

/// A client's address as the table keys it: IPv4 (also when it came IPv4-mapped over an
/// IPv6 socket) or IPv6, as big-endian words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    V4(u32),
    V6([u32; 4]),
}

impl Key {
    fn of(addr: IpAddr) -> Key {
        let v6 = match addr {
            IpAddr::V4(a) => return Key::V4(u32::from(a)),
            IpAddr::V6(a) => a,
        };
        if let Some(v4) = v6.to_ipv4_mapped() {
            return Key::V4(u32::from(v4));
        }
        let o = v6.octets();
        Key::V6(std::array::from_fn(|i| {
            u32::from_be_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
        }))
    }

    fn kind(&self) -> u32 {
        match self {
            Key::V4(_) => V4,
            Key::V6(_) => V6,
        }
    }

    /// Entries a client takes.
    fn width(&self) -> usize {
        match self {
            Key::V4(_) => 1,
            Key::V6(_) => 2,
        }
    }
}

/// A bounded table of recent clients; see the module comment.
pub struct ClientTable {
    words: Vec<u32>,
    entries: usize,
    sets: u64,
    len: usize,
    hasher: ahash::RandomState,
    limits: RateLimits,
    /// The limits in ticks: headway per packet, bucket size, minimum spacing.
    head: i64,
    limit: i64,
    minimum: i64,
    /// log2 of the ticks per unit of a stored drained time: one tick while a headway
    /// is at most UNITS_PER_HEAD ticks (the default `discard average 3` is 128), else a
    /// 256th of a headway (a headway is a power of two times 16, so is its 256th).
    /// Stored times round up, so a client gains nothing by the rounding.
    unit_log2: u32,
}

impl ClientTable {
    /// A table of `capacity` entries (at least 1), allocated up front. An IPv6 client
    /// takes two, so a one-entry table remembers IPv4 clients only.
    pub fn new(capacity: usize, limits: RateLimits) -> Self {
        Self::with_hasher(capacity, limits, ahash::RandomState::new())
    }

    /// [`ClientTable::new`] with a given hasher (tests fix it to place clients alike
    /// in every run).
    fn with_hasher(capacity: usize, limits: RateLimits, hasher: ahash::RandomState) -> Self {
        let capacity = capacity.max(1);
        let head = (1i64 << limits.average_log2.min(16)) * TICKS_PER_SECOND as i64;
        ClientTable {
            // Zeroed words: `vec!` asks the allocator for zeroed memory, which a large
            // table gets as fresh pages nobody has written.
            words: vec![0u32; capacity * WORDS],
            entries: capacity,
            sets: capacity.div_ceil(WAYS) as u64,
            len: 0,
            hasher,
            limits,
            head,
            limit: (BURST as i64) * head,
            minimum: (limits.minimum * TICKS_PER_SECOND).round() as i64,
            unit_log2: (head / UNITS_PER_HEAD).max(1).ilog2(),
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
        let key = Key::of(addr);
        let now = to_ticks(now);
        let meta = key.kind() << KIND_SHIFT | u32::from(mode_version) << 16 | u32::from(port);
        let (a, b) = self.sets_of(&key);
        let Some(slot) = self.find(a, &key).or_else(|| self.find(b, &key)) else {
            // A client the table cannot hold (IPv6 in a one-entry table) is served
            // unremembered, as if new each time.
            if let Some(slot) = self.place(a, b, &key) {
                self.insert(slot, &key, now, meta);
            }
            return SERVED;
        };
        let f = Fields::of(slot, key.kind());
        let (head, limit, minimum, unit_log2) =
            (self.head, self.limit, self.minimum, self.unit_log2);
        let w = &mut self.words;
        let last = w[f.last];
        let interval = i64::from(now.saturating_sub(last));
        let bucket = w[f.bucket];
        let count = ((bucket & COUNT_MAX) + 1).min(COUNT_MAX);
        let drained = drained_time(bucket, last, unit_log2);
        w[f.last] = now;
        w[f.meta] = meta;
        let now = i64::from(now);
        let leak = (drained - now).max(0);
        let with_packet = leak + head;
        let one_second = TICKS_PER_SECOND as i64;
        // Grace of one second on the minimum spacing and two on the headway, as ntpd
        // gives, so a client polling exactly at the limits is not punished for jitter.
        let (drained, verdict) = if interval + one_second >= minimum && with_packet < limit {
            (now + with_packet - 2 * one_second, SERVED)
        } else if leak < limit {
            let kod = Verdict {
                over_limit: true,
                kod_allowed: true,
            };
            (now + limit + head, kod)
        } else {
            let dropped = Verdict {
                over_limit: true,
                kod_allowed: false,
            };
            (drained, dropped)
        };
        w[f.bucket] = bucket_word(drained.max(now), count, unit_log2);
        verdict
    }

    /// The clients, most recently seen first.
    pub fn iter_recent(&self) -> impl Iterator<Item = ClientEntry> + '_ {
        let mut held: Vec<(u32, usize)> = (0..self.entries)
            .filter_map(|slot| match self.kind(slot) {
                k @ (V4 | V6) => Some((self.words[Fields::of(slot, k).last], slot)),
                _ => None,
            })
            .collect();
        held.sort_by_key(|&(last, _)| std::cmp::Reverse(last));
        held.into_iter().map(|(_, slot)| self.entry(slot))
    }

    fn kind(&self, slot: usize) -> u32 {
        self.words[slot * WORDS + META] >> KIND_SHIFT
    }

    /// The two sets `key` may live in (the same one twice in a one-set table).
    fn sets_of(&self, key: &Key) -> (usize, usize) {
        let h = self.hasher.hash_one(key);
        // Multiply-shift maps each 32-bit half of the hash onto 0..sets without a division.
        let a = ((h & 0xffff_ffff) * self.sets) >> 32;
        let b = ((h >> 32) * self.sets) >> 32;
        (a as usize, b as usize)
    }

    /// Entry indices of set `set` (the last set is short when WAYS does not divide the
    /// capacity, so the table holds exactly `capacity` entries).
    fn set_range(&self, set: usize) -> std::ops::Range<usize> {
        let start = set * WAYS;
        start..(start + WAYS).min(self.entries)
    }

    /// The first entry of `key`'s client in `set`.
    fn find(&self, set: usize, key: &Key) -> Option<usize> {
        let w = &self.words;
        match key {
            Key::V4(addr) => self
                .set_range(set)
                .find(|&s| self.kind(s) == V4 && w[s * WORDS] == *addr),
            Key::V6(addr) => self
                .set_range(set)
                .step_by(2)
                .find(|&s| self.kind(s) == V6 && w[s * WORDS..s * WORDS + 4] == addr[..]),
        }
    }

    /// Where a new client goes: free entries (an aligned pair for IPv6) in the emptier
    /// set, keeping the sets evenly filled (which lets nearly the whole table fill up
    /// before anyone is evicted); else the place whose clients were seen least recently
    /// in either set, evicted. `None` when no set has room for the client at all.
    fn place(&mut self, a: usize, b: usize, key: &Key) -> Option<usize> {
        let width = key.width();
        let free_in = |set: usize| {
            self.set_range(set)
                .filter(|&s| self.kind(s) == FREE)
                .count()
        };
        let (a, b) = if free_in(a) >= free_in(b) {
            (a, b)
        } else {
            (b, a)
        };
        let mut best: Option<(i64, usize)> = None;
        for set in [a, b] {
            let range = self.set_range(set);
            for s in range.clone().step_by(width) {
                if s + width > range.end {
                    continue;
                }
                // Most recent sighting of a client in the place; below zero for all free,
                // lowest for a single entry whose partner is taken, so that IPv4 clients
                // fill broken pairs first and whole pairs stay free for IPv6 ones.
                let mut recency = (s..s + width)
                    .map(|e| self.last_seen(e))
                    .max()
                    .unwrap_or(-1);
                let partner = s ^ 1;
                if width == 1 && recency < 0 && partner < range.end && self.kind(partner) != FREE {
                    recency = -2;
                }
                if best.is_none_or(|(r, _)| recency < r) {
                    best = Some((recency, s));
                }
                if recency == -2 || (width == 2 && recency < 0) {
                    break;
                }
            }
            if best.is_some_and(|(r, _)| r < 0) {
                break;
            }
        }
        let (_, slot) = best?;
        for e in slot..slot + width {
            self.evict(e);
        }
        Some(slot)
    }

    /// When the client holding entry `slot` was last seen, ticks; -1 if the entry is free.
    fn last_seen(&self, slot: usize) -> i64 {
        match self.kind(slot) {
            FREE => -1,
            V6_TAIL => self.last_seen(slot - 1),
            k => i64::from(self.words[Fields::of(slot, k).last]),
        }
    }

    /// Forget the client holding entry `slot`, if any.
    fn evict(&mut self, slot: usize) {
        match self.kind(slot) {
            FREE => {}
            V6_TAIL => self.evict(slot - 1),
            k => {
                self.words[slot * WORDS + META] = 0;
                if k == V6 {
                    self.words[(slot + 1) * WORDS + META] = 0;
                }
                self.len -= 1;
            }
        }
    }

    /// A new client in the free entries at `slot`.
    fn insert(&mut self, slot: usize, key: &Key, now: u32, meta: u32) {
        let w = slot * WORDS;
        match key {
            Key::V4(addr) => self.words[w] = *addr,
            Key::V6(addr) => {
                self.words[w..w + 4].copy_from_slice(addr);
                self.words[w + WORDS + META] = V6_TAIL << KIND_SHIFT;
            }
        }
        let f = Fields::of(slot, key.kind());
        self.words[f.first] = now;
        self.words[f.last] = now;
        // One packet, an empty bucket.
        self.words[f.bucket] = bucket_word(i64::from(now), 1, self.unit_log2);
        self.words[f.meta] = meta;
        self.len += 1;
    }

    /// The client whose first entry is `slot`.
    fn entry(&self, slot: usize) -> ClientEntry {
        let kind = self.kind(slot);
        let w = &self.words;
        let base = slot * WORDS;
        let addr = if kind == V4 {
            IpAddr::V4(Ipv4Addr::from(w[base]))
        } else {
            let mut octets = [0u8; 16];
            for (chunk, word) in octets.chunks_exact_mut(4).zip(&w[base..base + 4]) {
                chunk.copy_from_slice(&word.to_be_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        };
        let f = Fields::of(slot, kind);
        ClientEntry {
            addr,
            port: w[f.meta] as u16,
            first: f64::from(w[f.first]) / TICKS_PER_SECOND,
            last: f64::from(w[f.last]) / TICKS_PER_SECOND,
            count: u64::from(w[f.bucket] & COUNT_MAX),
            mode_version: (w[f.meta] >> 16) as u8,
        }
    }
}

/// The bucket word for a bucket empty at tick `drained` (not before the packet just
/// seen) and a count.
fn bucket_word(drained: i64, count: u32, unit_log2: u32) -> u32 {
    let units = (drained + (1 << unit_log2) - 1) >> unit_log2;
    ((units & (DRAINED_MODULUS - 1)) as u32) << COUNT_BITS | count
}

/// When the bucket of `bucket_word` is empty, ticks, given its client's last packet.
fn drained_time(bucket: u32, last: u32, unit_log2: u32) -> i64 {
    let last_units = i64::from(last) >> unit_log2;
    let stored = i64::from(bucket >> COUNT_BITS);
    (last_units + ((stored - last_units) & (DRAINED_MODULUS - 1))) << unit_log2
}

/// Seconds to ticks; `as` saturates a negative or huge time to the ends of the range.
fn to_ticks(seconds: f64) -> u32 {
    (seconds * TICKS_PER_SECOND) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
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
        // Sets chosen by a fixed hash: with random ones, all three clients may land in
        // the same set of four entries, where the second IPv6 pair must evict.
        let hasher = ahash::RandomState::with_seeds(1, 2, 3, 4);
        let mut t = ClientTable::with_hasher(64, RateLimits::default(), hasher);
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
    fn an_ipv6_client_takes_two_entries_and_evicts_the_least_recent_pair() {
        let v6 = |n: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, n));
        let held = |t: &ClientTable| {
            let mut a: Vec<IpAddr> = t.iter_recent().map(|e| e.addr).collect();
            a.sort();
            a
        };
        // One set of four entries, full of IPv4 clients seen at 1, 2, 3, 4 s.
        let mut t = ClientTable::new(WAYS, RateLimits::default());
        for n in 1..=4 {
            t.observe(ip(n), 123, f64::from(n), 0x23);
        }
        // The IPv6 client needs a pair: the one whose clients were seen least recently.
        t.observe(v6(1), 123, 5.0, 0x23);
        assert_eq!(held(&t), vec![ip(3), ip(4), v6(1)]);
        // An IPv4 client evicts the least recent single client ...
        t.observe(ip(6), 123, 6.0, 0x23);
        t.observe(ip(7), 123, 7.0, 0x23);
        assert_eq!(held(&t), vec![ip(6), ip(7), v6(1)]);
        // ... and, when that is the IPv6 client, frees both of its entries.
        t.observe(ip(8), 123, 8.0, 0x23);
        assert_eq!(held(&t), vec![ip(6), ip(7), ip(8)]);
        t.observe(ip(9), 123, 9.0, 0x23);
        assert_eq!(t.len(), 4);
        assert_eq!(held(&t), vec![ip(6), ip(7), ip(8), ip(9)]);
    }

    #[test]
    fn ipv6_clients_are_rate_limited_and_counted_like_ipv4_ones() {
        let mut t = ClientTable::new(64, RateLimits::default());
        let v6: IpAddr = "2001:db8::1:2".parse().unwrap();
        let verdicts: Vec<Verdict> = (0..10)
            .map(|i| t.observe(v6, 40000 + i, f64::from(i) * 0.01, 0x23))
            .collect();
        assert!(!verdicts[0].over_limit && verdicts[1..].iter().all(|v| v.over_limit));
        let e = t.iter_recent().next().unwrap();
        assert_eq!((e.addr, e.port, e.count, e.first), (v6, 40009, 10, 0.0));
        // Half of them IPv6 in a table a third full (1500 of 4096 entries): nearly all held.
        let mut t = ClientTable::new(4096, RateLimits::default());
        for n in 0..1000u16 {
            let addr = if n % 2 == 0 {
                ip(u32::from(n))
            } else {
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 1, n))
            };
            t.observe(addr, 1, f64::from(n), 0x23);
        }
        // (A new IPv6 client finding no free pair in either set, which a few do in
        // a table this full, evicts the least recent client there.)
        assert!(t.len() >= 990, "held {} of 1000", t.len());
        assert!(t.iter_recent().all(|e| e.count == 1));
    }

    #[test]
    fn a_one_entry_table_serves_ipv6_clients_without_remembering_them() {
        let mut t = ClientTable::new(1, RateLimits::default());
        let v6: IpAddr = "2001:db8::9".parse().unwrap();
        assert!((0..5).all(|i| !t.observe(v6, 1, f64::from(i), 0x23).over_limit));
        assert!(t.is_empty());
        t.observe(ip(1), 1, 0.0, 0x23);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn times_are_kept_to_a_sixteenth_of_a_second() {
        let mut t = ClientTable::new(2, RateLimits::default());
        t.observe(ip(1), 1, 10.5, 0x23);
        t.observe(ip(1), 1, 74.25, 0x23);
        let e = t.iter_recent().next().unwrap();
        assert_eq!((e.first, e.last), (10.5, 74.25));
    }

    #[test]
    fn the_count_stops_at_its_maximum_and_the_limits_still_hold() {
        let mut t = ClientTable::new(2, RateLimits::default());
        let v = t.observe(ip(1), 1, 0.0, 0x23);
        assert!(!v.over_limit);
        // A flood of more packets than the count holds, all within one tick.
        let limited = (0..COUNT_MAX + 10)
            .filter(|_| t.observe(ip(1), 1, 0.01, 0x23).over_limit)
            .count();
        assert_eq!(limited as u32, COUNT_MAX + 10);
        let e = t.iter_recent().next().unwrap();
        assert_eq!(e.count, u64::from(COUNT_MAX));
        // The bucket drained in time as the other tests expect, whatever the flood: still
        // past the limit 5 s after the KoD, served again after 30 s.
        let v = t.observe(ip(1), 1, 5.0, 0x23);
        assert!(v.over_limit && !v.kod_allowed);
        assert!(!t.observe(ip(1), 1, 30.0, 0x23).over_limit);
    }

    #[test]
    fn long_averages_keep_their_bucket_in_coarser_units_without_letting_a_flood_drain_it() {
        // average 2^10 s: a headway of 1024 s, the drained time kept in units of 4 s.
        let limits = RateLimits {
            average_log2: 10,
            minimum: 2.0,
        };
        let mut t = ClientTable::new(2, limits);
        // Every 600 s respects the minimum but not the average: the bucket fills by
        // 422 s per packet (424 s less the 2 s grace) and overflows at packet 17.
        let first_limited = (0..40)
            .position(|i| t.observe(ip(1), 1, f64::from(i) * 600.0, 0x23).over_limit)
            .expect("limited");
        assert!((16..=18).contains(&first_limited), "{first_limited}");
        // The KoD banked 9 headways (9216 s). A flood, one packet every tick for a
        // minute, is dropped without KoDs and leaves the bucket to drain in real time:
        // past the limit (8 headways) 1000 s after the KoD, served again once a full
        // packet fits (below 7 headways banked) after 2048 s.
        let kod_at = first_limited as f64 * 600.0;
        for k in 1..=960 {
            let v = t.observe(ip(1), 1, kod_at + f64::from(k) / 16.0, 0x23);
            assert!(v.over_limit && !v.kod_allowed, "flood packet {k}");
        }
        let v = t.observe(ip(1), 1, kod_at + 1000.0, 0x23);
        assert!(v.over_limit && !v.kod_allowed);
        assert!(!t.observe(ip(1), 1, kod_at + 2060.0, 0x23).over_limit);
    }
}
