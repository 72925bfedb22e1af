//! Test helpers: a real IRC server on loopback, the client binary driven through
//! pipes, a raw IRC peer that sees exactly what arrives on the wire, and a scripted
//! fake server for conversations no real server can be made to have on demand.
//! Every wait here is bounded by [`WAIT`]; nothing proves absence with a sleep.

#![allow(dead_code)] // Each test file uses its own subset of the helpers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

mod ngircd;

/// Longest any single expectation waits.
pub const WAIT: Duration = Duration::from_secs(10);

/// The client binary under test.
pub const CLIENT: &str = env!("CARGO_BIN_EXE_ringchat-client");

/// A real IRC server on an ephemeral loopback port: ringchat in this process, or
/// ngircd when `RINGCHAT_CLIENT_TEST_SERVER=ngircd` (to check the client against
/// another server). Dropping it shuts it down.
pub struct TestServer {
    backend: Option<Backend>,
    addr: SocketAddr,
    /// The password it requires, kept to restart it the same.
    password: Option<String>,
}

enum Backend {
    Ringchat(ringchat::Server),
    Ngircd(ngircd::Ngircd),
}

impl TestServer {
    /// Starts a server without a password.
    pub fn start() -> TestServer {
        TestServer::start_with_password(None)
    }

    /// Starts a server that requires `password` (PASS) when it is set.
    pub fn start_with_password(password: Option<&str>) -> TestServer {
        TestServer::start_on(0, password)
    }

    /// Starts a server on `port` of loopback (0: any free port).
    fn start_on(port: u16, password: Option<&str>) -> TestServer {
        let password_owned = password.map(str::to_string);
        if std::env::var("RINGCHAT_CLIENT_TEST_SERVER").as_deref() == Ok("ngircd") {
            let server = if port == 0 {
                ngircd::Ngircd::start(password)
            } else {
                ngircd::Ngircd::start_on(port, password)
            };
            let addr = server.addr;
            return TestServer {
                backend: Some(Backend::Ngircd(server)),
                addr,
                password: password_owned,
            };
        }
        let mut config = ringchat::Config::loopback();
        config.listen = vec![SocketAddr::from(([127, 0, 0, 1], port))];
        config.password = password_owned.clone();
        let server = ringchat::Server::start(config).expect("ringchat test server starts");
        let addr = server.local_addr();
        TestServer {
            backend: Some(Backend::Ringchat(server)),
            addr,
            password: password_owned,
        }
    }

    /// Shuts the server down and starts a new one on the same port: a server
    /// restart, as its clients see it.
    pub fn restart(&mut self) {
        self.shutdown();
        let port = self.addr.port();
        let password = self.password.take();
        *self = TestServer::start_on(port, password.as_deref());
    }

    /// `HOST:PORT` as the client's first argument.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Shuts the server down: ringchat sends ERROR to every client and closes; ngircd
    /// is killed. Either way every client loses its link.
    pub fn shutdown(&mut self) {
        match self.backend.take() {
            Some(Backend::Ringchat(server)) => server.shutdown(),
            Some(Backend::Ngircd(server)) => server.stop(),
            None => {}
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A free loopback port nothing listens on (for "connection refused").
pub fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// The client binary running with pipes for stdin, stdout and stderr.
pub struct Client {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    /// The thread collecting stderr; joined once the process has exited.
    stderr_reader: Option<thread::JoinHandle<()>>,
    /// Every stdout line seen so far, for failure messages.
    seen: Vec<String>,
}

impl Client {
    /// Starts `ringchat-client ADDR --nick NICK` plus `extra` arguments.
    pub fn start(addr: &str, nick: &str, extra: &[&str]) -> Client {
        let mut command = Command::new(CLIENT);
        command.arg(addr).args(["--nick", nick]).args(extra);
        Client::spawn(nick, command)
    }

    /// Starts the client with exactly these arguments and environment.
    pub fn spawn(name: &str, mut command: Command) -> Client {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("client binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr_pipe = child.stderr.take().expect("stderr is piped");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let stderr_reader = thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr_pipe.read_to_string(&mut text);
            sink.lock().expect("stderr lock").push_str(&text);
        });
        Client {
            name: name.to_string(),
            stdin: child.stdin.take(),
            child,
            stdout: lines,
            stderr,
            stderr_reader: Some(stderr_reader),
            seen: Vec::new(),
        }
    }

    /// Types one line.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").expect("write to client stdin");
        stdin.flush().expect("flush client stdin");
    }

    /// Waits for a stdout line containing `needle` and returns it; lines before it are
    /// skipped. Panics with the transcript after [`WAIT`].
    pub fn expect(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{}: no line containing {needle:?} within {WAIT:?}; saw:\n{}\nstderr: {}",
                    self.name,
                    self.seen.join("\n"),
                    self.stderr()
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "{}: stdout closed before a line containing {needle:?}; saw:\n{}\nstderr: {}",
                    self.name,
                    self.seen.join("\n"),
                    self.stderr()
                ),
            }
        }
    }

    /// Waits for a stdout line containing `needle` like [`Client::expect`]; returns
    /// every line from now up to and including it (to check what came before it).
    pub fn expect_lines(&mut self, needle: &str) -> Vec<String> {
        let from = self.seen.len();
        self.expect(needle);
        self.seen[from..].to_vec()
    }

    /// Closes stdin: end of input.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits (bounded) for the process to exit; returns its exit code and stderr.
    pub fn wait_exit(&mut self) -> (i32, String) {
        let status = wait_child(&mut self.child, WAIT).unwrap_or_else(|| {
            panic!(
                "{}: still running after {WAIT:?}; saw:\n{}",
                self.name,
                self.seen.join("\n")
            )
        });
        // The process has exited, so its stderr is at end of file.
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        (status.code().unwrap_or(-1), self.stderr())
    }

    fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr lock").clone()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `child` until it exits or `limit` passes.
pub fn wait_child(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A hand-driven IRC connection: sends raw lines, and checks raw lines received.
pub struct RawPeer {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    seen: Vec<String>,
}

impl RawPeer {
    /// Connects and registers as `nick`, returning once 001 has arrived.
    pub fn register(addr: &str, nick: &str) -> RawPeer {
        let stream = TcpStream::connect(addr).expect("raw peer connects");
        stream.set_read_timeout(Some(WAIT)).expect("read timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone stream"));
        let mut peer = RawPeer {
            stream,
            reader,
            seen: Vec::new(),
        };
        peer.send(&format!("NICK {nick}"));
        peer.send(&format!("USER {nick} 0 * :raw peer"));
        peer.expect(" 001 ");
        peer
    }

    /// Sends one line (CRLF added).
    pub fn send(&mut self, line: &str) {
        self.stream
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("raw peer writes");
    }

    /// Waits for a line containing `needle`, answering PING meanwhile.
    pub fn expect(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(
                Instant::now() < deadline,
                "raw peer: no line containing {needle:?}; saw:\n{}",
                self.seen.join("\n")
            );
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => panic!(
                    "raw peer: connection closed; saw:\n{}",
                    self.seen.join("\n")
                ),
                Ok(_) => {}
                Err(err)
                    if matches!(
                        err.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    panic!(
                        "raw peer: no line containing {needle:?} within {WAIT:?}; saw:\n{}",
                        self.seen.join("\n")
                    )
                }
                Err(err) => panic!(
                    "raw peer: {err} waiting for {needle:?}; saw:\n{}",
                    self.seen.join("\n")
                ),
            }
            let line = line.trim_end().to_string();
            if let Some(token) = line.strip_prefix("PING ") {
                let token = token.to_string();
                self.send(&format!("PONG {token}"));
            }
            self.seen.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// Proves everything the server sent us before now has arrived: PING, await PONG.
    pub fn barrier(&mut self) {
        self.send("PING :barrier");
        self.expect("barrier");
    }
}

/// A fake server on loopback that plays one scripted conversation with one client,
/// on its own thread. For behaviour a real server shows only in rare conditions
/// (every nick taken, a PING at a chosen moment).
pub struct ScriptedServer {
    addr: SocketAddr,
    done: Option<thread::JoinHandle<Vec<String>>>,
}

/// One step of a script.
pub enum Step {
    /// Wait for a line from the client that starts with this text. A trailing
    /// parameter may come with or without its `:`: `PONG x` matches `PONG :x`.
    Expect(&'static str),
    /// Send this line to the client (CRLF added). `{nick}` is replaced by the nick the
    /// client last sent with NICK.
    Send(&'static str),
    /// Close the connection.
    Close,
}

impl ScriptedServer {
    /// Listens on an ephemeral loopback port and plays `script` with the first client.
    pub fn start(script: Vec<Step>) -> ScriptedServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind scripted server");
        let addr = listener.local_addr().expect("local addr");
        let done = thread::spawn(move || {
            let (stream, _) = listener.accept().expect("client connects");
            stream.set_read_timeout(Some(WAIT)).expect("read timeout");
            play(stream, script)
        });
        ScriptedServer {
            addr,
            done: Some(done),
        }
    }

    /// `HOST:PORT` as the client's first argument.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Waits for the script to finish; returns every line the client sent. Panics (with
    /// the reason) if the script failed.
    pub fn finish(mut self) -> Vec<String> {
        let done = self.done.take().expect("finish called once");
        match done.join() {
            Ok(lines) => lines,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

fn play(stream: TcpStream, script: Vec<Step>) -> Vec<String> {
    let mut writer = stream.try_clone().expect("clone stream");
    let mut reader = BufReader::new(stream);
    let mut received: Vec<String> = Vec::new();
    let mut nick = String::from("*");
    for step in script {
        match step {
            Step::Expect(prefix) => loop {
                let mut line = String::new();
                let read = reader.read_line(&mut line).unwrap_or_else(|err| {
                    panic!("scripted server: {err} waiting for {prefix:?}; got {received:?}")
                });
                assert!(
                    read > 0,
                    "scripted server: client closed while waiting for {prefix:?}; got {received:?}"
                );
                let line = line.trim_end().to_string();
                if let Some(new_nick) = line.strip_prefix("NICK ") {
                    nick = new_nick.trim_start_matches(':').to_string();
                }
                received.push(line.clone());
                if without_colons(&line).starts_with(&without_colons(prefix)) {
                    break;
                }
            },
            Step::Send(line) => {
                let line = line.replace("{nick}", &nick);
                writer
                    .write_all(format!("{line}\r\n").as_bytes())
                    .expect("scripted server writes");
            }
            Step::Close => break,
        }
    }
    received
}

/// The line with every ` :` turned into ` `, to compare lines that differ only in
/// whether a last parameter was sent as trailing.
fn without_colons(line: &str) -> String {
    line.replace(" :", " ")
}
