//! Starting and stopping the server: bind every shard's sockets, start one thread
//! and runtime per shard, and shut them all down together.
//!
//! Lifecycle: [`Server::start`] binds (so address errors surface before any thread
//! runs), picks the driver, starts the shards and waits until each has its runtime.
//! [`Server::shutdown`] tells every shard through the bus; each stops accepting, sends
//! `ERROR` to its clients, flushes within `--shutdown-timeout`, and ends its thread.
//! A shard thread that ends on its own (a panic) is reported by [`Server::wait`] as a
//! failure of the whole server.

use crate::cloak::Cloak;
use crate::config::{Config, IoMode};
use crate::io::Listener as _;
use crate::io::{self, epoll, ring, uring, Transport};
use crate::proto::CaselessKey;
use crate::settings::checks::check_config;
use crate::shard::freeze::RestoredShard;
use crate::shard::Shard;
use crate::state::client::Client;
use crate::state::handover::Handover;
use crate::state::handover::ListenerKind;
use crate::state::network::Account;
use crate::state::network::{Layout, Network};
use crate::state::shared::CounterSnapshot;
use crate::state::ClientId;
use crate::state::Shared;
use crate::store::Store;
use crate::tls::TlsAcceptor;
use anyhow::{anyhow, bail, Context};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use tracing::{error, info, warn};

/// Addresses and each shard's sockets, for the four kinds of listener.
type BoundAll = (
    (Vec<SocketAddr>, Vec<Vec<TcpListener>>),
    (Vec<SocketAddr>, Vec<Vec<TcpListener>>),
    (Vec<SocketAddr>, Vec<Vec<TcpListener>>),
    (Vec<SocketAddr>, Vec<Vec<TcpListener>>),
);

/// A live upgrade's handover, read and checked: what [`Server::resume`] starts from.
/// Checking is everything but opening the store, so the old process can be told to
/// go (or to serve on) before anything here is started.
pub struct Resumption {
    network: Option<Network>,
    /// A cluster node's link, going on as the old process's run.
    joining: Option<crate::cluster::Joining>,
    listeners: Vec<Vec<(TcpListener, ListenerKind)>>,
    shards: Vec<ResumedShard>,
    /// The operator who asked for the upgrade, told how it went.
    pub asked_by: Option<ClientId>,
    /// How many clients were handed over.
    pub clients: usize,
}

/// One shard's part of a [`Resumption`].
struct ResumedShard {
    clients: Vec<(Client, bool)>,
    streams: Vec<(ClientId, TcpStream)>,
    rest: RestoredShard,
}

impl Resumption {
    /// Decodes and checks `incoming` against `config`: the same number of shards,
    /// a network snapshot that loads, TLS settings for TLS listeners, one descriptor
    /// per listener and client. On a cluster node (`continuing`, connected and
    /// subscribed already), last of all, the link takes over the node id's lease
    /// for the old process's run.
    pub fn check(
        config: &Config,
        handover: Handover,
        descriptors: Vec<OwnedFd>,
        continuing: Option<crate::cluster::Continuing>,
    ) -> anyhow::Result<Resumption> {
        if handover.shards.len() != config.shards {
            bail!(
                "the old process runs {} shards and this configuration {}: the clients' ids name their shard; keep --shards",
                handover.shards.len(),
                config.shards
            );
        }
        let layout = match (&config.cluster, &handover.link, &continuing) {
            (None, None, None) => Layout::standalone(config.shards),
            (Some(cluster), Some(link), Some(_)) => {
                if !cluster.pick_node_id && cluster.node != link.node {
                    bail!(
                        "the old process ran as node {} and this configuration names --node-id {}",
                        link.node,
                        cluster.node
                    );
                }
                Layout {
                    node: link.node,
                    shard_count: config.shards as u16,
                }
            }
            (None, Some(_), _) => {
                bail!("the old process is a cluster node; this configuration is not")
            }
            (Some(_), None, _) => {
                bail!("this configuration is a cluster node; the old process was not")
            }
            (Some(_), Some(_), None) => bail!("the old process did not name its node id"),
            (None, None, Some(_)) => bail!("a cluster link was started without a cluster"),
        };
        let mut network = Network::from_snapshot(&handover.network, layout)
            .map_err(|error| anyhow!("the network snapshot does not load: {error}"))?;
        let mut descriptors = descriptors.into_iter();
        let flood = crate::live::LiveSettings::new(config).flood_policy();
        let now = std::time::Instant::now();
        let mut listeners = Vec::new();
        let mut shards = Vec::new();
        let mut clients = 0;
        for capture in handover.shards {
            let mut shard_listeners = Vec::new();
            for kind in capture.listeners {
                let fd = descriptors
                    .next()
                    .ok_or_else(|| anyhow!("a listener's descriptor is missing"))?;
                if matches!(kind, ListenerKind::Tls | ListenerKind::WebSocketTls)
                    && config.tls.is_none()
                {
                    bail!("the old process serves TLS and this configuration has no --tls-cert/--tls-key");
                }
                shard_listeners.push((TcpListener::from(fd), kind));
            }
            listeners.push(shard_listeners);
            let mut resumed = ResumedShard {
                clients: Vec::new(),
                streams: Vec::new(),
                rest: RestoredShard {
                    guests: capture.guests,
                    nick_deadlines: capture.nick_deadlines,
                },
            };
            for record in capture.clients {
                let fd = descriptors
                    .next()
                    .ok_or_else(|| anyhow!("a client's descriptor is missing"))?;
                let id = record.id;
                let sasl_open = record.sasl_open;
                let client = record.restore(now, crate::state::flood::TokenBucket::new(flood, now));
                if client.is_registered() {
                    network.share_activity(id, client.activity.clone());
                }
                resumed.clients.push((client, sasl_open));
                resumed.streams.push((id, TcpStream::from(fd)));
                clients += 1;
            }
            shards.push(resumed);
        }
        if descriptors.next().is_some() {
            bail!("the handover carried more descriptors than it named");
        }
        let (network, joining) = match (continuing, handover.link) {
            (Some(continuing), Some(link)) => {
                (None, Some(continuing.continue_from(link, network)?))
            }
            _ => (Some(network), None),
        };
        Ok(Resumption {
            network,
            joining,
            listeners,
            shards,
            asked_by: handover.asked_by,
            clients,
        })
    }

    fn take_network(&mut self) -> Network {
        self.network
            .take()
            .unwrap_or_else(|| Network::laid_out(Layout::standalone(1)))
    }

    /// The handed-over listeners, sorted by kind as `bind_all` returns them.
    fn take_listeners(&mut self, shards: usize) -> anyhow::Result<BoundAll> {
        let mut kinds: [(Vec<SocketAddr>, Vec<Vec<TcpListener>>); 4] = Default::default();
        for part in kinds.iter_mut() {
            part.1 = (0..shards).map(|_| Vec::new()).collect();
        }
        for (shard, listeners) in std::mem::take(&mut self.listeners).into_iter().enumerate() {
            for (listener, kind) in listeners {
                let index = match kind {
                    ListenerKind::Plain => 0,
                    ListenerKind::Tls => 1,
                    ListenerKind::WebSocket => 2,
                    ListenerKind::WebSocketTls => 3,
                };
                listener
                    .set_nonblocking(true)
                    .context("cannot adopt a handed-over listener")?;
                if shard == 0 {
                    kinds[index].0.push(listener.local_addr()?);
                }
                kinds[index].1[shard].push(listener);
            }
        }
        let [plain, tls, websocket, websocket_tls] = kinds;
        Ok((plain, tls, websocket, websocket_tls))
    }
}

/// Backlog of each listening socket.
const LISTEN_BACKLOG: i32 = 4096;

/// A running server; dropping it shuts it down and waits for the shards.
pub struct Server {
    shared: Arc<Shared>,
    local_addrs: Vec<SocketAddr>,
    tls_local_addrs: Vec<SocketAddr>,
    /// Where IRC over WebSocket is served, plain and with TLS.
    websocket_local_addrs: Vec<SocketAddr>,
    websocket_tls_local_addrs: Vec<SocketAddr>,
    /// The TLS listeners' certificate, shared with every shard; `None` without them.
    tls: Option<Arc<TlsAcceptor>>,
    driver: IoMode,
    threads: Vec<JoinHandle<()>>,
    /// The cluster link, on a cluster node: joined after the shards.
    link: Option<crate::cluster::LinkThread>,
    /// Each shard thread sends its number here when it ends, however it ends.
    exits: tokio::sync::mpsc::UnboundedReceiver<u16>,
}

impl Server {
    /// Binds, starts every shard, and returns once all are serving.
    pub fn start(config: Config) -> anyhow::Result<Server> {
        Server::start_on(config, Vec::new())
    }

    /// Starts every shard on `inherited` listening sockets (socket activation) instead
    /// of binding `config.listen`; binds as [`Server::start`] does when it is empty.
    ///
    /// Each shard accepts from its own duplicate of each inherited socket: every
    /// duplicate shares the one accept queue, so whichever shard is free takes the next
    /// connection. Binding fresh `SO_REUSEPORT` sockets beside it instead would need
    /// the privilege to bind the port, which socket activation exists to avoid.
    pub fn start_on(config: Config, inherited: Vec<TcpListener>) -> anyhow::Result<Server> {
        Server::start_with(config, inherited, None)
    }

    /// Starts every shard from a live upgrade's handover ([`Resumption::check`]): on
    /// the listeners and with the clients the old process had, from its network.
    pub fn resume(config: Config, resumption: Resumption) -> anyhow::Result<Server> {
        Server::start_with(config, Vec::new(), Some(resumption))
    }

    fn start_with(
        mut config: Config,
        inherited: Vec<TcpListener>,
        mut resumption: Option<Resumption>,
    ) -> anyhow::Result<Server> {
        check_config(&config).map_err(|invalid| anyhow!("--{invalid}"))?;
        let driver = choose_driver(config.io)?;
        let tls = match &config.tls {
            Some(files)
                if !config.tls_listen.is_empty() || !config.websocket_tls_listen.is_empty() =>
            {
                Some(Arc::new(TlsAcceptor::load(files.clone())?))
            }
            Some(_) => {
                warn!("--tls-cert and --tls-key are set but no --tls-listen address: no TLS");
                None
            }
            None => None,
        };
        let (
            (local_addrs, plain),
            (tls_local_addrs, secure),
            (websocket_local_addrs, websocket),
            (websocket_tls_local_addrs, websocket_secure),
        ) = match resumption.as_mut() {
            Some(resumption) => resumption.take_listeners(config.shards)?,
            None => (
                if inherited.is_empty() {
                    bind_all(&config.listen, config.shards)?
                } else {
                    share_inherited(inherited, config.shards)?
                },
                bind_all(&config.tls_listen, config.shards)?,
                bind_all(&config.websocket_listen, config.shards)?,
                bind_all(&config.websocket_tls_listen, config.shards)?,
            ),
        };
        let kinds = [
            Transport::default(),
            Transport {
                tls: tls.clone(),
                websocket: false,
            },
            Transport {
                tls: None,
                websocket: true,
            },
            Transport {
                tls: tls.clone(),
                websocket: true,
            },
        ];
        let mut listeners: Vec<Vec<(TcpListener, Transport)>> =
            (0..config.shards).map(|_| Vec::new()).collect();
        for (kind, per_shard) in kinds
            .iter()
            .zip([plain, secure, websocket, websocket_secure])
        {
            for (shard, sockets) in listeners.iter_mut().zip(per_shard) {
                shard.extend(sockets.into_iter().map(|socket| (socket, kind.clone())));
            }
        }
        let continued = resumption
            .as_mut()
            .and_then(|resumption| resumption.joining.take());
        let joining = match (&config.cluster, continued) {
            (Some(_), Some(continued)) => Some(continued),
            (Some(_), None) => Some(crate::cluster::Joining::open(&config)?),
            (None, _) => None,
        };
        // Without --node-id the node's number is the one its lease was given.
        if let (Some(cluster), Some(joining)) = (config.cluster.as_mut(), &joining) {
            cluster.node = joining.node;
            if config.server_name == crate::config::DEFAULT_SERVER_NAME {
                config.server_name = format!("node{}.{}", joining.node, config.server_name);
            }
        }
        let store = match (config.data_dir.as_deref(), &resumption) {
            (Some(dir), Some(_)) => Some(Store::open_after_predecessor(dir)?),
            (Some(dir), None) => Some(Store::open(dir)?),
            (None, _) => None,
        };
        let cloak = config
            .cloak_hosts
            .then(|| Cloak::load(config.cloak_secret.as_deref(), config.data_dir.as_deref()))
            .transpose()?;
        let mut shared = match (&joining, resumption.as_mut()) {
            // The cluster's snapshot and stream carry the accounts.
            (Some(joining), _) => Shared::starting_from(config, joining.network.clone()),
            // So does the old process's snapshot.
            (None, Some(resumption)) => Shared::starting_from(config, resumption.take_network()),
            (None, None) => {
                let (accounts, read_markers) = match &store {
                    Some(store) => (
                        crate::store::accounts::load(store)?
                            .into_iter()
                            .map(Account::from_stored)
                            .collect(),
                        crate::store::read_markers::load(store)?
                            .into_iter()
                            .map(|marker| {
                                (
                                    CaselessKey::new(&marker.account),
                                    CaselessKey::new(&marker.target),
                                    marker.millis,
                                )
                            })
                            .collect(),
                    ),
                    None => (Vec::new(), Vec::new()),
                };
                Shared::with_accounts(config, accounts, read_markers)
            }
        };
        shared.store = store;
        shared.cloak = cloak;
        let shared = Arc::new(shared);
        let link = joining
            .map(|joining| joining.start(shared.clone()))
            .transpose()?;
        let (exit_tx, exits) = tokio::sync::mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut threads = Vec::new();
        let mut resumed = resumption
            .map(|resumption| resumption.shards)
            .unwrap_or_default();
        for shard_id in (0..shared.config.shards as u16).rev() {
            let shard_listeners = listeners.pop().unwrap_or_default();
            let resumed = resumed.pop();
            let shared = shared.clone();
            let exit_tx = exit_tx.clone();
            let ready_tx = ready_tx.clone();
            let thread = std::thread::Builder::new()
                .name(format!("shard-{shard_id}"))
                .spawn(move || {
                    let _exit = ExitNotice(exit_tx, shard_id);
                    let mut shard = Shard::new(shard_id, shared, crate::commands::handle);
                    let streams = match resumed {
                        Some(resumed) => {
                            shard.restore(resumed.clients, resumed.rest);
                            resumed.streams
                        }
                        None => Vec::new(),
                    };
                    run_shard_thread(shard, shard_listeners, streams, driver, ready_tx);
                })
                .context("cannot start a shard thread")?;
            threads.push(thread);
        }
        drop(ready_tx);
        let mut server = Server {
            shared,
            local_addrs,
            tls_local_addrs,
            websocket_local_addrs,
            websocket_tls_local_addrs,
            tls,
            driver,
            threads,
            link,
            exits,
        };
        for _ in 0..server.threads.len() {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    server.stop_and_join();
                    return Err(error);
                }
                Err(_) => {
                    server.stop_and_join();
                    bail!("a shard ended before it started serving");
                }
            }
        }
        Ok(server)
    }

    /// The first listening address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addrs[0]
    }

    /// Every listening address.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Every TLS listening address (with the real port when 0 was asked for).
    pub fn tls_local_addrs(&self) -> &[SocketAddr] {
        &self.tls_local_addrs
    }

    /// Every address serving IRC over WebSocket (and the web client), plain HTTP.
    pub fn websocket_local_addrs(&self) -> &[SocketAddr] {
        &self.websocket_local_addrs
    }

    /// Every address serving IRC over WebSocket with TLS.
    pub fn websocket_tls_local_addrs(&self) -> &[SocketAddr] {
        &self.websocket_tls_local_addrs
    }

    /// Re-reads the TLS certificate and key: new handshakes use them, existing
    /// connections keep theirs. Returns `Ok(false)` when there is no TLS listener; an
    /// error (a missing, unreadable or mismatched file) leaves the old certificate in
    /// use.
    pub fn reload_tls(&self) -> anyhow::Result<bool> {
        match &self.tls {
            Some(tls) => tls.reload().map(|()| true),
            None => Ok(false),
        }
    }

    /// The driver the shards run on (never `Auto`).
    pub fn driver(&self) -> IoMode {
        self.driver
    }

    /// The state every shard shares: counters, live settings (for reload and metrics).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Each shard's last published counters (refreshed about once a second).
    pub fn shard_counters(&self) -> Vec<CounterSnapshot> {
        self.shared.counters.iter().map(|c| c.snapshot()).collect()
    }

    /// Asks every shard to freeze for a live upgrade ([`crate::state::freeze`]);
    /// their captures arrive through `shared.freeze`.
    pub fn freeze(&self) {
        self.shared.freeze.ask(self.shared.config.shards);
        // The shards, and a cluster node's link.
        self.shared.bus.wake_all();
    }

    /// Lets every frozen shard (and a sealed cluster link) go on: the upgrade failed.
    pub fn thaw(&self) {
        self.shared.freeze.thaw();
        self.shared.bus.wake_all();
    }

    /// Begins a graceful shutdown without waiting for it.
    pub fn begin_shutdown(&self) {
        self.shared.begin_shutdown();
    }

    /// Shuts down gracefully and waits for every shard.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    /// Completes when a shard thread ends: normally only after [`Server::begin_shutdown`];
    /// an error if it ended without a shutdown having been asked for (a panic).
    pub async fn stopped(&mut self) -> anyhow::Result<()> {
        let shard = self
            .exits
            .recv()
            .await
            .ok_or_else(|| anyhow!("all shards are gone"))?;
        if self.shared.shutting_down.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(anyhow!("shard {shard} stopped unexpectedly"))
        }
    }

    fn stop_and_join(&mut self) {
        if self.threads.is_empty() {
            return;
        }
        self.begin_shutdown();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        if let Some(link) = self.link.take() {
            self.shared.bus.wake(self.shared.config.shards as u16);
            link.join();
        }
        let totals = self.shared.totals();
        info!(
            connections_accepted = totals.accepted,
            deliveries = totals.deliveries,
            "server stopped"
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Sends a shard's number when its thread ends, panics included.
struct ExitNotice(tokio::sync::mpsc::UnboundedSender<u16>, u16);

impl Drop for ExitNotice {
    fn drop(&mut self) {
        let _ = self.0.send(self.1);
    }
}

/// The order `--io auto` tries the drivers in, fastest first (README "Drivers" has
/// the measurements behind it: on a quiet machine the ring driver used less CPU per
/// delivery than tokio-uring at every rate measured and holds no buffer per idle
/// connection).
const AUTO_ORDER: [IoMode; 3] = [IoMode::Ring, IoMode::Uring, IoMode::Epoll];

/// Resolves `auto` (logging each fallback once, with its reason) and checks that the
/// driver asked for is usable.
fn choose_driver(asked: IoMode) -> anyhow::Result<IoMode> {
    match asked {
        IoMode::Auto => {
            // Every driver serves plaintext and TLS listeners alike, so the listeners
            // do not change the order.
            for (turn, candidate) in AUTO_ORDER.iter().enumerate() {
                match probe(*candidate) {
                    Ok(()) => return Ok(*candidate),
                    Err(reason) => {
                        let next = AUTO_ORDER.get(turn + 1).copied().unwrap_or(IoMode::Epoll);
                        warn!(
                            "{} driver unavailable ({reason}); trying {}",
                            candidate.name(),
                            next.name()
                        );
                    }
                }
            }
            Ok(IoMode::Epoll)
        }
        IoMode::Epoll => Ok(IoMode::Epoll),
        IoMode::Uring => probe(IoMode::Uring)
            .map(|()| IoMode::Uring)
            .map_err(|reason| anyhow!("io_uring unavailable: {reason}; run with --io epoll")),
        IoMode::Ring => probe(IoMode::Ring)
            .map(|()| IoMode::Ring)
            .map_err(|reason| {
                anyhow!(
                    "the ring driver is unavailable: {reason}; run with --io uring or --io epoll"
                )
            }),
    }
}

/// Whether a driver can run here; the error explains why not.
fn probe(driver: IoMode) -> Result<(), String> {
    let probed = match driver {
        IoMode::Uring => uring::probe(),
        IoMode::Ring => ring::probe(),
        IoMode::Epoll | IoMode::Auto => Ok(()),
    };
    probed.map_err(|error| uring_refusal(&error))
}

/// Explains why the kernel refused to create a ring.
fn uring_refusal(error: &std::io::Error) -> String {
    match error.raw_os_error() {
        Some(libc::ENOSYS) => "the kernel has no io_uring (ENOSYS)".to_owned(),
        Some(libc::EPERM) => {
            "io_uring is disabled (EPERM: see sysctl kernel.io_uring_disabled, or a seccomp filter)"
                .to_owned()
        }
        Some(libc::ENOMEM) => {
            "not enough locked memory for the ring (ENOMEM: raise ulimit -l)".to_owned()
        }
        _ => error.to_string(),
    }
}

/// Binds every address once per shard with SO_REUSEPORT; returns the real addresses
/// and, per shard, its listeners.
fn bind_all(
    addrs: &[SocketAddr],
    shards: usize,
) -> anyhow::Result<(Vec<SocketAddr>, Vec<Vec<TcpListener>>)> {
    let mut per_shard: Vec<Vec<TcpListener>> = (0..shards).map(|_| Vec::new()).collect();
    let mut local_addrs = Vec::new();
    for &addr in addrs {
        if addr.port() != 0 {
            // SO_REUSEPORT would let a second ringchat share this port silently; a plain
            // bind fails if anyone listens here, as a server should.
            wait_for_port(addr).map_err(|error| describe_bind_error(addr, &error))?;
        }
        let mut bound = addr;
        for listeners in per_shard.iter_mut() {
            let socket =
                bind_socket(bound, true).map_err(|error| describe_bind_error(bound, &error))?;
            bound = socket.local_addr()?;
            listeners.push(socket);
        }
        local_addrs.push(bound);
    }
    Ok((local_addrs, per_shard))
}

/// One duplicate of every inherited listener per shard, all sharing its accept queue.
fn share_inherited(
    inherited: Vec<TcpListener>,
    shards: usize,
) -> anyhow::Result<(Vec<SocketAddr>, Vec<Vec<TcpListener>>)> {
    let mut per_shard: Vec<Vec<TcpListener>> = (0..shards).map(|_| Vec::new()).collect();
    let mut local_addrs = Vec::new();
    for listener in inherited {
        local_addrs.push(listener.local_addr()?);
        for listeners in per_shard.iter_mut().skip(1) {
            listeners.push(
                listener
                    .try_clone()
                    .context("cannot duplicate an inherited listener")?,
            );
        }
        per_shard[0].push(listener);
    }
    Ok((local_addrs, per_shard))
}

/// How long a start waits for its port to come free. A server killed a moment ago
/// (SIGKILL, a crash, systemd restarting it at once) leaves its listeners open while
/// the kernel tears its io_uring down, about 25 ms here; a start in that window
/// failed with "address already in use", and the connections meant for the new
/// server went to the dead one's listener. A port another server keeps fails after
/// this wait.
const PORT_FREE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Checks that nobody listens on `addr` (a plain bind, dropped at once), waiting up
/// to [`PORT_FREE_WAIT`] for a listener that is going away.
fn wait_for_port(addr: SocketAddr) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + PORT_FREE_WAIT;
    let mut waited = false;
    loop {
        match bind_socket(addr, false) {
            Ok(_) => {
                if waited {
                    info!(%addr, "the port came free (a previous server was still closing)");
                }
                return Ok(());
            }
            Err(error)
                if error.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                waited = true;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(error) => return Err(error),
        }
    }
}

fn bind_socket(addr: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

fn describe_bind_error(addr: SocketAddr, error: &std::io::Error) -> anyhow::Error {
    match error.kind() {
        std::io::ErrorKind::AddrInUse => anyhow!("cannot listen on {addr}: address already in use"),
        std::io::ErrorKind::PermissionDenied => anyhow!(
            "cannot listen on {addr}: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
        ),
        std::io::ErrorKind::AddrNotAvailable => {
            anyhow!("cannot listen on {addr}: no such address on this machine")
        }
        _ => anyhow!("cannot listen on {addr}: {error}"),
    }
}

/// The body of a shard thread: build the runtime, report readiness, serve (the
/// connections `streams` a live upgrade handed over among the rest).
fn run_shard_thread(
    shard: Shard,
    listeners: Vec<(TcpListener, Transport)>,
    streams: Vec<(ClientId, TcpStream)>,
    driver: IoMode,
    ready: mpsc::Sender<anyhow::Result<()>>,
) {
    let id = shard.id;
    match driver {
        IoMode::Epoll => match epoll::runtime() {
            Ok(runtime) => {
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, async move {
                    let adopted: Result<Vec<_>, std::io::Error> = listeners
                        .into_iter()
                        .map(|(socket, transport)| {
                            Ok(io::ShardListener {
                                listener: epoll::EpollListener::new(socket)?,
                                transport,
                            })
                        })
                        .collect();
                    let streams: Result<Vec<_>, std::io::Error> = streams
                        .into_iter()
                        .map(|(id, stream)| Ok((id, epoll::EpollListener::adopt(stream)?)))
                        .collect();
                    match adopted.and_then(|listeners| Ok((listeners, streams?))) {
                        Ok((listeners, streams)) => {
                            let _ = ready.send(Ok(()));
                            io::run_shard(shard, listeners, streams).await;
                        }
                        Err(error) => {
                            let _ = ready
                                .send(Err(anyhow!("shard {id}: cannot adopt listener: {error}")));
                        }
                    }
                });
            }
            Err(error) => {
                let _ = ready.send(Err(anyhow!(
                    "shard {id}: cannot start the epoll runtime: {error}"
                )));
            }
        },
        IoMode::Ring => match ring::Driver::new(shard, listeners, streams) {
            Ok(driver) => {
                let _ = ready.send(Ok(()));
                if let Err(error) = driver.run() {
                    error!(shard = id, %error, "the ring driver failed");
                }
            }
            Err(error) => {
                let _ = ready.send(Err(anyhow!(
                    "shard {id}: the ring driver is unavailable: {}; run with --io uring or --io epoll",
                    uring_refusal(&error)
                )));
            }
        },
        IoMode::Uring | IoMode::Auto => match uring::runtime() {
            Ok(runtime) => runtime.block_on(async move {
                let listeners = listeners
                    .into_iter()
                    .map(|(socket, transport)| io::ShardListener {
                        listener: uring::UringListener::new(socket),
                        transport,
                    })
                    .collect();
                let streams: Result<Vec<_>, std::io::Error> = streams
                    .into_iter()
                    .map(|(id, stream)| Ok((id, uring::UringListener::adopt(stream)?)))
                    .collect();
                match streams {
                    Ok(streams) => {
                        let _ = ready.send(Ok(()));
                        io::run_shard(shard, listeners, streams).await;
                    }
                    Err(error) => {
                        let _ = ready.send(Err(anyhow!(
                            "shard {id}: cannot adopt a handed-over connection: {error}"
                        )));
                    }
                }
            }),
            Err(error) => {
                let _ = ready.send(Err(anyhow!(
                    "shard {id}: io_uring unavailable: {}; run with --io epoll",
                    uring_refusal(&error)
                )));
            }
        },
    }
}

/// Lets the soft open-file limit rise to the hard limit: each client is a descriptor
/// (the binary does it at start; tests that open thousands of sockets do it too).
pub fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
