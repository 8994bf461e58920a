//! Traces one run of the chrony scenario (as `sim-bench` runs it), to see why
//! it syncs when it does: the summary, the discipline's outliers, every
//! second the error leaves the sync band after start-up, and the error and
//! residual frequency error every 2 s up to a time.
//!
//! Usage: `sim-trace [JITTER_S [SEED [SECONDS]]]` (defaults 1e-3, 1, 600).

use meridian_algo::DisciplineEvent;
use meridian_sim::driver::SimConfig;
use meridian_sim::network::Jitter;
use meridian_sim::scenario::{chrony_clock, good_sources, meridian};
use meridian_sim::server::Timescale;

/// Run one scenario and print its trace.
pub fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).and_then(|s| s.parse::<f64>().ok());
    let jitter = arg(1).unwrap_or(1e-3);
    let seed = arg(2).map_or(1, |s| s as u64);
    let secs = arg(3).unwrap_or(600.0);
    let cfg = SimConfig {
        duration: 4.0 * 86_400.0,
        seed,
        ..Default::default()
    };
    let sources = good_sources(1, 100e-6, Jitter::Exponential(jitter));
    let mut sim = meridian(chrony_clock(), sources, Timescale::default(), cfg);
    sim.run();
    println!("{:?}", sim.recorder.summary());

    let outliers: Vec<_> = sim
        .log
        .events
        .iter()
        .filter(|(t, e)| *t < 7200.0 && *e == DisciplineEvent::Outlier)
        .map(|(t, _)| format!("{t:.0}"))
        .collect();
    println!("outliers in the first 2 h (s): {}", outliers.join(" "));

    // The band of the sync definition (metrics.rs): 10 × RMS of the second
    // half, at least 1 ms.
    let r = &sim.recorder;
    let half = &r.error[r.error.len() / 2..];
    let rms = (half.iter().map(|e| e * e).sum::<f64>() / half.len().max(1) as f64).sqrt();
    let band = (10.0 * rms).max(1e-3);
    let outside: Vec<_> = r
        .time
        .iter()
        .zip(&r.error)
        .filter(|(t, e)| **t > 100.0 && e.abs() >= band)
        .take(40)
        .map(|(t, e)| format!("{t:.0}:{:.1}", e * 1e3))
        .collect();
    println!(
        "band {:.2} ms; outside it after 100 s (s:ms, first 40): {}",
        band * 1e3,
        outside.join(" ")
    );

    for (t, e) in sim.log.events.iter().take_while(|(t, _)| *t <= secs) {
        println!("update {t:8.3} {e:?}");
    }
    for (i, t) in r.time.iter().enumerate().step_by(2) {
        if *t > secs {
            break;
        }
        println!(
            "{t:6.0} {:10.1} µs {:9.3} ppm",
            r.error[i] * 1e6,
            r.freq_error[i]
        );
    }
}
