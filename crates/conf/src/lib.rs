//! `meridian-conf`: the classic `ntp.conf` grammar turned into a typed
//! [`Config`], plus the `restrict` access engine ([`RestrictTable`],
//! [`decide`]).
//!
//! The crate is sans-IO: the only file access goes through the injected
//! [`ConfigSource`] (used for the main file and for `includefile`), so the
//! whole parser runs against in-memory text in tests.
//!
//! Entry points: [`parse_config`] and [`parse_str`]. Unknown directives are
//! warnings (in [`Config::warnings`]); bad values are errors, all of which are
//! collected into [`ConfigErrors`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod args;
mod assoc;
mod config;
mod diag;
mod driver;
mod effective;
mod iface;
pub mod leapfile;
mod lexer;
mod misc;
mod nts;
pub mod restrict;
mod source;
mod stats;
mod system;

use std::path::Path;

pub use assoc::{AddrFamily, AssociationKind, FudgeConfig, SourceConfig, SourceKind};
pub use config::{Config, DriftFile, Unsupported};
pub use diag::{ConfigErrors, Diagnostic, Severity};
pub use iface::{InterfaceAction, InterfaceRule, InterfaceTarget};
pub use nts::NtsConfig;
pub use restrict::{
    decide, Decision, KodKind, PacketMode, RestrictDirective, RestrictFlags, RestrictMatch,
    RestrictTable, RestrictTarget,
};
pub use source::{ConfigSource, FsSource, MemorySource};
pub use stats::{FileGenConfig, FileGenType, StatsKind};
pub use system::{Discard, Mru, MruSize, SystemFlags, Tinker, Tos};

/// Parse the configuration file at `path`, reading it (and every
/// `includefile`) through `source`.
///
/// A main file that cannot be read is an error; a missing include is a
/// warning, as in classic ntpd.
pub fn parse_config(path: &Path, source: &dyn ConfigSource) -> Result<Config, ConfigErrors> {
    driver::parse_root(path, None, source)
}

/// Parse `text` as if it were the contents of a file called `name`.
///
/// Relative `includefile` paths are resolved against the directory of
/// `name` and read through `source`.
pub fn parse_str(
    name: &str,
    text: &str,
    source: &dyn ConfigSource,
) -> Result<Config, ConfigErrors> {
    driver::parse_root(Path::new(name), Some(text), source)
}
