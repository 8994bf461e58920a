//! One association (`server`, `pool` member or `peer`) as a state machine.
//!
//! A [`Source`] decides when to send the next request (poll interval between `minpoll`
//! and `maxpoll`, `iburst` and `burst` trains, backoff while unreachable), keeps the
//! 8-bit reach register, validates replies through `meridian_proto::Exchange`, feeds
//! accepted samples into its clock filter, and honours kiss codes: RATE raises the poll
//! interval, DENY and RSTR demobilise. It never touches a socket or reads a clock: the
//! caller passes the time in, sends what it is told to, and hands back what arrives.
//!
//! Two time scales are used, as in the daemon: `mono` seconds (monotonic, for
//! scheduling) and NTP timestamps of the disciplined clock (for the exchange itself).
//!
//! A `peer` association speaks symmetric active (mode 1, RFC 5905 §9): each side sends
//! at its own poll, and every packet also answers the other side's latest one. So an
//! outgoing packet carries, as origin, the transmit timestamp of the last packet the
//! peer sent us and, as receive timestamp, when it arrived; its transmit timestamp is
//! our clock (the peer uses it as its T3), with only the bits below our precision
//! random. A packet from the peer (mode 1 at its poll, or mode 2 when its server part
//! answers) gives us a sample when its origin is our latest transmit timestamp.
use meridian_algo::{Candidate, ClockFilter, FilterOutput, FilterResult, Sample as FilterSample};
use meridian_proto::{
    new_client_request, Exchange, KissCode, LeapIndicator, Mode, NtpHeader, NtpTimestamp,
    ReferenceId, ReplyError, Sample,
};

use crate::poll;
pub use crate::poll::{BURST_INTERVAL, BURST_LENGTH};

/// Unanswered polls in a row after which the poll interval backs off (ntpd's NTP_UNREACH).
pub const UNREACH_BACKOFF: u32 = 10;

/// How a source was configured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SourceOptions {
    /// log2 of the shortest poll interval, seconds.
    pub minpoll: i8,
    /// log2 of the longest poll interval, seconds.
    pub maxpoll: i8,
    /// Send a train of requests while unreachable (fast start).
    pub iburst: bool,
    /// Send a train of requests at every poll.
    pub burst: bool,
    /// Prefer this source in selection.
    pub prefer: bool,
    /// Measure, but never select.
    pub noselect: bool,
    /// `true`: always a truechimer, whatever the intersection says.
    pub truechimer: bool,
    /// NTP version of our requests.
    pub version: u8,
    /// Symmetric key to sign requests with and to require on replies (`key N`).
    pub key: Option<u32>,
    /// Protect the exchanges with NTS (keys and cookies from an NTS-KE server).
    pub nts: bool,
    /// A `peer` line: send symmetric active (mode 1) packets instead of client requests.
    pub symmetric: bool,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            minpoll: 6,
            maxpoll: 10,
            iburst: false,
            burst: false,
            prefer: false,
            noselect: false,
            truechimer: false,
            version: 4,
            key: None,
            nts: false,
            symmetric: false,
        }
    }
}

/// What the source wants the caller to do, or what just happened.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceEvent {
    /// Nothing to report.
    None,
    /// A reply was accepted and the clock filter has a new output.
    Updated(FilterOutput),
    /// A reply was accepted; the filter's choice did not change because its minimum-delay
    /// sample is an older one. The raw sample is still a new measurement (the system
    /// process disciplines with it).
    Stale,
    /// A reply was accepted but the filter held it back as a popcorn spike.
    Held,
    /// A reply was rejected (the reason is for logs; bogus ones are ignored silently).
    Rejected(ReplyError),
    /// The server sent RATE: the poll interval was raised.
    RateLimited,
    /// The server refuses us (DENY or RSTR): remove this association.
    Demobilize(KissCode),
}

/// The server's view of the world, from its latest accepted reply.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeerInfo {
    /// Its leap indicator.
    pub leap: LeapIndicator,
    /// Its stratum.
    pub stratum: u8,
    /// Its precision.
    pub precision: i8,
    /// Its root delay, seconds.
    pub root_delay: f64,
    /// Its root dispersion, seconds.
    pub root_dispersion: f64,
    /// Its reference id.
    pub reference_id: ReferenceId,
    /// Its reference time.
    pub reference_ts: NtpTimestamp,
    /// The poll it announced.
    pub poll: i8,
    /// When (mono) its last reply arrived.
    pub received_at: f64,
}

/// One association.
#[derive(Debug, Clone)]
pub struct Source {
    options: SourceOptions,
    poll: poll::PollState,
    exchange: Option<Exchange>,
    filter: ClockFilter,
    reach: u8,
    unreach: u32,
    /// Polls started so far (the packets of a burst train after its first do not count).
    polls: u64,
    info: Option<PeerInfo>,
    last_sample: Option<Sample>,
    local_precision: i8,
    /// Symmetric mode: the transmit timestamp of the peer's latest packet (our next
    /// origin) and when it arrived (our next receive timestamp).
    peer_xmt: NtpTimestamp,
    peer_rec: NtpTimestamp,
}

impl Source {
    /// A new association, whose first request is due at `first_poll_at` (mono).
    pub fn new(options: SourceOptions, local_precision: i8, first_poll_at: f64) -> Self {
        Source {
            options,
            poll: poll::PollState::new(
                options.minpoll,
                options.maxpoll,
                first_poll_at,
                // A symmetric peer's packets answer each other's: it keeps one rhythm.
                options.iburst && !options.symmetric,
            ),
            exchange: None,
            filter: ClockFilter::new(2f64.powi(local_precision.into())),
            reach: 0,
            unreach: 0,
            polls: 0,
            info: None,
            last_sample: None,
            local_precision,
            peer_xmt: NtpTimestamp::ZERO,
            peer_rec: NtpTimestamp::ZERO,
        }
    }

    /// The configuration.
    pub fn options(&self) -> &SourceOptions {
        &self.options
    }

    /// When (mono) the next request is due.
    pub fn next_poll(&self) -> f64 {
        self.poll.next_at()
    }

    /// log2 of the current poll interval (`hpoll`).
    pub fn poll_log2(&self) -> i8 {
        self.poll.hpoll()
    }

    /// The reach register: one bit per recent poll, 1 = answered.
    pub fn reach(&self) -> u8 {
        self.reach
    }

    /// Polls since the last valid reply.
    pub fn unreach(&self) -> u32 {
        self.unreach
    }

    /// How many polls have started: one per poll interval, however many packets a burst
    /// train sends. The reach register moves exactly when this does, so the system
    /// process reselects on it: a source that stops answering must lose the system peer
    /// without a reply to tell it so.
    pub fn polls(&self) -> u64 {
        self.polls
    }

    /// Whether `origin` (a reply's origin timestamp) is the transmit timestamp of this
    /// source's latest request, still unanswered: the reply is meant for this source.
    /// Lets the system process tell apart associations sharing one server address.
    pub fn awaits_reply_to(&self, origin: NtpTimestamp) -> bool {
        self.exchange.as_ref().is_some_and(|ex| {
            !ex.is_answered() && !origin.is_zero() && ex.request().sent_transmit == origin
        })
    }

    /// What the server said about itself last.
    pub fn info(&self) -> Option<&PeerInfo> {
        self.info.as_ref()
    }

    /// The last accepted sample.
    pub fn last_sample(&self) -> Option<&Sample> {
        self.last_sample.as_ref()
    }

    /// The clock filter's current output.
    pub fn filter_output(&self) -> Option<FilterOutput> {
        self.filter.output()
    }

    /// The clock filter (for ntpq's filtdelay/filtoffset/filtdisp).
    pub fn filter(&self) -> &ClockFilter {
        &self.filter
    }

    /// The discipline stepped the clock by `amount` s: samples taken before it measured
    /// the old clock and are dropped. A request still in flight keeps its answer: its T1
    /// is moved by the step, so the reply yields a correct sample instead of one that is
    /// off by half the step (and would then look like a spike, or like the step was not
    /// made).
    pub fn clock_stepped(&mut self, amount: f64) {
        self.filter.reset();
        self.shift_outstanding(amount);
    }

    /// A leap second moved the clock by `amount` s. The server's time scale moved with
    /// it, so the stored offsets stay valid and the filter is kept; only the T1 of a
    /// request in flight is moved, as for a step.
    pub fn leap_second(&mut self, amount: f64) {
        self.shift_outstanding(amount);
    }

    fn shift_outstanding(&mut self, amount: f64) {
        if let Some(ex) = self.exchange.filter(|ex| !ex.is_answered()) {
            self.exchange = Some(Exchange::new(*ex.request(), ex.t1().add_seconds(amount)));
        }
    }

    /// Follow the system poll interval chosen by the discipline, within minpoll..maxpoll,
    /// and whether its estimate is still settling (start-up polls, see
    /// [`poll::PollState::follow_settling`]).
    pub fn set_system_poll(&mut self, poll_log2: i8, settling: bool, now: f64) {
        self.poll.follow_system(poll_log2, now);
        self.poll.follow_settling(settling, now);
    }

    /// Called when the request is due: returns the 48 bytes to send now. `t1` is the
    /// clock's time read just before sending; `random` fills the transmit timestamp (it
    /// is not the clock, so an off-path attacker cannot guess it).
    pub fn transmit(&mut self, now: f64, t1: NtpTimestamp, random: u64) -> [u8; 48] {
        let starts_poll = self.poll.on_transmit(
            now,
            self.reach == 0,
            self.options.iburst,
            self.options.burst,
        );
        if starts_poll {
            self.polls += 1;
            // The reach register moves once per poll, not per burst packet.
            self.reach <<= 1;
            if self.reach == 0 {
                self.unreach = self.unreach.saturating_add(1);
                if self.unreach > UNREACH_BACKOFF {
                    self.poll.back_off(now);
                }
            }
            // Three polls without an answer: age the filter so a dead source loses its
            // claim on selection (as ntpd feeds its filter a dummy sample).
            if self.reach & 0x07 == 0 && self.filter.output().is_some() {
                self.filter.push_missing(now);
            }
        }
        let mut request = new_client_request(self.options.version, self.poll.hpoll(), random);
        let mut t1 = t1;
        if self.options.symmetric {
            // The peer computes its offset from our transmit timestamp, so it must be
            // the clock; the bits below our precision carry no time and stay random.
            t1 = fuzz_below_precision(t1, self.local_precision, random);
            let h = &mut request.header;
            h.mode = Mode::SymmetricActive;
            h.origin_ts = self.peer_xmt;
            h.receive_ts = self.peer_rec;
            h.transmit_ts = t1;
            request.sent_transmit = t1;
        }
        let mut bytes = [0u8; 48];
        request.header.encode(&mut bytes);
        self.exchange = Some(Exchange::new(request, t1));
        bytes
    }

    /// A datagram from this source's address arrived at `t4` (clock time), `now` (mono).
    pub fn receive(&mut self, reply: &NtpHeader, t4: NtpTimestamp, now: f64) -> SourceEvent {
        let mut reply = *reply;
        if self.options.symmetric && matches!(reply.mode, Mode::SymmetricActive) {
            if reply.transmit_ts.is_zero() || reply.transmit_ts == self.peer_xmt {
                // Nothing new to echo: a replay of the peer's last packet, or junk.
                return SourceEvent::Rejected(ReplyError::Duplicate);
            }
            // The peer's own poll. Whether or not it answers us, our next packet must
            // answer it (RFC 5905 §9.1: org and rec are updated before the tests), or
            // two peers starting together would never get past their first packets.
            self.peer_xmt = reply.transmit_ts;
            self.peer_rec = t4;
            // From here on it is checked exactly like a passive reply.
            reply.mode = Mode::SymmetricPassive;
        }
        let Some(exchange) = self.exchange.as_mut() else {
            return SourceEvent::Rejected(ReplyError::BogusOrigin);
        };
        match exchange.on_reply(&reply, t4, self.local_precision) {
            Ok(sample) => self.accept(sample, &reply, now),
            Err(ReplyError::Kiss(code)) => self.kissed(code, &reply, now),
            Err(e) => SourceEvent::Rejected(e),
        }
    }

    fn accept(&mut self, sample: Sample, reply: &NtpHeader, now: f64) -> SourceEvent {
        self.reach |= 1;
        self.unreach = 0;
        self.info = Some(PeerInfo {
            leap: reply.leap,
            stratum: reply.stratum,
            precision: reply.precision,
            root_delay: reply.root_delay.to_seconds_f64(),
            root_dispersion: reply.root_dispersion.to_seconds_f64(),
            reference_id: reply.reference_id,
            reference_ts: reply.reference_ts,
            poll: reply.poll,
            received_at: now,
        });
        self.last_sample = Some(sample);
        let filter_sample = FilterSample {
            offset: sample.offset,
            delay: sample.delay,
            dispersion: sample.dispersion,
            time: now,
        };
        match self
            .filter
            .push(filter_sample, 2f64.powi(self.poll.hpoll().into()))
        {
            FilterResult::Updated(out) => SourceEvent::Updated(out),
            FilterResult::Stale => SourceEvent::Stale,
            FilterResult::Spike => SourceEvent::Held,
        }
    }

    fn kissed(&mut self, code: KissCode, reply: &NtpHeader, now: f64) -> SourceEvent {
        match code {
            KissCode::Rate => {
                self.poll.rate_limited(reply.poll, now);
                SourceEvent::RateLimited
            }
            KissCode::Deny | KissCode::Rstr => SourceEvent::Demobilize(code),
            // Other codes (INIT, STEP, …) mean "not now"; keep polling normally.
            KissCode::Other(_) => SourceEvent::Rejected(ReplyError::Kiss(code)),
        }
    }

    /// This source as a selection candidate at `now` (mono), or `None` before its first
    /// filtered sample. `id` is echoed back by selection.
    pub fn candidate(&self, id: usize, now: f64) -> Option<Candidate> {
        let out = self.filter.output()?;
        let info = self.info?;
        Some(Candidate {
            id,
            offset: out.offset,
            delay: info.root_delay + out.delay,
            // Aged to `now` at PHI (15 ppm) since the chosen sample: the longer a source
            // goes without a usable sample, the less it says about our clock, until its
            // root distance exceeds `maxdist` and it is no longer fit, reachable or not.
            dispersion: info.root_dispersion + self.filter.dispersion_at(now),
            jitter: out.jitter,
            stratum: info.stratum,
            leap: info.leap.to_bits(),
            prefer: self.options.prefer,
            noselect: self.options.noselect,
            reachable: self.reach != 0,
            pps: false,
            truechimer: self.options.truechimer,
        })
    }
}

/// `t` with the fraction bits finer than 2^`precision` s replaced by `random`'s: the
/// time is unchanged at the clock's resolution, but an off-path attacker must guess the
/// low bits to forge an answer (as ntpd fuzzes its timestamps).
fn fuzz_below_precision(t: NtpTimestamp, precision: i8, random: u64) -> NtpTimestamp {
    let bits = (32 + i32::from(precision)).clamp(0, 32) as u32;
    let mask = if bits == 0 { 0 } else { (1u64 << bits) - 1 };
    NtpTimestamp::from_bits((t.to_bits() & !mask) | (random & mask))
}

#[cfg(test)]
#[path = "source_tests.rs"]
mod tests;
