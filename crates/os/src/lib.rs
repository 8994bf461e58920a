//! The one place in Meridian with `unsafe` code: system calls that std does not offer.
//!
//! It owns these things and nothing else:
//! - [`udp`]: batched UDP receive and send (`recvmmsg`/`sendmmsg`) carrying the kernel's
//!   receive timestamp (`SO_TIMESTAMPNS`) and the destination address (`IP_PKTINFO`), so a
//!   server replies from the address a request reached;
//! - [`kernel_clock`]: the kernel clock behind the [`meridian_clock::Clock`] trait, through
//!   `clock_gettime` and `clock_adjtime`;
//! - [`observe_clock`]: the observe-only clock, which reads the kernel clock and keeps its
//!   corrections in software, never adjusting the machine (like `chronyd -x`);
//! - process settings and facts: [`memory`] (one malloc arena), [`privilege`], [`process`],
//!   [`seccomp`], [`syslog`], [`localtime`];
//! - for the benchmark tools in `crates/bench`, which build on [`udp`] too: [`poll`]
//!   (epoll over many sockets) and [`host`] (CPU pinning, the `/proc` clock tick).
//!
//! Everything above this crate is safe code.
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod host;
pub mod kernel_clock;
pub mod localtime;
pub mod memory;
pub mod observe_clock;
pub mod poll;
pub mod privilege;
pub mod process;
pub mod seccomp;
pub mod syslog;
pub mod udp;

pub use kernel_clock::{read_realtime, KernelClock};
pub use observe_clock::ObserveClock;
