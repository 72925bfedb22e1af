//! The `ring` driver: ringchat's own completion loop on one io_uring per shard.
//!
//! It runs the same shard core with the same calls, batching policy and shutdown
//! sequence as the tokio drivers (`super::run_shard`), but as one loop instead of
//! tasks:
//!
//! - **One `io_uring_enter` per turn**: every operation prepared during a turn is
//!   submitted by the single enter that begins the next. It waits for a completion
//!   only when no woken writer is left to service: a fan-out is written a slice of
//!   writers per turn (`WRITERS_PER_TURN`), and between slices the enter submits the
//!   slice's sends and collects what completed meanwhile without waiting
//!   (`sys::Ring::collect_ready`), so input is taken in while a fan-out goes out, as
//!   an epoll loop polls for readiness between tasks. A submission queue that fills
//!   mid-turn enters once more. All are counted as `enters`.
//! - **Accept**: one multishot accept per listener, re-armed only when the kernel ends
//!   it (descriptor exhaustion pauses it for `ACCEPT_BACKOFF`, warned once).
//! - **Receive**: one multishot receive per connection into the shard's provided-buffer
//!   ring; the shard consumes the bytes at once (keeping only a partial line in the
//!   client's input) and the buffer goes straight back. An idle connection holds no
//!   buffer. `ENOBUFS` (ring empty) ends the multishot with the data still in the
//!   socket; it is re-armed with the next submission, after this turn gave its
//!   buffers back.
//! - **Send**: at most one plain send in flight per connection, carrying everything
//!   queued (up to `SEND_BYTES`): a lone line as it is, several copied into one
//!   buffer from a per-shard pool (see [`sys::Output`], [`send_buffers`]). Writers
//!   are not tasks: an outbox parks a [`sys::writer_waker`] that lists its
//!   connection, and a turn services the listed connections after the input and
//!   hand-offs it collected are handled, so each gets one write for all of them.
//! - **TLS**: a connection accepted on a TLS listener carries a [`TlsSession`] (rustls'
//!   unbuffered API, see `super::tls`). Its received ciphertext is decrypted in place
//!   in the provided buffer and the plaintext goes to the shard before the buffer goes
//!   back, so a TLS connection holds no receive buffer either; its writer turn
//!   encrypts everything queued (up to `SEND_BYTES` of plaintext, in records of up to
//!   16 KiB) straight into one pooled send buffer. Kernel TLS is not used: this
//!   kernel has no `CONFIG_TLS` (README "TLS").
//! - **WebSocket**: a connection accepted on a WebSocket listener carries a
//!   [`WebSocketSession`] (see `super::websocket`) the received bytes (or TLS
//!   plaintext) go through before the shard; its writer turn frames everything queued
//!   into the send buffer (or into the plaintext TLS then encrypts).
//! - **Wake-ups** from other shards arrive as the completion of an eventfd read kept
//!   in flight (`Bus::attach_eventfd`); timers are ring timeouts.
//!
//! A connection's descriptor stays open until its receive and its send (if any) have
//! completed, so no operation ever refers to a closed or reused descriptor; the
//! unsafe part and its invariants are all in [`sys`].

mod send_buffers;
mod sys;

use super::tls::TlsSession;
use super::websocket::WebSocketSession;
use super::{
    is_resource_exhaustion, receive_tls, receive_websocket, shutdown_listener, Housekeeping,
    Transport, ACCEPT_BACKOFF, FLOOD_TICK, SHUTTING_DOWN,
};
use crate::shard::freeze::{FreezeSequence, FreezeStep};
use crate::shard::shutdown::{ShutdownPhase, ShutdownSequence};
use crate::shard::Shard;
use crate::state::handover::ListenerKind;
use crate::state::outbox::MAX_BATCH_LINES;
use crate::state::slab::{Slab, SlotKey};
use crate::state::ClientId;
use crate::tls::TlsAcceptor;
use bytes::Bytes;
use send_buffers::SendBuffers;
use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use sys::{Completion, Output, Ring, Timer};
use tracing::{debug, info, warn};

pub use sys::probe;

/// How often the sealing phase of a shutdown looks whether every shard has sealed.
const SEAL_TICK: Duration = Duration::from_millis(1);
/// How often the draining phase looks whether every connection has gone.
const DRAIN_TICK: Duration = Duration::from_millis(10);
/// Most writers serviced per loop turn. A fan-out wakes every member's writer at
/// once; servicing them a slice at a time, with a non-waiting enter between slices,
/// sends the first slice's writes while input that arrived meanwhile is taken in,
/// and that input's lines still join the writes of the writers not yet serviced.
const WRITERS_PER_TURN: usize = 64;
/// A completion that woke at most this many writers (a reply, a line to a small
/// channel or a private message) had them serviced ahead of a big fan-out's backlog,
/// up to [`WRITERS_PER_TURN`] of them a turn besides the backlog's own slice. Without
/// it, a bystander's line waited behind every member of a big channel that a JOIN or
/// PART had just woken (issue 34: churn in a channel of 3,000).
const SMALL_WAKE: usize = WRITERS_PER_TURN;
/// A send carries everything queued until it holds this many bytes (the lines of
/// the last batch taken may pass it).
const SEND_BYTES: usize = 64 << 10;
/// Longest the shard waits at the very end for cancelled operations to complete.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(1);

/// One accepted connection, as the driver sees it (the client itself lives in the
/// shard). Small on purpose: this is the driver's whole cost per idle connection.
struct Conn {
    stream: TcpStream,
    client: ClientId,
    /// A multishot receive is armed.
    receiving: bool,
    /// A vectored write is in flight.
    sending: bool,
    /// The read side is done (end of stream or an error): not re-armed.
    read_done: bool,
    /// The writer finished: socket shut down, slot released in the shard.
    released: bool,
    /// Bytes taken but not yet written (the tail of a partial write); holds no
    /// allocation otherwise.
    unsent: Vec<u8>,
    /// The TLS session on a TLS listener's connection (boxed: a plaintext connection
    /// pays one pointer for TLS existing).
    tls: Option<Box<TlsSession>>,
    /// TLS: the `close_notify` alert was queued, so a closing writer finishes next.
    close_notified: bool,
    /// The WebSocket session on a WebSocket listener's connection (boxed, as `tls`).
    websocket: Option<Box<WebSocketSession>>,
}

/// A listening socket and whether its multishot accept is armed.
struct Listener {
    socket: TcpListener,
    accepting: bool,
    /// TLS (each connection starts a session from the acceptor's current
    /// certificate: a reload changes new handshakes only), WebSocket, both or neither.
    transport: Transport,
}

/// The two queues of woken writers ([`Driver::service_writers`]).
#[derive(Clone, Copy)]
enum Lane {
    Urgent,
    Backlog,
}

/// A shard on the ring driver.
pub struct Driver {
    /// The shard's io_uring and the memory its operations use; dropped first, after
    /// [`Driver::stop`] has let every operation complete (or leaked what had not).
    ring: Ring,
    /// The sans-IO core this loop feeds.
    shard: Shard,
    /// Listening sockets, open until the driver is dropped (shut down at stop).
    listeners: Vec<Listener>,
    /// Accepted connections, keyed by the token their operations carry; one is
    /// removed (closing its descriptor) only once nothing refers to it.
    conns: Slab<Conn>,
    /// The wake-up eventfd, owned by the bus (so open for as long as a read of it
    /// can be in flight).
    eventfd: RawFd,
    /// `None` while running; how far shutdown has got once it began.
    shutdown: Option<ShutdownSequence>,
    /// Flood resumption, liveness and counters, every [`FLOOD_TICK`].
    housekeeping: Housekeeping,
    /// When housekeeping last ran (the tick timer also fires faster during shutdown).
    last_housekeeping: Instant,
    /// Accepting is paused after descriptor exhaustion until the backoff timer fires.
    starved: bool,
    /// Scratch list of writers to service, swapped with the waker's list.
    ready: Vec<u64>,
    /// Scratch list of the lines taken from an outbox for one send.
    lines: Vec<Bytes>,
    /// Buffers of completed sends, kept for the next ones.
    send_buffers: SendBuffers,
    /// Scratch for the plaintext of several lines encrypted as one run of records
    /// (rustls encrypts one slice at a time); one per shard, not per connection.
    plaintext: Vec<u8>,
    /// Writers woken by big wake-ups and not yet serviced, in the order they were woken.
    writers: VecDeque<u64>,
    /// Writers woken by small wake-ups ([`SMALL_WAKE`]), serviced first, in order.
    urgent: VecDeque<u64>,
    /// `Some` while a live upgrade freezes the shard: no operation starts.
    freeze: Option<Freezing>,
    /// Connections handed over by a live upgrade, started by [`Driver::run`].
    adopted: Vec<(ClientId, TcpStream)>,
}

/// How far a live upgrade's freeze has got on this shard.
enum Freezing {
    /// Cancelled every socket operation; waits for their completions.
    Stopping,
    /// Every socket operation has completed; the shard steps through the freeze.
    Sequence(FreezeSequence),
}

impl Driver {
    /// Builds the shard's ring and wake-up eventfd, or says why the kernel refused.
    pub fn new(
        shard: Shard,
        listeners: Vec<(TcpListener, Transport)>,
        adopted: Vec<(ClientId, TcpStream)>,
    ) -> io::Result<Driver> {
        let ring = Ring::new(shard.shared.config.ring_buffers)?;
        sys::log_setup(&ring);
        let eventfd = shard
            .shared
            .bus
            .attach_eventfd(shard.id, sys::eventfd()?)
            .ok_or_else(|| io::Error::other("the shard's wake-up eventfd is attached already"))?;
        let now = Instant::now();
        Ok(Driver {
            ring,
            listeners: listeners
                .into_iter()
                .map(|(socket, transport)| Listener {
                    socket,
                    accepting: false,
                    transport,
                })
                .collect(),
            conns: Slab::default(),
            eventfd,
            shutdown: None,
            housekeeping: Housekeeping::new(now),
            last_housekeeping: now,
            starved: false,
            ready: Vec::new(),
            lines: Vec::new(),
            send_buffers: SendBuffers::default(),
            plaintext: Vec::new(),
            writers: VecDeque::new(),
            urgent: VecDeque::new(),
            freeze: None,
            adopted,
            shard,
        })
    }

    /// Serves until shutdown completes.
    pub fn run(mut self) -> io::Result<()> {
        self.ring.read_eventfd(self.eventfd)?;
        self.ring.arm(Timer::Tick, FLOOD_TICK)?;
        for (id, stream) in std::mem::take(&mut self.adopted) {
            self.adopt(id, stream)?;
        }
        // Wake-ups before the eventfd was attached went to the bus's `Notify` only.
        self.shard.pump();
        if self.shard.shared.shutting_down.load(Ordering::Acquire) {
            self.begin_stopping();
        }
        while !self.is_done() {
            self.rearm_accepts()?;
            if self.writers.is_empty() && self.urgent.is_empty() {
                self.ring.submit_and_wait()?;
            } else {
                self.ring.collect_ready()?;
            }
            while let Some(completion) = self.ring.next_completion() {
                self.complete(completion)?;
                self.sort_woken();
            }
            let enters = self.ring.take_enters();
            self.shard.note_enters(enters);
            if self.shard.has_outgoing() {
                self.shard.flush_handoffs();
            }
            self.service_writers()?;
            self.advance_shutdown();
            self.advance_freeze()?;
        }
        self.stop();
        self.shard.publish_counters();
        self.shard.log_summary();
        Ok(())
    }

    fn complete(&mut self, completion: Completion) -> io::Result<()> {
        match completion {
            Completion::Accepted {
                listener,
                result,
                more,
            } => {
                let transport = self
                    .listeners
                    .get_mut(listener)
                    .map(|listener| {
                        listener.accepting &= more;
                        listener.transport.clone()
                    })
                    .unwrap_or_default();
                self.accepted(result, transport)?;
            }
            Completion::Received { conn, result, more } => self.received(conn, result, more)?,
            Completion::Sent {
                conn,
                result,
                output,
            } => self.sent(conn, result, output)?,
            Completion::Woken => {
                self.shard.shared.bus.take_eventfd_wake(self.shard.id);
                if self.shutdown.is_none() {
                    if self.shard.shared.shutting_down.load(Ordering::Acquire) {
                        self.begin_stopping();
                    } else {
                        self.shard.pump();
                    }
                }
                self.ring.read_eventfd(self.eventfd)?;
            }
            Completion::Fired(Timer::Tick) => {
                let now = Instant::now();
                if now.duration_since(self.last_housekeeping) >= FLOOD_TICK {
                    self.last_housekeeping = now;
                    self.housekeeping.tick(&mut self.shard, now);
                    self.send_buffers.trim();
                    if self.plaintext.capacity() > SEND_BYTES {
                        self.plaintext = Vec::new();
                    }
                }
                let next = match self.shutdown.as_ref().map(ShutdownSequence::phase) {
                    None if self.freeze.is_some() => SEAL_TICK,
                    None => FLOOD_TICK,
                    Some(ShutdownPhase::Sealing) => SEAL_TICK,
                    Some(ShutdownPhase::Draining | ShutdownPhase::Done) => DRAIN_TICK,
                };
                self.ring.arm(Timer::Tick, next)?;
            }
            Completion::Fired(Timer::Backoff) => self.starved = false,
            Completion::Cancelled => {}
        }
        Ok(())
    }

    // ---- accepting -----------------------------------------------------------------

    /// Re-arms each listener whose multishot accept ended, unless accepting is paused
    /// or the shard is stopping.
    fn rearm_accepts(&mut self) -> io::Result<()> {
        if self.shutdown.is_some() || self.starved || self.freeze.is_some() {
            return Ok(());
        }
        for (index, listener) in self.listeners.iter_mut().enumerate() {
            if !listener.accepting {
                self.ring.accept(listener.socket.as_raw_fd(), index)?;
                listener.accepting = true;
            }
        }
        Ok(())
    }

    fn accepted(&mut self, result: io::Result<TcpStream>, transport: Transport) -> io::Result<()> {
        // A TLS peer cannot read a plaintext ERROR before its handshake, nor an HTTP
        // client an IRC line: it is just closed.
        let plaintext = transport.tls.is_none() && !transport.websocket;
        let stream = match result {
            Ok(stream) => stream,
            Err(_) if self.shutdown.is_some() => return Ok(()),
            Err(error) if is_resource_exhaustion(&error) => {
                if !self.starved {
                    warn!(%error, "accept failed: out of resources; pausing accepts");
                    self.starved = true;
                    self.ring.arm(Timer::Backoff, ACCEPT_BACKOFF)?;
                }
                return Ok(());
            }
            Err(error) => {
                debug!(%error, "accept failed");
                return Ok(());
            }
        };
        if self.shutdown.is_some() {
            refuse(stream, plaintext.then_some(SHUTTING_DOWN));
            return Ok(());
        }
        let peer = match stream.peer_addr() {
            Ok(peer) => peer,
            Err(error) => {
                debug!(%error, "accepted connection gone before it was admitted");
                return Ok(());
            }
        };
        let session = match transport
            .tls
            .as_deref()
            .map(TlsAcceptor::session)
            .transpose()
        {
            Ok(session) => session.map(|session| Box::new(TlsSession::new(session))),
            Err(error) => {
                warn!(%error, "cannot start a TLS session; closing the connection");
                refuse(stream, None);
                return Ok(());
            }
        };
        match self.shard.accept(peer, Instant::now()) {
            Ok(id) => {
                self.shard
                    .connected(id, session.is_some(), transport.websocket);
                let _ = stream.set_nodelay(true);
                let fd = stream.as_raw_fd();
                self.shard.set_socket(id, fd);
                let frozen = self.freeze.is_some();
                let key = self.conns.insert_with(|_| Conn {
                    stream,
                    client: id,
                    receiving: !frozen,
                    sending: false,
                    read_done: false,
                    released: false,
                    unsent: Vec::new(),
                    tls: session,
                    close_notified: false,
                    websocket: transport
                        .websocket
                        .then(|| Box::new(WebSocketSession::new())),
                });
                // Accepted while a freeze cancelled the accept: it is handed over
                // (or started on thaw) like the rest.
                if !frozen {
                    self.ring.receive(fd, sys::token(key))?;
                    self.service_writer(key)?;
                }
            }
            Err(refused) => {
                debug!(%peer, %refused, "connection refused");
                let line = crate::proto::closing::closing_link(peer.ip(), refused);
                refuse(stream, plaintext.then_some(&line[..]));
            }
        }
        Ok(())
    }

    // ---- input ---------------------------------------------------------------------

    fn received(
        &mut self,
        token: u64,
        result: io::Result<Option<sys::Buffer>>,
        more: bool,
    ) -> io::Result<()> {
        let key = sys::key(token);
        let Some(conn) = self.conns.get_mut(key) else {
            if let Ok(Some(buffer)) = result {
                self.ring.recycle(buffer);
            }
            return Ok(());
        };
        conn.receiving &= more;
        let id = conn.client;
        match result {
            // A TLS session that failed or saw close_notify takes no more input; the
            // receive ends when the writer shuts the socket.
            Ok(Some(buffer)) if conn.read_done => self.ring.recycle(buffer),
            Ok(Some(mut buffer)) => {
                self.shard.note_read();
                let open = match (&conn.tls, &conn.websocket) {
                    (None, None) => {
                        self.shard
                            .receive(id, self.ring.data(&buffer), Instant::now());
                        true
                    }
                    (Some(tls), websocket) => {
                        let ciphertext = self.ring.data_mut(&mut buffer);
                        receive_tls(tls, websocket.as_deref(), ciphertext, &mut self.shard, id)
                    }
                    (None, Some(websocket)) => {
                        receive_websocket(websocket, self.ring.data(&buffer), &mut self.shard, id)
                    }
                };
                if !open {
                    conn.read_done = true;
                    self.shard.peer_closed(id);
                }
                self.ring.recycle(buffer);
            }
            Ok(None) => {
                self.shard.note_read();
                conn.read_done = true;
                self.shard.peer_closed(id);
            }
            Err(error)
                if self.freeze.is_some() && error.raw_os_error() == Some(libc::ECANCELED) => {}
            Err(error) if error.raw_os_error() == Some(libc::ENOBUFS) => {
                debug!(client = %id, "receive buffers exhausted; re-arming");
                self.shard.note_receive_buffer_wait();
            }
            Err(error) => {
                debug!(client = %id, %error, "read failed");
                self.shard.note_read();
                conn.read_done = true;
                self.shard.peer_closed(id);
            }
        }
        let Some(conn) = self.conns.get_mut(key) else {
            return Ok(());
        };
        if !conn.receiving && !conn.read_done && !conn.released && self.freeze.is_none() {
            self.ring.receive(conn.stream.as_raw_fd(), token)?;
            conn.receiving = true;
        }
        self.free_if_done(key);
        Ok(())
    }

    // ---- output --------------------------------------------------------------------

    /// Queues the writers woken since the last look: a small wake-up ahead of the
    /// backlog ([`SMALL_WAKE`]), a big one behind it. Costs a swap of two vectors.
    fn sort_woken(&mut self) {
        sys::take_ready(&mut self.ready);
        if self.ready.len() <= SMALL_WAKE {
            self.urgent.extend(self.ready.drain(..));
        } else {
            self.writers.extend(self.ready.drain(..));
        }
    }

    /// Services the writers woken so far: at most [`WRITERS_PER_TURN`] of the small
    /// wake-ups' and as many of the backlog's; the rest wait for the next turn, which
    /// then does not wait for completions. The backlog moves on every turn, however
    /// many small wake-ups come.
    fn service_writers(&mut self) -> io::Result<()> {
        self.sort_woken();
        for queue in [Lane::Urgent, Lane::Backlog] {
            for _ in 0..WRITERS_PER_TURN {
                let next = match queue {
                    Lane::Urgent => self.urgent.pop_front(),
                    Lane::Backlog => self.writers.pop_front(),
                };
                let Some(token) = next else {
                    break;
                };
                self.service_writer(sys::key(token))?;
            }
        }
        Ok(())
    }

    /// The writer's turn, as `super::write_loop` takes it: write what is queued, or
    /// finish a closing connection, or park until the next push.
    fn service_writer(&mut self, key: SlotKey) -> io::Result<()> {
        let Some(conn) = self.conns.get_mut(key) else {
            return Ok(());
        };
        if conn.sending || conn.released || self.freeze.is_some() {
            return Ok(());
        }
        if conn.tls.is_some() || conn.websocket.is_some() {
            return self.service_encoded_writer(key);
        }
        let id = conn.client;
        let Some(client) = self.shard.client_mut(id) else {
            return self.finish(key);
        };
        if !conn.unsent.is_empty() || client.outbox.has_queued() {
            client.outbox.take_batch(&mut self.lines, MAX_BATCH_LINES);
            let output =
                if conn.unsent.is_empty() && self.lines.len() == 1 && !client.outbox.has_queued() {
                    Output::Line(self.lines.pop().expect("one line taken"))
                } else {
                    let len = self.lines.iter().map(Bytes::len).sum();
                    let mut buffer = if conn.unsent.is_empty() {
                        self.send_buffers.take(len)
                    } else {
                        let mut unsent = std::mem::take(&mut conn.unsent);
                        unsent.reserve(len);
                        unsent
                    };
                    // Everything queued, up to `SEND_BYTES`: the line limit of a batch is
                    // the kernel's iovec limit, which a contiguous buffer does not have,
                    // and a backlog behind a full socket drains faster in big sends.
                    loop {
                        for line in self.lines.drain(..) {
                            buffer.extend_from_slice(&line);
                        }
                        if buffer.len() >= SEND_BYTES || !client.outbox.has_queued() {
                            break;
                        }
                        client.outbox.take_batch(&mut self.lines, MAX_BATCH_LINES);
                    }
                    Output::Joined(buffer)
                };
            conn.sending = true;
            self.ring
                .send(conn.stream.as_raw_fd(), sys::token(key), output)?;
        } else if client.closing {
            return self.finish(key);
        } else {
            client
                .outbox
                .park_writer(&sys::writer_waker(sys::token(key)));
        }
        Ok(())
    }

    /// A TLS or WebSocket writer's turn, as `super::write_loop` takes it on such a
    /// connection: once the handshake (and upgrade) is done, everything queued (up to
    /// [`SEND_BYTES`]) is framed (WebSocket) and encrypted into records of up to 16 KiB
    /// (TLS), behind the bytes a short send left and whatever the sessions owe
    /// (handshake messages, alerts, the HTTP response, pongs, a close frame), all in
    /// one pooled buffer for one send. Lines queued before the handshakes complete
    /// wait in the outbox. A closing connection ends with a WebSocket close frame, then
    /// TLS `close_notify`.
    fn service_encoded_writer(&mut self, key: SlotKey) -> io::Result<()> {
        let Some(conn) = self.conns.get_mut(key) else {
            return Ok(());
        };
        let id = conn.client;
        let Some(client) = self.shard.client_mut(id) else {
            return self.finish(key);
        };
        let tls = conn.tls.as_deref();
        let websocket = conn.websocket.as_deref();
        let tls_ready = tls.is_none_or(TlsSession::is_established);
        let carries_lines = tls_ready && websocket.is_none_or(WebSocketSession::is_open);
        // More records join unsent bytes in one send (as lines join unsent lines on a
        // plaintext connection) while they are under `SEND_BYTES`: encoded lines leave
        // the outbox's sendq count, so what a slow peer holds outside it stays under
        // two sends' worth.
        let has_lines =
            carries_lines && conn.unsent.len() < SEND_BYTES && client.outbox.has_queued();
        let sessions_owe = tls.is_some_and(TlsSession::wants_write)
            || (tls_ready && websocket.is_some_and(WebSocketSession::wants_write));
        if conn.unsent.is_empty() && !sessions_owe && !has_lines {
            if !client.closing {
                client
                    .outbox
                    .park_writer(&sys::writer_waker(sys::token(key)));
                return Ok(());
            }
            match (websocket, tls) {
                (Some(websocket), _) if carries_lines => websocket.close(1000, ""),
                (_, Some(tls)) if tls.is_established() && !conn.close_notified => {
                    conn.close_notified = true;
                    tls.send_close_notify();
                }
                _ => return self.finish(key),
            }
        }
        let mut output = if conn.unsent.is_empty() {
            self.send_buffers.take(0)
        } else {
            std::mem::take(&mut conn.unsent)
        };
        let mut taken = 0;
        match (websocket, tls) {
            (Some(websocket), tls) if tls_ready => {
                // Frames go straight into the send buffer, or into the plaintext
                // that TLS then encrypts into it.
                let framed = if tls.is_some() {
                    &mut self.plaintext
                } else {
                    &mut output
                };
                websocket.take_output_into(framed);
                while has_lines && framed.len() < SEND_BYTES && client.outbox.has_queued() {
                    client.outbox.take_batch(&mut self.lines, MAX_BATCH_LINES);
                    taken += websocket.frame_lines(&mut self.lines, framed, usize::MAX);
                }
            }
            (None, Some(_)) if has_lines => {
                // A lone line is encrypted where it is; several are joined first.
                client.outbox.take_batch(&mut self.lines, MAX_BATCH_LINES);
                if self.lines.len() > 1 || client.outbox.has_queued() {
                    loop {
                        for line in self.lines.drain(..) {
                            taken += line.len();
                            self.plaintext.extend_from_slice(&line);
                        }
                        if self.plaintext.len() >= SEND_BYTES || !client.outbox.has_queued() {
                            break;
                        }
                        client.outbox.take_batch(&mut self.lines, MAX_BATCH_LINES);
                    }
                }
            }
            _ => {}
        }
        let encrypted = match tls {
            Some(tls) => {
                let plaintext: &[u8] = match self.lines.first() {
                    Some(lone) => {
                        taken += lone.len();
                        lone
                    }
                    None => &self.plaintext,
                };
                let room = TlsSession::ciphertext_room(plaintext.len());
                output.reserve(room);
                tls.lend_output(output);
                let encrypted = if plaintext.is_empty() {
                    Ok(())
                } else {
                    tls.encrypt_plaintext(plaintext).map(drop)
                };
                output = tls.take_output();
                encrypted
            }
            None => Ok(()),
        };
        if taken > 0 {
            client.outbox.wrote(taken);
        }
        self.lines.clear();
        self.plaintext.clear();
        if let Err(failure) = encrypted {
            self.send_buffers.give_back(output);
            self.shard.write_failed(id, &io::Error::other(failure));
            return self.finish(key);
        }
        if output.is_empty() {
            // The TLS session failed (its reader closed the client): nothing more
            // can be encrypted or sent.
            self.send_buffers.give_back(output);
            return self.finish(key);
        }
        conn.sending = true;
        self.ring.send(
            conn.stream.as_raw_fd(),
            sys::token(key),
            Output::Joined(output),
        )
    }

    fn sent(&mut self, token: u64, result: io::Result<usize>, output: Output) -> io::Result<()> {
        let key = sys::key(token);
        let Some(conn) = self.conns.get_mut(key) else {
            return Ok(());
        };
        conn.sending = false;
        let id = conn.client;
        match result {
            Ok(written) => {
                self.shard.note_written(id, written);
                // A TLS or WebSocket connection's outbox was told when its lines were
                // encoded.
                if conn.tls.is_none() && conn.websocket.is_none() {
                    if let Some(client) = self.shard.client_mut(id) {
                        client.outbox.wrote(written);
                    }
                }
                let buffer = match output {
                    Output::Line(line) if written < line.len() => line[written..].to_vec(),
                    Output::Line(_) => Vec::new(),
                    Output::Joined(mut buffer) => {
                        buffer.drain(..written.min(buffer.len()));
                        buffer
                    }
                };
                if buffer.is_empty() {
                    self.send_buffers.give_back(buffer);
                } else {
                    conn.unsent = buffer;
                }
                self.service_writer(key)
            }
            Err(error)
                if self.freeze.is_some()
                    && matches!(error.raw_os_error(), Some(libc::ECANCELED | libc::EINTR)) =>
            {
                // A live upgrade stopped the send before it wrote anything.
                conn.unsent = match output {
                    Output::Joined(buffer) => buffer,
                    Output::Line(line) => line.to_vec(),
                };
                Ok(())
            }
            Err(error) => {
                self.send_buffers.give_back(match output {
                    Output::Joined(buffer) => buffer,
                    Output::Line(_) => Vec::new(),
                });
                self.shard.write_failed(id, &error);
                self.finish(key)
            }
        }
    }

    /// The writer is done: shut the socket (a pending receive then completes), free
    /// the client's slot, and drop the connection once no operation refers to it.
    fn finish(&mut self, key: SlotKey) -> io::Result<()> {
        let Some(conn) = self.conns.get_mut(key) else {
            return Ok(());
        };
        if !conn.released {
            conn.released = true;
            conn.unsent = Vec::new();
            let _ = conn.stream.shutdown(Shutdown::Both);
            self.shard.release(conn.client);
        }
        self.free_if_done(key);
        Ok(())
    }

    /// Closes the connection's descriptor once it is released and no operation on it
    /// is in flight (sys invariant 3).
    fn free_if_done(&mut self, key: SlotKey) {
        if let Some(conn) = self.conns.get(key) {
            if conn.released && !conn.receiving && !conn.sending {
                self.conns.remove(key);
            }
        }
    }

    // ---- live upgrade --------------------------------------------------------------

    /// Starts serving a connection handed over by a live upgrade (its client is in
    /// the shard already, at its old slot).
    fn adopt(&mut self, id: ClientId, stream: TcpStream) -> io::Result<()> {
        let fd = stream.as_raw_fd();
        self.shard.set_socket(id, fd);
        let key = self.conns.insert_with(|_| Conn {
            stream,
            client: id,
            receiving: true,
            sending: false,
            read_done: false,
            released: false,
            unsent: Vec::new(),
            tls: None,
            close_notified: false,
            websocket: None,
        });
        self.ring.receive(fd, sys::token(key))?;
        self.service_writer(key)
    }

    /// Follows the coordinator of a live upgrade ([`crate::state::freeze`]):
    /// begins a freeze when one is asked, steps through it, and thaws when the
    /// upgrade failed.
    fn advance_freeze(&mut self) -> io::Result<()> {
        let asked = self.shard.shared.freeze.is_asked();
        match &mut self.freeze {
            None if asked && self.shutdown.is_none() => {
                // Every socket operation ends: completions bring in the last input
                // and tell how much of each send went out.
                for (index, listener) in self.listeners.iter().enumerate() {
                    if listener.accepting {
                        self.ring.cancel_accept(index)?;
                    }
                }
                for (key, conn) in self.conns.iter_keyed() {
                    if conn.receiving {
                        self.ring.cancel_receive(sys::token(key))?;
                    }
                }
                self.ring.cancel_sends()?;
                self.freeze = Some(Freezing::Stopping);
            }
            None => {}
            Some(_) if !asked => self.thaw()?,
            Some(Freezing::Stopping) => {
                let quiet = self.listeners.iter().all(|l| !l.accepting)
                    && self.conns.iter().all(|c| !c.receiving && !c.sending);
                if quiet {
                    for conn in self.conns.iter_mut() {
                        if conn.unsent.is_empty() || conn.tls.is_some() || conn.websocket.is_some()
                        {
                            continue;
                        }
                        if let Some(client) = self.shard.client_mut(conn.client) {
                            let unsent = Bytes::from(std::mem::take(&mut conn.unsent));
                            client.outbox.put_back(std::iter::once(unsent));
                        }
                    }
                    self.freeze = Some(Freezing::Sequence(FreezeSequence::begin(&mut self.shard)));
                }
            }
            Some(Freezing::Sequence(sequence)) if sequence.step() != FreezeStep::Captured => {
                let listeners: Vec<_> = self
                    .listeners
                    .iter()
                    .map(|l| {
                        let kind =
                            ListenerKind::of(l.transport.tls.is_some(), l.transport.websocket);
                        (l.socket.as_raw_fd(), kind)
                    })
                    .collect();
                sequence.advance(&mut self.shard, &listeners);
            }
            Some(Freezing::Sequence(_)) => {}
        }
        Ok(())
    }

    /// The upgrade failed: every connection reads and writes again.
    fn thaw(&mut self) -> io::Result<()> {
        info!(shard = self.shard.id, "upgrade failed: serving on");
        self.freeze = None;
        let mut tokens = Vec::new();
        for (key, conn) in self.conns.iter_keyed() {
            if !conn.read_done && !conn.released {
                self.ring
                    .receive(conn.stream.as_raw_fd(), sys::token(key))?;
                tokens.push((key, true));
            } else {
                tokens.push((key, false));
            }
        }
        for (key, receiving) in tokens {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.receiving |= receiving;
            }
            self.writers.push_back(sys::token(key));
        }
        Ok(())
    }

    // ---- shutdown ------------------------------------------------------------------

    /// Shutdown was asked: stop accepting and begin the sequence every driver follows
    /// ([`ShutdownSequence`]).
    fn begin_stopping(&mut self) {
        info!(shard = self.shard.id, "shutting down");
        for listener in &self.listeners {
            shutdown_listener(listener.socket.as_raw_fd());
        }
        self.shutdown = Some(ShutdownSequence::begin(&mut self.shard, Instant::now()));
    }

    /// Takes the next shutdown step, once it has begun.
    fn advance_shutdown(&mut self) {
        if let Some(shutdown) = &mut self.shutdown {
            shutdown.advance(&mut self.shard, Instant::now());
        }
    }

    fn is_done(&self) -> bool {
        self.shutdown
            .as_ref()
            .is_some_and(|shutdown| shutdown.phase() == ShutdownPhase::Done)
    }

    /// Ends every operation and closes every connection left (past the deadline).
    fn stop(&mut self) {
        for conn in self.conns.iter() {
            let _ = conn.stream.shutdown(Shutdown::Both);
        }
        if !self.ring.settle(Instant::now() + SETTLE_TIMEOUT) {
            warn!(
                shard = self.shard.id,
                "io_uring operations did not all complete at shard stop"
            );
        }
        let enters = self.ring.take_enters();
        self.shard.note_enters(enters);
    }
}

/// Tells a connection that is not admitted why it is being closed (unless it is a
/// TLS connection, which could not read it), and closes it. The socket is fresh, so
/// the short line fits its empty send buffer: one non-blocking write.
fn refuse(stream: TcpStream, why: Option<&[u8]>) {
    if let Some(why) = why {
        let _ = stream.set_nonblocking(true);
        let _ = (&stream).write(why);
    }
    let _ = stream.shutdown(Shutdown::Both);
}
