//! The cost of changing the network state: applying a JOIN (and the PART that undoes
//! it) to a replica whose channel has 10, 1,000 or 100,000 members. The apply
//! function's work must not grow with the channel (ARCHITECTURE.md invariant 3), so
//! the three figures should be about the same.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringchat::state::network::{Activity, Event, Network, Sequenced};
use ringchat::state::slab::SlotKey;
use ringchat::state::ClientId;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

fn client(index: u32) -> ClientId {
    ClientId {
        node: 0,
        shard: (index % 2) as u16,
        slot: SlotKey {
            index,
            generation: 0,
        },
    }
}

/// Applies events with consecutive sequence numbers, as a shard applies the log.
struct Replica {
    network: Network,
    seq: u64,
}

impl Replica {
    fn apply(&mut self, event: Event) {
        self.seq += 1;
        black_box(self.network.apply(&Sequenced {
            proposal: 0,
            seq: self.seq,
            origin: 0,
            at_unix: 0,
            event,
        }));
    }

    fn register(&mut self, index: u32) {
        self.apply(Event::ClaimNick {
            client: client(index),
            nick: format!("n{index}").into(),
        });
        self.apply(Event::Register {
            client: client(index),
            user: "~u".into(),
            host: "127.0.0.1".into(),
            realname: "r".into(),
            activity: Arc::new(Activity::new(Instant::now(), 0)),
        });
    }
}

fn join(index: u32) -> Event {
    Event::Join {
        client: client(index),
        channel: "#big".into(),
        key: None,
        channel_limit: 50,
    }
}

/// A replica with a `members`-member `#big` on 2 shards, and one more registered
/// user (the joiner) who is not in it.
fn replica(members: u32) -> Replica {
    let mut replica = Replica {
        network: Network::new(2),
        seq: 0,
    };
    for index in 0..=members {
        replica.register(index);
    }
    for index in 0..members {
        replica.apply(join(index));
    }
    replica
}

fn join_and_part(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply_join_then_part");
    group.throughput(Throughput::Elements(2));
    for members in [10, 1_000, 100_000] {
        let mut replica = replica(members);
        group.bench_function(format!("{members}_members"), |b| {
            b.iter(|| {
                replica.apply(join(members));
                replica.apply(Event::Part {
                    client: client(members),
                    channel: "#big".into(),
                    reason: None,
                });
            })
        });
    }
    group.finish();
}

criterion_group!(benches, join_and_part);
criterion_main!(benches);
