//! One TLS connection's session, driven sans-IO by the ordinary connection tasks: the
//! reader feeds it the ciphertext its owned-buffer read returned and passes the
//! plaintext on to the shard; the writer encrypts everything queued into as few
//! records as possible and hands the ciphertext to its usual vectored write. No socket
//! is touched here, so io_uring and epoll run TLS through the same code.
//!
//! The session is shared by the connection's reader and writer (`Rc`, one thread) and
//! borrowed only inside these synchronous calls, never across an `.await`.

use crate::shard::Shard;
use crate::state::ClientId;
use bytes::Bytes;
use rustls::ServerConnection;
use std::cell::{Cell, RefCell};
use std::io::{self, BufRead, IoSlice, Write};
use std::time::Instant;
use tracing::debug;

/// Most lines handed to rustls in one vectored write; the same bound as a plaintext
/// writev, and the iovec array lives on the stack.
const MAX_LINES_PER_ENCRYPT: usize = super::MAX_BATCH_LINES;

/// Why a TLS connection must close.
#[derive(Debug, thiserror::Error)]
pub enum TlsFailure {
    /// The peer did not complete a handshake (garbage, plaintext IRC, an unsupported
    /// version or cipher, a bad client certificate signature).
    #[error("TLS handshake failed: {0}")]
    Handshake(String),
    /// The peer broke the protocol after the handshake (a bad record, a bad MAC).
    #[error("TLS error: {0}")]
    Protocol(String),
}

/// What the reader learns from feeding ciphertext.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// The session continues.
    Open,
    /// The peer sent `close_notify`: no more input will come.
    PeerClosed,
}

/// A TLS server session and what the connection tasks need to know about it.
pub struct TlsSession {
    connection: RefCell<ServerConnection>,
    /// The handshake completed and the peer's identity was recorded on the client.
    established: Cell<bool>,
}

impl TlsSession {
    /// Wraps a fresh server session for an accepted connection.
    pub fn new(connection: ServerConnection) -> TlsSession {
        TlsSession {
            connection: RefCell::new(connection),
            established: Cell::new(false),
        }
    }

    /// Feeds ciphertext read from the socket and hands every complete plaintext chunk
    /// to the shard, in order, without copying it again (rustls decrypts into its own
    /// buffer; the shard reads it from there). When the handshake completes, records
    /// on the client that it is secure and the client certificate's fingerprint.
    pub fn receive(
        &self,
        mut ciphertext: &[u8],
        shard: &mut Shard,
        id: ClientId,
        now: Instant,
    ) -> Result<Received, TlsFailure> {
        let mut connection = self.connection.borrow_mut();
        while !ciphertext.is_empty() {
            // read_tls takes at most what its deframer buffer has room for.
            connection
                .read_tls(&mut ciphertext)
                .map_err(|error| self.failure(error.to_string()))?;
            let state = connection
                .process_new_packets()
                .map_err(|error| self.failure(error.to_string()))?;
            if !self.established.get() && !connection.is_handshaking() {
                self.established.set(true);
                self.record_identity(&connection, shard, id);
            }
            loop {
                let mut reader = connection.reader();
                match reader.fill_buf() {
                    Ok([]) => return Ok(Received::PeerClosed),
                    Ok(plaintext) => {
                        let len = plaintext.len();
                        shard.receive(id, plaintext, now);
                        reader.consume(len);
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                    Err(error) => return Err(self.failure(error.to_string())),
                }
            }
            if state.peer_has_closed() {
                return Ok(Received::PeerClosed);
            }
        }
        Ok(Received::Open)
    }

    /// Whether the handshake completed, so queued lines can be encrypted.
    pub fn is_established(&self) -> bool {
        self.established.get()
    }

    /// Whether rustls holds ciphertext to send (handshake messages, alerts, key
    /// updates, or records from [`TlsSession::encrypt`]).
    pub fn wants_write(&self) -> bool {
        self.connection.borrow().wants_write()
    }

    /// Encrypts the front of `lines` with one vectored write into rustls, so lines
    /// share records (up to 16 KiB each) instead of taking one record per line.
    /// Removes what was taken from `lines` and returns its length in plaintext bytes;
    /// what did not fit rustls' buffer limit stays for the next turn.
    pub fn encrypt(&self, lines: &mut Vec<Bytes>) -> usize {
        let mut slices = [IoSlice::new(&[]); MAX_LINES_PER_ENCRYPT];
        let count = lines.len().min(MAX_LINES_PER_ENCRYPT);
        for (slice, line) in slices.iter_mut().zip(lines.iter()) {
            *slice = IoSlice::new(line);
        }
        // Writing to rustls' in-memory buffer cannot fail; it may take only part.
        let taken = self
            .connection
            .borrow_mut()
            .writer()
            .write_vectored(&slices[..count])
            .unwrap_or(0);
        super::consume_written(lines, taken);
        taken
    }

    /// Moves all pending ciphertext into one buffer for one write; `None` if there is
    /// none. Cost: one allocation and one copy of the records per writer turn.
    pub fn take_ciphertext(&self) -> Option<Bytes> {
        let mut connection = self.connection.borrow_mut();
        if !connection.wants_write() {
            return None;
        }
        let mut out = Vec::new();
        while connection.wants_write() {
            // Writing into a Vec cannot fail.
            if connection.write_tls(&mut out).is_err() {
                break;
            }
        }
        Some(Bytes::from(out))
    }

    /// Queues a `close_notify` alert, the TLS way of saying nothing more follows.
    pub fn send_close_notify(&self) {
        self.connection.borrow_mut().send_close_notify();
    }

    /// Sorts a rustls error into a handshake failure or a later protocol error.
    fn failure(&self, why: String) -> TlsFailure {
        if self.established.get() {
            TlsFailure::Protocol(why)
        } else {
            TlsFailure::Handshake(why)
        }
    }

    fn record_identity(&self, connection: &ServerConnection, shard: &mut Shard, id: ClientId) {
        let fingerprint = connection
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| crate::tls::fingerprint(leaf));
        debug!(
            version = ?connection.protocol_version(),
            suite = ?connection.negotiated_cipher_suite().map(|s| s.suite()),
            certfp = fingerprint.as_deref().unwrap_or("none"),
            "TLS handshake complete"
        );
        if let Some(peer) = shard.client_mut(id).and_then(|c| c.tls.as_mut()) {
            peer.certfp = fingerprint.map(String::into_boxed_str);
        }
    }
}
