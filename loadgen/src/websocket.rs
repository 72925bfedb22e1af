//! `--websocket`: IRC over WebSocket (IRCv3, `binary.ircv3.net`) for loadgen's
//! clients, written here and not shared with the server, so one misreading of RFC
//! 6455 cannot hide on both sides.
//!
//! Owns: the opening handshake on a fresh stream ([`upgrade`]), framing outgoing
//! lines ([`frame_lines`]) and a streaming de-framer ([`Deframer`]) that hands the
//! line splitter each message's payload followed by CR LF. Costs: one copy of each
//! outgoing line into its frame; incoming payloads pass through uncopied (server
//! frames are not masked). Must not: buffer a message (payload bytes are passed on as
//! they arrive), or allocate per message.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest response head read before the upgrade is declared failed.
const MAX_RESPONSE_HEAD: usize = 8 << 10;

/// Sends the upgrade request and reads the response head one byte at a time (nothing
/// after it is consumed: the server may speak first). Err unless `101` with the
/// `binary.ircv3.net` subprotocol.
pub async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    host: &str,
) -> Result<(), String> {
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: bG9hZGdlbi13ZWJzb2NrZXQ=\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: binary.ircv3.net\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("cannot send the WebSocket upgrade: {e}"))?;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > MAX_RESPONSE_HEAD {
            return Err("the upgrade response head is too long".into());
        }
        let byte = stream
            .read_u8()
            .await
            .map_err(|e| format!("no WebSocket upgrade response: {e}"))?;
        head.push(byte);
    }
    let head = String::from_utf8_lossy(&head);
    if !head.starts_with("HTTP/1.1 101 ") {
        return Err(format!(
            "WebSocket upgrade refused: {}",
            head.lines().next().unwrap_or("")
        ));
    }
    if !head
        .to_ascii_lowercase()
        .contains("sec-websocket-protocol: binary.ircv3.net")
    {
        return Err("the server did not choose binary.ircv3.net".into());
    }
    Ok(())
}

/// Appends each CR LF-terminated line of `data` to `out` as one binary frame, masked
/// as clients must (with a zero key: masking is there to protect proxies' caches, and
/// a benchmark has none; the server unmasks all the same).
pub fn frame_lines(data: &[u8], out: &mut Vec<u8>) {
    for line in data.split_inclusive(|&byte| byte == b'\n') {
        let line = line
            .strip_suffix(b"\n")
            .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
            .unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        out.push(0x82);
        match line.len() {
            len if len < 126 => out.push(0x80 | len as u8),
            len if len <= 0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(line);
    }
}

/// Where the de-framer is in the server's stream of frames.
#[derive(Debug, Default)]
pub struct Deframer {
    /// The header being read: up to 10 bytes (servers send no mask).
    header: [u8; 10],
    header_len: usize,
    /// Payload bytes of the current frame still to come.
    remaining: u64,
    /// The current frame is a control frame: its payload is skipped, not a line (a
    /// close frame follows the server's ERROR line, and then the socket closes).
    control: bool,
}

impl Deframer {
    /// Passes the payload bytes in `data` to `on_bytes`, with `b"\r\n"` after each
    /// data message ends, so a line splitter sees the lines the server sent.
    pub fn feed(&mut self, mut data: &[u8], mut on_bytes: impl FnMut(&[u8])) {
        while !data.is_empty() {
            if self.remaining > 0 {
                let take = (self.remaining.min(data.len() as u64)) as usize;
                if !self.control {
                    on_bytes(&data[..take]);
                }
                self.remaining -= take as u64;
                data = &data[take..];
                if self.remaining == 0 {
                    self.end_frame(&mut on_bytes);
                }
                continue;
            }
            self.header[self.header_len] = data[0];
            self.header_len += 1;
            data = &data[1..];
            let needed = match self.header.get(1).map(|second| second & 0x7F) {
                _ if self.header_len < 2 => continue,
                Some(126) => 4,
                Some(127) => 10,
                _ => 2,
            };
            if self.header_len < needed {
                continue;
            }
            let opcode = self.header[0] & 0x0F;
            self.control = opcode & 0x08 != 0;
            self.remaining = match needed {
                4 => u16::from_be_bytes([self.header[2], self.header[3]]) as u64,
                10 => u64::from_be_bytes(self.header[2..10].try_into().unwrap_or([0; 8])),
                _ => (self.header[1] & 0x7F) as u64,
            };
            self.header_len = 0;
            if self.remaining == 0 {
                self.end_frame(&mut on_bytes);
            }
        }
    }

    fn end_frame(&mut self, on_bytes: &mut impl FnMut(&[u8])) {
        // One IRC line per message: a final data frame ends the line.
        if !self.control && self.header[0] & 0x80 != 0 {
            on_bytes(b"\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_masked_binary_frames() {
        let mut out = Vec::new();
        frame_lines(b"NICK a\r\nUSER a 0 * :a\r\n", &mut out);
        assert_eq!(&out[..12], b"\x82\x86\0\0\0\0NICK a");
        assert_eq!(out.len(), 12 + 6 + 13);
    }

    #[test]
    fn frames_split_anywhere_give_back_the_lines() {
        let mut stream = Vec::new();
        stream.extend_from_slice(b"\x82\x05hello");
        stream.extend_from_slice(b"\x89\x02hi"); // a ping: not a line
        let long = vec![b'x'; 300];
        stream.extend_from_slice(&[0x82, 126, 1, 44]);
        stream.extend_from_slice(&long);
        for split in 0..stream.len() {
            let mut deframer = Deframer::default();
            let mut seen = Vec::new();
            deframer.feed(&stream[..split], |bytes| seen.extend_from_slice(bytes));
            deframer.feed(&stream[split..], |bytes| seen.extend_from_slice(bytes));
            let mut expected = b"hello\r\n".to_vec();
            expected.extend_from_slice(&long);
            expected.extend_from_slice(b"\r\n");
            assert_eq!(seen, expected, "split at {split}");
        }
    }
}
