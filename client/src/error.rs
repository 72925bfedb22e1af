//! The ways a session ends badly, each with its one-line message and exit code, so that
//! scripts can tell "no server" from "kicked off" from "pick another nick".

use std::io;

/// Exit code for a normal quit.
pub const EXIT_OK: i32 = 0;

/// Why the client stops with a non-zero exit code.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing accepted the TCP connection (refused, unreachable, timed out, unknown host).
    #[error("cannot connect to {server}: {reason}")]
    Connect { server: String, reason: String },
    /// The server sent ERROR or closed the connection while we were not quitting.
    #[error("server closed the link: {0}")]
    ServerClosed(String),
    /// The server did not welcome us (001) in time.
    #[error("no welcome from the server after {0} s")]
    RegistrationTimeout(u64),
    /// Every nick we tried was taken (433).
    #[error("nickname in use: tried {0}")]
    NickInUse(String),
    /// The server refused the nick itself (432), so suffixes would not help.
    #[error("nickname rejected: {0}")]
    NickRejected(String),
    /// A local failure: the terminal, standard input, or a socket error of our own.
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl ClientError {
    /// The process exit code for this error; documented in `--help`.
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Io(_) => 1,
            ClientError::Connect { .. } | ClientError::RegistrationTimeout(_) => 3,
            ClientError::ServerClosed(_) => 4,
            ClientError::NickInUse(_) | ClientError::NickRejected(_) => 5,
        }
    }

    /// A connection failure, with the OS error reduced to words a user reads.
    pub fn connect(server: impl Into<String>, err: &io::Error) -> ClientError {
        let reason = match err.kind() {
            io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "timed out".to_string(),
            _ => err.to_string(),
        };
        ClientError::Connect {
            server: server.into(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_codes() {
        let refused = ClientError::connect(
            "127.0.0.1:1",
            &io::Error::from(io::ErrorKind::ConnectionRefused),
        );
        assert_eq!(
            refused.to_string(),
            "cannot connect to 127.0.0.1:1: connection refused"
        );
        assert_eq!(refused.exit_code(), 3);
        let closed = ClientError::ServerClosed("Excess Flood".into());
        assert_eq!(closed.to_string(), "server closed the link: Excess Flood");
        assert_eq!(closed.exit_code(), 4);
        assert_eq!(ClientError::NickInUse("a, a_".into()).exit_code(), 5);
        assert_eq!(ClientError::NickRejected("1x".into()).exit_code(), 5);
        assert_eq!(ClientError::Io(io::Error::other("x")).exit_code(), 1);
    }
}
