//! The Meridian NTP daemon: the IO shell around Meridian's sans-IO core.
//!
//! It owns sockets, threads, signals, files and the clock backends; the protocol, the
//! configuration and (with the sync work) the clock algorithms live in their own crates
//! and are driven from here. Data flows one way: config → restrict policy and reference;
//! socket → [`server::respond`] → socket, with replies built from a [`state`] snapshot.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cli;
pub mod control;
pub mod listen;
pub mod logging;
pub mod metrics;
pub mod nts;
pub mod reference;
pub mod server;
pub mod service;
pub mod state;
pub mod stats;
pub mod sync;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use clap::Parser;
use meridian_clock::Clock;
use meridian_conf::{Config, FsSource, MemorySource, MruSize};
use meridian_os::{KernelClock, ObserveClock};
use meridian_proto::{LeapIndicator, NtpShort, ServerState};

use cli::Args;
use reference::LocalReference;
use server::ratelimit::RateLimits;
use server::{ServePolicy, ServerCounters, Worker};
use state::{ServingState, SharedState};
use sync::{LoopEvent, SyncFlags, SyncLoop};

/// The configuration `--example-config` runs: the local clock at stratum 10, answering
/// only on loopback, queries refused.
pub const EXAMPLE_CONFIG: &str = include_str!("example.conf");

/// Bytes one entry of the client table costs (the whole entry: the table has no index),
/// to turn `mru maxmem` into a number of entries (an IPv4 client takes one, IPv6 two).
const CLIENT_ENTRY_BYTES: u32 = server::ratelimit::CLIENT_BYTES as u32;

/// Run the daemon with these arguments (the first is the program name).
pub fn main<I, T>(argv: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args = match Args::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let (config_name, config) = match load_config(&args) {
        Ok(loaded) => loaded,
        Err(report) => {
            eprint!("{report}");
            return ExitCode::FAILURE;
        }
    };
    if args.check {
        for w in &config.warnings {
            eprintln!("{w}");
        }
        print!("{}", config.to_effective_text());
        eprintln!("{}: configuration OK", config_name.display());
        return ExitCode::SUCCESS;
    }
    match run(&args, &config_name, config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("ntpd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(args: &Args) -> Result<(PathBuf, Config), String> {
    if args.example_config {
        let name = PathBuf::from("<embedded example>");
        return meridian_conf::parse_str(
            "<embedded example>",
            EXAMPLE_CONFIG,
            &MemorySource::new(),
        )
        .map(|c| (name, c))
        .map_err(|e| format!("{e}\n"));
    }
    meridian_conf::parse_config(&args.config, &FsSource)
        .map(|c| (args.config.clone(), c))
        .map_err(|e| format!("{e}\n{}: configuration has errors\n", args.config.display()))
}

fn max_clients(config: &Config) -> usize {
    match config.mru.max {
        MruSize::Entries(n) => n.max(1) as usize,
        MruSize::KiB(k) => (k.saturating_mul(1024) / CLIENT_ENTRY_BYTES).max(1) as usize,
    }
}

/// The symmetric keys of `keys FILE`, trusting `trustedkey` ids. A bad line is logged
/// and skipped, as ntpd does, so one typo does not take the server off the air.
pub fn load_keys(config: &Config) -> meridian_auth::KeyStore {
    let trusted = config.trusted_keys.iter().copied();
    let Some(path) = &config.keys else {
        return meridian_auth::KeyStore::new(meridian_auth::KeyFile::new(), trusted);
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("keys file {}: {e}", path.display());
            String::new()
        }
    };
    let parsed = meridian_auth::parse_keys(&text, &path.display().to_string());
    for d in &parsed.diagnostics {
        tracing::error!("{d}");
    }
    meridian_auth::KeyStore::new(parsed.keys, trusted)
}

fn serve_policy(config: &Config, nts: Option<&nts::NtsService>) -> ServePolicy {
    let keys = load_keys(config);
    ServePolicy {
        control_key: control::auth::control_key(config, &keys),
        keys,
        nts: nts.map(nts::NtsService::server),
        restrict: config.restrict.clone(),
        limits: RateLimits {
            average_log2: config.discard.average,
            minimum: f64::from(config.discard.minimum),
        },
        max_clients: max_clients(config),
    }
}

/// The clock the daemon disciplines: the kernel's, or a software one with `--observe`.
fn open_clock(observe: bool) -> Box<dyn Clock + Send> {
    if observe {
        Box::new(ObserveClock::new())
    } else {
        Box::new(KernelClock::new())
    }
}

fn run(args: &Args, config_path: &Path, config: Config) -> Result<(), String> {
    // Before any thread starts: per-thread malloc arenas only cost resident memory here.
    meridian_os::memory::single_malloc_arena();
    let logfile = args.logfile.clone().or_else(|| config.logfile.clone());
    let destination = match (&logfile, args.foreground) {
        (Some(path), _) => logging::Destination::File(path),
        (None, true) => logging::Destination::Stderr,
        (None, false) => logging::Destination::Syslog,
    };
    logging::init(destination, args.debug).map_err(|e| format!("cannot open log: {e}"))?;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let flags = SyncFlags {
        allow_big_first_step: args.allow_big_first_step,
        slew_only: args.slew_only,
        serving_port: (!args.once).then_some(args.port),
    };
    if args.once {
        drop_privileges(args)?;
        let mut sync = SyncLoop::new(&config, flags, open_clock(args.observe), !args.observe);
        return set_clock_once(&mut sync);
    }
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, 64);
    let addresses = listen::bind_addresses(&config.interfaces, args.port);
    let mut sockets = Vec::new();
    for addr in &addresses {
        if let Err(e) = listen::check_free(*addr) {
            if addr.ip().is_unspecified()
                && addr.is_ipv6()
                && e.kind() != std::io::ErrorKind::AddrInUse
            {
                tracing::warn!("not listening on {addr}: {e}");
                continue;
            }
            return Err(format!("cannot listen on {addr}: {e}"));
        }
        for _ in 0..workers {
            match listen::open_socket(*addr) {
                Ok(s) => sockets.push(s),
                Err(e) if addr.ip().is_unspecified() && addr.is_ipv6() => {
                    tracing::warn!("not listening on {addr}: {e}");
                    break;
                }
                Err(e) => return Err(format!("cannot listen on {addr}: {e}")),
            }
        }
        tracing::info!("listening on {addr} ({workers} worker(s))");
    }
    if sockets.is_empty() {
        return Err("no address to listen on".into());
    }
    // The metrics listener is bound now, so a busy port is reported on the terminal;
    // its threads start after the fork.
    let metrics_listener = match args.metrics.or(config.metrics) {
        Some(addr) => Some(
            metrics::MetricsListener::bind(addr)
                .map_err(|e| format!("cannot listen for metrics on {addr}: {e}"))?,
        ),
        None => None,
    };
    // Detach only now, so that bad configuration and busy ports are still reported on
    // the terminal, and before any thread exists, as fork requires.
    if !args.foreground {
        meridian_os::process::daemonize().map_err(|e| format!("cannot detach: {e}"))?;
    }
    let pidfile = args.pidfile.clone().or_else(|| config.pidfile.clone());
    if let Some(path) = &pidfile {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .map_err(|e| format!("cannot write pidfile {}: {e}", path.display()))?;
    }
    // Before any thread exists: capability sets are per thread; the pidfile is written
    // while we may still write to /run.
    drop_privileges(args)?;
    if args.seccomp {
        meridian_os::seccomp::install().map_err(|e| e.to_string())?;
        tracing::info!("system-call filter installed");
    }
    let mut sync = SyncLoop::new(&config, flags, open_clock(args.observe), !args.observe);
    let precision = sync.clock().precision();
    let mut smear_interval = config.leapsmear_interval;
    let reference = LocalReference::from_config(&config);
    let shared = SharedState::new(serving_state(&sync, &reference, precision, smear_interval)?);
    let control = control::ControlPublisher::new(sync.clock().now().map_err(|e| e.to_string())?);
    control.publish(&reference, &shared.load().server, sync.core());
    let policy = Arc::new(ArcSwap::from_pointee(serve_policy(&config, None)));
    let counters = Arc::new(ServerCounters::default());
    let stop = Arc::new(AtomicBool::new(false));

    // NTS-KE runs threads of its own, so it starts after the fork.
    let nts = nts::NtsService::start(&config, args.port)?;
    if nts.is_some() {
        policy.store(Arc::new(serve_policy(&config, nts.as_ref())));
    }
    let handles: Vec<_> = sockets
        .into_iter()
        .map(|socket| {
            let worker = Worker {
                socket,
                state: shared.clone(),
                policy: policy.clone(),
                counters: counters.clone(),
                stop: stop.clone(),
                control: control.shared.clone(),
            };
            std::thread::spawn(move || worker.run())
        })
        .collect();
    let _metrics = match metrics_listener {
        Some(listener) => Some(
            listener
                .start(metrics::Sources {
                    control: control.shared.clone(),
                    counters: counters.clone(),
                })
                .map_err(|e| format!("cannot start the metrics listener: {e}"))?,
        ),
        None => None,
    };

    let terminate = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, terminate.clone()).map_err(|e| e.to_string())?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone())
        .map_err(|e| e.to_string())?;
    tracing::info!(
        "Meridian {} serving {}{} (clock: {})",
        env!("CARGO_PKG_VERSION"),
        if sync.has_sources() {
            "time from its sources; until they answer, "
        } else {
            ""
        },
        describe(&reference),
        if args.observe {
            "observe-only"
        } else {
            "kernel"
        }
    );

    // Sockets are bound and served: tell systemd (Type=notify) start-up is done.
    service::notify(service::READY);
    let mut watchdog = service::Watchdog::from_env();
    let mut reference = reference;
    let mut result = Ok(());
    while !terminate.load(Ordering::Relaxed) {
        if let Some(w) = &mut watchdog {
            w.tick();
        }
        if sync.turn(Duration::from_millis(200)) == LoopEvent::Panic {
            result = Err(panic_message(&config));
            break;
        }
        if reload.swap(false, Ordering::Relaxed) {
            match load_config(args) {
                Ok((_, new_config)) => {
                    for w in &new_config.warnings {
                        tracing::warn!("{w}");
                    }
                    policy.store(Arc::new(serve_policy(&new_config, nts.as_ref())));
                    if let Some(nts) = &nts {
                        nts.reload();
                    }
                    reference = LocalReference::from_config(&new_config);
                    smear_interval = new_config.leapsmear_interval;
                    sync.reconfigure(&new_config);
                    tracing::info!("reloaded {}", config_path.display());
                }
                Err(report) => {
                    tracing::error!("reload failed, keeping the running configuration:\n{report}")
                }
            }
        }
        if let Some(nts) = &nts {
            nts.tick();
        }
        if let Ok(state) = serving_state(&sync, &reference, precision, smear_interval) {
            shared.publish(state);
            control.publish(&reference, &state.server, sync.core());
        }
    }
    service::notify(service::STOPPING);
    sync.save_drift();
    tracing::info!(
        "exiting on signal: {} received, {} replies, {} KoDs, {} dropped",
        counters.received.load(Ordering::Relaxed),
        counters.replied.load(Ordering::Relaxed),
        counters.kods.load(Ordering::Relaxed),
        counters.dropped.load(Ordering::Relaxed)
    );
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    if let Some(path) = &pidfile {
        let _ = std::fs::remove_file(path);
    }
    result
}

/// `-u user[:group]`: give up root, keeping CAP_SYS_TIME and CAP_NET_BIND_SERVICE.
fn drop_privileges(args: &Args) -> Result<(), String> {
    let Some(spec) = &args.user else {
        return Ok(());
    };
    let dropped =
        meridian_os::privilege::drop_privileges(spec).map_err(|e| format!("-u {spec}: {e}"))?;
    tracing::info!(
        "running as uid {} gid {}, keeping {:?}",
        dropped.uid,
        dropped.gid,
        dropped.kept
    );
    Ok(())
}

fn panic_message(config: &Config) -> String {
    format!(
        "clock offset exceeds the panic threshold of {} s: set the clock manually (or start with -g)",
        config.tinker.panic
    )
}

/// `ntpd -q`: poll the sources until the discipline sets the clock once, then exit.
fn set_clock_once(sync: &mut SyncLoop) -> Result<(), String> {
    if !sync.has_sources() {
        return Err("-q: no server to set the clock from".into());
    }
    // Classic ntpd -q gives up after a while rather than hang in a boot script.
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while std::time::Instant::now() < deadline {
        match sync.turn(Duration::from_millis(500)) {
            LoopEvent::ClockUpdated { stepped, offset } => {
                // Classic ntpd -q's closing line, which boot scripts grep for.
                let verb = if stepped { "set" } else { "slew" };
                println!("ntpd: time {verb} {offset:+.6}s");
                sync.save_drift();
                return Ok(());
            }
            LoopEvent::Panic => return Err("-q: offset beyond the panic threshold; use -g".into()),
            LoopEvent::Idle => {}
        }
    }
    Err("-q: no reply from any server; clock not set".into())
}

/// What to serve now: the network system peer's view when synchronised, otherwise the
/// local clock driver or orphan mode, otherwise "unsynchronised".
fn serving_state(
    sync: &SyncLoop,
    reference: &LocalReference,
    precision: i8,
    smear_interval: Option<u32>,
) -> Result<ServingState, String> {
    let clock = sync.clock();
    let now = clock.now().map_err(|e| e.to_string())?;
    let sys = sync.system();
    let smear = smear_interval.and_then(|interval| {
        let leap = sync.core().pending_leap()?;
        Some(state::LeapSmear {
            start: leap.at - f64::from(interval),
            end: leap.at,
            amount: leap.kind.step(),
        })
    });
    let server = if sys.system_peer.is_some() && sys.leap != LeapIndicator::Unsynchronized {
        ServerState {
            leap: sys.leap,
            stratum: sys.stratum,
            precision,
            root_delay: NtpShort::from_seconds_f64(sys.root_delay),
            root_dispersion: NtpShort::from_seconds_f64(sys.root_dispersion),
            reference_id: sys.reference_id,
            reference_ts: sys.reference_ts,
            min_poll: meridian_proto::DEFAULT_MIN_POLL,
        }
    } else {
        reference.server_state(now, precision, meridian_proto::DEFAULT_MIN_POLL)
    };
    let mut server = server;
    if smear.is_some()
        && matches!(
            server.leap,
            LeapIndicator::InsertSecond | LeapIndicator::DeleteSecond
        )
    {
        // Smearing clients must not also apply the leap: don't announce it.
        server.leap = LeapIndicator::NoWarning;
    }
    Ok(ServingState {
        server,
        correction: clock.kernel_correction(),
        smear,
    })
}

fn describe(reference: &LocalReference) -> String {
    match reference {
        LocalReference::LocalClock { address, stratum } => {
            format!(
                "the local clock {address} at stratum {}",
                stratum.saturating_add(1)
            )
        }
        LocalReference::Orphan { stratum } => format!("orphan mode at stratum {stratum}"),
        LocalReference::None => "as unsynchronised".into(),
    }
}
