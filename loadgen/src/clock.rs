//! The clock every timestamp uses, and a timer precise enough to pace messages.
//!
//! Must not: use tokio's timer wheel for pacing. Its 1 ms granularity would add up to
//! a millisecond of loadgen's own lateness to every latency, which on loopback is ten
//! times the server's real latency. A timerfd (CLOCK_MONOTONIC, absolute deadline)
//! registered with tokio's reactor wakes within tens of microseconds.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Nanoseconds on CLOCK_MONOTONIC: the same clock the timerfd uses, system-wide,
/// so a sender's stamp and a receiver's reading compare directly.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A one-shot timer on a timerfd, awaited through tokio's reactor.
///
/// Owned by the pacer task for the whole run; dropping it closes the fd.
pub struct PreciseTimer {
    fd: AsyncFd<OwnedFd>,
}

impl PreciseTimer {
    /// Creates the timerfd (non-blocking, close-on-exec).
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the returned fd is checked before use.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh fd that nothing else owns.
        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: an OwnedFd keeps its fd open and unchanged until the AsyncFd drops it.
        let fd = unsafe { AsyncFd::register_with_interest(owned, Interest::READABLE) }
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Self { fd })
    }

    /// Waits until [`now_ns`] reaches `deadline_ns`. Returns at once if it already has.
    pub async fn sleep_until(&self, deadline_ns: u64) -> io::Result<()> {
        if now_ns() >= deadline_ns {
            return Ok(());
        }
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (deadline_ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (deadline_ns % 1_000_000_000) as libc::c_long,
            },
        };
        // SAFETY: valid fd and itimerspec; arming resets the expiry count, so a stale
        // expiry from an earlier, abandoned wait cannot end this one early.
        let rc = unsafe {
            libc::timerfd_settime(
                self.fd.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        loop {
            let mut guard = self.fd.readable().await?;
            let read = guard.try_io(|inner| {
                let mut expirations = 0u64;
                // SAFETY: reads 8 bytes into a u64 we own.
                let n = unsafe {
                    libc::read(inner.as_raw_fd(), (&mut expirations as *mut u64).cast(), 8)
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
            });
            match read {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_waits_until_deadline() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let timer = PreciseTimer::new().expect("timerfd");
            for _ in 0..3 {
                let deadline = now_ns() + 2_000_000;
                timer.sleep_until(deadline).await.expect("sleep");
                assert!(now_ns() >= deadline);
            }
            // A deadline in the past returns at once.
            timer.sleep_until(0).await.expect("sleep");
        });
    }
}
