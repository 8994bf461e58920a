//! The `restrict` access engine, with classic ntpd semantics.
//!
//! * [`RestrictFlags`]: the flag set of an entry.
//! * [`RestrictDirective`]: one parsed `restrict` line.
//! * [`RestrictTable`]: separate IPv4 and IPv6 lists, most-specific match
//!   wins, identical address/mask entries OR their flags, `source`
//!   templates, unresolved host names; [`RestrictTable::lookup`] is
//!   allocation-free for the per-packet hot path.
//! * [`decide`]: what the server does with a packet given the flags.

mod decide;
mod flags;
pub(crate) mod parse;
mod table;

pub use decide::{decide, Decision, KodKind, PacketMode};
pub use flags::RestrictFlags;
pub use table::{RestrictDirective, RestrictEntry, RestrictMatch, RestrictTable, RestrictTarget};
