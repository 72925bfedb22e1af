//! WHOWAS history: who held a nickname before, kept in the replicated network state
//! so every shard answers the same. Bounded twice: at most [`WHOWAS_LIMIT`] entries
//! in all (the oldest goes first) and [`WHOWAS_PER_NICK`] per nickname (that nick's
//! oldest goes first), so neither many users nor one nick changing back and forth
//! can grow it. Plain data; only [`super::apply`] changes it, O(1) per entry.

use crate::proto::{Caseless, CaselessKey};
use std::collections::{HashMap, VecDeque};

/// Most WHOWAS entries the network remembers.
pub const WHOWAS_LIMIT: usize = 1024;
/// Most WHOWAS entries for one nickname (the longest answer to one WHOWAS).
pub const WHOWAS_PER_NICK: usize = 8;

/// A user as it was when it left a nickname (QUIT or NICK).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhowasEntry {
    /// The nickname, spelled as it was.
    pub nick: CaselessKey,
    /// `~user`.
    pub user: Box<str>,
    /// The host.
    pub host: Box<str>,
    /// The real name.
    pub realname: Box<str>,
    /// When it left the nickname, Unix seconds (from the event, so replicas agree).
    pub left_at: u64,
    /// Position in the order of entries, to tell a live entry from one already
    /// dropped for the per-nick bound.
    serial: u64,
}

/// The history; see the module comment.
#[derive(Debug, Clone, Default)]
pub struct Whowas {
    /// Entries per nickname, oldest first, at most [`WHOWAS_PER_NICK`] each.
    by_nick: HashMap<CaselessKey, VecDeque<WhowasEntry>>,
    /// Every entry made, oldest first, at most [`WHOWAS_LIMIT`]; entries already
    /// dropped for the per-nick bound stay here until their turn and are skipped.
    order: VecDeque<(CaselessKey, u64)>,
    /// The serial of the next entry.
    next_serial: u64,
}

impl Whowas {
    /// Records that a user with these details left `nick` at `left_at`.
    pub(super) fn record(
        &mut self,
        nick: &CaselessKey,
        user: &str,
        host: &str,
        realname: &str,
        left_at: u64,
    ) {
        let serial = self.next_serial;
        self.next_serial += 1;
        let entries = self.by_nick.entry(nick.clone()).or_default();
        if entries.len() >= WHOWAS_PER_NICK {
            entries.pop_front();
        }
        entries.push_back(WhowasEntry {
            nick: nick.clone(),
            user: user.into(),
            host: host.into(),
            realname: realname.into(),
            left_at,
            serial,
        });
        self.order.push_back((nick.clone(), serial));
        while self.order.len() > WHOWAS_LIMIT {
            let Some((oldest, serial)) = self.order.pop_front() else {
                break;
            };
            if let Some(entries) = self.by_nick.get_mut(&oldest) {
                if entries.front().is_some_and(|entry| entry.serial == serial) {
                    entries.pop_front();
                }
                if entries.is_empty() {
                    self.by_nick.remove(&oldest);
                }
            }
        }
    }

    /// Who held `nick`, most recent first.
    pub fn lookup(&self, nick: &str) -> impl Iterator<Item = &WhowasEntry> {
        self.by_nick
            .get(Caseless::new(nick))
            .into_iter()
            .flat_map(|entries| entries.iter().rev())
    }

    /// How many entries are kept.
    pub fn len(&self) -> usize {
        self.by_nick.values().map(VecDeque::len).sum()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.by_nick.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(history: &mut Whowas, nick: &str, at: u64) {
        history.record(&CaselessKey::new(nick), "~u", "h", "R", at);
    }

    #[test]
    fn a_nick_keeps_its_most_recent_entries_newest_first() {
        let mut history = Whowas::default();
        for at in 0..WHOWAS_PER_NICK as u64 + 3 {
            record(&mut history, "Alice", at);
        }
        let times: Vec<u64> = history.lookup("ALICE").map(|e| e.left_at).collect();
        let newest = WHOWAS_PER_NICK as u64 + 2;
        assert_eq!(times.len(), WHOWAS_PER_NICK);
        assert_eq!(times[0], newest);
        assert_eq!(
            times[WHOWAS_PER_NICK - 1],
            newest + 1 - WHOWAS_PER_NICK as u64
        );
        assert_eq!(history.lookup("bob").count(), 0);
    }

    #[test]
    fn the_history_is_bounded_and_forgets_the_oldest_first() {
        let mut history = Whowas::default();
        for round in 0..3 {
            for i in 0..WHOWAS_LIMIT {
                record(&mut history, &format!("n{i}"), round);
            }
        }
        record(&mut history, "late", 9);
        assert_eq!(history.len(), WHOWAS_LIMIT);
        assert_eq!(
            history.lookup("n0").count(),
            0,
            "the oldest entry went first"
        );
        assert_eq!(
            history.lookup("n1").map(|e| e.left_at).collect::<Vec<_>>(),
            [2]
        );
        assert_eq!(history.lookup("late").count(), 1);
        for _ in 0..10 * WHOWAS_LIMIT {
            record(&mut history, "same", 1);
        }
        assert!(history.len() <= WHOWAS_LIMIT);
        assert_eq!(history.lookup("same").count(), WHOWAS_PER_NICK);
    }
}
