//! Meridian's sans-IO clock algorithms.
//!
//! Nothing here reads a clock, sleeps or touches the network: every time
//! is an `f64` of seconds passed in by the caller, so the daemon and the
//! simulator run the very same code. The pipeline per sample is
//! [`filter::ClockFilter`] → [`select::select`] →
//! [`discipline::Discipline`], whose [`command::ClockCommand`] is applied
//! to a [`command::ClockControl`]; [`leap`] handles leap seconds.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bank;
pub mod bounds;
pub mod command;
pub mod discipline;
pub mod estimator;
pub mod filter;
pub mod leap;
pub mod noise;
pub mod select;

pub use command::{ClockCommand, ClockControl, DisciplineEvent};
pub use discipline::{Discipline, DisciplineConfig, DisciplineStats, MAX_SLEW_RATE_PPM};
pub use filter::{ClockFilter, FilterOutput, FilterResult, Sample};
pub use leap::{LeapKind, LeapState, PendingLeap};
pub use select::{select, Candidate, SelectConfig, SelectStatus, Selection};
