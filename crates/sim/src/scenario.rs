//! Ready-made scenarios.
//!
//! The benchmark scenario follows chrony's published comparison: the
//! client starts 0.1 s off and 100 ppm fast with 1 ppb/√s frequency
//! wander, syncs to one server over a path of 100 µs base delay per
//! direction with exponentially distributed extra delay (the "jitter") on
//! both directions, using default polling.

use meridian_algo::{Discipline, DisciplineConfig};

use crate::baseline::Rfc5905;
use crate::clock::SimClock;
use crate::driver::{DisciplineAlgorithm, SimConfig, SimSource, Simulation};
use crate::metrics::Summary;
use crate::network::{Jitter, Network};
use crate::server::{SimServer, Timescale};

/// Which discipline to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// Meridian's Kalman discipline.
    Meridian,
    /// RFC 5905 PLL/FLL reference.
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

/// The client clock of the chrony scenario.
pub fn chrony_clock() -> SimClock {
    SimClock::new(-0.1, 100.0, 1.0)
}

fn finish<D: DisciplineAlgorithm>(mut sim: Simulation<D>) -> Outcome {
    sim.run();
    let p = &sim.log.polls;
    Outcome {
        summary: sim.recorder.summary(),
        mean_poll: p.iter().map(|&x| f64::from(x)).sum::<f64>() / p.len().max(1) as f64,
        steps: sim.log.steps.len(),
    }
}

/// Run the chrony scenario with `algo`.
pub fn run_chrony(s: ChronyScenario, algo: Algorithm) -> Outcome {
    let sources = vec![SimSource::new(
        SimServer::good(),
        Network::new(100e-6, Jitter::Exponential(s.jitter)),
    )];
    let cfg = SimConfig {
        duration: s.duration,
        seed: s.seed,
        ..Default::default()
    };
    match algo {
        Algorithm::Meridian => {
            let d = Discipline::new(DisciplineConfig::default());
            let init = d.initial_command();
            finish(Simulation::new(
                chrony_clock(),
                d,
                sources,
                Timescale::default(),
                cfg,
                init,
            ))
        }
        Algorithm::Rfc5905 => {
            let d = Rfc5905::new(6, 10);
            let init = meridian_algo::ClockCommand::hold(0.0, meridian_algo::DisciplineEvent::Idle);
            finish(Simulation::new(
                chrony_clock(),
                d,
                sources,
                Timescale::default(),
                cfg,
                init,
            ))
        }
    }
}

/// A simulation of Meridian's default discipline over `sources`.
pub fn meridian(
    clock: SimClock,
    sources: Vec<SimSource>,
    timescale: Timescale,
    cfg: SimConfig,
) -> Simulation<Discipline> {
    let d = Discipline::new(DisciplineConfig::default());
    let init = d.initial_command();
    Simulation::new(clock, d, sources, timescale, cfg, init)
}

/// `n` good stratum-1 sources over identical paths.
pub fn good_sources(n: usize, base_delay: f64, jitter: Jitter) -> Vec<SimSource> {
    (0..n)
        .map(|_| SimSource::new(SimServer::good(), Network::new(base_delay, jitter)))
        .collect()
}
