//! Test harness: a real server on 127.0.0.1 with an ephemeral port, and a line-based
//! IRC client over a real TCP socket. Tests read like the conversation:
//! `alice.send("JOIN #rust"); bob.expect(":alice!~alice@127.0.0.1 JOIN #rust")`.
//!
//! Timeouts here only fail a hung test; nothing measures speed. To prove that nothing
//! arrived, [`Client::expect_nothing`] sends `PING :barrier` and requires the PONG to
//! be the next line.

#![allow(dead_code)] // each test file uses part of the harness

pub mod tls;
pub mod websocket;

use ringchat::{Config, IoMode, Server};
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// A loopback address (an ephemeral port) nobody listens on right now.
pub fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("an ephemeral port")
}

/// A fresh, empty data directory (the store: accounts, history) for the test named
/// `test`, in the temporary directory; a test binary's tests each pass their own name.
pub fn data_dir(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ringchat-data-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a data directory");
    dir
}

/// `GET path` over HTTP/1.1 (a metrics endpoint): the status line and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to metrics");
    stream.set_read_timeout(Some(HANG)).expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let (head, body) = response.split_once("\r\n\r\n").expect("a header block");
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

/// How long a read may block before the test is declared hung.
pub const HANG: Duration = Duration::from_secs(20);

/// One point of the test matrix: which driver, how many shards.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    /// The I/O driver under test.
    pub io: IoMode,
    /// Shards (runtimes) the server runs.
    pub shards: usize,
}

impl Setup {
    /// The default config for this setup: loopback, ephemeral port.
    pub fn config(&self) -> Config {
        Config {
            io: self.io,
            shards: self.shards,
            ..Config::loopback()
        }
    }

    /// Starts a server with the default config.
    pub fn start(&self) -> TestServer {
        self.start_with(|_| {})
    }

    /// Starts a server after `adjust` has changed the config.
    pub fn start_with(&self, adjust: impl FnOnce(&mut Config)) -> TestServer {
        let mut config = self.config();
        adjust(&mut config);
        let server = Server::start(config).expect("server starts");
        TestServer {
            addr: server.local_addr(),
            tls_addr: server.tls_local_addrs().first().copied(),
            ws_addr: server.websocket_local_addrs().first().copied(),
            wss_addr: server.websocket_tls_local_addrs().first().copied(),
            server: Some(server),
        }
    }

    /// Starts a server with a plaintext and a WebSocket listener, after `adjust` has
    /// changed the config.
    pub fn start_websocket(&self, adjust: impl FnOnce(&mut Config)) -> TestServer {
        self.start_with(|config| {
            config.websocket_listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
            adjust(config);
        })
    }

    /// Starts a server with a plaintext and a TLS listener, presenting `pki`'s
    /// server certificate, after `adjust` has changed the config.
    pub fn start_tls(&self, pki: &tls::TestPki, adjust: impl FnOnce(&mut Config)) -> TestServer {
        self.start_with(|config| {
            config.tls_listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
            config.tls = Some(pki.server_files());
            adjust(config);
        })
    }
}

/// Runs each test body against every driver (io_uring, epoll and the ring driver),
/// with 1 and 4 shards: one `#[test]` per combination, so a failure names its setup.
#[macro_export]
macro_rules! e2e {
    ($(fn $name:ident($setup:ident) $body:block)*) => {
        $(
            $crate::e2e_on! {
                [uring_1_shard Uring 1, uring_4_shards Uring 4, epoll_1_shard Epoll 1,
                 epoll_4_shards Epoll 4, ring_1_shard Ring 1, ring_4_shards Ring 4]
                fn $name($setup) $body
            }
        )*
    };
}

/// One test body as a module of one `#[test]` per listed `name Driver shards`.
#[macro_export]
macro_rules! e2e_on {
    ([$($test:ident $io:ident $shards:literal),*] fn $name:ident($setup:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            fn body($setup: $crate::common::Setup) $body
            $(
                #[test]
                fn $test() {
                    body($crate::common::Setup { io: ringchat::IoMode::$io, shards: $shards })
                }
            )*
        }
    };
}

/// A server running for one test; shut down when dropped.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where it listens with TLS, if it does.
    pub tls_addr: Option<SocketAddr>,
    /// Where it serves WebSocket (and the web client), if it does.
    pub ws_addr: Option<SocketAddr>,
    /// Where it serves WebSocket over TLS, if it does.
    pub wss_addr: Option<SocketAddr>,
    server: Option<Server>,
}

impl TestServer {
    /// Connects a raw, unregistered client.
    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Connects a raw, unregistered client over TLS with `config`.
    pub fn connect_tls(&self, config: Arc<ClientConfig>) -> Client {
        Client::connect_tls(self.tls_addr.expect("a TLS listener"), config)
    }

    /// Connects and registers `nick`, reading through the welcome burst.
    pub fn register(&self, nick: &str) -> Client {
        Client::register(self.connect(), nick)
    }

    /// Connects over TLS with `config` and registers `nick`.
    pub fn register_tls(&self, nick: &str, config: Arc<ClientConfig>) -> Client {
        Client::register(self.connect_tls(config), nick)
    }
}

impl Client {
    /// Registers `nick` on a fresh connection, reading through the welcome burst.
    pub fn register(mut client: Client, nick: &str) -> Client {
        client.send(&format!("NICK {nick}"));
        client.send(&format!("USER {nick} 0 * :{nick} test"));
        client.skip_until(|line| has_numeric(line, "376") || has_numeric(line, "422"));
        client.nick = nick.to_owned();
        client
    }
}

impl TestServer {
    /// The running server.
    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("server is running")
    }

    /// Waits (bounded) until the per-shard counters, published every few
    /// milliseconds, show `clients` connections in all; returns them per shard.
    pub fn connections_per_shard(&self, clients: u64) -> Vec<u64> {
        let deadline = std::time::Instant::now() + HANG;
        loop {
            let per_shard: Vec<u64> = self
                .server()
                .shard_counters()
                .iter()
                .map(|c| c.connections)
                .collect();
            if per_shard.iter().sum::<u64>() == clients {
                return per_shard;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "counters never reached {clients}: {per_shard:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Shuts the server down gracefully and waits for it.
    pub fn shutdown(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Has each client join `channel` in turn, and each member already there read the
/// newcomer's JOIN, so every client's view is settled (across shards too) before the
/// test goes on.
pub fn join_all(channel: &str, clients: &mut [&mut Client]) {
    for joiner in 0..clients.len() {
        clients[joiner].send(&format!("JOIN {channel}"));
        clients[joiner].skip_until(|line| has_numeric(line, "366"));
        let join = format!(":{} JOIN ", clients[joiner].source());
        for member in clients[..joiner].iter_mut() {
            let line = member.line();
            assert!(
                line.starts_with(&join),
                "{}: expected {join}..., got {line:?}",
                member.nick
            );
        }
    }
}

/// Floods `#c` from `sender` until `slow` (a member that never reads) is cut off for
/// its sendq, checking that `reader` gets every line in order meanwhile. The sender
/// waits for the reader after each batch, so only the slow client's queue grows. A
/// batch is well under half a 64 KiB sendq: bytes the reader has already read still
/// count against it until the server handles the write's completion, which on a
/// loaded machine can come after the next batch is queued.
pub fn flood_until_cut_off(sender: &mut Client, reader: &mut Client, slow: &str) {
    let padding = "p".repeat(400);
    let batch_lines = 40u64;
    let cut_off = format!(":{slow}!~{slow}@127.0.0.1 QUIT :SendQ exceeded");
    let source = sender.source();
    let mut sent = 0u64;
    let mut slow_gone = false;
    while !slow_gone && sent < 100_000 {
        let batch: String = (sent..sent + batch_lines)
            .map(|i| format!("PRIVMSG #c :{i} {padding}\r\n"))
            .collect();
        sender.send_raw(batch.as_bytes());
        let mut received = sent;
        sent += batch_lines;
        while received < sent {
            let line = reader.line();
            if line == cut_off {
                slow_gone = true;
                continue;
            }
            let expected = format!(":{source} PRIVMSG #c :{received} {padding}");
            assert_eq!(line, expected, "{} lost or reordered a line", reader.nick);
            received += 1;
        }
    }
    if !slow_gone {
        reader.expect(&cut_off);
    }
}

/// Registers `nick` on `server` after requesting `caps` (space-separated); any
/// server name (a cluster node's is `node<N>.ringchat.local`).
pub fn register_with_caps(server: &TestServer, nick: &str, caps: &str) -> Client {
    register_connected_with_caps(server.connect(), nick, caps)
}

/// [`register_with_caps`] on a connection already made (to a server a test runs
/// itself).
pub fn register_connected_with_caps(mut client: Client, nick: &str, caps: &str) -> Client {
    client.nick = nick.to_owned();
    client.send("CAP LS 302");
    client.send(&format!("NICK {nick}"));
    client.send(&format!("USER {nick} 0 * :{nick}"));
    client.skip_until(|line| line.contains(" CAP * LS :"));
    client.send(&format!("CAP REQ :{caps}"));
    let ack = client.line();
    assert!(ack.ends_with(&format!(" CAP {nick} ACK :{caps}")), "{ack}");
    client.send("CAP END");
    client.skip_until(|line| has_numeric(line, "422"));
    client
}

/// Sends `count` messages to `channel` and returns their echoes as `sender` got
/// them (`@time=..;msgid=.. :source PRIVMSG #c :text`). Each waits a little over a
/// millisecond after the one before, so every message has its own `server-time`
/// and the timestamp references below select exactly one side of it.
pub fn send_messages(sender: &mut Client, channel: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            std::thread::sleep(std::time::Duration::from_millis(2));
            sender.send(&format!("PRIVMSG {channel} :message {i}"));
            let echo = sender.line();
            assert!(
                echo.ends_with(&format!(" PRIVMSG {channel} :message {i}")),
                "{echo}"
            );
            echo
        })
        .collect()
}

/// Sends `query` and returns the lines of the `chathistory` batch that answers it,
/// without their `batch=` tag (from any server name).
pub fn history(client: &mut Client, query: &str, target: &str) -> Vec<String> {
    client.send(query);
    let start = client.line();
    let (server, reference) = start
        .split_once(" BATCH +")
        .and_then(|(server, rest)| {
            Some((
                server,
                rest.strip_suffix(&format!(" chathistory {target}"))?,
            ))
        })
        .unwrap_or_else(|| panic!("not a chathistory batch start: {start}"));
    let end = format!("{server} BATCH -{reference}");
    let tag = format!("@batch={reference};");
    let mut lines = Vec::new();
    loop {
        let line = client.line();
        if line == end {
            return lines;
        }
        let inner = line
            .strip_prefix(&tag)
            .unwrap_or_else(|| panic!("a line outside the batch: {line}"));
        lines.push(format!("@{inner}"));
    }
}

/// Whether `line` is numeric `code` (`:server CODE ...`).
pub fn has_numeric(line: &str, code: &str) -> bool {
    line.split(' ').nth(1) == Some(code)
}

/// A test client's connection: a plain socket, or rustls over one.
enum Transport {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Transport {
    fn socket(&self) -> &TcpStream {
        match self {
            Transport::Plain(socket) => socket,
            Transport::Tls(stream) => &stream.sock,
        }
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Transport::Plain(socket) => socket.read(buf),
            Transport::Tls(stream) => stream.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Transport::Plain(socket) => socket.write(buf),
            Transport::Tls(stream) => stream.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Transport::Plain(socket) => socket.flush(),
            Transport::Tls(stream) => stream.flush(),
        }
    }
}

/// A test client speaking IRC lines over a real socket (plaintext or TLS). Writes go
/// around the read buffer to the same transport.
pub struct Client {
    /// The nickname it registered with, if any.
    pub nick: String,
    reader: BufReader<Transport>,
    barriers: u32,
}

impl Client {
    /// Opens a connection without registering.
    pub fn connect(addr: SocketAddr) -> Client {
        Client::over(Transport::Plain(open_socket(addr)))
    }

    /// Opens a TLS connection (to server name `localhost`) without registering; the
    /// handshake happens with the first read or write.
    pub fn connect_tls(addr: SocketAddr, config: Arc<ClientConfig>) -> Client {
        let name = "localhost".try_into().expect("a valid server name");
        let session = ClientConnection::new(config, name).expect("a TLS client session");
        let stream = StreamOwned::new(session, open_socket(addr));
        Client::over(Transport::Tls(Box::new(stream)))
    }

    /// Opens a connection whose receive buffer is as small as the kernel allows, so
    /// a client that stops reading fills the server's side quickly.
    pub fn connect_with_tiny_receive_buffer(addr: SocketAddr) -> Client {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        socket.set_recv_buffer_size(1024).expect("SO_RCVBUF");
        socket
            .connect(&addr.into())
            .expect("connect to the test server");
        let stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(HANG)).expect("set timeout");
        stream.set_nodelay(true).expect("nodelay");
        Client::over(Transport::Plain(stream))
    }

    /// Opens a connection from another loopback address (`127.0.0.2`, ...), so a
    /// test can tell sources apart (bans by address).
    pub fn connect_from(local: std::net::IpAddr, addr: SocketAddr) -> Client {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )
        .expect("socket");
        socket
            .bind(&SocketAddr::new(local, 0).into())
            .expect("bind the local address");
        socket
            .connect(&addr.into())
            .expect("connect to the test server");
        let stream = TcpStream::from(socket);
        stream.set_read_timeout(Some(HANG)).expect("set timeout");
        stream.set_nodelay(true).expect("nodelay");
        Client::over(Transport::Plain(stream))
    }

    fn over(transport: Transport) -> Client {
        Client {
            nick: String::new(),
            reader: BufReader::new(transport),
            barriers: 0,
        }
    }

    /// Sends a TLS 1.3 KeyUpdate: from now on this client encrypts with new keys
    /// (TLS only).
    pub fn update_tls_keys(&mut self) {
        let Transport::Tls(stream) = self.reader.get_mut() else {
            panic!("not a TLS connection");
        };
        stream
            .conn
            .refresh_traffic_keys()
            .expect("a TLS 1.3 key update");
    }

    /// The certificate chain the server presented (TLS only; completes the handshake).
    pub fn server_certificates(&mut self) -> Vec<rustls::pki_types::CertificateDer<'static>> {
        let Transport::Tls(stream) = self.reader.get_mut() else {
            panic!("not a TLS connection");
        };
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .expect("TLS handshake");
        }
        stream
            .conn
            .peer_certificates()
            .expect("the server presents a certificate")
            .to_vec()
    }

    /// `nick!~nick@127.0.0.1`, the source of this client's lines.
    pub fn source(&self) -> String {
        format!("{0}!~{0}@127.0.0.1", self.nick)
    }

    /// Sends one line (CR LF appended).
    pub fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\r\n").as_bytes());
    }

    /// Sends bytes exactly as given.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.reader
            .get_mut()
            .write_all(bytes)
            .expect("send to server");
    }

    /// Sends bytes; false if the server already closed the connection.
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> bool {
        self.reader.get_mut().write_all(bytes).is_ok()
    }

    /// The next line without CR LF; panics if the connection closes or hangs.
    pub fn line(&mut self) -> String {
        self.try_line()
            .unwrap_or_else(|| panic!("{}: connection closed while a line was expected", self.nick))
    }

    /// The next line, or `None` once the server closed the connection.
    pub fn try_line(&mut self) -> Option<String> {
        let mut bytes = Vec::new();
        match self.reader.read_until(b'\n', &mut bytes) {
            Ok(0) => None,
            Ok(_) => {
                let text = String::from_utf8_lossy(&bytes);
                Some(text.trim_end_matches(['\r', '\n']).to_owned())
            }
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof
                ) =>
            {
                None
            }
            Err(error) => panic!("{}: read failed (hung test?): {error}", self.nick),
        }
    }

    /// The next line must be exactly `expected`.
    pub fn expect(&mut self, expected: &str) {
        let line = self.line();
        assert_eq!(line, expected, "{}: unexpected line", self.nick);
    }

    /// The next line must be numeric `code`; returns it.
    pub fn expect_numeric(&mut self, code: &str) -> String {
        let line = self.line();
        assert!(
            has_numeric(&line, code),
            "{}: expected {code}, got {line:?}",
            self.nick
        );
        line
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

    /// Sends `PING` with a fresh token and returns every line that arrived before its
    /// PONG: everything the server had queued for this client by then.
    pub fn barrier(&mut self) -> Vec<String> {
        self.barriers += 1;
        let token = format!("barrier{}", self.barriers);
        self.send(&format!("PING :{token}"));
        let mut lines = self.skip_until(|line| line.contains(" PONG ") && line.ends_with(&token));
        lines.pop();
        lines
    }

    /// Nothing is pending for this client (proved with a PING barrier, not a sleep).
    pub fn expect_nothing(&mut self) {
        let pending = self.barrier();
        assert!(
            pending.is_empty(),
            "{}: unexpected lines {pending:?}",
            self.nick
        );
    }

    /// Reads until the server closes the connection; returns the lines before that.
    pub fn expect_closed(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Some(line) = self.try_line() {
            lines.push(line);
        }
        lines
    }

    /// Closes the socket abruptly, without QUIT.
    pub fn vanish(self) {
        let _ = self.reader.get_ref().socket().shutdown(Shutdown::Both);
    }

    /// Stops reading: the socket's receive buffer fills and the server's sendq grows.
    /// Plaintext connections only.
    pub fn into_raw(self) -> TcpStream {
        match self.reader.into_inner() {
            Transport::Plain(socket) => socket,
            Transport::Tls(_) => panic!("into_raw is for plaintext connections"),
        }
    }

    /// The next line exactly as sent, CR LF included (for byte-exact checks).
    pub fn read_line_bytes(&mut self) -> Vec<u8> {
        let mut bytes = Vec::new();
        self.reader
            .read_until(b'\n', &mut bytes)
            .expect("read a line");
        bytes
    }

    /// Reads whatever bytes arrive until close, for tests that count raw bytes.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = self.reader.read_to_end(&mut out);
        out
    }
}

fn open_socket(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect to the test server");
    stream.set_read_timeout(Some(HANG)).expect("set timeout");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// The binary, reachable under a path of the test's own, so the test can put another
/// program there (a hard link: the real binary is untouched when it is replaced).
pub fn own_binary(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ringchat-upgrade-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join("ringchat");
    if std::fs::hard_link(env!("CARGO_BIN_EXE_ringchat"), &path).is_err() {
        std::fs::copy(env!("CARGO_BIN_EXE_ringchat"), &path).expect("copy the binary");
    }
    path
}

/// Replaces the program at `path` with a shell script (rename over it, as a package
/// manager installs a new build).
pub fn install_script(path: &std::path::Path, script: &str) {
    use std::os::unix::fs::PermissionsExt;
    let staged = path.with_extension("new");
    std::fs::write(&staged, script).expect("write the script");
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::rename(&staged, path).expect("install the script");
}
