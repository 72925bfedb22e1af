//! Batching, counted rather than timed: on a fixed fan-out, each driver carries many
//! lines per write. The io_uring driver submits one SQE per read or writev (the
//! runtime then enters the kernel at most once per tick for all of them), so fewer
//! submissions than deliveries means syscalls per delivered message tend to 0. The
//! ring driver counts its enters too.

mod common;

use common::{join_all, Client, Setup};
use ringchat::state::shared::CounterSnapshot;
use ringchat::IoMode;

const MEMBERS: usize = 50;
const MESSAGES: usize = 200;

/// Runs the fan-out and returns the server's counters once they show every delivery.
fn fan_out(io: IoMode) -> CounterSnapshot {
    let server = Setup { io, shards: 1 }.start_with(|c| c.flood_rate = 0.0);
    let mut members: Vec<Client> = (0..MEMBERS)
        .map(|i| server.register(&format!("m{i}")))
        .collect();
    join_all("#batch", &mut members.iter_mut().collect::<Vec<_>>());
    let before = fresh_totals(&server, &mut members[1]);

    let burst: String = (0..MESSAGES)
        .map(|i| format!("PRIVMSG #batch :{i}\r\n"))
        .collect();
    members[0].send_raw(burst.as_bytes());
    for member in members.iter_mut().skip(1) {
        member.skip_until(|line| line.ends_with(&format!(" :{}", MESSAGES - 1)));
    }
    let after = fresh_totals(&server, &mut members[1]);
    CounterSnapshot {
        deliveries: after.deliveries - before.deliveries,
        writes: after.writes - before.writes,
        reads: after.reads - before.reads,
        enters: after.enters - before.enters,
        ..CounterSnapshot::default()
    }
}

/// The server's totals, made current by a `STATS S` round trip (with one shard, the
/// shard answering publishes everything); the STATS reply itself is 2 deliveries.
fn fresh_totals(server: &common::TestServer, asker: &mut Client) -> CounterSnapshot {
    asker.send("STATS S");
    asker.skip_until(|line| common::has_numeric(line, "219"));
    server
        .server()
        .shard_counters()
        .into_iter()
        .fold(CounterSnapshot::default(), CounterSnapshot::plus)
}

fn assert_batched(io: IoMode) -> CounterSnapshot {
    let counts = fan_out(io);
    let stats_reply = 2;
    assert_eq!(
        counts.deliveries,
        ((MEMBERS - 1) * MESSAGES) as u64 + stats_reply
    );
    let submissions = counts.reads + counts.writes;
    println!(
        "{io:?}: {} deliveries, {} reads, {} writes, {} enters",
        counts.deliveries, counts.reads, counts.writes, counts.enters
    );
    assert!(
        submissions * 4 < counts.deliveries,
        "{io:?}: {submissions} reads+writes for {} deliveries",
        counts.deliveries
    );
    counts
}

#[test]
fn io_uring_submits_far_fewer_operations_than_deliveries() {
    assert_batched(IoMode::Uring);
}

/// The ring driver also counts its `io_uring_enter` calls: one per loop turn (plus
/// one per full submission queue), each carrying every operation of the turn.
#[test]
fn the_ring_driver_submits_far_fewer_operations_and_enters_than_deliveries() {
    let counts = assert_batched(IoMode::Ring);
    assert!(
        counts.enters > 0 && counts.enters * 4 < counts.deliveries,
        "{} enters for {} deliveries",
        counts.enters,
        counts.deliveries
    );
}

#[test]
fn epoll_issues_far_fewer_write_syscalls_than_deliveries() {
    assert_batched(IoMode::Epoll);
}
