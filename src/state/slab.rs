//! A slab of values addressed by index and generation, so that a stale handle (a
//! connection that has gone, its slot reused) finds nothing instead of a stranger.

/// A handle to a slab entry: the slot and the generation it was issued for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct SlotKey {
    /// Index into the slab's slots.
    pub index: u32,
    /// Bumped each time the slot is freed.
    pub generation: u32,
}

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

/// Values addressed by [`SlotKey`]; freed slots are reused, newest freed first.
pub struct Slab<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    /// Stores the value built by `make` from its future key.
    pub fn insert_with(&mut self, make: impl FnOnce(SlotKey) -> T) -> SlotKey {
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    value: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        let key = SlotKey {
            index,
            generation: slot.generation,
        };
        slot.value = Some(make(key));
        self.len += 1;
        key
    }

    /// A slab holding `entries` at exactly their keys (a live upgrade's clients keep
    /// the ids the rest of the network knows them by); the slots between are free.
    /// Keys must be distinct.
    pub fn from_entries(entries: Vec<(SlotKey, T)>) -> Slab<T> {
        let slots_needed = entries
            .iter()
            .map(|(key, _)| key.index as usize + 1)
            .max()
            .unwrap_or(0);
        let mut slots: Vec<Slot<T>> = (0..slots_needed)
            .map(|_| Slot {
                generation: 0,
                value: None,
            })
            .collect();
        let len = entries.len();
        for (key, value) in entries {
            let slot = &mut slots[key.index as usize];
            slot.generation = key.generation;
            slot.value = Some(value);
        }
        let free = (0..slots_needed as u32)
            .rev()
            .filter(|&index| slots[index as usize].value.is_none())
            .collect();
        Slab { slots, free, len }
    }

    /// The value for `key`, if it is still the one the key was issued for.
    pub fn get(&self, key: SlotKey) -> Option<&T> {
        let slot = self.slots.get(key.index as usize)?;
        (slot.generation == key.generation)
            .then_some(slot.value.as_ref())
            .flatten()
    }

    /// Mutable access; see [`Slab::get`].
    pub fn get_mut(&mut self, key: SlotKey) -> Option<&mut T> {
        let slot = self.slots.get_mut(key.index as usize)?;
        (slot.generation == key.generation)
            .then_some(slot.value.as_mut())
            .flatten()
    }

    /// Removes and returns the value; the key (and every copy of it) goes stale.
    pub fn remove(&mut self, key: SlotKey) -> Option<T> {
        let slot = self.slots.get_mut(key.index as usize)?;
        if slot.generation != key.generation {
            return None;
        }
        let value = slot.value.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(key.index);
        self.len -= 1;
        Some(value)
    }

    /// How many values are stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no values are stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every stored value.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.slots.iter_mut().filter_map(|slot| slot.value.as_mut())
    }

    /// Every stored value with its key.
    pub fn iter_keyed(&self) -> impl Iterator<Item = (SlotKey, &T)> {
        self.slots.iter().enumerate().filter_map(|(index, slot)| {
            let key = SlotKey {
                index: index as u32,
                generation: slot.generation,
            };
            slot.value.as_ref().map(|value| (key, value))
        })
    }

    /// Every stored value.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().filter_map(|slot| slot.value.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_key_finds_nothing_after_its_slot_is_reused() {
        let mut slab = Slab::default();
        let first = slab.insert_with(|_| "first");
        assert_eq!(slab.remove(first), Some("first"));
        let second = slab.insert_with(|_| "second");
        assert_eq!(second.index, first.index);
        assert_eq!(slab.get(first), None);
        assert_eq!(slab.get(second), Some(&"second"));
        assert_eq!(slab.remove(first), None);
        assert_eq!(slab.len(), 1);
    }
}
