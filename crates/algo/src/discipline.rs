//! Clock discipline: turns offset measurements into clock commands.
//!
//! Design (aimed at beating chrony's regression discipline):
//! * a Kalman phase/frequency estimator ([`crate::estimator`]) replaces
//!   both ntpd's PLL/FLL and chrony's regression: it is the optimal
//!   linear estimator for the white-phase + random-walk-frequency clock
//!   model and needs no history trimming;
//! * each sample is weighted by its own noise, derived from its delay in
//!   excess of the minimum ([`crate::noise`]), so queued exchanges cost
//!   almost nothing and clean ones dominate;
//! * an innovation gate rejects outliers the noise model cannot explain;
//! * every exchange also bounds the offset by half its delay; the estimate
//!   is combined with the polygon of phases and frequencies those bounds
//!   allow ([`crate::bounds`]), which pins the clock faster than averaging
//!   when queueing is heavy;
//! * the full estimated offset is slewed and the full frequency estimate
//!   applied at every update (certainty equivalence: the remaining clock
//!   error is then just the estimation error), and the estimator accounts
//!   for the slew still being absorbed so nothing is corrected twice; the
//!   slew is fast ([`MAX_SLEW_RATE_PPM`], frequency-assisted like chrony's),
//!   so a start-up offset under the step threshold is gone in about a
//!   second instead of `adjtime`'s 200 s per 0.1 s;
//! * ntpd semantics for large offsets: step threshold, stepout, panic;
//! * the poll interval is the longest one whose predicted steady-state
//!   error is within `poll_tolerance` of the error at minpoll.
//!
//! All times are local clock seconds passed in by the caller.

use crate::bank::Bank;
use crate::bounds::{Bounds, Constrained};
use crate::command::{ClockCommand, DisciplineEvent};
use crate::estimator::{steady_state_rms, Estimator};
use crate::noise::DelayNoise;

/// The fastest phase slew a clock must support (ppm), chrony's default
/// `maxslewrate` (1/12): the kernel can change the length of a tick by 10 %
/// (`ADJ_TICK`) on top of its ±500 ppm frequency, so this leaves headroom for
/// any frequency correction. At this rate 0.1 s is corrected in 1.2 s, where
/// `adjtime`'s fixed 500 ppm takes 200 s.
pub const MAX_SLEW_RATE_PPM: f64 = 1e6 / 12.0;

/// Discipline tunables. Defaults follow ntpd where ntpd has a knob.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DisciplineConfig {
    /// Offsets above this (s) are stepped rather than slewed (`tinker step`).
    pub step_threshold: f64,
    /// A spike must persist this long (s) before it is stepped.
    pub stepout: f64,
    /// Offsets above this (s) make the daemon give up (`tinker panic`).
    pub panic_threshold: f64,
    /// Allow the first correction to exceed the panic threshold (`-g`).
    pub allow_first_big_step: bool,
    /// Frequency from the drift file (ppm), if any.
    pub initial_frequency_ppm: Option<f64>,
    /// Frequency correction limit (ppm).
    pub max_frequency_ppm: f64,
    /// Rate at which phase corrections are slewed (ppm). The clock must be
    /// able to slew this fast ([`MAX_SLEW_RATE_PPM`] at most): the
    /// discipline assumes the clock absorbs each correction at this rate.
    pub slew_rate_ppm: f64,
    /// Minimum poll exponent (log2 s).
    pub minpoll: i8,
    /// Maximum poll exponent (log2 s).
    pub maxpoll: i8,
    /// Assumed frequency wander (ppb per √s, random walk).
    pub wander_ppb: f64,
    /// Noise floor of one measurement (s): timestamp precision.
    pub precision: f64,
    /// Poll may grow while predicted error stays within (1 + this) of the
    /// error at minpoll.
    pub poll_tolerance: f64,
    /// Predicted errors below this (s) are good enough to poll slower.
    pub poll_accuracy_floor: f64,
    /// Innovation gate in standard deviations.
    pub outlier_gate: f64,
}

impl Default for DisciplineConfig {
    fn default() -> Self {
        Self {
            step_threshold: 0.128,
            stepout: 900.0,
            panic_threshold: 1000.0,
            allow_first_big_step: false,
            initial_frequency_ppm: None,
            max_frequency_ppm: 500.0,
            slew_rate_ppm: MAX_SLEW_RATE_PPM,
            minpoll: 6,
            maxpoll: 10,
            wander_ppb: 1.0,
            precision: 1e-7,
            poll_tolerance: 0.25,
            poll_accuracy_floor: 1e-6,
            outlier_gate: 5.0,
        }
    }
}

/// Current estimates, for `ntpq -c rv` and loopstats.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DisciplineStats {
    /// Last estimated clock offset (s, reference − local).
    pub offset: f64,
    /// Frequency correction in force (ppm).
    pub frequency_ppm: f64,
    /// RMS of recent innovations (s).
    pub jitter: f64,
    /// RMS of recent frequency changes (ppm), ntpd's clock stability.
    pub wander_ppm: f64,
    /// Estimator's standard error of the offset (s).
    pub error_estimate: f64,
    /// Current poll exponent.
    pub poll: i8,
    /// Updates accepted so far.
    pub updates: u64,
    /// Whether the estimator is tracking (not unset or in a spike).
    pub synchronised: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    Unset,
    Tracking,
    Spike { since: f64 },
}

/// An outstanding slew, to know how much the clock absorbed by when.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Slew {
    start: f64,
    amount: f64,
    rate: f64,
}

impl Slew {
    fn absorbed(&self, t: f64) -> f64 {
        let done = (self.rate * (t - self.start).max(0.0)).min(self.amount.abs());
        done.copysign(self.amount)
    }
}

/// The sans-IO clock discipline state machine.
#[derive(Clone, Debug)]
pub struct Discipline {
    cfg: DisciplineConfig,
    state: State,
    est: Option<Bank>,
    noise: DelayNoise,
    slew: Option<Slew>,
    frequency_ppm: f64,
    /// Estimator could not explain this many samples in a row.
    outliers: u32,
    /// Exponential average of 1/R: information per sample.
    mean_info: f64,
    jitter2: f64,
    wander2: f64,
    poll: i8,
    updates: u64,
    /// Delay bounds on the uncorrected offset ([`crate::bounds`]).
    bounds: Bounds,
    /// Phase the discipline has corrected since the bounds started (slews
    /// absorbed plus frequency correction integrated), s, and up to when.
    corrected: (f64, f64),
}

/// The poll may grow once the phase error is within this many times the
/// steady-state error at minpoll.
const CONVERGED: f64 = 3.0;
/// Start-up polls go on until the phase error is within this many times the
/// steady-state error at minpoll.
const SETTLED: f64 = 2.0;

/// Delay bounds kept, one per update: 32 polls.
const BOUNDS: usize = 32;

impl Discipline {
    /// New discipline; apply [`Discipline::initial_command`] to the clock.
    pub fn new(cfg: DisciplineConfig) -> Self {
        let minpoll = cfg.minpoll.min(cfg.maxpoll);
        Self {
            cfg,
            state: State::Unset,
            est: None,
            noise: DelayNoise::new(64, cfg.precision),
            slew: None,
            frequency_ppm: cfg
                .initial_frequency_ppm
                .unwrap_or(0.0)
                .clamp(-cfg.max_frequency_ppm, cfg.max_frequency_ppm),
            outliers: 0,
            mean_info: 0.0,
            jitter2: 0.0,
            wander2: 0.0,
            poll: minpoll,
            updates: 0,
            bounds: Bounds::new(BOUNDS),
            corrected: (0.0, 0.0),
        }
    }

    /// Configuration in use.
    pub fn config(&self) -> &DisciplineConfig {
        &self.cfg
    }

    /// Command to apply at start-up: the drift-file frequency.
    pub fn initial_command(&self) -> ClockCommand {
        ClockCommand::hold(self.frequency_ppm, DisciplineEvent::Idle)
    }

    /// Poll exponent the sources should use now (log2 s).
    pub fn poll_interval_log2(&self) -> i8 {
        self.poll
    }

    /// Frequency to save to the drift file (ppm).
    pub fn frequency_ppm(&self) -> f64 {
        self.frequency_ppm
    }

    /// Current estimates.
    pub fn stats(&self) -> DisciplineStats {
        DisciplineStats {
            offset: self.est.as_ref().map_or(0.0, |e| e.best().offset),
            frequency_ppm: self.frequency_ppm,
            jitter: self.jitter2.sqrt(),
            wander_ppm: self.wander2.sqrt(),
            error_estimate: self
                .est
                .as_ref()
                .map_or(f64::INFINITY, |e| e.best().p[0][0].max(0.0).sqrt()),
            poll: self.poll,
            updates: self.updates,
            synchronised: self.state == State::Tracking && self.est.is_some(),
        }
    }

    /// The reference source changed: its path delay is unrelated to the
    /// old one, so the minimum-delay history must be rebuilt.
    pub fn source_changed(&mut self) {
        self.noise.reset();
        self.bounds.clear();
    }

    /// The clock was stepped by someone else (e.g. a leap second inserted
    /// by the kernel): shift every stored local time accordingly.
    pub fn clock_stepped(&mut self, amount: f64) {
        if let Some(e) = &mut self.est {
            e.shift_time(amount);
        }
        if let Some(s) = &mut self.slew {
            s.start += amount;
        }
        if let State::Spike { since } = &mut self.state {
            *since += amount;
        }
        self.corrected.1 += amount;
        self.bounds.clear();
    }

    /// Feed one measurement taken at local time `now`: `offset`
    /// (reference − local, s), round-trip `delay` (s) and the sample's own
    /// `dispersion` (s, not root dispersion). Apply the returned command.
    pub fn update(&mut self, now: f64, offset: f64, delay: f64, dispersion: f64) -> ClockCommand {
        if !(now.is_finite() && offset.is_finite() && delay.is_finite()) {
            return self.hold(DisciplineEvent::Idle);
        }
        let big = offset.abs() > self.cfg.step_threshold;
        match self.state {
            State::Unset => {
                if offset.abs() > self.cfg.panic_threshold && !self.cfg.allow_first_big_step {
                    return self.hold(DisciplineEvent::Panic);
                }
                if big {
                    return self.step(now, offset, delay, dispersion);
                }
            }
            State::Tracking | State::Spike { .. } if big => {
                if offset.abs() > self.cfg.panic_threshold {
                    return self.hold(DisciplineEvent::Panic);
                }
                let since = match self.state {
                    State::Spike { since } => since,
                    _ => now,
                };
                self.state = State::Spike { since };
                if now - since >= self.cfg.stepout {
                    return self.step(now, offset, delay, dispersion);
                }
                return self.hold(DisciplineEvent::SpikeIgnored);
            }
            _ => {}
        }
        self.state = State::Tracking;
        self.track(now, offset, delay, dispersion)
    }

    fn hold(&self, event: DisciplineEvent) -> ClockCommand {
        ClockCommand::hold(self.frequency_ppm, event)
    }

    fn q(&self) -> f64 {
        self.est
            .as_ref()
            .map_or((self.cfg.wander_ppb * 1e-9).powi(2), Bank::q)
    }

    fn absorbed_between(&self, a: f64, b: f64) -> f64 {
        self.slew.map_or(0.0, |s| s.absorbed(b) - s.absorbed(a))
    }

    fn step(&mut self, now: f64, offset: f64, delay: f64, dispersion: f64) -> ClockCommand {
        let r = self.noise.observe(delay, dispersion);
        // Everything remembered in local time moves with the clock.
        self.slew = None;
        self.clock_stepped(offset);
        if let Some(e) = &mut self.est {
            e.predict(now + offset, 0.0);
            e.forget_phase(r);
        }
        self.state = State::Tracking;
        self.outliers = 0;
        self.poll = self.cfg.minpoll;
        ClockCommand {
            step: Some(offset),
            // Cancel whatever slew the clock still had outstanding.
            slew: Some(0.0),
            slew_rate: self.cfg.slew_rate_ppm * 1e-6,
            frequency_ppm: self.frequency_ppm,
            event: DisciplineEvent::Stepped,
        }
    }

    /// Bring the total correction up to `now`: what the slew absorbed and
    /// the frequency correction accumulated since the last update.
    fn correction_at(&mut self, now: f64) -> f64 {
        let (total, since) = self.corrected;
        let total = if self.est.is_some() {
            total
                + self.absorbed_between(since, now)
                + self.frequency_ppm * 1e-6 * (now - since).max(0.0)
        } else {
            0.0
        };
        self.corrected = (total, now);
        total
    }

    fn track(&mut self, now: f64, offset: f64, delay: f64, dispersion: f64) -> ClockCommand {
        let r = self.noise.observe(delay, dispersion);
        let correction = self.correction_at(now);
        let mut event = DisciplineEvent::Updated;
        let mut est = match self.est.take() {
            Some(mut e) => {
                let applied = self.absorbed_between(e.best().time, now);
                e.predict(now, applied);
                e
            }
            None => {
                event = DisciplineEvent::Initialised;
                let sigma = if self.cfg.initial_frequency_ppm.is_some() {
                    5e-6
                } else {
                    2e-4
                };
                // The slew up to now is already in this measurement.
                let q = (self.cfg.wander_ppb * 1e-9).powi(2);
                Bank::new(Estimator::new(now, offset, r, sigma), q)
            }
        };
        if event == DisciplineEvent::Updated {
            let inn = est.innovation(offset, r);
            if inn.residual.abs() > self.cfg.outlier_gate * inn.variance.sqrt() {
                self.outliers += 1;
                if self.outliers < 3 {
                    // Keep the prediction's time base; drop the sample.
                    self.est = Some(est);
                    return self.hold(DisciplineEvent::Outlier);
                }
                // Persistent disagreement: the model is wrong (frequency
                // jump, route change). Widen the covariance so the data win.
                est.inflate(inn.residual, 2f64.powi(self.poll.into()));
            }
            self.outliers = 0;
            let inn = est.update(offset, r);
            let a = 1.0 / 16.0;
            self.jitter2 += a * (inn.residual * inn.residual - self.jitter2);
        }
        // Combine with what the delay bounds allow ([`crate::bounds`]), in the
        // frame of the uncorrected clock where they are straight lines.
        self.bounds.push(now, offset + correction, delay);
        let best = *est.best();
        let (phase, rate) = (
            best.offset + correction,
            best.rate + self.frequency_ppm * 1e-6,
        );
        // Allow at least the configured wander: a bank member that assumes
        // less would make old bounds falsely tight.
        let q = est.q().max((self.cfg.wander_ppb * 1e-9).powi(2));
        if let Constrained::Moved(p, f) = self.bounds.constrain(now, phase, rate, best.p, q) {
            est.corrected(phase - p, rate - f);
        }
        self.updates += 1;
        self.mean_info += (1.0 / r - self.mean_info) / (self.updates.min(32) as f64);

        // Correct the full frequency estimate, within the clamp.
        let max = self.cfg.max_frequency_ppm;
        let new_freq = (self.frequency_ppm + est.best().rate * 1e6).clamp(-max, max);
        let dfreq = new_freq - self.frequency_ppm;
        est.corrected(0.0, dfreq * 1e-6);
        self.frequency_ppm = new_freq;
        if event == DisciplineEvent::Updated {
            self.wander2 += (dfreq * dfreq - self.wander2) / 16.0;
        }

        // Slew the full offset estimate; the estimator keeps it until the
        // clock has absorbed it (accounted in predict()).
        let rate = self.cfg.slew_rate_ppm * 1e-6;
        let amount = est.best().offset;
        self.slew = Some(Slew {
            start: now,
            amount,
            rate,
        });
        self.est = Some(est);
        self.adapt_poll();
        ClockCommand {
            step: None,
            slew: Some(amount),
            slew_rate: rate,
            frequency_ppm: self.frequency_ppm,
            event,
        }
    }

    /// Predicted steady-state RMS error when polling every 2^`poll` s, from the
    /// information the samples have carried so far.
    fn steady_state_rms(&self, poll: i8) -> f64 {
        let r_eff = 1.0 / self.mean_info.max(1e-300);
        steady_state_rms(2f64.powi(poll.into()), r_eff, self.q())
    }

    /// Enough updates, and the phase error below `factor` times the
    /// steady-state error at minpoll.
    fn converged_within(&self, factor: f64) -> bool {
        let Some(est) = self.est.as_ref().map(|b| *b.best()) else {
            return false;
        };
        let base = self.steady_state_rms(self.cfg.minpoll.min(self.cfg.maxpoll));
        self.updates >= 8 && est.p[0][0].sqrt() < factor * base.max(self.cfg.precision)
    }

    /// Tracking but not yet converged: more samples now would pin the clock
    /// sooner than waiting for minpoll (sources with `iburst` then send start-up
    /// polls).
    pub fn settling(&self) -> bool {
        self.state == State::Tracking && self.est.is_some() && !self.converged_within(SETTLED)
    }

    /// Move the poll one step toward the longest interval whose predicted
    /// error is acceptable; stay at minpoll until the estimate converged.
    fn adapt_poll(&mut self) {
        let (lo, hi) = (self.cfg.minpoll.min(self.cfg.maxpoll), self.cfg.maxpoll);
        if self.est.is_none() {
            return;
        }
        let rms = |p: i8| self.steady_state_rms(p);
        let base = rms(lo);
        let mut target = lo;
        if self.converged_within(CONVERGED) {
            let limit = (base * (1.0 + self.cfg.poll_tolerance)).max(self.cfg.poll_accuracy_floor);
            for p in lo + 1..=hi {
                if rms(p) <= limit {
                    target = p;
                } else {
                    break;
                }
            }
        }
        self.poll = match target.cmp(&self.poll) {
            std::cmp::Ordering::Greater => self.poll + 1,
            std::cmp::Ordering::Less => target,
            std::cmp::Ordering::Equal => self.poll,
        }
        .clamp(lo, hi);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minimal clock: offset from truth and frequency error, no noise.
    struct Toy {
        err: f64,
        native_ppm: f64,
        freq_ppm: f64,
        slew_left: f64,
        slew_rate: f64,
    }
    impl crate::command::ClockControl for Toy {
        fn step(&mut self, o: f64) {
            self.err += o;
        }
        fn slew(&mut self, o: f64, r: f64) {
            self.slew_left = o;
            self.slew_rate = r;
        }
        fn set_frequency(&mut self, p: f64) {
            self.freq_ppm = p;
        }
    }
    impl Toy {
        fn run(&mut self, dt: f64) {
            let s = (self.slew_rate * dt)
                .min(self.slew_left.abs())
                .copysign(self.slew_left);
            self.slew_left -= s;
            self.err += (self.native_ppm + self.freq_ppm) * 1e-6 * dt + s;
        }
    }

    #[test]
    fn converges_on_offset_and_frequency() {
        let mut d = Discipline::new(DisciplineConfig::default());
        let mut c = Toy {
            err: -0.05,
            native_ppm: 80.0,
            freq_ppm: 0.0,
            slew_left: 0.0,
            slew_rate: 0.0,
        };
        let mut t = 0.0;
        for _ in 0..200 {
            let cmd = d.update(t, -c.err, 0.001, 1e-6);
            cmd.apply(&mut c);
            let dt = 2f64.powi(d.poll_interval_log2().into());
            c.run(dt);
            t += dt;
        }
        assert!(c.err.abs() < 1e-6, "{}", c.err);
        assert!(
            (d.frequency_ppm() + 80.0).abs() < 0.01,
            "{}",
            d.frequency_ppm()
        );
        assert!(d.stats().synchronised);
    }

    #[test]
    fn slews_a_large_offset_within_seconds_at_the_configured_rate() {
        // 0.1 s is under the step threshold: slewed, at MAX_SLEW_RATE_PPM.
        let mut d = Discipline::new(DisciplineConfig::default());
        let mut c = Toy {
            err: -0.1,
            native_ppm: 0.0,
            freq_ppm: 0.0,
            slew_left: 0.0,
            slew_rate: 0.0,
        };
        let cmd = d.update(0.0, 0.1, 0.001, 1e-6);
        assert_eq!(cmd.step, None);
        assert_eq!(cmd.slew_rate, MAX_SLEW_RATE_PPM * 1e-6);
        cmd.apply(&mut c);
        c.run(1.0);
        assert!(
            (c.err + 0.1 - MAX_SLEW_RATE_PPM * 1e-6).abs() < 1e-9,
            "{}",
            c.err
        );
        c.run(1.0);
        assert!(c.err.abs() < 1e-6, "{}", c.err);
        // The next measurement agrees with what the discipline expects: the
        // absorbed slew is not corrected twice.
        let cmd = d.update(2.0, -c.err, 0.001, 1e-6);
        assert_eq!(cmd.event, DisciplineEvent::Updated);
        assert!(cmd.slew.unwrap().abs() < 1e-5, "{cmd:?}");
    }

    #[test]
    fn first_big_offset_steps_and_panic_is_reported() {
        let mut d = Discipline::new(DisciplineConfig::default());
        let cmd = d.update(0.0, 0.5, 0.001, 1e-6);
        assert_eq!(cmd.step, Some(0.5));
        let mut d = Discipline::new(DisciplineConfig::default());
        assert_eq!(
            d.update(0.0, 5000.0, 0.001, 1e-6).event,
            DisciplineEvent::Panic
        );
        let mut d = Discipline::new(DisciplineConfig {
            allow_first_big_step: true,
            ..Default::default()
        });
        assert_eq!(d.update(0.0, 5000.0, 0.001, 1e-6).step, Some(5000.0));
    }

    #[test]
    fn spike_is_ignored_until_stepout() {
        let mut d = Discipline::new(DisciplineConfig::default());
        for i in 0..10 {
            d.update(f64::from(i) * 64.0, 0.0, 0.001, 1e-6);
        }
        let mut steps = 0;
        let mut first_step = None;
        for i in 10..40 {
            let t = f64::from(i) * 64.0;
            let cmd = d.update(t, if steps == 0 { 0.5 } else { 0.0 }, 0.001, 1e-6);
            if cmd.step.is_some() {
                steps += 1;
                first_step.get_or_insert(t);
            }
        }
        assert_eq!(steps, 1);
        let t = first_step.unwrap();
        assert!((900.0..900.0 + 64.0 + 640.0).contains(&t), "{t}");
    }

    #[test]
    fn poll_stays_within_limits() {
        let cfg = DisciplineConfig {
            minpoll: 4,
            maxpoll: 7,
            ..Default::default()
        };
        let mut d = Discipline::new(cfg);
        for i in 0..100 {
            d.update(f64::from(i) * 16.0, 0.0, 0.001, 1e-6);
            let p = d.poll_interval_log2();
            assert!((4..=7).contains(&p));
        }
        // Noise-free and wander-free enough to poll at maxpoll eventually.
        let cfg = DisciplineConfig {
            wander_ppb: 0.001,
            ..cfg
        };
        let mut d = Discipline::new(cfg);
        let mut t = 0.0;
        for _ in 0..100 {
            d.update(t, 0.0, 0.001, 1e-6);
            t += 2f64.powi(d.poll_interval_log2().into());
        }
        assert_eq!(d.poll_interval_log2(), 7);
    }
}
