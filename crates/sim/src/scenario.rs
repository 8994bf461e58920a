//! Ready-made scenarios.
//!
//! The benchmark scenario follows chrony's published comparison: the
//! client starts 0.1 s off and 100 ppm fast with 1 ppb/√s frequency
//! wander, syncs to one server over a path of 100 µs base delay per
//! direction with exponentially distributed extra delay (the "jitter") on
//! both directions, using default polling.

use meridian_algo::{ClockCommand, Discipline, DisciplineConfig, DisciplineEvent};

use crate::baseline::Rfc5905;
use crate::clock::SimClock;
use crate::direct::{DirectSimulation, DisciplineAlgorithm};
use crate::driver::{RunLog, SimConfig, SimSource, Simulation};
use crate::metrics::{Recorder, Summary};
use crate::network::{Jitter, Network};
use crate::server::{SimServer, Timescale};

/// Which client to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// Meridian as the daemon runs it: `SyncCore` (associations, packets,
    /// filter, selection, Kalman discipline).
    Meridian,
    /// Meridian's discipline fed by the algorithm-direct driver, without the
    /// sync core: a cross-check of the core's plumbing.
    MeridianDirect,
    /// RFC 5905 PLL/FLL reference, through the algorithm-direct driver.
    Rfc5905,
}

/// Parameters of a chrony-style single-server scenario.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChronyScenario {
    /// Mean exponential jitter per direction (s).
    pub jitter: f64,
    /// Simulated duration (s).
    pub duration: f64,
    /// Seed.
    pub seed: u64,
}

/// Outcome of one run.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Scored summary.
    pub summary: Summary,
    /// Mean poll exponent over the run.
    pub mean_poll: f64,
    /// Steps commanded.
    pub steps: usize,
}

impl Outcome {
    fn of(recorder: &Recorder, log: &RunLog) -> Self {
        let p = &log.polls;
        Outcome {
            summary: recorder.summary(),
            mean_poll: p.iter().map(|&x| f64::from(x)).sum::<f64>() / p.len().max(1) as f64,
            steps: log.steps.len(),
        }
    }
}

/// The client clock of the chrony scenario.
pub fn chrony_clock() -> SimClock {
    SimClock::new(-0.1, 100.0, 1.0)
}

fn direct<D: DisciplineAlgorithm>(
    d: D,
    init: ClockCommand,
    sources: Vec<SimSource>,
    cfg: SimConfig,
) -> Outcome {
    let mut sim =
        DirectSimulation::new(chrony_clock(), d, sources, Timescale::default(), cfg, init);
    sim.run();
    Outcome::of(&sim.recorder, &sim.log)
}

/// Run the chrony scenario with `algo`.
pub fn run_chrony(s: ChronyScenario, algo: Algorithm) -> Outcome {
    let sources = good_sources(1, 100e-6, Jitter::Exponential(s.jitter));
    let cfg = SimConfig {
        duration: s.duration,
        seed: s.seed,
        ..Default::default()
    };
    match algo {
        Algorithm::Meridian => {
            let mut sim = meridian(chrony_clock(), sources, Timescale::default(), cfg);
            sim.run();
            Outcome::of(&sim.recorder, &sim.log)
        }
        Algorithm::MeridianDirect => {
            let d = Discipline::new(DisciplineConfig::default());
            let init = d.initial_command();
            direct(d, init, sources, cfg)
        }
        Algorithm::Rfc5905 => direct(
            Rfc5905::new(6, 10),
            ClockCommand::hold(0.0, DisciplineEvent::Idle),
            sources,
            cfg,
        ),
    }
}

/// A simulation of Meridian as the daemon runs it (its `SyncCore`) over
/// `sources`, configured by `cfg`.
pub fn meridian(
    clock: SimClock,
    sources: Vec<SimSource>,
    timescale: Timescale,
    cfg: SimConfig,
) -> Simulation {
    Simulation::new(clock, sources, timescale, cfg)
}

/// `n` good stratum-1 sources over identical paths.
pub fn good_sources(n: usize, base_delay: f64, jitter: Jitter) -> Vec<SimSource> {
    (0..n)
        .map(|_| SimSource::new(SimServer::good(), Network::new(base_delay, jitter)))
        .collect()
}
