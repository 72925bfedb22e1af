//! One benchmark client: connect, register, join, then read and verify forever.
//!
//! Owns: the client's socket ([`Conn`]), its setup conversation and its read loop.
//! The read loop answers PING at all times, records every benchmark delivery into its
//! thread's [`Recorder`] and never allocates per message: it reads into one large
//! buffer shared by all clients of the thread's (single-threaded) runtime and keeps
//! only an incomplete line of its own. Must not: hold a `RefCell` borrow across an `.await`, or block.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::client::TlsStream;

use crate::clock::now_ns;
use crate::irc::{classify, Line, LineSplitter};
use crate::procstat::{ProcUsage, ServerUsage};
use crate::stats::{Recorder, SenderTrack};
use crate::team::Team;
use crate::tls::TlsClient;

/// Size of the read buffer shared by all clients: one read takes everything the
/// kernel holds for a client, up to this.
pub const READ_BUF: usize = 256 * 1024;

/// Bytes a client may have waiting to be written before it is declared stuck (the
/// server stopped reading it). Open loop means loadgen never slows down for a server.
pub const MAX_UNSENT: usize = 16 * 1024 * 1024;

/// Errors kept verbatim in the report; later ones are only counted.
pub const MAX_KEPT_ERRORS: usize = 20;

/// State shared by every task of one thread of a run. Lives in an `Rc` on that
/// thread; dropped when the thread's part of the run returns.
pub struct RunShared {
    /// The run's time origin (CLOCK_MONOTONIC ns), the team's: payload times are
    /// relative to it on every thread.
    pub start_ns: u64,
    /// What the run's threads share (barrier, plan, published counters).
    pub team: Arc<Team>,
    /// This thread's number in the team (0 is the one that decides and reports).
    pub thread: usize,
    /// What receivers record for the current step.
    pub recorder: RefCell<Recorder>,
    /// The read buffer every client reads into, one at a time ([`READ_BUF`] bytes).
    read_buf: RefCell<Box<[u8]>>,
    /// The first [`MAX_KEPT_ERRORS`] errors (disconnects, refusals), for the report.
    pub errors: RefCell<Vec<String>>,
    /// All errors, kept or not.
    pub error_count: Cell<u64>,
    /// Set when loadgen itself is closing the connections: EOF is then expected.
    pub stopping: Cell<bool>,
    /// Clients whose read loop is still running.
    pub live_clients: Cell<usize>,
    /// The server's version from `004 RPL_MYINFO`, seen by the first client.
    pub server_version: RefCell<Option<String>>,
    /// The first thread's sample of the server's and loadgen's usage over the last
    /// step's measured window, taken when the step's figures are merged.
    pub window_usage: Cell<Option<(Option<ServerUsage>, ProcUsage)>>,
}

impl RunShared {
    pub fn new(team: Arc<Team>, thread: usize) -> Self {
        Self {
            start_ns: team.start_ns,
            team,
            thread,
            recorder: RefCell::new(Recorder::default()),
            read_buf: RefCell::new(vec![0u8; READ_BUF].into_boxed_slice()),
            errors: RefCell::new(Vec::new()),
            error_count: Cell::new(0),
            stopping: Cell::new(false),
            live_clients: Cell::new(0),
            server_version: RefCell::new(None),
            window_usage: Cell::new(None),
        }
    }

    /// Nanoseconds since the run's start.
    pub fn now_rel(&self) -> u64 {
        now_ns().saturating_sub(self.start_ns)
    }

    /// Publishes this thread's counters for the team (progress, grace).
    pub fn publish(&self, recorder: &Recorder) {
        self.team
            .publish(self.thread, &recorder.counts, recorder.late_total);
    }

    /// Records an error for the report.
    pub fn error(&self, message: String) {
        self.error_count.set(self.error_count.get() + 1);
        let mut errors = self.errors.borrow_mut();
        if errors.len() < MAX_KEPT_ERRORS {
            errors.push(message);
        }
    }
}

/// A client's socket and its unsent output.
///
/// Written by the pacer (benchmark messages) and by the client's own read loop (PONG,
/// registration); never blocks either: what the kernel does not take waits in `unsent`
/// and a flush task finishes it when the socket is writable.
pub struct Conn {
    /// The client's number (0..C).
    pub index: usize,
    /// The socket's write side; the read side belongs to the client's read loop.
    stream: WriteSide,
    /// Bytes queued and not yet written, bounded by [`MAX_UNSENT`].
    unsent: RefCell<Vec<u8>>,
    /// True while a flush task waits for writability; it owns draining `unsent`.
    flushing: Cell<bool>,
    /// Set on a write error or overflow: further sends are refused.
    pub broken: Cell<bool>,
    /// The pacer's mark: queued in this batch, flush at the batch's end.
    pub dirty: Cell<bool>,
    /// `--websocket`: each queued line goes out as one WebSocket frame.
    websocket: bool,
}

impl Conn {
    fn new(index: usize, stream: WriteSide, websocket: bool) -> Self {
        Self {
            index,
            stream,
            websocket,
            unsent: RefCell::new(Vec::new()),
            flushing: Cell::new(false),
            broken: Cell::new(false),
            dirty: Cell::new(false),
        }
    }

    /// Queues `data` without writing. Returns false if the connection is broken or
    /// its unsent bytes would pass [`MAX_UNSENT`] (then it becomes broken).
    pub fn queue(&self, data: &[u8]) -> bool {
        if self.broken.get() {
            return false;
        }
        let mut unsent = self.unsent.borrow_mut();
        if unsent.len() + data.len() > MAX_UNSENT {
            self.broken.set(true);
            return false;
        }
        if self.websocket {
            crate::websocket::frame_lines(data, &mut unsent);
        } else {
            unsent.extend_from_slice(data);
        }
        true
    }

    /// Writes what is queued; leaves the rest to a flush task if the socket is full.
    /// Cost: one `write` syscall per call when data is queued.
    pub fn flush(self: &Rc<Self>) {
        if self.flushing.get() || self.broken.get() {
            return;
        }
        match self.write_unsent(None) {
            Ok(true) => {}
            Ok(false) => {
                self.flushing.set(true);
                tokio::task::spawn_local(flush_when_writable(self.clone()));
            }
            Err(_) => self.broken.set(true),
        }
    }

    /// Queues and flushes.
    pub fn send(self: &Rc<Self>, data: &[u8]) -> bool {
        let queued = self.queue(data);
        self.flush();
        queued
    }

    /// Writes as much of `unsent` as the socket takes. Ok(true) when all is written
    /// (and, over TLS, flushed out of the TLS session). A TLS write that cannot go on
    /// registers `cx`'s waker when given one (the flush task's), none otherwise.
    fn write_unsent(&self, cx: Option<&mut Context<'_>>) -> io::Result<bool> {
        let mut unsent = self.unsent.borrow_mut();
        let mut written = 0;
        let all_out = match &self.stream {
            WriteSide::Plain(stream) => {
                while written < unsent.len() {
                    match stream.try_write(&unsent[written..]) {
                        Ok(n) => written += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
                written == unsent.len()
            }
            WriteSide::Tls(stream) => {
                let mut noop = Context::from_waker(std::task::Waker::noop());
                let cx = cx.unwrap_or(&mut noop);
                let mut stream = stream.borrow_mut();
                let mut stream = Pin::new(&mut *stream);
                let mut blocked = false;
                while written < unsent.len() {
                    match stream.as_mut().poll_write(cx, &unsent[written..]) {
                        Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                        Poll::Ready(Ok(n)) => written += n,
                        Poll::Ready(Err(e)) => return Err(e),
                        Poll::Pending => {
                            blocked = true;
                            break;
                        }
                    }
                }
                // Records the TLS session still holds must reach the socket too.
                !blocked
                    && match stream.as_mut().poll_flush(cx) {
                        Poll::Ready(Ok(())) => true,
                        Poll::Ready(Err(e)) => return Err(e),
                        Poll::Pending => false,
                    }
            }
        };
        unsent.drain(..written);
        Ok(all_out && unsent.is_empty())
    }
}

/// A connection's write side: plain TCP, written with `try_write`; or TLS, through
/// tokio-rustls' `poll_write` and `poll_flush` (a `RefCell` because they need `&mut`;
/// borrowed only inside [`Conn::write_unsent`]).
pub enum WriteSide {
    Plain(OwnedWriteHalf),
    Tls(RefCell<WriteHalf<TlsStream<TcpStream>>>),
}

/// A connection's read side, owned by its read loop: plain TCP or TLS.
pub enum ReadSide {
    Plain(OwnedReadHalf),
    Tls(ReadHalf<TlsStream<TcpStream>>),
}

impl AsyncRead for ReadSide {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadSide::Plain(read) => Pin::new(read).poll_read(cx, buf),
            ReadSide::Tls(read) => Pin::new(read).poll_read(cx, buf),
        }
    }
}

/// Finishes writing a connection's unsent bytes as the socket drains.
async fn flush_when_writable(conn: Rc<Conn>) {
    let finished = match &conn.stream {
        WriteSide::Plain(stream) => loop {
            if let Err(e) = stream.writable().await {
                break Err(e);
            }
            match conn.write_unsent(None) {
                Ok(true) => break Ok(()),
                Ok(false) => continue,
                Err(e) => break Err(e),
            }
        },
        WriteSide::Tls(_) => {
            std::future::poll_fn(|cx| match conn.write_unsent(Some(cx)) {
                Ok(true) => Poll::Ready(Ok(())),
                Ok(false) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            })
            .await
        }
    };
    if finished.is_err() {
        conn.broken.set(true);
    }
    conn.flushing.set(false);
}

/// What one client is asked to do.
#[derive(Debug, Clone)]
pub struct ClientPlan {
    /// Client number (0..C).
    pub index: usize,
    /// Its unique nick, `lg<run id><index in base 36>` (fits ngircd's NICKLEN of 9).
    pub nick: String,
    /// The channel it joins, if any.
    pub channel: Option<String>,
    /// Senders in that channel: the size of its per-sender tracking table.
    pub senders_in_channel: u32,
    /// The server it connects to (one of `--addr`).
    pub addr: SocketAddr,
    /// Local address to connect from (spreads ports over loopback addresses).
    pub source_ip: Option<IpAddr>,
    /// Stops reading once set up, until the run closes (`idle --silent`): a member
    /// whose lines the server must queue.
    pub silent: bool,
}

/// Settings every client's setup shares.
pub struct SetupConfig {
    pub password: Option<String>,
    /// Connect over TLS with these settings (`--tls`).
    pub tls: Option<TlsClient>,
    /// Speak IRC over WebSocket (`--websocket`), inside TLS with `--tls`.
    pub websocket: bool,
    /// The AUTHENTICATE lines of a SASL PLAIN login (`--sasl`), sent before NICK.
    pub sasl: Option<String>,
    /// Client `i` starts `i` times this after the run (`--connect-rate`).
    pub pace: Option<Duration>,
    /// Longest setup of one client, gate wait excluded.
    pub timeout: Duration,
}

/// A client's setup result, reported to the coordinator.
pub struct SetupOutcome {
    pub index: usize,
    pub result: Result<Ready, String>,
}

/// A client that is registered and in its channel.
pub struct Ready {
    pub conn: Rc<Conn>,
    /// ns from starting to connect to `001 RPL_WELCOME`.
    pub welcome_ns: u64,
    /// When the client finished its setup (ns since run start).
    pub done_at: u64,
    /// When the client started to connect (ns since run start).
    pub started_at: u64,
}

/// How often a silent client looks whether the run is closing (then it reads again,
/// so its QUIT is answered).
const SILENT_POLL: Duration = Duration::from_millis(50);

/// One client's life: setup under the gate, report, then read until the end (a
/// silent client: from when the run closes).
pub async fn run_client(
    shared: Rc<RunShared>,
    setup: Rc<SetupConfig>,
    plan: ClientPlan,
    outcomes: mpsc::UnboundedSender<SetupOutcome>,
) {
    let index = plan.index;
    let mut reader = Reader::new(&plan);
    if let Some(pace) = setup.pace {
        tokio::time::sleep(pace.mul_f64(index as f64)).await;
    }
    let permit = match shared.team.setup_gate.acquire().await {
        Ok(permit) => permit,
        Err(_) => return,
    };
    let started_at = shared.now_rel();
    let result = tokio::time::timeout(setup.timeout, set_up(&shared, &setup, &plan, &mut reader))
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "not set up within {:?}: {}",
                setup.timeout,
                reader.progress()
            ))
        });
    drop(permit);
    let (conn, mut socket) = match result {
        Ok(set_up) => set_up,
        Err(e) => {
            let _ = outcomes.send(SetupOutcome {
                index,
                result: Err(e),
            });
            return;
        }
    };
    let ready = Ready {
        conn: conn.clone(),
        welcome_ns: reader
            .state
            .welcome_at
            .unwrap_or(started_at)
            .saturating_sub(started_at),
        done_at: shared.now_rel(),
        started_at,
    };
    if outcomes
        .send(SetupOutcome {
            index,
            result: Ok(ready),
        })
        .is_err()
    {
        return;
    }
    shared.live_clients.set(shared.live_clients.get() + 1);
    while plan.silent && !shared.stopping.get() {
        tokio::time::sleep(SILENT_POLL).await;
    }
    let end = loop {
        if let Err(e) = reader.read_some(&mut socket, &conn, &shared).await {
            break e;
        }
        if let Some(e) = reader.state.fatal.take() {
            break e;
        }
    };
    shared.live_clients.set(shared.live_clients.get() - 1);
    if !shared.stopping.get() {
        shared.error(format!(
            "client {} ({}) disconnected: {end}",
            index, plan.nick
        ));
    }
}

/// Connects, registers and joins; returns the connection and its read side once the
/// server confirmed the join with 366 (or registration ended, for clients without a
/// channel).
async fn set_up(
    shared: &RunShared,
    setup: &SetupConfig,
    plan: &ClientPlan,
    reader: &mut Reader,
) -> Result<(Rc<Conn>, ReadSide), String> {
    let stream = connect(plan.addr, plan.source_ip)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", plan.addr))?;
    let host = plan.addr.to_string();
    let (mut socket, write) = match &setup.tls {
        None => {
            let mut stream = stream;
            if setup.websocket {
                crate::websocket::upgrade(&mut stream, &host).await?;
            }
            let (read, write) = stream.into_split();
            (ReadSide::Plain(read), WriteSide::Plain(write))
        }
        Some(tls) => {
            let mut stream = tls
                .connector
                .connect(tls.server_name(plan.addr), stream)
                .await
                .map_err(|e| format!("TLS handshake with {} failed: {e}", plan.addr))?;
            if setup.websocket {
                crate::websocket::upgrade(&mut stream, &host).await?;
            }
            let (read, write) = tokio::io::split(stream);
            (ReadSide::Tls(read), WriteSide::Tls(RefCell::new(write)))
        }
    };
    let conn = Rc::new(Conn::new(plan.index, write, setup.websocket));
    if setup.websocket {
        reader.deframer = Some(crate::websocket::Deframer::default());
    }
    let mut hello = String::new();
    if let Some(authenticate) = &setup.sasl {
        // Pipelined: the server takes the lines in order, and holds registration
        // until CAP END, which it reads only after answering the login.
        hello.push_str("CAP REQ :sasl\r\nAUTHENTICATE PLAIN\r\n");
        hello.push_str(authenticate);
        hello.push_str("CAP END\r\n");
    }
    if let Some(password) = &setup.password {
        hello.push_str(&format!("PASS {password}\r\n"));
    }
    hello.push_str(&format!("NICK {0}\r\nUSER {0} 0 * :loadgen\r\n", plan.nick));
    conn.send(hello.as_bytes());
    while !(reader.state.welcomed
        && reader.state.motd_done
        && (setup.sasl.is_none() || reader.state.logged_in))
    {
        reader.read_some(&mut socket, &conn, shared).await?;
        if let Some(e) = reader.state.fatal.take() {
            return Err(e);
        }
    }
    if let Some(channel) = &plan.channel {
        conn.send(format!("JOIN {channel}\r\n").as_bytes());
        while !reader.state.joined {
            reader.read_some(&mut socket, &conn, shared).await?;
            if let Some(e) = reader.state.fatal.take() {
                return Err(e);
            }
        }
    }
    Ok((conn, socket))
}

/// Opens a TCP connection with Nagle off (benchmark lines must leave at once).
async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A client's read side: the line splitter and what the lines told so far.
struct Reader {
    splitter: LineSplitter,
    /// `--websocket`: takes the frames off before the splitter sees the lines.
    deframer: Option<crate::websocket::Deframer>,
    state: ReaderState,
}

/// What a client learnt from the server's lines.
struct ReaderState {
    /// One tracker per sender of the client's channel, indexed by the sender's slot.
    tracks: Vec<SenderTrack>,
    /// The channel being joined, to recognise its 366.
    channel: Option<String>,
    welcomed: bool,
    /// When 001 arrived (ns since run start).
    welcome_at: Option<u64>,
    /// 376 or 422 arrived: registration output is complete.
    motd_done: bool,
    /// 903 arrived: the SASL login (`--sasl`) succeeded.
    logged_in: bool,
    joined: bool,
    /// An error that ends this client (refusal, ERROR from the server).
    fatal: Option<String>,
}

impl Reader {
    fn new(plan: &ClientPlan) -> Self {
        Self {
            splitter: LineSplitter::default(),
            deframer: None,
            state: ReaderState {
                tracks: vec![SenderTrack::default(); plan.senders_in_channel as usize],
                channel: plan.channel.clone(),
                welcomed: false,
                welcome_at: None,
                motd_done: false,
                logged_in: false,
                joined: false,
                fatal: None,
            },
        }
    }

    /// Where setup got to, for a timeout message.
    fn progress(&self) -> &'static str {
        match (self.state.welcomed, self.state.motd_done, self.state.joined) {
            (false, _, _) => "no 001 RPL_WELCOME",
            (true, false, _) => "no end of MOTD (376 or 422)",
            (true, true, false) => "no 366 end of NAMES for its JOIN",
            _ => "set up",
        }
    }

    /// Waits for data, reads one chunk (up to [`READ_BUF`]) into the shared buffer
    /// and handles its lines. Err when the connection is closed or fails.
    ///
    /// Reads through `AsyncRead::poll_read` rather than `readable()` + `try_read`:
    /// tokio then treats a short read as "drained" and skips the extra `recv` that
    /// would only return EAGAIN, one syscall saved per wake-up. The shared buffer is
    /// borrowed only inside the poll and the processing that follows it, with no
    /// `.await` between them, so no other client can overwrite it meanwhile.
    async fn read_some(
        &mut self,
        socket: &mut ReadSide,
        conn: &Rc<Conn>,
        shared: &RunShared,
    ) -> Result<(), String> {
        let n = std::future::poll_fn(|cx| {
            let mut buf = shared.read_buf.borrow_mut();
            let mut read_buf = ReadBuf::new(&mut buf[..]);
            std::pin::Pin::new(&mut *socket)
                .poll_read(cx, &mut read_buf)
                .map_ok(|()| read_buf.filled().len())
        })
        .await
        .map_err(|e| format!("read failed: {e}"))?;
        if n == 0 {
            return Err(match self.state.fatal.take() {
                Some(reason) => reason,
                None => "connection closed by the server".to_string(),
            });
        }
        let buf = shared.read_buf.borrow();
        let now_rel = shared.now_rel();
        let mut recorder = shared.recorder.borrow_mut();
        let state = &mut self.state;
        let mut on_line = |line: &[u8]| state.handle(line, now_rel, conn, shared, &mut recorder);
        match &mut self.deframer {
            None => self.splitter.feed(&buf[..n], on_line),
            Some(deframer) => {
                let splitter = &mut self.splitter;
                deframer.feed(&buf[..n], |bytes| splitter.feed(bytes, &mut on_line));
            }
        }
        shared.publish(&recorder);
        Ok(())
    }
}

impl ReaderState {
    /// Handles one line. The benchmark delivery is the hot path: classify, look up the
    /// sender's tracker, record. Everything else happens a few times per client.
    fn handle(
        &mut self,
        line: &[u8],
        now_rel: u64,
        conn: &Rc<Conn>,
        shared: &RunShared,
        recorder: &mut Recorder,
    ) {
        match classify(line) {
            Line::Bench(payload) => match self.tracks.get_mut(payload.slot as usize) {
                Some(track) => recorder.record(track, &payload, now_rel),
                None => recorder.counts.stale += 1,
            },
            Line::Ping(token) => {
                let mut pong = Vec::with_capacity(token.len() + 7);
                pong.extend_from_slice(b"PONG ");
                pong.extend_from_slice(token);
                pong.extend_from_slice(b"\r\n");
                conn.send(&pong);
            }
            Line::Numeric(code, params) => self.numeric(code, params, now_rel, shared),
            Line::Error(reason) => {
                if !shared.stopping.get() {
                    self.fatal = Some(format!(
                        "server sent ERROR: {}",
                        String::from_utf8_lossy(reason)
                    ));
                }
            }
            Line::Other => {}
        }
    }

    fn numeric(&mut self, code: u16, params: &[u8], now_rel: u64, shared: &RunShared) {
        let words = || params.split(|&b| b == b' ').filter(|w| !w.is_empty());
        match code {
            1 => {
                self.welcomed = true;
                self.welcome_at = Some(now_rel);
            }
            4 => {
                let mut version = shared.server_version.borrow_mut();
                if version.is_none() {
                    if let Some(v) = words().nth(2) {
                        *version = Some(String::from_utf8_lossy(v).into_owned());
                    }
                }
            }
            376 | 422 => self.motd_done = true,
            903 => self.logged_in = true,
            366 => {
                let channel = words().nth(1);
                if let (Some(got), Some(want)) = (channel, &self.channel) {
                    if got.eq_ignore_ascii_case(want.as_bytes()) {
                        self.joined = true;
                    }
                }
            }
            // Refusals that end this client: nick, password, join, or server full.
            // And failed logins (--sasl).
            403 | 405 | 432 | 433 | 436 | 437 | 464 | 465 | 471 | 473 | 474 | 475 | 477 | 902
            | 904 | 905 | 906 | 908 => {
                self.fatal = Some(format!(
                    "server refused with {code:03}: {}",
                    String::from_utf8_lossy(params)
                ));
            }
            _ => {}
        }
    }
}
