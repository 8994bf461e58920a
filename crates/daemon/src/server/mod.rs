//! The time server: workers that answer NTP requests on the serving sockets.
//!
//! Each worker owns one socket (several share a port through `SO_REUSEPORT`), its own
//! batch buffers and its own client table, so the hot path allocates nothing and takes
//! only its own table's lock (uncontended but for a rare mode 6 MRU read): receive a
//! batch, decide each datagram with [`respond::respond`], stamp the transmit time just
//! before the batch goes out, send the batch. Control (mode 6) requests are kept aside
//! and answered after the batch is sent, by [`crate::control::handle_request`].

pub mod ratelimit;
pub mod rcvbuf;
pub mod respond;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use meridian_conf::restrict::{RestrictFlags, RestrictTable};
use meridian_os::udp::{RecvBatch, SendBatch, BATCH};
use rand::{rngs::SmallRng, Rng, SeedableRng};
use socket2::Socket;

use crate::control::{handle_request, ControlEnv, SharedControl};
use crate::state::{ServingState, SharedState};
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
    /// Symmetric keys (`keys`, `trustedkey`); empty when none are configured.
    pub keys: meridian_auth::KeyStore,
    /// The NTS server side, when `nts enable` is configured.
    pub nts: Option<meridian_nts::NtsServer>,
    /// `controlkey N`: the key whose mode 6 requests may write (none: nobody's).
    pub control_key: Option<u16>,
}

/// What still has to be done to a queued datagram just before the batch goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Finish {
    /// Nothing: a KoD, whose timestamps are final.
    Nothing,
    /// Write the transmit timestamp.
    Stamp,
    /// Write the transmit timestamp, then the MAC with this key over the result.
    StampAndSign(u32),
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
    /// What mode 6 answers from; the worker registers its client table here.
    pub control: SharedControl,
}

/// A control request kept aside until the batch's time replies are sent.
struct PendingControl {
    data: Vec<u8>,
    source: SocketAddr,
    destination: Option<IpAddr>,
    flags: RestrictFlags,
}

impl Worker {
    /// Serve until `stop` is set.
    pub fn run(self) {
        // A short timeout lets the loop notice `stop` without a wake-up packet.
        let _ = self
            .socket
            .set_read_timeout(Some(Duration::from_millis(250)));
        let mut rx = RecvBatch::new();
        let mut tx = SendBatch::new();
        let mut finish = [Finish::Nothing; BATCH];
        let mut rng = SmallRng::from_entropy();
        // Every worker's table counts from the same origin, so mode 6 can merge them.
        let started = self.control.epoch;
        let mut policy = self.policy.load_full();
        let table = Arc::new(Mutex::new(ClientTable::new(
            policy.max_clients,
            policy.limits,
        )));
        self.control.tables.register(table.clone());
        // The drop counter lets the buffer grow when bursts overflow it (see rcvbuf).
        let mut rcvbuf =
            rcvbuf::RecvBufferSizer::new(&self.socket, started.elapsed().as_secs_f64());
        let mut drops = DropCounter::default();
        let mut pending: Vec<PendingControl> = Vec::new();
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
            // A poisoned lock only means a panic elsewhere mid-update; the table is
            // still usable for rate limiting.
            let mut clients = table.lock().unwrap_or_else(|e| e.into_inner());
            let current = self.policy.load();
            if !Arc::ptr_eq(&current, &policy) {
                policy = self.policy.load_full();
                if clients.limits() != policy.limits {
                    *clients = ClientTable::new(policy.max_clients, policy.limits);
                }
            }
            let state = self.state.load();
            let now = started.elapsed().as_secs_f64();
            let read_clock = || state.served(meridian_os::read_realtime());
            let ctx = respond::ServeContext {
                state: &state,
                restrict: &policy.restrict,
                keys: &policy.keys,
                nts: policy.nts.as_ref(),
                read_clock: &read_clock,
            };
            let (mut replied, mut kods, mut dropped, mut limited) = (0u64, 0u64, 0u64, 0u64);
            for i in 0..n {
                let Some(packet) = rx.get(i) else { continue };
                if packet.truncated {
                    dropped += 1;
                    continue;
                }
                let raw_rx = packet.kernel_rx.unwrap_or_else(meridian_os::read_realtime);
                let rx_ts = state.served(raw_rx);
                let slot = tx.len();
                let mut outcome = Outcome::Drop(respond::DropReason::Malformed);
                tx.push_with(packet.source, packet.destination, |buf| {
                    outcome = respond(
                        &ctx,
                        &mut clients,
                        packet.data,
                        packet.source,
                        rx_ts,
                        now,
                        buf,
                    );
                    match outcome {
                        Outcome::Reply { len, .. }
                        | Outcome::Sealed { len }
                        | Outcome::Kod { len } => Some(len),
                        Outcome::Control { .. } | Outcome::Drop(_) => None,
                    }
                });
                match outcome {
                    Outcome::Reply { sign, .. } => {
                        finish[slot] = sign.map_or(Finish::Stamp, Finish::StampAndSign);
                        replied += 1;
                    }
                    Outcome::Sealed { .. } => {
                        finish[slot] = Finish::Nothing;
                        replied += 1;
                    }
                    Outcome::Kod { .. } => {
                        finish[slot] = Finish::Nothing;
                        kods += 1;
                    }
                    Outcome::Control { flags } => pending.push(PendingControl {
                        data: packet.data.to_vec(),
                        source: packet.source,
                        destination: packet.destination,
                        flags,
                    }),
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
                let transmit = state.served(meridian_os::read_realtime());
                for (payload, finish) in tx.payloads_mut().zip(finish.iter()) {
                    if *finish == Finish::Nothing {
                        continue;
                    }
                    stamp_transmit(payload, transmit.fraction_randomized(rng.gen(), precision));
                    if let Finish::StampAndSign(key) = *finish {
                        let body = meridian_proto::HEADER_LEN;
                        if policy.keys.sign_in_place(payload, body, key).is_err() {
                            // Can't happen for a key respond() checked; never send it unsigned.
                            payload.fill(0);
                        }
                    }
                }
                if let Err(e) = tx.send(&self.socket) {
                    tracing::debug!("send failed for part of a batch: {e}");
                }
            }
            drop(clients);
            if !pending.is_empty() {
                replied += self.answer_control(&mut pending, &state, &policy, &mut tx);
            }
            let c = &self.counters;
            c.received.fetch_add(n as u64, Ordering::Relaxed);
            c.replied.fetch_add(replied, Ordering::Relaxed);
            c.kods.fetch_add(kods, Ordering::Relaxed);
            c.dropped.fetch_add(dropped, Ordering::Relaxed);
            c.rate_limited.fetch_add(limited, Ordering::Relaxed);
            let socket_drops = drops.read(&self.socket, now);
            rcvbuf.account(&self.socket, n, BATCH, socket_drops, now);
        }
    }
}

impl Worker {
    /// Answer the control requests kept aside, emptying `pending`; returns the number of
    /// datagrams sent. Runs with no client table locked, since the MRU view locks each.
    fn answer_control(
        &self,
        pending: &mut Vec<PendingControl>,
        state: &ServingState,
        policy: &ServePolicy,
        tx: &mut SendBatch,
    ) -> u64 {
        let snapshot = self.control.load();
        let mru = self.control.tables.view(&policy.restrict);
        let mut sent = 0u64;
        for request in pending.drain(..) {
            let env = ControlEnv {
                flags: request.flags,
                snapshot: &snapshot,
                mru: &mru,
                nonce: &self.control.nonce,
                keys: &policy.keys,
                control_key: policy.control_key,
                restrict: &policy.restrict,
                now: state.served(meridian_os::read_realtime()),
            };
            handle_request(&request.data, request.source, &env, &mut |fragment| {
                if tx.is_full() {
                    self.send(tx);
                }
                if tx.push_with(request.source, request.destination, |buf| {
                    let len = fragment.len().min(buf.len());
                    buf[..len].copy_from_slice(&fragment[..len]);
                    Some(len)
                }) {
                    sent += 1;
                }
            });
        }
        self.send(tx);
        sent
    }

    fn send(&self, tx: &mut SendBatch) {
        if tx.is_empty() {
            return;
        }
        if let Err(e) = tx.send(&self.socket) {
            tracing::debug!("send failed for part of a control reply: {e}");
        }
    }
}

/// The socket's drop count, asked of the kernel at most every [`DropCounter::EVERY`]
/// seconds: one system call per few hundred batches at full load, where a drop counter
/// attached to each datagram would cost a control message per request.
#[derive(Debug, Default)]
struct DropCounter {
    last_read: Option<f64>,
    drops: Option<u32>,
}

impl DropCounter {
    /// Far below the buffer sizer's [`rcvbuf::GROW_INTERVAL`], so it sees drops in time.
    const EVERY: f64 = 0.005;

    fn read(&mut self, socket: &Socket, now: f64) -> Option<u32> {
        if self.last_read.is_none_or(|t| now - t >= Self::EVERY) {
            self.last_read = Some(now);
            self.drops = meridian_os::udp::socket_drops(socket).ok().or(self.drops);
        }
        self.drops
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    ) || e.raw_os_error() == Some(libc::ECONNREFUSED)
}
