//! The status page's memory: bounded rings of recent points, in memory only.
//!
//! [`History::record`] is called with the published snapshot about once a second. A
//! source gets a point when it has a new sample (its `rec` time moved), so one point
//! per poll: offset, delay and jitter as the clock filter reports them. The system gets
//! a point when the discipline's offset, frequency, jitter or stratum changed, and at
//! least every [`SYSTEM_EVERY`] seconds so that a quiet daemon still draws a line.
//!
//! Everything is bounded: points older than [`KEEP`] seconds are dropped, each ring
//! holds at most [`MAX_POINTS`] points (a day at a 16 s poll), and at most
//! [`MAX_SOURCES`] sources are tracked (the least recently seen goes first). That is
//! under 15 MB in the worst case, and some hundred kilobytes for a typical daemon.

use std::collections::VecDeque;

use crate::control::ControlSnapshot;

use super::{is_synchronised, source_key, source_name};

/// How long points are kept, in seconds (24 h).
pub const KEEP: f64 = 24.0 * 3600.0;
/// Points per ring at most: 24 h at a 16 s poll interval.
pub const MAX_POINTS: usize = 5400;
/// Sources tracked at most.
pub const MAX_SOURCES: usize = 64;
/// A system point at least this often (seconds), even when nothing changed.
pub const SYSTEM_EVERY: f64 = 60.0;
/// System points at most this often (seconds), however often things change.
pub const SYSTEM_MIN_SPACING: f64 = 1.0;

/// One system point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SystemPoint {
    /// Unix seconds.
    pub t: f64,
    /// System offset, seconds.
    pub offset: f64,
    /// Frequency correction, ppm.
    pub frequency_ppm: f64,
    /// System jitter, seconds.
    pub jitter: f64,
    /// Stratum served.
    pub stratum: u8,
    /// Whether synchronised.
    pub synchronised: bool,
}

impl SystemPoint {
    fn same_state(&self, other: &SystemPoint) -> bool {
        self.offset == other.offset
            && self.frequency_ppm == other.frequency_ppm
            && self.jitter == other.jitter
            && self.stratum == other.stratum
            && self.synchronised == other.synchronised
    }
}

/// One sample of one source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SourcePoint {
    /// Unix seconds when it was seen.
    pub t: f64,
    /// Offset, seconds.
    pub offset: f64,
    /// Round-trip delay, seconds.
    pub delay: f64,
    /// Jitter, seconds.
    pub jitter: f64,
}

/// The points of one source.
#[derive(Debug, Clone)]
pub struct SourceHistory {
    /// The `source` key (address, `:port` when not 123).
    pub key: String,
    /// Its name.
    pub name: String,
    /// Whether it is in the latest snapshot (it may have been removed by a reload).
    pub active: bool,
    /// When it was last in a snapshot.
    pub last_seen: f64,
    /// Its points, oldest first.
    pub points: VecDeque<SourcePoint>,
    last_rec: u64,
}

/// System and per-source rings.
#[derive(Debug, Clone, Default)]
pub struct History {
    system: VecDeque<SystemPoint>,
    sources: Vec<SourceHistory>,
}

fn trim<T>(ring: &mut VecDeque<T>, now: f64, time: impl Fn(&T) -> f64) {
    while ring.len() > MAX_POINTS || ring.front().is_some_and(|p| time(p) < now - KEEP) {
        ring.pop_front();
    }
}

impl History {
    /// Empty.
    pub fn new() -> Self {
        History::default()
    }

    /// The system points, oldest first.
    pub fn system(&self) -> &VecDeque<SystemPoint> {
        &self.system
    }

    /// The sources, in the order first seen.
    pub fn sources(&self) -> &[SourceHistory] {
        &self.sources
    }

    /// Look at `snapshot` at Unix time `now` and record what is new.
    pub fn record(&mut self, snapshot: &ControlSnapshot, now: f64) {
        let sys = &snapshot.system;
        let point = SystemPoint {
            t: now,
            offset: sys.offset,
            frequency_ppm: sys.frequency,
            jitter: sys.sys_jitter,
            stratum: sys.stratum,
            synchronised: is_synchronised(snapshot),
        };
        let due = match self.system.back() {
            None => true,
            Some(last) => {
                let age = now - last.t;
                age >= SYSTEM_EVERY || (age >= SYSTEM_MIN_SPACING && !last.same_state(&point))
            }
        };
        if due {
            self.system.push_back(point);
        }
        trim(&mut self.system, now, |p| p.t);

        for s in &mut self.sources {
            s.active = false;
        }
        for p in &snapshot.peers {
            let key = source_key(p);
            let i = match self.sources.iter().position(|s| s.key == key) {
                Some(i) => i,
                None => {
                    if self.sources.len() >= MAX_SOURCES {
                        let oldest = (0..self.sources.len())
                            .min_by(|&a, &b| {
                                self.sources[a]
                                    .last_seen
                                    .total_cmp(&self.sources[b].last_seen)
                            })
                            .unwrap_or(0);
                        self.sources.remove(oldest);
                    }
                    self.sources.push(SourceHistory {
                        key,
                        name: source_name(p),
                        active: true,
                        last_seen: now,
                        points: VecDeque::new(),
                        last_rec: 0,
                    });
                    self.sources.len() - 1
                }
            };
            let s = &mut self.sources[i];
            s.active = true;
            s.last_seen = now;
            s.name = source_name(p);
            let rec = p.rec.to_bits();
            if rec != 0 && rec != s.last_rec {
                s.last_rec = rec;
                s.points.push_back(SourcePoint {
                    t: now,
                    offset: p.offset,
                    delay: p.delay,
                    jitter: p.jitter,
                });
            }
            trim(&mut s.points, now, |p| p.t);
        }
        self.sources
            .retain(|s| s.active || s.last_seen >= now - KEEP);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::testdata;
    use meridian_proto::NtpTimestamp;

    #[test]
    fn one_point_per_new_sample() {
        let mut h = History::new();
        let mut s = testdata::snapshot();
        h.record(&s, 1000.0);
        h.record(&s, 1001.0);
        assert_eq!(h.sources().len(), 3);
        assert!(h.sources().iter().all(|s| s.points.len() == 1));
        s.peers[0].rec = NtpTimestamp::from_unix(1_800_000_016, 0);
        s.peers[0].offset = 0.002;
        h.record(&s, 1002.0);
        let p = &h.sources()[0].points;
        assert_eq!(p.len(), 2);
        assert_eq!((p[1].t, p[1].offset), (1002.0, 0.002));
        assert_eq!(h.sources()[1].points.len(), 1);
    }

    #[test]
    fn system_points_on_change_and_at_least_every_minute() {
        let mut h = History::new();
        let mut s = testdata::snapshot();
        h.record(&s, 0.0);
        h.record(&s, 30.0);
        assert_eq!(h.system().len(), 1, "nothing changed");
        s.system.offset = 0.001;
        h.record(&s, 30.5);
        assert_eq!(h.system().len(), 2, "changed");
        s.system.offset = 0.002;
        h.record(&s, 31.0);
        assert_eq!(h.system().len(), 2, "too soon after the last point");
        h.record(&s, 31.5);
        assert_eq!(h.system().len(), 3);
        h.record(&s, 60.0);
        assert_eq!(h.system().len(), 3, "nothing changed");
        h.record(&s, 91.5);
        assert_eq!(h.system().len(), 4, "a minute passed");
    }

    #[test]
    fn rings_are_bounded_in_age_count_and_sources() {
        let mut h = History::new();
        let mut s = testdata::snapshot();
        for i in 0..(MAX_POINTS as u32 + 100) {
            s.peers[0].rec = NtpTimestamp::from_unix(1_800_000_000 + i64::from(i) + 1, 0);
            h.record(&s, f64::from(i) * 16.0 / 10.0);
        }
        assert_eq!(h.sources()[0].points.len(), MAX_POINTS);
        // A day later, with nothing new, old points age out.
        h.record(&s, 20.0 * KEEP);
        assert!(h.sources()[0].points.is_empty());
        assert_eq!(h.system().len(), 1);

        let template = s.peers[0].clone();
        s.peers = (0..MAX_SOURCES as u16 + 10)
            .map(|i| {
                let mut p = template.clone();
                p.srcport = 2000 + i;
                p
            })
            .collect();
        h.record(&s, 21.0 * KEEP);
        assert_eq!(h.sources().len(), MAX_SOURCES);
    }
}
