//! The persistent map the network state is built from: one node-wide replica that
//! every shard reads without a lock, each at its own log position.
//!
//! The log's writer applies an event to the newest version and publishes the result
//! as a new version ([`crate::state::log`]); a version is immutable once published,
//! so readers never wait, and two versions share everything the event did not
//! touch. [`imbl::OrdMap`] gives that sharing (a B-tree whose nodes are reference
//! counted: a change copies the path to the changed entry, O(log n)).
//!
//! Cost rule, why values are behind an `Arc`: copying a B-tree node clones every
//! entry in it (up to 64), so an entry must be cheap to clone. [`ArcMap`] keeps each
//! value behind an `Arc`: copying a node is reference-count increments, and changing
//! a value clones that one value ([`Arc::make_mut`]) only while an older version
//! still shares it.

use imbl::OrdMap;
use std::borrow::Borrow;
use std::sync::Arc;

/// An ordered persistent map whose values are shared between versions; see the
/// module comment. Its API is the subset of `HashMap`'s the network state uses.
#[derive(Clone)]
pub struct ArcMap<K: Ord + Clone, V> {
    entries: OrdMap<K, Arc<V>>,
}

impl<K: Ord + Clone, V> Default for ArcMap<K, V> {
    fn default() -> ArcMap<K, V> {
        ArcMap {
            entries: OrdMap::new(),
        }
    }
}

impl<K: Ord + Clone + std::fmt::Debug, V: Clone + std::fmt::Debug> std::fmt::Debug
    for ArcMap<K, V>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Ord + Clone, V: Clone> ArcMap<K, V> {
    /// The value for `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        Q: Ord + ?Sized,
        K: Borrow<Q>,
    {
        self.entries.get(key).map(|value| &**value)
    }

    /// The value for `key`, for changing: in this version only (an older version
    /// that shares it keeps its own, cloned here once).
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        Q: Ord + ?Sized,
        K: Borrow<Q>,
    {
        self.entries.get_mut(key).map(Arc::make_mut)
    }

    /// Whether `key` has a value.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        Q: Ord + ?Sized,
        K: Borrow<Q>,
    {
        self.entries.contains_key(key)
    }

    /// Sets `key`'s value; returns whether it had one.
    pub fn insert(&mut self, key: K, value: V) -> bool {
        self.entries.insert(key, Arc::new(value)).is_some()
    }

    /// `key`'s value for changing, made with `make` first if there is none.
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        Arc::make_mut(self.entries.entry(key).or_insert_with(|| Arc::new(make())))
    }

    /// Removes `key`'s value and returns it (cloned only while another version
    /// shares it).
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        Q: Ord + ?Sized,
        K: Borrow<Q>,
    {
        self.entries
            .remove(key)
            .map(|value| Arc::try_unwrap(value).unwrap_or_else(|shared| (*shared).clone()))
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(key, value)| (key, &**value))
    }

    /// The entries from `first` on, in key order.
    pub fn iter_from(&self, first: &K) -> impl Iterator<Item = (&K, &V)> {
        self.entries
            .range::<_, K>(first..)
            .map(|(key, value)| (key, &**value))
    }

    /// Every value, in key order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.values().map(|value| &**value)
    }

    /// Every key, in key order.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.entries.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_seen_by_its_version_only() {
        let mut first: ArcMap<u32, String> = ArcMap::default();
        first.insert(1, "one".into());
        first.insert(2, "two".into());
        let mut second = first.clone();
        second.get_mut(&1).expect("present").push_str(" changed");
        assert_eq!(second.remove(&2).as_deref(), Some("two"));
        assert_eq!(first.get(&1).map(String::as_str), Some("one"));
        assert_eq!(first.get(&2).map(String::as_str), Some("two"));
        assert_eq!(second.get(&1).map(String::as_str), Some("one changed"));
        assert_eq!((first.len(), second.len()), (2, 1));
    }
}
