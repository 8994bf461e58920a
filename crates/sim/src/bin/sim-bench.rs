//! Prints the scenario table: Meridian (the daemon's sync core) vs chrony's
//! published figures, and the RFC 5905 PLL/FLL baseline run in the same
//! simulator. `--direct` adds rows of Meridian's discipline driven without
//! the sync core, to cross-check the core's plumbing. `--seeds N` takes the
//! medians over N seeds instead of 5.

use meridian_sim::scenario::{run_chrony, Algorithm, ChronyScenario};

/// (jitter s, chrony RMS µs, ntpd RMS µs) from chrony's comparison page.
const LEVELS: [(f64, f64, f64); 4] = [
    (10e-6, 35.0, 234.0),
    (100e-6, 109.0, 256.0),
    (1e-3, 475.0, 454.0),
    (10e-3, 1603.0, 3665.0),
];
const DEFAULT_SEEDS: u64 = 5;
const DAYS: f64 = 4.0;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Run every scenario and print the table.
pub fn main() {
    let started = std::time::Instant::now();
    let args: Vec<String> = std::env::args().collect();
    let seeds = args
        .iter()
        .position(|a| a == "--seeds")
        .and_then(|i| args.get(i + 1)?.parse::<u64>().ok())
        .unwrap_or(DEFAULT_SEEDS)
        .max(1);
    let mut algos = vec![Algorithm::Meridian, Algorithm::Rfc5905];
    if args.iter().any(|a| a == "--direct") {
        algos.insert(1, Algorithm::MeridianDirect);
    }
    println!(
        "chrony scenario: 1 server, start -0.1 s / +100 ppm, wander 1 ppb/√s, 100 µs + Exp(jitter) each way; \
         {DAYS} days, median of {seeds} seeds; sync = first |err|<1 ms staying within max(1 ms, 10×final RMS)"
    );
    println!(
        "{:<22} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10} {:>6} {:>10} {:>7}",
        "scenario",
        "sync(s)",
        "RMS(µs)",
        "worst(µs)",
        "max(µs)",
        "max1h(µs)",
        "freq(ppm)",
        "poll",
        "ref(µs)",
        "ratio"
    );
    for (jitter, chrony, ntpd) in LEVELS {
        for &algo in &algos {
            let runs: Vec<_> = (1..=seeds)
                .map(|seed| {
                    run_chrony(
                        ChronyScenario {
                            jitter,
                            duration: DAYS * 86_400.0,
                            seed,
                        },
                        algo,
                    )
                })
                .collect();
            let get = |f: &dyn Fn(&meridian_sim::scenario::Outcome) -> f64| {
                median(runs.iter().map(f).collect())
            };
            let sync = get(&|o| o.summary.sync_time.unwrap_or(f64::INFINITY));
            let rms = get(&|o| o.summary.rms_error) * 1e6;
            let worst = runs.iter().map(|o| o.summary.rms_error).fold(0.0, f64::max) * 1e6;
            let max = get(&|o| o.summary.max_error) * 1e6;
            let freq = get(&|o| o.summary.rms_freq_ppm);
            let settled = get(&|o| o.summary.max_settled) * 1e6;
            let poll = get(&|o| o.mean_poll);
            let (name, refv) = match algo {
                Algorithm::Meridian => ("meridian", chrony),
                Algorithm::MeridianDirect => ("meridian-direct", chrony),
                Algorithm::Rfc5905 => ("rfc5905-pll", ntpd),
            };
            println!(
                "{:<22} {:>9.0} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.4} {:>6.2} {:>10.0} {:>7.3}",
                format!("{name} j={:.0}µs", jitter * 1e6),
                sync,
                rms,
                worst,
                max,
                settled,
                freq,
                poll,
                refv,
                rms / refv
            );
        }
    }
    println!("ref/ratio: meridian rows vs chrony's published RMS, rfc5905-pll rows vs ntpd's published RMS");
    println!("RMS, max, sync: median over seeds; worst = largest RMS of any seed");
    println!("max = max |error| after sync (includes convergence tail); max1h = from 1 h after sync; poll = mean log2 s");
    println!("meridian = the daemon's SyncCore; meridian-direct = its discipline without the core");
    println!("wall time {:.1} s", started.elapsed().as_secs_f64());
}
