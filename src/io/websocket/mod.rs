//! One WebSocket connection's session (IRCv3 WebSocket transport,
//! <https://ircv3.net/specs/extensions/websocket>), driven sans-IO by every driver the
//! way [`super::tls::TlsSession`] is: the reader feeds it the bytes it read (or the
//! plaintext TLS decrypted) and it hands the shard one IRC line per message; the
//! writer has it wrap queued lines into frames. The shard never sees a frame, so flood
//! control, sendq, the write deadline and the per-source limits apply unchanged.
//!
//! Its first state is HTTP ([`http`]): a request head is answered with the opening
//! handshake, or with one of the web client's files (then the connection closes).
//! Every buffer is bounded: the request head by [`http::MAX_REQUEST_HEAD`], a frame
//! and a reassembled message by [`MAX_MESSAGE`], fragments by [`MAX_FRAGMENTS`]. A
//! peer past a bound gets a close frame with the reason (or an HTTP error) and the
//! connection closes.
//!
//! On the tokio drivers the session is shared by the connection's reader and writer
//! (`Rc`, one thread); the ring driver keeps it in its connection record. Its cells
//! are borrowed only inside these synchronous calls.

pub mod frame;
pub mod http;

use super::tls::Received;
use crate::shard::{Refused, Shard};
use crate::state::ClientId;
use bytes::Bytes;
use ipnet::IpNet;
use std::cell::{Cell, RefCell};
use std::net::IpAddr;
use std::time::Instant;
use tracing::debug;

/// Largest message (one IRC line) taken from a client: a line with tags is at most
/// 8,191 bytes (IRCv3 message-tags: 4,094 of tags, 512 of message) plus its CR LF.
pub const MAX_MESSAGE: usize = 8193;
/// Longest body (the line without its tags and CR LF) sent to a WebSocket client.
pub const MAX_BODY: usize = 510;
/// Most frames one message may be split into: a browser sends one, and a peer that
/// sends thousands of empty continuations is only burning the shard's time.
pub const MAX_FRAGMENTS: usize = 16;

/// Where the session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading the HTTP request head.
    Handshake,
    /// Upgraded: frames both ways.
    Open,
    /// A close frame was sent (in answer to the peer's, or to refuse its input); no
    /// more frames either way.
    Closing,
    /// An HTTP response (a page, an error) is the last thing sent.
    Answered,
}

/// A WebSocket server session and what the connection's reader and writer need of it.
pub struct WebSocketSession {
    phase: Cell<Phase>,
    /// `binary.ircv3.net` was negotiated: lines go out in binary frames as they are.
    /// Otherwise text frames, with invalid UTF-8 replaced by U+FFFD.
    binary: Cell<bool>,
    /// Bytes received but not yet used: the start of the request head or of a frame.
    /// Empty and without capacity most of the time; bounded by a request head or one
    /// frame ([`MAX_MESSAGE`] plus its header).
    partial: RefCell<Vec<u8>>,
    /// The message being reassembled from fragments (unmasked), and the opcode of its
    /// first frame; freed when the message is complete.
    message: RefCell<Vec<u8>>,
    message_opcode: Cell<Option<u8>>,
    fragments: Cell<usize>,
    /// What the session itself has to send before any further line: the HTTP
    /// response, pongs, a close frame. Handed over whole, so it holds no capacity
    /// between writes.
    outgoing: RefCell<Vec<u8>>,
}

impl Default for WebSocketSession {
    fn default() -> Self {
        WebSocketSession::new()
    }
}

impl WebSocketSession {
    /// A session waiting for its HTTP request.
    pub fn new() -> WebSocketSession {
        WebSocketSession {
            phase: Cell::new(Phase::Handshake),
            binary: Cell::new(false),
            partial: RefCell::new(Vec::new()),
            message: RefCell::new(Vec::new()),
            message_opcode: Cell::new(None),
            fragments: Cell::new(0),
            outgoing: RefCell::new(Vec::new()),
        }
    }

    /// Takes bytes read from the socket (or decrypted): answers the request head, then
    /// hands each complete message to the shard as one line. `PeerClosed` when no more
    /// input will be taken (the peer closed, or was refused: a response waits).
    pub fn receive(&self, data: &[u8], shard: &mut Shard, id: ClientId, now: Instant) -> Received {
        let mut pending = std::mem::take(&mut *self.partial.borrow_mut());
        let outcome = if pending.is_empty() {
            let (used, outcome) = self.process(data, shard, id, now);
            pending.extend_from_slice(&data[used..]);
            outcome
        } else {
            pending.extend_from_slice(data);
            let (used, outcome) = self.process(&pending, shard, id, now);
            pending.drain(..used);
            outcome
        };
        if outcome == Received::Open && !pending.is_empty() {
            *self.partial.borrow_mut() = pending;
        }
        outcome
    }

    /// Whether the upgrade is done, so queued lines can be framed.
    pub fn is_open(&self) -> bool {
        self.phase.get() == Phase::Open
    }

    /// Whether the session has bytes of its own to send.
    pub fn wants_write(&self) -> bool {
        !self.outgoing.borrow().is_empty()
    }

    /// Moves what the session has to send (the HTTP response, pongs, a close) to the
    /// end of `out`; call before framing lines behind it.
    pub fn take_output_into(&self, out: &mut Vec<u8>) {
        let mut outgoing = self.outgoing.borrow_mut();
        if out.is_empty() {
            std::mem::swap(out, &mut outgoing);
        } else {
            out.extend_from_slice(&outgoing);
        }
        *outgoing = Vec::new();
    }

    /// Frames the front of `lines` (whole lines, until `out` holds `limit` bytes) into
    /// `out`, one message per line without its CR LF; removes what it framed and
    /// returns its length as queued (for the outbox's sendq count). Costs one copy of
    /// each line, into the buffer that is written or encrypted.
    pub fn frame_lines(&self, lines: &mut Vec<Bytes>, out: &mut Vec<u8>, limit: usize) -> usize {
        let mut taken = 0;
        let mut bytes = 0;
        for line in lines.iter() {
            if taken > 0 && out.len() >= limit {
                break;
            }
            self.frame_line(line, out);
            taken += 1;
            bytes += line.len();
        }
        lines.drain(..taken);
        bytes
    }

    /// Appends one line as one message.
    pub fn frame_line(&self, line: &[u8], out: &mut Vec<u8>) {
        let line = line
            .strip_suffix(b"\r\n")
            .or_else(|| line.strip_suffix(b"\n"))
            .unwrap_or(line);
        let line = &line[..body_end(line)];
        if self.binary.get() {
            frame::write_frame(frame::BINARY, line, out);
        } else {
            // A text frame must be UTF-8 (RFC 6455 section 5.6); a line relayed from
            // a raw-TCP client may not be.
            let text = String::from_utf8_lossy(line);
            frame::write_frame(frame::TEXT, text.as_bytes(), out);
        }
    }

    /// Queues a close frame (the connection is ending: the server closed the client,
    /// or is shutting down). Lines are not framed after it.
    pub fn close(&self, code: u16, reason: &str) {
        if self.phase.get() == Phase::Open {
            frame::write_close(code, reason, &mut self.outgoing.borrow_mut());
            self.phase.set(Phase::Closing);
        }
    }

    /// Runs over `data` until it needs more bytes or takes no more input; returns how
    /// many bytes it used.
    fn process(
        &self,
        data: &[u8],
        shard: &mut Shard,
        id: ClientId,
        now: Instant,
    ) -> (usize, Received) {
        let mut used = 0;
        loop {
            match self.phase.get() {
                Phase::Handshake => {
                    let shared = shard.shared.clone();
                    let policy = http::Policy {
                        origins: &shared.config.websocket_origins,
                    };
                    match http::answer(&data[used..], &policy) {
                        None => return (used, Received::Open),
                        Some(http::Answer::Upgrade {
                            response,
                            binary,
                            consumed,
                            forwarded_for,
                        }) => {
                            if let Err(refused) = take_forwarded_address(
                                forwarded_for.as_deref(),
                                &shared.config.websocket_proxies,
                                shard,
                                id,
                                now,
                            ) {
                                debug!(%refused, ?forwarded_for, "forwarded address refused");
                                self.outgoing
                                    .borrow_mut()
                                    .extend_from_slice(&http::refusal(403, "Forbidden"));
                                self.phase.set(Phase::Answered);
                                return (data.len(), Received::PeerClosed);
                            }
                            self.outgoing.borrow_mut().extend_from_slice(&response);
                            self.binary.set(binary);
                            self.phase.set(Phase::Open);
                            used += consumed;
                            debug!(binary, ?forwarded_for, "WebSocket upgrade");
                        }
                        Some(http::Answer::Close { response, refusal }) => {
                            if let Some(refusal) = refusal {
                                debug!(refusal, "HTTP request refused");
                            }
                            self.outgoing.borrow_mut().extend_from_slice(&response);
                            self.phase.set(Phase::Answered);
                            return (data.len(), Received::PeerClosed);
                        }
                    }
                }
                Phase::Open => {
                    let rest = &data[used..];
                    let header = match frame::parse_header(rest, MAX_MESSAGE) {
                        Ok(Some(header)) => header,
                        Ok(None) => return (used, Received::Open),
                        Err(error) => return (data.len(), self.refuse(error.close_code(), &error)),
                    };
                    let end = header.header_len + header.payload_len;
                    if rest.len() < end {
                        return (used, Received::Open);
                    }
                    used += end;
                    let payload = &rest[header.header_len..end];
                    if let Err((code, reason)) = self.frame(header, payload, shard, id, now) {
                        return (data.len(), self.refuse(code, &reason));
                    }
                }
                Phase::Closing | Phase::Answered => return (data.len(), Received::PeerClosed),
            }
        }
    }

    /// Acts on one complete frame; `Err` closes the connection with that code and
    /// reason.
    fn frame(
        &self,
        header: frame::FrameHeader,
        payload: &[u8],
        shard: &mut Shard,
        id: ClientId,
        now: Instant,
    ) -> Result<(), (u16, &'static str)> {
        match header.opcode {
            frame::PING => {
                let mut pong = Vec::with_capacity(payload.len());
                frame::unmask_into(payload, header.mask, &mut pong);
                frame::write_frame(frame::PONG, &pong, &mut self.outgoing.borrow_mut());
                Ok(())
            }
            frame::PONG => Ok(()),
            frame::CLOSE => {
                // Section 5.5.1: answer with a close, echoing the peer's status code.
                let mut body = Vec::with_capacity(payload.len());
                frame::unmask_into(payload, header.mask, &mut body);
                let code = match body[..] {
                    [high, low, ..] => match u16::from_be_bytes([high, low]) {
                        // Codes a peer may not send on the wire (section 7.4.1).
                        code @ (1000..=1003 | 1007..=1014 | 3000..=4999) => code,
                        _ => 1002,
                    },
                    _ => 1000,
                };
                self.close(code, "");
                Err((code, ""))
            }
            opcode => {
                let continuation = opcode == frame::CONTINUATION;
                match (continuation, self.message_opcode.get()) {
                    (true, None) => return Err((1002, "continuation without a message")),
                    (false, Some(_)) => {
                        return Err((1002, "a new message inside a fragmented one"))
                    }
                    (false, None) => self.message_opcode.set(Some(opcode)),
                    (true, Some(_)) => {}
                }
                let fragments = self.fragments.get() + 1;
                self.fragments.set(fragments);
                if fragments > MAX_FRAGMENTS {
                    return Err((1008, "too many fragments"));
                }
                let mut message = self.message.borrow_mut();
                if message.len() + payload.len() > MAX_MESSAGE {
                    return Err((1009, "message too big"));
                }
                frame::unmask_into(payload, header.mask, &mut message);
                if !header.fin {
                    return Ok(());
                }
                let opcode = self.message_opcode.take();
                self.fragments.set(0);
                let mut line = std::mem::take(&mut *message);
                drop(message);
                self.deliver(opcode == Some(frame::TEXT), &mut line, shard, id, now)
            }
        }
    }

    /// Hands one message to the shard as one line.
    fn deliver(
        &self,
        text: bool,
        line: &mut Vec<u8>,
        shard: &mut Shard,
        id: ClientId,
        now: Instant,
    ) -> Result<(), (u16, &'static str)> {
        if text && std::str::from_utf8(line).is_err() {
            // Section 8.1: invalid UTF-8 in a text message fails the connection.
            return Err((1007, "invalid UTF-8 in a text message"));
        }
        // A trailing CR LF is tolerated; one inside would smuggle a second line.
        while line
            .last()
            .is_some_and(|&byte| byte == b'\n' || byte == b'\r')
        {
            line.pop();
        }
        if line.iter().any(|&byte| byte == b'\n' || byte == b'\r') {
            return Err((1008, "one IRC line per message"));
        }
        if line.is_empty() {
            return Ok(());
        }
        line.extend_from_slice(b"\r\n");
        shard.receive(id, line, now);
        Ok(())
    }

    /// Refuses the peer's input: queues a close frame with the reason, takes no more.
    fn refuse(&self, code: u16, reason: &dyn std::fmt::Display) -> Received {
        let reason = reason.to_string();
        if !reason.is_empty() {
            debug!(code, %reason, "WebSocket input refused");
        }
        self.close(code, &reason);
        self.phase.set(Phase::Closing);
        Received::PeerClosed
    }
}

/// Where a line (without CR LF) must end so its body, the part after any tags, is at
/// most [`MAX_BODY`] bytes: a relayed message grows by its source prefix, and the
/// IRCv3 WebSocket spec keeps the 512-byte limit (CR LF included) for what a web
/// client receives. The cut backs off to a UTF-8 character boundary. Costs one
/// comparison for the lines that fit.
fn body_end(line: &[u8]) -> usize {
    if line.len() <= MAX_BODY {
        return line.len();
    }
    let body_start = match line.first() {
        Some(b'@') => line
            .iter()
            .position(|&byte| byte == b' ')
            .map_or(line.len(), |space| space + 1),
        _ => 0,
    };
    let mut end = body_start + MAX_BODY;
    if end >= line.len() {
        return line.len();
    }
    while end > body_start && line[end] & 0xC0 == 0x80 {
        end -= 1;
    }
    end
}

/// On a connection from a trusted proxy (`--websocket-proxies`), makes the address its
/// `X-Forwarded-For`/`Forwarded` names the client's: bans and per-source limits then
/// apply to it. Anyone else's header is ignored, as is a value that is no address.
fn take_forwarded_address(
    forwarded_for: Option<&str>,
    proxies: &[IpNet],
    shard: &mut Shard,
    id: ClientId,
    now: Instant,
) -> Result<(), Refused> {
    let Some(forwarded) = forwarded_for.and_then(|text| text.parse::<IpAddr>().ok()) else {
        return Ok(());
    };
    let from_proxy = shard
        .client_mut(id)
        .and_then(|client| client.host.parse::<IpAddr>().ok())
        .is_some_and(|peer| proxies.iter().any(|proxy| proxy.contains(&peer)));
    if !from_proxy {
        return Ok(());
    }
    shard.readdress(id, forwarded, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_bodies_are_cut_to_510_bytes_on_a_character_boundary() {
        let short = b"PRIVMSG #c :hi";
        assert_eq!(body_end(short), short.len());
        let long = [b"PRIVMSG #c :".as_slice(), &[b'x'; 600]].concat();
        assert_eq!(body_end(&long), 510);
        let tagged = [b"@time=2026-12-06T00:00:00Z ".as_slice(), &long].concat();
        assert_eq!(body_end(&tagged), 27 + 510);
        // A two-byte character straddling the limit is left out whole.
        let accented = [
            b"PRIVMSG #c :".as_slice(),
            &[b'x'; 497],
            "\u{e9}".as_bytes(),
            b"tail",
        ]
        .concat();
        assert_eq!(body_end(&accented), 509);
    }
}
