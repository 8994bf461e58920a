//! The blocking NTS-KE client: connect, TLS 1.3 handshake with ALPN
//! `ntske/1`, send the request, read the response, export the keys.
//! Meant to run on a helper thread of the client association (it blocks
//! for up to `timeout`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use rustls::{ClientConnection, StreamOwned};

use crate::client::{NtsClientState, NTP_PORT};
use crate::error::KeError;
use crate::ke::deadline::{map_io, DeadlineStream};
use crate::ke::exporter::export_keys;
use crate::ke::message::{KeRequest, KeResponse};
use crate::ke::record::complete_message_len;
use crate::tls::{client_config, server_name, TrustAnchors, ALPN_NTSKE};

/// Largest NTS-KE response we read (8 cookies of 1 KiB plus records).
pub const MAX_RESPONSE_LEN: usize = 16 * 1024;

/// Runs NTS-KE with the server at `addr`, whose certificate must be valid
/// for `server_name` (a DNS name or IP literal) under `trust`; the whole
/// exchange (connect, handshake, request, response) is bounded by
/// `timeout`. On success the association has keys, up to 8 cookies, and
/// the NTP server and port to use (the KE server's answer, else
/// `server_name` and 123).
pub fn key_exchange(
    server_name_str: &str,
    addr: SocketAddr,
    trust: &TrustAnchors,
    timeout: Duration,
) -> Result<NtsClientState, KeError> {
    let config = client_config(trust)?;
    let name = server_name(server_name_str)?;
    let start = Instant::now();
    let tcp = TcpStream::connect_timeout(&addr, timeout).map_err(map_io)?;
    tcp.set_nodelay(true)?;
    let left = timeout.saturating_sub(start.elapsed());
    let conn = ClientConnection::new(config, name)?;
    let mut tls = StreamOwned::new(conn, DeadlineStream::new(tcp, left));

    let request = KeRequest::ntpv4();
    tls.write_all(&request.encode()).map_err(map_io)?;
    tls.flush().map_err(map_io)?;
    if tls.conn.alpn_protocol() != Some(ALPN_NTSKE) {
        return Err(KeError::Negotiation("server did not agree to ALPN ntske/1"));
    }

    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let len = loop {
        if let Some(len) = complete_message_len(&buf, MAX_RESPONSE_LEN)? {
            break len;
        }
        match tls.read(&mut chunk).map_err(map_io)? {
            0 => return Err(KeError::Truncated),
            n => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let response = KeResponse::parse(&buf[..len], &request)?;
    let keys = export_keys(response.aead_algorithm, |out, label, ctx| {
        tls.conn
            .export_keying_material(out, label, Some(ctx))
            .map(|_| ())
    })?;
    // Polite close; the exchange has already succeeded either way.
    tls.conn.send_close_notify();
    let _ = tls.flush();
    Ok(NtsClientState::new(
        keys.c2s.clone(),
        keys.s2c.clone(),
        response.cookies,
        response
            .server
            .unwrap_or_else(|| server_name_str.to_string()),
        response.port.unwrap_or(NTP_PORT),
    ))
}
