//! The classic front ends: `ntpdate`, `ntpq` and `ntpstat`.
//!
//! Each tool is a module with a `main(args) -> ExitCode` that the `meridian` binary calls,
//! either as a subcommand or when installed under the classic name. Output formats follow
//! the classic tools to the character, because administrators' scripts parse them.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cli;
pub mod keygen;
pub mod mode6_client;
pub mod ntpdate;
pub mod ntpq;
pub mod ntpstat;
pub mod ntscerts;
mod query;
pub mod status;
