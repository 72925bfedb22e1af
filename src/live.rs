//! The settings a reload may change while the server runs: the MOTD, the operator
//! accounts and the limits that are safe to change under connected clients. Owns
//! their current values; it does not read files or decide what a reload means
//! (`main.rs` does).
//!
//! `Config` keeps the values the server started with; code that must follow a reload
//! reads them here instead. The limits are plain atomics read with `Relaxed` loads (an
//! ordinary load on x86-64 and AArch64), so the message path pays nothing for them.
//! A reload stores each limit on its own: a client may briefly see a new sendq with
//! the old recvq, which is harmless because every limit is checked on its own.

use crate::config::{Config, FloodPolicy};
use crate::opers::OperBlock;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The live values; see the module comment. Lives in `Shared` for the server's life.
#[derive(Debug)]
pub struct LiveSettings {
    /// MOTD lines; `None` answers 422. Read once per MOTD request, swapped by a reload.
    motd: RwLock<Option<Arc<[String]>>>,
    /// Operator accounts. Read once per OPER, swapped by a reload.
    opers: RwLock<Arc<[OperBlock]>>,
    sendq: AtomicUsize,
    recvq: AtomicUsize,
    flood_burst: AtomicU32,
    /// `f64::to_bits` of the lines per second.
    flood_rate_bits: AtomicU64,
    ping_interval_ms: AtomicU64,
    ping_timeout_ms: AtomicU64,
    registration_timeout_ms: AtomicU64,
    max_clients: AtomicUsize,
    max_channels_per_client: AtomicUsize,
}

impl LiveSettings {
    /// The live values as `config` sets them.
    pub fn new(config: &Config) -> LiveSettings {
        let live = LiveSettings {
            motd: RwLock::new(None),
            opers: RwLock::new(Arc::from(Vec::new())),
            sendq: AtomicUsize::new(0),
            recvq: AtomicUsize::new(0),
            flood_burst: AtomicU32::new(0),
            flood_rate_bits: AtomicU64::new(0),
            ping_interval_ms: AtomicU64::new(0),
            ping_timeout_ms: AtomicU64::new(0),
            registration_timeout_ms: AtomicU64::new(0),
            max_clients: AtomicUsize::new(0),
            max_channels_per_client: AtomicUsize::new(0),
        };
        live.apply(config);
        live
    }

    /// Takes every live value from `config`; returns the names (config-file keys) of
    /// those that changed, for the reload's log line.
    pub fn apply(&self, config: &Config) -> Vec<&'static str> {
        let mut changed = Vec::new();
        let motd: Option<Arc<[String]>> = config.motd.as_deref().map(Arc::from);
        {
            let mut current = self.motd.write().unwrap_or_else(|p| p.into_inner());
            if *current != motd {
                *current = motd;
                changed.push("motd");
            }
        }
        {
            let mut current = self.opers.write().unwrap_or_else(|p| p.into_inner());
            if **current != *config.opers {
                *current = Arc::from(config.opers.clone());
                changed.push("oper");
            }
        }
        let mut store = |key: &'static str, cell: &AtomicU64, value: u64| {
            if cell.swap(value, Ordering::Relaxed) != value {
                changed.push(key);
            }
        };
        store(
            "ping-interval",
            &self.ping_interval_ms,
            millis(config.ping_interval),
        );
        store(
            "ping-timeout",
            &self.ping_timeout_ms,
            millis(config.ping_timeout),
        );
        store(
            "registration-timeout",
            &self.registration_timeout_ms,
            millis(config.registration_timeout),
        );
        store(
            "flood-rate",
            &self.flood_rate_bits,
            config.flood_rate.to_bits(),
        );
        let mut store = |key: &'static str, cell: &AtomicUsize, value: usize| {
            if cell.swap(value, Ordering::Relaxed) != value {
                changed.push(key);
            }
        };
        store("sendq", &self.sendq, config.sendq);
        store("recvq", &self.recvq, config.recvq);
        store("max-clients", &self.max_clients, config.max_clients);
        store(
            "max-channels",
            &self.max_channels_per_client,
            config.max_channels_per_client,
        );
        if self.flood_burst.swap(config.flood_burst, Ordering::Relaxed) != config.flood_burst {
            changed.push("flood-burst");
        }
        changed
    }

    /// The MOTD lines, `None` when there is no MOTD (422).
    pub fn motd(&self) -> Option<Arc<[String]>> {
        self.motd.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The operator accounts.
    pub fn opers(&self) -> Arc<[OperBlock]> {
        self.opers.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Most bytes queued for one client before `SendQ exceeded`.
    pub fn sendq(&self) -> usize {
        self.sendq.load(Ordering::Relaxed)
    }

    /// Most bytes of unprocessed input held for one client (`Excess Flood`).
    pub fn recvq(&self) -> usize {
        self.recvq.load(Ordering::Relaxed)
    }

    /// The flood policy from the burst and rate.
    pub fn flood_policy(&self) -> FloodPolicy {
        FloodPolicy {
            burst: self.flood_burst.load(Ordering::Relaxed),
            lines_per_second: f64::from_bits(self.flood_rate_bits.load(Ordering::Relaxed)),
        }
    }

    /// Quiet time after which the server sends PING.
    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.ping_interval_ms.load(Ordering::Relaxed))
    }

    /// Time after that PING without input before the client is dropped.
    pub fn ping_timeout(&self) -> Duration {
        Duration::from_millis(self.ping_timeout_ms.load(Ordering::Relaxed))
    }

    /// Time an unregistered connection may take to register.
    pub fn registration_timeout(&self) -> Duration {
        Duration::from_millis(self.registration_timeout_ms.load(Ordering::Relaxed))
    }

    /// Most simultaneous connections. Lowering it closes nobody: it refuses new
    /// connections until enough have left.
    pub fn max_clients(&self) -> usize {
        self.max_clients.load(Ordering::Relaxed)
    }

    /// Most channels one client may be in. Lowering it parts nobody.
    pub fn max_channels_per_client(&self) -> usize {
        self.max_channels_per_client.load(Ordering::Relaxed)
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_reports_exactly_the_keys_that_changed() {
        let mut config = Config::default();
        let live = LiveSettings::new(&config);
        assert!(live.apply(&config).is_empty());
        config.sendq = 4096;
        config.motd = Some(vec!["hello".to_owned()]);
        config.flood_rate = 0.5;
        assert_eq!(live.apply(&config), ["motd", "flood-rate", "sendq"]);
        assert_eq!(live.sendq(), 4096);
        assert_eq!(live.flood_policy().lines_per_second, 0.5);
        assert_eq!(live.motd().as_deref(), Some(&["hello".to_owned()][..]));
    }
}
