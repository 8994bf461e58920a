//! The system process: all associations, selection, discipline, system variables.

use std::net::{IpAddr, SocketAddr};

use meridian_algo::{
    leap, select, Candidate, ClockCommand, Discipline, DisciplineConfig, DisciplineEvent,
    DisciplineStats, LeapKind, LeapState, SelectConfig, SelectStatus, Selection,
};
use meridian_auth::{KeyStore, Verification};
use meridian_nts::{NtsClientState, NtsError, UID_LEN};
use meridian_proto::{
    build_server_reply, KissCode, LeapIndicator, Mode, NtpHeader, NtpShort, NtpTimestamp,
    ReferenceId, ServerState, DEFAULT_MIN_POLL, HEADER_LEN,
};

use crate::source::{Source, SourceEvent, SourceOptions};

/// How an association came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssocKind {
    /// A `server` line.
    Server,
    /// A member of a `pool`.
    Pool,
    /// A `peer` line (symmetric active).
    Peer,
}

/// One association and what identifies it.
#[derive(Debug, Clone)]
pub struct Association {
    /// Association id, as `ntpq` shows it.
    pub id: u16,
    /// The name it was configured with (host name or address).
    pub name: String,
    /// Where its packets go and come from.
    pub addr: SocketAddr,
    /// How it was configured.
    pub kind: AssocKind,
    /// Its protocol state.
    pub source: Source,
    /// Our own address as this source sees it, when known (see
    /// [`SyncCore::set_local_address`]): a source whose reference id is this address
    /// is synchronised to us.
    pub local: Option<IpAddr>,
}

impl Association {
    /// Whether this source takes its time from us (RFC 5905 `fit()`: its reference id is
    /// our address): using it would be a timing loop, as between two peers that each
    /// follow the other. Stratum 1 refids are clock names, never addresses.
    pub fn is_loop(&self) -> bool {
        match (self.local, self.source.info()) {
            (Some(local), Some(info)) => {
                info.stratum > 1 && info.reference_id == ReferenceId::from_ip(local)
            }
            _ => false,
        }
    }
}

/// Tunables of the system process.
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncConfig {
    /// Selection (`tos`).
    pub select: SelectConfig,
    /// Discipline (`tinker`, drift file, `-g`).
    pub discipline: DisciplineConfig,
}

/// What the system knows about its own synchronisation, for the server and `ntpq`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SystemVars {
    /// Leap indicator to announce (Unsynchronized until a system peer is chosen).
    pub leap: LeapIndicator,
    /// Our stratum (16 = unsynchronised).
    pub stratum: u8,
    /// Reference id: the system peer's address (or its refid when it is stratum 1's).
    pub reference_id: ReferenceId,
    /// When the clock was last updated (clock time).
    pub reference_ts: NtpTimestamp,
    /// Total round-trip delay to the primary reference, seconds.
    pub root_delay: f64,
    /// Total dispersion to the primary reference, seconds.
    pub root_dispersion: f64,
    /// Last combined offset, seconds.
    pub offset: f64,
    /// System jitter, seconds.
    pub jitter: f64,
    /// The system poll interval (log2 s).
    pub poll: i8,
    /// The system peer's association id.
    pub system_peer: Option<u16>,
    /// The discipline's estimates.
    pub discipline: DisciplineStats,
}

/// The outcome of handing one datagram to the core.
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    /// The association it belonged to, if any.
    pub association: Option<u16>,
    /// What the association made of it.
    pub event: SourceEvent,
    /// What to do to the clock, when the system was updated.
    pub command: Option<ClockCommand>,
}

/// A leap second that is due now, from [`SyncCore::leap_due`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeapSecond {
    /// Inserted (the clock goes back a second) or deleted (forward).
    pub kind: LeapKind,
    /// The UTC instant (Unix seconds) it was armed for: the end of the announcing day.
    pub at: f64,
    /// What to do to the clock: step by `kind.step()`; frequency and any slew in progress
    /// stay as they are.
    pub command: ClockCommand,
}

/// All associations and the system process.
#[derive(Debug, Clone)]
pub struct SyncCore {
    config: SyncConfig,
    assocs: Vec<Association>,
    next_id: u16,
    discipline: Discipline,
    leap: LeapState,
    selection: Option<Selection>,
    system_peer: Option<u16>,
    sys: SystemVars,
    local_precision: i8,
    /// The first receive timestamp seen: the discipline's clock-time origin.
    clock_origin: Option<NtpTimestamp>,
    /// Reused by every selection round, so a receipt does not allocate for it.
    candidates: Vec<Candidate>,
    /// What the `leapfile` says about the end of today; it outranks the servers' votes,
    /// as in ntpd, because a verified table is better evidence than a bit in a packet.
    leap_table_vote: Option<Option<LeapKind>>,
    /// Whether a system peer was ever chosen: the start-up majority rule applies before.
    ever_synchronised: bool,
    /// How far the discipline has moved the clock since its first correction.
    displacement: Displacement,
    /// Symmetric keys for associations configured with `key N`.
    keys: KeyStore,
    /// NTS state of the associations configured with `nts`.
    nts: Vec<NtsAssoc>,
}

/// The NTS side of one association.
#[derive(Debug, Clone)]
struct NtsAssoc {
    id: u16,
    /// Keys and cookies from the last key exchange; `None` until one succeeds.
    state: Option<NtsClientState>,
    /// The unique identifier of the request in flight.
    uid: [u8; UID_LEN],
}

/// Room for a request: the header and the longest MAC, or an NTS request (unique
/// identifier, cookie, placeholders and authenticator).
pub const MAX_REQUEST_LEN: usize = 1280;

/// The net phase correction (steps and slews) the discipline has made since its first
/// correction.
///
/// The panic threshold limits each offset; this limits their sum, so a source that walks
/// away a little at every poll (each offset harmless) still cannot drag the clock further
/// than the threshold through repeated steps. Honest corrections net out near zero; the
/// first correction (the start-up step that `-g` allows) is not counted. The sum fades
/// with a time constant of [`DISPLACEMENT_MEMORY`], so honest corrections spread over a
/// long life (a laptop's suspends, a VM's pauses) never add up to an exit, while a walk
/// fast enough to matter still does. A walk slow enough to be followed by the frequency
/// alone (under 500 ppm) is not caught here: it is bounded by the frequency limit
/// instead, as in ntpd.
#[derive(Debug, Clone, Default)]
struct Displacement {
    /// Net seconds moved, faded.
    total: f64,
    /// Clock time of the last correction counted; `None` before the first correction.
    last: Option<f64>,
}

/// How long the net phase correction is remembered (time constant of its fading): 30 days.
pub const DISPLACEMENT_MEMORY: f64 = 30.0 * 86_400.0;

impl Displacement {
    /// Account for `command` at clock time `now`; true if the net phase correction would
    /// then exceed `panic`.
    fn exceeds_panic(&mut self, command: &ClockCommand, now: f64, panic: f64) -> bool {
        if command.event == DisciplineEvent::Panic {
            return false;
        }
        let Some(last) = self.last else {
            self.last = Some(now);
            return false;
        };
        let faded = self.total * libm::exp(-(now - last).max(0.0) / DISPLACEMENT_MEMORY);
        let moved = command.step.unwrap_or(0.0) + command.slew.unwrap_or(0.0);
        if (faded + moved).abs() > panic {
            return true;
        }
        self.total = faded + moved;
        self.last = Some(now);
        false
    }
}

/// Why a datagram from a keyed association was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthRejection {
    /// No MAC, or a crypto-NAK, where one with our key was required.
    Unauthenticated,
    /// A MAC that does not verify, or made with another key.
    BadMac,
    /// An NTS reply that failed (after a NAK the association wants a new key exchange).
    Nts(NtsError),
}

impl SyncCore {
    /// A core with no associations yet.
    pub fn new(config: SyncConfig, local_precision: i8) -> Self {
        let discipline = Discipline::new(config.discipline);
        let sys = SystemVars {
            leap: LeapIndicator::Unsynchronized,
            stratum: 16,
            reference_id: ReferenceId::INIT,
            reference_ts: NtpTimestamp::ZERO,
            root_delay: 0.0,
            root_dispersion: 0.0,
            offset: 0.0,
            jitter: 0.0,
            poll: config.discipline.minpoll,
            system_peer: None,
            discipline: discipline.stats(),
        };
        SyncCore {
            config,
            assocs: Vec::new(),
            // ntpd numbers associations from a random-looking base; a fixed one keeps
            // ids stable across runs, which scripts appreciate.
            next_id: 41_000,
            discipline,
            leap: LeapState::new(),
            selection: None,
            system_peer: None,
            sys,
            local_precision,
            clock_origin: None,
            candidates: Vec::new(),
            leap_table_vote: None,
            keys: KeyStore::new(meridian_auth::KeyFile::new(), []),
            nts: Vec::new(),
            ever_synchronised: false,
            displacement: Displacement::default(),
        }
    }

    /// The command that installs the initial frequency (from the drift file).
    pub fn initial_command(&self) -> ClockCommand {
        self.discipline.initial_command()
    }

    /// Add an association; its first request is due at `first_poll_at` (mono).
    pub fn add(
        &mut self,
        name: impl Into<String>,
        addr: SocketAddr,
        kind: AssocKind,
        options: SourceOptions,
        first_poll_at: f64,
    ) -> u16 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        if options.nts {
            self.nts.push(NtsAssoc {
                id,
                state: None,
                uid: [0; UID_LEN],
            });
        }
        self.assocs.push(Association {
            id,
            name: name.into(),
            addr,
            kind,
            source: Source::new(options, self.local_precision, first_poll_at),
            local: None,
        });
        id
    }

    /// Remove an association (demobilised, or gone from the configuration).
    pub fn remove(&mut self, id: u16) {
        self.assocs.retain(|a| a.id != id);
        self.nts.retain(|n| n.id != id);
        if self.system_peer == Some(id) {
            self.system_peer = None;
        }
        if self.sys.system_peer == Some(id) {
            // Keep no system variables from a source that is no longer there; another
            // survivor takes over with its next sample.
            self.lose_system_peer();
        }
    }

    /// Tell the core our address as association `id` sees it (the source address of
    /// what we send it), so it can recognise a source that is synchronised to us.
    pub fn set_local_address(&mut self, id: u16, local: IpAddr) {
        if let Some(a) = self.assocs.iter_mut().find(|a| a.id == id) {
            a.local = Some(local);
        }
    }

    /// The associations.
    pub fn associations(&self) -> &[Association] {
        &self.assocs
    }

    /// The system variables.
    pub fn system(&self) -> &SystemVars {
        &self.sys
    }

    /// The selection status of an association (for the tally code).
    ///
    /// Only the core's system peer is shown as such: selection may name a peer that the
    /// start-up majority rule then refuses, and `*` must never mark a source the clock
    /// does not follow.
    pub fn status_of(&self, id: u16) -> SelectStatus {
        let status = self
            .selection
            .as_ref()
            .and_then(|s| s.status_of(usize::from(id)))
            .unwrap_or(SelectStatus::Reject);
        match status {
            SelectStatus::SysPeer | SelectStatus::PpsPeer if self.system_peer != Some(id) => {
                SelectStatus::Candidate
            }
            s => s,
        }
    }

    /// Use these keys for associations configured with `key N` (start-up and reload).
    pub fn set_keys(&mut self, keys: KeyStore) {
        self.keys = keys;
    }

    /// Like [`SyncCore::transmit`], but writes the datagram into `out` and signs it when
    /// the association has a key. Returns the destination and the datagram's length.
    ///
    /// For an NTS association, `uid` becomes the request's unique identifier; without
    /// keys from a key exchange nothing is sent (the poll still counts as unanswered).
    #[allow(clippy::too_many_arguments)]
    pub fn transmit_datagram(
        &mut self,
        id: u16,
        now: f64,
        t1: NtpTimestamp,
        random: u64,
        uid: &[u8; UID_LEN],
        out: &mut [u8; MAX_REQUEST_LEN],
    ) -> Option<(SocketAddr, usize)> {
        let key = self
            .assocs
            .iter()
            .find(|a| a.id == id)?
            .source
            .options()
            .key;
        let (addr, header) = self.transmit(id, now, t1, random)?;
        if let Some(n) = self.nts.iter_mut().find(|n| n.id == id) {
            let state = n.state.as_mut()?;
            let header = NtpHeader::decode(&header).ok()?;
            n.uid = *uid;
            let len = state.build_request(&header, uid, out).ok()?;
            return Some((addr, len));
        }
        out[..HEADER_LEN].copy_from_slice(&header);
        let len = match key {
            None => HEADER_LEN,
            // A key that can't sign (unknown, untrusted) sends nothing: an unsigned
            // request would get an unsigned reply, which we'd refuse anyway.
            Some(k) => self.keys.sign_in_place(out, HEADER_LEN, k).ok()?,
        };
        Some((addr, len))
    }

    /// Like [`SyncCore::receive`], from the raw datagram: decodes it and, for an
    /// association with a key, requires a valid MAC made with that key first.
    pub fn receive_datagram(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        t4: NtpTimestamp,
        now: f64,
        utc: f64,
    ) -> Result<Receipt, AuthRejection> {
        let Ok(reply) = NtpHeader::decode(datagram) else {
            return Ok(Receipt {
                association: None,
                event: SourceEvent::None,
                command: None,
            });
        };
        let assoc = self
            .answered_by(from, reply.origin_ts)
            .map(|i| (self.assocs[i].id, self.assocs[i].source.options().key));
        if let Some(n) = assoc.and_then(|(id, _)| self.nts.iter_mut().find(|n| n.id == id)) {
            let Some(state) = n.state.as_mut() else {
                return Err(AuthRejection::Nts(NtsError::NoCookies));
            };
            let reply = state
                .process_response(datagram, &n.uid)
                .map_err(AuthRejection::Nts)?;
            return Ok(self.receive(from, &reply, t4, now, utc));
        }
        if let Some(k) = assoc.and_then(|(_, key)| key) {
            match self.keys.verify(datagram) {
                Verification::Valid { key_id } if key_id == k => {}
                Verification::Valid { .. } | Verification::Invalid { .. } => {
                    return Err(AuthRejection::BadMac)
                }
                _ => return Err(AuthRejection::Unauthenticated),
            }
        }
        Ok(self.receive(from, &reply, t4, now, utc))
    }

    /// NTS associations that need a key exchange now: none yet, cookies used up, or the
    /// server sent a NAK.
    pub fn nts_key_exchange_needed(&self) -> Vec<u16> {
        self.nts
            .iter()
            .filter(|n| {
                n.state
                    .as_ref()
                    .is_none_or(NtsClientState::needs_key_exchange)
            })
            .map(|n| n.id)
            .collect()
    }

    /// Install the result of a key exchange for association `id`; its NTP packets go to
    /// `ntp_addr` (the server the NTS-KE server named) from now on.
    pub fn install_nts(&mut self, id: u16, state: NtsClientState, ntp_addr: SocketAddr) {
        if let Some(n) = self.nts.iter_mut().find(|n| n.id == id) {
            n.state = Some(state);
            if let Some(a) = self.assocs.iter_mut().find(|a| a.id == id) {
                a.addr = ntp_addr;
            }
        }
    }

    /// Tell the core what a verified leap second table says about the end of the UTC day
    /// containing `utc`; from now on it decides instead of the servers' leap bits.
    pub fn set_leap_table_vote(&mut self, utc: f64, vote: Option<LeapKind>) {
        if self.leap_table_vote != Some(vote) || vote.is_some() {
            self.leap.update(utc, vote);
        }
        self.leap_table_vote = Some(vote);
        if self.sys.system_peer.is_some() && self.sys.leap != LeapIndicator::Unsynchronized {
            self.sys.leap = LeapIndicator::from_bits(self.leap.indicator());
        }
    }

    /// The armed leap second, if any: its `at` (UTC, Unix seconds) is when
    /// [`SyncCore::leap_due`] will fire, and what a kernel can be armed with.
    pub fn pending_leap(&self) -> Option<leap::PendingLeap> {
        self.leap.pending()
    }

    /// Call as the clock passes `utc` (the clock's time as Unix seconds), at the latest
    /// just after the armed leap's `at`: returns the leap second once, when due, and
    /// disarms it.
    ///
    /// By the time it returns, the core has accounted for the clock moving by
    /// `kind.step()`: the discipline's time base and any request in flight are shifted,
    /// while the clock filters are kept (the servers' time moved too, so offsets are
    /// unchanged). The caller then applies `command` to the clock. A daemon that armed the
    /// kernel (`STA_INS`/`STA_DEL`) lets the kernel make the step and skips applying it,
    /// but still calls this just after midnight so the core follows.
    pub fn leap_due(&mut self, utc: f64) -> Option<LeapSecond> {
        let pending = self.leap.pending()?;
        let kind = self.leap.due(utc)?;
        let step = kind.step();
        self.discipline.clock_stepped(step);
        for a in &mut self.assocs {
            a.source.leap_second(step);
        }
        // The announcement is over: keep serving "synchronised", without the warning.
        if self.sys.leap != LeapIndicator::Unsynchronized {
            self.sys.leap = LeapIndicator::NoWarning;
        }
        Some(LeapSecond {
            kind,
            at: pending.at,
            command: ClockCommand {
                step: Some(step),
                slew: None,
                slew_rate: 0.0,
                frequency_ppm: self.discipline.frequency_ppm(),
                event: DisciplineEvent::Stepped,
            },
        })
    }

    /// When (mono) the core next needs [`SyncCore::transmit`] called.
    pub fn next_wakeup(&self) -> Option<f64> {
        self.assocs
            .iter()
            .map(|a| a.source.next_poll())
            .min_by(f64::total_cmp)
    }

    /// Associations whose request is due at `now` (mono).
    pub fn due(&self, now: f64) -> Vec<u16> {
        self.assocs
            .iter()
            .filter(|a| a.source.next_poll() <= now)
            .map(|a| a.id)
            .collect()
    }

    /// Build the request for association `id`: where to send it and the bytes. `t1` is the
    /// clock read just before sending; `random` becomes the transmit timestamp.
    ///
    /// When the request starts a poll (not a later packet of a burst), selection is run
    /// again first: the system peer may have just become unreachable or too distant.
    pub fn transmit(
        &mut self,
        id: u16,
        now: f64,
        t1: NtpTimestamp,
        random: u64,
    ) -> Option<(SocketAddr, [u8; 48])> {
        let a = self.assocs.iter_mut().find(|a| a.id == id)?;
        let polls = a.source.polls();
        let mut bytes = a.source.transmit(now, t1, random);
        let addr = a.addr;
        let symmetric = a.source.options().symmetric;
        if a.source.polls() != polls {
            // A poll started and the reach register moved. A source that stopped
            // answering sends no reply to run selection on, so run it here, or it
            // would stay the system peer however long it is gone.
            self.review(now);
        }
        if symmetric {
            // A symmetric peer may synchronise to us from these packets, so they carry
            // our system variables, like a server reply (a client request carries none).
            let request = NtpHeader::decode(&bytes).ok()?;
            let mut h = build_server_reply(
                &request,
                &self.server_state(),
                request.receive_ts,
                request.transmit_ts,
            );
            h.mode = request.mode;
            h.poll = request.poll;
            h.origin_ts = request.origin_ts;
            h.encode(&mut bytes);
        }
        Some((addr, bytes))
    }

    /// Our system variables as a server announces them.
    fn server_state(&self) -> ServerState {
        let sys = &self.sys;
        ServerState {
            leap: sys.leap,
            stratum: sys.stratum,
            precision: self.local_precision,
            root_delay: NtpShort::from_seconds_f64(sys.root_delay),
            root_dispersion: NtpShort::from_seconds_f64(sys.root_dispersion),
            reference_id: sys.reference_id,
            reference_ts: sys.reference_ts,
            min_poll: DEFAULT_MIN_POLL,
        }
    }

    /// Answer a client (mode 3) request that a `peer` sent to the port our symmetric
    /// packets come from: received at `t2`, to leave at `t3`. Writes the reply into
    /// `out` and returns its length, or `None` when `from` is no peer association, the
    /// datagram is no client request, or a keyed peer's request does not verify.
    ///
    /// Such a request never reaches the server: the daemon's socket for the peer takes
    /// everything the peer sends to that port. A peer that has no symmetric mode (NTPsec
    /// treats `peer` as `server`) polls us this way, and must still be answered, from the
    /// same system variables our mode 1 packets carry.
    pub fn answer_peer_client(
        &self,
        from: SocketAddr,
        datagram: &[u8],
        t2: NtpTimestamp,
        t3: NtpTimestamp,
        out: &mut [u8; MAX_REQUEST_LEN],
    ) -> Option<usize> {
        let peer = self
            .assocs
            .iter()
            .find(|a| a.addr == from && a.kind == AssocKind::Peer)?;
        let request = NtpHeader::decode(datagram).ok()?;
        if request.mode != Mode::Client || !(1..=4).contains(&request.version) {
            return None;
        }
        let key = peer.source.options().key;
        if let Some(k) = key {
            if !matches!(self.keys.verify(datagram), Verification::Valid { key_id } if key_id == k)
            {
                return None;
            }
        }
        let reply = build_server_reply(&request, &self.server_state(), t2, t3);
        let mut header = [0u8; HEADER_LEN];
        reply.encode(&mut header);
        out[..HEADER_LEN].copy_from_slice(&header);
        match key {
            None => Some(HEADER_LEN),
            Some(k) => self.keys.sign_in_place(out, HEADER_LEN, k).ok(),
        }
    }

    /// A datagram from `from` arrived at `t4` (clock time) and `now` (mono); `utc` is the
    /// clock's time as Unix seconds, for the leap-second calendar.
    pub fn receive(
        &mut self,
        from: SocketAddr,
        reply: &NtpHeader,
        t4: NtpTimestamp,
        now: f64,
        utc: f64,
    ) -> Receipt {
        let Some(index) = self.answered_by(from, reply.origin_ts) else {
            return Receipt {
                association: None,
                event: SourceEvent::None,
                command: None,
            };
        };
        let id = self.assocs[index].id;
        let event = self.assocs[index].source.receive(reply, t4, now);
        let command = match &event {
            // A stale filter still took a fresh measurement: the discipline weights every
            // sample by its own delay, so it wants them all, not only the filter's picks.
            // A held popcorn spike too: the filter compares it with an output taken
            // before the discipline's latest corrections, so right after start-up it
            // holds back good samples; the discipline's innovation gate, which knows
            // those corrections, judges outliers instead.
            SourceEvent::Updated(_) | SourceEvent::Stale | SourceEvent::Held => {
                self.update_system(id, now, t4, utc)
            }
            SourceEvent::Demobilize(KissCode::Deny | KissCode::Rstr) => {
                self.remove(id);
                None
            }
            _ => None,
        };
        Receipt {
            association: Some(id),
            event,
            command,
        }
    }

    /// The index of the association a reply from `from` with origin timestamp `origin`
    /// is for. Several associations can share one server address: a plain and an NTS
    /// source of the same server, once the NTS-KE server has named its NTP address, or
    /// one host configured under two names. Matching on the address alone would hand
    /// every reply to the first of them, so the others would never be reached (their
    /// replies rejected there as bogus or unauthenticated). The one whose outstanding
    /// request the origin echoes wins; failing that, the first, whose checks then
    /// refuse a stale or forged reply as before.
    fn answered_by(&self, from: SocketAddr, origin: NtpTimestamp) -> Option<usize> {
        let at = |a: &Association| a.addr == from;
        self.assocs
            .iter()
            .position(|a| at(a) && a.source.awaits_reply_to(origin))
            .or_else(|| self.assocs.iter().position(at))
    }

    /// The discipline's time for a sample received at `t4`: seconds of the disciplined
    /// clock since the first sample. The discipline remembers times (its estimate's epoch,
    /// the slew in progress) and moves them when the clock is stepped
    /// ([`Discipline::clock_stepped`], and inside its own steps), so it must be given the
    /// clock's time, not the monotonic `now`, which a step does not move.
    fn clock_seconds(&mut self, t4: NtpTimestamp) -> f64 {
        let origin = *self.clock_origin.get_or_insert(t4);
        t4.diff(origin).to_seconds_f64()
    }

    /// Run selection over every association as it stands at `now` (mono): the outcome,
    /// and the system peer it yields after the start-up majority rule. The candidates
    /// are left in `self.candidates` (for the leap vote).
    ///
    /// Fitness is judged here as RFC 5905's `fit()` does: a source that has not answered
    /// any of its last eight polls (reach 0), or whose root distance, aged at PHI since
    /// its last sample, exceeds `maxdist`, is rejected; so when no fit source is left
    /// there is no system peer.
    fn select_sources(&mut self, now: f64) -> (Selection, Option<u16>) {
        let mut candidates = std::mem::take(&mut self.candidates);
        candidates.clear();
        candidates.extend(
            self.assocs
                .iter()
                .filter(|a| !a.is_loop())
                .filter_map(|a| a.source.candidate(usize::from(a.id), now)),
        );
        let selection = select(
            &candidates,
            &self.config.select,
            self.system_peer.map(usize::from),
        );
        self.candidates = candidates;
        let mut peer_id = selection.system_peer.and_then(|p| u16::try_from(p).ok());
        if !self.ever_synchronised {
            // Before the first synchronisation, one fast source must not win just by
            // being usable first: wait until the agreeing survivors are a majority of
            // every source that answers, as a falseticker would otherwise set the clock
            // (and then hold it for a whole stepout against the honest majority).
            let answering = self
                .assocs
                .iter()
                .filter(|a| a.source.reach() != 0 && !a.source.options().noselect)
                .count();
            // A `true` source is vouched for by the operator: it needs no majority.
            let vouched = peer_id.is_some_and(|id| {
                self.assocs
                    .iter()
                    .any(|a| a.id == id && a.source.options().truechimer)
            });
            if selection.survivors.len() * 2 <= answering && !vouched {
                peer_id = None;
            }
        }
        (selection, peer_id)
    }

    /// Reselect at `now` (mono) without a new sample, as a poll starts: a system peer
    /// that stopped answering (reach 0) or aged beyond `maxdist` loses its place even
    /// though nothing arrives to say so (ntpd gets there through the dummy sample it
    /// feeds the clock filter of a silent source, which runs its selection). The clock
    /// is not touched: with no system peer the discipline simply holds its frequency
    /// (holdover) until one is selected again.
    ///
    /// A different survivor chosen here becomes the system peer for selection (and
    /// `ntpq`'s tally) at once; the system variables follow with its next sample, as
    /// only a sample can discipline the clock.
    fn review(&mut self, now: f64) {
        let (selection, peer_id) = self.select_sources(now);
        self.system_peer = peer_id;
        self.selection = Some(selection);
        if peer_id.is_none() {
            self.lose_system_peer();
        }
    }

    /// No system peer (any more): say so in the system variables. The daemon then serves
    /// its local clock driver or orphan mode if configured, and otherwise leap 3 at
    /// stratum 16, so clients stop taking time from a server that has none itself. The
    /// discipline's estimates (frequency above all) are kept for the holdover.
    fn lose_system_peer(&mut self) {
        self.sys.system_peer = None;
        self.sys.leap = LeapIndicator::Unsynchronized;
        self.sys.stratum = 16;
        self.sys.reference_id = ReferenceId::INIT;
    }

    /// Reselect after association `updated` produced a new sample; if it is the system
    /// peer, discipline the clock with its raw sample. The discipline weights each sample
    /// by its own delay, so it wants the measurement itself, not the combined or filtered
    /// offset (whose delay no longer describes it).
    fn update_system(
        &mut self,
        updated: u16,
        now: f64,
        t4: NtpTimestamp,
        utc: f64,
    ) -> Option<ClockCommand> {
        let (selection, peer_id) = self.select_sources(now);
        let vote = leap::vote(
            selection
                .survivors
                .iter()
                .filter_map(|id| self.candidates.iter().find(|c| c.id == *id))
                .map(|c| c.leap),
        );
        self.leap.update(utc, self.leap_table_vote.unwrap_or(vote));
        self.system_peer = peer_id;
        let Some(peer) = peer_id.and_then(|id| self.assocs.iter().find(|a| a.id == id)) else {
            self.selection = Some(selection);
            self.lose_system_peer();
            return None;
        };
        let info = *peer.source.info()?;
        let out = peer.source.filter_output()?;
        if peer.id != updated {
            self.selection = Some(selection);
            return None;
        }
        if self.sys.system_peer != Some(peer.id) {
            self.discipline.source_changed();
        }
        let raw = *peer.source.last_sample()?;
        let peer_addr = peer.addr;
        let clock_now = self.clock_seconds(t4);
        let mut command = self
            .discipline
            .update(clock_now, raw.offset, raw.delay, raw.dispersion);
        if self.displacement.exceeds_panic(
            &command,
            clock_now,
            self.config.discipline.panic_threshold,
        ) {
            // Many corrections that each pass the panic gate must not add up to one that
            // would not: a source walking slowly away cannot drag the clock arbitrarily.
            command.event = DisciplineEvent::Panic;
            return Some(command);
        }
        let stats = self.discipline.stats();
        self.ever_synchronised = true;
        self.sys = SystemVars {
            leap: if stats.synchronised || command.event == DisciplineEvent::Stepped {
                LeapIndicator::from_bits(self.leap.indicator())
            } else {
                LeapIndicator::Unsynchronized
            },
            stratum: info.stratum.saturating_add(1).min(16),
            reference_id: if info.stratum <= 1 {
                info.reference_id
            } else {
                ReferenceId::from_ip(peer_addr.ip())
            },
            reference_ts: t4,
            root_delay: info.root_delay + out.delay,
            root_dispersion: info.root_dispersion
                + out.dispersion
                + (out.jitter * out.jitter + selection.jitter * selection.jitter).sqrt()
                + selection.offset.abs(),
            offset: selection.offset,
            jitter: selection.jitter,
            poll: self.discipline.poll_interval_log2(),
            system_peer: peer_id,
            discipline: stats,
        };
        if let Some(step) = command.step {
            // Every sample taken before a step measured the old clock.
            for a in &mut self.assocs {
                a.source.clock_stepped(step);
            }
        }
        let poll = self.sys.poll;
        let settling = self.discipline.settling();
        for a in &mut self.assocs {
            a.source.set_system_poll(poll, settling, now);
        }
        self.selection = Some(selection);
        Some(command)
    }
}

#[cfg(test)]
#[path = "system_tests.rs"]
mod tests;
