//! Meridian's sans-IO NTP protocol core: wire formats (header, extension
//! fields, MAC trailer), time formats, the client request/response
//! exchange and server reply construction.
//!
//! Nothing in this crate opens a socket or reads a clock: callers pass in
//! bytes and timestamps and get bytes and samples back. Encoding and
//! decoding never allocate and never panic, whatever the input.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod calendar;
pub mod control;
pub mod exchange;
pub mod extension;
pub mod mac;
pub mod packet;
pub mod refid;
pub mod server;
pub mod timestamp;

pub use control::{
    ControlHeader, ControlRequest, ErrorCode, Fragmenter, PeerSelect, PeerStatus, Reassembly,
    RequestError, SystemStatus, VarItem, VarList, VarWriter,
};
pub use exchange::{
    new_client_request, offset_delay, validate_reply, ClientRequest, Exchange, ReplyError, Sample,
    PHI,
};
pub use extension::{
    extension_fields, write_extension_field, ExtensionField, ExtensionIter, MIN_EXTENSION_LEN,
};
pub use mac::{
    md5_digest, parse_mac_trailer, verify_md5, MacTrailer, CRYPTO_NAK_LEN, MAC_LEN_MD5,
    MAC_LEN_SHA1,
};
pub use packet::{parse_packet, LeapIndicator, Mode, NtpHeader, Packet, PacketError, HEADER_LEN};
pub use refid::{KissCode, ReferenceId};
pub use server::{
    build_kod, build_server_reply, ServerState, DEFAULT_MIN_POLL, STRATUM_UNSYNCHRONIZED,
};
pub use timestamp::{NtpDuration, NtpShort, NtpTimestamp, UNIX_OFFSET};
