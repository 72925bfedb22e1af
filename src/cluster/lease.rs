//! The node id lease: one running node per `--node-id` in a cluster.
//!
//! Two nodes with one id would both run on a broken network (each ignores the
//! other's events as its own, a channel message from one never reaches the other,
//! and a killed node's users never quit), so a node holds its id in a JetStream
//! key-value bucket before it serves anyone: key = the id, value = a [`Holder`]
//! (its run, where it runs, when it last renewed).
//!
//! - **Taking it**: no entry (or a deleted one) is taken at once with a create,
//!   which fails if another node created it first. An entry that exists belongs to a
//!   live node unless it goes unrenewed: the starting node watches its revision for
//!   one `--node-timeout` (plus one renewal period); a live holder renews it every
//!   quarter of that, so a change means "in use" and the start is refused, naming
//!   the holder. An unchanged entry is stale (its node was killed) and is taken over
//!   with a compare-and-set update on the revision seen, so of two nodes taking over
//!   at once only one succeeds. Staleness is judged by revisions, never by comparing
//!   clocks across machines. JetStream 2.9 has no per-key TTL, hence the watch.
//! - **Picking one** (no `--node-id`): the lowest id without an entry, created as
//!   above; only when every id has an entry does the node watch them all for one
//!   timeout and take over the lowest stale one.
//! - **Holding it**: a task on the link's runtime renews the entry every quarter
//!   of `--node-timeout`, from the moment it is taken (the snapshot load and the
//!   catch-up may take longer than a timeout), with a compare-and-set update. A
//!   renewal that finds another node's run in the entry means the id was taken over
//!   while this node was cut off (and declared lost): [`LeaseKeeper::is_lost`].
//! - **Giving it back**: a node that shuts down deletes the entry (if still its
//!   own), so its id can be used again at once.
//! - **Handing it on** (a live upgrade): the new process renews the entry for the
//!   old process's run ([`continue_run`]); the old one exits without deleting it.

use anyhow::{anyhow, bail, Context as _};
use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::oneshot;
use tracing::{error, info, warn};

/// Attempts at taking the id when other nodes race for it, before giving up.
const ATTEMPTS: u32 = 3;
/// How long giving the id back may take at shutdown.
const RELEASE_WAIT: Duration = Duration::from_secs(2);

/// What a lease entry holds: who holds the id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Holder {
    /// The holding node's run (its link's start time in Unix microseconds).
    run: u64,
    /// Where it runs: `pid N on HOST`.
    place: String,
    /// When it last renewed, Unix microseconds on its clock (shown, never compared).
    renewed_micros: u64,
}

impl Holder {
    fn encode(&self) -> bytes::Bytes {
        super::wire::encode(self).into()
    }

    /// The holder in an entry; an unreadable one (hostile or from another version)
    /// is shown as such and can still be judged stale by its revision.
    fn decode(bytes: &[u8]) -> Holder {
        postcard::from_bytes(bytes).unwrap_or(Holder {
            run: 0,
            place: "an unknown node".to_owned(),
            renewed_micros: 0,
        })
    }
}

/// The lease taken, and the task that renews it until [`LeaseKeeper::release`].
pub(super) struct LeaseKeeper {
    node: u16,
    lost: Arc<AtomicBool>,
    release: Option<oneshot::Sender<oneshot::Sender<()>>>,
}

impl LeaseKeeper {
    /// Whether another node took the id over (this node was cut off for longer
    /// than the node timeout): this node must stop serving.
    pub(super) fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    /// Stops renewing and deletes the entry if it is still this node's, waiting a
    /// bounded time for it.
    pub(super) async fn release(&mut self) {
        let Some(release) = self.release.take() else {
            return;
        };
        let (done_tx, done_rx) = oneshot::channel();
        if release.send(done_tx).is_ok() {
            let _ = tokio::time::timeout(RELEASE_WAIT, done_rx).await;
        }
        info!(node = self.node, "gave back the node id");
    }
}

/// Which node id a starting node takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wanted {
    /// `--node-id N`: that one, or none.
    Exactly(u16),
    /// No `--node-id`: the lowest id from 0 to `highest` that no live node holds.
    LowestFree { highest: u16 },
}

/// Takes a node id for run `run` as `wanted` says, or says why not (which live node
/// holds it). Spawns the renewal task on the current runtime. Returns the id taken.
pub(super) async fn acquire(
    jetstream: &jetstream::Context,
    bucket: &str,
    wanted: Wanted,
    run: u64,
    node_timeout: Duration,
) -> anyhow::Result<(LeaseKeeper, u16)> {
    let taker = Taker::open(jetstream, bucket, run, node_timeout).await?;
    let (node, revision) = match wanted {
        Wanted::Exactly(node) => (node, taker.take_exactly(node).await?),
        Wanted::LowestFree { highest } => taker.take_lowest_free(highest).await?,
    };
    Ok((taker.keep(node, revision), node))
}

/// A live upgrade's new process goes on holding node id `node` for run `run`,
/// which the old process holds and renews until it exits: the entry must still name
/// that run. The two renew side by side meanwhile (each takes the other's renewal
/// of the same run as its own: see [`keep`]); the old one never gives it back.
pub(super) async fn continue_run(
    jetstream: &jetstream::Context,
    bucket: &str,
    node: u16,
    run: u64,
    node_timeout: Duration,
) -> anyhow::Result<LeaseKeeper> {
    let taker = Taker::open(jetstream, bucket, run, node_timeout).await?;
    for _ in 0..ATTEMPTS {
        let Some(entry) = taker.entry(node).await? else {
            bail!("node id {node} is no longer leased to this node (the entry is gone)");
        };
        let holder = Holder::decode(&entry.value);
        if holder.run != run {
            bail!(
                "node id {node} is now leased to another run ({}, run {})",
                holder.place,
                holder.run
            );
        }
        let renewed = taker
            .store
            .update(node.to_string(), taker.renewed_now(), entry.revision)
            .await;
        match renewed {
            Ok(revision) => return Ok(taker.keep(node, revision)),
            // The old process renewed it in between: read it again.
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
            Err(e) => bail!("cannot renew the lease of node id {node}: {e}"),
        }
    }
    bail!("node id {node}: its lease kept changing while this process took it over")
}

/// A starting node taking an id.
struct Taker {
    store: kv::Store,
    /// This node, as its entry will say.
    holder: Holder,
    node_timeout: Duration,
}

/// How taking one id went.
enum Take {
    /// Taken, at this revision.
    Taken(u64),
    /// Held by a live node (its entry was renewed while watched).
    Held(Holder),
    /// Another node changed the entry between reading and writing it.
    Raced,
}

impl Taker {
    /// Run `run` of a node, about to take an id in `bucket`.
    async fn open(
        jetstream: &jetstream::Context,
        bucket: &str,
        run: u64,
        node_timeout: Duration,
    ) -> anyhow::Result<Taker> {
        Ok(Taker {
            store: open_bucket(jetstream, bucket).await?,
            holder: Holder {
                run,
                place: this_place(),
                renewed_micros: 0,
            },
            node_timeout,
        })
    }

    /// Starts renewing `node`'s entry from `revision` on the current runtime.
    fn keep(self, node: u16, revision: u64) -> LeaseKeeper {
        let lost = Arc::new(AtomicBool::new(false));
        let (release_tx, release_rx) = oneshot::channel();
        tokio::spawn(keep(
            self.store,
            node.to_string(),
            revision,
            self.holder,
            renewal_period(self.node_timeout),
            lost.clone(),
            release_rx,
        ));
        LeaseKeeper {
            node,
            lost,
            release: Some(release_tx),
        }
    }

    /// `--node-id node`: takes it, taking over a stale entry after one node timeout
    /// without a renewal, or refuses naming the live holder.
    async fn take_exactly(&self, node: u16) -> anyhow::Result<u64> {
        for _ in 0..ATTEMPTS {
            let current = self.entry(node).await?;
            let taken = match current {
                Some(entry) => {
                    if let Some(live) = self.renewed_within(node, entry.revision).await? {
                        Take::Held(Holder::decode(&live.value))
                    } else {
                        self.take_over(node, &entry).await?
                    }
                }
                None => self.create(node).await?,
            };
            match taken {
                Take::Taken(revision) => return Ok(revision),
                Take::Held(holder) => bail!(
                    "--node-id {node} is in use by a running node ({}, run {}): node ids must be unique in a cluster",
                    holder.place,
                    holder.run
                ),
                Take::Raced => continue,
            }
        }
        bail!("--node-id {node}: other nodes keep taking this id; node ids must be unique in a cluster")
    }

    /// No `--node-id`: the lowest id without an entry; when every id up to `highest`
    /// has one, the lowest whose entry went one node timeout without a renewal.
    async fn take_lowest_free(&self, highest: u16) -> anyhow::Result<(u16, u64)> {
        for node in 0..=highest {
            if self.entry(node).await?.is_none() {
                if let Take::Taken(revision) = self.create(node).await? {
                    return Ok((node, revision));
                }
            }
        }
        let mut entries = Vec::new();
        for node in 0..=highest {
            if let Some(entry) = self.entry(node).await? {
                entries.push((node, entry));
            }
        }
        tokio::time::sleep(self.node_timeout + renewal_period(self.node_timeout)).await;
        for (node, seen) in entries {
            let unchanged = self
                .entry(node)
                .await?
                .is_some_and(|now| now.revision == seen.revision);
            if unchanged {
                if let Take::Taken(revision) = self.take_over(node, &seen).await? {
                    return Ok((node, revision));
                }
            }
        }
        bail!(
            "no free node id: every id from 0 to {highest} is held by a running node (give one with --node-id, or fewer --shards)"
        )
    }

    /// The lease entry of `node`, `None` when it has none (or a deleted one).
    async fn entry(&self, node: u16) -> anyhow::Result<Option<kv::Entry>> {
        let entry = self
            .store
            .entry(node.to_string())
            .await
            .with_context(|| format!("cannot read the lease of node id {node}"))?;
        Ok(entry.filter(|entry| entry.operation == kv::Operation::Put))
    }

    /// Creates the entry of a free id (a create fails if another node made it first).
    async fn create(&self, node: u16) -> anyhow::Result<Take> {
        match self
            .store
            .create(node.to_string(), self.renewed_now())
            .await
        {
            Ok(revision) => Ok(Take::Taken(revision)),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(Take::Raced),
            Err(e) => Err(anyhow!("cannot take the lease of node id {node}: {e}")),
        }
    }

    /// Replaces a stale entry, if it is still the one seen (compare-and-set).
    async fn take_over(&self, node: u16, stale: &kv::Entry) -> anyhow::Result<Take> {
        match self
            .store
            .update(node.to_string(), self.renewed_now(), stale.revision)
            .await
        {
            Ok(revision) => {
                let stale = Holder::decode(&stale.value);
                info!(node, stale = %stale.place, "took over the node id from a node that stopped renewing it");
                Ok(Take::Taken(revision))
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(Take::Raced),
            Err(e) => Err(anyhow!("cannot take over the lease of node id {node}: {e}")),
        }
    }

    /// Watches the entry of `node` for one node timeout and one renewal period: the
    /// entry if it was renewed past revision `seen` (its holder is alive), `None` if
    /// it stayed as it was.
    async fn renewed_within(&self, node: u16, seen: u64) -> anyhow::Result<Option<kv::Entry>> {
        let window = self.node_timeout + renewal_period(self.node_timeout);
        let poll = renewal_period(self.node_timeout) / 2;
        let deadline = tokio::time::Instant::now() + window;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(poll).await;
            if let Some(entry) = self.entry(node).await? {
                if entry.revision != seen {
                    return Ok(Some(entry));
                }
            }
        }
        Ok(None)
    }

    /// This node's entry, renewed now.
    fn renewed_now(&self) -> bytes::Bytes {
        Holder {
            renewed_micros: unix_micros(),
            ..self.holder.clone()
        }
        .encode()
    }
}

/// The lease bucket, created on first use: one revision per key is enough.
///
/// The bucket's stream is made here with the settings async-nats gives a key-value
/// bucket (`kv_to_stream_config`), not with `create_key_value`: that one first asks
/// for the account's information, whose reply from nats-server 2.9 async-nats 0.51
/// cannot parse.
async fn open_bucket(jetstream: &jetstream::Context, bucket: &str) -> anyhow::Result<kv::Store> {
    let config = jetstream::stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: jetstream::stream::DiscardPolicy::New,
        ..Default::default()
    };
    jetstream
        .get_or_create_stream(config)
        .await
        .map_err(|e| anyhow!("cannot open the node id bucket {bucket}: {e}"))?;
    jetstream
        .get_key_value(bucket)
        .await
        .map_err(|e| anyhow!("cannot open the node id bucket {bucket}: {e}"))
}

/// The renewal task: renews every `period` until released, then deletes the entry
/// if it is still this run's.
async fn keep(
    store: kv::Store,
    key: String,
    mut revision: u64,
    mut holder: Holder,
    period: Duration,
    lost: Arc<AtomicBool>,
    mut release: oneshot::Receiver<oneshot::Sender<()>>,
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Renewals failing in a row (NATS out of reach): warned about once, not per tick.
    let mut failing = false;
    loop {
        tokio::select! {
            done = &mut release => {
                if !lost.load(Ordering::Acquire) {
                    if let Err(e) = store.delete_expect_revision(key.as_str(), Some(revision)).await {
                        warn!(node = %key, error = %e, "could not give the node id back; it is free after the node timeout");
                    }
                }
                if let Ok(done) = done {
                    let _ = done.send(());
                }
                return;
            }
            _ = tick.tick(), if !lost.load(Ordering::Acquire) => {
                holder.renewed_micros = unix_micros();
                let renewal = store.update(key.as_str(), holder.encode(), revision).await;
                if renewal.is_ok() && std::mem::take(&mut failing) {
                    info!(node = %key, "renewing the node id lease again");
                }
                match renewal {
                    Ok(renewed) => revision = renewed,
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                        // A renewal whose acknowledgement was lost still counts: the
                        // entry is ours if it names this run.
                        match store.entry(key.as_str()).await {
                            Ok(Some(entry)) if Holder::decode(&entry.value).run == holder.run => {
                                revision = entry.revision;
                            }
                            Ok(entry) => {
                                let by = entry.map_or_else(|| "nobody".to_owned(), |entry| Holder::decode(&entry.value).place);
                                error!(node = %key, by = %by, "this node's id was taken over while it was cut off from the cluster; stopping");
                                lost.store(true, Ordering::Release);
                            }
                            Err(e) => warn!(node = %key, error = %e, "cannot read the node id lease; retrying"),
                        }
                    }
                    // Out of reach for now: the next tick tries again.
                    Err(e) if !failing => {
                        failing = true;
                        warn!(node = %key, error = %e, "cannot renew the node id lease; retrying");
                    }
                    Err(_) => {}
                }
            }
        }
    }
}

/// How often a holder renews: a quarter of the node timeout (as heartbeats).
fn renewal_period(node_timeout: Duration) -> Duration {
    (node_timeout / 4).max(Duration::from_millis(100))
}

/// `pid N on HOST`, to name this node in another node's refusal.
fn this_place() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "an unknown host".to_owned());
    format!("pid {} on {host}", std::process::id())
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_survives_the_wire_and_garbage_is_an_unknown_node() {
        let holder = Holder {
            run: 7,
            place: "pid 1 on a".to_owned(),
            renewed_micros: 9,
        };
        assert_eq!(Holder::decode(&holder.encode()), holder);
        assert_eq!(Holder::decode(b"\xff\xff\xff").place, "an unknown node");
    }

    #[test]
    fn renewals_come_four_times_per_timeout_but_not_too_often() {
        assert_eq!(
            renewal_period(Duration::from_secs(4)),
            Duration::from_secs(1)
        );
        assert_eq!(
            renewal_period(Duration::from_millis(100)),
            Duration::from_millis(100)
        );
    }
}
