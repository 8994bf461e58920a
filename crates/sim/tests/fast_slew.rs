//! The chrony scenario's start-up: the clock starts 0.1 s off, under the step
//! threshold, so it is slewed. With a frequency-assisted slew (up to
//! `MAX_SLEW_RATE_PPM`, where `adjtime` gives 500 ppm and takes 200 s) the
//! clock is within a millisecond as soon as the first samples are in.

use meridian_algo::MAX_SLEW_RATE_PPM;
use meridian_sim::scenario::{run_chrony, Algorithm, ChronyScenario};

const DAY: f64 = 86_400.0;

fn sync_time(jitter: f64, seed: u64) -> (f64, usize) {
    let o = run_chrony(
        ChronyScenario {
            jitter,
            duration: DAY,
            seed,
        },
        Algorithm::Meridian,
    );
    (o.summary.sync_time.expect("synchronises"), o.steps)
}

#[test]
fn low_jitter_slews_the_initial_offset_within_seconds() {
    // 0.1 s at 1/12: 1.2 s, after the 4 samples selection needs (6 s).
    for seed in [1, 2, 3] {
        let (t, steps) = sync_time(10e-6, seed);
        assert!(t <= 20.0, "seed {seed}: {t}");
        assert_eq!(steps, 0, "slewed, not stepped");
    }
}

#[test]
fn one_ms_jitter_syncs_within_210_seconds() {
    // The first poll after the iburst (78 s) fixes the start-up frequency
    // error; before the fast slew this took 216 s at best (0.1 s at 500 ppm).
    let mut times: Vec<f64> = (1..=5).map(|seed| sync_time(1e-3, seed).0).collect();
    times.sort_by(f64::total_cmp);
    assert!(times[2] <= 210.0, "median of {times:?}");
}

#[test]
fn the_simulated_clock_slews_as_fast_as_the_discipline_asks_and_no_faster() {
    use meridian_algo::ClockControl;
    use meridian_sim::clock::SimClock;
    // The discipline's rate is within the tick's 10 %, so it is honoured exactly...
    let rate = MAX_SLEW_RATE_PPM * 1e-6;
    let mut c = SimClock::new(-0.1, 0.0, 0.0);
    c.set_frequency(500.0);
    c.slew(0.1, rate);
    c.advance(0.6);
    assert!((c.offset - (-0.1 + 0.6 * (rate + 500e-6))).abs() < 1e-12);
    // ...while a request beyond the tick's limit is carried out at the limit.
    let mut c = SimClock::new(-0.1, 0.0, 0.0);
    c.slew(0.1, 0.5);
    c.advance(0.5);
    assert!((c.offset - (-0.1 + 0.5 * SimClock::MAX_TICK_ADJUST)).abs() < 1e-12);
}
