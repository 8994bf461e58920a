//! Meridian's clock simulator.
//!
//! A seeded, deterministic model of a local oscillator ([`clock`]),
//! network paths ([`network`]) and servers ([`server`]), driven by
//! [`driver::Simulation`] through the very same filter → select →
//! discipline code the daemon uses. [`scenario`] builds the benchmark
//! scenarios (after chrony's published comparison), [`metrics`] scores
//! them and [`baseline`] provides an RFC 5905 PLL/FLL for comparison.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod baseline;
pub mod clock;
pub mod driver;
pub mod metrics;
pub mod network;
pub mod rng;
pub mod scenario;
pub mod server;
