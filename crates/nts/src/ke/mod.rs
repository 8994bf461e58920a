//! NTS Key Establishment (RFC 8915 §4): the record codec and messages
//! (sans-IO), key export, and the blocking TLS client and server.

pub mod client;
pub mod deadline;
pub mod exporter;
pub mod message;
pub mod record;
pub mod server;
