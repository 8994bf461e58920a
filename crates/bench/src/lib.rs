//! Meridian's serving benchmarks.
//!
//! Two binaries and a microbenchmark:
//!
//! * `loadgen` offers NTP client requests to a server at a fixed rate (or as fast as it
//!   can) from many loopback source addresses, validates every reply against the request
//!   it answers, and reports replies per second, loss, latency percentiles and, for a
//!   watched server process, CPU time per reply and memory. With `--nts` it runs NTS-KE
//!   first and sends NTS-protected requests, checking every reply's authenticator ([`nts`]).
//! * `udp-echo` answers the same requests with no NTP logic at all, batched: the physical
//!   limit of this kernel's UDP path, against which servers are compared.
//! * `benches/hotpath.rs` times the pieces of the daemon's per-packet work in isolation.
//!
//! `bench/serve.sh` at the top of the workspace runs them side by side against Meridian
//! and chronyd. The sockets and system calls are `meridian_os`'s, the same batched UDP
//! code the daemon serves with: this crate has no `unsafe` code of its own.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod clock;
pub mod ntp;
pub mod nts;
pub mod stats;
