//! Error types: [`KeError`] for NTS-KE (records, TLS, sockets) and
//! [`NtsError`] for NTS-protected NTP packets.

use std::io;

/// Why an NTS-KE exchange or message failed.
#[derive(thiserror::Error, Debug)]
pub enum KeError {
    /// A record or message broke RFC 8915 §4 framing or rules.
    #[error("malformed NTS-KE message: {0}")]
    Malformed(&'static str),
    /// The peer sent a critical record type we do not know.
    #[error("unrecognized critical NTS-KE record type {0}")]
    UnrecognizedCritical(u16),
    /// The server answered with an Error record (0: unrecognized critical
    /// record, 1: bad request, 2: internal server error).
    #[error("NTS-KE server reported error {0}")]
    ServerError(u16),
    /// The server offers no protocol or AEAD algorithm we support, or sent
    /// no cookies.
    #[error("NTS-KE negotiation failed: {0}")]
    Negotiation(&'static str),
    /// A message exceeded our size bound.
    #[error("NTS-KE message too large")]
    TooLarge,
    /// The connection closed before End of Message.
    #[error("NTS-KE connection closed before End of Message")]
    Truncated,
    /// The exchange took longer than its deadline.
    #[error("NTS-KE timed out")]
    Timeout,
    /// TLS failure (handshake, certificate, ALPN).
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// Certificate, key or CA file problem.
    #[error("{0}")]
    Config(String),
    /// Socket error.
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
}

/// Why an NTS-protected NTP packet was rejected (client side) or could not
/// be built.
#[derive(thiserror::Error, Clone, Copy, PartialEq, Eq, Debug)]
pub enum NtsError {
    /// Framing error: not NTP, bad extension fields, bad authenticator
    /// layout.
    #[error("malformed NTS packet")]
    Malformed,
    /// The packet does not carry the Unique Identifier we sent (stale,
    /// replayed or spoofed).
    #[error("unique identifier mismatch")]
    UidMismatch,
    /// No authenticator, or it failed to verify.
    #[error("NTS authentication failed")]
    BadAuth,
    /// The server sent an NTS NAK (kiss code NTSN) answering our request:
    /// our cookies are no longer accepted and we must run NTS-KE again.
    #[error("NTS NAK: new key exchange required")]
    Nak,
    /// No cookie left to send: run NTS-KE again.
    #[error("no NTS cookies left")]
    NoCookies,
    /// The caller's output buffer is too small.
    #[error("output buffer too small")]
    BufferTooSmall,
}
