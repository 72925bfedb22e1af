//! The cluster link: one thread per node, with its own single-threaded tokio runtime
//! and one NATS connection, that sits on the bus as one more endpoint after the
//! shards. It is the only part of a node that talks to NATS.
//!
//! What it does, in its loop:
//! - publishes the shards' proposals to the stream, and appends every stream entry
//!   (this node's and others', in the stream's order) to the node's event log, where
//!   the shards apply it exactly as alone;
//! - publishes the shards' cross-node messages to the nodes with recipients (a
//!   channel message kept in history: to every live node), and forwards other nodes'
//!   messages to local shards as hand-offs ([`super::order`] keeps both in each
//!   sender's order), after handing those kept in history to the node's store;
//! - writes the node's replica (its newest version) to the object store as snapshots
//!   every `snapshot_every` events;
//! - sends heartbeats and declares nodes lost that stop sending them;
//! - tells the shards, and through them the users, when NATS is out of reach.

use super::lease::{self, LeaseKeeper};
use super::order::Reorder;
use super::wire::{self, EventEnvelope, Kept, MessageBody, MessageHeader, Received, Subjects};
use crate::config::ClusterConfig;
use crate::proto::CaselessKey;
use crate::state::bus::{Batch, Handoff, Links, Stamped};
use crate::state::handover::LinkCapture;
use crate::state::network::wire::{decode_event, encode_event};
use crate::state::network::{Event, Layout, Network, ShardSet};
use crate::state::Shared;
use crate::store::history::{self, Kind, Record, Retention, Target};
use anyhow::{anyhow, bail, Context as _};
use async_nats::jetstream::{self, consumer, object_store, stream};
use futures_util::{FutureExt, StreamExt};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

/// The snapshot object's name in the bucket.
const SNAPSHOT_OBJECT: &str = "latest";
/// How long an event waits for messages its node sent before it, before they are
/// given up as lost (core NATS is at-most-once).
const MESSAGE_WAIT: Duration = Duration::from_secs(2);
/// How long a tick waits for the stream's figures: well under the 2 s in which a
/// lost connection must be noticed by users.
const STREAM_INFO_WAIT: Duration = Duration::from_millis(500);
/// How long a leaving node waits for its `NodeLost` to be stored.
const LEAVE_WAIT: Duration = Duration::from_secs(2);
/// Stream entries kept, in snapshot intervals: a node that loads the latest
/// snapshot finds every entry after it while fewer than this many intervals passed.
const RETAINED_INTERVALS: u64 = 10;
/// Ticks (a quarter of the node timeout each) the stream may hold entries this node
/// has not received before its consumer is created again.
const STALLED_TICKS: u32 = 3;
/// Most messages from other nodes taken in one turn of the link's loop when more
/// are already waiting: their history records go to the store as one job.
const MESSAGES_PER_TURN: usize = 64;
/// Bounds the cluster connection's wait for an unreachable server at start.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the connection opened at start: the NATS handles, the node id's lease and
/// the state to start from.
pub(super) struct Opened {
    /// This run of the node (see [`EventEnvelope::incarnation`]), as its lease names it.
    run: u64,
    lease: LeaseKeeper,
    /// The node's number, as leased.
    pub node: u16,
    client: async_nats::Client,
    jetstream: jetstream::Context,
    stream: stream::Stream,
    snapshots: object_store::ObjectStore,
    connection_events: mpsc::UnboundedReceiver<async_nats::Event>,
    /// The replica to start from (the latest snapshot, or empty).
    pub network: Network,
    /// A live upgrade: the old process's link, where it stopped.
    continued: Option<LinkCapture>,
    /// A live upgrade: this node's subscriptions, made before the old process
    /// stopped taking messages.
    subscriptions: Option<Subscriptions>,
}

/// The NATS connection and the event stream, before the node has an id.
pub(super) struct Connected {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    stream: stream::Stream,
    connection_events: mpsc::UnboundedReceiver<async_nats::Event>,
    subjects: Subjects,
}

/// A node's subscriptions: messages to its users, and every node's heartbeats.
pub(super) struct Subscriptions {
    messages: async_nats::Subscriber,
    heartbeats: async_nats::Subscriber,
}

impl Subscriptions {
    async fn make(
        client: &async_nats::Client,
        subjects: &Subjects,
        node: u16,
    ) -> anyhow::Result<Subscriptions> {
        let messages = client.subscribe(subjects.node(node)).await?;
        let heartbeats = client.subscribe(subjects.heartbeat.clone()).await?;
        Ok(Subscriptions {
            messages,
            heartbeats,
        })
    }
}

impl Connected {
    /// Subscribes as node `node`. Messages wait in the subscriptions until the link
    /// runs: a live upgrade's new process subscribes before the old process stops
    /// taking messages, so none falls between the two (the repeats are dropped by
    /// their numbers, [`Reorder::resumed`]).
    pub(super) async fn subscribe(&self, node: u16) -> anyhow::Result<Subscriptions> {
        Subscriptions::make(&self.client, &self.subjects, node).await
    }

    /// A live upgrade's new process goes on as the old process's run of the node:
    /// its lease (which must still name that run), its numbering, and its replica
    /// (`network`, handed over, at the stream position the link had reached).
    pub(super) async fn continue_run(
        self,
        cluster: &ClusterConfig,
        subscriptions: Subscriptions,
        capture: LinkCapture,
        network: Network,
    ) -> anyhow::Result<Opened> {
        if network.applied() != capture.appended {
            bail!(
                "the handed-over replica is at stream entry {} and the link at {}",
                network.applied(),
                capture.appended
            );
        }
        let lease = lease::continue_run(
            &self.jetstream,
            &self.subjects.node_ids,
            capture.node,
            capture.run,
            cluster.node_timeout,
        )
        .await?;
        let snapshots = open_snapshots(&self.jetstream, &self.subjects).await?;
        Ok(Opened {
            run: capture.run,
            lease,
            node: capture.node,
            client: self.client,
            jetstream: self.jetstream,
            stream: self.stream,
            snapshots,
            connection_events: self.connection_events,
            network,
            continued: Some(capture),
            subscriptions: Some(subscriptions),
        })
    }
}

/// Connects to the cluster's NATS servers and makes sure the event stream exists.
pub(super) async fn connect(
    cluster: &ClusterConfig,
    network_name: &str,
) -> anyhow::Result<Connected> {
    let subjects = Subjects::for_network(network_name);
    let (events_tx, connection_events) = mpsc::unbounded_channel();
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("ringchat {network_name} node"))
        .connection_timeout(CONNECT_TIMEOUT)
        .max_reconnects(None)
        .event_callback(move |event| {
            let events_tx = events_tx.clone();
            async move {
                let _ = events_tx.send(event);
            }
        });
    if let Some(path) = &cluster.credentials {
        options = options
            .credentials_file(path)
            .await
            .with_context(|| format!("cannot read cluster credentials {}", path.display()))?;
    }
    if let Some(ca) = &cluster.ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    let servers = cluster.servers.join(",");
    let client = options
        .connect(cluster.servers.as_slice())
        .await
        .with_context(|| format!("cannot reach the cluster at {servers}"))?;
    let jetstream = jetstream::new(client.clone());
    let retained = cluster.snapshot_every.saturating_mul(RETAINED_INTERVALS);
    let config = stream::Config {
        name: subjects.stream.clone(),
        subjects: vec![subjects.events.clone()],
        max_messages: i64::try_from(retained).unwrap_or(i64::MAX),
        ..Default::default()
    };
    // Two nodes starting at once on a fresh server both find no stream and both
    // create it; the second creation fails ("subjects overlap"), and the stream is
    // there to be opened.
    let stream = match jetstream.get_or_create_stream(config.clone()).await {
        Ok(stream) => Ok(stream),
        Err(_) => jetstream.get_or_create_stream(config).await,
    }
    .map_err(|e| {
        anyhow!(
            "cannot open the event stream {} at {servers}: {e} (is JetStream enabled?)",
            subjects.stream
        )
    })?;
    Ok(Connected {
        client,
        jetstream,
        stream,
        connection_events,
        subjects,
    })
}

/// The snapshot bucket, created on first use.
async fn open_snapshots(
    jetstream: &jetstream::Context,
    subjects: &Subjects,
) -> anyhow::Result<object_store::ObjectStore> {
    match jetstream.get_object_store(&subjects.snapshots).await {
        Ok(store) => Ok(store),
        Err(_) => jetstream
            .create_object_store(object_store::Config {
                bucket: subjects.snapshots.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| {
                anyhow!(
                    "cannot open the snapshot bucket {}: {e}",
                    subjects.snapshots
                )
            }),
    }
}

/// Connects to the cluster's NATS servers, makes sure its stream and snapshot bucket
/// exist, takes the node id's lease (the configured id, or the lowest free one; or
/// refuses: another live node holds it), and loads the latest snapshot for a node
/// with `shard_count` shards. Errors say which step failed and where.
pub(super) async fn open(
    cluster: &ClusterConfig,
    network_name: &str,
    shard_count: u16,
    server_bans: Vec<crate::state::network::ServerBan>,
) -> anyhow::Result<Opened> {
    let Connected {
        client,
        jetstream,
        stream,
        connection_events,
        subjects,
    } = connect(cluster, network_name).await?;
    let run = unix_micros();
    let wanted = if cluster.pick_node_id {
        // Shards and node numbers share the places of a channel's member set.
        let highest = Layout::MAX_PLACES.saturating_sub(usize::from(shard_count) + 1);
        lease::Wanted::LowestFree {
            highest: u16::try_from(highest).unwrap_or(u16::MAX),
        }
    } else {
        lease::Wanted::Exactly(cluster.node)
    };
    let (lease, node) = lease::acquire(
        &jetstream,
        &subjects.node_ids,
        wanted,
        run,
        cluster.node_timeout,
    )
    .await?;
    if cluster.pick_node_id {
        info!(node, "took the lowest free node id");
    }
    let layout = Layout { node, shard_count };
    let snapshots = open_snapshots(&jetstream, &subjects).await?;
    let network = match load_snapshot(&snapshots, layout).await? {
        Some(network) => {
            info!(
                applied = network.applied(),
                users = network.user_count(),
                "loaded the cluster's snapshot"
            );
            network
        }
        None => Network::with_server_bans(layout, server_bans),
    };
    Ok(Opened {
        run,
        lease,
        node,
        client,
        jetstream,
        stream,
        snapshots,
        connection_events,
        network,
        continued: None,
        subscriptions: None,
    })
}

/// The latest snapshot, if one was written.
async fn load_snapshot(
    store: &object_store::ObjectStore,
    layout: Layout,
) -> anyhow::Result<Option<Network>> {
    let mut object = match store.get(SNAPSHOT_OBJECT).await {
        Ok(object) => object,
        Err(e) if e.kind() == object_store::GetErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(anyhow!("cannot read the cluster's snapshot: {e}")),
    };
    let mut bytes = Vec::new();
    object
        .read_to_end(&mut bytes)
        .await
        .context("cannot read the cluster's snapshot")?;
    let network = Network::from_snapshot(&bytes, layout)
        .map_err(|e| anyhow!("the cluster's snapshot cannot be loaded: {e}"))?;
    Ok(Some(network))
}

/// Runs the link until the node has shut down. `ready` is told once this node has
/// caught up with the stream (and quit any users a previous run of it left), or
/// why it could not.
pub(super) async fn run(
    opened: Opened,
    cluster: ClusterConfig,
    shared: Arc<Shared>,
    ready: std::sync::mpsc::Sender<anyhow::Result<()>>,
) {
    let mut link = match Link::new(opened, cluster, shared).await {
        Ok(link) => link,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    link.run(ready).await;
}

/// Takes the NATS client's connection events first, in a task of their own on the
/// link's runtime: a loss marks the cluster unreachable at once, so shards refuse
/// changes (and stop waiting for one in flight) even while the link's loop is busy
/// in a request that the loss will make time out. Every event then goes on to the
/// loop, which tells users and logs.
fn watch_connection(
    mut events: mpsc::UnboundedReceiver<async_nats::Event>,
    shared: Arc<Shared>,
) -> mpsc::UnboundedReceiver<async_nats::Event> {
    let (forward, forwarded) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if matches!(event, async_nats::Event::Disconnected) {
                if let Some(cluster) = &shared.cluster {
                    cluster.set_connected(false);
                    cluster.wake_waiters();
                }
            }
            if forward.send(event).is_err() {
                return;
            }
        }
    });
    forwarded
}

/// A publication's result: the proposing shard, its proposal number, and why it
/// failed if it did.
type Ack = (u16, u64, Option<String>);

/// The link's state; see the module comment.
struct Link {
    shared: Arc<Shared>,
    cluster: ClusterConfig,
    node: u16,
    /// This run of the node (see [`EventEnvelope::incarnation`]).
    incarnation: u64,
    /// The node id's lease, renewed in the background; given back at leave.
    lease: LeaseKeeper,
    endpoint: u16,
    shards: u16,
    subjects: Subjects,
    client: async_nats::Client,
    jetstream: jetstream::Context,
    stream: stream::Stream,
    snapshots: object_store::ObjectStore,
    connection_events: mpsc::UnboundedReceiver<async_nats::Event>,
    /// The loss of the connection has been announced (log, users) and its return
    /// not yet.
    down: bool,
    /// The last NATS client error logged, and how many times it came since: a
    /// repeat is counted, not logged, until another error or the reconnection.
    last_error: Option<(String, u32)>,
    /// This endpoint's links to and from every shard.
    links: Links,
    /// Hand-offs owed to each shard.
    outgoing: Vec<Batch>,
    /// Other nodes' messages to keep in this node's history, gathered over a turn;
    /// handed to the store as one job before any hand-off reaches a shard (so a
    /// member who saw one finds it in history), and empty after.
    history: Vec<Record>,
    /// Hand-offs received from each shard, not yet handled.
    inbound: Vec<Batch>,
    /// The last stream entry appended to the node's log.
    appended: u64,
    /// Messages published to each node (indexed by node number).
    sent_to: Vec<u64>,
    /// Each node's message subject, by node number (see [`Link::node_subject`]).
    node_subjects: Vec<async_nats::Subject>,
    /// Cross-node ordering; see [`super::order`].
    reorder: Reorder,
    /// An event waiting for messages its node sent before it, and since when.
    held: Option<(u64, EventEnvelope, Event, Instant)>,
    /// This node's proposals not yet back from the stream, by (shard, proposal): the
    /// entry appended is the original (it holds the local activity clock).
    pending: HashMap<(u16, u64), Event>,
    /// Results of event publications: (shard, proposal, error if it failed).
    acks: (mpsc::UnboundedSender<Ack>, mpsc::UnboundedReceiver<Ack>),
    /// When each other node was last heard from (heartbeat or event).
    last_heard: HashMap<u16, Instant>,
    /// Nodes this node has declared lost, until they are heard from again.
    declared_lost: Vec<u16>,
    /// Events appended since the last snapshot.
    since_snapshot: u64,
    /// A snapshot upload is in flight.
    snapshotting: Arc<std::sync::atomic::AtomicBool>,
    /// Apply lag of other nodes' events, in microseconds.
    lag: hdrhistogram::Histogram<u64>,
    /// The event consumer must be created again (reconnected, or stalled).
    resume_consumer: bool,
    /// `appended` at the last tick, and for how many ticks the stream has held
    /// entries beyond it without any arriving.
    stalled: (u64, u32),
    /// This run goes on from an upgraded process: its users are live, not left over.
    continuing: bool,
    /// Subscriptions made before the link ran (a live upgrade's new process).
    subscriptions: Option<Subscriptions>,
    /// Settled for a live upgrade ([`Link::settle_for_upgrade`]): takes in nothing
    /// until the freeze ends.
    sealed: bool,
}

impl Link {
    async fn new(
        opened: Opened,
        cluster: ClusterConfig,
        shared: Arc<Shared>,
    ) -> anyhow::Result<Link> {
        let state = shared
            .cluster
            .as_ref()
            .ok_or_else(|| anyhow!("the cluster link needs a cluster node's shared state"))?;
        let (node, endpoint) = (state.node, state.endpoint);
        let links = shared
            .bus
            .take_links(endpoint)
            .ok_or_else(|| anyhow!("the cluster link's bus endpoint was taken"))?;
        let shards = shared.config.shards as u16;
        let endpoints = usize::from(shards) + 1;
        let continuing = opened.continued.is_some();
        let (sent_to, reorder) = match opened.continued {
            Some(capture) => (
                capture.sent_to,
                Reorder::resumed(capture.arrived, capture.lost),
            ),
            None => (Vec::new(), Reorder::default()),
        };
        Ok(Link {
            subjects: Subjects::for_network(&shared.config.network),
            node,
            incarnation: opened.run,
            lease: opened.lease,
            endpoint,
            shards,
            client: opened.client,
            jetstream: opened.jetstream,
            stream: opened.stream,
            snapshots: opened.snapshots,
            connection_events: watch_connection(opened.connection_events, shared.clone()),
            down: false,
            last_error: None,
            links,
            outgoing: (0..endpoints).map(|_| Batch::new()).collect(),
            history: Vec::new(),
            inbound: (0..endpoints).map(|_| Batch::new()).collect(),
            appended: opened.network.applied(),
            sent_to,
            node_subjects: Vec::new(),
            reorder,
            held: None,
            pending: HashMap::new(),
            acks: mpsc::unbounded_channel(),
            last_heard: HashMap::new(),
            declared_lost: Vec::new(),
            since_snapshot: 0,
            snapshotting: Arc::default(),
            lag: hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 2)
                .map_err(|e| anyhow!("lag histogram: {e}"))?,
            resume_consumer: false,
            stalled: (0, 0),
            continuing,
            subscriptions: opened.subscriptions,
            sealed: false,
            cluster,
            shared,
        })
    }

    fn state(&self) -> &crate::state::cluster::ClusterState {
        self.shared
            .cluster
            .as_ref()
            .expect("a link exists only on a cluster node")
    }

    async fn run(&mut self, ready: std::sync::mpsc::Sender<anyhow::Result<()>>) {
        let mut ready = Some(ready);
        let subscriptions = match self.subscriptions.take() {
            Some(made) => Ok(made),
            None => Subscriptions::make(&self.client, &self.subjects, self.node).await,
        };
        let (mut messages, mut heartbeats) = match subscriptions {
            Ok(subscriptions) => (subscriptions.messages, subscriptions.heartbeats),
            Err(e) => {
                report(
                    &mut ready,
                    Err(anyhow!("cannot subscribe to the cluster: {e}")),
                );
                return;
            }
        };
        let target = match self.stream.info().await {
            Ok(info) => info.state.last_sequence,
            Err(e) => {
                report(
                    &mut ready,
                    Err(anyhow!("cannot read the event stream: {e}")),
                );
                return;
            }
        };
        let mut events = match self.consume_from(self.appended + 1).await {
            Ok(events) => events,
            Err(e) => {
                report(&mut ready, Err(e));
                return;
            }
        };
        // Nodes that hold users start as just heard from: a node that died while
        // this one was down is then declared lost after one timeout.
        let now = Instant::now();
        for node in self.shared.log.latest().nodes() {
            if node != self.node {
                self.last_heard.insert(node, now);
            }
        }
        self.share_live_nodes();
        let mut restarted_quit_sent = false;
        let beat = (self.cluster.node_timeout / 4).max(Duration::from_millis(100));
        let mut tick = tokio::time::interval(beat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut leaving_since: Option<Instant> = None;
        loop {
            if ready.is_some() && self.appended >= target && self.held.is_none() {
                let left_over =
                    !self.continuing && self.shared.log.latest().nodes().contains(&self.node);
                if left_over {
                    if !restarted_quit_sent {
                        restarted_quit_sent = true;
                        self.propose_for_node(Event::node_lost(self.node, "Node restarted"))
                            .await;
                    }
                } else {
                    self.state().set_connected(true);
                    info!(
                        node = self.node,
                        applied = self.appended,
                        "joined the cluster"
                    );
                    report(&mut ready, Ok(()));
                }
            }
            let waiting_for_messages = self.held.is_some();
            tokio::select! {
                entry = events.next(), if !waiting_for_messages && !self.sealed => match entry {
                    Some(Ok(message)) => self.take_entry(&message),
                    Some(Err(e)) => debug!(error = %e, "event stream hiccup (the ordered consumer recovers)"),
                    None => match self.consume_from(self.appended + 1).await {
                        Ok(fresh) => events = fresh,
                        Err(e) => {
                            warn!(error = %e, "cannot resume the event stream; retrying");
                            tokio::time::sleep(beat).await;
                        }
                    },
                },
                Some(message) = messages.next(), if !self.sealed => {
                    self.take_message(&message.payload);
                    for _ in 1..MESSAGES_PER_TURN {
                        match messages.next().now_or_never() {
                            Some(Some(message)) => self.take_message(&message.payload),
                            _ => break,
                        }
                    }
                }
                Some(beat) = heartbeats.next() => {
                    if let Ok((node, run, name)) = postcard::from_bytes::<(u16, u64, &str)>(&beat.payload) {
                        if node == self.node && run != self.incarnation {
                            error!(node, "another running node uses this node's --node-id; node ids must be unique");
                        }
                        self.heard_from(node);
                        self.state().learn_server_name(node, name);
                    }
                }
                Some((shard, proposal, failure)) = self.acks.1.recv() => {
                    if let Some(why) = failure {
                        warn!(shard, proposal, error = %why, "a proposal was not stored");
                        if self.pending.remove(&(shard, proposal)).is_some() && shard < self.shards {
                            self.push_to(shard, Handoff::Unordered { proposal });
                        }
                    }
                }
                Some(event) = self.connection_events.recv() => self.connection_changed(event),
                _ = self.shared.bus.woken(self.endpoint) => {}
                _ = tick.tick() => self.tick().await,
            }
            if std::mem::take(&mut self.resume_consumer) {
                // A consumer lives on the server: after a reconnect (the server may
                // have restarted) or a stall, read on from where this node is.
                match self.consume_from(self.appended + 1).await {
                    Ok(fresh) => events = fresh,
                    Err(e) => {
                        warn!(error = %e, "cannot resume the event stream; retrying");
                        self.resume_consumer = true;
                    }
                }
            }
            self.publish_from_shards().await;
            self.flush_to_shards();
            self.settle_for_upgrade();
            if self.shared.shutting_down.load(Ordering::Acquire) {
                let since = *leaving_since.get_or_insert_with(Instant::now);
                let sealed =
                    self.shared.handoffs_sealed.load(Ordering::Acquire) >= usize::from(self.shards);
                if sealed || since.elapsed() > self.shared.config.shutdown_timeout {
                    self.leave().await;
                    break;
                }
            }
        }
        if let Some(ready) = ready.take() {
            let _ = ready.send(Err(anyhow!(
                "the node stopped before it joined the cluster"
            )));
        }
        self.log_summary();
    }

    /// A live upgrade's freeze (`crate::state::freeze`): once every shard has sealed,
    /// and this link has published all they sent, has every proposal back from the
    /// stream and no event or message waiting for another, it posts where it stopped
    /// and seals after them. From then on it appends and forwards nothing: the
    /// stream's entries and other nodes' messages wait for the new process (which
    /// reads on from this position, subscribed already) or for a thaw. Heartbeats
    /// and the lease go on, under the same run the new process continues.
    fn settle_for_upgrade(&mut self) {
        let freeze = &self.shared.freeze;
        if !freeze.is_asked() {
            self.sealed = false;
            return;
        }
        let settled = freeze.all_sealed(usize::from(self.shards))
            && self.pending.is_empty()
            && self.held.is_none()
            && !self.reorder.holds_messages()
            && self.inbound.iter().all(Batch::is_empty)
            && self.outgoing.iter().all(Batch::is_empty);
        if self.sealed || !settled {
            return;
        }
        self.sealed = true;
        freeze.post_link(LinkCapture {
            node: self.node,
            run: self.incarnation,
            appended: self.appended,
            sent_to: self.sent_to.clone(),
            arrived: self.reorder.arrived().to_vec(),
            lost: self.reorder.lost,
        });
        self.shared.bus.wake_others(self.endpoint);
    }

    /// An ordered consumer of the stream from entry `start`.
    async fn consume_from(&self, start: u64) -> anyhow::Result<consumer::pull::Ordered> {
        let consumer = self
            .stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: start,
                },
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow!("cannot read the event stream from entry {start}: {e}"))?;
        consumer
            .messages()
            .await
            .map_err(|e| anyhow!("cannot read the event stream from entry {start}: {e}"))
    }

    /// One stream entry: appended now, or held until the messages its node sent
    /// before it have arrived.
    fn take_entry(&mut self, message: &jetstream::Message) {
        let seq = match message.info() {
            Ok(info) => info.stream_sequence,
            Err(e) => {
                warn!(error = %e, "a stream entry without its position; skipped");
                return;
            }
        };
        if seq <= self.appended {
            return;
        }
        if seq != self.appended + 1 {
            error!(
                expected = self.appended + 1,
                got = seq,
                "the event stream no longer holds entries this node has not applied; \
                 restart it to load a newer snapshot"
            );
            self.state().set_connected(false);
            self.shared.begin_shutdown();
            return;
        }
        let decoded = wire::decode_envelope(&message.payload)
            .map_err(|e| e.to_string())
            .and_then(|envelope| {
                let event = decode_event(&envelope.event).map_err(|e| e.to_string())?;
                Ok((envelope, event))
            });
        let (envelope, event) = match decoded {
            Ok(decoded) => decoded,
            Err(why) => {
                warn!(seq, error = %why, "an unreadable stream entry keeps its place and changes nothing");
                let unreadable = EventEnvelope {
                    node: self.node,
                    incarnation: 0,
                    shard: self.endpoint,
                    proposal: 0,
                    at_unix: 0,
                    published_micros: 0,
                    sent: Vec::new(),
                    event: Vec::new(),
                };
                self.append(seq, unreadable, Event::Unreadable);
                return;
            }
        };
        if envelope.published_micros < self.incarnation {
            // Published before this run began (a restart replaying the stream): the
            // messages it counts went to the previous run, so none is awaited.
            // (Between nodes whose clocks differ, an entry published just after the
            // start may be taken as earlier; its messages then may follow it.)
            self.reorder.settle_earlier_run(&envelope, self.node);
        }
        if envelope.node != self.node && !self.reorder.may_append(&envelope, self.node) {
            self.held = Some((seq, envelope, event, Instant::now()));
            return;
        }
        self.append(seq, envelope, event);
    }

    /// Appends stream entry `seq` to the node's log after the messages that precede
    /// it (which applies it to the node's replica), and wakes the shards.
    fn append(&mut self, seq: u64, envelope: EventEnvelope, event: Event) {
        self.forward_ready_messages();
        // A previous run's proposals come back as the network's, not a shard's.
        let local = envelope.node == self.node && envelope.incarnation == self.incarnation;
        let origin = if local { envelope.shard } else { self.endpoint };
        let event = if local {
            self.pending
                .remove(&(envelope.shard, envelope.proposal))
                .unwrap_or(event)
        } else {
            event
        };
        let proposal = if local { envelope.proposal } else { 0 };
        // The messages forwarded before this entry must be in the shards' links
        // before it is published (the shards handle them first); a full link drains
        // soon, since shards never wait for the link.
        self.flush_to_shards();
        while self.outgoing.iter().any(|batch| !batch.is_empty()) {
            std::thread::yield_now();
            self.flush_to_shards();
        }
        if !local {
            // Before the shards can see its event: a node they see is one that every
            // channel message kept in history goes to.
            self.heard_from(envelope.node);
        }
        let appended = self
            .shared
            .log
            .append_proposal(origin, proposal, envelope.at_unix, event);
        if appended != seq {
            error!(
                seq,
                appended, "the node's log and the stream disagree on numbering"
            );
        }
        self.appended = seq;
        self.since_snapshot += 1;
        let lag = (!local && envelope.published_micros > 0)
            .then(|| unix_micros().saturating_sub(envelope.published_micros));
        if let Some(lag) = lag {
            let _ = self.lag.record(lag.max(1));
        }
        let counters = &self.state().counters;
        counters.events_in.fetch_add(1, Ordering::Relaxed);
        counters.stream_applied.store(seq, Ordering::Relaxed);
        if let Some(lag) = lag {
            counters.lag_micros_sum.fetch_add(lag, Ordering::Relaxed);
            counters.lag_samples.fetch_add(1, Ordering::Relaxed);
        }
        self.forward_ready_messages();
        self.shared.bus.wake_others(self.endpoint);
        self.state().wake_waiters();
        if self.since_snapshot >= self.cluster.snapshot_every {
            self.write_snapshot();
        }
    }

    /// A message from another node.
    fn take_message(&mut self, payload: &[u8]) {
        match wire::decode_message(payload) {
            Ok((header, received)) => {
                if header.from != self.node {
                    self.reorder.arrive(header, received);
                }
            }
            Err(e) => warn!(error = %e, "a cross-node message was dropped"),
        }
        self.forward_ready_messages();
        self.try_held();
    }

    /// Appends the held event once its messages are in, or once waiting for them
    /// has lasted [`MESSAGE_WAIT`] (they count as lost).
    fn try_held(&mut self) {
        let Some((_, envelope, _, since)) = &self.held else {
            return;
        };
        if !self.reorder.may_append(envelope, self.node) {
            if since.elapsed() < MESSAGE_WAIT {
                return;
            }
            warn!(
                node = envelope.node,
                "messages sent before an event never arrived; going on without them"
            );
            self.reorder.give_up_on(envelope, self.node);
        }
        if let Some((seq, envelope, event, _)) = self.held.take() {
            self.append(seq, envelope, event);
        }
    }

    /// Forwards the messages whose stream position this node has reached.
    fn forward_ready_messages(&mut self) {
        for (_, received) in self.reorder.ready(self.appended) {
            self.forward(received);
        }
    }

    /// Hands a message from another node to the local shards that may have its
    /// recipients (each fans it out to its own members), and keeps it in this node's
    /// history if the sender's node kept it (a channel message arrives here for that
    /// alone when no local user is a member).
    fn forward(&mut self, Received { body, kept }: Received) {
        self.state()
            .counters
            .messages_in
            .fetch_add(1, Ordering::Relaxed);
        match body {
            MessageBody::Channel {
                channel,
                except,
                message,
            } => {
                let Ok(message) = wire::outgoing(message) else {
                    warn!("a malformed channel message from another node was dropped");
                    return;
                };
                // The newest replica is where the shards will be when they take
                // this hand-off (the link is the node's only appender, and shards
                // catch up to its stamp first): only shards with members get it.
                let channel = CaselessKey::new(&channel);
                if let Some(Kept::Channel { tagmsg }) = kept {
                    self.keep(Target::Channel(channel.clone()), tagmsg, &message);
                }
                let places = self
                    .shared
                    .log
                    .latest()
                    .channel(channel.as_str())
                    .map(|found| found.members.shards());
                for shard in 0..self.shards {
                    if places.is_some_and(|places| places.contains(shard)) {
                        self.push_to(
                            shard,
                            Handoff::Channel {
                                channel: channel.clone(),
                                message: message.clone(),
                                except,
                            },
                        );
                    }
                }
            }
            MessageBody::Client { to, message } => {
                if to.node != self.node || to.shard >= self.shards {
                    return;
                }
                let Ok(message) = wire::outgoing(message) else {
                    return;
                };
                if let Some(Kept::Direct { from, tagmsg }) = kept {
                    // The parties as this node's replica knows them, at the position
                    // the sender's shard had reached (or just past it).
                    let conversation = self.shared.log.latest().conversation(from, to);
                    if let Some(conversation) = conversation {
                        self.keep(Target::Direct(conversation), tagmsg, &message);
                    }
                }
                let kept = None;
                self.push_to(to.shard, Handoff::Client { to, message, kept });
            }
        }
    }

    /// Gathers another node's message for this node's history (see
    /// [`Link::history`]), where history is kept. Cost: one record whose parts are
    /// shared with the hand-off.
    fn keep(&mut self, target: Target, tagmsg: bool, message: &crate::proto::outgoing::Outgoing) {
        if !self.shared.keeps_history() {
            return;
        }
        let kind = if tagmsg { Kind::Tagmsg } else { Kind::Message };
        self.history.push(Record {
            target,
            kind,
            message: message.clone(),
        });
    }

    /// Hands the gathered records to the store's writer as one job. A writer far
    /// behind refuses them: delivered, not kept (logged), as on the sending node.
    fn flush_history(&mut self) {
        if self.history.is_empty() {
            return;
        }
        let records = std::mem::take(&mut self.history);
        let Some(store) = self.shared.store.as_ref() else {
            return;
        };
        let count = records.len();
        let retention = Retention::of(&self.shared.config);
        if let Err(why) = history::keep(store, records, retention, unix_micros() / 1000) {
            warn!(messages = count, %why, "other nodes' messages not kept in history");
        }
    }

    /// Queues a hand-off for local shard `shard`, stamped with the log position.
    fn push_to(&mut self, shard: u16, handoff: Handoff) {
        if let Some(batch) = self.outgoing.get_mut(usize::from(shard)) {
            batch.push_back(Stamped {
                after: self.appended,
                handoff,
            });
        }
    }

    /// Sends each shard its pending batch (one push and one wake-up per shard), after
    /// handing the store what the batches' messages add to history. A full link
    /// keeps its batch for the next turn.
    fn flush_to_shards(&mut self) {
        self.flush_history();
        self.links
            .send_pending(&mut self.outgoing, &self.shared.bus);
    }

    /// Publishes what the shards handed over: proposals to the stream, messages to
    /// the nodes with recipients, in the order each shard made them.
    async fn publish_from_shards(&mut self) {
        for source in 0..self.shards {
            loop {
                let index = usize::from(source);
                if self.inbound[index].is_empty() {
                    let Some(link) = self.links.from.get_mut(index).and_then(Option::as_mut) else {
                        break;
                    };
                    let Some(fresh) = link.receive() else {
                        break;
                    };
                    let done = std::mem::replace(&mut self.inbound[index], fresh);
                    link.recycle(done);
                }
                let Some(stamped) = self.inbound[index].pop_front() else {
                    break;
                };
                self.publish(source, stamped).await;
            }
        }
    }

    async fn publish(&mut self, source: u16, stamped: Stamped) {
        match stamped.handoff {
            Handoff::Propose {
                proposal,
                at_unix,
                event,
            } => self.propose(source, proposal, at_unix, *event).await,
            Handoff::Nodes {
                nodes,
                channel,
                message,
                except,
                kept,
            } => {
                let kept = kept.map(|kind| Kept::Channel {
                    tagmsg: kind == Kind::Tagmsg,
                });
                let channel = MessageBody::Channel {
                    channel: channel.as_str().into(),
                    except,
                    message: message.to_wire(),
                };
                let body = wire::encode_body(&channel, kept);
                for node in nodes.iter() {
                    self.send_to_node(node, stamped.after, &body).await;
                }
            }
            Handoff::Client { to, message, kept } => {
                let kept = kept.map(|kept| Kept::Direct {
                    from: kept.from,
                    tagmsg: kept.kind == Kind::Tagmsg,
                });
                let direct = MessageBody::Client {
                    to,
                    message: message.to_wire(),
                };
                let body = wire::encode_body(&direct, kept);
                self.send_to_node(to.node, stamped.after, &body).await;
            }
            Handoff::Channel { .. } | Handoff::Unordered { .. } | Handoff::Notice { .. } => {}
        }
    }

    /// Node `node`'s message subject, formatted once per node rather than per
    /// message (a `Subject` clone is a reference count).
    fn node_subject(&mut self, node: u16) -> async_nats::Subject {
        let index = usize::from(node);
        if self.node_subjects.len() <= index {
            let subjects = &self.subjects;
            let known = self.node_subjects.len();
            self.node_subjects.extend(
                (known..=index).map(|n| async_nats::Subject::from(subjects.node(n as u16))),
            );
        }
        self.node_subjects[index].clone()
    }

    /// Publishes one message to node `node`, numbered in this node's sequence to it.
    async fn send_to_node(&mut self, node: u16, after: u64, body: &[u8]) {
        let index = usize::from(node);
        if self.sent_to.len() <= index {
            self.sent_to.resize(index + 1, 0);
        }
        self.sent_to[index] += 1;
        let header = MessageHeader {
            from: self.node,
            incarnation: self.incarnation,
            number: self.sent_to[index],
            after,
        };
        let payload = wire::message_payload(header, body);
        let subject = self.node_subject(node);
        if let Err(e) = self.client.publish(subject, payload.into()).await {
            debug!(node, error = %e, "a cross-node message could not be published");
            return;
        }
        self.state()
            .counters
            .messages_out
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Publishes shard `shard`'s proposal; its shard learns of a failure as
    /// [`Handoff::Unordered`].
    async fn propose(&mut self, shard: u16, proposal: u64, at_unix: u64, event: Event) {
        let envelope = EventEnvelope {
            node: self.node,
            incarnation: self.incarnation,
            shard,
            proposal,
            at_unix,
            published_micros: unix_micros(),
            sent: self.sent_to.clone(),
            event: encode_event(&event),
        };
        self.pending.insert((shard, proposal), event);
        let payload = wire::encode(&envelope);
        let acks = self.acks.0.clone();
        match self
            .jetstream
            .publish(self.subjects.events.clone(), payload.into())
            .await
        {
            Ok(ack) => {
                self.state()
                    .counters
                    .events_out
                    .fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let failure = ack.await.err().map(|e| e.to_string());
                    let _ = acks.send((shard, proposal, failure));
                });
            }
            Err(e) => {
                let _ = acks.send((shard, proposal, Some(e.to_string())));
            }
        }
    }

    /// Proposes an event on the node's behalf (a lost node, a restart).
    async fn propose_for_node(&mut self, event: Event) {
        let at_unix = crate::proto::time::unix_seconds(SystemTime::now());
        self.propose(self.endpoint, 0, at_unix, event).await;
    }

    /// Heartbeat, lost nodes, a held event's deadline, counters; a node whose id was
    /// taken over stops.
    async fn tick(&mut self) {
        if self.lease.is_lost() {
            self.shared.begin_shutdown();
        }
        let beat = wire::encode(&(
            self.node,
            self.incarnation,
            self.shared.config.server_name.as_str(),
        ));
        if self.state().is_connected() {
            let _ = self
                .client
                .publish(self.subjects.heartbeat.clone(), beat.into())
                .await;
        }
        self.try_held();
        if !self.state().is_connected() || self.sealed {
            // Sealed for an upgrade: nothing proposed, the stream left for the new
            // process.
            return;
        }
        let timeout = self.cluster.node_timeout;
        let silent: Vec<u16> = self
            .last_heard
            .iter()
            .filter(|&(&node, heard)| {
                heard.elapsed() > timeout && !self.declared_lost.contains(&node)
            })
            .map(|(&node, _)| node)
            .collect();
        for node in silent {
            warn!(
                node,
                seconds = timeout.as_secs(),
                "no heartbeat from a node: declaring it lost"
            );
            self.declared_lost.push(node);
            self.share_live_nodes();
            self.state()
                .counters
                .nodes_lost
                .fetch_add(1, Ordering::Relaxed);
            self.propose_for_node(Event::node_lost(
                node,
                &format!("node {node} stopped responding"),
            ))
            .await;
        }
        // Bounded, so that a request the server will never answer (it just went
        // away) holds up neither the heartbeat nor the users' notice of the loss.
        let info = tokio::time::timeout(STREAM_INFO_WAIT, self.stream.info()).await;
        if let Ok(Ok(info)) = info {
            let last = info.state.last_sequence;
            self.state()
                .counters
                .stream_last
                .store(last, Ordering::Relaxed);
            let (before, ticks) = self.stalled;
            self.stalled = if last > self.appended && self.appended == before && self.held.is_none()
            {
                (before, ticks + 1)
            } else {
                (self.appended, 0)
            };
            if self.stalled.1 >= STALLED_TICKS {
                warn!(
                    appended = self.appended,
                    stream_last = last,
                    "the event stream stalled; reading on from a new consumer"
                );
                self.stalled = (self.appended, 0);
                self.resume_consumer = true;
            }
        }
        let alive = self
            .last_heard
            .values()
            .filter(|heard| heard.elapsed() <= timeout)
            .count() as u64
            + 1;
        let counters = &self.state().counters;
        counters.nodes_alive.store(alive, Ordering::Relaxed);
        counters
            .lag_p50_micros
            .store(self.lag.value_at_quantile(0.5), Ordering::Relaxed);
        counters
            .lag_p99_micros
            .store(self.lag.value_at_quantile(0.99), Ordering::Relaxed);
    }

    fn heard_from(&mut self, node: u16) {
        if node == self.node {
            return;
        }
        let known = self.last_heard.insert(node, Instant::now()).is_some();
        let was_lost = self.declared_lost.contains(&node);
        if !known || was_lost {
            self.declared_lost.retain(|&lost| lost != node);
            self.share_live_nodes();
        }
    }

    /// Tells the shards which other nodes this one hears from: those it has heard
    /// from and not declared lost.
    fn share_live_nodes(&self) {
        let mut live = ShardSet::default();
        for &node in self.last_heard.keys() {
            if !self.declared_lost.contains(&node) {
                live.insert(node);
            }
        }
        self.state().set_live_nodes(live);
    }

    /// NATS connection changes: proposals are refused while it is down (the
    /// watcher, [`watch_connection`], has already said so to the shards), and every
    /// local user is told both ways.
    fn connection_changed(&mut self, event: async_nats::Event) {
        match event {
            async_nats::Event::Disconnected => {
                self.state().set_connected(false);
                if !std::mem::replace(&mut self.down, true) {
                    warn!("lost the cluster connection: refusing state changes until it is back");
                    self.notice_all("This server lost its cluster connection; channel and nick changes are refused until it is back");
                }
            }
            async_nats::Event::Connected => {
                // Others' heartbeats did not reach us while we were away.
                let now = Instant::now();
                for heard in self.last_heard.values_mut() {
                    *heard = now;
                }
                self.resume_consumer = true;
                self.log_repeated_error();
                let was_down = std::mem::replace(&mut self.down, false);
                if !self.state().set_connected(true) || was_down {
                    info!("cluster connection restored; catching up");
                    self.notice_all("This server's cluster connection is back");
                }
            }
            async_nats::Event::ClientError(error) => {
                let error = error.to_string();
                match &mut self.last_error {
                    Some((last, repeats)) if *last == error => *repeats += 1,
                    _ => {
                        self.log_repeated_error();
                        warn!(%error, "cluster connection error (repeats are counted, not logged)");
                        self.last_error = Some((error, 0));
                    }
                }
            }
            other => debug!(event = %other, "cluster connection event"),
        }
    }

    /// Logs how often the last client error repeated, if it did, and forgets it.
    fn log_repeated_error(&mut self) {
        if let Some((error, repeats)) = self.last_error.take() {
            if repeats > 0 {
                warn!(%error, repeats, "cluster connection error repeated");
            }
        }
    }

    fn notice_all(&mut self, text: &str) {
        for shard in 0..self.shards {
            self.push_to(shard, Handoff::Notice { text: text.into() });
        }
        self.flush_to_shards();
    }

    /// Writes the link's replica as the cluster's latest snapshot, in the background,
    /// one upload at a time, unless a lower-numbered node is alive (it writes them).
    fn write_snapshot(&mut self) {
        self.since_snapshot = 0;
        // One writer is enough: the lowest-numbered node still heard from.
        let lower_alive = self
            .last_heard
            .keys()
            .any(|&node| node < self.node && !self.declared_lost.contains(&node));
        if lower_alive || self.snapshotting.swap(true, Ordering::AcqRel) {
            return;
        }
        // The newest version is immutable: holding it costs nothing while the log
        // goes on, so the node keeps no replica of its own for snapshots.
        let replica = self.shared.log.latest();
        let bytes = replica.snapshot();
        let store = self.snapshots.clone();
        let busy = self.snapshotting.clone();
        let applied = replica.applied();
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let size = bytes.len();
            match store.put(SNAPSHOT_OBJECT, &mut bytes.as_slice()).await {
                Ok(_) => {
                    if let Some(cluster) = &shared.cluster {
                        cluster.counters.snapshots.fetch_add(1, Ordering::Relaxed);
                    }
                    debug!(applied, bytes = size, "snapshot written");
                }
                Err(e) => warn!(error = %e, "cannot write a snapshot"),
            }
            busy.store(false, Ordering::Release);
        });
    }

    /// Leaving (shutdown): publishes what the shards handed over last, then one
    /// `NodeLost` for this node, and waits (bounded) for it to be stored.
    async fn leave(&mut self) {
        self.publish_from_shards().await;
        // A node whose id was taken over must not quit the new holder's users.
        if !self.state().is_connected() || self.lease.is_lost() {
            return;
        }
        let envelope = EventEnvelope {
            node: self.node,
            incarnation: self.incarnation,
            shard: self.endpoint,
            proposal: 0,
            at_unix: crate::proto::time::unix_seconds(SystemTime::now()),
            published_micros: unix_micros(),
            sent: self.sent_to.clone(),
            event: encode_event(&Event::node_lost(self.node, "Node shutting down")),
        };
        let stored = async {
            self.jetstream
                .publish(self.subjects.events.clone(), wire::encode(&envelope).into())
                .await?
                .await
                .map_err(anyhow::Error::from)
        };
        match tokio::time::timeout(LEAVE_WAIT, stored).await {
            Ok(Ok(_)) => info!("left the cluster"),
            Ok(Err(e)) => warn!(error = %e, "could not tell the cluster this node is leaving"),
            Err(_) => warn!("timed out telling the cluster this node is leaving"),
        }
        self.lease.release().await;
        let _ = tokio::time::timeout(LEAVE_WAIT, self.client.flush()).await;
    }

    fn log_summary(&self) {
        let counters = &self.state().counters;
        info!(
            events_in = counters.events_in.load(Ordering::Relaxed),
            events_out = counters.events_out.load(Ordering::Relaxed),
            messages_in = counters.messages_in.load(Ordering::Relaxed),
            messages_out = counters.messages_out.load(Ordering::Relaxed),
            messages_lost = self.reorder.lost,
            lag_p50_us = self.lag.value_at_quantile(0.5),
            lag_p99_us = self.lag.value_at_quantile(0.99),
            lag_samples = self.lag.len(),
            "cluster link stopped"
        );
    }
}

fn report(
    ready: &mut Option<std::sync::mpsc::Sender<anyhow::Result<()>>>,
    result: anyhow::Result<()>,
) {
    if let Some(ready) = ready.take() {
        let _ = ready.send(result);
    }
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
