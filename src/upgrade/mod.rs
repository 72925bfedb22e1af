//! Live upgrade: `SIGUSR2` (or an operator's `UPGRADE`) runs the binary now at the
//! server's path and hands it every connection, without disconnecting anyone.
//!
//! **A new process, not exec in place.** The old process starts the new binary with
//! the same command line and one end of a Unix socket pair; the listening sockets and
//! every client's socket cross over it with `SCM_RIGHTS`, beside the state. A process
//! that exec'd itself would have nothing left to fall back to: here, until the new
//! process says it has read and checked everything, the old one still holds every
//! socket and all of its state, so a failed upgrade (the new binary exits, cannot
//! read the state, speaks another format) only thaws the old one.
//!
//! The exchange, on the pair (each message a little-endian length and postcard):
//! 1. new -> old: [`Hello`] with the handover [`FORMAT`] it reads. Another format:
//!    refused before anything stops.
//! 2. old: every shard freezes ([`crate::state::freeze`]): socket operations cancelled and
//!    completed, input stopped everywhere, the last hand-offs taken in, each shard's
//!    clients captured; the store commits what is queued.
//! 3. old -> new: the [`Handover`] (network snapshot and every shard's clients), then
//!    the descriptors.
//! 4. new -> old: [`Verdict`]: `Ready` once the snapshot and every record have been
//!    decoded and checked and the listeners matched to this configuration; or
//!    `Failed` with the reason (the old process thaws and tells the operator).
//! 5. old: exits without touching a socket (no `ERROR`, no shutdown: the sockets
//!    live on in the new process). new: once the pair reads end-of-file and its
//!    parent has changed (the old process is gone, and with it its io_uring
//!    instances), opens the store (retrying while the kernel still holds the old
//!    process's lock on it, which can outlive its exit by a tick) and starts the
//!    shards with the clients in their old slots.
//!
//! What does not cross: TLS and WebSocket connections (their session state lives in
//! this process, and this kernel has no kernel TLS to hold the keys). Between steps
//! 1 and 2 each is told so in a NOTICE and closed, its output flushed (others see
//! `Server upgrade (reconnect)` as its QUIT); the shards then freeze.
//!
//! A cluster node hands over its link too, and the new process goes on as the same
//! run of the node (see [`crate::cluster::Continuing`]): it connects and subscribes
//! as the node (named in [`HANDOVER_NODE_ENV`]) before step 1; in step 2 the old
//! link seals after every shard ([`crate::state::handover::LinkCapture`]); in step
//! 4 the new one takes over the node id's lease for that run. What can still fail
//! after step 4 is only what step 4 cannot check: opening the store once the old
//! process has let go.

pub mod fds;

use crate::state::handover::{Handover, FORMAT};
use crate::state::ClientId;
use anyhow::{anyhow, bail, Context};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::time::Duration;
use tracing::{info, warn};

/// The environment variable that tells a starting process it is the new side of an
/// upgrade, and which inherited descriptor is its end of the pair.
pub const HANDOVER_FD_ENV: &str = "RINGCHAT_HANDOVER_FD";
/// On a cluster node, the node id the new process goes on as.
pub const HANDOVER_NODE_ENV: &str = "RINGCHAT_HANDOVER_NODE";

/// How long the new binary may take to start and say hello (it parses its settings,
/// nothing more, before that).
const HELLO_TIMEOUT: Duration = Duration::from_secs(20);
/// How long TLS and WebSocket clients have to read their farewell and go.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the shards may take to freeze (work off the shards, such as a password
/// hash, must come back first).
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the new process may take to read and check the handover.
const VERDICT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the new process waits for the old one to be gone.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest message either side accepts (the handover of ~20,000 clients with
/// full send queues fits many times over).
const MAX_MESSAGE: usize = 1 << 30;

/// The new process's first word: which handover format it reads.
#[derive(Debug, Serialize, Deserialize)]
pub struct Hello {
    /// [`FORMAT`] of the new binary.
    pub format: u32,
    /// Its version, for the log.
    pub version: String,
}

/// The new process's answer to the handover.
#[derive(Debug, Serialize, Deserialize)]
pub enum Verdict {
    /// Everything was read and checked: the old process may go.
    Ready,
    /// The handover cannot be used; the reason, for the operator.
    Failed(String),
}

static BINARY: OnceLock<PathBuf> = OnceLock::new();

/// Remembers the path this binary was started from, at start: an upgrade runs what
/// is at that path then (the new build installed over it), not this process's own
/// image (which `/proc/self/exe` would name, as `... (deleted)` once replaced).
pub fn remember_binary() {
    if let Ok(path) = std::env::current_exe() {
        let path = PathBuf::from(
            path.to_string_lossy()
                .trim_end_matches(" (deleted)")
                .to_owned(),
        );
        let _ = BINARY.set(path);
    }
}

/// The old side, up to the new process's verdict: starts the new binary, freezes
/// the shards, sends everything. `Ok` with the new process's pid means it took over
/// and this process must exit without touching a socket; an error means this
/// process was thawed (or never stopped) and serves on.
pub fn hand_over(server: &crate::Server, asked_by: Option<ClientId>) -> anyhow::Result<u32> {
    let shared = server.shared();
    let binary = BINARY
        .get()
        .cloned()
        .ok_or_else(|| anyhow!("the server's binary path is unknown"))?;
    let (ours, theirs) = UnixStream::pair().context("cannot create the handover socket")?;
    let node = shared.cluster.as_ref().map(|cluster| cluster.node);
    let mut child = start_new_binary(&binary, &theirs, node)?;
    drop(theirs);
    let outcome = hand_over_to(server, &ours, &mut child, asked_by);
    if outcome.is_err() {
        // The new process is of no use any more; make sure it is gone.
        let _ = child.kill();
        let _ = child.wait();
    }
    outcome.map(|()| child.id())
}

fn hand_over_to(
    server: &crate::Server,
    ours: &UnixStream,
    child: &mut Child,
    asked_by: Option<ClientId>,
) -> anyhow::Result<()> {
    let shared = server.shared();
    ours.set_read_timeout(Some(HELLO_TIMEOUT))?;
    let hello: Hello = read_message(ours).map_err(|error| {
        // The pair closes as the child exits; its status follows a moment later.
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        let mut status = child.try_wait().ok().flatten();
        while status.is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            status = child.try_wait().ok().flatten();
        }
        match status {
            Some(status) => anyhow!("the new binary exited before the handover ({status})"),
            None => anyhow!("the new binary did not start the handover: {error:#}"),
        }
    })?;
    if hello.format != FORMAT {
        bail!(
            "the new binary ({}) reads handover format {} and this one ({}) writes {}: they cannot hand over; restart instead",
            hello.version,
            hello.format,
            env!("CARGO_PKG_VERSION"),
            FORMAT
        );
    }
    let shards = shared.config.shards;
    shared.freeze.ask_farewell();
    if !shared.freeze.wait_for_farewells(shards, FAREWELL_TIMEOUT) {
        warn!("upgrade: some TLS or WebSocket clients had not gone within {FAREWELL_TIMEOUT:?}; they are closed without their last lines");
    }
    info!(new_version = %hello.version, "upgrade: freezing the shards");
    let frozen_at = std::time::Instant::now();
    server.freeze();
    let Some(mut captures) = shared.freeze.wait_for_captures(FREEZE_TIMEOUT) else {
        server.thaw();
        bail!("the shards did not come to a stop within {FREEZE_TIMEOUT:?}");
    };
    let captured_ms = frozen_at.elapsed().as_millis() as u64;
    // A cluster node's link sealed before any shard captured.
    let link = shared.freeze.take_link();
    if shared.cluster.is_some() && link.is_none() {
        server.thaw();
        bail!("the cluster link did not settle");
    }
    if let Some(store) = &shared.store {
        if let Err(error) = store.sync() {
            server.thaw();
            bail!("the store cannot commit what is queued: {error}");
        }
    }
    let descriptors: Vec<RawFd> = captures
        .iter_mut()
        .flat_map(|capture| std::mem::take(&mut capture.descriptors))
        .collect();
    let handover = Handover {
        format: FORMAT,
        from_version: env!("CARGO_PKG_VERSION").to_owned(),
        network: shared.log.latest().snapshot(),
        shards: captures,
        asked_by,
        descriptors: descriptors.len(),
        link,
    };
    let clients: usize = handover.shards.iter().map(|s| s.clients.len()).sum();
    let sent = write_message(ours, &handover)
        .and_then(|()| fds::send(ours, &descriptors).context("cannot pass the sockets"));
    if let Err(error) = sent {
        server.thaw();
        return Err(error.context("the handover did not reach the new process"));
    }
    let sent_ms = frozen_at.elapsed().as_millis() as u64;
    ours.set_read_timeout(Some(VERDICT_TIMEOUT))?;
    match read_message::<Verdict>(ours) {
        Ok(Verdict::Ready) => {
            info!(
                clients,
                captured_ms,
                sent_ms,
                frozen_ms = frozen_at.elapsed().as_millis() as u64,
                pid = child.id(),
                "upgrade: the new process took over; exiting"
            );
            Ok(())
        }
        Ok(Verdict::Failed(reason)) => {
            server.thaw();
            Err(anyhow!("the new process refused the handover: {reason}"))
        }
        Err(error) => {
            server.thaw();
            Err(anyhow!(
                "the new process ended before it was ready: {error:#}"
            ))
        }
    }
}

/// Starts the binary at `binary` with this process's arguments and environment, and
/// `theirs` as its end of the pair (the one descriptor it inherits on purpose). A
/// cluster node names its `node` id, which the new process subscribes as before
/// it says hello.
fn start_new_binary(
    binary: &PathBuf,
    theirs: &UnixStream,
    node: Option<u16>,
) -> anyhow::Result<Child> {
    let fd = theirs.as_raw_fd();
    let mut command = Command::new(binary);
    if let Some(node) = node {
        command.env(HANDOVER_NODE_ENV, node.to_string());
    }
    command
        .args(std::env::args_os().skip(1))
        .env(HANDOVER_FD_ENV, fd.to_string())
        // systemd's socket activation names this process; the new one gets the
        // listeners from the handover.
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_FDNAMES");
    // systemd's watchdog names this process too; unset, it means "whoever reads
    // it", so the new process (the main one once it takes over) keeps pinging.
    // Left as it was, the new one would not ping and systemd would kill it.
    if std::env::var("WATCHDOG_PID").is_ok_and(|pid| pid == std::process::id().to_string()) {
        command.env_remove("WATCHDOG_PID");
    }
    // SAFETY: between fork and exec only async-signal-safe calls: fcntl on a
    // descriptor this process owns, to let it cross the exec.
    unsafe {
        command.pre_exec(move || {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))
}

/// The new side's end of the pair, once it has said hello and received the
/// handover.
pub struct Incoming {
    /// The answer still owed to the old process.
    pub answer: Answer,
    /// What the old process sent.
    pub handover: Handover,
    /// The descriptors, in the handover's order.
    pub descriptors: Vec<OwnedFd>,
}

/// The new side's verdict, still to be given.
pub struct Answer {
    socket: UnixStream,
}

/// The new side of an upgrade before it says hello: what it must prepare first.
pub struct Starting {
    socket: UnixStream,
    /// On a cluster node, the node id to subscribe as before saying hello.
    pub node: Option<u16>,
}

impl Starting {
    /// If this process was started by an upgrade, its end of the pair; `Ok(None)`
    /// for an ordinary start.
    pub fn from_env() -> anyhow::Result<Option<Starting>> {
        let Some(fd) = std::env::var_os(HANDOVER_FD_ENV) else {
            return Ok(None);
        };
        let node = std::env::var_os(HANDOVER_NODE_ENV);
        // Children of this process must not take it for an upgrade.
        std::env::remove_var(HANDOVER_FD_ENV);
        std::env::remove_var(HANDOVER_NODE_ENV);
        let fd: RawFd = fd
            .to_string_lossy()
            .parse()
            .map_err(|_| anyhow!("{HANDOVER_FD_ENV} is not a descriptor number"))?;
        let node = node
            .map(|node| {
                node.to_string_lossy()
                    .parse()
                    .map_err(|_| anyhow!("{HANDOVER_NODE_ENV} is not a node id"))
            })
            .transpose()?;
        // SAFETY: the old process passed this descriptor for us alone; nothing else
        // in this process knows it, so it is adopted once.
        let socket = unsafe { UnixStream::from_raw_fd(fd) };
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        // SAFETY: fcntl on the descriptor just adopted.
        unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) };
        Ok(Some(Starting { socket, node }))
    }

    /// Says hello and receives the handover.
    pub fn receive(self) -> anyhow::Result<Incoming> {
        let socket = self.socket;
        write_message(
            &socket,
            &Hello {
                format: FORMAT,
                version: env!("CARGO_PKG_VERSION").to_owned(),
            },
        )?;
        let handover: Handover = read_message(&socket).context("cannot read the handover")?;
        if handover.format != FORMAT {
            bail!(
                "the handover is in format {}, this binary reads {FORMAT}",
                handover.format
            );
        }
        let descriptors =
            fds::receive(&socket, handover.descriptors).context("cannot receive the sockets")?;
        info!(
            from_version = %handover.from_version,
            shards = handover.shards.len(),
            clients = handover.shards.iter().map(|s| s.clients.len()).sum::<usize>(),
            "upgrade: handover received"
        );
        Ok(Incoming {
            answer: Answer { socket },
            handover,
            descriptors,
        })
    }
}

impl Answer {
    /// Tells the old process the handover cannot be used, and why; it serves on.
    pub fn refuse(&self, reason: &str) {
        let _ = write_message(&self.socket, &Verdict::Failed(reason.to_owned()));
    }

    /// Tells the old process to go, and waits until it has: its end of the pair
    /// closes as it exits, and this process is handed to another parent once its
    /// last thread is gone. (A lock on a file it held may be released a tick later:
    /// [`crate::store::Store::open_after_predecessor`] waits for that.)
    pub fn accept(&self) -> anyhow::Result<()> {
        // SAFETY: getppid has no preconditions.
        let old = unsafe { libc::getppid() };
        write_message(&self.socket, &Verdict::Ready)?;
        self.socket.set_read_timeout(Some(EXIT_TIMEOUT))?;
        let mut byte = [0u8; 1];
        match (&self.socket).read(&mut byte) {
            Ok(0) => {}
            Ok(_) => bail!("the old process sent more after the verdict"),
            Err(error) => {
                warn!(%error, "the old process did not exit in time");
                bail!("the old process did not exit within {EXIT_TIMEOUT:?}")
            }
        }
        let deadline = std::time::Instant::now() + EXIT_TIMEOUT;
        // SAFETY: as above.
        while unsafe { libc::getppid() } == old {
            if std::time::Instant::now() >= deadline {
                bail!("the old process did not finish exiting within {EXIT_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }
}

fn write_message<T: Serialize>(socket: &UnixStream, message: &T) -> anyhow::Result<()> {
    let bytes = postcard::to_stdvec(message).context("cannot encode a handover message")?;
    let mut writer = socket;
    writer.write_all(&(bytes.len() as u32).to_le_bytes())?;
    writer.write_all(&bytes)?;
    Ok(())
}

fn read_message<T: DeserializeOwned>(socket: &UnixStream) -> anyhow::Result<T> {
    let mut reader = socket;
    let mut len = [0u8; 4];
    reader
        .read_exact(&mut len)
        .context("the other side closed the handover")?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_MESSAGE {
        bail!("a handover message of {len} bytes is past the limit");
    }
    let mut bytes = vec![0u8; len];
    reader.read_exact(&mut bytes)?;
    postcard::from_bytes(&bytes).context("cannot decode a handover message")
}
