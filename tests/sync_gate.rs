//! Regression gate on cross-core synchronization, counted rather than timed: a channel
//! message takes no lock on network state (it reads the sending shard's own replica;
//! the event log's append, the only lock on network state, is never taken), and the
//! messages of one scheduler pass reach another shard in one hand-off batch, however
//! many messages and members there are.

use ringchat::state::shared::CounterSnapshot;
use ringchat::state::ClientId;
use ringchat::testing::ShardFixture;
use ringchat::Config;

const MEMBERS: usize = 1_000;
const MESSAGES: usize = 100;

/// A 1,000-member channel spread over two shards, everyone's outbox drained.
fn big_channel() -> (ShardFixture, Vec<ClientId>) {
    let mut fixture = ShardFixture::new(Config {
        shards: 2,
        flood_rate: 0.0,
        ..Config::loopback()
    });
    let ids: Vec<ClientId> = (0..MEMBERS)
        .map(|i| fixture.register((i % 2) as u16, &format!("m{i}")))
        .collect();
    for &id in &ids {
        fixture.send(id, "JOIN #big\r\n");
    }
    for &id in &ids {
        fixture.drain_quietly(id);
    }
    (fixture, ids)
}

/// Every shard's counters, made current.
fn counters(fixture: &mut ShardFixture) -> Vec<CounterSnapshot> {
    for shard in fixture.shards.iter_mut() {
        shard.publish_counters();
    }
    fixture
        .shared
        .counters
        .iter()
        .map(|c| c.snapshot())
        .collect()
}

#[test]
fn a_pass_of_channel_messages_takes_no_state_lock_and_one_handoff_per_shard() {
    let (mut fixture, ids) = big_channel();
    let before = counters(&mut fixture);
    let burst: String = (0..MESSAGES)
        .map(|i| format!("PRIVMSG #big :message {i}\r\n"))
        .collect();
    // One read's worth of input, handled in one pass, then one exchange.
    fixture.send(ids[0], &burst);
    let after = counters(&mut fixture);

    let proposed: u64 = (0..2)
        .map(|s| after[s].events_proposed - before[s].events_proposed)
        .sum();
    assert_eq!(
        proposed, 0,
        "a channel message appends nothing to the event log"
    );
    assert_eq!(
        after[0].handoff_batches - before[0].handoff_batches,
        1,
        "{MESSAGES} messages, one hand-off batch to the other shard"
    );
    assert_eq!(after[1].handoff_batches, before[1].handoff_batches);

    let deliveries: u64 = (0..2)
        .map(|s| after[s].deliveries - before[s].deliveries)
        .sum();
    assert_eq!(deliveries, ((MEMBERS - 1) * MESSAGES) as u64);
    let last = format!(" :message {}", MESSAGES - 1);
    for &id in &ids[1..] {
        let lines = fixture.drain_text(id);
        assert_eq!(lines.len(), MESSAGES, "{id:?} got every message");
        assert!(lines[MESSAGES - 1].ends_with(&last), "in order");
    }
}

#[test]
fn a_join_is_one_event_applied_once_by_every_shard() {
    let (mut fixture, _) = big_channel();
    let before = counters(&mut fixture);
    let newcomer = fixture.register(1, "newcomer");
    fixture.send(newcomer, "JOIN #big\r\n");
    let after = counters(&mut fixture);
    let proposed: u64 = (0..2)
        .map(|s| after[s].events_proposed - before[s].events_proposed)
        .sum();
    assert_eq!(proposed, 3, "claim the nick, register, join");
    for shard in 0..2 {
        assert_eq!(
            after[shard].events_applied - before[shard].events_applied,
            3,
            "shard {shard} applied each event once"
        );
    }
}

#[test]
fn a_shard_that_owes_too_many_handoffs_stops_reading_input_until_they_drain() {
    use ringchat::state::bus::MAX_PENDING_HANDOFFS;
    let mut fixture = ShardFixture::new(Config {
        shards: 2,
        flood_rate: 0.0,
        recvq: 64 << 20,
        sendq: 64 << 20,
        ..Config::loopback()
    });
    let sender = fixture.register(0, "sender");
    let listener = fixture.register(1, "listener");
    fixture.send(sender, "JOIN #pair\r\n");
    fixture.send(listener, "JOIN #pair\r\n");
    fixture.drain(listener);
    // Shard 1 never runs meanwhile: shard 0's hand-offs pile up (its flusher would
    // send them, but the link's receiver does not take them).
    let lines = MAX_PENDING_HANDOFFS + 1_000;
    let burst = "PRIVMSG #pair :x\r\n".repeat(lines);
    let now = fixture.now;
    fixture.shards[0].receive(sender, burst.as_bytes(), now);
    assert!(
        fixture.shards[0]
            .client(sender)
            .is_some_and(|c| c.throttled),
        "the sender's input waits"
    );
    assert!(fixture.shards[0].has_outgoing());
    // Once the other shard catches up, everything arrives, in order, nothing lost.
    for _ in 0..100 {
        fixture.advance(std::time::Duration::from_millis(50));
        if !fixture.shards[0]
            .client(sender)
            .is_some_and(|c| c.throttled || !c.input.is_empty())
        {
            break;
        }
    }
    let received = fixture.drain_text(listener);
    assert_eq!(received.len(), lines, "every message, none dropped");
}
