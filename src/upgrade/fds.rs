//! Descriptors across the handover socket (`SCM_RIGHTS`): the listening sockets and
//! every client's socket go from the old process to the new one, which then holds
//! the same open sockets (same connections, same kernel buffers) under new numbers.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

/// Descriptors per message: the kernel refuses more than `SCM_MAX_FD` (253) in one.
const FDS_PER_MESSAGE: usize = 250;

/// Sends `fds` in order, in as many messages as it takes; each message carries one
/// byte of data (the count that follows in it), since ancillary data needs some.
pub fn send(socket: &UnixStream, fds: &[RawFd]) -> io::Result<()> {
    for chunk in fds.chunks(FDS_PER_MESSAGE) {
        send_chunk(socket, chunk)?;
    }
    Ok(())
}

/// Receives `count` descriptors sent by [`send`], in order; each is close-on-exec.
pub fn receive(socket: &UnixStream, count: usize) -> io::Result<Vec<OwnedFd>> {
    let mut fds = Vec::with_capacity(count);
    while fds.len() < count {
        let want = (count - fds.len()).min(FDS_PER_MESSAGE);
        receive_chunk(socket, want, &mut fds)?;
    }
    Ok(fds)
}

fn control_len(fds: usize) -> usize {
    // SAFETY: CMSG_SPACE is a pure size computation.
    unsafe { libc::CMSG_SPACE((fds * std::mem::size_of::<RawFd>()) as u32) as usize }
}

fn send_chunk(socket: &UnixStream, fds: &[RawFd]) -> io::Result<()> {
    let mut byte = [fds.len() as u8];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = vec![0u8; control_len(fds.len())];
    // SAFETY: msghdr is plain data; every pointer in it refers to a buffer that
    // outlives the sendmsg call, and the control buffer is CMSG_SPACE bytes for
    // exactly `fds.len()` descriptors, which is what the header says it holds.
    unsafe {
        let mut message: libc::msghdr = std::mem::zeroed();
        message.msg_iov = &mut iov;
        message.msg_iovlen = 1;
        message.msg_control = control.as_mut_ptr().cast();
        message.msg_controllen = control.len() as _;
        let header = libc::CMSG_FIRSTHDR(&message);
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = libc::CMSG_LEN((std::mem::size_of_val(fds)) as u32) as _;
        std::ptr::copy_nonoverlapping(
            fds.as_ptr(),
            libc::CMSG_DATA(header).cast::<RawFd>(),
            fds.len(),
        );
        if libc::sendmsg(socket.as_raw_fd(), &message, libc::MSG_NOSIGNAL) != 1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn receive_chunk(socket: &UnixStream, want: usize, fds: &mut Vec<OwnedFd>) -> io::Result<()> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = vec![0u8; control_len(want)];
    // SAFETY: as in `send_chunk`; the kernel writes at most `msg_controllen` bytes of
    // control data, and every descriptor it installed is taken into an `OwnedFd`
    // exactly once (so none leaks and none is closed twice).
    unsafe {
        let mut message: libc::msghdr = std::mem::zeroed();
        message.msg_iov = &mut iov;
        message.msg_iovlen = 1;
        message.msg_control = control.as_mut_ptr().cast();
        message.msg_controllen = control.len() as _;
        let read = libc::recvmsg(socket.as_raw_fd(), &mut message, libc::MSG_CMSG_CLOEXEC);
        if read < 0 {
            return Err(io::Error::last_os_error());
        }
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the old process closed the handover socket while sending descriptors",
            ));
        }
        let mut received = 0;
        let mut header = libc::CMSG_FIRSTHDR(&message);
        while !header.is_null() {
            if (*header).cmsg_level == libc::SOL_SOCKET && (*header).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(header).cast::<RawFd>();
                let bytes = (*header).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for index in 0..bytes / std::mem::size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(data.add(index).read_unaligned()));
                    received += 1;
                }
            }
            header = libc::CMSG_NXTHDR(&message, header);
        }
        if message.msg_flags & libc::MSG_CTRUNC != 0 {
            return Err(io::Error::other(
                "descriptors were lost in the handover (the open-file limit is too low?)",
            ));
        }
        if received != usize::from(byte[0]) {
            return Err(io::Error::other(format!(
                "the handover announced {} descriptors and carried {received}",
                byte[0]
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn descriptors_arrive_in_order_past_one_message() {
        let (old, new) = UnixStream::pair().unwrap();
        let pipes: Vec<(std::fs::File, std::fs::File)> = (0..300)
            .map(|_| {
                let (reader, writer) = std::io::pipe().unwrap();
                (
                    std::fs::File::from(OwnedFd::from(reader)),
                    std::fs::File::from(OwnedFd::from(writer)),
                )
            })
            .collect();
        let writers: Vec<RawFd> = pipes.iter().map(|(_, w)| w.as_raw_fd()).collect();
        let sender = std::thread::spawn(move || send(&old, &writers));
        let received = receive(&new, 300).unwrap();
        sender.join().unwrap().unwrap();
        for (index, fd) in received.into_iter().enumerate() {
            let mut writer = std::fs::File::from(fd);
            writer.write_all(&[index as u8]).unwrap();
            let mut byte = [0u8];
            (&pipes[index].0).read_exact(&mut byte).unwrap();
            assert_eq!(byte[0], index as u8);
        }
    }
}
