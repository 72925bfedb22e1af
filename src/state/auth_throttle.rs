//! Throttles on account work, per node: account registrations per source address
//! (so one host cannot claim names by the thousand) and failed logins per account
//! (so an account's password cannot be guessed at the rate connections allow).
//!
//! Contract:
//! - Only REGISTER and logins consult it, never the message path; its two maps are
//!   behind a lock each, held for one lookup.
//! - Bounds: each map tracks at most [`MAX_TRACKED`] keys. When full, keys whose
//!   budget has refilled are forgotten; if none has, the new key is refused (the
//!   throttle fails closed rather than growing or forgetting the ones it limits).
//! - Sources in `--exempt` (loopback by default) are not throttled for registering,
//!   as for the other per-source limits; failed logins count for every source.

use super::flood::TokenBucket;
use crate::config::FloodPolicy;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Registrations one source may make at once, then one per 20 minutes.
pub const REGISTRATIONS: FloodPolicy = FloodPolicy {
    burst: 3,
    lines_per_second: 1.0 / 1200.0,
};

/// Failed logins one account may take at once, then one per 6 seconds.
pub const LOGIN_FAILURES: FloodPolicy = FloodPolicy {
    burst: 10,
    lines_per_second: 1.0 / 6.0,
};

/// Keys each map tracks at most.
pub const MAX_TRACKED: usize = 10_000;

/// See the module contract.
#[derive(Debug, Default)]
pub struct AuthThrottle {
    registrations: Mutex<HashMap<IpAddr, TokenBucket>>,
    login_failures: Mutex<HashMap<String, TokenBucket>>,
}

impl AuthThrottle {
    /// Takes one registration from `source`'s budget; `false` when it has none.
    pub fn allow_registration(&self, source: IpAddr, now: Instant) -> bool {
        take(&self.registrations, source, REGISTRATIONS, now, true)
    }

    /// Whether `account` may be tried now (it has failures left in its budget).
    pub fn allow_login(&self, account: &str, now: Instant) -> bool {
        take(
            &self.login_failures,
            account.to_ascii_lowercase(),
            LOGIN_FAILURES,
            now,
            false,
        )
    }

    /// Counts a failed login to `account`.
    pub fn note_login_failure(&self, account: &str, now: Instant) {
        take(
            &self.login_failures,
            account.to_ascii_lowercase(),
            LOGIN_FAILURES,
            now,
            true,
        );
    }
}

/// Whether `key` has a token under `policy` (taking it when `consume`), tracking it
/// within [`MAX_TRACKED`] keys.
fn take<K: Hash + Eq>(
    map: &Mutex<HashMap<K, TokenBucket>>,
    key: K,
    policy: FloodPolicy,
    now: Instant,
    consume: bool,
) -> bool {
    let mut map = map.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if !map.contains_key(&key) {
        if !consume {
            return true;
        }
        if map.len() >= MAX_TRACKED {
            map.retain(|_, bucket| !bucket.is_full(policy, now));
            if map.len() >= MAX_TRACKED {
                return false;
            }
        }
    }
    let bucket = map
        .entry(key)
        .or_insert_with(|| TokenBucket::new(policy, now));
    if consume {
        bucket.try_take(policy, now)
    } else {
        bucket.has_token(policy, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_source_registers_its_burst_then_waits_for_the_rate() {
        let throttle = AuthThrottle::default();
        let (source, now) = ("192.0.2.1".parse().expect("an address"), Instant::now());
        for _ in 0..REGISTRATIONS.burst {
            assert!(throttle.allow_registration(source, now));
        }
        assert!(!throttle.allow_registration(source, now));
        assert!(throttle.allow_registration(source, now + Duration::from_secs(1200)));
    }

    #[test]
    fn an_account_takes_its_failures_then_refuses_tries_until_they_refill() {
        let throttle = AuthThrottle::default();
        let now = Instant::now();
        for _ in 0..LOGIN_FAILURES.burst {
            assert!(throttle.allow_login("Alice", now));
            throttle.note_login_failure("alice", now);
        }
        assert!(!throttle.allow_login("ALICE", now));
        assert!(throttle.allow_login("bob", now));
        assert!(throttle.allow_login("alice", now + Duration::from_secs(6)));
    }
}
