//! The WebSocket frame format (RFC 6455 section 5), pure: parses one client frame
//! from a byte buffer and writes server frames. It knows nothing of messages,
//! sessions or sockets: [`super::WebSocketSession`] reassembles fragments and decides
//! what a frame means.
//!
//! Written here rather than taken from `tungstenite`: its protocol layer reads from
//! and writes to a `Read + Write` stream and buffers on its own, while the ring driver
//! hands over a provided buffer that must go back before the next completion; the
//! codec is some 100 lines, and every limit it enforces is ours.

/// Opcodes (RFC 6455 section 5.2).
pub const CONTINUATION: u8 = 0x0;
/// A text data frame: the payload must be UTF-8.
pub const TEXT: u8 = 0x1;
/// A binary data frame.
pub const BINARY: u8 = 0x2;
/// A close control frame.
pub const CLOSE: u8 = 0x8;
/// A ping control frame: answered with a pong carrying the same payload.
pub const PING: u8 = 0x9;
/// A pong control frame.
pub const PONG: u8 = 0xA;

/// Largest payload of a control frame (RFC 6455 section 5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// One frame's header, parsed; the payload follows it in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The last frame of a message.
    pub fin: bool,
    /// What the frame carries.
    pub opcode: u8,
    /// The client's masking key (clients must mask every frame).
    pub mask: [u8; 4],
    /// Bytes of header before the payload.
    pub header_len: usize,
    /// Bytes of payload.
    pub payload_len: usize,
}

/// Why a frame is refused; each maps to a close code and a reason the client sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Reserved bits set: no extension was negotiated.
    #[error("reserved bits set")]
    ReservedBits,
    /// An opcode RFC 6455 does not define.
    #[error("unknown opcode")]
    UnknownOpcode,
    /// A client frame without a mask (RFC 6455 section 5.1: the server must close).
    #[error("client frames must be masked")]
    Unmasked,
    /// A control frame fragmented or over 125 bytes.
    #[error("bad control frame")]
    BadControlFrame,
    /// A payload longer than the session accepts.
    #[error("frame too large")]
    TooLarge,
}

impl FrameError {
    /// The close status code for this error (RFC 6455 section 7.4.1): 1009 for a
    /// message too big, 1002 for a protocol error.
    pub fn close_code(self) -> u16 {
        match self {
            FrameError::TooLarge => 1009,
            _ => 1002,
        }
    }
}

/// Parses the header of the frame at the start of `data`. `Ok(None)`: more bytes are
/// needed. A payload longer than `max_payload` is refused from its header alone, so
/// nothing of it is ever buffered.
pub fn parse_header(data: &[u8], max_payload: usize) -> Result<Option<FrameHeader>, FrameError> {
    let [first, second, ..] = *data else {
        return Ok(None);
    };
    if first & 0x70 != 0 {
        return Err(FrameError::ReservedBits);
    }
    let fin = first & 0x80 != 0;
    let opcode = first & 0x0F;
    let is_control = opcode & 0x8 != 0;
    if !matches!(opcode, CONTINUATION | TEXT | BINARY | CLOSE | PING | PONG) {
        return Err(FrameError::UnknownOpcode);
    }
    if second & 0x80 == 0 {
        return Err(FrameError::Unmasked);
    }
    if is_control && (!fin || (second & 0x7F) as usize > MAX_CONTROL_PAYLOAD) {
        return Err(FrameError::BadControlFrame);
    }
    let (length_len, short) = match second & 0x7F {
        126 => (2, None),
        127 => (8, None),
        short => (0, Some(short as usize)),
    };
    let header_len = 2 + length_len + 4;
    if data.len() < header_len {
        // The length is known early enough to refuse a huge frame before its mask.
        if let Some(length) = extended_length(&data[2..], length_len) {
            if length > max_payload as u64 {
                return Err(FrameError::TooLarge);
            }
        }
        return Ok(None);
    }
    let payload_len = match short {
        Some(short) => short as u64,
        None => extended_length(&data[2..], length_len).unwrap_or(u64::MAX),
    };
    if payload_len > max_payload as u64 {
        return Err(FrameError::TooLarge);
    }
    let mask_at = 2 + length_len;
    let mask = [
        data[mask_at],
        data[mask_at + 1],
        data[mask_at + 2],
        data[mask_at + 3],
    ];
    Ok(Some(FrameHeader {
        fin,
        opcode,
        mask,
        header_len,
        payload_len: payload_len as usize,
    }))
}

/// The 16- or 64-bit length that follows the second byte, once it has all arrived.
fn extended_length(data: &[u8], length_len: usize) -> Option<u64> {
    if length_len == 0 || data.len() < length_len {
        return None;
    }
    Some(
        data[..length_len]
            .iter()
            .fold(0u64, |length, &byte| (length << 8) | byte as u64),
    )
}

/// Appends `payload` unmasked with `mask` to `out`.
pub fn unmask_into(payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    out.extend(
        payload
            .iter()
            .zip(mask.iter().cycle())
            .map(|(byte, key)| byte ^ key),
    );
}

/// Appends a whole, unmasked server frame (servers never mask, section 5.1).
pub fn write_frame(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(payload.len() + 10);
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(len as u8);
    } else if len <= u16::MAX as usize {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// Appends a close frame with a status code and a reason cut to fit a control frame
/// (on a character boundary: the reason must be UTF-8).
pub fn write_close(code: u16, reason: &str, out: &mut Vec<u8>) {
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    write_frame(CLOSE, &payload, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame as a browser sends it: masked.
    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut frame = vec![first];
        match payload.len() {
            len if len < 126 => frame.push(0x80 | len as u8),
            len if len <= 0xFFFF => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        unmask_into(payload, mask, &mut frame);
        frame
    }

    #[test]
    fn a_masked_text_frame_parses_and_unmasks() {
        let frame = client_frame(0x81, b"PING :x");
        let header = parse_header(&frame, 100).unwrap().unwrap();
        assert_eq!((header.fin, header.opcode), (true, TEXT));
        assert_eq!((header.header_len, header.payload_len), (6, 7));
        let mut out = Vec::new();
        unmask_into(&frame[6..], header.mask, &mut out);
        assert_eq!(out, b"PING :x");
    }

    #[test]
    fn every_prefix_of_a_frame_asks_for_more() {
        let frame = client_frame(0x82, &[b'a'; 300]);
        for end in 0..8 {
            assert_eq!(parse_header(&frame[..end], 1000), Ok(None), "{end} bytes");
        }
        assert_eq!(
            parse_header(&frame, 1000).unwrap().unwrap().payload_len,
            300
        );
    }

    #[test]
    fn hostile_headers_are_refused() {
        assert_eq!(parse_header(&[0x81, 0x05], 100), Err(FrameError::Unmasked));
        assert_eq!(
            parse_header(&[0xC1, 0x85], 100),
            Err(FrameError::ReservedBits)
        );
        assert_eq!(
            parse_header(&[0x83, 0x85], 100),
            Err(FrameError::UnknownOpcode)
        );
        assert_eq!(
            parse_header(&[0x09, 0x80], 100),
            Err(FrameError::BadControlFrame)
        );
        // A 2^63-byte frame is refused from its length, before its mask arrives.
        let huge = [0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
        assert_eq!(parse_header(&huge, 8192), Err(FrameError::TooLarge));
        assert_eq!(
            parse_header(&client_frame(0x81, &[b'a'; 200]), 100),
            Err(FrameError::TooLarge)
        );
    }

    #[test]
    fn server_frames_use_the_shortest_length() {
        let mut out = Vec::new();
        write_frame(TEXT, b"hi", &mut out);
        assert_eq!(out, b"\x81\x02hi");
        out.clear();
        write_frame(BINARY, &[0; 300], &mut out);
        assert_eq!(&out[..4], &[0x82, 126, 1, 44]);
        out.clear();
        write_close(1009, &"é".repeat(100), &mut out);
        assert_eq!(out.len(), 2 + 2 + 122);
        assert_eq!(&out[..4], &[0x88, 124, 0x03, 0xF1]);
    }
}
