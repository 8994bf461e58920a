//! The NTS-KE server: accepts TCP connections, runs one TLS 1.3 handshake
//! and one request/response per connection, and issues cookies sealed
//! with the shared master key ring.
//!
//! Abuse bounds: at most `max_connections` exchanges run at once (one
//! thread each); further connections are closed at once. Every exchange
//! has one deadline (`timeout`, default 3 s) covering handshake, request
//! and response, so a slow or silent client frees its slot quickly. A
//! request costs one handshake plus eight cheap AES-SIV cookie seals.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use rustls::{ServerConfig, ServerConnection, StreamOwned};

use crate::cookie::{SharedKeyRing, COOKIE_LEN};
use crate::error::KeError;
use crate::ke::deadline::{map_io, DeadlineStream};
use crate::ke::exporter::export_keys;
use crate::ke::message::{server_response, NtpServerInfo, MAX_COOKIES};
use crate::ke::record::{
    complete_message_len, encode_records, Record, ERR_BAD_REQUEST, ERR_INTERNAL,
};
use crate::tls::{server_config, ALPN_NTSKE};

/// Largest request we read; real ones are a few dozen octets.
pub const MAX_REQUEST_LEN: usize = 4096;

/// NTS-KE server settings.
#[derive(Clone, Debug)]
pub struct NtsKeConfig {
    /// Certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// NTP server name/port announced to clients (only needed when NTP is
    /// not on this host's port 123).
    pub ntp: NtpServerInfo,
    /// Concurrent exchanges (default 32).
    pub max_connections: usize,
    /// Deadline of one whole exchange (default 3 s).
    pub timeout: Duration,
}

impl NtsKeConfig {
    /// Defaults for `cert` and `key`.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        NtsKeConfig {
            cert: cert.into(),
            key: key.into(),
            ntp: NtpServerInfo::default(),
            max_connections: 32,
            timeout: Duration::from_secs(3),
        }
    }
}

/// Counters for monitoring (cumulative).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct KeStats {
    /// Exchanges that issued cookies.
    pub served: usize,
    /// Connections closed at once because all slots were busy.
    pub rejected_busy: usize,
    /// Exchanges that failed (TLS error, timeout, bad request).
    pub failed: usize,
}

struct Inner {
    config: NtsKeConfig,
    tls: RwLock<Arc<ServerConfig>>,
    keys: SharedKeyRing,
    active: AtomicUsize,
    served: AtomicUsize,
    rejected_busy: AtomicUsize,
    failed: AtomicUsize,
    shutdown: AtomicBool,
    local_addr: Mutex<Option<SocketAddr>>,
}

/// The NTS-KE server. Cheap to clone (clones share everything), so one
/// clone can run [`NtsKeServer::serve`] while another calls
/// [`NtsKeServer::reload`] on SIGHUP or [`NtsKeServer::shutdown`].
#[derive(Clone)]
pub struct NtsKeServer(Arc<Inner>);

impl std::fmt::Debug for NtsKeServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NtsKeServer")
            .field("config", &self.0.config)
            .finish()
    }
}

/// Releases a connection slot when the exchange thread ends, however it
/// ends.
struct Slot(Arc<Inner>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

impl NtsKeServer {
    /// Loads the certificate and key; cookies are sealed with `keys`
    /// (share the same ring with [`crate::NtsServer`]).
    pub fn new(config: NtsKeConfig, keys: SharedKeyRing) -> Result<Self, KeError> {
        let tls = server_config(&config.cert, &config.key)?;
        Ok(NtsKeServer(Arc::new(Inner {
            config,
            tls: RwLock::new(tls),
            keys,
            active: AtomicUsize::new(0),
            served: AtomicUsize::new(0),
            rejected_busy: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            local_addr: Mutex::new(None),
        })))
    }

    /// Re-reads the certificate and key files (e.g. on SIGHUP after a
    /// renewal). New connections use them; on error the old ones stay.
    pub fn reload(&self) -> Result<(), KeError> {
        let tls = server_config(&self.0.config.cert, &self.0.config.key)?;
        *self.0.tls.write().unwrap_or_else(|e| e.into_inner()) = tls;
        Ok(())
    }

    /// Counters so far.
    pub fn stats(&self) -> KeStats {
        KeStats {
            served: self.0.served.load(Ordering::Relaxed),
            rejected_busy: self.0.rejected_busy.load(Ordering::Relaxed),
            failed: self.0.failed.load(Ordering::Relaxed),
        }
    }

    /// Exchanges running now.
    pub fn active(&self) -> usize {
        self.0.active.load(Ordering::Acquire)
    }

    /// Accepts connections on `listener` until [`Self::shutdown`].
    /// Blocks; run it on its own thread (see [`Self::spawn`]).
    pub fn serve(&self, listener: TcpListener) {
        if let Ok(a) = listener.local_addr() {
            *self.0.local_addr.lock().unwrap_or_else(|e| e.into_inner()) = Some(a);
        }
        for stream in listener.incoming() {
            if self.0.shutdown.load(Ordering::Acquire) {
                break;
            }
            let Ok(stream) = stream else {
                // EMFILE and friends: back off briefly instead of spinning.
                thread::sleep(Duration::from_millis(10));
                continue;
            };
            let inner = &self.0;
            if inner.active.fetch_add(1, Ordering::AcqRel) >= inner.config.max_connections {
                inner.active.fetch_sub(1, Ordering::AcqRel);
                inner.rejected_busy.fetch_add(1, Ordering::Relaxed);
                drop(stream);
                continue;
            }
            let slot = Slot(self.0.clone());
            let spawned = thread::Builder::new().name("nts-ke".into()).spawn(move || {
                let inner = slot.0.clone();
                match handle_connection(&inner, stream) {
                    Ok(()) => inner.served.fetch_add(1, Ordering::Relaxed),
                    Err(_) => inner.failed.fetch_add(1, Ordering::Relaxed),
                };
                drop(slot);
            });
            if spawned.is_err() {
                self.0.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Runs [`Self::serve`] on a new thread.
    pub fn spawn(&self, listener: TcpListener) -> std::io::Result<JoinHandle<()>> {
        let me = self.clone();
        thread::Builder::new()
            .name("nts-ke-accept".into())
            .spawn(move || me.serve(listener))
    }

    /// Stops accepting (running exchanges finish within their deadline).
    pub fn shutdown(&self) {
        self.0.shutdown.store(true, Ordering::Release);
        // Wake the blocking accept with a throw-away connection.
        let addr = *self.0.local_addr.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut a) = addr {
            if a.ip().is_unspecified() {
                a.set_ip(if a.is_ipv4() {
                    std::net::Ipv4Addr::LOCALHOST.into()
                } else {
                    std::net::Ipv6Addr::LOCALHOST.into()
                });
            }
            let _ = TcpStream::connect_timeout(&a, Duration::from_secs(1));
        }
    }
}

fn handle_connection(inner: &Inner, tcp: TcpStream) -> Result<(), KeError> {
    tcp.set_nodelay(true)?;
    let config = inner.tls.read().unwrap_or_else(|e| e.into_inner()).clone();
    let conn = ServerConnection::new(config)?;
    let mut tls = StreamOwned::new(conn, DeadlineStream::new(tcp, inner.config.timeout));

    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    let request_len = loop {
        match complete_message_len(&buf, MAX_REQUEST_LEN) {
            Ok(Some(len)) => break len,
            Ok(None) => {}
            Err(_) => {
                send(
                    &mut tls,
                    &encode_records(&[Record::Error(ERR_BAD_REQUEST), Record::EndOfMessage]),
                );
                return Err(KeError::TooLarge);
            }
        }
        match tls.read(&mut chunk).map_err(map_io)? {
            0 => return Err(KeError::Truncated),
            n => buf.extend_from_slice(&chunk[..n]),
        }
    };
    // RFC 8915 §4: ALPN is mandatory; rustls already refused a mismatch,
    // this refuses clients that offered none.
    if tls.conn.alpn_protocol() != Some(ALPN_NTSKE) {
        return Err(KeError::Negotiation("client did not offer ALPN ntske/1"));
    }
    let mut issued = false;
    let response = server_response(&buf[..request_len], &inner.config.ntp, |aead| {
        let keys = export_keys(aead, |out, label, ctx| {
            tls.conn
                .export_keying_material(out, label, Some(ctx))
                .map(|_| ())
        })
        .map_err(|_| ERR_INTERNAL)?;
        let ring = inner.keys.read();
        issued = true;
        Ok((0..MAX_COOKIES)
            .map(|_| {
                let mut c = [0u8; COOKIE_LEN];
                ring.seal_cookie(&keys, &mut c);
                c.to_vec()
            })
            .collect())
    });
    send(&mut tls, &response);
    if issued {
        Ok(())
    } else {
        Err(KeError::Negotiation("request refused"))
    }
}

/// Writes the response and closes the TLS session; errors are moot since
/// the connection ends here anyway.
fn send(tls: &mut StreamOwned<ServerConnection, DeadlineStream>, bytes: &[u8]) {
    let _ = tls.write_all(bytes);
    tls.conn.send_close_notify();
    let _ = tls.flush();
}
