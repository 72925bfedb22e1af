//! Per-source connection limits: how many connections one address may hold, how fast
//! it may open them, and how many may sit unregistered, plus a cap on unregistered
//! connections from everyone together.
//!
//! A source is an IPv4 address or an IPv6 prefix (a /64 by default: one host's
//! addresses). Exempt networks (loopback by default, so benchmarks on one machine
//! keep working) skip the per-source limits but not the total.
//!
//! Shared by every shard and touched only when a connection is accepted, registers
//! or ends (never on the message path). The table is split into independently locked
//! stripes by address hash, each lock held for one map operation, so shards
//! accepting at once rarely meet. Entries are dropped once their source has no
//! connection and a full connect-rate bucket, so the table is bounded by the
//! sources seen in the last refill period.

pub use crate::config::SourceLimits;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

/// Lock stripes of the table.
const STRIPES: usize = 64;

/// Why a connection was refused; each has its own counter and `ERROR` text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SourceRefusal {
    /// The source holds `max_connections` already.
    #[error("Too many connections from your host")]
    TooManyConnections,
    /// The source opens connections faster than its rate allows.
    #[error("Connecting too fast; try again later")]
    TooFast,
    /// The source has `max_unregistered` unregistered connections.
    #[error("Too many unregistered connections from your host")]
    TooManyUnregistered,
    /// The server holds `max_unregistered_total` unregistered connections.
    #[error("Too many connections are registering; try again later")]
    ServerBusy,
}

/// A source's address, IPv6 reduced to its prefix.
pub type SourceKey = IpAddr;

#[derive(Debug)]
struct Entry {
    connections: u32,
    unregistered: u32,
    tokens: f32,
    refilled_at: Instant,
}

impl Entry {
    fn refill(&mut self, limits: &SourceLimits, now: Instant) {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens as f64 + elapsed * limits.connect_rate)
            .min(limits.connect_burst as f64) as f32;
        self.refilled_at = now;
    }

    fn is_idle(&self, limits: &SourceLimits) -> bool {
        self.connections == 0 && self.tokens >= limits.connect_burst as f32
    }
}

/// A connection's standing with the table: which source it counts against (none if
/// exempt), and whether it still counts as unregistered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// The source it counts against, or `None` for an exempt one.
    pub source: Option<SourceKey>,
    /// Still counted as unregistered.
    pub unregistered: bool,
}

/// The table; see the module comment.
#[derive(Debug)]
pub struct Sources {
    limits: SourceLimits,
    stripes: Box<[Mutex<HashMap<SourceKey, Entry>>]>,
    unregistered: AtomicUsize,
}

impl Sources {
    /// An empty table with `limits`.
    pub fn new(limits: SourceLimits) -> Sources {
        Sources {
            limits,
            stripes: (0..STRIPES).map(|_| Mutex::new(HashMap::new())).collect(),
            unregistered: AtomicUsize::new(0),
        }
    }

    /// Admits a connection from `ip` at `now`, or says why not.
    pub fn admit(&self, ip: IpAddr, now: Instant) -> Result<Admission, SourceRefusal> {
        let total = self
            .unregistered
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limits.max_unregistered_total).then_some(n + 1)
            });
        if total.is_err() {
            return Err(SourceRefusal::ServerBusy);
        }
        let ip = canonical(ip);
        if self.limits.exempt.iter().any(|net| net.contains(&ip)) {
            return Ok(Admission {
                source: None,
                unregistered: true,
            });
        }
        let key = self.key(ip);
        let refused = {
            let mut stripe = self.stripe(&key);
            let entry = stripe.entry(key).or_insert_with(|| Entry {
                connections: 0,
                unregistered: 0,
                tokens: self.limits.connect_burst as f32,
                refilled_at: now,
            });
            entry.refill(&self.limits, now);
            let refused = if entry.connections >= self.limits.max_connections {
                Some(SourceRefusal::TooManyConnections)
            } else if entry.unregistered >= self.limits.max_unregistered {
                Some(SourceRefusal::TooManyUnregistered)
            } else if entry.tokens < 1.0 {
                Some(SourceRefusal::TooFast)
            } else {
                entry.tokens -= 1.0;
                entry.connections += 1;
                entry.unregistered += 1;
                None
            };
            if entry.is_idle(&self.limits) {
                stripe.remove(&key);
            }
            refused
        };
        match refused {
            Some(refusal) => {
                self.unregistered.fetch_sub(1, Ordering::AcqRel);
                Err(refusal)
            }
            None => Ok(Admission {
                source: Some(key),
                unregistered: true,
            }),
        }
    }

    /// Counts a connection handed over by a live upgrade against its source again,
    /// as the old process had it (no limit is checked: it is already connected).
    pub fn readmit(&self, admission: Admission, now: Instant) {
        if admission.unregistered {
            self.unregistered.fetch_add(1, Ordering::AcqRel);
        }
        let Some(key) = admission.source else {
            return;
        };
        let mut stripe = self.stripe(&key);
        let entry = stripe.entry(key).or_insert_with(|| Entry {
            connections: 0,
            unregistered: 0,
            tokens: self.limits.connect_burst as f32,
            refilled_at: now,
        });
        entry.connections += 1;
        if admission.unregistered {
            entry.unregistered += 1;
        }
    }

    /// The connection completed registration: it no longer counts as unregistered.
    pub fn registered(&self, admission: &mut Admission) {
        if !std::mem::replace(&mut admission.unregistered, false) {
            return;
        }
        self.unregistered.fetch_sub(1, Ordering::AcqRel);
        if let Some(key) = admission.source {
            if let Some(entry) = self.stripe(&key).get_mut(&key) {
                entry.unregistered = entry.unregistered.saturating_sub(1);
            }
        }
    }

    /// The connection is gone.
    pub fn release(&self, admission: Admission, now: Instant) {
        if admission.unregistered {
            self.unregistered.fetch_sub(1, Ordering::AcqRel);
        }
        let Some(key) = admission.source else {
            return;
        };
        let mut stripe = self.stripe(&key);
        if let Some(entry) = stripe.get_mut(&key) {
            entry.connections = entry.connections.saturating_sub(1);
            if admission.unregistered {
                entry.unregistered = entry.unregistered.saturating_sub(1);
            }
            entry.refill(&self.limits, now);
            if entry.is_idle(&self.limits) {
                stripe.remove(&key);
            }
        }
    }

    /// Drops the entries of one stripe whose sources are idle again; called about
    /// once a second with a rotating `turn`, so every stripe is swept regularly.
    pub fn sweep(&self, turn: usize, now: Instant) {
        let Some(stripe) = self.stripes.get(turn % STRIPES) else {
            return;
        };
        let mut stripe = lock(stripe);
        stripe.retain(|_, entry| {
            entry.refill(&self.limits, now);
            !entry.is_idle(&self.limits)
        });
    }

    /// How many sources the table tracks (tests, metrics).
    pub fn tracked(&self) -> usize {
        self.stripes.iter().map(|stripe| lock(stripe).len()).sum()
    }

    /// Unregistered connections from all sources.
    pub fn unregistered(&self) -> usize {
        self.unregistered.load(Ordering::Acquire)
    }

    fn key(&self, ip: IpAddr) -> SourceKey {
        match ip {
            IpAddr::V4(_) => ip,
            IpAddr::V6(v6) => {
                let prefix = self.limits.ipv6_prefix.min(128);
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        }
    }

    fn stripe(&self, key: &SourceKey) -> MutexGuard<'_, HashMap<SourceKey, Entry>> {
        let spread = match key {
            IpAddr::V4(v4) => u64::from(u32::from(*v4)),
            IpAddr::V6(v6) => {
                let bits = u128::from(*v6);
                (bits >> 64) as u64 ^ bits as u64
            }
        };
        // Fibonacci hashing: neighbouring addresses land on different stripes.
        let index = (spread.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize;
        lock(&self.stripes[index % STRIPES])
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:1.2.3.4`) is the IPv4 source it maps.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits() -> SourceLimits {
        SourceLimits {
            max_connections: 3,
            connect_burst: 4,
            connect_rate: 1.0,
            max_unregistered: 2,
            max_unregistered_total: 5,
            exempt: vec!["10.9.0.0/16".parse().expect("network")],
            ipv6_prefix: 64,
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    #[test]
    fn unregistered_connections_are_capped_per_source_then_connections() {
        let sources = Sources::new(limits());
        let now = Instant::now();
        let mut first = sources.admit(ip("192.0.2.1"), now).expect("first");
        sources.admit(ip("192.0.2.1"), now).expect("second");
        assert_eq!(
            sources.admit(ip("192.0.2.1"), now),
            Err(SourceRefusal::TooManyUnregistered)
        );
        sources.registered(&mut first);
        sources
            .admit(ip("192.0.2.1"), now)
            .expect("third, once one registered");
        let mut more = sources.admit(ip("192.0.2.2"), now).expect("another source");
        sources.registered(&mut more);
        assert_eq!(sources.unregistered(), 2, "the second and the third");
        sources.release(first, now);
        assert_eq!(sources.unregistered(), 2, "the first had registered");
    }

    #[test]
    fn a_source_holds_at_most_max_connections() {
        let sources = Sources::new(limits());
        let now = Instant::now();
        for _ in 0..3 {
            let mut admitted = sources.admit(ip("192.0.2.1"), now).expect("room");
            sources.registered(&mut admitted);
        }
        assert_eq!(
            sources.admit(ip("192.0.2.1"), now),
            Err(SourceRefusal::TooManyConnections)
        );
    }

    #[test]
    fn connecting_too_fast_is_refused_until_the_bucket_refills() {
        let sources = Sources::new(SourceLimits {
            max_connections: 100,
            max_unregistered: 100,
            ..limits()
        });
        let now = Instant::now();
        for _ in 0..4 {
            let admitted = sources.admit(ip("192.0.2.1"), now).expect("burst");
            sources.release(admitted, now);
        }
        assert_eq!(
            sources.admit(ip("192.0.2.1"), now),
            Err(SourceRefusal::TooFast)
        );
        let later = now + Duration::from_secs(1);
        sources
            .admit(ip("192.0.2.1"), later)
            .expect("one more token");
    }

    #[test]
    fn ipv6_sources_are_64_bit_prefixes_and_mapped_ipv4_is_ipv4() {
        let sources = Sources::new(limits());
        let now = Instant::now();
        sources.admit(ip("2001:db8::1"), now).expect("first");
        sources.admit(ip("2001:db8::ffff"), now).expect("same /64");
        assert_eq!(
            sources.admit(ip("2001:db8::2"), now),
            Err(SourceRefusal::TooManyUnregistered)
        );
        sources
            .admit(ip("2001:db8:0:1::1"), now)
            .expect("another /64");
        assert_eq!(
            sources.key(canonical(ip("::ffff:192.0.2.7"))),
            ip("192.0.2.7")
        );
    }

    #[test]
    fn exempt_sources_skip_per_source_limits_but_not_the_total() {
        let sources = Sources::new(limits());
        let now = Instant::now();
        for _ in 0..5 {
            sources.admit(ip("10.9.1.1"), now).expect("exempt");
        }
        assert_eq!(
            sources.admit(ip("10.9.1.1"), now),
            Err(SourceRefusal::ServerBusy)
        );
        assert_eq!(sources.tracked(), 0, "exempt sources take no entry");
    }

    #[test]
    fn idle_sources_are_forgotten() {
        let sources = Sources::new(limits());
        let now = Instant::now();
        let admitted = sources.admit(ip("192.0.2.1"), now).expect("admitted");
        sources.release(admitted, now);
        assert_eq!(sources.tracked(), 1, "its bucket is not full yet");
        for turn in 0..STRIPES {
            sources.sweep(turn, now + Duration::from_secs(10));
        }
        assert_eq!(sources.tracked(), 0);
    }
}
