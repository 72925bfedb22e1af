//! I/O drivers: the only code that touches sockets and runtimes.
//!
//! Two kinds: the tokio drivers (`uring`, `epoll`) run the tasks in this file; the
//! `ring` driver ([`ring`]) is a completion loop of its own that mirrors them (same
//! shard calls, same batching, same shutdown sequence) without tasks.
//!
//! A tokio driver provides a [`Listener`] and a [`Stream`] with owned-buffer operations
//! (the io_uring shape; epoll adapts to it), and the tasks here run every shard the
//! same way on either driver: an accept loop, a reader and a writer per connection, a
//! pump (woken for hand-offs and log entries from other shards), a hand-off flusher
//! and a housekeeping ticker. Only the socket calls
//! differ, so a comparison between drivers measures the drivers.
//!
//! Per connection: one read in flight at all times (never abandoned: a dropped
//! tokio-uring read loses data), at most one write in flight, and the shard's
//! `RefCell` is borrowed only between awaits. Per shard: at most
//! [`WRITES_PER_PASS`] writes started per scheduler pass, so a member flood's lines
//! gather into few writes (the ring driver's `WRITERS_PER_TURN`).
//!
//! TLS rides on the same tasks: a connection accepted on a TLS listener carries a
//! [`TlsSession`] that its reader feeds ciphertext and its writer takes ciphertext
//! from (see [`tls`]). A plaintext connection carries `None`, so all it pays for TLS
//! existing is a branch per read and per write.
//!
//! WebSocket is one more layer of the same kind: a connection accepted on a WebSocket
//! listener carries a [`WebSocketSession`] that turns the bytes read (or the plaintext
//! TLS decrypted) into lines for the shard, and frames the lines the writer takes
//! (before TLS encrypts them, on a `wss://` listener).

pub mod epoll;
pub mod ring;
pub mod tls;
pub mod uring;
pub mod websocket;

use crate::proto::closing::{closing_link, SHUTTING_DOWN_LINE};
use crate::shard::freeze::{FreezeSequence, FreezeStep};
use crate::shard::shutdown::{ShutdownPhase, ShutdownSequence};
use crate::shard::Shard;
use crate::state::handover::ListenerKind;
use crate::state::outbox::MAX_BATCH_LINES;
use crate::state::ClientId;
use crate::tls::TlsAcceptor;
use bytes::{Buf, Bytes};
use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};
use tls::{Received, TlsFailure, TlsSession};
use tracing::{debug, info, warn, Instrument};
use websocket::WebSocketSession;

/// A connection's read buffer starts (and shrinks back to) this size: idle clients
/// stay small.
pub const READ_BUFFER_MIN: usize = 512;
/// A busy connection's read buffer grows up to this size.
pub const READ_BUFFER_MAX: usize = 16 << 10;
/// How often throttled input is re-examined while some client waits for tokens.
pub(crate) const FLOOD_TICK: Duration = Duration::from_millis(50);
/// How often liveness is checked and counters are published.
pub(crate) const LIVENESS_TICK: Duration = Duration::from_secs(1);
/// Writes a shard's writers may start per scheduler pass (the ring driver's
/// `WRITERS_PER_TURN`, and tokio-uring's submission queue size). The rest wait their
/// turn in order, and meanwhile the reads of that pass (a member flood's JOINs) add to
/// their batches: without it the tokio-uring driver wrote one line per writev while
/// filling a channel (issue 34: 837,381 of 993,305 writes carried one line, 3,000
/// members), because its writers ran as soon as each completion came back, between
/// two JOINs.
pub(crate) const WRITES_PER_PASS: u64 = 64;
/// Accept loops per listener. A tokio-uring accept is one operation that completes
/// one connection, and the next is submitted only when its loop has run again: one
/// loop accepted about one connection per scheduler pass while a channel of 5,000
/// filled (issue 34), and a connect storm queued behind it. Several loops keep as
/// many accepts in the kernel (the ring driver keeps a multishot accept); on epoll
/// they share one readiness.
const ACCEPTS_IN_FLIGHT: usize = 16;
/// How long the oldest writer of a fan-out's backlog may have waited for its turn
/// before the shard's readers stop taking input (until it is served): the lines a
/// member flood queues are bounded by what the writers can send, not by how fast
/// the joiners send. Above a 17,000-member fan-out's own drain (~160-180 ms), so one
/// big channel's message never pauses input. Measured filling 17,000 members (README
/// "Big channels"): 500 ms left 620-800 MiB once built, 200 ms about 200 MiB, and
/// built faster on epoll (33 against 36 s).
const MAX_BACKLOG_WAIT: Duration = Duration::from_millis(200);
/// Most lines' worth of bytes a TLS or WebSocket writer encodes in one turn (whole
/// lines); the rest of the queue waits for the next turn.
pub(crate) const MAX_ENCODED_PER_TURN: usize = 64 << 10;
/// How often a freezing shard looks whether its operations have completed and the
/// other shards have come as far.
const FREEZE_TICK: Duration = Duration::from_millis(1);
/// How long the accept loop pauses when the process is out of file descriptors.
pub(crate) const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A connected socket with owned-buffer operations.
#[allow(async_fn_in_trait)] // single-threaded runtimes: no Send bound wanted
pub trait Stream: 'static {
    /// Reads into `buf`'s spare capacity (from its start; the caller clears it).
    async fn read(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>);
    /// Writes the lines of `batch` with one write (vectored, or copied into one
    /// buffer); returns how many bytes the kernel took.
    async fn writev(&self, batch: Vec<Bytes>) -> (io::Result<usize>, Vec<Bytes>);
    /// Shuts both directions, so a pending read returns 0.
    fn shutdown(&self);
    /// The socket's descriptor, which the shard keeps as an opaque handle so a
    /// connection whose peer stopped reading can be reset ([`reset_stalled`]).
    fn raw_fd(&self) -> std::os::fd::RawFd;
}

/// A listening socket.
#[allow(async_fn_in_trait)]
pub trait Listener: 'static {
    /// The connection type it yields.
    type Stream: Stream;
    /// Accepts one connection.
    async fn accept(&self) -> io::Result<(Self::Stream, SocketAddr)>;
    /// Stops listening: a pending accept fails and queued connections are reset.
    fn close(&self);
    /// The socket's descriptor (a live upgrade hands it over).
    fn raw_fd(&self) -> RawFd;
    /// Makes every pending socket operation of this shard complete at once, with
    /// `ECANCELED` where it had not finished: a live upgrade stops the shard's I/O
    /// without losing a byte an operation took.
    fn cancel_operations();
    /// Undoes [`Listener::cancel_operations`] for operations started from now on
    /// (the upgrade failed).
    fn resume_operations();
    /// A connection handed over by a live upgrade, adopted by this driver.
    fn adopt(stream: std::net::TcpStream) -> io::Result<Self::Stream>;
}

/// A shard's socket operations in flight, counted so that a live upgrade's freeze
/// knows when the last has completed, and the gate that holds new ones while the
/// shard is frozen.
#[derive(Default)]
struct Operations {
    in_flight: Cell<usize>,
    frozen: Cell<bool>,
    thawed: tokio::sync::Notify,
}

impl Operations {
    /// Runs one socket operation, counted.
    async fn run<T>(&self, operation: impl std::future::Future<Output = T>) -> T {
        self.in_flight.set(self.in_flight.get() + 1);
        let outcome = operation.await;
        self.in_flight.set(self.in_flight.get() - 1);
        outcome
    }

    /// Returns at once unless the shard is frozen; then when it thaws (in this
    /// process: an upgrade that succeeded never thaws it).
    async fn wait_thawed(&self) {
        while self.frozen.get() {
            let thawed = self.thawed.notified();
            tokio::pin!(thawed);
            thawed.as_mut().enable();
            if !self.frozen.get() {
                return;
            }
            thawed.await;
        }
    }

    /// Whether an error is a live upgrade's cancellation of the operation.
    fn was_cancelled(&self, error: &io::Error) -> bool {
        self.frozen.get() && error.raw_os_error() == Some(libc::ECANCELED)
    }
}

/// What a listener's connections speak on top of TCP.
#[derive(Clone, Default)]
pub struct Transport {
    /// `Some` on a `--tls-listen` or `--websocket-tls-listen` address: every
    /// connection accepted here starts a session from this acceptor's current
    /// certificate.
    pub tls: Option<Arc<TlsAcceptor>>,
    /// A `--websocket-listen` or `--websocket-tls-listen` address: HTTP, then
    /// WebSocket frames (inside TLS, if any).
    pub websocket: bool,
}

/// One of a shard's listening sockets and what its connections speak.
pub struct ShardListener<L> {
    /// The socket, adopted by the shard's driver.
    pub listener: L,
    /// TLS, WebSocket, both or neither.
    pub transport: Transport,
}

/// The layers one connection's bytes pass through, shared by its reader and writer.
#[derive(Clone, Default)]
struct Layers {
    tls: Option<Rc<TlsSession>>,
    websocket: Option<Rc<WebSocketSession>>,
}

impl Layers {
    /// Whether the writer hands the socket encoded bytes rather than the lines.
    fn encodes(&self) -> bool {
        self.tls.is_some() || self.websocket.is_some()
    }

    /// Whether queued lines can be encoded: the TLS handshake and the WebSocket
    /// upgrade are done.
    fn carries_lines(&self) -> bool {
        self.tls.as_ref().is_none_or(|tls| tls.is_established())
            && self.websocket.as_ref().is_none_or(|ws| ws.is_open())
    }

    /// Whether a layer has bytes of its own to send (a handshake, an alert, an HTTP
    /// response, a pong, a close frame).
    fn wants_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.wants_write())
            || self.websocket.as_ref().is_some_and(|ws| ws.wants_write())
    }
}

/// Runs one shard until shutdown completes; called inside the driver's runtime.
/// `adopted` are connections a live upgrade handed over (their clients are in the
/// shard already).
pub async fn run_shard<L: Listener>(
    shard: Shard,
    listeners: Vec<ShardListener<L>>,
    adopted: Vec<(ClientId, L::Stream)>,
) {
    let id = shard.id;
    let shared = shard.shared.clone();
    let shard = Rc::new(RefCell::new(shard));
    let stopping = Rc::new(Cell::new(false));
    let turns = Rc::new(WriteTurns::default());
    let ops = Rc::new(Operations::default());
    let mut sockets: Vec<Rc<L>> = Vec::new();
    let mut kinds = Vec::new();
    for ShardListener {
        listener,
        transport,
    } in listeners
    {
        let listener = Rc::new(listener);
        sockets.push(listener.clone());
        kinds.push((
            listener.raw_fd(),
            ListenerKind::of(transport.tls.is_some(), transport.websocket),
        ));
        // Its accept loops say once, between them, that accepting paused.
        let starved = Rc::new(Cell::new(false));
        for _ in 0..ACCEPTS_IN_FLIGHT {
            tokio::task::spawn_local(accept_loop(
                listener.clone(),
                transport.clone(),
                shard.clone(),
                stopping.clone(),
                starved.clone(),
                turns.clone(),
                ops.clone(),
            ));
        }
    }
    for (client, stream) in adopted {
        let stream = Rc::new(stream);
        shard.borrow_mut().set_socket(client, stream.raw_fd());
        spawn_connection(
            stream,
            shard.clone(),
            client,
            Layers::default(),
            &turns,
            &ops,
        );
    }
    tokio::task::spawn_local(hand_out_write_turns(turns));
    tokio::task::spawn_local(flush_handoffs(shard.clone()));
    tokio::task::spawn_local(housekeeping(shard.clone()));

    // The pump runs here: other shards' hand-offs and log entries wake it, and so
    // does shutdown.
    while !shared.shutting_down.load(Ordering::Acquire) {
        shared.bus.woken(id).await;
        if shared.freeze.is_asked() {
            freeze::<L>(&shard, &ops, &kinds).await;
            continue;
        }
        shard.borrow_mut().pump();
    }

    info!(shard = id, "shutting down");
    stopping.set(true);
    for listener in &sockets {
        listener.close();
    }
    let mut shutdown = ShutdownSequence::begin(&mut shard.borrow_mut(), Instant::now());
    loop {
        let phase = shutdown.advance(&mut shard.borrow_mut(), Instant::now());
        let pause = match phase {
            ShutdownPhase::Sealing => Duration::from_millis(1),
            ShutdownPhase::Draining => Duration::from_millis(10),
            ShutdownPhase::Done => break,
        };
        tokio::time::sleep(pause).await;
    }
    let mut shard = shard.borrow_mut();
    shard.publish_counters();
    shard.log_summary();
}

/// A live upgrade's freeze of this shard ([`crate::state::freeze`]): cancels every
/// socket operation, waits for their completions (which bring in the last input and
/// say how much of each write went out), steps through the freeze until the
/// coordinator lets go, and thaws if it does (the upgrade failed).
async fn freeze<L: Listener>(
    shard: &Rc<RefCell<Shard>>,
    ops: &Operations,
    listeners: &[(RawFd, ListenerKind)],
) {
    ops.frozen.set(true);
    L::cancel_operations();
    while ops.in_flight.get() > 0 {
        tokio::time::sleep(FREEZE_TICK).await;
    }
    let shared = shard.borrow().shared.clone();
    let mut sequence = FreezeSequence::begin(&mut shard.borrow_mut());
    while shared.freeze.is_asked() {
        if sequence.step() != FreezeStep::Captured {
            sequence.advance(&mut shard.borrow_mut(), listeners);
        }
        tokio::time::sleep(FREEZE_TICK).await;
    }
    info!(shard = shard.borrow().id, "upgrade failed: serving on");
    L::resume_operations();
    ops.frozen.set(false);
    ops.thawed.notify_waiters();
    // Writers parked during the freeze are woken by their next line; those with
    // lines already queued are woken now.
    shard.borrow_mut().wake_writers();
}

/// Starts a connection's reader and writer tasks.
fn spawn_connection<S: Stream>(
    stream: Rc<S>,
    shard: Rc<RefCell<Shard>>,
    id: ClientId,
    layers: Layers,
    turns: &Rc<WriteTurns>,
    ops: &Rc<Operations>,
) {
    let span = tracing::debug_span!("conn", shard = id.shard, slot = id.slot.index);
    tokio::task::spawn_local(
        read_loop(
            stream.clone(),
            shard.clone(),
            id,
            layers.clone(),
            turns.clone(),
            ops.clone(),
        )
        .instrument(span.clone()),
    );
    tokio::task::spawn_local(
        write_loop(stream, shard, id, layers, turns.clone(), ops.clone()).instrument(span),
    );
}

/// Accepts until the shard stops. The accept is never abandoned (an in-flight
/// tokio-uring accept would keep the socket open): shutdown closes the listener, which
/// makes the pending accept fail.
async fn accept_loop<L: Listener>(
    listener: Rc<L>,
    transport: Transport,
    shard: Rc<RefCell<Shard>>,
    stopping: Rc<Cell<bool>>,
    starved: Rc<Cell<bool>>,
    turns: Rc<WriteTurns>,
    ops: Rc<Operations>,
) {
    // A TLS peer cannot read a plaintext ERROR before its handshake, nor an HTTP
    // client an IRC line: it is just closed.
    let refusal = |why: Bytes| (transport.tls.is_none() && !transport.websocket).then_some(why);
    loop {
        ops.wait_thawed().await;
        let accepted = ops.run(listener.accept()).await;
        if stopping.get() {
            if let Ok((stream, _)) = accepted {
                tokio::task::spawn_local(refuse(
                    stream,
                    refusal(Bytes::from_static(SHUTTING_DOWN)),
                ));
            }
            return;
        }
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                if starved.replace(false) {
                    info!("accepting again");
                }
                accepted
            }
            Err(error) if ops.was_cancelled(&error) => continue,
            Err(error) if is_resource_exhaustion(&error) => {
                // One warning per episode, not one per retry.
                if !starved.replace(true) {
                    warn!(%error, "accept failed: out of resources; pausing accepts");
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
            Err(error) => {
                debug!(%error, "accept failed");
                continue;
            }
        };
        let session = match transport
            .tls
            .as_deref()
            .map(TlsAcceptor::session)
            .transpose()
        {
            Ok(session) => session.map(|session| Rc::new(TlsSession::new(session))),
            Err(error) => {
                warn!(%error, "cannot start a TLS session; closing the connection");
                stream.shutdown();
                continue;
            }
        };
        let admitted = shard.borrow_mut().accept(peer, Instant::now());
        match admitted {
            Ok(id) => {
                let span = tracing::debug_span!("conn", shard = id.shard, slot = id.slot.index, %peer, tls = session.is_some(), websocket = transport.websocket);
                span.in_scope(|| {
                    shard
                        .borrow_mut()
                        .connected(id, session.is_some(), transport.websocket)
                });
                let stream = Rc::new(stream);
                shard.borrow_mut().set_socket(id, stream.raw_fd());
                let layers = Layers {
                    tls: session,
                    websocket: transport
                        .websocket
                        .then(|| Rc::new(WebSocketSession::new())),
                };
                tokio::task::spawn_local(
                    read_loop(
                        stream.clone(),
                        shard.clone(),
                        id,
                        layers.clone(),
                        turns.clone(),
                        ops.clone(),
                    )
                    .instrument(span.clone()),
                );
                tokio::task::spawn_local(
                    write_loop(
                        stream,
                        shard.clone(),
                        id,
                        layers,
                        turns.clone(),
                        ops.clone(),
                    )
                    .instrument(span),
                );
            }
            Err(refused) => {
                debug!(%peer, %refused, "connection refused");
                let line = closing_link(peer.ip(), refused);
                tokio::task::spawn_local(refuse(stream, refusal(line)));
            }
        }
    }
}

/// The refusal while shutting down, for the drivers' accept paths.
pub(crate) const SHUTTING_DOWN: &[u8] = SHUTTING_DOWN_LINE;

/// Tells a connection that is not admitted why it is being closed.
async fn refuse<S: Stream>(stream: S, why: Option<Bytes>) {
    if let Some(why) = why {
        let _ = stream.writev(vec![why]).await;
    }
    stream.shutdown();
}

/// Shuts a listening socket: wakes a pending accept with an error and resets the
/// connections still in its backlog. The descriptor is closed when the listener drops.
pub(crate) fn shutdown_listener(fd: std::os::fd::RawFd) {
    // SAFETY: shutdown(2) on a descriptor the listener owns; no memory is involved.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

/// Resets the connections the shard found stalled (a peer that stopped reading while
/// output was queued, past `--write-timeout`): `SO_LINGER` 0, then shut both ways.
/// The pending write fails and the pending read returns, so both tasks end, the slot
/// is freed, and closing the descriptor sends RST and drops whatever the kernel still
/// held for it.
pub(crate) fn reset_stalled(shard: &mut Shard) {
    for fd in shard.take_stalled_sockets() {
        // SAFETY: setsockopt and shutdown on a descriptor owned by a connection whose
        // slot still exists: its driver holds the descriptor open until it frees the
        // slot (the writer task's stream; the ring driver's `Conn`), which cannot
        // happen during this call.
        unsafe {
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
            libc::shutdown(fd, libc::SHUT_RDWR);
        }
    }
}

pub(crate) fn is_resource_exhaustion(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Owns the connection's only read: feeds the shard (through the TLS and WebSocket
/// sessions, if any) until the peer is gone.
async fn read_loop<S: Stream>(
    stream: Rc<S>,
    shard: Rc<RefCell<Shard>>,
    id: ClientId,
    layers: Layers,
    turns: Rc<WriteTurns>,
    ops: Rc<Operations>,
) {
    let mut buf = Vec::with_capacity(READ_BUFFER_MIN);
    loop {
        ops.wait_thawed().await;
        // Before the read, so input not taken stays in the socket (and the peer
        // feels the backpressure), never in a paused task.
        turns.wait_for_backlog().await;
        buf.clear();
        let (result, returned) = ops.run(stream.read(buf)).await;
        buf = returned;
        let n = match result {
            Err(error) if ops.was_cancelled(&error) => continue,
            Ok(0) => {
                shard.borrow_mut().note_read();
                break;
            }
            Ok(n) => {
                shard.borrow_mut().note_read();
                n
            }
            Err(error) => {
                debug!(%error, "read failed");
                break;
            }
        };
        let open = match (&layers.tls, &layers.websocket) {
            (None, None) => {
                shard.borrow_mut().receive(id, &buf[..n], Instant::now());
                true
            }
            (Some(tls), websocket) => receive_tls(
                tls,
                websocket.as_deref(),
                &mut buf[..n],
                &mut shard.borrow_mut(),
                id,
            ),
            (None, Some(websocket)) => {
                receive_websocket(websocket, &buf[..n], &mut shard.borrow_mut(), id)
            }
        };
        if !open {
            break;
        }
        let capacity = buf.capacity();
        if n == capacity && capacity < READ_BUFFER_MAX {
            buf = Vec::with_capacity((capacity * 4).min(READ_BUFFER_MAX));
        } else if n <= READ_BUFFER_MIN && capacity > READ_BUFFER_MIN {
            buf = Vec::with_capacity(READ_BUFFER_MIN);
        }
    }
    shard.borrow_mut().peer_closed(id);
}

/// Feeds ciphertext to a TLS session, and the plaintext to the WebSocket session on
/// a `wss://` listener; returns whether the connection stays open. Wakes the writer
/// when a session has something to send (handshake messages, alerts, an HTTP
/// response) or just became able to encode what is queued.
fn receive_tls(
    tls: &TlsSession,
    websocket: Option<&WebSocketSession>,
    ciphertext: &mut [u8],
    shard: &mut Shard,
    id: ClientId,
) -> bool {
    let was_established = tls.is_established();
    let now = Instant::now();
    let mut websocket_open = true;
    let outcome = match websocket {
        None => tls.receive(ciphertext, shard, id, &mut |shard, plaintext| {
            shard.receive(id, plaintext, now)
        }),
        Some(websocket) => {
            let was_open = websocket.is_open();
            let outcome = tls.receive(ciphertext, shard, id, &mut |shard, plaintext| {
                if websocket_open {
                    websocket_open = websocket.receive(plaintext, shard, id, now) == Received::Open;
                }
            });
            if websocket.wants_write() || websocket.is_open() != was_open {
                wake_writer(shard, id);
            }
            outcome
        }
    };
    if tls.wants_write() || tls.is_established() != was_established {
        if let Some(client) = shard.client_mut(id) {
            client.outbox.wake_writer();
        }
    }
    match outcome {
        Ok(Received::Open) => websocket_open,
        Ok(Received::PeerClosed) => false,
        Err(failure) => {
            debug!(%failure, "closing the connection");
            if let TlsFailure::Handshake(_) = failure {
                shard.note_tls_handshake_failure();
            }
            false
        }
    }
}

/// Feeds bytes read to a WebSocket session (plain HTTP listener); returns whether the
/// connection stays open. Wakes the writer when the session has something to send
/// (the HTTP response, a pong, a close) or was just upgraded.
fn receive_websocket(
    websocket: &WebSocketSession,
    data: &[u8],
    shard: &mut Shard,
    id: ClientId,
) -> bool {
    let was_open = websocket.is_open();
    let outcome = websocket.receive(data, shard, id, Instant::now());
    if websocket.wants_write() || websocket.is_open() != was_open {
        wake_writer(shard, id);
    }
    outcome == Received::Open
}

fn wake_writer(shard: &mut Shard, id: ClientId) {
    if let Some(client) = shard.client_mut(id) {
        client.outbox.wake_writer();
    }
}

/// What the writer should do next.
enum WriterTurn {
    Write,
    Finish,
}

/// Drains the outbox with one vectored write at a time; on close, flushes, shuts the
/// socket and frees the client's slot.
///
/// On a TLS or WebSocket connection each turn first finishes any encoded bytes a short
/// write left, else encodes everything queued (frames, then records) in one go and
/// writes it with one writev. Lines queued before the TLS handshake or the WebSocket
/// upgrade completes wait in the outbox. A closing connection ends with a WebSocket
/// close frame, then TLS `close_notify`.
async fn write_loop<S: Stream>(
    stream: Rc<S>,
    shard: Rc<RefCell<Shard>>,
    id: ClientId,
    layers: Layers,
    turns: Rc<WriteTurns>,
    ops: Rc<Operations>,
) {
    // Lines taken from the outbox and not yet written (plaintext) or not yet encoded
    // (TLS, WebSocket). Borrowed from the shard's pool only while non-empty.
    let mut batch: Vec<Bytes> = Vec::new();
    // Encoded bytes not yet accepted by the kernel (one buffer), pooled the same way.
    let mut encoded: Vec<Bytes> = Vec::new();
    let mut close_notified = false;
    loop {
        ops.wait_thawed().await;
        let mut lane = Lane::Backlog;
        let turn = poll_fn(|cx| {
            let mut shard = shard.borrow_mut();
            let Some(client) = shard.client_mut(id) else {
                return Poll::Ready(WriterTurn::Finish);
            };
            if client.outbox.is_urgent() {
                lane = Lane::Urgent;
            }
            let has_lines = !batch.is_empty() || client.outbox.has_queued();
            let has_output = if layers.encodes() {
                !encoded.is_empty() || layers.wants_write() || (has_lines && layers.carries_lines())
            } else {
                has_lines
            };
            if has_output {
                Poll::Ready(WriterTurn::Write)
            } else if client.closing {
                Poll::Ready(WriterTurn::Finish)
            } else {
                client.outbox.park_writer(cx.waker());
                Poll::Pending
            }
        })
        .await;
        if let WriterTurn::Finish = turn {
            if let Some(websocket) = layers.websocket.as_deref().filter(|ws| ws.is_open()) {
                if layers.carries_lines() {
                    websocket.close(1000, "");
                    continue;
                }
            }
            match &layers.tls {
                Some(tls) if tls.is_established() && !close_notified => {
                    close_notified = true;
                    tls.send_close_notify();
                    continue;
                }
                _ => break,
            }
        }
        // Wait for this pass's turn, then take everything queued by then.
        turns.take(lane).await;
        if ops.frozen.get() {
            continue;
        }
        let output = {
            let mut shard = shard.borrow_mut();
            if layers.encodes() {
                if encoded.is_empty() {
                    if let Err(failure) =
                        encode_queued(&layers, &mut shard, id, &mut batch, &mut encoded)
                    {
                        shard.write_failed(id, &std::io::Error::other(failure));
                        break;
                    }
                }
                if encoded.is_empty() {
                    continue;
                }
                std::mem::take(&mut encoded)
            } else {
                take_lines(&mut shard, id, &mut batch);
                std::mem::take(&mut batch)
            }
        };
        let (result, mut output) = ops.run(stream.writev(output)).await;
        let mut shard = shard.borrow_mut();
        let result = match result {
            Err(error) if ops.was_cancelled(&error) => Ok(0),
            result => result,
        };
        if ops.frozen.get() && !layers.encodes() {
            // A live upgrade stopped the write: what it did not write goes back to
            // the outbox, where the capture finds it.
            if let Ok(written) = result {
                consume_written(&mut output, written);
                shard.note_written(id, written);
                if let Some(client) = shard.client_mut(id) {
                    client.outbox.wrote(written);
                    client.outbox.put_back(output.drain(..));
                }
            }
            shard.batch_pool().give_back(output);
            continue;
        }
        match result {
            Ok(written) => {
                consume_written(&mut output, written);
                shard.note_written(id, written);
                let unwritten = if layers.encodes() {
                    // The outbox was told when the lines were encoded.
                    &mut encoded
                } else {
                    if let Some(client) = shard.client_mut(id) {
                        client.outbox.wrote(written);
                    }
                    &mut batch
                };
                *unwritten = output;
                if unwritten.is_empty() {
                    shard.batch_pool().give_back(std::mem::take(unwritten));
                }
            }
            Err(error) => {
                shard.write_failed(id, &error);
                break;
            }
        }
    }
    stream.shutdown();
    shard.borrow_mut().release(id);
}

/// Which queue a writer waits in for its turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    /// Its queue holds a line for this client alone (a reply, a private message).
    Urgent,
    /// Only channel lines: a fan-out's backlog.
    Backlog,
}

/// Bounds the writes a shard's writers start per scheduler pass to
/// [`WRITES_PER_PASS`] per [`Lane`], each lane in the order its writers asked, as
/// the ring driver's turns do (`WRITERS_PER_TURN`, `SMALL_WAKE`). A pass ends when
/// the turnstile task ([`hand_out_write_turns`]), queued behind every task already
/// runnable, is polled.
///
/// Without the urgent lane, a command's answer waited behind every member a JOIN had
/// just woken: while a channel of 5,000 filled, ~1,900 writers waited, a joiner's
/// welcome and NAMES took ~30 passes each, and the 64 joiners loadgen keeps in flight
/// brought one read per pass; every member then wrote ~35 lines a write.
#[derive(Default)]
struct WriteTurns {
    lanes: [Turns; 2],
    /// The turnstile, parked while no write started this pass.
    turnstile: RefCell<Option<std::task::Waker>>,
    /// Readers waiting for the backlog to come within [`MAX_BACKLOG_WAIT`].
    paused_readers: RefCell<Vec<std::task::Waker>>,
}

/// One lane of [`WriteTurns`].
#[derive(Default)]
struct Turns {
    /// Writes started this pass.
    started: Cell<u64>,
    /// Tickets handed out to writers that had to wait.
    issued: Cell<u64>,
    /// Waiting tickets below this one may write.
    served: Cell<u64>,
    /// Writers waiting for a turn, in ticket order, and since when.
    waiting: RefCell<std::collections::VecDeque<(std::task::Waker, Instant)>>,
}

impl WriteTurns {
    fn lane(&self, lane: Lane) -> &Turns {
        &self.lanes[lane as usize]
    }

    /// Returns when the caller may start a write: at once while its lane has turns
    /// left this pass and nobody waits in it, else at a later pass, in order.
    async fn take(&self, lane: Lane) {
        let turns = self.lane(lane);
        if turns.issued.get() == turns.served.get() && turns.started.get() < WRITES_PER_PASS {
            self.start(lane);
            return;
        }
        let ticket = turns.issued.get();
        turns.issued.set(ticket + 1);
        let mut queued = false;
        poll_fn(|cx| {
            if ticket < turns.served.get() {
                return Poll::Ready(());
            }
            if !std::mem::replace(&mut queued, true) {
                let since = Instant::now();
                turns
                    .waiting
                    .borrow_mut()
                    .push_back((cx.waker().clone(), since));
            }
            Poll::Pending
        })
        .await;
    }

    /// Counts a write started this pass; the first one wakes the turnstile, which
    /// then runs behind everything already runnable: the end of the pass.
    fn start(&self, lane: Lane) {
        let first = self.lanes.iter().all(|turns| turns.started.get() == 0);
        let turns = self.lane(lane);
        turns.started.set(turns.started.get() + 1);
        if first {
            if let Some(turnstile) = self.turnstile.borrow_mut().take() {
                turnstile.wake();
            }
        }
    }

    /// Whether the oldest writer of the backlog has waited longer than
    /// [`MAX_BACKLOG_WAIT`].
    fn backlog_too_old(&self) -> bool {
        self.lane(Lane::Backlog)
            .waiting
            .borrow()
            .front()
            .is_some_and(|(_, since)| since.elapsed() > MAX_BACKLOG_WAIT)
    }

    /// Returns once the backlog is within [`MAX_BACKLOG_WAIT`] (at once, nearly
    /// always).
    async fn wait_for_backlog(&self) {
        poll_fn(|cx| {
            if self.backlog_too_old() {
                self.paused_readers.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
    }

    /// Whether a write started this pass or a writer waits.
    fn is_busy(&self) -> bool {
        self.lanes
            .iter()
            .any(|turns| turns.started.get() > 0 || !turns.waiting.borrow().is_empty())
    }
}

/// Ends each pass: lets the next [`WRITES_PER_PASS`] waiting writers of each lane
/// write.
async fn hand_out_write_turns(turns: Rc<WriteTurns>) {
    loop {
        poll_fn(|cx| {
            if turns.is_busy() {
                Poll::Ready(())
            } else {
                *turns.turnstile.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        for lane in &turns.lanes {
            let mut waiting = lane.waiting.borrow_mut();
            let admitted = (waiting.len() as u64).min(WRITES_PER_PASS);
            lane.started.set(admitted);
            lane.served.set(lane.served.get() + admitted);
            for (writer, _) in waiting.drain(..admitted as usize) {
                writer.wake();
            }
        }
        if !turns.backlog_too_old() {
            for reader in turns.paused_readers.borrow_mut().drain(..) {
                reader.wake();
            }
        }
        // Runs again behind the writers just let in, ending their pass.
        tokio::task::yield_now().await;
    }
}

/// Moves queued lines behind whatever `batch` still holds, borrowing a batch vector
/// from the shard's pool if `batch` has none.
fn take_lines(shard: &mut Shard, id: ClientId, batch: &mut Vec<Bytes>) {
    if batch.capacity() == 0 {
        *batch = shard.batch_pool().take();
    }
    if let Some(client) = shard.client_mut(id) {
        client.outbox.take_batch(batch, MAX_BATCH_LINES);
    }
}

/// TLS and WebSocket: once the handshake (and upgrade) is done, encodes what is queued
/// (up to 64 KiB a turn; the rest waits in `batch`) behind what the sessions owe
/// (handshake messages, alerts, the HTTP response, pongs, a close frame), then moves
/// it into `encoded` as one buffer for one writev. WebSocket frames are built in one
/// buffer that TLS then encrypts into shared records. Before the handshakes complete,
/// queued lines stay in the outbox.
fn encode_queued(
    layers: &Layers,
    shard: &mut Shard,
    id: ClientId,
    batch: &mut Vec<Bytes>,
    encoded: &mut Vec<Bytes>,
) -> Result<(), TlsFailure> {
    let tls_ready = layers.tls.as_ref().is_none_or(|tls| tls.is_established());
    let mut taken = 0;
    let mut plaintext = Vec::new();
    if let Some(websocket) = layers.websocket.as_deref().filter(|_| tls_ready) {
        websocket.take_output_into(&mut plaintext);
        if websocket.is_open() {
            take_lines(shard, id, batch);
            taken = websocket.frame_lines(batch, &mut plaintext, MAX_ENCODED_PER_TURN);
        }
    } else if let Some(tls) = layers.tls.as_deref().filter(|_| tls_ready) {
        take_lines(shard, id, batch);
        taken = tls.encrypt(batch)?;
    }
    if taken > 0 {
        if let Some(client) = shard.client_mut(id) {
            client.outbox.wrote(taken);
        }
    }
    if batch.is_empty() && batch.capacity() > 0 {
        shard.batch_pool().give_back(std::mem::take(batch));
    }
    let output = match layers.tls.as_deref() {
        Some(tls) => {
            if !plaintext.is_empty() {
                tls.encrypt_plaintext(&plaintext)?;
            }
            tls.take_ciphertext()
        }
        None => (!plaintext.is_empty()).then(|| Bytes::from(plaintext)),
    };
    if let Some(output) = output {
        if encoded.capacity() == 0 {
            *encoded = shard.batch_pool().take();
        }
        encoded.push(output);
    }
    Ok(())
}

/// Drops the fully written lines from the front of `batch` and advances into a
/// partly written one.
pub(crate) fn consume_written(batch: &mut Vec<Bytes>, mut written: usize) {
    let mut done = 0;
    for line in batch.iter_mut() {
        if written >= line.len() {
            written -= line.len();
            done += 1;
        } else {
            line.advance(written);
            break;
        }
    }
    batch.drain(..done);
}

/// Sends what this shard owes other shards, once per scheduler pass.
async fn flush_handoffs(shard: Rc<RefCell<Shard>>) {
    loop {
        poll_fn(|cx| {
            let mut shard = shard.borrow_mut();
            if shard.has_outgoing() {
                Poll::Ready(())
            } else {
                shard.park_handoff_flusher(cx.waker());
                Poll::Pending
            }
        })
        .await;
        shard.borrow_mut().flush_handoffs();
    }
}

/// Flood-control resumption, liveness checks and counter publication.
async fn housekeeping(shard: Rc<RefCell<Shard>>) {
    let mut ticker = tokio::time::interval(FLOOD_TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut housekeeping = Housekeeping::new(Instant::now());
    loop {
        ticker.tick().await;
        housekeeping.tick(&mut shard.borrow_mut(), Instant::now());
    }
}

/// What every driver does on each [`FLOOD_TICK`]: let throttled input through, and
/// each [`LIVENESS_TICK`] check liveness, reset stalled sockets, sweep the
/// per-source table and publish counters.
pub(crate) struct Housekeeping {
    last_liveness: Instant,
    sweep_turn: usize,
}

impl Housekeeping {
    pub(crate) fn new(now: Instant) -> Housekeeping {
        Housekeeping {
            last_liveness: now,
            sweep_turn: 0,
        }
    }

    /// One tick; call about every [`FLOOD_TICK`].
    pub(crate) fn tick(&mut self, shard: &mut Shard, now: Instant) {
        if shard.shared.freeze.is_asked() {
            // A live upgrade is freezing the shard: nothing may change but what the
            // freeze sequence does (no resumed input, no ping timeout).
            return;
        }
        shard.farewell_for_upgrade();
        if shard.has_throttled() {
            shard.resume_throttled(now);
        }
        if now.duration_since(self.last_liveness) >= LIVENESS_TICK {
            self.last_liveness = now;
            shard.check_liveness(now);
            reset_stalled(shard);
            self.sweep_turn += 1;
            let shards = shard.shared.config.shards;
            shard
                .shared
                .sources
                .sweep(self.sweep_turn * shards + shard.id as usize, now);
            shard.publish_counters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_write_keeps_the_unwritten_tail_in_order() {
        let mut batch = vec![
            Bytes::from_static(b"aaaa"),
            Bytes::from_static(b"bbbb"),
            Bytes::from_static(b"cccc"),
        ];
        consume_written(&mut batch, 6);
        assert_eq!(
            batch,
            vec![Bytes::from_static(b"bb"), Bytes::from_static(b"cccc")]
        );
        consume_written(&mut batch, 6);
        assert!(batch.is_empty());
    }

    #[test]
    fn an_urgent_writer_goes_ahead_of_a_fan_outs_backlog_which_keeps_its_order() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        tokio::task::LocalSet::new().block_on(&runtime, async {
            let turns = Rc::new(WriteTurns::default());
            tokio::task::spawn_local(hand_out_write_turns(turns.clone()));
            let order = Rc::new(RefCell::new(Vec::new()));
            let write = |lane, name: usize| {
                let (turns, order) = (turns.clone(), order.clone());
                tokio::task::spawn_local(async move {
                    turns.take(lane).await;
                    order.borrow_mut().push(name);
                })
            };
            let backlog = 8 * WRITES_PER_PASS as usize;
            let mut writers: Vec<_> = (0..backlog).map(|i| write(Lane::Backlog, i)).collect();
            // Every backlog writer has asked for its turn before the reply comes.
            tokio::task::yield_now().await;
            writers.push(write(Lane::Urgent, usize::MAX));
            for writer in writers {
                writer.await.expect("a writer");
            }
            let order = order.borrow();
            let reply_at = order.iter().position(|&name| name == usize::MAX);
            assert!(
                reply_at.is_some_and(|at| at <= 2 * WRITES_PER_PASS as usize),
                "{reply_at:?}"
            );
            let backlog_order: Vec<usize> = order
                .iter()
                .copied()
                .filter(|&name| name != usize::MAX)
                .collect();
            assert_eq!(backlog_order, (0..backlog).collect::<Vec<_>>());
        });
    }
}
