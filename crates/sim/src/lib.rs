//! Meridian's clock simulator.
//!
//! A seeded, deterministic model of a local oscillator ([`clock`]),
//! network paths ([`network`]) and servers ([`server`]). [`driver::Simulation`]
//! runs the daemon's own sync core (`meridian_sync::SyncCore`) against them,
//! exchanging real NTP packets, so what is measured here is what the daemon
//! does. [`scenario`] builds the benchmark scenarios (after chrony's published
//! comparison) and [`metrics`] scores them. [`direct`] drives a discipline
//! without the core, for the RFC 5905 PLL/FLL comparison ([`baseline`]).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod baseline;
pub mod clock;
pub mod direct;
pub mod driver;
pub mod metrics;
pub mod network;
pub mod rng;
pub mod scenario;
pub mod server;
