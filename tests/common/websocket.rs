//! A WebSocket test client, built on `tungstenite` (an implementation independent of
//! the server's, so one misreading of RFC 6455 cannot hide on both sides), and a raw
//! one for the frames a well-behaved library refuses to send.

use super::{open_socket, Transport, HANG};
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

/// A browser-like IRC client over WebSocket: one IRC line per message.
pub struct WsClient {
    /// The nickname it registered with, if any.
    pub nick: String,
    /// The subprotocol the server chose, if any.
    pub protocol: Option<String>,
    socket: WebSocket<RetryInterrupted>,
    barriers: u32,
}

/// How the connection ended: the close frame's code and reason, if one came.
pub type Closed = Option<(u16, String)>;

impl WsClient {
    /// Upgrades a plain connection, offering `protocols` in that order.
    pub fn connect(addr: SocketAddr, protocols: &[&str]) -> WsClient {
        WsClient::upgrade(
            Transport::Plain(open_socket(addr)),
            &format!("ws://{addr}/"),
            protocols,
            &[],
        )
    }

    /// Upgrades a plain connection, sending `headers` too (`Origin`,
    /// `X-Forwarded-For`); the refusal's status line if the server refuses.
    pub fn try_connect_with(
        addr: SocketAddr,
        headers: &[(&'static str, &str)],
    ) -> Result<WsClient, String> {
        WsClient::try_upgrade(
            Transport::Plain(open_socket(addr)),
            &format!("ws://{addr}/"),
            &[],
            headers,
        )
    }

    /// Registers an upgraded client as `nick` (up to 422, no MOTD).
    pub fn register_as(mut self, nick: &str) -> WsClient {
        self.nick = nick.to_owned();
        self.send(&format!("NICK {nick}"));
        self.send(&format!("USER {nick} 0 * :{nick}"));
        self.skip_until(|line| super::has_numeric(line, "422"));
        self
    }

    /// Upgrades a TLS connection (server name `localhost`).
    pub fn connect_tls(addr: SocketAddr, config: Arc<ClientConfig>) -> WsClient {
        let name = "localhost".try_into().expect("a valid server name");
        let session = ClientConnection::new(config, name).expect("a TLS client session");
        let stream = StreamOwned::new(session, open_socket(addr));
        WsClient::upgrade(
            Transport::Tls(Box::new(stream)),
            &format!("wss://localhost:{}/", addr.port()),
            &[],
            &[],
        )
    }

    /// Connects (text frames, no subprotocol) and registers as `nick`, reading up to
    /// the end of the welcome burst (422, no MOTD).
    pub fn register(addr: SocketAddr, nick: &str) -> WsClient {
        WsClient::connect(addr, &[]).register_as(nick)
    }

    fn upgrade(
        transport: Transport,
        url: &str,
        protocols: &[&str],
        headers: &[(&'static str, &str)],
    ) -> WsClient {
        WsClient::try_upgrade(transport, url, protocols, headers)
            .unwrap_or_else(|refusal| panic!("WebSocket upgrade refused: {refusal}"))
    }

    fn try_upgrade(
        transport: Transport,
        url: &str,
        protocols: &[&str],
        headers: &[(&'static str, &str)],
    ) -> Result<WsClient, String> {
        let mut request = url.into_client_request().expect("a valid URL");
        if !protocols.is_empty() {
            request.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_str(&protocols.join(", ")).expect("a header value"),
            );
        }
        for (name, value) in headers {
            request
                .headers_mut()
                .insert(*name, HeaderValue::from_str(value).expect("a header value"));
        }
        match tungstenite::client::client(request, RetryInterrupted(transport)) {
            Ok((socket, response)) => Ok(WsClient {
                nick: String::new(),
                protocol: response
                    .headers()
                    .get("Sec-WebSocket-Protocol")
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned),
                socket,
                barriers: 0,
            }),
            Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
                Err(response.status().to_string())
            }
            Err(error) => Err(error.to_string()),
        }
    }

    /// `nick!~nick@127.0.0.1`, the source of this client's lines.
    pub fn source(&self) -> String {
        format!("{0}!~{0}@127.0.0.1", self.nick)
    }

    /// Sends one line as one text message (no CR LF, as the IRCv3 spec asks).
    pub fn send(&mut self, line: &str) {
        self.socket
            .send(Message::text(line))
            .expect("send to server");
    }

    /// Sends one message as a binary frame, bytes as given.
    pub fn send_binary(&mut self, bytes: &[u8]) {
        self.socket
            .send(Message::binary(bytes.to_vec()))
            .expect("send to server");
    }

    /// The next data message, as it came; `Err` with the close if the connection ends.
    pub fn message(&mut self) -> Result<Message, Closed> {
        loop {
            match self.socket.read() {
                Ok(Message::Close(frame)) => {
                    return Err(
                        frame.map(|frame| (u16::from(frame.code), frame.reason.to_string()))
                    );
                }
                Ok(message @ (Message::Text(_) | Message::Binary(_))) => return Ok(message),
                // tungstenite answers pings itself.
                Ok(_) => continue,
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return Err(None);
                }
                Err(tungstenite::Error::Io(error))
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    panic!("{}: read timed out (hung test?)", self.nick)
                }
                Err(tungstenite::Error::Io(_)) => return Err(None),
                Err(error) => panic!("{}: the server broke the protocol: {error}", self.nick),
            }
        }
    }

    /// The next line; panics if the connection closes.
    pub fn line(&mut self) -> String {
        match self.message() {
            Ok(Message::Text(text)) => text.to_string(),
            Ok(Message::Binary(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
            Ok(other) => panic!("{}: unexpected message {other:?}", self.nick),
            Err(closed) => panic!(
                "{}: closed while a line was expected: {closed:?}",
                self.nick
            ),
        }
    }

    /// The next line must be exactly `expected`.
    pub fn expect(&mut self, expected: &str) {
        let line = self.line();
        assert_eq!(line, expected, "{}: unexpected line", self.nick);
    }

    /// Reads lines until one satisfies `done`; returns the lines before it and it.
    pub fn skip_until(&mut self, mut done: impl FnMut(&str) -> bool) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let line = self.line();
            let finished = done(&line);
            seen.push(line);
            if finished {
                return seen;
            }
        }
    }

    /// Sends `PING` with a fresh token; returns every line that came before its PONG.
    pub fn barrier(&mut self) -> Vec<String> {
        self.barriers += 1;
        let token = format!("barrier{}", self.barriers);
        self.send(&format!("PING :{token}"));
        let mut lines = self.skip_until(|line| line.contains(" PONG ") && line.ends_with(&token));
        lines.pop();
        lines
    }

    /// Sends a WebSocket ping and returns the payload of the pong that answers it,
    /// skipping any lines before it.
    pub fn ping(&mut self, payload: &[u8]) -> Vec<u8> {
        self.socket
            .send(Message::Ping(payload.to_vec().into()))
            .expect("send a ping");
        loop {
            match self.socket.read().expect("a pong") {
                Message::Pong(payload) => return payload.to_vec(),
                _ => continue,
            }
        }
    }

    /// Reads until the server closes; returns the lines before and the close.
    pub fn expect_closed(&mut self) -> (Vec<String>, Closed) {
        let mut lines = Vec::new();
        loop {
            match self.message() {
                Ok(Message::Text(text)) => lines.push(text.to_string()),
                Ok(Message::Binary(bytes)) => {
                    lines.push(String::from_utf8_lossy(&bytes).into_owned())
                }
                Ok(_) => {}
                Err(closed) => return (lines, closed),
            }
        }
    }

    /// Starts the closing handshake with code 1000.
    pub fn close(&mut self) {
        self.socket
            .close(Some(tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            }))
            .expect("send a close");
    }
}

/// Retries reads and writes a signal interrupted (the server's process takes
/// signals), which `tungstenite` would report as errors.
struct RetryInterrupted(Transport);

impl Read for RetryInterrupted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.0.read(buf) {
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                result => return result,
            }
        }
    }
}

impl Write for RetryInterrupted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        loop {
            match self.0.write(buf) {
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                result => return result,
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// A raw WebSocket connection for hostile input: upgrades, then writes whatever bytes
/// the test gives and reads the server's frames as they are.
pub struct RawWs {
    socket: TcpStream,
}

impl RawWs {
    /// Connects and completes the opening handshake with a fixed key.
    pub fn connect(addr: SocketAddr) -> RawWs {
        let mut socket = open_socket(addr);
        socket
            .write_all(
                b"GET / HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            )
            .expect("send the upgrade");
        let head = read_head(&mut socket);
        assert!(head.starts_with("HTTP/1.1 101 "), "upgrade refused: {head}");
        assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        RawWs { socket }
    }

    /// Sends a masked frame with the given first byte (FIN, opcode) and payload.
    pub fn send_frame(&mut self, first: u8, payload: &[u8]) {
        let _ = self.socket.write_all(&masked_frame(first, payload));
    }

    /// Sends bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.socket.write_all(bytes);
    }

    /// Reads server frames until a close frame; returns its code and reason (the
    /// data frames before it are skipped). `None` if the socket closed without one.
    pub fn expect_close_frame(&mut self) -> Option<(u16, String)> {
        loop {
            let (opcode, payload) = self.frame()?;
            if opcode == 0x8 {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                return Some((code, String::from_utf8_lossy(&payload[2..]).into_owned()));
            }
        }
    }

    /// The next server frame: its opcode and payload (servers never mask).
    pub fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut head = [0u8; 2];
        self.socket.read_exact(&mut head).ok()?;
        assert_eq!(head[1] & 0x80, 0, "a server frame must not be masked");
        let len = match head[1] & 0x7F {
            126 => {
                let mut len = [0u8; 2];
                self.socket.read_exact(&mut len).ok()?;
                u16::from_be_bytes(len) as usize
            }
            127 => {
                let mut len = [0u8; 8];
                self.socket.read_exact(&mut len).ok()?;
                u64::from_be_bytes(len) as usize
            }
            short => short as usize,
        };
        let mut payload = vec![0; len];
        self.socket.read_exact(&mut payload).ok()?;
        Some((head[0] & 0x0F, payload))
    }
}

/// A client frame: FIN/opcode byte, masked payload.
pub fn masked_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xFA, 0x21, 0x3D];
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
    frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, k)| b ^ k));
    frame
}

/// Sends a plain HTTP request and returns the whole response (the server closes).
pub fn http_request(addr: SocketAddr, request: &str) -> String {
    let mut socket = open_socket(addr);
    socket.set_read_timeout(Some(HANG)).expect("timeout");
    socket
        .write_all(request.as_bytes())
        .expect("send the request");
    let mut response = Vec::new();
    let _ = socket.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

/// Reads an HTTP response head, byte by byte so nothing after it is consumed.
fn read_head(socket: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        socket.read_exact(&mut byte).expect("a response head");
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}
