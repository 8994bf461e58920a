//! The simulation driver: the daemon's own `meridian_sync::SyncCore`, run
//! against a simulated clock, network and servers.
//!
//! It does what the daemon's sync loop (`crates/daemon/src/sync`) does around
//! the core, with every piece of IO simulated:
//!
//! * when [`SyncCore::next_wakeup`] comes, for each id of [`SyncCore::due`] it
//!   reads the clock (T1) and calls [`SyncCore::transmit`] with a random nonce;
//! * the 48 bytes travel over the source's [`Network`] (delay, jitter,
//!   asymmetry, loss, outages) to a [`SimServer`], which decodes them and
//!   answers through `meridian_proto::build_server_reply`, with receive and
//!   transmit timestamps from its own version of UTC;
//! * the reply travels back, is decoded with `NtpHeader::decode` and handed to
//!   [`SyncCore::receive`] with T4 read from the clock at arrival;
//! * every `receipt.command` is applied with `ClockCommand::apply`, and an
//!   armed leap second is taken through [`SyncCore::leap_due`] the moment the
//!   clock reads midnight (as a kernel armed with `STA_INS` would).
//!
//! Time scales: true (physical) time drives the event queue; the core's
//! monotonic `now` is true time (the daemon's `CLOCK_MONOTONIC` differs from it
//! only by the disciplined frequency error, ≤ 500 ppm, which matters nowhere in
//! scheduling); clock readings and UTC count seconds from
//! [`crate::server::EPOCH_UNIX`], a UTC midnight.
//!
//! Randomness comes from separate streams per purpose (oscillator wander,
//! network and timestamp noise, request nonces), so that a change in how often
//! the core polls does not change the oscillator's wander path: runs stay
//! comparable across configurations.

use std::net::SocketAddr;

use meridian_algo::{ClockCommand, DisciplineConfig, DisciplineEvent, SelectConfig, SelectStatus};
use meridian_proto::{NtpHeader, HEADER_LEN};
use meridian_sync::{AssocKind, SourceOptions, SyncConfig, SyncCore};

use crate::clock::SimClock;
use crate::metrics::Recorder;
use crate::network::Network;
use crate::rng::SimRng;
use crate::server::{ntp_time, SimServer, Timescale, EPOCH_UNIX};

/// A server together with the path to it.
#[derive(Clone, Debug, PartialEq)]
pub struct SimSource {
    /// The server.
    pub server: SimServer,
    /// The path to it.
    pub network: Network,
}

impl SimSource {
    /// Source for `server` over `network`.
    pub fn new(server: SimServer, network: Network) -> Self {
        Self { server, network }
    }
}

/// Harness options.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Simulated duration (s).
    pub duration: f64,
    /// Sources are configured `iburst` (8 requests 2 s apart while unreachable).
    pub iburst: bool,
    /// Selection tunables (`tos`).
    pub select: SelectConfig,
    /// Discipline tunables (`tinker`, drift file); its `minpoll`/`maxpoll`
    /// are also every source's, as the daemon derives them from the sources.
    /// The algorithm-direct driver ignores it (it is handed its discipline).
    pub discipline: DisciplineConfig,
    /// Seed for all randomness.
    pub seed: u64,
    /// Client timestamp precision (s); the core is told its log2, rounded.
    pub precision: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            duration: 86_400.0,
            iburst: true,
            select: SelectConfig::default(),
            discipline: DisciplineConfig::default(),
            seed: 1,
            precision: 2f64.powi(-24),
        }
    }
}

/// What happened during a run besides the error trace. Sources are named by
/// their index in the `sources` given to the simulation.
#[derive(Clone, Debug, Default)]
pub struct RunLog {
    /// `(true time, index)` every time the system peer changed.
    pub peer_changes: Vec<(f64, Option<usize>)>,
    /// Indices that were ever survivors of selection.
    pub ever_survivor: Vec<usize>,
    /// Indices that were ever system peer.
    pub ever_peer: Vec<usize>,
    /// `(true time, amount)` of discipline-commanded steps.
    pub steps: Vec<(f64, f64)>,
    /// `(true time, amount)` of leap seconds applied to the clock.
    pub leaps: Vec<(f64, f64)>,
    /// Poll exponents in force, one per discipline update.
    pub polls: Vec<i8>,
    /// Discipline updates.
    pub updates: u64,
    /// `(true time, event)` of every discipline command applied.
    pub events: Vec<(f64, DisciplineEvent)>,
}

/// Which way a datagram is going.
#[derive(Clone, Copy, Debug)]
enum Leg {
    /// Client → server; the return delay was drawn with the outbound one.
    Request { back: f64 },
    /// Server → client.
    Reply,
}

/// A datagram on the wire.
#[derive(Clone, Copy, Debug)]
struct Datagram {
    /// True arrival time.
    at: f64,
    source: usize,
    leg: Leg,
    bytes: [u8; HEADER_LEN],
}

/// What happens next.
enum Event {
    Tick,
    Poll,
    Arrival(usize),
    Leap,
}

/// A complete simulated client running the daemon's sync core.
pub struct Simulation {
    /// The client clock.
    pub clock: SimClock,
    /// The sync core under test (associations, selection, discipline).
    pub core: SyncCore,
    /// Servers and paths, by index.
    pub sources: Vec<SimSource>,
    /// UTC definition.
    pub timescale: Timescale,
    /// Options.
    pub config: SimConfig,
    /// Per-second record.
    pub recorder: Recorder,
    /// Event log.
    pub log: RunLog,
    /// Association id and address of each source, by index.
    assocs: Vec<(u16, SocketAddr)>,
    in_flight: Vec<Datagram>,
    wander_rng: SimRng,
    net_rng: SimRng,
    nonce_rng: SimRng,
    peer: Option<usize>,
    now: f64,
}

/// Seed offsets of the independent random streams.
const NET_STREAM: u64 = 0x6e65_7477_6f72_6b00;
const NONCE_STREAM: u64 = 0x6e6f_6e63_6500_0000;

/// The oscillator-wander and network/timestamp-noise streams for `seed`,
/// shared with the algorithm-direct driver so both see the same world.
pub(crate) fn random_streams(seed: u64) -> (SimRng, SimRng) {
    (SimRng::new(seed), SimRng::new(seed ^ NET_STREAM))
}

impl Simulation {
    /// Configure the core as the daemon would for `sources` (one `server` line
    /// each, first polls 0.1 s apart) and apply the drift-file frequency, if any.
    pub fn new(
        clock: SimClock,
        sources: Vec<SimSource>,
        timescale: Timescale,
        config: SimConfig,
    ) -> Self {
        let mut clock = clock;
        let precision = config.precision.log2().round().clamp(-128.0, 0.0) as i8;
        let mut core = SyncCore::new(
            SyncConfig {
                select: config.select,
                discipline: config.discipline,
            },
            precision,
        );
        if config.discipline.initial_frequency_ppm.is_some() {
            core.initial_command().apply(&mut clock);
        }
        let options = SourceOptions {
            minpoll: config.discipline.minpoll,
            maxpoll: config.discipline.maxpoll,
            iburst: config.iburst,
            ..SourceOptions::default()
        };
        let assocs = (0..sources.len())
            .map(|i| {
                // Documentation addresses (TEST-NET-2), one per source.
                let addr = SocketAddr::from(([198, 51, (i >> 8) as u8, i as u8], 123));
                let id = core.add(
                    addr.ip().to_string(),
                    addr,
                    AssocKind::Server,
                    options,
                    i as f64 * 0.1,
                );
                (id, addr)
            })
            .collect();
        let (wander_rng, net_rng) = random_streams(config.seed);
        Self {
            clock,
            core,
            sources,
            timescale,
            recorder: Recorder::default(),
            log: RunLog::default(),
            assocs,
            in_flight: Vec::new(),
            wander_rng,
            net_rng,
            nonce_rng: SimRng::new(config.seed ^ NONCE_STREAM),
            config,
            peer: None,
            now: 0.0,
        }
    }

    /// Run to `config.duration`.
    pub fn run(&mut self) {
        let mut next_tick = 0.0;
        loop {
            let (t, event) = self.next_event(next_tick);
            if t > self.config.duration {
                break;
            }
            self.clock.advance(t - self.now);
            self.now = t;
            match event {
                Event::Tick => {
                    self.tick();
                    next_tick += 1.0;
                }
                Event::Poll => self.poll(),
                Event::Arrival(i) => {
                    let d = self.in_flight.swap_remove(i);
                    match d.leg {
                        Leg::Request { back } => self.serve(d, back),
                        Leg::Reply => self.receive(d),
                    }
                }
                Event::Leap => self.leap(),
            }
        }
    }

    /// The earliest event; on ties the tick goes first, then polls, arrivals
    /// and the leap second.
    fn next_event(&self, next_tick: f64) -> (f64, Event) {
        let mut best = (next_tick, Event::Tick);
        if let Some(w) = self.core.next_wakeup() {
            if w < best.0 {
                best = (w, Event::Poll);
            }
        }
        for (i, d) in self.in_flight.iter().enumerate() {
            if d.at < best.0 {
                best = (d.at, Event::Arrival(i));
            }
        }
        if let Some(at) = self.leap_time() {
            if at < best.0 {
                best = (at, Event::Leap);
            }
        }
        best
    }

    /// True time at which the clock reaches the armed leap second (a
    /// microsecond past it, so the reading is safely beyond midnight).
    fn leap_time(&self) -> Option<f64> {
        let p = self.core.pending_leap()?;
        let reading = p.at - EPOCH_UNIX as f64;
        Some((reading - self.clock.offset + 1e-6).max(self.now + 1e-6))
    }

    /// The clock's time as Unix seconds, for the core's leap-second calendar.
    fn utc(reading: f64) -> f64 {
        EPOCH_UNIX as f64 + reading
    }

    fn tick(&mut self) {
        let err = self.clock.read(self.now) - self.timescale.utc(self.now);
        self.recorder
            .record(self.now, err, self.clock.frequency_error_ppm());
        self.clock.wander(1.0, &mut self.wander_rng);
    }

    fn leap(&mut self) {
        let utc = Self::utc(self.clock.read(self.now));
        if let Some(leap) = self.core.leap_due(utc) {
            leap.command.apply(&mut self.clock);
            // A leap is not a discipline step: keep `clock.steps` for those.
            self.clock.steps.pop();
            self.log.leaps.push((self.now, leap.kind.step()));
        }
    }

    /// The daemon's `turn()`: send every due request.
    fn poll(&mut self) {
        let t = self.now;
        for id in self.core.due(t) {
            let t1 = ntp_time(self.clock.read(t));
            let random = self.nonce_rng.bits();
            let Some((addr, bytes)) = self.core.transmit(id, t, t1, random) else {
                continue;
            };
            let Some(i) = self.assocs.iter().position(|a| a.1 == addr) else {
                continue;
            };
            if let Some((out, back)) = self.sources[i].network.exchange(t, &mut self.net_rng) {
                self.in_flight.push(Datagram {
                    at: t + out,
                    source: i,
                    leg: Leg::Request { back },
                    bytes,
                });
            }
        }
    }

    /// A request reached its server: answer it.
    fn serve(&mut self, d: Datagram, back: f64) {
        let server = &self.sources[d.source].server;
        if let Some(bytes) = server.answer(&d.bytes, &self.timescale, self.now, &mut self.net_rng) {
            self.in_flight.push(Datagram {
                at: self.now + server.processing + back,
                source: d.source,
                leg: Leg::Reply,
                bytes,
            });
        }
    }

    /// A reply reached the client: the daemon's `handle_reply()`.
    fn receive(&mut self, d: Datagram) {
        let Ok(reply) = NtpHeader::decode(&d.bytes) else {
            return;
        };
        let reading = self.clock.read(self.now) + self.config.precision * self.net_rng.uniform();
        let addr = self.assocs[d.source].1;
        let receipt = self.core.receive(
            addr,
            &reply,
            ntp_time(reading),
            self.now,
            Self::utc(reading),
        );
        self.note_selection();
        if let Some(command) = receipt.command {
            self.apply(command);
        }
    }

    fn apply(&mut self, command: ClockCommand) {
        self.log.updates += 1;
        self.log.events.push((self.now, command.event));
        self.log.polls.push(self.core.system().discipline.poll);
        command.apply(&mut self.clock);
        if let Some(s) = command.step {
            self.log.steps.push((self.now, s));
        }
    }

    /// Record selection outcomes by source index.
    fn note_selection(&mut self) {
        let mut peer = None;
        for (i, &(id, _)) in self.assocs.iter().enumerate() {
            match self.core.status_of(id) {
                SelectStatus::SysPeer | SelectStatus::PpsPeer => {
                    peer = Some(i);
                    push_once(&mut self.log.ever_peer, i);
                    push_once(&mut self.log.ever_survivor, i);
                }
                SelectStatus::Candidate | SelectStatus::Backup => {
                    push_once(&mut self.log.ever_survivor, i);
                }
                _ => {}
            }
        }
        if peer != self.peer {
            self.peer = peer;
            self.log.peer_changes.push((self.now, peer));
        }
    }
}

fn push_once(v: &mut Vec<usize>, i: usize) {
    if !v.contains(&i) {
        v.push(i);
    }
}
