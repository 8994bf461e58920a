//! Per-source clock filter (RFC 5905 §10).
//!
//! Each source keeps the last eight `(offset, delay, dispersion, time)`
//! samples in a shift register. The sample with the smallest delay is the
//! one least disturbed by queueing, so it is chosen as the source's
//! offset. Dispersion of older samples grows at `PHI` to express that a
//! stale measurement says less about the clock now. Popcorn spikes (a new
//! best sample far from the previous output, measured against the peer
//! jitter) are suppressed, and a sample is only output once: if the best
//! sample is older than the last one output, nothing new is learned.

/// Frequency tolerance of a local oscillator: dispersion growth in s/s.
pub const PHI: f64 = 15e-6;
/// Number of stages in the shift register.
pub const NSTAGE: usize = 8;
/// Dispersion at which a sample (or source) is considered worthless.
pub const MAXDISP: f64 = 16.0;
/// Popcorn spike gate, in multiples of the peer jitter.
pub const SGATE: f64 = 3.0;

/// One measurement from an on-wire exchange, all in seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Clock offset of the server relative to us (server − local).
    pub offset: f64,
    /// Round-trip delay.
    pub delay: f64,
    /// Dispersion of this sample when taken (precisions + PHI · delay).
    pub dispersion: f64,
    /// Local clock time at which the sample was taken.
    pub time: f64,
}

/// The filter's current view of a source.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FilterOutput {
    /// Offset of the minimum-delay sample.
    pub offset: f64,
    /// Delay of the minimum-delay sample.
    pub delay: f64,
    /// Weighted sum of stage dispersions (RFC 5905 peer dispersion).
    pub dispersion: f64,
    /// RMS of offset differences against the chosen sample (peer jitter).
    pub jitter: f64,
    /// Local time of the chosen sample.
    pub time: f64,
}

/// What happened when a sample was pushed into the filter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FilterResult {
    /// A new (newer than the last output) best sample was chosen.
    Updated(FilterOutput),
    /// The best sample was a popcorn spike and was not used.
    Spike,
    /// The best sample is not newer than the last output: nothing new.
    Stale,
}

/// Eight-stage clock filter for one source.
#[derive(Clone, Debug)]
pub struct ClockFilter {
    /// Newest first. `None` stages are empty (treated as MAXDISP).
    stages: [Option<Sample>; NSTAGE],
    /// Local time of the last shift, used to age dispersion.
    last_shift: Option<f64>,
    /// Last output, if any.
    output: Option<FilterOutput>,
    /// Floor for jitter: the combined precision of both ends.
    precision: f64,
}

impl ClockFilter {
    /// Empty filter; `precision` (s) is the jitter floor (system precision).
    pub fn new(precision: f64) -> Self {
        Self {
            stages: [None; NSTAGE],
            last_shift: None,
            output: None,
            precision: precision.max(0.0),
        }
    }

    /// Clear all stages (e.g. after the local clock was stepped, which
    /// makes every stored offset meaningless).
    pub fn reset(&mut self) {
        *self = Self::new(self.precision);
    }

    /// Last output, if any sample has been accepted yet.
    pub fn output(&self) -> Option<FilterOutput> {
        self.output
    }

    /// The shift register, newest first (ntpq's filtdelay/filtoffset/filtdisp).
    pub fn stages(&self) -> &[Option<Sample>; NSTAGE] {
        &self.stages
    }

    /// The most recent sample pushed, whatever the filter decided.
    pub fn latest(&self) -> Option<Sample> {
        self.stages[0]
    }

    /// Current dispersion of the output aged to `now` (RFC 5905 root
    /// distance uses this), or `MAXDISP` without output.
    pub fn dispersion_at(&self, now: f64) -> f64 {
        match self.output {
            Some(o) => (o.dispersion + PHI * (now - o.time).max(0.0)).min(MAXDISP),
            None => MAXDISP,
        }
    }

    /// Record a missed poll: shift in an empty (MAXDISP) stage so a
    /// silent source ages out, as `clock_filter(p, 0, 0, MAXDISP)` does.
    pub fn push_missing(&mut self, now: f64) {
        self.shift(now, None);
    }

    /// Push a new sample; `poll_interval` (s) bounds popcorn suppression so
    /// a genuine, persistent offset change is accepted after two polls.
    pub fn push(&mut self, sample: Sample, poll_interval: f64) -> FilterResult {
        self.shift(sample.time, Some(sample));

        // Order valid stages by delay; empty or worthless ones are ignored.
        let mut valid: Vec<Sample> = self
            .stages
            .iter()
            .flatten()
            .copied()
            .filter(|s| s.dispersion < MAXDISP)
            .collect();
        if valid.is_empty() {
            return FilterResult::Stale;
        }
        valid.sort_by(|a, b| a.delay.total_cmp(&b.delay));
        let best = valid[0];

        // Peer dispersion: exponentially weighted, sorted by delay, with
        // missing stages counting as MAXDISP (RFC 5905 clock_filter()).
        let mut dispersion = 0.0;
        for i in (0..NSTAGE).rev() {
            let d = valid.get(i).map_or(MAXDISP, |s| s.dispersion);
            dispersion = 0.5 * (dispersion + d);
        }

        let jitter = if valid.len() > 1 {
            let sum: f64 = valid[1..]
                .iter()
                .map(|s| (s.offset - best.offset).powi(2))
                .sum();
            (sum / (valid.len() - 1) as f64).sqrt()
        } else {
            0.0
        }
        .max(self.precision);

        if let Some(prev) = self.output {
            // Popcorn spike: a lone outlier is ignored, but only for up to
            // two polls so a real change of offset is followed. The two polls
            // run to the newest sample, not the best one: a held spike that
            // stays the minimum-delay sample would otherwise be held until it
            // leaves the register, eight polls on.
            // Only once the register is established (ntpd: peer dispersion
            // below maxdist); at start-up every sample is news.
            let gate = SGATE * prev.jitter;
            if prev.dispersion < 1.0
                && (best.offset - prev.offset).abs() > gate
                && sample.time - prev.time < 2.0 * poll_interval
                && best.time > prev.time
            {
                return FilterResult::Spike;
            }
            if best.time <= prev.time {
                // Keep the dispersion/jitter current without new offset.
                let mut o = prev;
                o.dispersion = dispersion;
                o.jitter = jitter;
                self.output = Some(o);
                return FilterResult::Stale;
            }
        }
        let out = FilterOutput {
            offset: best.offset,
            delay: best.delay,
            dispersion,
            jitter,
            // The chosen sample's epoch, so later pushes can tell whether
            // the filter has learned something newer.
            time: best.time,
        };
        self.output = Some(out);
        FilterResult::Updated(out)
    }

    fn shift(&mut self, now: f64, sample: Option<Sample>) {
        let aged = match self.last_shift {
            Some(t) => PHI * (now - t).max(0.0),
            None => 0.0,
        };
        for i in (1..NSTAGE).rev() {
            self.stages[i] = self.stages[i - 1].map(|mut s| {
                s.dispersion = (s.dispersion + aged).min(MAXDISP);
                s
            });
        }
        self.stages[0] = sample;
        self.last_shift = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(offset: f64, delay: f64, time: f64) -> Sample {
        Sample {
            offset,
            delay,
            dispersion: 1e-6,
            time,
        }
    }

    #[test]
    fn chooses_minimum_delay_sample() {
        let mut f = ClockFilter::new(1e-7);
        let data = [(0.010, 0.050), (0.001, 0.010), (0.020, 0.090)];
        let mut last = FilterResult::Stale;
        for (i, (o, d)) in data.iter().enumerate() {
            last = f.push(s(*o, *d, i as f64 * 64.0), 64.0);
        }
        // Third sample is not the best and the best was already output.
        assert_eq!(last, FilterResult::Stale);
        let out = f.output().unwrap();
        assert_eq!(out.offset, 0.001);
        assert_eq!(out.delay, 0.010);
        assert!(out.jitter > 0.005 && out.jitter < 0.02, "{}", out.jitter);
    }

    #[test]
    fn popcorn_spike_is_suppressed_then_accepted_if_persistent() {
        let mut f = ClockFilter::new(1e-7);
        for i in 0..8 {
            let o = if i % 2 == 0 { 1e-4 } else { -1e-4 };
            f.push(s(o, 0.010 - i as f64 * 1e-6, i as f64), 1.0);
        }
        // Much lower delay but offset 1 s away: a spike.
        assert_eq!(f.push(s(1.0, 0.001, 8.0), 1.0), FilterResult::Spike);
        // Persisting beyond two poll intervals, it is accepted.
        let r = f.push(s(1.0, 0.0009, 11.0), 1.0);
        assert!(matches!(r, FilterResult::Updated(o) if (o.offset - 1.0).abs() < 1e-9));
    }

    #[test]
    fn a_held_spike_is_released_two_polls_after_the_last_output() {
        let mut f = ClockFilter::new(1e-7);
        for i in 0..8 {
            let o = if i % 2 == 0 { 1e-4 } else { -1e-4 };
            f.push(s(o, 0.010 - i as f64 * 1e-6, i as f64 * 64.0), 64.0);
        }
        // The clock moved: a low-delay sample 50 ms away is held...
        assert_eq!(f.push(s(0.05, 0.001, 512.0), 64.0), FilterResult::Spike);
        // ...and released two polls after the last output (448 s), although it
        // is still the minimum-delay sample: it is not held for as long as it
        // stays in the register.
        let r = f.push(s(0.05, 0.005, 576.0), 64.0);
        assert!(
            matches!(r, FilterResult::Updated(o) if o.time == 512.0),
            "{r:?}"
        );
    }

    #[test]
    fn dispersion_ages_and_missing_samples_raise_it() {
        let mut f = ClockFilter::new(1e-7);
        for i in 0..8 {
            f.push(s(0.0, 0.01, i as f64 * 64.0), 64.0);
        }
        let d0 = f.output().unwrap().dispersion;
        assert!(d0 < 0.01, "{d0}");
        assert!((f.dispersion_at(7.0 * 64.0 + 1000.0) - d0 - PHI * 1000.0).abs() < 1e-12);
        for i in 8..16 {
            f.push_missing(i as f64 * 64.0);
        }
        f.push(s(0.0, 0.01, 16.0 * 64.0), 64.0);
        // Seven stages empty: each weighs in as MAXDISP / 2^(i+1).
        let d = f.output().unwrap().dispersion;
        assert!(d > 7.0 && d < MAXDISP, "{d}");
    }
}
