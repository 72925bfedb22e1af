//! MONITOR (IRCv3 `monitor`, `extended-monitor`): which of this shard's clients watch
//! which nicknames, and telling them when a watched nick comes online (730) or goes
//! offline (731), or, with `extended-monitor`, changes its away state or real name.
//!
//! The index is per shard and holds only local watchers: every shard takes in every
//! event, so each tells its own watchers, and a nick on shard 0 watched from shard 3
//! is reported exactly as on one shard, with no hand-off and no shared lock. The
//! index mirrors each client's own list ([`Client::monitoring`]) and forgets a
//! client when it closes.
//!
//! [`Client::monitoring`]: crate::state::Client::monitoring

use super::Shard;
use crate::proto::caps::Cap;
use crate::proto::numeric::{RPL_MONOFFLINE, RPL_MONONLINE};
use crate::proto::outgoing::Outgoing;
use crate::proto::{Caseless, CaselessKey, LineBuilder};
use crate::state::ClientId;
use std::collections::HashMap;

/// Most nicknames one client may MONITOR (ISUPPORT `MONITOR=`): the index and each
/// client's list stay bounded by clients x this.
pub const MONITOR_LIMIT: usize = 100;

/// Local watchers by watched nickname (case-insensitive).
#[derive(Debug, Default)]
pub struct Watchers {
    by_nick: HashMap<CaselessKey, Vec<ClientId>>,
}

impl Watchers {
    /// The local clients watching `nick`.
    fn of(&self, nick: &str) -> Vec<ClientId> {
        self.by_nick
            .get(Caseless::new(nick))
            .cloned()
            .unwrap_or_default()
    }

    /// Lists `id` as a watcher of `nick` (a handed-over client's MONITOR list).
    pub(super) fn watch(&mut self, id: ClientId, nick: CaselessKey) {
        let watchers = self.by_nick.entry(nick).or_default();
        if !watchers.contains(&id) {
            watchers.push(id);
        }
    }

    /// Drops `id` from the watchers of each of `nicks` (MONITOR -, C, and close).
    pub(super) fn forget(&mut self, id: ClientId, nicks: &[CaselessKey]) {
        for nick in nicks {
            if let Some(watchers) = self.by_nick.get_mut(nick) {
                watchers.retain(|&w| w != id);
                if watchers.is_empty() {
                    self.by_nick.remove(nick);
                }
            }
        }
    }
}

/// Why a nick could not be added to a MONITOR list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorRefusal {
    /// The list holds [`MONITOR_LIMIT`] nicks (734).
    ListFull,
}

impl Shard {
    /// Adds `nick` to local client `id`'s MONITOR list; adding a nick already on it
    /// changes nothing.
    pub fn monitor_add(&mut self, id: ClientId, nick: &str) -> Result<(), MonitorRefusal> {
        let Some(client) = self.clients.get_mut(id.slot) else {
            return Ok(());
        };
        let key = CaselessKey::new(nick);
        if client.monitoring.contains(&key) {
            return Ok(());
        }
        if client.monitoring.len() >= MONITOR_LIMIT {
            return Err(MonitorRefusal::ListFull);
        }
        client.monitoring.push(key.clone());
        self.monitors.by_nick.entry(key).or_default().push(id);
        Ok(())
    }

    /// Removes `nick` from `id`'s MONITOR list.
    pub fn monitor_remove(&mut self, id: ClientId, nick: &str) {
        let Some(client) = self.clients.get_mut(id.slot) else {
            return;
        };
        let Some(index) = client
            .monitoring
            .iter()
            .position(|key| key == Caseless::new(nick))
        else {
            return;
        };
        let key = client.monitoring.swap_remove(index);
        self.monitors.forget(id, &[key]);
    }

    /// Empties `id`'s MONITOR list.
    pub fn monitor_clear(&mut self, id: ClientId) {
        if let Some(client) = self.clients.get_mut(id.slot) {
            let nicks = std::mem::take(&mut client.monitoring);
            self.monitors.forget(id, &nicks);
        }
    }

    /// 730 to every local watcher of `nick`, which is now online as `source`.
    pub(super) fn tell_watchers_online(&mut self, nick: &str, source: &str) {
        self.tell_watchers(nick, RPL_MONONLINE, source);
    }

    /// 731 to every local watcher of `nick`, which is now offline.
    pub(super) fn tell_watchers_offline(&mut self, nick: &str) {
        self.tell_watchers(nick, RPL_MONOFFLINE, nick);
    }

    fn tell_watchers(&mut self, nick: &str, code: &str, target: &str) {
        for watcher in self.monitors.of(nick) {
            let Some(client) = self.clients.get(watcher.slot) else {
                continue;
            };
            let line = LineBuilder::from_source(&self.shared.config.server_name, code)
                .arg(client.nick())
                .trailing(target)
                .finish();
            self.send(watcher, line);
        }
    }

    /// `extended-monitor`: `message` (an AWAY or SETNAME line, which carries the
    /// capability it needs) to the local watchers of `nick` that enabled
    /// `extended-monitor`, except `except` and those the fan-out that just ran (with
    /// the current stamp) already reached, so a watcher who also shares a channel
    /// gets the line once.
    pub(super) fn tell_extended_watchers(
        &mut self,
        nick: &str,
        message: &mut Outgoing,
        except: ClientId,
    ) {
        let stamp = self.stamp;
        for watcher in self.monitors.of(nick) {
            if watcher == except {
                continue;
            }
            let Some(client) = self.clients.get_mut(watcher.slot) else {
                continue;
            };
            if client.delivery_stamp == stamp || !client.caps.has(Cap::ExtendedMonitor) {
                continue;
            }
            client.delivery_stamp = stamp;
            self.send_message(watcher, message);
        }
    }
}
