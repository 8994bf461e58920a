//! Meridian's synchronisation core, sans IO: the associations and the system process
//! that selects among them and disciplines the clock.
//!
//! [`Source`] is one association (poll schedule, reach, exchange validation, clock
//! filter). [`SyncCore`] owns them all, runs selection, clustering and combining
//! (`meridian_algo::select`) whenever a filter produces a new sample, feeds the result to
//! the discipline, and keeps the system variables that the server hands out and `ntpq`
//! shows. It also reselects at every poll, without touching the clock, so a system peer
//! that goes silent (reach 0) or stale (root distance beyond `maxdist`) is dropped. The daemon drives it with real sockets and clocks; the simulator drives the
//! very same code with simulated ones. Nothing here reads a clock or touches a socket.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod poll;
pub mod pool;
pub mod source;
pub mod system;

pub use pool::{Pool, PoolReview, Resolver, POOL_SHUN, POOL_UNREACH_LIMIT};
pub use source::{
    PeerInfo, Source, SourceEvent, SourceOptions, BURST_INTERVAL, BURST_LENGTH, UNREACH_BACKOFF,
};
pub use system::{
    AssocKind, Association, AuthRejection, LeapSecond, Receipt, SyncConfig, SyncCore, SystemVars,
    MAX_REQUEST_LEN,
};
