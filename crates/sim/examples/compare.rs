//! Per-seed statistics of the chrony scenario for Meridian through the sync
//! core and through the algorithm-direct driver, on identical simulated worlds.
//!
//! Usage: `cargo run --release -p meridian-sim --example compare -- <jitter s> <seeds> <days>`

use meridian_sim::scenario::{run_chrony, Algorithm, ChronyScenario};

fn main() {
    let args: Vec<f64> = std::env::args()
        .skip(1)
        .map(|a| {
            a.parse()
                .expect("numeric arguments: <jitter s> <seeds> <days>")
        })
        .collect();
    let [jitter, seeds, days] = args[..] else {
        eprintln!("usage: compare <jitter s> <seeds> <days>");
        std::process::exit(2);
    };
    for algo in [Algorithm::Meridian, Algorithm::MeridianDirect] {
        let (mut rms, mut sync) = (vec![], vec![]);
        for seed in 1..=seeds as u64 {
            let s = ChronyScenario {
                jitter,
                duration: days * 86_400.0,
                seed,
            };
            let o = run_chrony(s, algo).summary;
            rms.push(o.rms_error * 1e6);
            sync.push(o.sync_time.unwrap_or(f64::INFINITY));
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (rms_mean, sync_mean) = (mean(&rms), mean(&sync));
        rms.sort_by(f64::total_cmp);
        sync.sort_by(f64::total_cmp);
        let n = rms.len();
        println!(
            "{algo:?}: RMS µs mean {rms_mean:.1} median {:.1} max {:.1}; sync s mean {sync_mean:.0} median {:.0} max {:.0}",
            rms[n / 2],
            rms[n - 1],
            sync[n / 2],
            sync[n - 1]
        );
    }
}
