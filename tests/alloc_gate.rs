//! Regression gate on the hot path, counted rather than timed: a channel message costs
//! two heap allocations however many members it reaches and however long its text
//! (serialize once into a buffer sized from the line's parts, fan out by reference),
//! on one shard and across shards (the hand-off shares the channel key and travels in
//! a recycled batch).

use ringchat::testing::ShardFixture;
use ringchat::Config;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Counts allocations made by the current thread (tests run on several threads).
struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

const MESSAGES: u64 = 200;

/// Allocations per channel message of `text_len` bytes of text with `members`
/// members spread over `shards`, counting everything from the sender's bytes to
/// every recipient's drained outbox.
fn allocations_per_message(shards: usize, members: usize, text_len: usize) -> f64 {
    let text = "x".repeat(text_len);
    let input = format!("PRIVMSG #gate :{text}\r\n");
    let mut fixture = ShardFixture::new(Config {
        shards,
        flood_rate: 0.0,
        ..Config::loopback()
    });
    let ids: Vec<_> = (0..members)
        .map(|i| fixture.register((i % shards) as u16, &format!("m{i}")))
        .collect();
    for &id in &ids {
        fixture.send(id, "JOIN #gate\r\n");
    }
    let round = |fixture: &mut ShardFixture| {
        fixture.send(ids[0], &input);
        ids[1..]
            .iter()
            .map(|&id| fixture.drain_quietly(id))
            .sum::<usize>()
    };
    for &id in &ids {
        fixture.drain_quietly(id);
    }
    for _ in 0..20 {
        round(&mut fixture);
    }
    let before = allocations();
    let mut delivered_bytes = 0;
    for _ in 0..MESSAGES {
        delivered_bytes += round(&mut fixture);
    }
    let spent = allocations() - before;
    let line_len = format!(":m0!~m0@127.0.0.1 PRIVMSG #gate :{text}\r\n").len();
    assert_eq!(
        delivered_bytes,
        MESSAGES as usize * (members - 1) * line_len,
        "every member got every line"
    );
    spent as f64 / MESSAGES as f64
}

/// The line's buffer, and the shared header `bytes` adds on its first clone.
const PER_MESSAGE: f64 = 2.0;

/// Texts of a typical, a longer and a near-maximal PRIVMSG.
const TEXT_LENGTHS: [usize; 3] = [27, 100, 400];

#[test]
fn a_local_channel_message_allocates_the_same_whatever_the_audience_or_length() {
    for text_len in TEXT_LENGTHS {
        let small = allocations_per_message(1, 10, text_len);
        let large = allocations_per_message(1, 500, text_len);
        assert!(
            small <= PER_MESSAGE,
            "{small} allocations per {text_len}-byte message to 10 members"
        );
        assert_eq!(small, large, "allocations grew with the audience");
    }
}

#[test]
fn a_cross_shard_message_allocates_per_shard_not_per_member() {
    for text_len in TEXT_LENGTHS {
        let small = allocations_per_message(2, 10, text_len);
        let large = allocations_per_message(2, 500, text_len);
        assert!(
            small <= PER_MESSAGE,
            "{small} allocations per {text_len}-byte message over 2 shards"
        );
        assert_eq!(small, large, "allocations grew with the audience");
    }
}
