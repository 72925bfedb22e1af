//! The io_uring driver (tokio-uring 0.5): completion-based accept, read and write on
//! owned buffers (a batch of lines copied into one). The runtime submits all of a
//! tick's SQEs with one `io_uring_enter`.

use super::shutdown_listener;
use super::{Listener, Stream};
use bytes::Bytes;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

/// Submission queue entries per shard ring. Small on purpose: tokio-uring submits
/// when the queue is full or when the thread parks, so a small queue starts a large
/// fan-out's writes while the rest are still being prepared. Measured (500 members,
/// 10 senders, 1000 msg/s, loadgen fanout): p50/p99 3.1/5.6 ms with 4096 entries,
/// 2.4/3.4 ms with 64; 16 and 32 were no better; CPU per delivery unchanged.
const RING_ENTRIES: u32 = 64;
/// Completion queue entries: room for every operation in flight on a busy shard
/// (one read per connection plus writes) without relying on overflow handling.
const RING_COMPLETIONS: u32 = 16_384;

/// Builds a shard's runtime, or says why the kernel refused io_uring.
pub fn runtime() -> io::Result<tokio_uring::Runtime> {
    // COOP_TASKRUN saves an interrupt per completion; DEFER_TASKRUN hangs tokio-uring 0.5
    // (docs/architecture.md), so it is not used.
    let mut ring = tokio_uring::uring_builder();
    ring.setup_coop_taskrun().setup_cqsize(RING_COMPLETIONS);
    let _creating = CREATING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let before = open_descriptors();
    let runtime = tokio_uring::Runtime::new(
        tokio_uring::builder()
            .entries(RING_ENTRIES)
            .uring_builder(&ring),
    )?;
    let new: Vec<RawFd> = open_descriptors()
        .into_iter()
        .filter(|fd| before.binary_search(fd).is_err() && is_io_uring(*fd))
        .collect();
    if let [fd] = new[..] {
        RING_FD.with(|ring| ring.set(fd));
    }
    Ok(runtime)
}

/// Whether this process may create an io_uring, and if not, why.
pub fn probe() -> io::Result<()> {
    runtime().map(drop)
}

/// A listening socket on a tokio-uring runtime.
pub struct UringListener(tokio_uring::net::TcpListener);

impl UringListener {
    /// Adopts a bound, listening std socket (call inside the runtime).
    pub fn new(listener: std::net::TcpListener) -> UringListener {
        UringListener(tokio_uring::net::TcpListener::from_std(listener))
    }
}

impl Listener for UringListener {
    type Stream = UringStream;

    async fn accept(&self) -> io::Result<(UringStream, SocketAddr)> {
        let (stream, peer) = self.0.accept().await?;
        stream.set_nodelay(true)?;
        Ok((UringStream(stream), peer))
    }

    fn close(&self) {
        shutdown_listener(self.0.as_raw_fd());
    }

    fn raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    fn cancel_operations() {
        cancel_operations();
    }

    fn resume_operations() {}

    fn adopt(stream: std::net::TcpStream) -> io::Result<UringStream> {
        stream.set_nodelay(true)?;
        Ok(UringStream(tokio_uring::net::TcpStream::from_std(stream)))
    }
}

/// A connection on a tokio-uring runtime.
pub struct UringStream(tokio_uring::net::TcpStream);

impl Stream for UringStream {
    async fn read(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        self.0.read(buf).await
    }

    /// One line goes as it is; several are copied into one buffer for one `write`,
    /// as the ring driver does: one contiguous send costs the kernel less than a
    /// vector of short lines, and the copy replaces tokio-uring's iovec allocation.
    async fn writev(&self, batch: Vec<Bytes>) -> (io::Result<usize>, Vec<Bytes>) {
        let result = match batch.as_slice() {
            [line] => self.0.write(line.clone()).submit().await.0,
            lines => {
                let mut joined = Vec::with_capacity(lines.iter().map(Bytes::len).sum());
                for line in lines {
                    joined.extend_from_slice(line);
                }
                self.0.write(joined).submit().await.0
            }
        };
        (result, batch)
    }

    fn shutdown(&self) {
        let _ = self.0.shutdown(std::net::Shutdown::Both);
    }

    fn raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

thread_local! {
    /// This shard thread's io_uring descriptor (tokio-uring 0.5 does not expose it),
    /// for cancelling its operations on a live upgrade; -1 until found.
    static RING_FD: std::cell::Cell<RawFd> = const { std::cell::Cell::new(-1) };
}

/// Serializes runtime creation, so the descriptor one appears with is its own.
static CREATING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The descriptors open in this process, in order. Only their numbers: a live
/// upgrade's new process starts its runtimes holding every client's socket, and
/// reading where each of 10,000 descriptors points, twice per shard, added 230 ms
/// to its start.
fn open_descriptors() -> Vec<RawFd> {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    let mut fds: Vec<RawFd> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    fds
}

/// Whether `fd` is an io_uring instance.
fn is_io_uring(fd: RawFd) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .is_ok_and(|target| target.as_os_str() == "anon_inode:[io_uring]")
}

/// The kernel's `struct io_uring_sync_cancel_reg` (include/uapi/linux/io_uring.h).
#[repr(C)]
struct SyncCancel {
    addr: u64,
    fd: i32,
    flags: u32,
    timeout: [i64; 2],
    opcode: u8,
    pad: [u8; 7],
    pad2: [u64; 3],
}

const IORING_REGISTER_SYNC_CANCEL: libc::c_uint = 24;
const IORING_ASYNC_CANCEL_ALL: u32 = 1 << 0;
const IORING_ASYNC_CANCEL_ANY: u32 = 1 << 2;

/// Cancels every operation this shard's ring has in flight (its listeners' accepts
/// and its connections' reads and writes: a tokio-uring runtime submits nothing
/// else), and returns once the kernel has (`IORING_REGISTER_SYNC_CANCEL`, Linux
/// 6.0): each completes with `ECANCELED`, or with what it did if it had finished.
/// Dropping a tokio-uring read does not cancel it (docs/architecture.md): this is
/// the only way to stop one without losing the bytes it may take. One call for all:
/// matching by descriptor makes the kernel scan every armed operation per call,
/// and a call per socket took a shard 270 ms at 5,000 connections.
pub fn cancel_operations() {
    let ring = RING_FD.with(std::cell::Cell::get);
    if ring < 0 {
        tracing::warn!("the shard's io_uring descriptor is unknown; cannot cancel its operations");
        return;
    }
    let mut cancel = SyncCancel {
        addr: 0,
        fd: -1,
        flags: IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL,
        timeout: [-1, -1],
        opcode: 0,
        pad: [0; 7],
        pad2: [0; 3],
    };
    // SAFETY: io_uring_register with a struct of the kernel's layout that lives
    // across the call; the kernel only reads it.
    let result = unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            ring,
            IORING_REGISTER_SYNC_CANCEL,
            &mut cancel as *mut SyncCancel,
            1,
        )
    };
    if result < 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::ENOENT) {
            tracing::warn!(%error, "cancelling the shard's socket operations failed");
        }
    }
}
