//! End-to-end scenarios asserting bounds on the disciplined clock. Every
//! Meridian run goes through the daemon's sync core (`SyncCore`), exchanging
//! real NTP packets with the simulated servers.

use meridian_sim::clock::SimClock;
use meridian_sim::driver::SimConfig;
use meridian_sim::network::Jitter;
use meridian_sim::scenario::{
    chrony_clock, good_sources, meridian, run_chrony, Algorithm, ChronyScenario,
};
use meridian_sim::server::SimServer;
use meridian_sim::server::Timescale;
use meridian_sync::poll::SETTLING_POLLS;

const DAY: f64 = 86_400.0;

fn cfg(days: f64, seed: u64) -> SimConfig {
    SimConfig {
        duration: days * DAY,
        seed,
        ..Default::default()
    }
}

/// Max |error| over true times in `[from, to)`.
fn max_err(rec: &meridian_sim::metrics::Recorder, from: f64, to: f64) -> f64 {
    rec.time
        .iter()
        .zip(&rec.error)
        .filter(|(t, _)| **t >= from && **t < to)
        .fold(0.0, |m, (_, e)| m.max(e.abs()))
}

#[test]
fn falseticker_is_never_selected() {
    let mut sources = good_sources(4, 200e-6, Jitter::Exponential(100e-6));
    sources[3].server.offset = 1.0;
    let mut sim = meridian(
        SimClock::new(0.05, -30.0, 1.0),
        sources,
        Timescale::default(),
        cfg(1.0, 11),
    );
    sim.run();
    assert!(!sim.log.ever_peer.contains(&3), "{:?}", sim.log.ever_peer);
    assert!(
        !sim.log.ever_survivor.contains(&3),
        "{:?}",
        sim.log.ever_survivor
    );
    assert!(sim.log.steps.is_empty());
    let s = sim.recorder.summary();
    assert!(s.sync_time.unwrap() < 600.0, "{s:?}");
    assert!(s.rms_error < 50e-6, "{s:?}");
}

#[test]
fn holdover_error_follows_residual_frequency() {
    // No wander, so the only holdover error is the frequency residual.
    let mut sources = good_sources(2, 100e-6, Jitter::Exponential(100e-6));
    for s in &mut sources {
        s.network.outages.push((DAY, 2.0 * DAY));
    }
    let mut sim = meridian(
        SimClock::new(-0.02, 60.0, 0.0),
        sources,
        Timescale::default(),
        cfg(3.0, 5),
    );
    sim.run();
    let rec = &sim.recorder;
    let i0 = DAY as usize;
    let f = rec.freq_error[i0].abs() * 1e-6;
    let e0 = rec.error[i0].abs();
    let held = max_err(rec, DAY, 2.0 * DAY);
    assert!(held <= e0 + f * DAY + 20e-6, "held {held} e0 {e0} f {f}");
    // The estimate was good: a quarter of a millisecond over the whole day. (The
    // discipline's frequency moves by a few ppb from hour to hour even on this
    // wander-free clock, so the residual depends on the moment the outage starts:
    // here 2.2 ppb, 190 µs/day; across seeds 1..8 the median is 20 µs/day.)
    assert!(held < 250e-6, "{held}");
    // Sources return. Polls backed off to maxpoll (1024 s) during the outage, but
    // each poll still starts an iburst train, so the first one after the outage
    // brings the source back into selection within seconds.
    let back = sim
        .log
        .peer_changes
        .iter()
        .find(|(t, p)| *t > 2.0 * DAY && p.is_some())
        .expect("a system peer again");
    assert!(back.0 < 2.0 * DAY + 1024.0 + 64.0, "{back:?}");
    // Back to tight sync without stepping.
    assert!(sim.log.steps.is_empty());
    assert!(max_err(rec, 2.0 * DAY + 3600.0, 3.0 * DAY) < 60e-6);
}

#[test]
fn reference_step_is_stepped_once_after_stepout() {
    let ts = Timescale {
        leap_insert_at: None,
        steps: vec![(DAY, 0.5)],
    };
    let sources = good_sources(3, 100e-6, Jitter::Exponential(100e-6));
    let mut sim = meridian(SimClock::new(0.01, 20.0, 1.0), sources, ts, cfg(2.0, 3));
    sim.run();
    assert_eq!(sim.log.steps.len(), 1, "{:?}", sim.log.steps);
    let (t, amount) = sim.log.steps[0];
    assert!((amount - 0.5).abs() < 1e-3, "{amount}");
    assert!((DAY + 900.0..DAY + 900.0 + 3.0 * 64.0).contains(&t), "{t}");
    // Before the step the clock was left alone (no slewing toward it).
    assert!(max_err(&sim.recorder, DAY - 3600.0, DAY) < 100e-6);
    let before = sim.recorder.error[DAY as usize + 800];
    assert!((before + 0.5).abs() < 1e-3, "{before}");
    // Once stepped it stays in sync: no oscillation, no further steps.
    assert!(max_err(&sim.recorder, t + 600.0, 2.0 * DAY) < 100e-6);
}

#[test]
fn leap_second_is_inserted_at_midnight() {
    let leap_at = 2.0 * DAY;
    let ts = Timescale {
        leap_insert_at: Some(leap_at),
        steps: Vec::new(),
    };
    let sources = good_sources(3, 100e-6, Jitter::Exponential(100e-6));
    let mut sim = meridian(SimClock::new(-0.01, 10.0, 1.0), sources, ts, cfg(3.0, 7));
    sim.run();
    assert_eq!(sim.log.leaps.len(), 1);
    let (t, step) = sim.log.leaps[0];
    assert_eq!(step, -1.0);
    assert!((t - leap_at).abs() <= 1.0, "{t}");
    assert!(sim.log.steps.is_empty(), "{:?}", sim.log.steps);
    // Around the inserted second itself the 1 Hz record is ambiguous.
    assert!(max_err(&sim.recorder, leap_at - DAY, leap_at - 1.0) < 100e-6);
    assert!(max_err(&sim.recorder, leap_at + 2.0, 3.0 * DAY) < 100e-6);
}

#[test]
fn chrony_scenarios_beat_chrony_by_20_percent() {
    // One seed, two days per level: well under 0.8 × chrony's RMS.
    for (jitter, chrony_rms) in [(10e-6, 35e-6), (1e-3, 475e-6), (10e-3, 1603e-6)] {
        let o = run_chrony(
            ChronyScenario {
                jitter,
                duration: 2.0 * DAY,
                seed: 42,
            },
            Algorithm::Meridian,
        );
        let s = o.summary;
        assert!(s.rms_error < 0.8 * chrony_rms, "jitter {jitter}: {s:?}");
        assert!(s.sync_time.unwrap() < 3600.0, "{s:?}");
        assert_eq!(o.steps, 0);
    }
}

#[test]
fn low_jitter_syncs_within_210_seconds() {
    let o = run_chrony(
        ChronyScenario {
            jitter: 10e-6,
            duration: DAY,
            seed: 9,
        },
        Algorithm::Meridian,
    );
    let t = o.summary.sync_time.unwrap();
    assert!(t <= 210.0, "{t}");
}

#[test]
fn high_jitter_syncs_within_210_seconds() {
    // 10 ms of queueing each way: the start-up polls after iburst are what make
    // this possible (at minpoll alone the median was over 500 s). Median of 5 seeds.
    let mut syncs: Vec<f64> = (1..=5)
        .map(|seed| {
            let o = run_chrony(
                ChronyScenario {
                    jitter: 10e-3,
                    duration: DAY,
                    seed,
                },
                Algorithm::Meridian,
            );
            o.summary.sync_time.unwrap_or(f64::INFINITY)
        })
        .collect();
    syncs.sort_by(f64::total_cmp);
    assert!(syncs[2] <= 210.0, "{syncs:?}");
}

/// Discipline updates (one per accepted sample) in the first `secs` seconds of
/// the chrony scenario at `jitter`.
fn updates_in_first(jitter: f64, secs: f64) -> usize {
    let mut sim = meridian(
        chrony_clock(),
        good_sources(1, 100e-6, Jitter::Exponential(jitter)),
        Timescale::default(),
        cfg(secs / DAY, 3),
    );
    sim.run();
    sim.log.events.iter().filter(|(t, _)| *t < secs).count()
}

#[test]
fn start_up_polls_go_only_to_paths_that_need_them() {
    // Clean path: the train and the few start-up polls that bring the estimate to
    // eight samples, then minpoll (64 s).
    let clean = updates_in_first(10e-6, 600.0);
    assert!(clean <= 8 + 10, "{clean}");
    // Noisy path: polls every 8 s while settling, within the budget.
    let noisy = updates_in_first(10e-3, 600.0);
    assert!(noisy >= 8 + 20, "{noisy}");
    assert!(
        noisy <= 8 + usize::from(SETTLING_POLLS) + 10,
        "{noisy} exceeds the budget"
    );
}

#[test]
fn runs_are_deterministic() {
    let a = run_chrony(
        ChronyScenario {
            jitter: 1e-3,
            duration: 0.2 * DAY,
            seed: 4,
        },
        Algorithm::Meridian,
    );
    let b = run_chrony(
        ChronyScenario {
            jitter: 1e-3,
            duration: 0.2 * DAY,
            seed: 4,
        },
        Algorithm::Meridian,
    );
    assert_eq!(a.summary, b.summary);
}

#[test]
fn sync_core_matches_the_direct_discipline_on_the_same_world() {
    // Same seed: same oscillator, same packet delays and timestamp noise. The sync
    // core (packets, associations, filter, selection) must hand the discipline the
    // same samples the algorithm-direct driver does.
    let s = ChronyScenario {
        jitter: 1e-3,
        duration: DAY,
        seed: 6,
    };
    let core = run_chrony(s, Algorithm::Meridian).summary;
    let direct = run_chrony(s, Algorithm::MeridianDirect).summary;
    assert_eq!(core.sync_time, direct.sync_time);
    let ratio = core.rms_error / direct.rms_error;
    assert!(
        (ratio - 1.0).abs() < 0.01,
        "core {core:?} direct {direct:?}"
    );
}

#[test]
fn lossy_asymmetric_paths_still_sync() {
    // Three servers, 20 % loss each; one path asymmetric by ±50 % of its 1 ms base
    // delay, which biases that source by 0.5 ms: selection and the discipline
    // must keep the clock near the symmetric majority.
    let mut sources = good_sources(3, 1e-3, Jitter::Exponential(200e-6));
    for s in &mut sources {
        s.network.loss = 0.2;
    }
    sources[2].network.asymmetry = 0.5;
    sources[2].server = SimServer {
        stratum: 2,
        ..SimServer::good()
    };
    let mut sim = meridian(
        SimClock::new(0.03, 40.0, 1.0),
        sources,
        Timescale::default(),
        cfg(1.0, 21),
    );
    sim.run();
    assert!(sim.log.steps.is_empty(), "{:?}", sim.log.steps);
    assert!(!sim.log.ever_peer.contains(&2), "{:?}", sim.log.ever_peer);
    let s = sim.recorder.summary();
    assert!(s.sync_time.unwrap() < 900.0, "{s:?}");
    assert!(max_err(&sim.recorder, 3600.0, DAY) < 200e-6, "{s:?}");
}
