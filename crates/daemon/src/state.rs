//! What the server hands out, shared between the sync side and the serving workers.
//!
//! The sync side publishes a new [`ServingState`] whenever its view changes; workers read
//! the current one without locks (an `ArcSwap` load per batch), so serving never waits
//! for the discipline.

use std::sync::Arc;

use arc_swap::ArcSwap;
use meridian_clock::TimeCorrection;
use meridian_proto::{NtpTimestamp, ServerState};

/// A leap second smeared into the served time (`leapsmearinterval`): over the interval
/// that ends at the leap, the served time drifts linearly by the leap's second, so
/// clients never see the jump (and are not told about it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeapSmear {
    /// When smearing starts, Unix seconds of the served clock.
    pub start: f64,
    /// When it ends: the leap itself.
    pub end: f64,
    /// Seconds to add by the end: -1 for an inserted second, +1 for a deleted one.
    pub amount: f64,
}

impl LeapSmear {
    /// The smear offset at Unix time `t`: 0 before the start and after the leap (when
    /// the clock itself has made the step).
    pub fn offset_at(&self, t: f64) -> f64 {
        if t <= self.start || t >= self.end {
            0.0
        } else {
            self.amount * (t - self.start) / (self.end - self.start)
        }
    }
}

/// A snapshot of everything a reply depends on.
#[derive(Debug, Clone, Copy)]
pub struct ServingState {
    /// Leap, stratum, root delay and dispersion, refid, reference time, precision.
    pub server: ServerState,
    /// How to turn kernel timestamps into the served clock's time.
    pub correction: TimeCorrection,
    /// A leap second being smeared, if any.
    pub smear: Option<LeapSmear>,
}

impl ServingState {
    /// The time to serve for kernel time `raw`: the clock's correction, then any smear.
    pub fn served(&self, raw: NtpTimestamp) -> NtpTimestamp {
        let t = self.correction.apply(raw);
        match self.smear {
            None => t,
            Some(smear) => {
                let (secs, nanos) = t.to_unix(smear.end as i64);
                let offset = smear.offset_at(secs as f64 + f64::from(nanos) * 1e-9);
                if offset == 0.0 {
                    t
                } else {
                    t.add_seconds(offset)
                }
            }
        }
    }
}

/// The published snapshot, cheap to read from many threads.
#[derive(Debug, Clone)]
pub struct SharedState(Arc<ArcSwap<ServingState>>);

impl SharedState {
    /// Start publishing `initial`.
    pub fn new(initial: ServingState) -> Self {
        SharedState(Arc::new(ArcSwap::from_pointee(initial)))
    }

    /// The current snapshot.
    pub fn load(&self) -> arc_swap::Guard<Arc<ServingState>> {
        // A guard, not `load_full`: no shared reference count to bounce between workers.
        self.0.load()
    }

    /// Replace the snapshot.
    pub fn publish(&self, state: ServingState) {
        self.0.store(Arc::new(state));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smear_is_linear_over_the_interval_and_gone_after_the_leap() {
        let s = LeapSmear {
            start: 1000.0,
            end: 1000.0 + 86_400.0,
            amount: -1.0,
        };
        assert_eq!(s.offset_at(999.0), 0.0);
        assert!((s.offset_at(1000.0 + 43_200.0) + 0.5).abs() < 1e-12);
        assert!((s.offset_at(1000.0 + 86_399.0) + 86_399.0 / 86_400.0).abs() < 1e-12);
        assert_eq!(s.offset_at(1000.0 + 86_400.0), 0.0);
    }
}
