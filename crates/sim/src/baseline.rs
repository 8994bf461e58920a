//! RFC 5905 PLL/FLL clock discipline (Appendix A.5.5.6/7), as a baseline.
//!
//! This is the reference implementation's `local_clock()` state machine
//! (NSET/FREQ/SPIK/SYNC, hybrid PLL/FLL, jitter-driven poll adaptation).
//! Its `clock_adjust()` decays the phase by 1/(PLL·τ) per second; here that
//! is expressed as a slew of the offset at rate |offset|/(PLL·τ), which
//! matches the exponential decay to first order and goes through the same
//! [`ClockCommand`] path as Meridian's discipline.

use meridian_algo::{ClockCommand, DisciplineEvent};

use crate::direct::DisciplineAlgorithm;

const STEPT: f64 = 0.128;
const WATCH: f64 = 900.0;
const PANICT: f64 = 1000.0;
const PLL: f64 = 16.0;
const FLL: f64 = 18.0;
const ALLAN: i8 = 11;
const LIMIT: i32 = 30;
const PGATE: f64 = 4.0;
const AVG: f64 = 4.0;
const MAXFREQ: f64 = 500e-6;

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    Nset,
    Freq,
    Spik,
    Sync,
}

/// RFC 5905 reference discipline.
#[derive(Clone, Debug)]
pub struct Rfc5905 {
    state: State,
    offset: f64,
    last: f64,
    base: f64,
    freq: f64,
    jitter: f64,
    t: f64,
    poll: i8,
    minpoll: i8,
    maxpoll: i8,
    count: i32,
    precision: f64,
}

impl Rfc5905 {
    /// Baseline polling between `minpoll` and `maxpoll`.
    pub fn new(minpoll: i8, maxpoll: i8) -> Self {
        Self {
            state: State::Nset,
            offset: 0.0,
            last: 0.0,
            base: 0.0,
            freq: 0.0,
            jitter: 2f64.powi(-20),
            t: 0.0,
            poll: minpoll,
            minpoll,
            maxpoll,
            count: 0,
            precision: 2f64.powi(-20),
        }
    }

    fn tau(&self) -> f64 {
        2f64.powi(self.poll.into())
    }

    fn command(&self, step: Option<f64>, event: DisciplineEvent) -> ClockCommand {
        let rate = self.offset.abs() / (PLL * self.tau());
        ClockCommand {
            step,
            slew: Some(self.offset),
            slew_rate: rate,
            frequency_ppm: self.freq * 1e6,
            event,
        }
    }

    fn hold(&self) -> ClockCommand {
        ClockCommand::hold(self.freq * 1e6, DisciplineEvent::Idle)
    }

    fn rstclock(&mut self, state: State, t: f64, offset: f64) {
        self.state = state;
        self.last = offset;
        self.offset = offset;
        self.t = t;
    }
}

impl DisciplineAlgorithm for Rfc5905 {
    fn update(&mut self, now: f64, offset: f64, _delay: f64, _dispersion: f64) -> ClockCommand {
        if offset.abs() > PANICT {
            return ClockCommand::hold(self.freq * 1e6, DisciplineEvent::Panic);
        }
        let mu = now - self.t;
        // The residual of the previous correction, as clock_adjust() left it.
        let decayed = self.offset * (-mu / (PLL * self.tau())).exp();
        let mut freq = 0.0;
        if offset.abs() > STEPT {
            match self.state {
                State::Sync => {
                    self.state = State::Spik;
                    return self.hold();
                }
                State::Freq | State::Spik if mu < WATCH => return self.hold(),
                State::Freq => freq = (offset - self.base - decayed) / mu,
                _ => {}
            }
            self.count = 0;
            self.poll = self.minpoll;
            let was_nset = self.state == State::Nset;
            self.freq = (self.freq + freq).clamp(-MAXFREQ, MAXFREQ);
            self.rstclock(
                if was_nset { State::Freq } else { State::Sync },
                now + offset,
                0.0,
            );
            return self.command(Some(offset), DisciplineEvent::Stepped);
        }
        let e2 = self.jitter * self.jitter;
        let d2 = (offset - self.last).abs().max(self.precision).powi(2);
        self.jitter = (e2 + (d2 - e2) / AVG).sqrt();
        match self.state {
            State::Nset => {
                self.base = offset;
                self.rstclock(State::Freq, now, offset);
                return self.command(None, DisciplineEvent::Initialised);
            }
            State::Freq => {
                if mu < WATCH {
                    return self.hold();
                }
                freq = (offset - self.base - decayed) / mu;
            }
            _ => {
                let tau = self.tau();
                if self.poll > ALLAN / 2 {
                    let etemp = FLL - f64::from(self.poll);
                    freq += (offset - decayed) / (mu.max(tau) * etemp);
                }
                let etemp = mu.min(2f64.powi(ALLAN.into()));
                let dtemp = 4.0 * PLL * tau;
                freq += offset * etemp / (dtemp * dtemp);
            }
        }
        self.rstclock(State::Sync, now, offset);
        self.freq = (self.freq + freq).clamp(-MAXFREQ, MAXFREQ);
        if offset.abs() < PGATE * self.jitter {
            self.count += i32::from(self.poll);
            if self.count > LIMIT {
                self.count = LIMIT;
                if self.poll < self.maxpoll {
                    self.count = 0;
                    self.poll += 1;
                }
            }
        } else {
            self.count -= i32::from(self.poll) << 1;
            if self.count < -LIMIT {
                self.count = -LIMIT;
                if self.poll > self.minpoll {
                    self.count = 0;
                    self.poll -= 1;
                }
            }
        }
        self.command(None, DisciplineEvent::Updated)
    }

    fn poll_log2(&self) -> i8 {
        self.poll
    }

    fn clock_stepped(&mut self, amount: f64) {
        self.t += amount;
    }

    fn source_changed(&mut self) {}
}
