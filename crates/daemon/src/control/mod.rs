//! The control protocol (NTP mode 6, RFC 9327) in the daemon: what `ntpq` and `ntpstat`
//! talk to.
//!
//! * [`vars`]: the published [`ControlSnapshot`] and the wire spelling of each variable.
//! * [`local`]: building a snapshot from what the server serves (the local clock driver
//!   today; the sync work fills it from its sources).
//! * [`mru`]: the workers' client tables as one MRU list, and the nonce guarding it.
//! * [`auth`]: MACs on requests (the `controlkey` authorizes writes) and on responses.
//! * [`handler`]: one request in, response fragments out, sans-IO.
//!
//! Data flow: the main loop publishes a snapshot through [`SharedControl`] (an `ArcSwap`,
//! as for the serving state); a worker that receives a mode 6 request the `restrict`
//! table lets through calls [`handle_request`] with the current snapshot and a view of
//! every worker's client table.

pub mod auth;
pub mod handler;
pub mod local;
pub mod mru;
pub mod network;
pub mod vars;

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use meridian_proto::NtpTimestamp;

pub use auth::ControlAuth;
pub use handler::{handle_request, ControlEnv, ControlOutcome};
pub use local::{local_snapshot, system_variables, ControlPublisher, HostInfo};
pub use mru::{MruEntry, MruView, NonceKey, WorkerTables};
pub use vars::{ControlSnapshot, PeerVariables, SystemVariables};

/// What every worker shares for mode 6: the published snapshot, the client tables, the
/// nonce key and the common time origin of the client tables. Cheap to clone.
#[derive(Clone)]
pub struct SharedControl {
    snapshot: Arc<ArcSwap<ControlSnapshot>>,
    /// All workers' client tables.
    pub tables: WorkerTables,
    /// The key nonces are made with.
    pub nonce: Arc<NonceKey>,
    /// Monotonic origin of the client tables' times (shared, so tables can be merged).
    pub epoch: Instant,
}

impl SharedControl {
    /// Start publishing `initial`; `now` is the served clock's time, which the client
    /// tables' monotonic times are mapped from.
    pub fn new(initial: ControlSnapshot, now: NtpTimestamp) -> Self {
        SharedControl {
            snapshot: Arc::new(ArcSwap::from_pointee(initial)),
            tables: WorkerTables::new(now),
            nonce: Arc::new(NonceKey::new()),
            epoch: Instant::now(),
        }
    }

    /// The current snapshot.
    pub fn load(&self) -> Arc<ControlSnapshot> {
        self.snapshot.load_full()
    }

    /// Replace the snapshot.
    pub fn publish(&self, snapshot: ControlSnapshot) {
        self.snapshot.store(Arc::new(snapshot));
    }
}

/// A random association id base, as ntpd starts from a random id: ids then differ
/// between runs, so a client cannot mistake a restarted server's associations for the
/// old ones.
pub fn random_association_id() -> u16 {
    rand::random::<u16>().clamp(1, u16::MAX - 1024)
}

#[cfg(test)]
mod tests;
