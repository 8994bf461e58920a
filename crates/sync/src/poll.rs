//! When to poll: the interval between `minpoll` and `maxpoll`, bursts, and backoff.

/// Requests in an `iburst`/`burst` train (ntpd's NTP_IBURST/NTP_BURST count).
pub const BURST_LENGTH: u8 = 8;
/// Seconds between the requests of a train.
pub const BURST_INTERVAL: f64 = 2.0;

/// The poll schedule of one association.
#[derive(Debug, Clone)]
pub struct PollState {
    minpoll: i8,
    maxpoll: i8,
    hpoll: i8,
    next_at: f64,
    burst_left: u8,
}

impl PollState {
    /// Start at `minpoll`, first request at `first_at`.
    pub fn new(minpoll: i8, maxpoll: i8, first_at: f64) -> Self {
        let maxpoll = maxpoll.max(minpoll);
        PollState {
            minpoll,
            maxpoll,
            hpoll: minpoll,
            next_at: first_at,
            burst_left: 0,
        }
    }

    /// Current log2 poll interval.
    pub fn hpoll(&self) -> i8 {
        self.hpoll
    }

    /// When the next request is due.
    pub fn next_at(&self) -> f64 {
        self.next_at
    }

    fn interval(&self) -> f64 {
        2f64.powi(self.hpoll.into())
    }

    /// Record a transmission at `now`; schedule the next one. Returns whether this
    /// transmission starts a new poll (as opposed to continuing a burst train).
    pub fn on_transmit(&mut self, now: f64, unreachable: bool, iburst: bool, burst: bool) -> bool {
        if self.burst_left > 0 {
            self.burst_left -= 1;
            self.next_at = if self.burst_left > 0 {
                now + BURST_INTERVAL
            } else {
                now + self.interval()
            };
            return false;
        }
        let train = (iburst && unreachable) || (burst && !unreachable);
        if train {
            self.burst_left = BURST_LENGTH - 1;
            self.next_at = now + BURST_INTERVAL;
        } else {
            self.next_at = now + self.interval();
        }
        true
    }

    /// Follow the discipline's poll interval.
    pub fn follow_system(&mut self, poll: i8, now: f64) {
        let new = poll.clamp(self.minpoll, self.maxpoll);
        if new < self.hpoll && self.burst_left == 0 {
            // Poll sooner if the shorter interval would already have expired.
            self.next_at = self.next_at.min(now + 2f64.powi(new.into()));
        }
        self.hpoll = new;
    }

    /// Unreachable for long: poll less often, up to maxpoll. An `iburst` train that
    /// this poll started still goes out (as ntpd keeps its retries while unreachable):
    /// it is what finds a returning server within seconds, instead of after the four
    /// backed-off polls the clock filter needs before the source is selectable again.
    /// The longer interval applies after the train.
    pub fn back_off(&mut self, now: f64) {
        if self.hpoll < self.maxpoll {
            self.hpoll += 1;
        }
        if self.burst_left == 0 {
            self.next_at = self.next_at.max(now + self.interval());
        }
    }

    /// The server sent RATE: never poll faster than it asks, nor than before, stop any
    /// train, and wait a full interval.
    pub fn rate_limited(&mut self, server_poll: i8, now: f64) {
        let raised = (self.hpoll + 1).max(server_poll).min(17);
        self.minpoll = self.minpoll.max(raised);
        self.maxpoll = self.maxpoll.max(self.minpoll);
        self.hpoll = raised;
        self.burst_left = 0;
        self.next_at = now + self.interval();
    }
}
