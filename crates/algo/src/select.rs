//! Source selection, clustering and combining (RFC 5905 §11.2).
//!
//! Given each source's filtered view, decide which sources are
//! truechimers (their correctness intervals share a common intersection
//! with a majority), prune the survivors by selection jitter, choose the
//! system peer and combine survivor offsets weighted by 1/root distance.
//! The status of every candidate is reported so `ntpq -p` can show the
//! classic tally characters.

/// Upper bound on stratum; higher is unsynchronised.
pub const MAXSTRAT: u8 = 16;

/// One source as seen by selection. Delay and dispersion are totals to
/// the reference clock (root delay/dispersion included, dispersion aged
/// to now by the caller).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// Caller's identifier, echoed back in the result.
    pub id: usize,
    /// Filtered offset (s).
    pub offset: f64,
    /// Total round-trip delay to the reference clock (s).
    pub delay: f64,
    /// Total dispersion to the reference clock (s).
    pub dispersion: f64,
    /// Peer jitter (s).
    pub jitter: f64,
    /// Stratum of the source.
    pub stratum: u8,
    /// Leap indicator announced by the source (3 = unsynchronised).
    pub leap: u8,
    /// Configured `prefer`.
    pub prefer: bool,
    /// Configured `noselect`: shown, but never used.
    pub noselect: bool,
    /// Whether the source answered recently enough to be considered.
    pub reachable: bool,
    /// Whether this is a PPS-disciplined source (tally `o` when chosen).
    pub pps: bool,
    /// Configured `true`: always counted as a truechimer, even outside the
    /// intersection (ntpd's FLAG_TRUE). It must still be fit to vote.
    pub truechimer: bool,
}

impl Candidate {
    /// Root distance λ (RFC 5905 `root_dist()`, floored at `mindist`):
    /// the maximum error this source could have.
    pub fn root_distance(&self, mindist: f64) -> f64 {
        (self.delay / 2.0 + self.dispersion + self.jitter).max(mindist)
    }
}

/// Tunables, named after the `tos` options of ntpd.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SelectConfig {
    /// Minimum survivors needed to declare synchronisation.
    pub minsane: usize,
    /// Clustering stops pruning at this many survivors.
    pub minclock: usize,
    /// At most this many survivors are combined; the rest are backups.
    pub maxclock: usize,
    /// Sources with root distance above this are rejected (s).
    pub maxdist: f64,
    /// Floor on root distance (s).
    pub mindist: f64,
}

impl Default for SelectConfig {
    fn default() -> Self {
        Self {
            minsane: 1,
            minclock: 3,
            maxclock: 10,
            maxdist: 1.5,
            mindist: 0.001,
        }
    }
}

/// Per-candidate outcome, in increasing order of merit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SelectStatus {
    /// Unusable: unreachable, unsynchronised, too far or `noselect`.
    Reject,
    /// Outside the intersection of the majority: a falseticker.
    Falseticker,
    /// A truechimer beyond the candidate limit.
    Excess,
    /// Discarded by clustering.
    Outlier,
    /// Survivor beyond `maxclock`: not combined.
    Backup,
    /// Survivor used in combining.
    Candidate,
    /// The system peer.
    SysPeer,
    /// The system peer, disciplined by PPS.
    PpsPeer,
}

impl SelectStatus {
    /// The `ntpq -p` tally character for this status.
    pub fn tally_char(self) -> char {
        match self {
            SelectStatus::Reject => ' ',
            SelectStatus::Falseticker => 'x',
            SelectStatus::Excess => '.',
            SelectStatus::Outlier => '-',
            SelectStatus::Backup => '#',
            SelectStatus::Candidate => '+',
            SelectStatus::SysPeer => '*',
            SelectStatus::PpsPeer => 'o',
        }
    }
}

/// Result of one selection run.
#[derive(Clone, Debug, PartialEq)]
pub struct Selection {
    /// Chosen system peer, `None` when unsynchronised.
    pub system_peer: Option<usize>,
    /// Ids surviving clustering, best first.
    pub survivors: Vec<usize>,
    /// Ids found to be falsetickers.
    pub falsetickers: Vec<usize>,
    /// Combined offset (s); 0 without a system peer.
    pub offset: f64,
    /// System jitter: peer jitter and selection jitter combined (s).
    pub jitter: f64,
    /// Root distance of the system peer (s).
    pub root_distance: f64,
    /// Status per input candidate, in input order, as `(id, status)`.
    pub status: Vec<(usize, SelectStatus)>,
}

impl Selection {
    /// Status of candidate `id`, if it was part of the input.
    pub fn status_of(&self, id: usize) -> Option<SelectStatus> {
        self.status.iter().find(|(i, _)| *i == id).map(|(_, s)| *s)
    }
}

/// Run selection, clustering and combining. `previous_peer` is kept as
/// system peer while it survives, to avoid clock hopping (as ntpd does).
pub fn select(
    candidates: &[Candidate],
    config: &SelectConfig,
    previous_peer: Option<usize>,
) -> Selection {
    let mut status: Vec<SelectStatus> = vec![SelectStatus::Reject; candidates.len()];
    let lambda: Vec<f64> = candidates
        .iter()
        .map(|c| c.root_distance(config.mindist))
        .collect();

    // Fitness: only sane, reachable, synchronised and near sources vote.
    let fit: Vec<usize> = (0..candidates.len())
        .filter(|&i| {
            let c = &candidates[i];
            c.reachable
                && !c.noselect
                && c.leap != 3
                && c.stratum < MAXSTRAT
                && c.offset.is_finite()
                && lambda[i] <= config.maxdist
        })
        .collect();

    let mut truechimers = intersect(candidates, &lambda, &fit);
    // A `true` source survives the intersection whatever it says, as in ntpd: the
    // operator vouches for it (a lone trusted server among liars, a local reference).
    for &i in &fit {
        if candidates[i].truechimer && !truechimers.contains(&i) {
            truechimers.push(i);
        }
    }
    let mut falsetickers = Vec::new();
    for &i in &fit {
        if truechimers.contains(&i) {
            status[i] = SelectStatus::Excess;
        } else {
            status[i] = SelectStatus::Falseticker;
            falsetickers.push(candidates[i].id);
        }
    }

    let unsynced = |status: Vec<SelectStatus>, falsetickers| Selection {
        system_peer: None,
        survivors: Vec::new(),
        falsetickers,
        offset: 0.0,
        jitter: 0.0,
        root_distance: 0.0,
        status: candidates.iter().map(|c| c.id).zip(status).collect(),
    };
    if truechimers.len() < config.minsane.max(1) {
        return unsynced(status, falsetickers);
    }

    // Order by merit: stratum first, then root distance (RFC 5905).
    let mut order = truechimers;
    let merit = |i: usize| f64::from(candidates[i].stratum) * config.maxdist + lambda[i];
    order.sort_by(|&a, &b| merit(a).total_cmp(&merit(b)));
    order.truncate(config.maxclock.max(config.minclock).max(1) * 2);

    let survivors = cluster(candidates, &order, config.minclock);
    for &i in &order {
        status[i] = SelectStatus::Outlier;
    }
    for (rank, &i) in survivors.iter().enumerate() {
        status[i] = if rank < config.maxclock.max(1) {
            SelectStatus::Candidate
        } else {
            SelectStatus::Backup
        };
    }

    // System peer: a surviving prefer peer, else the previous peer while
    // it survives, else the best survivor.
    let prefer = survivors.iter().copied().find(|&i| candidates[i].prefer);
    let keep =
        previous_peer.and_then(|id| survivors.iter().copied().find(|&i| candidates[i].id == id));
    let peer = prefer.or(keep).unwrap_or(survivors[0]);
    status[peer] = if candidates[peer].pps {
        SelectStatus::PpsPeer
    } else {
        SelectStatus::SysPeer
    };

    let combined: Vec<usize> = survivors
        .iter()
        .copied()
        .take(config.maxclock.max(1))
        .collect();
    let (offset, sel_jitter) = if prefer.is_some() {
        // A prefer peer's offset is used alone, as ntpd does.
        (
            candidates[peer].offset,
            selection_jitter(candidates, &combined, peer, &lambda),
        )
    } else {
        let wsum: f64 = combined.iter().map(|&i| 1.0 / lambda[i]).sum();
        let off = combined
            .iter()
            .map(|&i| candidates[i].offset / lambda[i])
            .sum::<f64>()
            / wsum;
        (off, selection_jitter(candidates, &combined, peer, &lambda))
    };
    let jitter = (candidates[peer].jitter.powi(2) + sel_jitter.powi(2)).sqrt();

    Selection {
        system_peer: Some(candidates[peer].id),
        survivors: survivors.iter().map(|&i| candidates[i].id).collect(),
        falsetickers,
        offset,
        jitter,
        root_distance: lambda[peer],
        status: candidates.iter().map(|c| c.id).zip(status).collect(),
    }
}

/// Marzullo-style intersection (RFC 5905 §11.2.1): find the smallest
/// number of falsetickers `allow` such that at least `n - allow`
/// correctness intervals share a common range containing no more than
/// `allow` midpoints outside it. Returns indices of truechimers.
fn intersect(c: &[Candidate], lambda: &[f64], fit: &[usize]) -> Vec<usize> {
    let n = fit.len();
    if n == 0 {
        return Vec::new();
    }
    // (edge, type): -1 lower, 0 midpoint, +1 upper.
    let mut edges: Vec<(f64, i32)> = Vec::with_capacity(3 * n);
    for &i in fit {
        edges.push((c[i].offset - lambda[i], -1));
        edges.push((c[i].offset, 0));
        edges.push((c[i].offset + lambda[i], 1));
    }
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let need = |allow: usize| (n - allow) as i32;
    for allow in 0..n.div_ceil(2) {
        let mut found = 0;
        let mut chime = 0;
        let mut low = f64::INFINITY;
        for &(edge, ty) in &edges {
            chime -= ty;
            if chime >= need(allow) {
                low = edge;
                break;
            }
            if ty == 0 {
                found += 1;
            }
        }
        chime = 0;
        let mut high = f64::NEG_INFINITY;
        for &(edge, ty) in edges.iter().rev() {
            chime += ty;
            if chime >= need(allow) {
                high = edge;
                break;
            }
            if ty == 0 {
                found += 1;
            }
        }
        if found > allow {
            continue;
        }
        if high >= low {
            return fit
                .iter()
                .copied()
                .filter(|&i| c[i].offset >= low && c[i].offset <= high)
                .collect();
        }
    }
    Vec::new()
}

/// Clustering (RFC 5905 §11.2.2): repeatedly drop the survivor with the
/// largest selection jitter while that exceeds the smallest peer jitter
/// and more than `minclock` remain. Prefer peers are never dropped.
fn cluster(c: &[Candidate], order: &[usize], minclock: usize) -> Vec<usize> {
    let mut s: Vec<usize> = order.to_vec();
    while s.len() > minclock.max(1) {
        let mut worst = (f64::NEG_INFINITY, 0usize);
        for (k, &i) in s.iter().enumerate() {
            if c[i].prefer {
                continue;
            }
            let sum: f64 = s.iter().map(|&j| (c[i].offset - c[j].offset).powi(2)).sum();
            let phi = (sum / (s.len() - 1) as f64).sqrt();
            if phi > worst.0 {
                worst = (phi, k);
            }
        }
        let min_peer_jitter = s.iter().map(|&i| c[i].jitter).fold(f64::INFINITY, f64::min);
        if worst.0 == f64::NEG_INFINITY || worst.0 <= min_peer_jitter {
            break;
        }
        s.remove(worst.1);
    }
    s
}

/// Weighted RMS of survivor offsets around the system peer's offset.
fn selection_jitter(c: &[Candidate], set: &[usize], peer: usize, lambda: &[f64]) -> f64 {
    let wsum: f64 = set.iter().map(|&i| 1.0 / lambda[i]).sum();
    let sum: f64 = set
        .iter()
        .map(|&i| (c[i].offset - c[peer].offset).powi(2) / lambda[i])
        .sum();
    if wsum > 0.0 {
        (sum / wsum).sqrt()
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(id: usize, offset: f64) -> Candidate {
        Candidate {
            id,
            offset,
            delay: 0.002,
            dispersion: 0.001,
            jitter: 0.0005,
            stratum: 2,
            leap: 0,
            prefer: false,
            noselect: false,
            reachable: true,
            pps: false,
            truechimer: false,
        }
    }

    #[test]
    fn falseticker_is_excluded() {
        let cs = [
            cand(0, 0.001),
            cand(1, 0.0012),
            cand(2, 1.0),
            cand(3, 0.0008),
        ];
        let sel = select(&cs, &SelectConfig::default(), None);
        assert_eq!(sel.falsetickers, vec![2]);
        assert!(!sel.survivors.contains(&2));
        assert_ne!(sel.system_peer, Some(2));
        assert_eq!(sel.status_of(2).unwrap().tally_char(), 'x');
        assert!((sel.offset - 0.001).abs() < 0.0003, "{}", sel.offset);
    }

    #[test]
    fn no_majority_means_no_sync() {
        let cs = [cand(0, 0.0), cand(1, 1.0)];
        let sel = select(&cs, &SelectConfig::default(), None);
        assert_eq!(sel.system_peer, None);
        assert!(sel.survivors.is_empty());
    }

    #[test]
    fn prefer_noselect_minsane_and_maxdist() {
        let mut cs = [cand(0, 0.001), cand(1, 0.0012), cand(2, 0.0009)];
        cs[1].prefer = true;
        cs[2].noselect = true;
        let sel = select(&cs, &SelectConfig::default(), Some(0));
        assert_eq!(sel.system_peer, Some(1));
        assert_eq!(sel.offset, 0.0012);
        assert_eq!(sel.status_of(2), Some(SelectStatus::Reject));
        assert_eq!(sel.status_of(1).unwrap().tally_char(), '*');
        assert_eq!(sel.status_of(0).unwrap().tally_char(), '+');

        let cfg = SelectConfig {
            minsane: 3,
            ..Default::default()
        };
        assert_eq!(select(&cs, &cfg, None).system_peer, None);

        cs[0].dispersion = 2.0;
        let sel = select(&cs, &SelectConfig::default(), None);
        assert_eq!(sel.status_of(0), Some(SelectStatus::Reject));
    }

    #[test]
    fn a_true_source_survives_the_intersection() {
        // Alone against a majority it is a falseticker; with `true` it survives, and
        // as the only survivor it becomes the system peer.
        let mut cs = [cand(0, 0.001), cand(1, 0.0012), cand(2, 1.0)];
        let sel = select(&cs, &SelectConfig::default(), None);
        assert_eq!(sel.falsetickers, vec![2]);
        cs[2].truechimer = true;
        let sel = select(&cs, &SelectConfig::default(), None);
        assert!(sel.falsetickers.is_empty(), "{sel:?}");
        assert_ne!(sel.status_of(2), Some(SelectStatus::Falseticker));
        // Without a majority nobody survives but the trusted one.
        let mut pair = [cand(0, 0.0), cand(1, 1.0)];
        pair[1].truechimer = true;
        let sel = select(&pair, &SelectConfig::default(), None);
        assert_eq!(sel.system_peer, Some(1));
        assert_eq!(sel.survivors, vec![1]);
        assert_eq!(sel.status_of(0), Some(SelectStatus::Falseticker));
        // Fitness still applies: an unreachable `true` source is rejected.
        pair[1].reachable = false;
        let sel = select(&pair, &SelectConfig::default(), None);
        assert_eq!(sel.status_of(1), Some(SelectStatus::Reject));
    }

    #[test]
    fn previous_peer_is_kept_while_it_survives() {
        let cs = [cand(0, 0.001), cand(1, 0.0011), cand(2, 0.0009)];
        let sel = select(&cs, &SelectConfig::default(), Some(2));
        assert_eq!(sel.system_peer, Some(2));
    }

    #[test]
    fn an_unreachable_previous_peer_is_neither_kept_nor_chosen() {
        // RFC 5905 fit(): reach 0 is unfit, however good its last offset was.
        let mut cs = [cand(0, 0.001), cand(1, 0.0011)];
        cs[0].reachable = false;
        let sel = select(&cs, &SelectConfig::default(), Some(0));
        assert_eq!(sel.system_peer, Some(1));
        assert_eq!(sel.status_of(0), Some(SelectStatus::Reject));
        // Alone, it leaves no system peer at all.
        let sel = select(&cs[..1], &SelectConfig::default(), Some(0));
        assert_eq!(sel.system_peer, None);
        assert!(sel.survivors.is_empty());
    }

    #[test]
    fn clustering_prunes_widest_outlier() {
        let mut cs: Vec<Candidate> = (0..5).map(|i| cand(i, 0.001 * i as f64 * 0.01)).collect();
        for c in &mut cs {
            c.jitter = 1e-5;
            c.dispersion = 0.02;
        }
        cs[4].offset = 0.008; // inside everyone's interval but far from the pack
        let sel = select(&cs, &SelectConfig::default(), None);
        assert_eq!(sel.status_of(4), Some(SelectStatus::Outlier));
        assert_eq!(sel.survivors.len(), 3);
        assert!(sel.offset.abs() < 1e-4);
    }

    #[test]
    fn tally_chars_are_distinct() {
        use SelectStatus::*;
        let all = [
            Reject,
            Falseticker,
            Excess,
            Outlier,
            Backup,
            Candidate,
            SysPeer,
            PpsPeer,
        ];
        let s: String = all.iter().map(|s| s.tally_char()).collect();
        assert_eq!(s, " x.-#+*o");
    }
}
