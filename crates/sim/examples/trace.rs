//! Debug trace of one chrony-scenario run through the sync core: error and
//! frequency error every 10 minutes (or every `step` s).
use meridian_sim::scenario::{chrony_clock, good_sources};
use meridian_sim::{driver::SimConfig, network::Jitter, server::Timescale};

fn main() {
    let args: Vec<f64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let (jitter, seed, days) = (args[0], args[1] as u64, args[2]);
    let cfg = SimConfig {
        duration: days * 86400.0,
        seed,
        ..Default::default()
    };
    let mut sim = meridian_sim::scenario::meridian(
        chrony_clock(),
        good_sources(1, 100e-6, Jitter::Exponential(jitter)),
        Timescale::default(),
        cfg,
    );
    sim.run();
    let r = &sim.recorder;
    let step = args.get(3).copied().unwrap_or(600.0) as usize;
    for i in (0..r.error.len()).step_by(step) {
        println!(
            "{:8.0} {:10.1} {:8.4}",
            r.time[i],
            r.error[i] * 1e6,
            r.freq_error[i]
        );
    }
    println!("{:?}", r.summary());
}
