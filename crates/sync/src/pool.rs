//! `pool`: one DNS name that stands for up to `tos maxclock` associations.
//!
//! A [`Pool`] remembers which associations it mobilised. At every review it drops the
//! members that stopped answering (or that a server demobilised with DENY/RSTR), then
//! asks a [`Resolver`] for the name again and fills the gaps with addresses not already
//! in use, as ntpd replaces its unreachable pool associations. Name resolution is behind
//! a trait so the whole cycle runs without a network in tests; the daemon plugs in the
//! system resolver.

use std::net::SocketAddr;

use crate::source::SourceOptions;
use crate::system::{AssocKind, SyncCore};

/// Polls without any answer after which a pool member is dropped and replaced (counted
/// once the reach register is empty: a member that never answered goes after this many
/// polls, one that answered before after eight more).
pub const POOL_UNREACH_LIMIT: u32 = 8;

/// How long (mono seconds) a dropped address is not taken again, so a name that keeps
/// resolving to a dead server does not get the same dead member back at once.
pub const POOL_SHUN: f64 = 3600.0;

/// Turns a pool name into addresses.
pub trait Resolver {
    /// All addresses `name` stands for, with `port`; an error is a message for the log.
    fn resolve(&mut self, name: &str, port: u16) -> Result<Vec<SocketAddr>, String>;
}

impl<F> Resolver for F
where
    F: FnMut(&str, u16) -> Result<Vec<SocketAddr>, String>,
{
    fn resolve(&mut self, name: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        self(name, port)
    }
}

/// What one review changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolReview {
    /// Members removed from the core (unreachable), with their addresses.
    pub removed: Vec<(u16, SocketAddr)>,
    /// Associations mobilised now, with their addresses.
    pub added: Vec<(u16, SocketAddr)>,
    /// Why the name could not be resolved, if it could not.
    pub resolve_error: Option<String>,
}

/// One `pool` line and the associations it currently holds.
#[derive(Debug, Clone)]
pub struct Pool {
    name: String,
    port: u16,
    options: SourceOptions,
    /// Member ids with the address each was mobilised for.
    members: Vec<(u16, SocketAddr)>,
    /// Dropped addresses and until when (mono) they are not taken again.
    shunned: Vec<(SocketAddr, f64)>,
}

impl Pool {
    /// A pool for `name` (NTP on `port`) whose members use `options`; it holds nothing
    /// until the first [`Pool::review`].
    pub fn new(name: impl Into<String>, port: u16, options: SourceOptions) -> Self {
        Pool {
            name: name.into(),
            port,
            options,
            members: Vec::new(),
            shunned: Vec::new(),
        }
    }

    /// The configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The association ids it holds now.
    pub fn members(&self) -> Vec<u16> {
        self.members.iter().map(|(id, _)| *id).collect()
    }

    /// Drop members that are gone or unreachable, then top up to `maxclock` members from
    /// a fresh resolution. New members' first polls are spread from `now` (mono).
    pub fn review(
        &mut self,
        core: &mut SyncCore,
        resolver: &mut dyn Resolver,
        maxclock: usize,
        now: f64,
    ) -> PoolReview {
        let mut review = PoolReview::default();
        self.shunned.retain(|(_, until)| *until > now);
        let mut kept = Vec::new();
        for &(id, addr) in &self.members {
            let Some(a) = core.associations().iter().find(|a| a.id == id) else {
                // Demobilised by the core itself (DENY/RSTR): already gone; the server
                // asked not to be polled, so do not take it again for a while.
                self.shunned.push((addr, now + POOL_SHUN));
                continue;
            };
            if a.source.unreach() >= POOL_UNREACH_LIMIT {
                core.remove(id);
                self.shunned.push((addr, now + POOL_SHUN));
                review.removed.push((id, addr));
            } else {
                kept.push((id, addr));
            }
        }
        self.members = kept;
        if self.members.len() >= maxclock {
            return review;
        }
        let addrs = match resolver.resolve(&self.name, self.port) {
            Ok(a) => a,
            Err(e) => {
                review.resolve_error = Some(e);
                return review;
            }
        };
        for addr in addrs {
            if self.members.len() >= maxclock {
                break;
            }
            let in_use = core.associations().iter().any(|a| a.addr == addr);
            let shunned = self.shunned.iter().any(|(a, _)| *a == addr);
            if in_use || shunned {
                continue;
            }
            let first = now + 0.1 * review.added.len() as f64;
            let id = core.add(&self.name, addr, AssocKind::Pool, self.options, first);
            self.members.push((id, addr));
            review.added.push((id, addr));
        }
        review
    }

    /// Forget member `id` without touching the core (the caller removed it).
    pub fn forget(&mut self, id: u16) {
        self.members.retain(|(m, _)| *m != id);
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
