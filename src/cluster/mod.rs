//! Running as one node of a cluster on NATS (`--cluster`).
//!
//! The design, in one paragraph: network state is already a log of events applied
//! by a pure function (`crate::state::network`); a cluster makes a JetStream stream
//! that log. Every node publishes its shards' proposals to the stream and appends
//! every stream entry to its own event log in the stream's order, so every replica
//! on every node applies the same events in the same order and reaches the same
//! state and the same outcomes (two nodes racing for one nick: the first entry wins,
//! the second gets 433). Channel and private messages never enter the log: they go
//! on core NATS, one publication per node that has recipients (per live node, for a
//! channel message kept in history, so every node keeps it), and are ordered
//! against the events by the same stamps that order hand-offs between shards
//! ([`order`]). Snapshots in a JetStream object store bound the replay a new node
//! needs; heartbeats on core NATS detect a node that stopped, and a `NodeLost` event
//! quits its users once.
//!
//! A node serves only while it holds its `--node-id` ([`lease`]): a second node
//! started with a live node's id refuses to start, naming the other. A live
//! upgrade's new process goes on as the same run of the node ([`Continuing`]).
//!
//! Layout: [`wire`] (what crosses), [`order`] (cross-node ordering, pure),
//! [`lease`] (one node per id), and [`link`] (the thread that talks to NATS).
//! Alone, none of this runs.

pub mod lease;
pub mod link;
pub mod order;
pub mod wire;

use crate::config::{ClusterConfig, Config};
use crate::state::handover::LinkCapture;
use crate::state::network::Network;
use crate::state::Shared;
use anyhow::{anyhow, Context};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

/// A node that has opened its cluster connection and loaded the state to start
/// from, but whose shards do not run yet; see [`Joining::open`].
pub struct Joining {
    /// The node's number: `--node-id`, or the lowest free one it was given.
    pub node: u16,
    /// The replica the shards start from.
    pub network: Network,
    shared_tx: tokio::sync::oneshot::Sender<Arc<Shared>>,
    ready_rx: mpsc::Receiver<anyhow::Result<()>>,
    thread: JoinHandle<()>,
}

/// The running cluster link; join it after the shards have stopped.
#[derive(Debug)]
pub struct LinkThread(JoinHandle<()>);

impl LinkThread {
    /// Waits for the link to have left the cluster.
    pub fn join(self) {
        let _ = self.0.join();
    }
}

impl Joining {
    /// Starts the link thread, connects to NATS and loads the cluster's latest
    /// snapshot (or starts empty). Errors are one line naming what failed.
    pub fn open(config: &Config) -> anyhow::Result<Joining> {
        let cluster = config
            .cluster
            .clone()
            .ok_or_else(|| anyhow!("not configured as a cluster node"))?;
        let shard_count = config.shards as u16;
        let network_name = config.network.clone();
        let bans = config.server_bans.clone();
        let (opened_tx, opened_rx) = mpsc::channel();
        let (shared_tx, shared_rx) = tokio::sync::oneshot::channel::<Arc<Shared>>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = spawn_link_thread(opened_tx.clone(), move || async move {
            let opened = link::open(&cluster, &network_name, shard_count, bans).await;
            run_link(opened, cluster, opened_tx, shared_rx, ready_tx).await;
        })?;
        Joining::opened(opened_rx, shared_tx, ready_rx, thread)
    }

    /// Waits for the link thread to have opened the node.
    fn opened(
        opened_rx: mpsc::Receiver<anyhow::Result<(u16, Network)>>,
        shared_tx: tokio::sync::oneshot::Sender<Arc<Shared>>,
        ready_rx: mpsc::Receiver<anyhow::Result<()>>,
        thread: JoinHandle<()>,
    ) -> anyhow::Result<Joining> {
        let (node, network) = opened_rx
            .recv()
            .map_err(|_| anyhow!("the cluster link ended while connecting"))??;
        Ok(Joining {
            node,
            network,
            shared_tx,
            ready_rx,
            thread,
        })
    }

    /// Hands the link the node's shared state and waits until the node has caught
    /// up with the cluster's log; the shards may start then.
    pub fn start(self, shared: Arc<Shared>) -> anyhow::Result<LinkThread> {
        if self.shared_tx.send(shared).is_err() {
            let _ = self.thread.join();
            return Err(anyhow!("the cluster link ended before the node started"));
        }
        match self.ready_rx.recv() {
            Ok(Ok(())) => Ok(LinkThread(self.thread)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(anyhow!("the cluster link ended before the node joined")),
        }
    }
}

/// A live upgrade's new process on a cluster node, connected and subscribed as the
/// node before it says hello to the old process (see [`crate::upgrade`]): every
/// message sent to the node from the moment the old process stops taking them in
/// waits in this subscription.
pub struct Continuing {
    handed_over: tokio::sync::oneshot::Sender<(LinkCapture, Network)>,
    opened_rx: mpsc::Receiver<anyhow::Result<(u16, Network)>>,
    shared_tx: tokio::sync::oneshot::Sender<Arc<Shared>>,
    ready_rx: mpsc::Receiver<anyhow::Result<()>>,
    thread: JoinHandle<()>,
}

impl Continuing {
    /// Starts the link thread, connects to NATS and subscribes as node `node` (the
    /// old process's, which it names in [`crate::upgrade::HANDOVER_NODE_ENV`]).
    pub fn connect(config: &Config, node: u16) -> anyhow::Result<Continuing> {
        let cluster = config
            .cluster
            .clone()
            .ok_or_else(|| anyhow!("not configured as a cluster node"))?;
        let network_name = config.network.clone();
        let (opened_tx, opened_rx) = mpsc::channel();
        let (connected_tx, connected_rx) = mpsc::channel();
        let (handed_over, handed_over_rx) = tokio::sync::oneshot::channel();
        let (shared_tx, shared_rx) = tokio::sync::oneshot::channel::<Arc<Shared>>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = spawn_link_thread(opened_tx.clone(), move || async move {
            let connected = async {
                let connected = link::connect(&cluster, &network_name).await?;
                let subscriptions = connected.subscribe(node).await?;
                anyhow::Ok((connected, subscriptions))
            };
            let (connected, subscriptions) = match connected.await {
                Ok(connected) => {
                    let _ = connected_tx.send(Ok(()));
                    connected
                }
                Err(e) => {
                    let _ = connected_tx.send(Err(e));
                    return;
                }
            };
            let Ok((capture, network)) = handed_over_rx.await else {
                return;
            };
            let opened = connected
                .continue_run(&cluster, subscriptions, capture, network)
                .await;
            run_link(opened, cluster, opened_tx, shared_rx, ready_tx).await;
        })?;
        connected_rx
            .recv()
            .map_err(|_| anyhow!("the cluster link ended while connecting"))??;
        Ok(Continuing {
            handed_over,
            opened_rx,
            shared_tx,
            ready_rx,
            thread,
        })
    }

    /// Goes on from the old process's link `capture` and replica `network`: takes
    /// over the node id's lease for the same run (refused if it names another).
    pub fn continue_from(self, capture: LinkCapture, network: Network) -> anyhow::Result<Joining> {
        if self.handed_over.send((capture, network)).is_err() {
            return Err(anyhow!("the cluster link ended before the handover"));
        }
        Joining::opened(self.opened_rx, self.shared_tx, self.ready_rx, self.thread)
    }
}

/// Runs the future `link` makes on a thread of its own with a single-threaded
/// runtime; a runtime that cannot start is reported on `opened_tx`.
fn spawn_link_thread<Link: std::future::Future<Output = ()>>(
    opened_tx: mpsc::Sender<anyhow::Result<(u16, Network)>>,
    link: impl FnOnce() -> Link + Send + 'static,
) -> anyhow::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("cluster-link".to_owned())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(link()),
                Err(e) => {
                    let _ = opened_tx.send(Err(anyhow!("cannot start the cluster link: {e}")));
                }
            }
        })
        .context("cannot start the cluster link thread")
}

async fn run_link(
    opened: anyhow::Result<link::Opened>,
    mut cluster: ClusterConfig,
    opened_tx: mpsc::Sender<anyhow::Result<(u16, Network)>>,
    shared_rx: tokio::sync::oneshot::Receiver<Arc<Shared>>,
    ready_tx: mpsc::Sender<anyhow::Result<()>>,
) {
    let opened = match opened {
        Ok(opened) => opened,
        Err(e) => {
            let _ = opened_tx.send(Err(e));
            return;
        }
    };
    cluster.node = opened.node;
    let _ = opened_tx.send(Ok((opened.node, opened.network.clone())));
    let Ok(shared) = shared_rx.await else {
        return;
    };
    link::run(opened, cluster, shared, ready_tx).await;
}
