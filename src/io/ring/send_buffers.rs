//! The ring driver's pool of send buffers: the contiguous buffers that several queued
//! lines are copied into for one send (see `sys::Output`).
//!
//! A busy shard has a send in flight to most of its connections at once, so the pool
//! keeps up to [`MOST_SPARE`] buffers to avoid an allocation per send. Buffers nobody
//! took since the last [`SendBuffers::trim`] are freed then, so a shard that went quiet
//! holds none of them a tick later (idle connections cost no send buffer either way).

/// Most spare buffers kept: more than the connections a shard usually writes to in
/// one turn of a fan-out.
const MOST_SPARE: usize = 1024;
/// A buffer grown past this (a big batch of long lines) is freed, not kept. Room for
/// a full send: 64 KiB of lines, or their TLS records (a few dozen bytes more each).
const LARGEST_KEPT: usize = 68 << 10;

/// Spare send buffers, all empty.
#[derive(Default)]
pub struct SendBuffers {
    spare: Vec<Vec<u8>>,
    /// The fewest spare buffers there were since the last trim: that many were not
    /// needed.
    unused: usize,
}

impl SendBuffers {
    /// An empty buffer with room for at least `len` bytes.
    pub fn take(&mut self, len: usize) -> Vec<u8> {
        let mut buffer = self.spare.pop().unwrap_or_default();
        self.unused = self.unused.min(self.spare.len());
        buffer.reserve(len);
        buffer
    }

    /// Takes back a buffer whose bytes are all written.
    pub fn give_back(&mut self, mut buffer: Vec<u8>) {
        if buffer.capacity() > 0
            && buffer.capacity() <= LARGEST_KEPT
            && self.spare.len() < MOST_SPARE
        {
            buffer.clear();
            self.spare.push(buffer);
        }
    }

    /// Frees the buffers that were not taken since the last trim (the oldest ones: the
    /// pool hands out the most recently returned first).
    pub fn trim(&mut self) {
        let unused = self.unused.min(self.spare.len());
        self.spare.drain(..unused);
        self.unused = self.spare.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_not_taken_between_two_trims_are_freed() {
        let mut pool = SendBuffers::default();
        let buffers: Vec<Vec<u8>> = (0..3).map(|_| pool.take(100)).collect();
        assert!(buffers.iter().all(|buffer| buffer.capacity() >= 100));
        for buffer in buffers {
            pool.give_back(buffer);
        }
        pool.trim();
        assert_eq!(
            pool.spare.len(),
            3,
            "all three were in use during the interval"
        );
        let busy = pool.take(10);
        pool.give_back(busy);
        pool.trim();
        assert_eq!(
            pool.spare.len(),
            1,
            "two were never taken since the last trim"
        );
        pool.trim();
        assert!(pool.spare.is_empty());
    }

    #[test]
    fn oversized_buffers_are_not_kept() {
        let mut pool = SendBuffers::default();
        pool.give_back(Vec::with_capacity(LARGEST_KEPT + 1));
        pool.give_back(Vec::new());
        assert!(pool.spare.is_empty());
    }
}
