//! WHOWAS history: who held a nickname before, kept in the replicated network state
//! so every shard answers the same. Bounded twice: at most [`WHOWAS_LIMIT`] entries
//! in all (the oldest goes first) and [`WHOWAS_PER_NICK`] per nickname (that nick's
//! oldest goes first), so neither many users nor one nick changing back and forth
//! can grow it. Plain data; only [`super::apply`] changes it, O(1) per entry.
//! Snapshots carry it whole, dropped entries' places in the order included, so a
//! loaded history forgets exactly what the original would have (`WhowasImage`).

use super::persistent::ArcMap;
use crate::proto::{Caseless, CaselessKey};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};
use std::collections::VecDeque;
use std::sync::Arc;

/// Most WHOWAS entries the network remembers.
pub const WHOWAS_LIMIT: usize = 1024;
/// Most WHOWAS entries for one nickname (the longest answer to one WHOWAS).
pub const WHOWAS_PER_NICK: usize = 8;

/// A user as it was when it left a nickname (QUIT or NICK).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// The history; see the module comment. Persistent like the rest of the network
/// state ([`super::persistent`]): recording an entry copies one nick's short list and
/// a path of each structure, not the history.
#[derive(Debug, Clone, Default)]
pub struct Whowas {
    /// Entries per nickname, oldest first, at most [`WHOWAS_PER_NICK`] each.
    by_nick: ArcMap<CaselessKey, VecDeque<Arc<WhowasEntry>>>,
    /// Every entry made, oldest first, at most [`WHOWAS_LIMIT`]; entries already
    /// dropped for the per-nick bound stay here until their turn and are skipped.
    order: imbl::Vector<(CaselessKey, u64)>,
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
        let entry = Arc::new(WhowasEntry {
            nick: nick.clone(),
            user: user.into(),
            host: host.into(),
            realname: realname.into(),
            left_at,
            serial,
        });
        match self.by_nick.get_mut(nick) {
            Some(entries) => {
                if entries.len() >= WHOWAS_PER_NICK {
                    entries.pop_front();
                }
                entries.push_back(entry);
            }
            None => {
                self.by_nick.insert(nick.clone(), VecDeque::from([entry]));
            }
        }
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
            .flat_map(|entries| entries.iter().rev().map(|entry| &**entry))
    }

    /// How many entries are kept.
    pub fn len(&self) -> usize {
        self.by_nick.values().map(VecDeque::len).sum()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.by_nick.is_empty()
    }

    /// Rebuilds a history from a snapshot's image, checking what [`Whowas::record`]
    /// keeps true: both bounds, serials in order and below `next_serial`, and every
    /// kept entry still in the order (or it would never be forgotten). O(entries).
    pub(super) fn from_image(image: WhowasImage) -> Result<Whowas, String> {
        let WhowasImage {
            next_serial,
            order,
            entries,
        } = image;
        if order.len() > WHOWAS_LIMIT {
            return Err(format!(
                "WHOWAS order holds {} entries, more than {WHOWAS_LIMIT}",
                order.len()
            ));
        }
        if !ascending_below(order.iter().map(|(_, serial)| *serial), next_serial)
            || !ascending_below(entries.iter().map(|entry| entry.serial), next_serial)
        {
            return Err("WHOWAS serials out of order or past the next serial".into());
        }
        let mut in_order = order.iter().peekable();
        let mut by_nick: ArcMap<CaselessKey, VecDeque<Arc<WhowasEntry>>> = ArcMap::default();
        for entry in entries {
            while in_order
                .next_if(|(_, serial)| *serial < entry.serial)
                .is_some()
            {}
            if in_order
                .next_if(|(nick, serial)| *serial == entry.serial && *nick == entry.nick)
                .is_none()
            {
                return Err(format!(
                    "WHOWAS entry {} for {} is not in the order",
                    entry.serial, entry.nick
                ));
            }
            if !by_nick.contains_key(&entry.nick) {
                by_nick.insert(entry.nick.clone(), VecDeque::new());
            }
            let Some(kept) = by_nick.get_mut(&entry.nick) else {
                continue;
            };
            if kept.len() == WHOWAS_PER_NICK {
                return Err(format!(
                    "WHOWAS holds more than {WHOWAS_PER_NICK} entries for {}",
                    entry.nick
                ));
            }
            kept.push_back(Arc::new(entry));
        }
        Ok(Whowas {
            by_nick,
            order: order.into_iter().collect(),
            next_serial,
        })
    }
}

/// Whether `serials` strictly increase and stay below `next_serial`.
fn ascending_below(mut serials: impl Iterator<Item = u64>, next_serial: u64) -> bool {
    let mut previous = None;
    serials.all(|serial| {
        let fits = previous.is_none_or(|p| p < serial) && serial < next_serial;
        previous = Some(serial);
        fits
    })
}

/// A snapshot writes the history as a `WhowasImage`: the kept entries oldest first
/// (so the bytes do not depend on hash order) and the whole order.
impl Serialize for Whowas {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut entries: Vec<&WhowasEntry> = self
            .by_nick
            .values()
            .flatten()
            .map(|entry| &**entry)
            .collect();
        entries.sort_unstable_by_key(|entry| entry.serial);
        let order: Vec<&(CaselessKey, u64)> = self.order.iter().collect();
        let mut image = serializer.serialize_struct("WhowasImage", 3)?;
        image.serialize_field("next_serial", &self.next_serial)?;
        image.serialize_field("order", &order)?;
        image.serialize_field("entries", &entries)?;
        image.end()
    }
}

/// The history as a snapshot carries it, read back before [`Whowas::from_image`]
/// checks it. Its fields are those `Whowas`'s `Serialize` writes, in that order.
#[derive(Debug, Deserialize)]
pub(super) struct WhowasImage {
    next_serial: u64,
    order: VecDeque<(CaselessKey, u64)>,
    entries: Vec<WhowasEntry>,
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

    fn image_of(history: &Whowas) -> WhowasImage {
        let bytes = postcard::to_allocvec(history).expect("serializes");
        postcard::from_bytes(&bytes).expect("deserializes")
    }

    fn assert_same(a: &Whowas, b: &Whowas) {
        let entries = |w: &Whowas| {
            w.by_nick
                .iter()
                .map(|(nick, entries)| (nick.clone(), entries.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(entries(a), entries(b));
        assert_eq!(a.order, b.order);
        assert_eq!(a.next_serial, b.next_serial);
    }

    /// The order keeps entries already dropped for the per-nick bound; a rebuilt
    /// history must keep them too, or it would forget later than the original.
    #[test]
    fn a_rebuilt_history_forgets_exactly_what_the_original_forgets() {
        let mut history = Whowas::default();
        for i in 0..WHOWAS_LIMIT as u64 + 40 {
            let nick = if i % 3 == 0 {
                "Same".into()
            } else {
                format!("n{i}")
            };
            record(&mut history, &nick, i);
        }
        let mut rebuilt = Whowas::from_image(image_of(&history)).expect("valid");
        assert_same(&history, &rebuilt);
        for i in 0..WHOWAS_LIMIT as u64 {
            record(&mut history, "late", i);
            record(&mut rebuilt, "late", i);
            assert_same(&history, &rebuilt);
        }
    }

    #[test]
    fn an_image_that_breaks_the_bounds_or_the_order_is_refused() {
        let mut history = Whowas::default();
        for i in 0..WHOWAS_PER_NICK as u64 + 2 {
            record(&mut history, "Same", i);
        }
        type Tamper = fn(&mut WhowasImage);
        let rows: Vec<(&str, Tamper)> = vec![
            ("not in the order", |image| {
                image.order.pop_back();
            }),
            ("out of order", |image| image.next_serial = 3),
            ("out of order", |image| image.entries.swap(0, 1)),
            ("more than 8 entries for Same", |image| {
                let mut extra = image.entries[0].clone();
                extra.serial = image.next_serial;
                image.next_serial += 1;
                image.order.push_back((extra.nick.clone(), extra.serial));
                image.entries.push(extra);
            }),
            ("more than 1024", |image| {
                let entry = image.order[0].clone();
                image.order = std::iter::repeat_n(entry, WHOWAS_LIMIT + 1).collect();
            }),
        ];
        for (expected, tamper) in rows {
            let mut image = image_of(&history);
            tamper(&mut image);
            let error = Whowas::from_image(image).expect_err(expected);
            assert!(error.contains(expected), "{expected}: {error}");
        }
    }
}
