//! One TLS connection's session, driven sans-IO by every driver. On the tokio drivers
//! the reader feeds it the ciphertext its owned-buffer read returned and passes the
//! plaintext on to the shard; the writer encrypts everything queued into as few
//! records as possible and hands the ciphertext to its usual vectored write. The ring
//! driver feeds it the provided buffer a multishot receive filled, and has the records
//! encrypted straight into a pooled send buffer it lends the session
//! ([`TlsSession::lend_output`]). No socket is touched here, so io_uring, epoll and
//! the ring driver run TLS through the same code.
//!
//! It uses rustls' unbuffered API, so the session owns no I/O buffers: ciphertext is
//! processed in the read buffer the driver filled, only the start of an incomplete
//! record is kept (and freed once complete), and records are encrypted straight into
//! the buffer that is written. An idle TLS connection therefore holds no buffer at all
//! beyond rustls' keys and state (rustls' buffered API keeps 4 KiB per session).
//!
//! On the tokio drivers the session is shared by the connection's reader and writer
//! (`Rc`, one thread); the ring driver keeps it in its connection record. Either way
//! it is borrowed only inside these synchronous calls, never across an `.await`.

use crate::shard::Shard;
use crate::state::ClientId;
use bytes::Bytes;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
    WriteTraffic,
};
use std::cell::{Cell, RefCell};
use tracing::debug;

/// Most plaintext encrypted in one writer turn: four full records. Past it, the rest
/// of the queue waits for the next turn (after this write completes).
const MAX_PLAINTEXT_PER_TURN: usize = 64 << 10;
/// Most ciphertext kept while waiting for the rest of a record: a maximal handshake
/// message (rustls accepts up to 64 KiB) plus one maximal record. A peer that sends
/// more without completing anything is broken or hostile.
const MAX_PARTIAL: usize = (64 << 10) + 16_709;
/// First guess at room for an encoded handshake message; grown on demand.
const ENCODE_GUESS: usize = 2048;
/// Room for each record's header, content type, padding and tag (TLS 1.3 and 1.2).
const RECORD_OVERHEAD: usize = 64;
/// Payload of a full TLS record.
const RECORD_PAYLOAD: usize = 16 << 10;

/// Why a TLS connection must close.
#[derive(Debug, thiserror::Error)]
pub enum TlsFailure {
    /// The peer did not complete a handshake (garbage, plaintext IRC, an unsupported
    /// version or cipher, a bad client certificate signature).
    #[error("TLS handshake failed: {0}")]
    Handshake(String),
    /// The protocol broke after the handshake (a bad record, a bad MAC, keys used up).
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
    connection: RefCell<UnbufferedServerConnection>,
    /// Ciphertext received but not yet processed: the start of a record, or of a
    /// handshake message spanning records. Empty and without capacity most of the
    /// time; bounded by [`MAX_PARTIAL`].
    partial: RefCell<Vec<u8>>,
    /// Ciphertext waiting for the writer: handshake messages and alerts the reader
    /// caused, and records the writer encrypted. Handed over whole to each write, so
    /// it holds no capacity between writes.
    outgoing: RefCell<Vec<u8>>,
    /// The handshake completed and the peer's identity was recorded on the client.
    established: Cell<bool>,
    /// Processing failed: rustls is not called again (the connection is closing).
    failed: Cell<bool>,
}

impl TlsSession {
    /// Wraps a fresh server session for an accepted connection.
    pub fn new(connection: UnbufferedServerConnection) -> TlsSession {
        TlsSession {
            connection: RefCell::new(connection),
            partial: RefCell::new(Vec::new()),
            outgoing: RefCell::new(Vec::new()),
            established: Cell::new(false),
            failed: Cell::new(false),
        }
    }

    /// Processes ciphertext read from the socket (in place, in the driver's buffer) and
    /// hands every decrypted record to `deliver` (the shard's input, or a WebSocket
    /// session on a `wss://` listener), in order. When the handshake completes, records
    /// on the client the certificate fingerprint, before any input.
    pub fn receive(
        &self,
        data: &mut [u8],
        shard: &mut Shard,
        id: ClientId,
        deliver: &mut dyn FnMut(&mut Shard, &[u8]),
    ) -> Result<Received, TlsFailure> {
        if self.failed.get() {
            return Ok(Received::PeerClosed);
        }
        let mut connection = self.connection.borrow_mut();
        let mut partial = self.partial.borrow_mut();
        let processed = if partial.is_empty() {
            self.process(&mut connection, data, shard, id, deliver)
                .map(|(used, outcome)| {
                    partial.extend_from_slice(&data[used..]);
                    outcome
                })
        } else {
            partial.extend_from_slice(data);
            self.process(&mut connection, &mut partial, shard, id, deliver)
                .map(|(used, outcome)| {
                    partial.drain(..used);
                    outcome
                })
        };
        let outcome = match processed {
            Ok(outcome) => outcome,
            Err(failure) => {
                // rustls must not be called again: its state refers to the bytes it
                // was last given, which are gone.
                self.failed.set(true);
                *partial = Vec::new();
                return Err(failure);
            }
        };
        if partial.is_empty() {
            *partial = Vec::new();
        } else if partial.len() > MAX_PARTIAL {
            self.failed.set(true);
            return Err(self.failure(format!(
                "{} bytes received without completing a record",
                partial.len()
            )));
        }
        Ok(outcome)
    }

    /// Whether the handshake completed, so queued lines can be encrypted.
    pub fn is_established(&self) -> bool {
        self.established.get()
    }

    /// Whether ciphertext waits to be written.
    pub fn wants_write(&self) -> bool {
        !self.outgoing.borrow().is_empty()
    }

    /// Encrypts the front of `lines` (up to 64 KiB, whole lines) into records of up
    /// to 16 KiB, so lines share records instead of taking one each; removes what it
    /// took and returns its length in plaintext bytes. Several lines are first copied
    /// into one contiguous buffer (rustls encrypts one slice at a time): one allocation
    /// and one copy per turn, freed at once.
    pub fn encrypt(&self, lines: &mut Vec<Bytes>) -> Result<usize, TlsFailure> {
        let mut count = 0;
        let mut bytes = 0;
        for line in lines.iter() {
            if count > 0 && bytes + line.len() > MAX_PLAINTEXT_PER_TURN {
                break;
            }
            count += 1;
            bytes += line.len();
        }
        if count == 0 {
            return Ok(0);
        }
        let staged;
        let plaintext: &[u8] = if count == 1 {
            &lines[0]
        } else {
            staged = lines[..count].concat();
            &staged
        };
        if !self.encrypt_plaintext(plaintext)? {
            return Ok(0);
        }
        lines.drain(..count);
        Ok(bytes)
    }

    /// Encrypts `plaintext` into records of up to 16 KiB appended to the pending
    /// ciphertext; returns whether it could (not before the handshake completes).
    pub fn encrypt_plaintext(&self, plaintext: &[u8]) -> Result<bool, TlsFailure> {
        let room = TlsSession::ciphertext_room(plaintext.len());
        self.with_write_traffic(|traffic, outgoing| {
            append(outgoing, room, |buf| {
                traffic
                    .encrypt(plaintext, buf)
                    .map_err(|error| match error {
                        EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => {
                            Some(required_size)
                        }
                        _ => None,
                    })
            })
        })
    }

    /// Room the records for `plaintext` bytes take at most.
    pub fn ciphertext_room(plaintext: usize) -> usize {
        plaintext + (plaintext / RECORD_PAYLOAD + 1) * RECORD_OVERHEAD
    }

    /// Makes `buffer` (from a pool, or holding ciphertext a short send left) the one
    /// the next records are appended to, behind its contents and any ciphertext already
    /// pending, so the ring driver encrypts straight into its send buffer;
    /// [`TlsSession::take_output`] hands it back.
    pub fn lend_output(&self, mut buffer: Vec<u8>) {
        let mut outgoing = self.outgoing.borrow_mut();
        if !outgoing.is_empty() {
            buffer.extend_from_slice(&outgoing);
        }
        *outgoing = buffer;
    }

    /// Moves all pending ciphertext out (possibly none) in the buffer it was written
    /// to, leaving the session without one.
    pub fn take_output(&self) -> Vec<u8> {
        std::mem::take(&mut *self.outgoing.borrow_mut())
    }

    /// Moves all pending ciphertext out as one buffer for one write; `None` if there
    /// is none.
    pub fn take_ciphertext(&self) -> Option<Bytes> {
        let mut outgoing = self.outgoing.borrow_mut();
        (!outgoing.is_empty()).then(|| Bytes::from(std::mem::take(&mut *outgoing)))
    }

    /// Queues a `close_notify` alert, the TLS way of saying nothing more follows.
    pub fn send_close_notify(&self) {
        let queued = self.with_write_traffic(|traffic, outgoing| {
            append(outgoing, RECORD_OVERHEAD, |buf| {
                traffic
                    .queue_close_notify(buf)
                    .map_err(|error| match error {
                        EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => {
                            Some(required_size)
                        }
                        _ => None,
                    })
            })
        });
        if let Err(failure) = queued {
            debug!(%failure, "cannot queue close_notify");
        }
    }

    /// Runs rustls over `incoming` until it needs more ciphertext or has nothing more
    /// to say; returns how many bytes it consumed and whether the peer closed.
    fn process(
        &self,
        connection: &mut UnbufferedServerConnection,
        incoming: &mut [u8],
        shard: &mut Shard,
        id: ClientId,
        deliver: &mut dyn FnMut(&mut Shard, &[u8]),
    ) -> Result<(usize, Received), TlsFailure> {
        let mut used = 0;
        loop {
            self.note_handshake_completion(connection, shard, id);
            let UnbufferedStatus { mut discard, state } =
                connection.process_tls_records(&mut incoming[used..]);
            let state = match state {
                Ok(state) => state,
                Err(error) => {
                    self.queue_alert(connection, &mut incoming[used + discard..]);
                    return Err(self.failure(error.to_string()));
                }
            };
            let mut peer_closed = false;
            let mut blocked = false;
            let mut broken = None;
            match state {
                ConnectionState::ReadTraffic(mut traffic) => {
                    while let Some(record) = traffic.next_record() {
                        match record {
                            Ok(record) => {
                                discard += record.discard;
                                deliver(shard, record.payload);
                            }
                            Err(error) => {
                                broken = Some(error.to_string());
                                break;
                            }
                        }
                    }
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    append(&mut self.outgoing.borrow_mut(), ENCODE_GUESS, |buf| {
                        encode.encode(buf).map_err(|error| match error {
                            EncodeError::InsufficientSize(InsufficientSizeError {
                                required_size,
                            }) => Some(required_size),
                            _ => None,
                        })
                    })
                    .then_some(())
                    .ok_or_else(|| self.failure("cannot encode a handshake message".into()))?;
                }
                // The encoded messages are queued for the writer, in order.
                ConnectionState::TransmitTlsData(transmit) => transmit.done(),
                ConnectionState::PeerClosed | ConnectionState::Closed => peer_closed = true,
                // More ciphertext is needed (BlockedHandshake), or everything received
                // was processed (WriteTraffic). No early data is accepted.
                _ => blocked = true,
            }
            used += discard;
            if let Some(why) = broken {
                self.queue_alert(connection, &mut incoming[used..]);
                return Err(self.failure(why));
            }
            if peer_closed {
                return Ok((used, Received::PeerClosed));
            }
            if blocked {
                self.note_handshake_completion(connection, shard, id);
                return Ok((used, Received::Open));
            }
        }
    }

    /// After a failure, moves the alert rustls queued (telling the peer why) to the
    /// writer's ciphertext. `rest` is what follows the consumed part of the buffer the
    /// failing call was given (rustls requires that very buffer). Called once: a queued
    /// alert comes out first, and a second call would process `rest` again.
    fn queue_alert(&self, connection: &mut UnbufferedServerConnection, rest: &mut [u8]) {
        if let Ok(ConnectionState::EncodeTlsData(mut encode)) =
            connection.process_tls_records(rest).state
        {
            append(&mut self.outgoing.borrow_mut(), ENCODE_GUESS, |buf| {
                encode.encode(buf).map_err(|error| match error {
                    EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => {
                        Some(required_size)
                    }
                    _ => None,
                })
            });
        }
    }

    /// Gets rustls to the state where application data may be written (queueing any
    /// handshake data it still owes first) and runs `write` there. Returns whether
    /// `write` ran and succeeded; `false` before the handshake completes.
    fn with_write_traffic(
        &self,
        mut write: impl FnMut(
            &mut WriteTraffic<'_, rustls::server::ServerConnectionData>,
            &mut Vec<u8>,
        ) -> bool,
    ) -> Result<bool, TlsFailure> {
        if self.failed.get() {
            return Ok(false);
        }
        let mut connection = self.connection.borrow_mut();
        let mut partial = self.partial.borrow_mut();
        let mut outgoing = self.outgoing.borrow_mut();
        loop {
            // The reader processed every complete record, so `partial` holds at most
            // the start of one: rustls only looks at it.
            let UnbufferedStatus { discard, state } =
                connection.process_tls_records(&mut partial[..]);
            let state = match state {
                Ok(state) => state,
                Err(error) => {
                    self.failed.set(true);
                    return Err(self.failure(error.to_string()));
                }
            };
            let done = match state {
                ConnectionState::WriteTraffic(mut traffic) => {
                    Some(write(&mut traffic, &mut outgoing))
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    let encoded = append(&mut outgoing, ENCODE_GUESS, |buf| {
                        encode.encode(buf).map_err(|error| match error {
                            EncodeError::InsufficientSize(InsufficientSizeError {
                                required_size,
                            }) => Some(required_size),
                            _ => None,
                        })
                    });
                    (!encoded).then_some(false)
                }
                ConnectionState::TransmitTlsData(transmit) => {
                    transmit.done();
                    None
                }
                _ => Some(false),
            };
            partial.drain(..discard);
            if let Some(done) = done {
                if !done && self.established.get() {
                    return Err(TlsFailure::Protocol("cannot encrypt".into()));
                }
                return Ok(done);
            }
        }
    }

    /// Sorts a rustls error into a handshake failure or a later protocol error.
    fn failure(&self, why: String) -> TlsFailure {
        if self.established.get() {
            TlsFailure::Protocol(why)
        } else {
            TlsFailure::Handshake(why)
        }
    }

    /// Once, when the handshake has just completed: records the client certificate's
    /// fingerprint on the client and logs the negotiated parameters.
    fn note_handshake_completion(
        &self,
        connection: &UnbufferedServerConnection,
        shard: &mut Shard,
        id: ClientId,
    ) {
        if self.established.get() || connection.is_handshaking() {
            return;
        }
        self.established.set(true);
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

/// Appends what `produce` writes to the end of `out`, growing the room from `guess` to
/// whatever `produce` says it needs (`Err(Some(size))`); `Err(None)` is a failure.
/// Returns whether it succeeded; on failure `out` is as before.
fn append(
    out: &mut Vec<u8>,
    guess: usize,
    mut produce: impl FnMut(&mut [u8]) -> Result<usize, Option<usize>>,
) -> bool {
    let start = out.len();
    let mut room = guess;
    loop {
        out.resize(start + room, 0);
        match produce(&mut out[start..]) {
            Ok(written) => {
                out.truncate(start + written);
                return true;
            }
            Err(Some(needed)) if needed > room => room = needed,
            Err(_) => {
                out.truncate(start);
                return false;
            }
        }
    }
}
