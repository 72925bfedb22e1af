//! The cost of changing the network state: applying a JOIN (and the PART that undoes
//! it) to a replica whose channel has 10, 1,000 or 100,000 members. The apply
//! function's work must not grow with the channel (docs/architecture.md invariant 3), so
//! the three figures should be about the same.
//!
//! And the cost of moving it between nodes: encoding and decoding one event, and
//! snapshotting and loading a replica of 10,000 users in 1,000 channels (each user in
//! 10 channels, so 100 members a channel) and loading it on another node; the
//! snapshot's size is printed.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringchat::state::network::{
    decode_event, encode_event, Activity, Event, Layout, Network, Sequenced,
};
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

/// Applies events with consecutive sequence numbers, as the event log does: each to
/// a new version of the replica while the previous version is still held (by the log
/// entry and the shards reading it), so every apply pays for copying the paths it
/// changes, as in the server.
struct Replica {
    network: Arc<Network>,
    held: Option<Arc<Network>>,
    seq: u64,
}

impl Replica {
    fn apply(&mut self, event: Event) {
        self.seq += 1;
        self.held = Some(self.network.clone());
        black_box(Arc::make_mut(&mut self.network).apply(&Sequenced {
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
            address: "127.0.0.1".into(),
            tls: false,
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
        network: Arc::new(Network::new(2)),
        held: None,
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

/// A member of `#big` renamed and renamed back: NICK costs O(channels of the user)
/// and one WHOWAS entry, whatever the size of its channels.
fn nick_change(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply_nick_and_back");
    group.throughput(Throughput::Elements(2));
    for members in [10, 1_000, 100_000] {
        let mut replica = replica(members);
        group.bench_function(format!("{members}_members"), |b| {
            b.iter(|| {
                for nick in ["renamed", "n0"] {
                    replica.apply(Event::ChangeNick {
                        client: client(0),
                        nick: nick.into(),
                    });
                }
            })
        });
    }
    group.finish();
}

fn event_wire(c: &mut Criterion) {
    let event = Event::Part {
        client: client(12_345),
        channel: "#rust-lang".into(),
        reason: Some(b"see you tomorrow".as_slice().into()),
    };
    let bytes = encode_event(&event);
    let mut group = c.benchmark_group("event_wire");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode_part", |b| {
        b.iter(|| encode_event(black_box(&event)))
    });
    group.bench_function("decode_part", |b| {
        b.iter(|| decode_event(black_box(&bytes)).expect("decodes"))
    });
    group.finish();
}

/// 10,000 users, each in 10 of 1,000 channels, some away, on 2 shards.
fn big_replica() -> Replica {
    let mut replica = Replica {
        network: Arc::new(Network::new(2)),
        held: None,
        seq: 0,
    };
    for index in 0..10_000 {
        replica.register(index);
        for k in 0..10 {
            replica.apply(Event::Join {
                client: client(index),
                channel: format!("#channel-{}", (index + k * 100) % 1_000).into(),
                key: None,
                channel_limit: 50,
            });
        }
        if index % 10 == 0 {
            replica.apply(Event::SetAway {
                client: client(index),
                message: Some(b"gone fishing".as_slice().into()),
            });
        }
    }
    replica
}

fn snapshot(c: &mut Criterion) {
    let replica = big_replica();
    let bytes = replica.network.snapshot();
    eprintln!(
        "snapshot of 10,000 users in 1,000 channels (100,000 memberships): {} bytes",
        bytes.len()
    );
    // Loaded as a node joining the cluster would: node 1, whose layout differs.
    let another_node = Layout {
        node: 1,
        shard_count: 2,
    };
    let mut group = c.benchmark_group("snapshot_10k_users_1k_channels");
    group.sample_size(10);
    group.bench_function("snapshot", |b| b.iter(|| replica.network.snapshot()));
    group.bench_function("from_snapshot", |b| {
        b.iter(|| Network::from_snapshot(black_box(&bytes), another_node).expect("loads"))
    });
    group.finish();
}

criterion_group!(benches, join_and_part, nick_change, event_wire, snapshot);
criterion_main!(benches);
