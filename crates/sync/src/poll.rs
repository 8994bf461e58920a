//! When to poll: the interval between `minpoll` and `maxpoll`, bursts, and backoff.

/// Requests in an `iburst`/`burst` train (ntpd's NTP_IBURST/NTP_BURST count).
pub const BURST_LENGTH: u8 = 8;
/// Seconds between the requests of a train.
pub const BURST_INTERVAL: f64 = 2.0;
/// log2 of the interval of start-up polls: after an `iburst` train, while the
/// discipline is still settling, requests go out this often instead of at minpoll.
/// 8 s is the mean spacing ntpd's default `discard average 3` serves for ever, so a
/// server with `restrict … limited` never answers them with a RATE kiss.
pub const SETTLING_POLL: i8 = 3;
/// Start-up polls an `iburst` association may send at [`SETTLING_POLL`]: on a path
/// noisy enough to need them all, six and a half minutes, so about 40 packets more
/// than minpoll alone would send, in the association's whole life.
pub const SETTLING_POLLS: u8 = 48;

/// The poll schedule of one association.
#[derive(Debug, Clone)]
pub struct PollState {
    minpoll: i8,
    maxpoll: i8,
    hpoll: i8,
    next_at: f64,
    /// When the last request went out.
    last_at: f64,
    burst_left: u8,
    /// Start-up polls still allowed at [`SETTLING_POLL`].
    settling_left: u8,
    /// The discipline asked for start-up polls (its estimate has not converged).
    settling: bool,
}

impl PollState {
    /// Start at `minpoll`, first request at `first_at`; `start_up_polls`: the
    /// association may send start-up polls ([`PollState::follow_settling`]).
    pub fn new(minpoll: i8, maxpoll: i8, first_at: f64, start_up_polls: bool) -> Self {
        let maxpoll = maxpoll.max(minpoll);
        PollState {
            minpoll,
            maxpoll,
            hpoll: minpoll,
            next_at: first_at,
            last_at: f64::NEG_INFINITY,
            burst_left: 0,
            settling_left: if start_up_polls { SETTLING_POLLS } else { 0 },
            settling: false,
        }
    }

    /// Current log2 poll interval: the start-up interval while start-up polls go
    /// out (it is what the requests announce and what `ntpq` shows), not during
    /// the train before them.
    pub fn hpoll(&self) -> i8 {
        if self.settling_now() && self.burst_left == 0 {
            self.hpoll.min(SETTLING_POLL)
        } else {
            self.hpoll
        }
    }

    /// When the next request is due.
    pub fn next_at(&self) -> f64 {
        self.next_at
    }

    fn settling_now(&self) -> bool {
        self.settling && self.settling_left > 0
    }

    fn interval(&self) -> f64 {
        2f64.powi(self.hpoll().into())
    }

    /// Record a transmission at `now`; schedule the next one. Returns whether this
    /// transmission starts a new poll (as opposed to continuing a burst train).
    pub fn on_transmit(&mut self, now: f64, unreachable: bool, iburst: bool, burst: bool) -> bool {
        self.last_at = now;
        if unreachable {
            // Start-up polls follow an answered train, never an unanswered one.
            self.settling = false;
        }
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
            if self.settling_now() {
                self.settling_left -= 1;
            }
            self.next_at = now + self.interval();
        }
        true
    }

    /// The discipline says whether its estimate is still settling. While it is, and
    /// the budget lasts, an `iburst` association polls every 2^[`SETTLING_POLL`] s:
    /// on a noisy path the samples of the train alone leave the frequency unknown to
    /// tens of ppm, and at minpoll the clock would wander milliseconds between polls.
    pub fn follow_settling(&mut self, settling: bool, now: f64) {
        let was = self.settling_now();
        self.settling = settling;
        if self.burst_left > 0 || was == self.settling_now() {
            return;
        }
        if was {
            // Settled: a poll already scheduled at the start-up interval waits for
            // the normal one.
            self.next_at = self.next_at.max(self.last_at + self.interval());
        } else {
            self.next_at = self.next_at.min((self.last_at + self.interval()).max(now));
        }
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
        self.settling_left = 0;
        self.next_at = now + self.interval();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Send an iburst train (the first request finds the server unreachable; the
    /// rest are `answered` or not); returns the time of its last packet.
    fn train_of(p: &mut PollState, answered: bool) -> f64 {
        let mut now = p.next_at();
        p.on_transmit(now, true, true, false);
        for _ in 1..BURST_LENGTH {
            now = p.next_at();
            p.on_transmit(now, !answered, true, false);
        }
        now
    }

    fn train(p: &mut PollState) -> f64 {
        train_of(p, true)
    }

    #[test]
    fn a_settling_estimate_gets_start_up_polls_within_the_budget() {
        let mut p = PollState::new(6, 10, 0.0, true);
        let last = train(&mut p);
        p.follow_settling(true, last + 0.1);
        assert_eq!(p.next_at(), last + 8.0);
        assert_eq!(
            p.hpoll(),
            SETTLING_POLL,
            "requests announce the interval in use"
        );
        let mut gaps = vec![];
        let mut prev = last;
        for _ in 0..usize::from(SETTLING_POLLS) + 3 {
            let now = p.next_at();
            p.on_transmit(now, false, true, false);
            p.follow_settling(true, now + 0.1);
            gaps.push(p.next_at() - now);
            assert!(now - prev >= 8.0 - 1e-9);
            prev = now;
        }
        let fast = gaps.iter().filter(|g| **g == 8.0).count();
        assert_eq!(fast, usize::from(SETTLING_POLLS) - 1, "{gaps:?}");
        assert!(gaps.ends_with(&[64.0, 64.0, 64.0, 64.0]), "{gaps:?}");
        assert_eq!(p.hpoll(), 6);
    }

    #[test]
    fn a_converged_estimate_waits_for_minpoll_after_the_train() {
        let mut p = PollState::new(6, 10, 0.0, true);
        let last = train(&mut p);
        // Still settling when the last packet left, converged when its answer came.
        p.follow_settling(true, last);
        p.follow_settling(false, last + 0.1);
        assert_eq!(p.next_at(), last + 64.0);
        assert_eq!(p.hpoll(), 6);
    }

    #[test]
    fn only_associations_allowed_start_up_polls_poll_faster_while_settling() {
        let mut p = PollState::new(6, 10, 0.0, false);
        p.on_transmit(0.0, false, false, false);
        p.follow_settling(true, 0.1);
        assert_eq!(p.next_at(), 64.0);
        assert_eq!(p.hpoll(), 6);
    }

    #[test]
    fn a_rate_kiss_ends_start_up_polls_for_good() {
        let mut p = PollState::new(6, 10, 0.0, true);
        let last = train(&mut p);
        p.follow_settling(true, last);
        p.rate_limited(6, last + 1.0);
        p.follow_settling(true, last + 2.0);
        assert!(p.next_at() >= last + 1.0 + 128.0, "{}", p.next_at());
        assert_eq!(p.hpoll(), 7);
    }

    #[test]
    fn an_unanswered_poll_sends_no_start_up_polls() {
        let mut p = PollState::new(6, 10, 0.0, true);
        p.follow_settling(true, 0.0);
        let last = train_of(&mut p, false);
        assert_eq!(p.next_at(), last + 64.0, "unreachable: no start-up polls");
    }

    #[test]
    fn the_train_keeps_its_spacing_and_announces_minpoll_while_settling() {
        let mut p = PollState::new(6, 10, 0.0, true);
        p.follow_settling(true, 0.0);
        p.on_transmit(0.0, true, true, false);
        p.follow_settling(true, 0.1);
        assert_eq!(p.next_at(), BURST_INTERVAL);
        assert_eq!(p.hpoll(), 6);
    }
}
