//! What the server hands out, shared between the sync side and the serving workers.
//!
//! The sync side publishes a new [`ServingState`] whenever its view changes; workers read
//! the current one without locks (an `ArcSwap` load per batch), so serving never waits
//! for the discipline.

use std::sync::Arc;

use arc_swap::ArcSwap;
use meridian_clock::TimeCorrection;
use meridian_proto::ServerState;

/// A snapshot of everything a reply depends on.
#[derive(Debug, Clone, Copy)]
pub struct ServingState {
    /// Leap, stratum, root delay and dispersion, refid, reference time, precision.
    pub server: ServerState,
    /// How to turn kernel timestamps into the served clock's time.
    pub correction: TimeCorrection,
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
