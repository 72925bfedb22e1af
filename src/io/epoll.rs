//! The epoll driver (tokio, current-thread): readiness, then a non-blocking read or
//! vectored write, adapted to the owned-buffer shape of [`Stream`] so the connection
//! tasks are the same code as on io_uring.

use super::shutdown_listener;
use super::{Listener, Stream};
use crate::state::outbox::MAX_BATCH_LINES;
use bytes::Bytes;
use std::cell::Cell;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;

/// A live upgrade's cancellation of this shard's pending socket operations: a
/// readiness wait can be dropped without losing anything (unlike an io_uring read),
/// so each operation races its wait against this.
#[derive(Default)]
struct Cancellation {
    cancelled: Cell<bool>,
    notify: tokio::sync::Notify,
}

thread_local! {
    static CANCELLATION: Rc<Cancellation> = Rc::default();
}

/// Completes once the shard's operations are cancelled.
async fn cancelled() {
    let cancellation = CANCELLATION.with(Rc::clone);
    loop {
        let notified = cancellation.notify.notified();
        tokio::pin!(notified);
        // Registered before the flag is read, so a cancel between the two wakes it.
        notified.as_mut().enable();
        if cancellation.cancelled.get() {
            return;
        }
        notified.await;
    }
}

/// Cancels this shard's pending socket operations (they return `ECANCELED`) and
/// keeps new ones from waiting, until [`resume`].
pub fn cancel() {
    CANCELLATION.with(|c| {
        c.cancelled.set(true);
        c.notify.notify_waiters();
    });
}

/// Lets socket operations wait again (the upgrade failed).
pub fn resume() {
    CANCELLATION.with(|c| c.cancelled.set(false));
}

fn canceled_error() -> io::Error {
    io::Error::from_raw_os_error(libc::ECANCELED)
}

/// Builds a shard's runtime.
pub fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// A listening socket on a tokio runtime.
pub struct EpollListener(tokio::net::TcpListener);

impl EpollListener {
    /// Adopts a bound, listening, non-blocking std socket (call inside the runtime).
    pub fn new(listener: std::net::TcpListener) -> io::Result<EpollListener> {
        Ok(EpollListener(tokio::net::TcpListener::from_std(listener)?))
    }
}

impl Listener for EpollListener {
    type Stream = EpollStream;

    async fn accept(&self) -> io::Result<(EpollStream, SocketAddr)> {
        let (stream, peer) = tokio::select! {
            // Readiness first: a ready socket never registers with the cancellation.
            biased;
            accepted = self.0.accept() => accepted?,
            () = cancelled() => return Err(canceled_error()),
        };
        stream.set_nodelay(true)?;
        Ok((EpollStream(stream), peer))
    }

    fn close(&self) {
        shutdown_listener(self.0.as_raw_fd());
    }

    fn raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    fn cancel_operations() {
        cancel();
    }

    fn resume_operations() {
        resume();
    }

    fn adopt(stream: std::net::TcpStream) -> io::Result<EpollStream> {
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        Ok(EpollStream(tokio::net::TcpStream::from_std(stream)?))
    }
}

/// A connection on a tokio runtime.
pub struct EpollStream(tokio::net::TcpStream);

impl Stream for EpollStream {
    async fn read(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        loop {
            let ready = tokio::select! {
                biased;
                ready = self.0.readable() => ready,
                () = cancelled() => Err(canceled_error()),
            };
            if let Err(error) = ready {
                return (Err(error), buf);
            }
            match self.0.try_read_buf(&mut buf) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                result => return (result, buf),
            }
        }
    }

    async fn writev(&self, batch: Vec<Bytes>) -> (io::Result<usize>, Vec<Bytes>) {
        loop {
            let ready = tokio::select! {
                biased;
                ready = self.0.writable() => ready,
                () = cancelled() => Err(canceled_error()),
            };
            if let Err(error) = ready {
                return (Err(error), batch);
            }
            match write_vectored(&self.0, &batch) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                result => return (result, batch),
            }
        }
    }

    fn shutdown(&self) {
        let _ = socket2::SockRef::from(&self.0).shutdown(std::net::Shutdown::Both);
    }

    fn raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

/// One `writev` of up to [`MAX_BATCH_LINES`] lines; the iovec array lives on the stack
/// of this synchronous call, not in the connection's future.
fn write_vectored(stream: &tokio::net::TcpStream, batch: &[Bytes]) -> io::Result<usize> {
    let mut slices = [IoSlice::new(&[]); MAX_BATCH_LINES];
    let count = batch.len().min(MAX_BATCH_LINES);
    for (slice, line) in slices.iter_mut().zip(batch) {
        *slice = IoSlice::new(line);
    }
    stream.try_write_vectored(&slices[..count])
}
