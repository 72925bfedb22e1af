//! Read markers (IRCv3 `draft/read-marker`): per account, the time of the last
//! message its user has read in each target (a channel or a nick), as Unix
//! milliseconds. Plain data; only [`super::apply`] changes it, so every shard and
//! node agrees. A marker only moves forward, and an account keeps at most
//! [`MAX_READ_MARKERS`] targets: setting one more drops the marker with the oldest
//! time. The node's store keeps a copy ([`crate::store::read_markers`]).

use crate::proto::{Caseless, CaselessKey};
use imbl::OrdMap;

/// Most targets one account keeps a read marker for; past it, the oldest goes.
pub const MAX_READ_MARKERS: usize = 1_000;

/// One account's read markers: target (without case) to Unix milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadMarkers {
    markers: OrdMap<CaselessKey, u64>,
}

/// What [`ReadMarkers::advance`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advance {
    /// The marker moved to the new time; `dropped` is the target whose marker made
    /// room for it, if the account was at [`MAX_READ_MARKERS`].
    Moved {
        /// The target whose marker was dropped.
        dropped: Option<CaselessKey>,
    },
    /// The stored time is the same or newer: it stays.
    Kept {
        /// The stored time, Unix milliseconds.
        millis: u64,
    },
}

impl ReadMarkers {
    /// The marker of `target`, Unix milliseconds.
    pub fn get(&self, target: &str) -> Option<u64> {
        self.markers.get(Caseless::new(target)).copied()
    }

    /// How many targets have a marker.
    pub fn len(&self) -> usize {
        self.markers.len()
    }

    /// Whether no target has a marker.
    pub fn is_empty(&self) -> bool {
        self.markers.is_empty()
    }

    /// Every marker, in target order.
    pub fn iter(&self) -> impl Iterator<Item = (&CaselessKey, u64)> {
        self.markers
            .iter()
            .map(|(target, &millis)| (target, millis))
    }

    /// Moves the marker of `target` to `millis` if that is newer than the stored
    /// one (or there is none). A new target past [`MAX_READ_MARKERS`] drops the
    /// marker with the oldest time (of equal times, the first target in order), so
    /// every replica drops the same one. O(log n), O(n) when one is dropped.
    pub fn advance(&mut self, target: &CaselessKey, millis: u64) -> Advance {
        if let Some(stored) = self.markers.get_mut(target) {
            if *stored >= millis {
                return Advance::Kept { millis: *stored };
            }
            *stored = millis;
            return Advance::Moved { dropped: None };
        }
        let mut dropped = None;
        if self.markers.len() >= MAX_READ_MARKERS {
            let oldest = self
                .markers
                .iter()
                .min_by_key(|(name, &millis)| (millis, (*name).clone()))
                .map(|(name, _)| name.clone());
            if let Some(oldest) = oldest {
                self.markers.remove(&oldest);
                dropped = Some(oldest);
            }
        }
        self.markers.insert(target.clone(), millis);
        Advance::Moved { dropped }
    }

    /// Markers as read back (from the store or a snapshot): the newest
    /// [`MAX_READ_MARKERS`] are kept, a target listed twice keeps its newest time.
    pub fn from_list(list: impl IntoIterator<Item = (CaselessKey, u64)>) -> ReadMarkers {
        let mut markers = ReadMarkers::default();
        let mut list: Vec<_> = list.into_iter().collect();
        list.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        for (target, millis) in list {
            if markers.markers.contains_key(&target) {
                continue;
            }
            if markers.markers.len() >= MAX_READ_MARKERS {
                break;
            }
            markers.markers.insert(target, millis);
        }
        markers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_never_moves_back() {
        let mut markers = ReadMarkers::default();
        let target = CaselessKey::new("#Rust");
        assert_eq!(
            markers.advance(&target, 10),
            Advance::Moved { dropped: None }
        );
        assert_eq!(
            markers.advance(&CaselessKey::new("#rust"), 5),
            Advance::Kept { millis: 10 }
        );
        assert_eq!(markers.advance(&target, 10), Advance::Kept { millis: 10 });
        assert_eq!(
            markers.advance(&target, 11),
            Advance::Moved { dropped: None }
        );
        assert_eq!(markers.get("#RUST"), Some(11));
        assert_eq!(markers.len(), 1);
    }

    #[test]
    fn past_the_bound_the_oldest_marker_goes() {
        let mut markers = ReadMarkers::default();
        for n in 0..MAX_READ_MARKERS as u64 {
            let target = CaselessKey::new(&format!("#c{n}"));
            // #c0 is the newest, #c1 the oldest.
            let millis = if n == 0 { 1_000_000 } else { n };
            markers.advance(&target, millis);
        }
        assert_eq!(markers.len(), MAX_READ_MARKERS);
        let moved = markers.advance(&CaselessKey::new("#new"), 5);
        assert_eq!(
            moved,
            Advance::Moved {
                dropped: Some(CaselessKey::new("#c1"))
            }
        );
        assert_eq!(markers.len(), MAX_READ_MARKERS);
        assert_eq!(markers.get("#c1"), None);
        assert_eq!(markers.get("#new"), Some(5));
        // Moving a target already there drops nothing.
        assert_eq!(
            markers.advance(&CaselessKey::new("#c2"), 7),
            Advance::Moved { dropped: None }
        );
    }

    #[test]
    fn a_list_read_back_keeps_the_newest() {
        let mut list: Vec<_> = (0..MAX_READ_MARKERS as u64 + 3)
            .map(|n| (CaselessKey::new(&format!("#c{n}")), n + 1))
            .collect();
        list.push((CaselessKey::new("#C5"), 2));
        let markers = ReadMarkers::from_list(list);
        assert_eq!(markers.len(), MAX_READ_MARKERS);
        assert_eq!(markers.get("#c0"), None);
        assert_eq!(markers.get("#c2"), None);
        assert_eq!(markers.get("#c3"), Some(4));
        assert_eq!(markers.get("#c5"), Some(6));
    }
}
