//! The time server: workers that answer NTP requests on the serving sockets.
//!
//! Each worker owns one socket (several share a port through `SO_REUSEPORT`), its own
//! batch buffers and its own client table, so the hot path takes no lock and allocates
//! nothing: receive a batch, decide each datagram with [`respond::respond`], stamp the
//! transmit time just before the batch goes out, send the batch.

pub mod ratelimit;
pub mod respond;

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use meridian_conf::restrict::RestrictTable;
use meridian_os::udp::{RecvBatch, SendBatch, BATCH};
use rand::{rngs::SmallRng, Rng, SeedableRng};
use socket2::Socket;

use crate::state::SharedState;
use ratelimit::{ClientTable, RateLimits};
use respond::{respond, stamp_transmit, Outcome};

/// Counters shared by all workers, for statistics and (later) the control protocol.
#[derive(Debug, Default)]
pub struct ServerCounters {
    /// Datagrams received.
    pub received: AtomicU64,
    /// Time replies sent.
    pub replied: AtomicU64,
    /// KoDs sent.
    pub kods: AtomicU64,
    /// Datagrams dropped (any reason).
    pub dropped: AtomicU64,
    /// Of those, dropped by rate limiting.
    pub rate_limited: AtomicU64,
}

/// What a worker serves from: access rules and rate limits, replaced on reload.
#[derive(Debug)]
pub struct ServePolicy {
    /// The `restrict` table.
    pub restrict: RestrictTable,
    /// `discard` limits.
    pub limits: RateLimits,
    /// Clients remembered per worker (`mru maxdepth`).
    pub max_clients: usize,
}

/// A running worker's inputs.
pub struct Worker {
    /// Its socket.
    pub socket: Socket,
    /// The published sync state.
    pub state: SharedState,
    /// The access policy.
    pub policy: Arc<ArcSwap<ServePolicy>>,
    /// Shared counters.
    pub counters: Arc<ServerCounters>,
    /// Set to stop.
    pub stop: Arc<AtomicBool>,
}

impl Worker {
    /// Serve until `stop` is set.
    pub fn run(self) {
        // A short timeout lets the loop notice `stop` without a wake-up packet.
        let _ = self.socket.set_read_timeout(Some(Duration::from_millis(250)));
        let mut rx = RecvBatch::new();
        let mut tx = SendBatch::new();
        let mut needs_stamp = [false; BATCH];
        let mut rng = SmallRng::from_entropy();
        let started = Instant::now();
        let mut policy = self.policy.load_full();
        let mut clients = ClientTable::new(policy.max_clients, policy.limits);
        while !self.stop.load(Ordering::Relaxed) {
            let n = match rx.recv(&self.socket) {
                Ok(n) => n,
                Err(e) if is_transient(&e) => continue,
                Err(e) => {
                    tracing::warn!("receive failed: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            let current = self.policy.load();
            if !Arc::ptr_eq(&current, &policy) {
                policy = self.policy.load_full();
                if clients.limits() != policy.limits {
                    clients = ClientTable::new(policy.max_clients, policy.limits);
                }
            }
            let state = self.state.load();
            let now = started.elapsed().as_secs_f64();
            let (mut replied, mut kods, mut dropped, mut limited) = (0u64, 0u64, 0u64, 0u64);
            for i in 0..n {
                let Some(packet) = rx.get(i) else { continue };
                if packet.truncated {
                    dropped += 1;
                    continue;
                }
                let raw_rx = packet.kernel_rx.unwrap_or_else(meridian_os::read_realtime);
                let rx_ts = state.correction.apply(raw_rx);
                let slot = tx.len();
                let mut outcome = Outcome::Drop(respond::DropReason::Malformed);
                tx.push_with(packet.source, packet.destination, |buf| {
                    outcome = respond(
                        &state,
                        &policy.restrict,
                        &mut clients,
                        packet.data,
                        packet.source,
                        rx_ts,
                        now,
                        buf,
                    );
                    match outcome {
                        Outcome::Reply { len } | Outcome::Kod { len } => Some(len),
                        Outcome::Drop(_) => None,
                    }
                });
                match outcome {
                    Outcome::Reply { .. } => {
                        needs_stamp[slot] = true;
                        replied += 1;
                    }
                    Outcome::Kod { .. } => {
                        needs_stamp[slot] = false;
                        kods += 1;
                    }
                    Outcome::Drop(reason) => {
                        dropped += 1;
                        if reason == respond::DropReason::RateLimited {
                            limited += 1;
                        }
                    }
                }
            }
            if !tx.is_empty() {
                // The transmit timestamp is read as late as possible: just before the send.
                let precision = state.server.precision;
                let transmit = state.correction.apply(meridian_os::read_realtime());
                for (payload, stamp) in tx.payloads_mut().zip(needs_stamp.iter()) {
                    if *stamp {
                        stamp_transmit(payload, transmit.fraction_randomized(rng.gen(), precision));
                    }
                }
                if let Err(e) = tx.send(&self.socket) {
                    tracing::debug!("send failed for part of a batch: {e}");
                }
            }
            let c = &self.counters;
            c.received.fetch_add(n as u64, Ordering::Relaxed);
            c.replied.fetch_add(replied, Ordering::Relaxed);
            c.kods.fetch_add(kods, Ordering::Relaxed);
            c.dropped.fetch_add(dropped, Ordering::Relaxed);
            c.rate_limited.fetch_add(limited, Ordering::Relaxed);
        }
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    ) || e.raw_os_error() == Some(libc::ECONNREFUSED)
}
