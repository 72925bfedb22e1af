//! Work too slow for a shard's thread, done by a small pool of worker threads: an
//! argon2id password hash (with the SCRAM-SHA-256 keys' PBKDF2) or verification
//! (tens of milliseconds of CPU each), and
//! waiting for the store to commit an account before the client is told it exists.
//!
//! Contract:
//! - A shard MUST NOT run argon2 or wait for the store itself: a login storm would
//!   stall every other client of that shard. It submits a task ([`Offload::submit`]);
//!   a worker runs it and leaves a [`Finished`] for the client in the shard's
//!   completion queue, then wakes the shard through the bus (the same wake-up as a
//!   hand-off), which takes the queue in when it pumps.
//! - Bounds: at most [`QUEUE_LEN`] tasks wait for a worker; past it `submit` refuses
//!   ([`Busy`]) and the command answers its client with a clear refusal at once. A
//!   completion queue holds at most what its shard's clients submitted, so it is
//!   bounded by the same number.
//! - Order: tasks of one client may finish out of order (two workers); the commands
//!   allow one authentication in flight per client.
//! - Shutdown: workers hold no strong reference to the shared state; they end when
//!   the task queue's sender is dropped with it.

use super::ClientId;
use crate::accounts::Credentials;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};

/// Worker threads: two, so a login storm uses at most two cores' worth of argon2
/// whatever the shard count, and one slow hash never blocks all the others.
pub const WORKERS: usize = 2;

/// Tasks that may wait for a worker (about 64 x 25 ms = 1.6 s of argon2 behind two
/// workers: past that, a client is better told to retry than left waiting).
pub const QUEUE_LEN: usize = 64;

/// A unit of offloaded work; it reports by calling [`Offload::finish`].
pub type Task = Box<dyn FnOnce() + Send>;

/// The pool is busy: [`QUEUE_LEN`] tasks are waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the authentication workers are busy")]
pub struct Busy;

/// How a login was attempted, so its result is answered the way it was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginVia {
    /// `AUTHENTICATE` (SASL PLAIN): 900 and 903, or 904.
    Sasl,
    /// `NickServ IDENTIFY`: NOTICEs from NickServ.
    Identify,
    /// `PASS account:password` (clients without SASL): 900, or a NOTICE.
    Pass,
}

/// How an account was registered, for the same reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterVia {
    /// IRCv3 `draft/account-registration` (`REGISTER`): `REGISTER SUCCESS` or `FAIL`.
    Ircv3,
    /// `NickServ REGISTER`: NOTICEs from NickServ.
    NickServ,
}

/// What a worker finished for a client; the commands take it up on its shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    /// A password was checked against an account's hash.
    Verified {
        /// How the login was asked for.
        via: LoginVia,
        /// The account, as the client named it.
        account: Box<str>,
        /// Whether the password matched.
        matched: bool,
    },
    /// A new account's password was hashed (`None`: hashing failed).
    Hashed {
        /// How the registration was asked for.
        via: RegisterVia,
        /// The account name.
        account: Box<str>,
        /// The argon2id PHC string and the SCRAM keys.
        password: Option<Box<Credentials>>,
    },
    /// A logged-in user's new password was hashed (NickServ SET PASSWORD; `None`:
    /// hashing failed).
    Rehashed {
        /// The account, as the user is logged in to it.
        account: Box<str>,
        /// The argon2id PHC string and the SCRAM keys.
        password: Option<Box<Credentials>>,
    },
    /// The password given to drop an account (NickServ DROP) was checked.
    DropVerified {
        /// The account, as the user is logged in to it.
        account: Box<str>,
        /// Whether the password matched.
        matched: bool,
    },
    /// The store committed everything queued before the account's registration
    /// (`false`: the store's writer has stopped).
    Committed {
        /// How the registration was asked for.
        via: RegisterVia,
        /// The account name, as registered.
        account: Box<str>,
        /// Whether it is on disk.
        stored: bool,
    },
}

/// One shard's completion queue: what finished, for which of its clients.
type CompletionQueue = Mutex<Vec<(ClientId, Finished)>>;

/// The pool and every shard's completion queue; see the module contract.
pub struct Offload {
    /// The task queue, made (and the workers started) by the first submit: a server
    /// that never authenticates anyone pays no threads.
    tasks: OnceLock<SyncSender<Task>>,
    /// Per shard: what finished for its clients, not yet taken in.
    finished: Box<[CompletionQueue]>,
    /// Per shard: whether `finished` holds anything (one load per pump).
    has_finished: Box<[AtomicBool]>,
}

impl std::fmt::Debug for Offload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Offload")
            .field("shards", &self.finished.len())
            .finish_non_exhaustive()
    }
}

impl Offload {
    /// A pool for `shards` shards.
    pub fn new(shards: usize) -> Offload {
        Offload {
            tasks: OnceLock::new(),
            finished: (0..shards).map(|_| Mutex::default()).collect(),
            has_finished: (0..shards).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    /// Queues `task` for a worker, or refuses when [`QUEUE_LEN`] wait.
    pub fn submit(&self, task: Task) -> Result<(), Busy> {
        let tasks = self.tasks.get_or_init(start_workers);
        tasks.try_send(task).map_err(|error| match error {
            TrySendError::Full(_) | TrySendError::Disconnected(_) => Busy,
        })
    }

    /// Leaves `finished` for `client` in its shard's queue (a worker, after its task;
    /// the caller then wakes the shard).
    pub fn finish(&self, client: ClientId, finished: Finished) {
        let shard = client.shard as usize;
        if let Some(queue) = self.finished.get(shard) {
            lock(queue).push((client, finished));
            self.has_finished[shard].store(true, Ordering::Release);
        }
    }

    /// What finished for shard `shard`'s clients since the last call; one atomic load
    /// when nothing did.
    pub fn take_finished(&self, shard: u16) -> Vec<(ClientId, Finished)> {
        let shard = shard as usize;
        match self.has_finished.get(shard) {
            // A load first: the swap (a locked write) only when something came.
            Some(flag) if flag.load(Ordering::Acquire) && flag.swap(false, Ordering::AcqRel) => {
                std::mem::take(&mut *lock(&self.finished[shard]))
            }
            _ => Vec::new(),
        }
    }
}

/// Starts the workers on one shared queue; each ends when the queue's sender is gone.
fn start_workers() -> SyncSender<Task> {
    keep_big_blocks_out_of_the_heap();
    let (tasks, queue) = mpsc::sync_channel::<Task>(QUEUE_LEN);
    let queue = Arc::new(Mutex::new(queue));
    for number in 0..WORKERS {
        let queue = queue.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("auth-{number}"))
            .spawn(move || run_worker(&queue));
        if let Err(why) = spawned {
            tracing::error!(%why, "cannot start an authentication worker");
        }
    }
    tasks
}

/// Largest allocation glibc may serve from a heap rather than its own mapping.
const MMAP_THRESHOLD: libc::c_int = 4 << 20;

/// Each argon2 run allocates its memory cost (19 MiB) and frees it. glibc raises its
/// mmap threshold to the size of a freed mapping (up to 32 MiB), so from the second
/// login on those 19 MiB came from the workers' heaps and stayed there: 2,000 idle
/// clients logged in with SASL held 210 MiB against 19 MiB without this
/// (`loadgen idle -c 2000 -k 20 --sasl ...`, ring, one shard). A fixed threshold
/// keeps every block of 4 MiB or more in a mapping of its own, returned at `free`.
/// Process-wide, and nothing else the server allocates is that large per call.
fn keep_big_blocks_out_of_the_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes the allocator's tuning; called before the workers
    // allocate anything, and harmless at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

fn run_worker(queue: &Mutex<Receiver<Task>>) {
    loop {
        let task = lock(queue).recv();
        match task {
            Ok(task) => task(),
            Err(_) => return,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::slab::SlotKey;

    fn client(shard: u16) -> ClientId {
        ClientId {
            node: 0,
            shard,
            slot: SlotKey {
                index: 0,
                generation: 0,
            },
        }
    }

    #[test]
    fn a_finished_task_lands_in_its_clients_shard_queue_only() {
        let offload = Arc::new(Offload::new(2));
        let (done, wait) = mpsc::channel();
        let reporter = offload.clone();
        offload
            .submit(Box::new(move || {
                reporter.finish(
                    client(1),
                    Finished::Verified {
                        via: LoginVia::Sasl,
                        account: "alice".into(),
                        matched: true,
                    },
                );
                let _ = done.send(());
            }))
            .expect("room in the queue");
        wait.recv().expect("the worker ran the task");
        assert!(offload.take_finished(0).is_empty());
        assert_eq!(offload.take_finished(1).len(), 1);
        assert!(offload.take_finished(1).is_empty());
    }

    #[test]
    fn a_full_queue_refuses_rather_than_grows() {
        let offload = Offload::new(1);
        let (release, blocked) = mpsc::channel::<()>();
        let blocked = Arc::new(Mutex::new(blocked));
        let mut refused = false;
        for _ in 0..QUEUE_LEN + WORKERS + 1 {
            let blocked = blocked.clone();
            if offload
                .submit(Box::new(move || {
                    let _ = lock(&blocked).recv();
                }))
                .is_err()
            {
                refused = true;
                break;
            }
        }
        assert!(refused, "the queue is bounded");
        drop(release);
    }
}
