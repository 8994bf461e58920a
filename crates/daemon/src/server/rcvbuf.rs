//! Sizing a serving socket's receive buffer from the rate it serves and the drops it sees.
//!
//! The receive buffer is a queue: while a worker is busy or off its CPU, requests wait
//! there, and every one of them waits for all those ahead of it. A large fixed buffer
//! (we used to ask for 4 MiB, some 10 000 requests) turns every short stall into tens of
//! milliseconds of delay for thousands of clients; a small one drops the bursts a public
//! server sees (a thousand clients polling at the top of the minute), which could have
//! been answered a few milliseconds late at no cost to their accuracy (the request's
//! receive and the reply's transmit timestamps bracket the wait).
//!
//! So the buffer starts at the kernel's default (what chronyd and every other socket
//! gets) and is resized like TCP's autotuning:
//! * it always holds [`LATENCY_BUDGET`] of requests at the rate the worker has been
//!   serving (never less than the default, never more than [`CEILING`]);
//! * when the kernel reports that the socket dropped requests (`SO_MEMINFO`) while the
//!   worker still had idle moments (a receive that did not fill a batch, so it was not
//!   simply overloaded, when a larger queue would only add delay), the buffer doubles,
//!   at most every [`GROW_INTERVAL`] and up to [`BURST_FLOORS`] times the default;
//! * after [`CALM_WINDOWS`] seconds without drops it halves again, back toward the
//!   rate's size.

use socket2::Socket;

/// Longest a request should wait in the socket queue at a steady rate, seconds.
pub const LATENCY_BUDGET: f64 = 0.002;

/// Buffer bytes the kernel charges per queued request: a datagram is accounted at its
/// buffer's true size (about 830 bytes for a 48-byte request over loopback on Linux 6,
/// more for NTS requests), not its payload.
const BYTES_PER_REQUEST: f64 = 1024.0;

/// Largest buffer asked for, bytes (the kernel also caps it at `rmem_max`, doubled).
pub const CEILING: usize = 8 << 20;

/// Seconds over which the serving rate is measured.
const WINDOW: f64 = 1.0;

/// Shortest time between two doublings after drops, seconds.
pub const GROW_INTERVAL: f64 = 0.05;

/// Most a burst of drops can grow the buffer to, in multiples of the kernel's default:
/// enough for a burst of some thousand requests, not so much that a stalled worker
/// answers its whole backlog tens of milliseconds late.
pub const BURST_FLOORS: usize = 4;

/// Windows without drops before a grown buffer halves.
pub const CALM_WINDOWS: u32 = 10;

/// The buffer size, in the kernel's (doubled) accounting, for `rate` requests/s.
pub fn target_size(rate: f64, floor: usize) -> usize {
    let want = rate.max(0.0) * LATENCY_BUDGET * BYTES_PER_REQUEST;
    (want as usize).clamp(floor.min(CEILING), CEILING)
}

/// Tracks one worker's serving rate and drops and resizes its socket's buffer to match.
#[derive(Debug)]
pub struct RecvBufferSizer {
    floor: usize,
    current: usize,
    /// What drops have earned: at least the floor, doubled per burst of drops.
    burst: usize,
    window_start: f64,
    received: u64,
    drops_seen: u32,
    last_growth: f64,
    /// A receive in this window took less than a full batch.
    idle_seen: bool,
    calm_windows: u32,
}

impl RecvBufferSizer {
    /// Start from the socket's current buffer, which is also the floor.
    pub fn new(socket: &Socket, now: f64) -> Self {
        let current = socket.recv_buffer_size().unwrap_or(0);
        RecvBufferSizer {
            floor: current,
            current,
            burst: current,
            window_start: now,
            received: 0,
            drops_seen: 0,
            last_growth: f64::NEG_INFINITY,
            idle_seen: false,
            calm_windows: 0,
        }
    }

    /// Count one receive of `n` requests out of a possible `batch` at time `now`, with the
    /// socket's drop counter as last reported (`None`: no drops reported yet), and resize
    /// the buffer when that calls for it.
    pub fn account(
        &mut self,
        socket: &Socket,
        n: usize,
        batch: usize,
        drops: Option<u32>,
        now: f64,
    ) {
        self.received += n as u64;
        self.idle_seen |= n < batch;
        let dropped = drops.is_some_and(|d| d != self.drops_seen);
        if let Some(d) = drops {
            self.drops_seen = d;
        }
        if dropped {
            self.calm_windows = 0;
            if self.idle_seen && now - self.last_growth >= GROW_INTERVAL {
                self.last_growth = now;
                let cap = (self.floor * BURST_FLOORS).min(CEILING);
                self.burst = (self.current.max(self.burst) * 2).min(cap.max(self.burst));
                self.set(socket, self.burst);
            }
        }
        let elapsed = now - self.window_start;
        if elapsed < WINDOW {
            return;
        }
        if !dropped {
            self.calm_windows += 1;
            if self.calm_windows >= CALM_WINDOWS {
                self.calm_windows = 0;
                self.burst = (self.burst / 2).max(self.floor);
            }
        }
        let rate = self.received as f64 / elapsed;
        self.window_start = now;
        self.received = 0;
        self.idle_seen = false;
        let target = target_size(rate, self.floor).max(self.burst);
        if target.abs_diff(self.current) >= self.current / 4 {
            self.set(socket, target);
        }
    }

    fn set(&mut self, socket: &Socket, target: usize) {
        // The kernel doubles what it is given (half is for its bookkeeping) and reports
        // the doubled size; a failure leaves the old size, which is still usable.
        if socket.set_recv_buffer_size(target / 2).is_ok() {
            self.current = socket.recv_buffer_size().unwrap_or(target);
        }
    }

    /// The buffer size last set or found, in the kernel's accounting.
    pub fn current(&self) -> usize {
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::{Domain, Protocol, Type};

    #[test]
    fn size_follows_the_rate_between_floor_and_ceiling() {
        let floor = 212_992;
        assert_eq!(target_size(0.0, floor), floor);
        assert_eq!(target_size(1000.0, floor), floor);
        // 500k/s for 2 ms is 1000 requests of 1 KiB.
        assert_eq!(target_size(500_000.0, floor), 1_024_000);
        assert_eq!(target_size(1e9, floor), CEILING);
        assert_eq!(target_size(f64::NAN, floor), floor);
    }

    fn small_socket() -> Socket {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        // A small start, so that the test does not depend on this host's rmem_default.
        socket.set_recv_buffer_size(32 * 1024).unwrap();
        socket
    }

    #[test]
    fn a_fast_worker_gets_a_larger_buffer_and_a_slow_one_shrinks_back() {
        let socket = small_socket();
        let mut s = RecvBufferSizer::new(&socket, 0.0);
        let floor = s.current();
        // Not a whole window yet: no change whatever the count.
        s.account(&socket, 300_000, 32, None, 0.5);
        assert_eq!(s.current(), floor);
        // 300 000 requests in the first second: room for 600 of them.
        s.account(&socket, 0, 32, None, 1.0);
        let grown = s.current();
        assert!(grown > floor, "grown {grown}, floor {floor}");
        assert_eq!(socket.recv_buffer_size().unwrap(), grown);
        // Idle for a while: back to the floor.
        s.account(&socket, 10, 32, None, 3.0);
        assert_eq!(s.current(), floor);
    }

    #[test]
    fn drops_between_idle_moments_double_the_buffer_until_calm_returns() {
        let socket = small_socket();
        let mut s = RecvBufferSizer::new(&socket, 0.0);
        let floor = s.current();
        // A burst: the kernel reports 50 drops; the worker had room to spare.
        s.account(&socket, 3, 32, None, 0.10);
        s.account(&socket, 32, 32, Some(50), 0.11);
        assert_eq!(s.current(), 2 * floor);
        // More drops at once: not again before GROW_INTERVAL.
        s.account(&socket, 32, 32, Some(60), 0.12);
        assert_eq!(s.current(), 2 * floor);
        s.account(&socket, 32, 32, Some(70), 0.2);
        assert_eq!(s.current(), 4 * floor);
        // No further than BURST_FLOORS times the default.
        s.account(&socket, 32, 32, Some(80), 0.3);
        assert_eq!(s.current(), BURST_FLOORS * floor);
        // The same count again is no new drop; the rate is low, the buffer stays.
        for t in 1..CALM_WINDOWS {
            s.account(&socket, 1, 32, Some(80), f64::from(t));
        }
        assert_eq!(s.current(), 4 * floor);
        // After CALM_WINDOWS quiet windows it halves, then halves again.
        s.account(&socket, 1, 32, Some(80), f64::from(CALM_WINDOWS));
        assert_eq!(s.current(), 2 * floor);
        for t in CALM_WINDOWS + 1..=2 * CALM_WINDOWS {
            s.account(&socket, 1, 32, Some(80), f64::from(t));
        }
        assert_eq!(s.current(), floor);
    }

    #[test]
    fn drops_of_an_overloaded_worker_do_not_grow_the_queue() {
        let socket = small_socket();
        let mut s = RecvBufferSizer::new(&socket, 0.0);
        let floor = s.current();
        // Every receive fills a batch: more buffer would only mean more delay.
        for (i, t) in [0.1, 0.2, 0.3, 0.4].into_iter().enumerate() {
            s.account(&socket, 32, 32, Some(100 * (i as u32 + 1)), t);
        }
        assert_eq!(s.current(), floor);
    }
}
