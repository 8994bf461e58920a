//! The algorithm-direct driver: calls filter → select → a discipline
//! directly, without the sync core's associations or packets.
//!
//! It exists to compare disciplines that are not Meridian's — the RFC 5905
//! PLL/FLL baseline ([`crate::baseline`]) — in the same simulated world, and
//! to cross-check Meridian's discipline outside the sync core. Meridian itself
//! is simulated through [`crate::driver::Simulation`], which runs the
//! daemon's `SyncCore`.
//!
//! Timestamps are those of an exchange (as `f64` seconds, no wire format): T1
//! and T4 read the simulated client clock, T2 and T3 the server's version of
//! UTC. Events happen in true-time order: one-second ticks (wander, leap,
//! recording), polls and packet arrivals.

use meridian_algo::{
    leap, select, Candidate, ClockCommand, ClockControl, ClockFilter, Discipline, LeapState,
    Sample, SelectStatus,
};

use meridian_sync::poll::PollState;

use crate::clock::SimClock;
use crate::driver::{RunLog, SimConfig, SimSource};
use crate::metrics::Recorder;
use crate::rng::SimRng;
use crate::server::Timescale;

/// What the driver needs from a discipline; implemented by Meridian's and
/// by the RFC 5905 baseline so both run in the same harness.
pub trait DisciplineAlgorithm {
    /// Feed a sample, get the clock command.
    fn update(&mut self, now: f64, offset: f64, delay: f64, dispersion: f64) -> ClockCommand;
    /// Poll exponent to use.
    fn poll_log2(&self) -> i8;
    /// Whether the estimate is still settling (start-up polls after iburst).
    fn settling(&self) -> bool {
        false
    }
    /// The clock was stepped by someone else (leap second).
    fn clock_stepped(&mut self, amount: f64);
    /// The system peer changed.
    fn source_changed(&mut self);
}

impl DisciplineAlgorithm for Discipline {
    fn update(&mut self, now: f64, offset: f64, delay: f64, dispersion: f64) -> ClockCommand {
        Discipline::update(self, now, offset, delay, dispersion)
    }
    fn poll_log2(&self) -> i8 {
        self.poll_interval_log2()
    }
    fn settling(&self) -> bool {
        Discipline::settling(self)
    }
    fn clock_stepped(&mut self, amount: f64) {
        Discipline::clock_stepped(self, amount)
    }
    fn source_changed(&mut self) {
        Discipline::source_changed(self)
    }
}

/// A server and its path, with this driver's per-source client state.
#[derive(Clone, Debug)]
struct DirectSource {
    link: SimSource,
    filter: ClockFilter,
    reach: u8,
    /// The schedule the daemon's associations keep (bursts, start-up polls).
    poll: PollState,
}

struct Arrival {
    at: f64,
    source: usize,
    t1: f64,
    t2: f64,
    t3: f64,
}

/// A complete simulated client, driving a discipline directly.
pub struct DirectSimulation<D: DisciplineAlgorithm> {
    /// The client clock.
    pub clock: SimClock,
    /// The discipline under test.
    pub discipline: D,
    sources: Vec<DirectSource>,
    /// UTC definition.
    pub timescale: Timescale,
    /// Options.
    pub config: SimConfig,
    /// Per-second record.
    pub recorder: Recorder,
    /// Event log.
    pub log: RunLog,
    /// Oscillator wander; network and timestamp noise: the same streams as
    /// the sync-core driver draws, in the same order for one source, so
    /// both clients see identical clocks and packets.
    wander_rng: SimRng,
    net_rng: SimRng,
    leap: LeapState,
    peer: Option<usize>,
    arrivals: Vec<Arrival>,
    now: f64,
}

impl<D: DisciplineAlgorithm> DirectSimulation<D> {
    /// Assemble a simulation; `initial` is applied to the clock first
    /// (e.g. the drift-file frequency).
    pub fn new(
        clock: SimClock,
        discipline: D,
        sources: Vec<SimSource>,
        timescale: Timescale,
        config: SimConfig,
        initial: ClockCommand,
    ) -> Self {
        let mut clock = clock;
        initial.apply(&mut clock);
        let (wander_rng, net_rng) = crate::driver::random_streams(config.seed);
        let (minpoll, maxpoll) = (config.discipline.minpoll, config.discipline.maxpoll);
        let sources = sources
            .into_iter()
            .enumerate()
            .map(|(i, link)| DirectSource {
                link,
                filter: ClockFilter::new(2f64.powi(-20)),
                reach: 0,
                // Staggered a little, as a real daemon's are.
                poll: PollState::new(minpoll, maxpoll, i as f64 * 0.1, config.iburst),
            })
            .collect();
        Self {
            clock,
            discipline,
            sources,
            timescale,
            config,
            recorder: Recorder::default(),
            log: RunLog::default(),
            wander_rng,
            net_rng,
            leap: LeapState::new(),
            peer: None,
            arrivals: Vec::new(),
            now: 0.0,
        }
    }

    /// Run to `config.duration`.
    pub fn run(&mut self) {
        let mut next_tick = 0.0;
        loop {
            let poll = self
                .sources
                .iter()
                .enumerate()
                .map(|(i, s)| (s.poll.next_at(), i))
                .min_by(|a, b| a.0.total_cmp(&b.0));
            let arrival = self
                .arrivals
                .iter()
                .enumerate()
                .map(|(i, a)| (a.at, i))
                .min_by(|a, b| a.0.total_cmp(&b.0));
            let mut t = next_tick;
            let mut what = 0u8;
            if let Some((p, _)) = poll {
                if p < t {
                    t = p;
                    what = 1;
                }
            }
            if let Some((a, _)) = arrival {
                if a < t {
                    t = a;
                    what = 2;
                }
            }
            if t > self.config.duration {
                break;
            }
            self.clock.advance(t - self.now);
            self.now = t;
            match what {
                0 => {
                    self.tick();
                    next_tick += 1.0;
                }
                1 => self.poll(poll.map(|p| p.1).unwrap_or(0)),
                _ => {
                    let a = self.arrivals.swap_remove(arrival.map(|a| a.1).unwrap_or(0));
                    self.arrive(a);
                }
            }
        }
    }

    fn tick(&mut self) {
        let reading = self.clock.read(self.now);
        if let Some(kind) = self.leap.due(reading) {
            // The kernel inserts the leap second; the discipline is told.
            self.clock.step(kind.step());
            self.clock.steps.pop(); // not a discipline step
            self.discipline.clock_stepped(kind.step());
            self.log.leaps.push((self.now, kind.step()));
        }
        let err = self.clock.read(self.now) - self.timescale.utc(self.now);
        self.recorder
            .record(self.now, err, self.clock.frequency_error_ppm());
        self.clock.wander(1.0, &mut self.wander_rng);
    }

    fn poll(&mut self, i: usize) {
        let t = self.now;
        let iburst = self.config.iburst;
        let src = &mut self.sources[i];
        if src.poll.on_transmit(t, src.reach == 0, iburst, false) {
            src.reach <<= 1;
        }
        let t1 = self.clock.read(t);
        let server = &src.link.server;
        match src.link.network.exchange(t, &mut self.net_rng) {
            Some((out, back)) => {
                let t2 = server.timestamp(&self.timescale, t + out, &mut self.net_rng);
                let t3 = server.timestamp(
                    &self.timescale,
                    t + out + server.processing,
                    &mut self.net_rng,
                );
                self.arrivals.push(Arrival {
                    at: t + out + server.processing + back,
                    source: i,
                    t1,
                    t2,
                    t3,
                });
            }
            None => src.filter.push_missing(t1),
        }
    }

    fn arrive(&mut self, a: Arrival) {
        let prec = self.config.precision;
        let t4 = self.clock.read(self.now) + prec * self.net_rng.uniform();
        let t1 = a.t1;
        let offset = ((a.t2 - t1) + (a.t3 - t4)) / 2.0;
        let delay = (t4 - t1) - (a.t3 - a.t2);
        let src = &mut self.sources[a.source];
        let dispersion = src.link.server.precision + prec + meridian_algo::filter::PHI * delay;
        src.reach |= 1;
        let interval = 2f64.powi(src.poll.hpoll().into());
        src.filter.push(
            Sample {
                offset,
                delay,
                dispersion,
                time: t4,
            },
            interval,
        );
        let sel = self.select(t4);
        // Only the system peer's own samples reach the discipline, held
        // popcorn spikes included (as in the sync core): its innovation gate
        // judges outliers knowing the corrections made since the filter's output.
        if sel != Some(a.source) {
            return;
        }
        let cmd = self.discipline.update(t4, offset, delay, dispersion);
        self.log.updates += 1;
        self.log.polls.push(self.discipline.poll_log2());
        cmd.apply(&mut self.clock);
        let (poll, settling) = (self.discipline.poll_log2(), self.discipline.settling());
        for s in &mut self.sources {
            s.poll.follow_system(poll, self.now);
            s.poll.follow_settling(settling, self.now);
        }
        if let Some(s) = cmd.step {
            self.log.steps.push((self.now, s));
            // Stored offsets are meaningless after a step (ntpd clear_all).
            for s in &mut self.sources {
                s.filter.reset();
            }
        }
    }

    fn select(&mut self, now: f64) -> Option<usize> {
        let t = self.now;
        let cands: Vec<Candidate> = self
            .sources
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let o = s.filter.output()?;
                Some(Candidate {
                    id: i,
                    offset: o.offset,
                    delay: o.delay + s.link.server.root_delay,
                    dispersion: s.filter.dispersion_at(now) + s.link.server.root_dispersion,
                    jitter: o.jitter,
                    stratum: s.link.server.stratum,
                    leap: self.timescale.leap_indicator(t),
                    prefer: false,
                    noselect: false,
                    reachable: s.reach != 0,
                    pps: false,
                    truechimer: false,
                })
            })
            .collect();
        let sel = select(&cands, &self.config.select, self.peer);
        if sel.system_peer != self.peer {
            self.peer = sel.system_peer;
            self.log.peer_changes.push((t, self.peer));
            self.discipline.source_changed();
        }
        for &(id, st) in &sel.status {
            if matches!(
                st,
                SelectStatus::Candidate | SelectStatus::SysPeer | SelectStatus::Backup
            ) && !self.log.ever_survivor.contains(&id)
            {
                self.log.ever_survivor.push(id);
            }
        }
        if let Some(p) = self.peer {
            if !self.log.ever_peer.contains(&p) {
                self.log.ever_peer.push(p);
            }
            let votes = sel
                .survivors
                .iter()
                .map(|_| self.timescale.leap_indicator(t));
            self.leap.update(self.clock.read(t), leap::vote(votes));
        }
        self.peer
    }
}
