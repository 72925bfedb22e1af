//! systemd integration, all optional: service state over `NOTIFY_SOCKET` (`READY=1`,
//! `STATUS=`, `RELOADING=1`, `STOPPING=1`, `WATCHDOG=1`), the watchdog period from
//! `WATCHDOG_USEC`, and listening sockets passed by socket activation (`LISTEN_FDS`).
//! Without those variables every function here does nothing. The protocol is
//! sd_notify(3) and sd_listen_fds(3); no libsystemd is linked.

use anyhow::{bail, Context};
use std::net::TcpListener;
use std::os::fd::{FromRawFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::time::Duration;
use tracing::debug;

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;

/// A connection to the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: UnixAddr,
}

impl Notifier {
    /// The notifier `NOTIFY_SOCKET` names (a path, or `@name` for an abstract socket);
    /// `None` when not run by a service manager that wants notifications.
    pub fn from_env() -> anyhow::Result<Option<Notifier>> {
        let Some(name) = std::env::var_os("NOTIFY_SOCKET") else {
            return Ok(None);
        };
        let name = name.to_string_lossy().into_owned();
        let addr = match name.strip_prefix('@') {
            Some(abstract_name) => UnixAddr::from_abstract_name(abstract_name.as_bytes()),
            None => UnixAddr::from_pathname(&name),
        }
        .with_context(|| format!("NOTIFY_SOCKET={name} is not a usable socket address"))?;
        let socket = UnixDatagram::unbound().context("cannot create the notify socket")?;
        Ok(Some(Notifier { socket, addr }))
    }

    /// Sends newline-separated `KEY=value` assignments. A lost notification is not
    /// fatal (the manager may have gone); it is logged at debug.
    pub fn notify(&self, state: &str) {
        if let Err(error) = self.socket.send_to_addr(state.as_bytes(), &self.addr) {
            debug!(%error, state, "service manager notification failed");
        }
    }
}

/// `RELOADING=1` with the monotonic timestamp systemd 253+ asks for.
pub fn reloading_message() -> String {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the struct we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let usec = now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000;
    format!("RELOADING=1\nMONOTONIC_USEC={usec}")
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, if the watchdog is on
/// and meant for this process (`WATCHDOG_PID`, when set, is our pid).
pub fn watchdog_interval() -> Option<Duration> {
    if !for_this_process("WATCHDOG_PID") {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// The listening TCP sockets passed by socket activation, in order, or none when
/// `LISTEN_PID` is not this process. Each is made close-on-exec and non-blocking.
pub fn listen_fds() -> anyhow::Result<Vec<TcpListener>> {
    if std::env::var_os("LISTEN_PID").is_none() || !for_this_process("LISTEN_PID") {
        return Ok(Vec::new());
    }
    let count: RawFd = std::env::var("LISTEN_FDS")
        .context("LISTEN_PID is set but LISTEN_FDS is not")?
        .parse()
        .context("LISTEN_FDS is not a number")?;
    let mut listeners = Vec::new();
    for fd in LISTEN_FDS_START..LISTEN_FDS_START + count {
        if !is_listening_stream(fd) {
            bail!("socket activation: descriptor {fd} is not a listening TCP socket");
        }
        // SAFETY: systemd handed us this descriptor and nothing else owns it.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        // SAFETY: as above; the listener now owns and will close it.
        let listener = unsafe { TcpListener::from_raw_fd(fd) };
        listener
            .set_nonblocking(true)
            .with_context(|| format!("socket activation: descriptor {fd}"))?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Whether `var` is unset or names this process (sd_listen_fds checks LISTEN_PID so
/// a child that inherited the environment does not take its parent's sockets).
fn for_this_process(var: &str) -> bool {
    match std::env::var(var) {
        Ok(pid) => pid.parse::<u32>().ok() == Some(std::process::id()),
        Err(_) => true,
    }
}

/// A stream socket of family IPv4 or IPv6 in the listening state.
fn is_listening_stream(fd: RawFd) -> bool {
    let option = |level, name| {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into the int we own.
        let ok = unsafe {
            libc::getsockopt(
                fd,
                level,
                name,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        } == 0;
        ok.then_some(value)
    };
    option(libc::SOL_SOCKET, libc::SO_TYPE) == Some(libc::SOCK_STREAM)
        && option(libc::SOL_SOCKET, libc::SO_ACCEPTCONN) == Some(1)
        && matches!(
            option(libc::SOL_SOCKET, libc::SO_DOMAIN),
            Some(libc::AF_INET | libc::AF_INET6)
        )
}
