//! The hot path's cost per delivered message, without sockets: parsing a line, fanning
//! a channel message out to N local outboxes, and handing it to another shard.
//! Each benchmark's throughput is in deliveries, so criterion reports deliveries/s.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ringchat::proto::Message;
use ringchat::state::ClientId;
use ringchat::testing::ShardFixture;
use ringchat::Config;
use std::hint::black_box;

fn parse(c: &mut Criterion) {
    let line = b"@+draft/reply=abc :nick!~user@host PRIVMSG #rust :hello there, crab people";
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(1));
    group.bench_function("privmsg_with_tags", |b| {
        b.iter(|| Message::parse(black_box(line)).map(|m| m.params().len()))
    });
    group.finish();
}

/// A channel `#bench` with `members` members spread round-robin over `shards`.
fn channel(shards: usize, members: usize) -> (ShardFixture, Vec<ClientId>) {
    let mut fixture = ShardFixture::new(Config {
        shards,
        flood_rate: 0.0,
        ..Config::loopback()
    });
    let ids: Vec<ClientId> = (0..members)
        .map(|i| fixture.register((i % shards) as u16, &format!("m{i}")))
        .collect();
    for &id in &ids {
        fixture.send(id, "JOIN #bench\r\n");
    }
    for &id in &ids {
        fixture.drain_quietly(id);
    }
    (fixture, ids)
}

fn fan_out(c: &mut Criterion, name: &str, shards: usize) {
    let mut group = c.benchmark_group(name);
    for members in [10, 100, 1000] {
        let (mut fixture, ids) = channel(shards, members);
        group.throughput(Throughput::Elements(members as u64 - 1));
        group.bench_function(format!("{members}_members"), |b| {
            b.iter_batched(
                || (),
                |()| {
                    fixture.send(ids[0], "PRIVMSG #bench :a line of ordinary chat text\r\n");
                    ids[1..]
                        .iter()
                        .map(|&id| fixture.drain_quietly(id))
                        .sum::<usize>()
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn local_fan_out(c: &mut Criterion) {
    fan_out(c, "fan_out_one_shard", 1);
}

fn cross_shard_fan_out(c: &mut Criterion) {
    fan_out(c, "fan_out_two_shards", 2);
}

criterion_group!(benches, parse, local_fan_out, cross_shard_fan_out);
criterion_main!(benches);
