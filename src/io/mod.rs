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
//! tokio-uring read loses data), at most one `writev` in flight, and the shard's
//! `RefCell` is borrowed only between awaits.

pub mod epoll;
pub mod ring;
pub mod uring;

use crate::shard::Shard;
use crate::state::outbox::MAX_BATCH_LINES;
use crate::state::ClientId;
use bytes::{Buf, Bytes};
use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn, Instrument};

/// A connection's read buffer starts (and shrinks back to) this size: idle clients
/// stay small.
pub const READ_BUFFER_MIN: usize = 512;
/// A busy connection's read buffer grows up to this size.
pub const READ_BUFFER_MAX: usize = 16 << 10;
/// How often throttled input is re-examined while some client waits for tokens.
pub(crate) const FLOOD_TICK: Duration = Duration::from_millis(50);
/// How often liveness is checked and counters are published.
pub(crate) const LIVENESS_TICK: Duration = Duration::from_secs(1);
/// How long the accept loop pauses when the process is out of file descriptors.
pub(crate) const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A connected socket with owned-buffer operations.
#[allow(async_fn_in_trait)] // single-threaded runtimes: no Send bound wanted
pub trait Stream: 'static {
    /// Reads into `buf`'s spare capacity (from its start; the caller clears it).
    async fn read(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>);
    /// Writes the lines of `batch` with one vectored write; returns how many bytes the
    /// kernel took.
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
}

/// Runs one shard until shutdown completes; called inside the driver's runtime.
pub async fn run_shard<L: Listener>(shard: Shard, listeners: Vec<L>) {
    let id = shard.id;
    let shared = shard.shared.clone();
    let shard = Rc::new(RefCell::new(shard));
    let stopping = Rc::new(Cell::new(false));
    let listeners: Vec<Rc<L>> = listeners.into_iter().map(Rc::new).collect();
    for listener in &listeners {
        tokio::task::spawn_local(accept_loop(
            listener.clone(),
            shard.clone(),
            stopping.clone(),
        ));
    }
    tokio::task::spawn_local(flush_handoffs(shard.clone()));
    tokio::task::spawn_local(housekeeping(shard.clone()));

    // The pump runs here: other shards' hand-offs and log entries wake it, and so
    // does shutdown.
    while !shared.shutting_down.load(Ordering::Acquire) {
        shared.bus.woken(id).await;
        shard.borrow_mut().pump();
    }

    info!(shard = id, "shutting down");
    stopping.set(true);
    for listener in &listeners {
        listener.close();
    }
    let deadline = Instant::now() + shared.config.shutdown_timeout;
    // Client input stopped with the shutdown flag. Deliver what was accepted before
    // it: send this shard's hand-offs, wait until every shard has sent its own, then
    // take in the last of theirs, and only then say goodbye.
    {
        let mut shard = shard.borrow_mut();
        shard.pump();
        shard.flush_handoffs();
    }
    shared.handoffs_sealed.fetch_add(1, Ordering::AcqRel);
    while shared.handoffs_sealed.load(Ordering::Acquire) < shared.config.shards
        && Instant::now() < deadline
    {
        shard.borrow_mut().flush_handoffs();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    {
        let mut shard = shard.borrow_mut();
        shard.pump();
        shard.begin_shutdown();
    }
    while shard.borrow().connection_count() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut shard = shard.borrow_mut();
    shard.publish_counters();
    shard.log_summary();
}

/// Accepts until the shard stops. The accept is never abandoned (an in-flight
/// tokio-uring accept would keep the socket open): shutdown closes the listener, which
/// makes the pending accept fail.
async fn accept_loop<L: Listener>(
    listener: Rc<L>,
    shard: Rc<RefCell<Shard>>,
    stopping: Rc<Cell<bool>>,
) {
    let mut starved = false;
    loop {
        let accepted = listener.accept().await;
        if stopping.get() {
            if let Ok((stream, _)) = accepted {
                tokio::task::spawn_local(refuse(stream, Bytes::from_static(SHUTTING_DOWN)));
            }
            return;
        }
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                if std::mem::take(&mut starved) {
                    info!("accepting again");
                }
                accepted
            }
            Err(error) if is_resource_exhaustion(&error) => {
                // One warning per episode, not one per retry.
                if !starved {
                    warn!(%error, "accept failed: out of resources; pausing accepts");
                    starved = true;
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
            Err(error) => {
                debug!(%error, "accept failed");
                continue;
            }
        };
        let admitted = shard.borrow_mut().accept(peer, Instant::now());
        match admitted {
            Ok(id) => {
                let span =
                    tracing::debug_span!("conn", shard = id.shard, slot = id.slot.index, %peer);
                debug!(parent: &span, "connected");
                let stream = Rc::new(stream);
                shard.borrow_mut().set_socket(id, stream.raw_fd());
                tokio::task::spawn_local(
                    read_loop(stream.clone(), shard.clone(), id).instrument(span.clone()),
                );
                tokio::task::spawn_local(write_loop(stream, shard.clone(), id).instrument(span));
            }
            Err(refused) => {
                debug!(%peer, %refused, "connection refused");
                let line = format!("ERROR :Closing Link: {} ({refused})\r\n", peer.ip());
                tokio::task::spawn_local(refuse(stream, Bytes::from(line)));
            }
        }
    }
}

pub(crate) const SHUTTING_DOWN: &[u8] = b"ERROR :Server shutting down\r\n";

/// Tells a connection that is not admitted why it is being closed.
async fn refuse<S: Stream>(stream: S, why: Bytes) {
    let _ = stream.writev(vec![why]).await;
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

/// Owns the connection's only read: feeds the shard until the peer is gone.
async fn read_loop<S: Stream>(stream: Rc<S>, shard: Rc<RefCell<Shard>>, id: ClientId) {
    let mut buf = Vec::with_capacity(READ_BUFFER_MIN);
    loop {
        buf.clear();
        let (result, returned) = stream.read(buf).await;
        buf = returned;
        shard.borrow_mut().note_read();
        let n = match result {
            Ok(0) => break,
            Ok(n) => n,
            Err(error) => {
                debug!(%error, "read failed");
                break;
            }
        };
        shard.borrow_mut().receive(id, &buf[..n], Instant::now());
        let capacity = buf.capacity();
        if n == capacity && capacity < READ_BUFFER_MAX {
            buf = Vec::with_capacity((capacity * 4).min(READ_BUFFER_MAX));
        } else if n <= READ_BUFFER_MIN && capacity > READ_BUFFER_MIN {
            buf = Vec::with_capacity(READ_BUFFER_MIN);
        }
    }
    shard.borrow_mut().peer_closed(id);
}

/// What the writer should do next.
enum WriterTurn {
    Write,
    Finish,
}

/// Drains the outbox with one vectored write at a time; on close, flushes, shuts the
/// socket and frees the client's slot.
async fn write_loop<S: Stream>(stream: Rc<S>, shard: Rc<RefCell<Shard>>, id: ClientId) {
    let mut batch: Vec<Bytes> = Vec::new();
    loop {
        let turn = poll_fn(|cx| {
            let mut shard = shard.borrow_mut();
            let Some(client) = shard.client_mut(id) else {
                return Poll::Ready(WriterTurn::Finish);
            };
            if !batch.is_empty() || client.outbox.has_queued() {
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
            break;
        }
        {
            let mut shard = shard.borrow_mut();
            if batch.capacity() == 0 {
                batch = shard.batch_pool().take();
            }
            if let Some(client) = shard.client_mut(id) {
                client.outbox.take_batch(&mut batch, MAX_BATCH_LINES);
            }
        }
        let (result, returned) = stream.writev(batch).await;
        batch = returned;
        let mut shard = shard.borrow_mut();
        match result {
            Ok(written) => {
                consume_written(&mut batch, written);
                shard.note_written(id, written);
                if batch.is_empty() {
                    shard.batch_pool().give_back(std::mem::take(&mut batch));
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
}
