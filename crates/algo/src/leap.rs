//! Leap-second voting and the "leap pending at end of this UTC day" state.
//!
//! Sources announce an upcoming leap second through the leap indicator
//! during the whole day before it. A single source could lie, so the leap
//! is only armed when a majority of the selection survivors announce it.
//! Time here is UTC seconds from an epoch on a UTC midnight (Unix time, or
//! a simulator's origin): leaps happen at multiples of 86 400 s.

/// Seconds per UTC day.
pub const DAY: f64 = 86_400.0;

/// Kind of leap second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeapKind {
    /// 23:59:60 is inserted: the clock goes back one second.
    Insert,
    /// 23:59:59 is skipped: the clock goes forward one second.
    Delete,
}

impl LeapKind {
    /// The clock step that implements this leap (s).
    pub fn step(self) -> f64 {
        match self {
            LeapKind::Insert => -1.0,
            LeapKind::Delete => 1.0,
        }
    }

    /// The NTP leap indicator value announcing it.
    pub fn indicator(self) -> u8 {
        match self {
            LeapKind::Insert => 1,
            LeapKind::Delete => 2,
        }
    }
}

/// End of the UTC day containing `t` (start of the next day).
pub fn end_of_utc_day(t: f64) -> f64 {
    ((t / DAY).floor() + 1.0) * DAY
}

/// Majority vote over survivors' leap indicators: a kind is returned only
/// when strictly more than half of all voters announce it.
pub fn vote<I: IntoIterator<Item = u8>>(indicators: I) -> Option<LeapKind> {
    let (mut n, mut ins, mut del) = (0usize, 0usize, 0usize);
    for li in indicators {
        n += 1;
        match li {
            1 => ins += 1,
            2 => del += 1,
            _ => {}
        }
    }
    if 2 * ins > n {
        Some(LeapKind::Insert)
    } else if 2 * del > n {
        Some(LeapKind::Delete)
    } else {
        None
    }
}

/// A leap that is armed for a given instant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PendingLeap {
    /// What to do.
    pub kind: LeapKind,
    /// UTC time (s) at which to do it: the end of the announcing day.
    pub at: f64,
}

/// Leap state across selection rounds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LeapState {
    pending: Option<PendingLeap>,
}

impl LeapState {
    /// No leap pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fold in the latest vote at UTC time `now`. A vote for a leap arms it
    /// for the end of today; a vote against disarms it, except within the
    /// last poll-ish minutes where stale servers may already have cleared
    /// their bit — the armed leap then stands.
    pub fn update(&mut self, now: f64, vote: Option<LeapKind>) {
        match vote {
            Some(kind) => {
                self.pending = Some(PendingLeap {
                    kind,
                    at: end_of_utc_day(now),
                })
            }
            None => {
                if let Some(p) = self.pending {
                    if p.at - now > 3600.0 || now >= p.at {
                        self.pending = None;
                    }
                }
            }
        }
    }

    /// The armed leap, if any.
    pub fn pending(&self) -> Option<PendingLeap> {
        self.pending
    }

    /// Leap indicator to announce to our own clients.
    pub fn indicator(&self) -> u8 {
        self.pending.map_or(0, |p| p.kind.indicator())
    }

    /// Call as the clock passes `now`: returns the leap once when due and
    /// disarms it. (A kernel with STA_INS does this itself.)
    pub fn due(&mut self, now: f64) -> Option<LeapKind> {
        match self.pending {
            Some(p) if now >= p.at => {
                self.pending = None;
                Some(p.kind)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_vote() {
        assert_eq!(vote([1, 1, 0]), Some(LeapKind::Insert));
        assert_eq!(vote([1, 0]), None);
        assert_eq!(vote([2, 2, 2, 1]), Some(LeapKind::Delete));
        assert_eq!(vote(Vec::<u8>::new()), None);
    }

    #[test]
    fn arms_for_end_of_day_and_fires_once() {
        let mut s = LeapState::new();
        s.update(3.0 * DAY + 100.0, Some(LeapKind::Insert));
        let p = s.pending().unwrap();
        assert_eq!(p.at, 4.0 * DAY);
        assert_eq!(s.indicator(), 1);
        // Late "no" votes close to midnight do not disarm it.
        s.update(4.0 * DAY - 60.0, None);
        assert_eq!(s.due(4.0 * DAY - 1.0), None);
        assert_eq!(s.due(4.0 * DAY), Some(LeapKind::Insert));
        assert_eq!(s.due(4.0 * DAY + 1.0), None);
        assert_eq!(s.pending(), None);
    }

    #[test]
    fn early_retraction_disarms() {
        let mut s = LeapState::new();
        s.update(100.0, Some(LeapKind::Delete));
        s.update(200.0, None);
        assert_eq!(s.pending(), None);
        assert_eq!(LeapKind::Insert.step(), -1.0);
    }
}
