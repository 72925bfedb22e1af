//! The ring driver's only `unsafe` code: the io_uring instance, the memory the kernel
//! reads or writes while an operation is in flight, and the no-allocation waker.
//!
//! Invariants, each relied on where marked `SAFETY`:
//! 1. **Memory outlives its operation.** Everything an SQE points to is owned here, at
//!    a stable address, until that operation's last completion has been reaped: the
//!    bytes of a send ([`InFlightSend`], kept in `sends` until its CQE; a `Bytes` line
//!    or a `Vec<u8>` whose heap data does not move when the record moves), the eventfd
//!    read's 8 bytes, the timers' timespecs, and the provided-buffer ring with its
//!    buffers. Callers get owned values back in [`Completion`]s.
//! 2. **A provided buffer has one owner at a time.** The kernel owns every buffer
//!    published in the ring; a receive completion hands buffer `id` to the driver as a
//!    [`Buffer`] (not `Clone`), which reads it with [`Ring::data`] (or decrypts it in
//!    place with [`Ring::data_mut`]) and gives it back with [`Ring::recycle`],
//!    re-publishing it. The driver recycles each buffer within the loop turn that
//!    received it, so a connection never holds a buffer while it waits: idle connections cost no buffer, and a multishot receive that ended with
//!    `ENOBUFS` (data left in the socket, nothing lost) finds buffers when it is
//!    re-armed with the next submission.
//! 3. **Nothing is freed under the kernel.** `in_flight` counts operations whose final
//!    completion (one without `IORING_CQE_F_MORE`) has not been reaped. On close, a
//!    connection's operations end because the driver shuts the socket down (a receive
//!    returns 0, a blocked send fails), and the driver keeps the connection's
//!    descriptor open until both have completed. At shard stop, [`Ring::settle`]
//!    cancels whatever is left and reaps until nothing is in flight; if that does not
//!    happen in time, [`Drop`] leaks the send table, the buffer ring and the other
//!    operation memory instead of freeing memory the kernel may still touch.
//! 4. **Descriptors.** Accepted descriptors are adopted exactly once, from the result
//!    of a completed accept (the kernel just created them for this process).
//! 5. **Wakers never dereference their data**: it is a connection token, and waking
//!    pushes it onto this thread's list of writers to service
//!    ([`writer_waker`], [`take_ready`]).

use bytes::Bytes;
use io_uring::types::{BufRingEntry, CancelBuilder, Fd, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring};
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::mem::ManuallyDrop;
use std::net::TcpStream;
use std::os::fd::{FromRawFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Once;
use std::task::{RawWaker, RawWakerVTable, Waker};
use std::time::{Duration, Instant};
use tracing::{info, warn};

use crate::state::slab::{Slab, SlotKey};

/// Connection tokens and wakers carry a token in a pointer-sized value.
const _: () = assert!(usize::BITS >= 64, "the ring driver needs a 64-bit target");

/// Submission queue entries. A fan-out to more connections than this submits early
/// (one extra enter per full queue, counted).
const SUBMISSION_ENTRIES: u32 = 1024;
/// Completion queue entries; the kernel also buffers overflow (`FEAT_NODROP`).
const COMPLETION_ENTRIES: u32 = 16_384;
/// Size of each provided receive buffer. Lines are at most 8,191 bytes, but a
/// receive may end anywhere: the shard keeps a partial line in the client's input.
pub const BUFFER_SIZE: usize = 4096;
/// The provided-buffer group the driver registers.
const BUFFER_GROUP: u16 = 0;

/// What an operation was, in the top 4 bits of its `user_data`; the low 60 bits carry
/// a connection token, a listener index or a send slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
enum Kind {
    Accept = 1,
    Receive = 2,
    Send = 3,
    EventFd = 4,
    Tick = 5,
    Backoff = 6,
    Cancel = 7,
}

const KIND_SHIFT: u32 = 60;
const PAYLOAD_MASK: u64 = (1 << KIND_SHIFT) - 1;

fn user_data(kind: Kind, payload: u64) -> u64 {
    debug_assert!(payload <= PAYLOAD_MASK);
    (kind as u64) << KIND_SHIFT | payload
}

/// A connection's token: its slot key in the driver's connection slab. The index
/// stays below 2^28 (each connection holds a descriptor; no open-file limit comes
/// near), so token and kind fit one `user_data`.
pub fn token(key: SlotKey) -> u64 {
    u64::from(key.index) << 32 | u64::from(key.generation)
}

/// The slot key a token was made from.
pub fn key(token: u64) -> SlotKey {
    SlotKey {
        index: (token >> 32) as u32,
        generation: token as u32,
    }
}

/// The ring's two timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// The housekeeping tick.
    Tick = 0,
    /// The pause after an accept failed for lack of descriptors.
    Backoff = 1,
}

/// A reaped completion, with the memory the operation used handed back.
pub enum Completion {
    /// A multishot accept produced a connection or failed; `more`: still armed.
    Accepted {
        listener: usize,
        result: io::Result<TcpStream>,
        more: bool,
    },
    /// A multishot receive produced data (`Ok(Some)`), end of stream (`Ok(None)`) or
    /// an error (`ENOBUFS`: the buffer ring was empty, the data is still in the
    /// socket); `more`: still armed.
    Received {
        conn: u64,
        result: io::Result<Option<Buffer>>,
        more: bool,
    },
    /// A send completed; its bytes come back for the partial-write tail.
    Sent {
        conn: u64,
        result: io::Result<usize>,
        output: Output,
    },
    /// The eventfd read completed: another shard woke this one.
    Woken,
    /// A timer fired (or was cancelled).
    Fired(Timer),
    /// A cancellation finished.
    Cancelled,
}

/// A received buffer the driver owns until it gives it back ([`Ring::recycle`]).
#[derive(Debug)]
pub struct Buffer {
    id: u16,
    len: usize,
}

/// The bytes of one send: a single queued line as it is (shared with its other
/// recipients, no copy), or several lines copied into one contiguous buffer. One
/// contiguous send costs the kernel one copy, where a vectored write of short lines
/// pays for importing an iovec and starting a user copy per line, which at high rates
/// costs more than copying the lines here.
#[derive(Debug)]
pub enum Output {
    Line(Bytes),
    Joined(Vec<u8>),
}

impl Output {
    /// The bytes the send carries.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Output::Line(line) => line,
            Output::Joined(buffer) => buffer,
        }
    }
}

/// A send in flight and the bytes it points into.
struct InFlightSend {
    conn: u64,
    output: Output,
}

/// The provided-buffer ring: `count` buffers of [`BUFFER_SIZE`] bytes and the ring
/// of entries through which they are handed to the kernel.
struct BufferRing {
    entries: NonNull<BufRingEntry>,
    entries_layout: Layout,
    memory: NonNull<u8>,
    memory_layout: Layout,
    count: u16,
    /// Our copy of the ring's tail (the kernel only reads it).
    tail: u16,
}

impl BufferRing {
    fn new(count: u16) -> io::Result<BufferRing> {
        if !count.is_power_of_two() || count > 1 << 15 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the receive buffer count must be a power of two up to 32768",
            ));
        }
        let entries_layout = Layout::from_size_align(
            usize::from(count) * std::mem::size_of::<BufRingEntry>(),
            4096,
        )
        .map_err(io::Error::other)?;
        let memory_layout = Layout::from_size_align(usize::from(count) * BUFFER_SIZE, 4096)
            .map_err(io::Error::other)?;
        // SAFETY: both layouts have a non-zero size (count >= 1). Zeroed memory is a
        // valid ring (tail 0: nothing published yet); the buffers' pages are only
        // made resident when the kernel first writes them.
        let (entries, memory) =
            unsafe { (alloc_zeroed(entries_layout), alloc_zeroed(memory_layout)) };
        let (Some(entries), Some(memory)) = (
            NonNull::new(entries.cast::<BufRingEntry>()),
            NonNull::new(memory),
        ) else {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        };
        let mut ring = BufferRing {
            entries,
            entries_layout,
            memory,
            memory_layout,
            count,
            tail: 0,
        };
        for id in 0..count {
            ring.provide(id);
        }
        ring.publish();
        Ok(ring)
    }

    /// Writes buffer `id` into the next free entry (published by [`Self::publish`]).
    fn provide(&mut self, id: u16) {
        let slot = usize::from(self.tail & (self.count - 1));
        // SAFETY: `slot < count` entries were allocated; the kernel does not read an
        // entry past the published tail, and this one is past it (invariant 2: every
        // buffer is either published or owned by the driver, so at most `count`
        // entries are live and this slot was already consumed).
        let entry = unsafe { &mut *self.entries.as_ptr().add(slot) };
        entry.set_addr(self.memory.as_ptr() as u64 + u64::from(id) * BUFFER_SIZE as u64);
        entry.set_len(BUFFER_SIZE as u32);
        entry.set_bid(id);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes every provided entry visible to the kernel.
    fn publish(&self) {
        // SAFETY: the tail shares its place with entry 0's reserved field, inside our
        // allocation, and the kernel reads it as an atomic u16; the release store
        // orders the entry writes before it.
        unsafe {
            let tail = BufRingEntry::tail(self.entries.as_ptr()) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    fn data(&self, buffer: &Buffer) -> &[u8] {
        // SAFETY: the kernel wrote `len <= BUFFER_SIZE` bytes into buffer `id` and
        // handed it to us with the completion; it writes there again only after
        // `recycle` re-publishes it, which needs the `Buffer` this borrow comes from.
        unsafe {
            std::slice::from_raw_parts(
                self.memory
                    .as_ptr()
                    .add(usize::from(buffer.id) * BUFFER_SIZE),
                buffer.len.min(BUFFER_SIZE),
            )
        }
    }

    fn data_mut(&mut self, buffer: &mut Buffer) -> &mut [u8] {
        // SAFETY: as in `data`; the slice is exclusive because the driver holds the
        // one `Buffer` for `id` (not `Clone`) mutably borrowed, and the ring mutably.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.memory
                    .as_ptr()
                    .add(usize::from(buffer.id) * BUFFER_SIZE),
                buffer.len.min(BUFFER_SIZE),
            )
        }
    }

    /// Frees the memory; only once the kernel no longer knows the ring (invariant 3).
    fn free(self) {
        // SAFETY: allocated in `new` with these layouts, freed once (self is consumed).
        unsafe {
            dealloc(self.entries.as_ptr().cast(), self.entries_layout);
            dealloc(self.memory.as_ptr(), self.memory_layout);
        }
    }
}

/// A shard's io_uring instance and everything its operations point to.
pub struct Ring {
    ring: IoUring,
    buffers: ManuallyDrop<BufferRing>,
    sends: ManuallyDrop<Slab<InFlightSend>>,
    /// Operations submitted whose final completion has not been reaped.
    in_flight: usize,
    /// `io_uring_enter` calls not yet reported ([`Ring::take_enters`]).
    enters: u64,
    eventfd_value: ManuallyDrop<Box<u64>>,
    timespecs: ManuallyDrop<Box<[Timespec; 2]>>,
    reaped: std::collections::VecDeque<cqueue::Entry>,
}

/// Ring setups from fastest to most widely supported; each needs a newer kernel than
/// the next. `SINGLE_ISSUER | DEFER_TASKRUN` (6.1) runs completion work only when this
/// thread enters the kernel, batched; `COOP_TASKRUN` (5.19) still avoids an interrupt
/// per completion.
const SETUPS: [(&str, bool, bool); 3] = [
    ("SINGLE_ISSUER | DEFER_TASKRUN", true, false),
    ("COOP_TASKRUN", false, true),
    ("no task-run flags", false, false),
];

/// Logs each setup fallback once per process, not once per shard.
static SETUP_FALLBACK_LOGGED: Once = Once::new();

impl Ring {
    /// A ring with `buffers` provided receive buffers, with the best setup the kernel
    /// accepts (a fallback is logged once, with the kernel's reason).
    pub fn new(buffers: u16) -> io::Result<Ring> {
        let mut refusals = Vec::new();
        let mut built = None;
        for (name, defer, coop) in SETUPS {
            let mut builder = IoUring::builder();
            builder.setup_cqsize(COMPLETION_ENTRIES).setup_clamp();
            if defer {
                builder.setup_single_issuer().setup_defer_taskrun();
            }
            if coop {
                builder.setup_coop_taskrun();
            }
            match builder.build(SUBMISSION_ENTRIES) {
                Ok(ring) => {
                    built = Some(ring);
                    if !refusals.is_empty() {
                        SETUP_FALLBACK_LOGGED.call_once(|| {
                            warn!(setup = name, refused = %refusals.join("; "), "io_uring: falling back to an older ring setup");
                        });
                    }
                    break;
                }
                Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {
                    refusals.push(format!("{name}: {error}"));
                }
                Err(error) => return Err(error),
            }
        }
        let ring = built.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                format!("no io_uring setup accepted ({})", refusals.join("; ")),
            )
        })?;
        let buffer_ring = BufferRing::new(buffers)?;
        // SAFETY: the entries stay allocated and registered until `Drop` unregisters
        // them, or are leaked (invariant 3).
        let registered = unsafe {
            ring.submitter().register_buf_ring(
                buffer_ring.entries.as_ptr() as u64,
                buffer_ring.count,
                BUFFER_GROUP,
            )
        };
        if let Err(error) = registered {
            // The kernel refused the ring, so it never saw this memory.
            buffer_ring.free();
            return Err(io::Error::new(
                error.kind(),
                format!("cannot register a provided-buffer ring (needs Linux 5.19): {error}"),
            ));
        }
        Ok(Ring {
            ring,
            buffers: ManuallyDrop::new(buffer_ring),
            sends: ManuallyDrop::new(Slab::default()),
            in_flight: 0,
            enters: 0,
            eventfd_value: ManuallyDrop::new(Box::new(0)),
            timespecs: ManuallyDrop::new(Box::new([Timespec::new(), Timespec::new()])),
            reaped: std::collections::VecDeque::new(),
        })
    }

    /// Queues `entry`, entering the kernel first if the submission queue is full.
    fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every entry built in this module points only at memory this
            // ring owns until the operation's final completion (invariant 1).
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                self.in_flight += 1;
                return Ok(());
            }
            self.enters += 1;
            match self.ring.submit() {
                Ok(_) => {}
                Err(error) if retryable(&error) => self.reap(),
                Err(error) => return Err(error),
            }
        }
    }

    /// Arms a multishot accept on listener `index`.
    pub fn accept(&mut self, fd: RawFd, index: usize) -> io::Result<()> {
        let entry = opcode::AcceptMulti::new(Fd(fd))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data(Kind::Accept, index as u64));
        self.push(entry)
    }

    /// Arms a multishot receive into the provided buffers for connection `conn`.
    pub fn receive(&mut self, fd: RawFd, conn: u64) -> io::Result<()> {
        let entry = opcode::RecvMulti::new(Fd(fd), BUFFER_GROUP)
            .build()
            .user_data(user_data(Kind::Receive, conn));
        self.push(entry)
    }

    /// Sends `output` with one plain send. Its bytes stay here until the completion
    /// hands them back.
    pub fn send(&mut self, fd: RawFd, conn: u64, output: Output) -> io::Result<()> {
        let bytes = output.bytes();
        // The bytes live on the heap (a `Bytes` line or a `Vec`'s buffer), so they do
        // not move when the `InFlightSend` moves into the slab. A send is bounded by
        // the client's sendq, far below `u32::MAX`.
        let (pointer, len) = (bytes.as_ptr(), bytes.len() as u32);
        let slot = self.sends.insert_with(|_| InFlightSend { conn, output });
        let entry = opcode::Send::new(Fd(fd), pointer, len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data(Kind::Send, token(slot)));
        self.push(entry)
    }

    /// Cancels the multishot accept of listener `index` (a live upgrade stops the
    /// shard's sockets); it completes with `ECANCELED`.
    pub fn cancel_accept(&mut self, index: usize) -> io::Result<()> {
        self.cancel(user_data(Kind::Accept, index as u64))
    }

    /// Cancels the multishot receive of connection `conn`; it completes with
    /// `ECANCELED`, after any input it had already taken in.
    pub fn cancel_receive(&mut self, conn: u64) -> io::Result<()> {
        self.cancel(user_data(Kind::Receive, conn))
    }

    /// Cancels every send in flight; each completes with `ECANCELED`, or with how
    /// much it wrote if it had finished.
    pub fn cancel_sends(&mut self) -> io::Result<()> {
        let slots: Vec<SlotKey> = self.sends.iter_keyed().map(|(slot, _)| slot).collect();
        for slot in slots {
            self.cancel(user_data(Kind::Send, token(slot)))?;
        }
        Ok(())
    }

    /// Cancels the one operation with `target` as its user data. By user data, not
    /// by descriptor: the kernel finds an armed operation by its user data in a hash
    /// table, but matching a descriptor walks every bucket of it, and 5,000 such
    /// cancels took a shard 500 ms (a live upgrade's freeze, 10,000 clients).
    fn cancel(&mut self, target: u64) -> io::Result<()> {
        let cancel = opcode::AsyncCancel2::new(CancelBuilder::user_data(target))
            .build()
            .user_data(user_data(Kind::Cancel, 0));
        self.push(cancel)
    }

    /// Arms a read of the wake-up eventfd (8 bytes into memory this ring owns).
    pub fn read_eventfd(&mut self, fd: RawFd) -> io::Result<()> {
        let target: *mut u64 = &mut **self.eventfd_value;
        let entry = opcode::Read::new(Fd(fd), target.cast(), 8)
            .build()
            .user_data(user_data(Kind::EventFd, 0));
        self.push(entry)
    }

    /// Arms `timer` to fire after `after` (one of each kind in flight at a time).
    pub fn arm(&mut self, timer: Timer, after: Duration) -> io::Result<()> {
        let spec = &mut self.timespecs[timer as usize];
        *spec = Timespec::new()
            .sec(after.as_secs())
            .nsec(after.subsec_nanos());
        let spec: *const Timespec = spec;
        let kind = match timer {
            Timer::Tick => Kind::Tick,
            Timer::Backoff => Kind::Backoff,
        };
        let entry = opcode::Timeout::new(spec)
            .build()
            .user_data(user_data(kind, 0));
        self.push(entry)
    }

    /// Submits what is queued and waits for at least one completion: the loop's one
    /// `io_uring_enter` per turn.
    pub fn submit_and_wait(&mut self) -> io::Result<()> {
        self.enters += 1;
        match self.ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(error) if retryable(&error) => {}
            Err(error) => return Err(error),
        }
        self.reap();
        Ok(())
    }

    /// Submits what is queued and collects the completions that are ready, without
    /// waiting for any: the enter of a turn that still has writers to service.
    pub fn collect_ready(&mut self) -> io::Result<()> {
        self.enters += 1;
        let now = Timespec::new();
        let args = SubmitArgs::new().timespec(&now);
        match self.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(error) if retryable(&error) || error.raw_os_error() == Some(libc::ETIME) => {}
            Err(error) => return Err(error),
        }
        self.reap();
        Ok(())
    }

    /// Enter calls since the last call.
    pub fn take_enters(&mut self) -> u64 {
        std::mem::take(&mut self.enters)
    }

    fn reap(&mut self) {
        let reaped = &mut self.reaped;
        reaped.extend(self.ring.completion());
    }

    /// The next reaped completion, decoded; the memory its operation used is handed
    /// back with it (a send's lines, a received buffer).
    pub fn next_completion(&mut self) -> Option<Completion> {
        loop {
            let entry = self.reaped.pop_front()?;
            let more = cqueue::more(entry.flags());
            if !more {
                self.in_flight -= 1;
            }
            let payload = entry.user_data() & PAYLOAD_MASK;
            let result = entry.result();
            let outcome = |result: i32| {
                if result < 0 {
                    Err(io::Error::from_raw_os_error(-result))
                } else {
                    Ok(result as usize)
                }
            };
            let kind = entry.user_data() >> KIND_SHIFT;
            let completion = match kind {
                k if k == Kind::Accept as u64 => Completion::Accepted {
                    listener: payload as usize,
                    // SAFETY: a non-negative accept result is a descriptor the kernel
                    // just created for us; adopted once, here (invariant 4).
                    result: outcome(result)
                        .map(|fd| unsafe { TcpStream::from_raw_fd(fd as RawFd) }),
                    more,
                },
                k if k == Kind::Receive as u64 => Completion::Received {
                    conn: payload,
                    result: match (outcome(result), cqueue::buffer_select(entry.flags())) {
                        (Ok(len), Some(id)) => Ok(Some(Buffer { id, len })),
                        (Ok(_), None) => Ok(None),
                        (Err(error), _) => Err(error),
                    },
                    more,
                },
                k if k == Kind::Send as u64 => {
                    let Some(send) = self.sends.remove(key(payload)) else {
                        continue;
                    };
                    Completion::Sent {
                        conn: send.conn,
                        result: outcome(result),
                        output: send.output,
                    }
                }
                k if k == Kind::EventFd as u64 => Completion::Woken,
                k if k == Kind::Tick as u64 => Completion::Fired(Timer::Tick),
                k if k == Kind::Backoff as u64 => Completion::Fired(Timer::Backoff),
                _ => Completion::Cancelled,
            };
            return Some(completion);
        }
    }

    /// The bytes of a received buffer.
    pub fn data(&self, buffer: &Buffer) -> &[u8] {
        self.buffers.data(buffer)
    }

    /// The bytes of a received buffer, writable: TLS decrypts records in place.
    pub fn data_mut(&mut self, buffer: &mut Buffer) -> &mut [u8] {
        self.buffers.data_mut(buffer)
    }

    /// Gives a received buffer back to the kernel.
    pub fn recycle(&mut self, buffer: Buffer) {
        self.buffers.provide(buffer.id);
        self.buffers.publish();
    }

    /// Cancels every operation in flight and reaps until none is left or `deadline`
    /// passes; returns whether none is left. Completions are discarded (received
    /// buffers are recycled, sends' lines dropped).
    pub fn settle(&mut self, deadline: Instant) -> bool {
        let cancel = opcode::AsyncCancel2::new(CancelBuilder::any().all())
            .build()
            .user_data(user_data(Kind::Cancel, 0));
        if self.push(cancel).is_err() {
            return false;
        }
        while self.in_flight > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let left = deadline - now;
            let wait = Timespec::new()
                .sec(left.as_secs())
                .nsec(left.subsec_nanos());
            let args = SubmitArgs::new().timespec(&wait);
            self.enters += 1;
            match self.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(error) if retryable(&error) || error.raw_os_error() == Some(libc::ETIME) => {}
                Err(_) => return false,
            }
            self.reap();
            while let Some(completion) = self.next_completion() {
                if let Completion::Received {
                    result: Ok(Some(buffer)),
                    ..
                } = completion
                {
                    self.recycle(buffer);
                }
            }
        }
        true
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        if self.in_flight > 0 {
            // Invariant 3: the kernel may still use this memory; leak it.
            warn!(
                in_flight = self.in_flight,
                "io_uring operations still in flight at shard stop; leaking their buffers"
            );
            return;
        }
        let _ = self.ring.submitter().unregister_buf_ring(BUFFER_GROUP);
        // SAFETY: nothing is in flight and the buffer ring is unregistered, so the
        // kernel holds no pointer into any of this memory; each is dropped once.
        unsafe {
            ManuallyDrop::take(&mut self.buffers).free();
            ManuallyDrop::drop(&mut self.sends);
            ManuallyDrop::drop(&mut self.eventfd_value);
            ManuallyDrop::drop(&mut self.timespecs);
        }
    }
}

/// Errors after which entering again (after reaping) is the right answer.
fn retryable(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
    )
}

/// Whether the kernel has everything the driver uses: a ring, provided-buffer rings
/// (5.19) and multishot receive (6.0, probed through `IORING_OP_SEND_ZC`, which came
/// with it); the error says what is missing.
pub fn probe() -> io::Result<()> {
    let ring = Ring::new(1)?;
    let mut probe = io_uring::Probe::new();
    ring.ring.submitter().register_probe(&mut probe)?;
    if !probe.is_supported(opcode::SendZc::CODE) {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "multishot receive needs Linux 6.0 or later",
        ));
    }
    Ok(())
}

/// A non-blocking eventfd for cross-shard wake-ups.
pub fn eventfd() -> io::Result<File> {
    // SAFETY: eventfd(2) takes no pointers; a non-negative result is a new
    // descriptor that nothing else owns, adopted once.
    unsafe {
        let fd = libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(File::from_raw_fd(fd))
    }
}

thread_local! {
    /// Writers whose outbox was pushed to (or finished) since the driver last looked.
    static READY: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// A waker for connection `conn`'s writer: waking it lists the connection for the
/// driver ([`take_ready`]). Cloning and dropping it cost nothing and it allocates
/// nothing, so parking a writer in its outbox is free. Outboxes are only touched on
/// their shard's thread, so the list it lands in is that shard's.
pub fn writer_waker(conn: u64) -> Waker {
    // SAFETY: the vtable's functions never dereference the data pointer (it is the
    // token as an integer) and are sound to call from any thread (invariant 5).
    unsafe { Waker::from_raw(RawWaker::new(conn as usize as *const (), &WRITER_WAKER)) }
}

/// Moves the writers listed since the last call into `into`.
pub fn take_ready(into: &mut Vec<u64>) {
    READY.with(|ready| std::mem::swap(&mut *ready.borrow_mut(), into));
}

static WRITER_WAKER: RawWakerVTable =
    RawWakerVTable::new(clone_writer, wake_writer, wake_writer, drop_writer);

fn clone_writer(data: *const ()) -> RawWaker {
    RawWaker::new(data, &WRITER_WAKER)
}

fn wake_writer(data: *const ()) {
    let conn = data as usize as u64;
    let _ = READY.try_with(|ready| ready.borrow_mut().push(conn));
}

fn drop_writer(_: *const ()) {}

/// Logs the ring setup a shard got (once per process).
pub fn log_setup(ring: &Ring) {
    static LOGGED: Once = Once::new();
    LOGGED.call_once(|| {
        let params = ring.ring.params();
        info!(
            single_issuer = params.is_setup_single_issuer(),
            nodrop = params.is_feature_nodrop(),
            "io_uring ring driver ready"
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_gives_back_its_slot_key() {
        let key = SlotKey {
            index: (1 << 28) - 1,
            generation: u32::MAX,
        };
        assert_eq!(super::key(token(key)), key);
        assert_eq!(
            user_data(Kind::Receive, token(key)) & PAYLOAD_MASK,
            token(key)
        );
    }

    #[test]
    fn waking_a_writer_lists_its_connection_once_per_wake() {
        let mut ready = Vec::new();
        take_ready(&mut ready);
        ready.clear();
        let waker = writer_waker(42);
        let parked = waker.clone();
        parked.wake();
        waker.wake_by_ref();
        take_ready(&mut ready);
        assert_eq!(ready, [42, 42]);
        ready.clear();
        take_ready(&mut ready);
        assert!(ready.is_empty());
    }
}
