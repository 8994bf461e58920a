//! Network Time Security (RFC 8915) for Meridian: everything an NTS client
//! and an NTS server need.
//!
//! * NTS-KE (TLS 1.3, ALPN `ntske/1`, port 4460): the record codec and
//!   messages ([`ke::record`], [`ke::message`], sans-IO), key export
//!   ([`ke::exporter`]), a blocking client [`key_exchange`] and a bounded,
//!   deadline-guarded server [`NtsKeServer`].
//! * Cookies ([`cookie`]): the RFC's recommended format, sealed with
//!   rotating master keys ([`KeyRing`]) that can be shared through a key
//!   file ([`keyfile`]).
//! * NTS extension fields in NTP packets ([`fields`]): the client
//!   association state [`NtsClientState`] and the server's per-packet
//!   [`NtsServer::process_request`], both writing into caller buffers.
//! * Certificates for tests and small setups ([`certs`]).
//!
//! Only AEAD_AES_SIV_CMAC_256 (the mandatory algorithm) is implemented.
//!
//! Daemon integration, server side: build one [`SharedKeyRing`] (from
//! [`keyfile::load_key_file`] or [`KeyRing::generate`]), hand clones to an
//! [`NtsKeServer`] (on its own thread) and an [`NtsServer`] (in every
//! worker). For each mode-3 datagram, build the plain reply header, then
//! call [`NtsServer::process_request`]: `Reply`/`Nak` → send
//! `out[..len]`; `Drop` → send nothing; `NotNts` → the plain NTP path.
//! Call [`SharedKeyRing::rotate_if_due`] from a timer and save the ring.
//!
//! Client side: [`key_exchange`] (on a helper thread) yields an
//! [`NtsClientState`]; for each poll, [`NtsClientState::build_request`]
//! with a fresh random UID, send to `(state.server, state.port)`, and pass
//! replies through [`NtsClientState::process_response`] before the usual
//! `Exchange::on_reply`. Re-key when
//! [`NtsClientState::needs_key_exchange`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod aead;
pub mod certs;
pub mod client;
pub mod cookie;
pub mod error;
pub mod fields;
pub mod ke;
pub mod keyfile;
pub mod server;
pub mod tls;

pub use aead::{AeadKey, SivKey, AEAD_AES_SIV_CMAC_256};
pub use certs::{generate_test_ca_and_server_cert, CertPaths};
pub use client::{NtsClientState, NTP_PORT};
pub use cookie::{KeyRing, MasterKey, SessionKeys, SharedKeyRing, COOKIE_LEN};
pub use error::{KeError, NtsError};
pub use fields::UID_LEN;
pub use ke::client::key_exchange;
pub use ke::message::{KeRequest, KeResponse, NtpServerInfo};
pub use ke::server::{KeStats, NtsKeConfig, NtsKeServer};
pub use server::{NtsOutcome, NtsServer};
pub use tls::{TrustAnchors, ALPN_NTSKE, NTS_KE_PORT};

#[cfg(test)]
mod tests;
