//! One IRC session: connect, register (with nick fallbacks), the reader thread that
//! shows incoming traffic and answers PING, typed lines turned into IRC lines, a clean
//! QUIT, and reconnecting (with backoff, rejoining the channels) when the server drops
//! the link.
//!
//! Concurrency: plain std threads and a blocking `TcpStream` (under TLS when asked,
//! see [`crate::transport`]), no async runtime. A chat
//! client has exactly two things to wait on, the keyboard and the socket, and each
//! gets a thread that simply blocks: the main thread reads input (rustyline's
//! `readline` is blocking anyway), the reader thread reads the socket. They share a
//! [`Link`]. Neither ever waits for the other, except the bounded wait after QUIT.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::cli::{ServerAddr, TlsMode};
use crate::clock;
use crate::command::{translate, Action, Place};
use crate::complete::NickList;
use crate::error::ClientError;
use crate::irc::{format_line, numeric, Message};
use crate::nick;
use crate::render::{render, View};
use crate::terminal::{exit_with, Output};
use crate::transport::{self, ReadHalf, WriteHalf};

/// How long one connection attempt may take before we try the next address or fail.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server may take to welcome us (001) after we send NICK and USER.
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one write may block: a server that stops reading cannot freeze the client.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// After QUIT, how long we wait for the server to close the link before exiting anyway.
pub const QUIT_GRACE: Duration = Duration::from_secs(2);
/// Longest incoming line kept: 8191 bytes of tags and message, as IRCv3 allows, plus
/// slack. Longer lines are dropped up to their line end, so a server cannot make the
/// client grow a buffer without bound.
const MAX_INCOMING_LINE: u64 = 8192 + 512;

/// Sent as USER's realname.
const REALNAME: &str = "ringchat-client";

/// First wait before reconnecting; doubled after each failed attempt up to
/// [`RECONNECT_MAX_DELAY`], so a server that is down for long is not hammered.
const RECONNECT_FIRST_DELAY: Duration = Duration::from_secs(1);
/// Longest wait between two reconnection attempts.
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(60);

/// What the input loop and the reader thread share. Created at the first connection,
/// kept in an `Arc` by both; it outlives reconnections (the write side is replaced)
/// and is dropped when the process exits.
pub struct Link {
    /// The socket's write side; `None` while reconnecting. Whole lines are written
    /// under the lock, so the PONGs of the reader thread never interleave with the
    /// user's lines.
    writer: Mutex<Option<WriteHalf>>,
    /// Who we are and where typed lines go; updated from the server's replies.
    state: Mutex<ChatState>,
    /// Set just before QUIT is sent: from then on, the server closing the link is the
    /// expected end, not an error.
    quitting: AtomicBool,
    /// Registered on the current connection: typed lines may be sent. False while
    /// reconnecting, so a line typed then is refused with a message, not sent before
    /// registration.
    online: AtomicBool,
    /// The reader thread reconnects when the link drops (set when it starts): a failed
    /// send then refuses the line instead of ending the session.
    reconnects: AtomicBool,
}

impl Link {
    /// A link writing to `writer`, with no channels yet, not online until registered.
    pub fn new(writer: WriteHalf, nick: &str, nicks: NickList) -> Arc<Link> {
        Arc::new(Link {
            writer: Mutex::new(Some(writer)),
            state: Mutex::new(ChatState::new(nick, nicks)),
            quitting: AtomicBool::new(false),
            online: AtomicBool::new(false),
            reconnects: AtomicBool::new(false),
        })
    }

    /// Sends one line (CRLF added). Lines that join or part channels are also noted in
    /// the state, so that text typed right after `/join` goes to the new channel. A
    /// failed write, or no connection, is [`ClientError::ServerClosed`].
    pub fn send(&self, line: &str) -> Result<(), ClientError> {
        self.write_line(line)
            .map_err(|err| ClientError::ServerClosed(err.to_string()))
    }

    fn write_line(&self, line: &str) -> io::Result<()> {
        if let Some(msg) = Message::parse(line) {
            self.state().observe_sent(&msg);
        }
        let mut wire = Vec::with_capacity(line.len() + 2);
        wire.extend_from_slice(line.as_bytes());
        wire.extend_from_slice(b"\r\n");
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(writer) = writer.as_mut() else {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "not connected"));
        };
        writer.write_all(&wire)?;
        writer.flush()
    }

    /// Replaces the write side with a new connection's (`None`: the link is down).
    fn attach(&self, writer: Option<WriteHalf>) {
        *self.writer.lock().unwrap_or_else(PoisonError::into_inner) = writer;
    }

    /// The chat state, locked briefly; a panic elsewhere does not make it unusable.
    pub fn state(&self) -> MutexGuard<'_, ChatState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Who we are, which channels we are in and who we talk to. Changed only by
/// [`ChatState::observe`] (server replies), [`ChatState::observe_sent`] (our JOINs),
/// `/query` and `/list`.
#[derive(Debug, Clone)]
pub struct ChatState {
    /// Our nick as the server knows it.
    pub nick: String,
    /// Channels we are in or are joining, oldest first; the last is the current one.
    channels: Vec<String>,
    /// The open query's nick (`/query`): typed text goes there instead.
    pub query: Option<String>,
    /// The filter of the `/list` in progress: 322 replies that do not match are not
    /// shown. Cleared by its 323.
    pub list_filter: Option<String>,
    /// Nicks seen, for Tab completion (shared with the line editor).
    nicks: NickList,
}

impl ChatState {
    /// A state with no channels yet.
    pub fn new(nick: &str, nicks: NickList) -> ChatState {
        ChatState {
            nick: nick.to_string(),
            channels: Vec::new(),
            query: None,
            list_filter: None,
            nicks,
        }
    }

    /// The channel typed channel commands go to: the most recently joined channel
    /// still joined.
    pub fn current_channel(&self) -> Option<&str> {
        self.channels.last().map(String::as_str)
    }

    /// The channel and the open query, for translating a typed line.
    pub fn place(&self) -> Place<'_> {
        Place {
            channel: self.current_channel(),
            query: self.query.as_deref(),
        }
    }

    /// Makes `channel` the current one, if we are in it (the full-screen mode shows
    /// its window); ends an open query.
    pub fn focus_channel(&mut self, channel: &str) {
        if self
            .channels
            .iter()
            .any(|c| c.eq_ignore_ascii_case(channel))
        {
            self.make_current(channel);
        }
        self.query = None;
    }

    /// The channels we are in, oldest first (rejoined in this order after a
    /// reconnection, so the current one stays current).
    pub fn channels(&self) -> &[String] {
        &self.channels
    }

    /// Notes a line we send. The server handles our lines in order, so the state can
    /// change at once: a JOIN makes its channels current (what we type next lands
    /// there; a failed join is undone by the error reply in [`ChatState::observe`]),
    /// a PART forgets its channels (what we type next goes to the previous channel).
    pub fn observe_sent(&mut self, msg: &Message) {
        let channels = msg.param(0).split(',').filter(|c| !c.is_empty());
        match msg.command.as_str() {
            "JOIN" if msg.param(0) == "0" => self.channels.clear(),
            "JOIN" => channels.for_each(|channel| self.make_current(channel)),
            "PART" => channels.for_each(|channel| self.forget(channel)),
            _ => {}
        }
    }

    /// Follows a message from the server: our nick changes, our joins, parts, kicks,
    /// failed joins, the end of a `/list`, and the nicks worth completing.
    pub fn observe(&mut self, msg: &Message) {
        let from_us = msg
            .source_nick()
            .is_some_and(|nick| nick.eq_ignore_ascii_case(&self.nick));
        self.nicks.observe(msg);
        match msg.command.as_str() {
            numeric::RPL_LISTEND => self.list_filter = None,
            numeric::RPL_WELCOME => self.nick = msg.param(0).to_string(),
            "NICK" if from_us => self.nick = msg.param(0).to_string(),
            "JOIN" if from_us => self.make_current(msg.param(0)),
            "PART" if from_us => self.forget(msg.param(0)),
            "KICK" if msg.param(1).eq_ignore_ascii_case(&self.nick) => self.forget(msg.param(0)),
            numeric::ERR_NOSUCHCHANNEL
            | numeric::ERR_TOOMANYCHANNELS
            | numeric::ERR_CHANNELISFULL
            | numeric::ERR_INVITEONLYCHAN
            | numeric::ERR_BANNEDFROMCHAN
            | numeric::ERR_BADCHANNELKEY
            | numeric::ERR_BADCHANMASK => self.forget(msg.param(1)),
            _ => {}
        }
    }

    fn make_current(&mut self, channel: &str) {
        self.forget(channel);
        self.channels.push(channel.to_string());
    }

    fn forget(&mut self, channel: &str) {
        self.channels.retain(|c| !c.eq_ignore_ascii_case(channel));
    }
}

/// Opens the connection, trying each address the host resolves to, and with `tls`
/// completes the TLS handshake; a refused certificate is a connection failure.
pub fn connect(
    server: &ServerAddr,
    tls: Option<TlsMode>,
) -> Result<(ReadHalf, WriteHalf), ClientError> {
    let name = server.to_string();
    let stream = connect_tcp(server)?;
    let halves = match tls {
        None => transport::plain(stream),
        Some(mode) => transport::tls(stream, &server.host, mode, CONNECT_TIMEOUT),
    };
    halves.map_err(|err| ClientError::connect(&name, &err))
}

/// Opens the TCP connection, trying each address the host resolves to.
fn connect_tcp(server: &ServerAddr) -> Result<TcpStream, ClientError> {
    let name = server.to_string();
    let addrs = (server.host.as_str(), server.port)
        .to_socket_addrs()
        .map_err(|err| ClientError::connect(&name, &err))?;
    let mut last_error = io::Error::new(io::ErrorKind::NotFound, "no address for host");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(stream) => {
                stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
                return Ok(stream);
            }
            Err(err) => last_error = err,
        }
    }
    Err(ClientError::connect(&name, &last_error))
}

/// Who to register as; kept to register again after a reconnection.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The nick we want; fallbacks are derived from it on 433.
    pub nick: String,
    /// USER's user name.
    pub user: String,
    /// Sent with PASS first, when set.
    pub password: Option<String>,
}

/// Where and how to connect again when the server drops the link.
#[derive(Debug, Clone)]
pub struct Reconnect {
    pub server: ServerAddr,
    pub tls: Option<TlsMode>,
    pub identity: Identity,
    /// False with `--no-reconnect`: a dropped link ends the client (exit 4).
    pub enabled: bool,
}

/// A registered session: the shared link and the socket's buffered read side.
pub struct Session {
    /// Shared with the reader thread once it starts.
    pub link: Arc<Link>,
    /// The read side; buffered bytes read during registration are kept.
    reader: BufReader<ReadHalf>,
}

/// Registers a first connection: creates the link on its write side and registers
/// (see [`register_on`]).
pub fn register(
    (read, write): (ReadHalf, WriteHalf),
    me: &Identity,
    nicks: NickList,
    output: &Output,
) -> Result<Session, ClientError> {
    let link = Link::new(write, &me.nick, nicks);
    let reader = register_on(&link, read, me, output)?;
    Ok(Session { link, reader })
}

/// Registers on the connection whose write side `link` has: PASS, NICK, USER, then
/// waits for 001, answering PING, trying the next fallback nick on 433 and showing
/// everything else the server says. Returns the buffered read side.
fn register_on(
    link: &Link,
    read: ReadHalf,
    me: &Identity,
    output: &Output,
) -> Result<BufReader<ReadHalf>, ClientError> {
    let mut reader = BufReader::new(read);
    if let Some(password) = &me.password {
        link.send(&format_line("PASS", &[password]))?;
    }
    let mut attempt = 0;
    let mut tried = vec![me.nick.clone()];
    link.state().nick = me.nick.clone();
    link.send(&format_line("NICK", &[&me.nick]))?;
    link.send(&format_line("USER", &[&me.user, "0", "*", REALNAME]))?;

    let deadline = Instant::now() + REGISTRATION_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ClientError::RegistrationTimeout(
                REGISTRATION_TIMEOUT.as_secs(),
            ));
        }
        reader.get_ref().set_read_timeout(Some(left))?;
        let line = match read_line(&mut reader) {
            Ok(Some(line)) => line,
            Ok(None) => return Err(ClientError::ServerClosed("connection closed".into())),
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(ClientError::RegistrationTimeout(
                    REGISTRATION_TIMEOUT.as_secs(),
                ));
            }
            Err(err) => return Err(ClientError::ServerClosed(err.to_string())),
        };
        let Some(msg) = Message::parse(&line) else {
            continue;
        };
        match msg.command.as_str() {
            "PING" => link.send(&format_line("PONG", &[msg.param(0)]))?,
            "ERROR" => return Err(ClientError::ServerClosed(msg.last_param().to_string())),
            numeric::ERR_NICKNAMEINUSE
            | numeric::ERR_NICKCOLLISION
            | numeric::ERR_UNAVAILRESOURCE => {
                attempt += 1;
                let Some(next) = nick::candidate(&me.nick, attempt) else {
                    return Err(ClientError::NickInUse(tried.join(", ")));
                };
                output.show(&format!(
                    "-- nickname {} is taken, trying {next}",
                    msg.param(1)
                ));
                link.state().nick = next.clone();
                link.send(&format_line("NICK", &[&next]))?;
                tried.push(next);
            }
            numeric::ERR_ERRONEUSNICKNAME => {
                return Err(ClientError::NickRejected(format!(
                    "{}: {}",
                    msg.param(1),
                    msg.last_param()
                )));
            }
            _ => {
                let welcome = msg.command == numeric::RPL_WELCOME;
                show_incoming(link, output, &msg);
                if welcome {
                    reader.get_ref().set_read_timeout(None)?;
                    link.online.store(true, Ordering::SeqCst);
                    return Ok(reader);
                }
            }
        }
    }
}

impl Session {
    /// Starts the reader thread. It shows incoming traffic and answers PING until the
    /// link ends. If we were quitting it then signals the returned receiver; otherwise
    /// the server dropped us: it reconnects (see [`reconnect`]), or with reconnection
    /// off ends the process with "server closed the link".
    pub fn start_reader(
        self,
        output: Output,
        again: Reconnect,
    ) -> io::Result<(Arc<Link>, Receiver<()>)> {
        let (closed_tx, closed_rx) = mpsc::channel();
        let link = Arc::clone(&self.link);
        link.reconnects.store(again.enabled, Ordering::SeqCst);
        thread::Builder::new()
            .name("irc-reader".into())
            .spawn(move || read_until_closed(self, &output, &again, closed_tx))?;
        Ok((link, closed_rx))
    }
}

/// The reader thread's body; see [`Session::start_reader`].
fn read_until_closed(mut session: Session, output: &Output, again: &Reconnect, closed: Sender<()>) {
    loop {
        let reason = read_connection(&mut session, output);
        session.link.online.store(false, Ordering::SeqCst);
        session.link.attach(None);
        if session.link.quitting.load(Ordering::SeqCst) {
            let _ = closed.send(());
            return;
        }
        if !again.enabled {
            exit_with(ClientError::ServerClosed(reason));
        }
        output.show(&format!("!! server closed the link: {reason}"));
        session.reader = reconnect(&session.link, output, again);
    }
}

/// Reads one connection until it ends; why it ended.
fn read_connection(session: &mut Session, output: &Output) -> String {
    loop {
        let line = match read_line(&mut session.reader) {
            Ok(Some(line)) => line,
            Ok(None) => return "connection closed".to_string(),
            Err(err) => return err.to_string(),
        };
        let Some(msg) = Message::parse(&line) else {
            continue;
        };
        match msg.command.as_str() {
            // A failed PONG means the link is going down; the next read tells us why.
            "PING" => {
                let _ = session.link.send(&format_line("PONG", &[msg.param(0)]));
            }
            "ERROR" => return msg.last_param().to_string(),
            _ => show_incoming(&session.link, output, &msg),
        }
    }
}

/// The wait before attempt `attempt` (1-based) to reconnect: 1 s, 2 s, 4 s... up to
/// [`RECONNECT_MAX_DELAY`].
fn reconnect_delay(attempt: u32) -> Duration {
    RECONNECT_FIRST_DELAY
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(RECONNECT_MAX_DELAY)
}

/// Connects and registers again until it works, waiting [`reconnect_delay`] before
/// each attempt, then rejoins the channels we were in (oldest first, so the current
/// one stays current). Returns the new read side.
fn reconnect(link: &Link, output: &Output, again: &Reconnect) -> BufReader<ReadHalf> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let delay = reconnect_delay(attempt);
        output.show(&format!(
            "-- reconnecting to {} in {} s (attempt {attempt})",
            again.server,
            delay.as_secs()
        ));
        thread::sleep(delay);
        let (read, write) = match connect(&again.server, again.tls) {
            Ok(halves) => halves,
            Err(err) => {
                output.show(&format!("!! {err}"));
                continue;
            }
        };
        link.attach(Some(write));
        // Register as the nick we had (a /nick since the start included).
        let identity = Identity {
            nick: link.state().nick.clone(),
            ..again.identity.clone()
        };
        match register_on(link, read, &identity, output) {
            Ok(reader) => {
                let channels = link.state().channels().join(",");
                output.show("-- reconnected");
                if !channels.is_empty() {
                    let _ = link.send(&format_line("JOIN", &[&channels]));
                }
                return reader;
            }
            Err(err) => {
                link.attach(None);
                output.show(&format!("!! {err}"));
            }
        }
    }
}

/// Renders one message from the server as seen now, then lets the state follow it.
fn show_incoming(link: &Link, output: &Output, msg: &Message) {
    let (shown, own_nick) = {
        let mut state = link.state();
        let clock = clock::now_hhmm();
        let view = View {
            own_nick: &state.nick,
            current_channel: state.current_channel(),
            clock: &clock,
            list_filter: state.list_filter.as_deref(),
        };
        let shown = render(msg, &view);
        let own_nick = state.nick.clone();
        state.observe(msg);
        (shown, own_nick)
    };
    output.show_message(msg, shown.as_deref(), &own_nick);
}

/// What the input loop should do after one line.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    /// Read the next line.
    Continue,
    /// The user asked to quit: send this QUIT line and stop.
    Quit(String),
}

/// Handles one typed line: translate it, send what it means, show our own messages.
/// While the link is down (reconnecting), lines for the server are refused with a
/// message instead; with reconnection off, a failed send ends the session.
pub fn handle_input(link: &Link, output: &Output, input: &str) -> Result<Flow, ClientError> {
    let action = {
        let state = link.state();
        translate(input, state.place())
    };
    let lines = match action {
        Action::Send { lines, echo } => Some((lines, echo)),
        Action::Query { nick, lines } => {
            match &nick {
                Some(nick) => output.show(&format!(
                    "-- talking to {nick}: typed text goes to {nick} (/query alone ends it)"
                )),
                None => output.show("-- query ended: typed text goes to the channel"),
            }
            link.state().query = nick;
            Some((lines, true))
        }
        Action::List { filter } => {
            link.state().list_filter = filter;
            Some((vec!["LIST".to_string()], false))
        }
        Action::Quit { line } => return Ok(Flow::Quit(line)),
        Action::Show(text) => {
            output.show(&text);
            None
        }
        Action::Error(text) => {
            output.show(&format!("!! {text}"));
            None
        }
        Action::Nothing => None,
    };
    let Some((lines, echo)) = lines else {
        return Ok(Flow::Continue);
    };
    if !lines.is_empty() && !link.online.load(Ordering::SeqCst) {
        output.show("!! not connected (reconnecting): not sent");
        return Ok(Flow::Continue);
    }
    for line in lines {
        if let Err(err) = link.send(&line) {
            if !link.reconnects.load(Ordering::SeqCst) {
                return Err(err);
            }
            output.show("!! not connected (reconnecting): not sent");
            break;
        }
        if echo {
            show_own(link, output, &line);
        }
    }
    Ok(Flow::Continue)
}

/// Shows a message we sent the way the server relays it to others.
fn show_own(link: &Link, output: &Output, line: &str) {
    let Some(mut msg) = Message::parse(line) else {
        return;
    };
    let nick = link.state().nick.clone();
    msg.prefix = Some(nick);
    show_incoming(link, output, &msg);
}

/// Quits: marks the link as quitting, sends `quit_line`, and waits (at most
/// [`QUIT_GRACE`]) for the server to close the link, so that everything sent before
/// has been handled. The caller then exits with 0 whatever happened.
pub fn quit(link: &Link, closed: &Receiver<()>, quit_line: &str) {
    link.quitting.store(true, Ordering::SeqCst);
    if link.send(quit_line).is_ok() {
        let _ = closed.recv_timeout(QUIT_GRACE);
    }
}

/// Reads one line (without its line end) as text; `None` at end of stream. Invalid
/// UTF-8 is replaced rather than refused: message text is bytes on IRC. A line longer
/// than [`MAX_INCOMING_LINE`] is dropped up to its end.
fn read_line(reader: &mut impl BufRead) -> io::Result<Option<String>> {
    loop {
        let mut line = Vec::new();
        let read = Read::by_ref(reader)
            .take(MAX_INCOMING_LINE)
            .read_until(b'\n', &mut line)?;
        if read == 0 {
            return Ok(None);
        }
        if line.ends_with(b"\n") || (read as u64) < MAX_INCOMING_LINE {
            let text = String::from_utf8_lossy(&line);
            return Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()));
        }
        if !skip_past_newline(reader)? {
            return Ok(None);
        }
    }
}

/// Discards input up to and including the next `\n`; `false` if the stream ended first.
fn skip_past_newline(reader: &mut impl BufRead) -> io::Result<bool> {
    loop {
        let (found, used) = {
            let available = reader.fill_buf()?;
            if available.is_empty() {
                return Ok(false);
            }
            match available.iter().position(|&b| b == b'\n') {
                Some(at) => (true, at + 1),
                None => (false, available.len()),
            }
        };
        reader.consume(used);
        if found {
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(line: &str) -> Message {
        Message::parse(line).expect("test line parses")
    }

    #[test]
    fn joins_make_channels_current_and_parts_fall_back() {
        let mut state = ChatState::new("me", NickList::default());
        assert_eq!(state.current_channel(), None);
        state.observe_sent(&msg("JOIN #lobby"));
        assert_eq!(state.current_channel(), Some("#lobby"));
        state.observe(&msg(":me!~me@h JOIN #lobby"));
        state.observe_sent(&msg("JOIN #a,#b"));
        assert_eq!(state.current_channel(), Some("#b"));
        state.observe(&msg(":me!~me@h PART #b :bye"));
        assert_eq!(state.current_channel(), Some("#a"));
        state.observe(&msg(":op!~o@h KICK #a me :out"));
        assert_eq!(state.current_channel(), Some("#lobby"));
        state.observe_sent(&msg("PART #lobby :bye"));
        assert_eq!(state.current_channel(), None);
        state.observe_sent(&msg("JOIN #x,#y"));
        state.observe_sent(&msg("JOIN 0"));
        assert_eq!(state.current_channel(), None);
    }

    #[test]
    fn others_do_not_move_us() {
        let mut state = ChatState::new("me", NickList::default());
        state.observe_sent(&msg("JOIN #lobby"));
        state.observe(&msg(":bob!~b@h JOIN #other"));
        state.observe(&msg(":bob!~b@h PART #lobby"));
        state.observe(&msg(":op!~o@h KICK #lobby bob"));
        state.observe(&msg(":bob!~b@h NICK rob"));
        assert_eq!(state.current_channel(), Some("#lobby"));
        assert_eq!(state.nick, "me");
    }

    #[test]
    fn failed_join_is_undone() {
        let mut state = ChatState::new("me", NickList::default());
        state.observe_sent(&msg("JOIN #lobby"));
        state.observe_sent(&msg("JOIN #secret"));
        state.observe(&msg(":irc 473 me #secret :Cannot join channel (+i)"));
        assert_eq!(state.current_channel(), Some("#lobby"));
    }

    #[test]
    fn nick_follows_welcome_and_own_changes() {
        let mut state = ChatState::new("me", NickList::default());
        state.observe(&msg(":irc 001 me_ :Welcome"));
        assert_eq!(state.nick, "me_");
        state.observe(&msg(":ME_!~me@h NICK :rob"));
        assert_eq!(state.nick, "rob");
    }

    #[test]
    fn read_line_splits_lines_and_drops_overlong_ones() {
        let long = "x".repeat(MAX_INCOMING_LINE as usize + 10);
        let input = format!("PING :a\r\n{long}\r\nPING :b\nlast");
        let mut reader = io::Cursor::new(input.into_bytes());
        assert_eq!(read_line(&mut reader).unwrap().as_deref(), Some("PING :a"));
        assert_eq!(read_line(&mut reader).unwrap().as_deref(), Some("PING :b"));
        assert_eq!(read_line(&mut reader).unwrap().as_deref(), Some("last"));
        assert_eq!(read_line(&mut reader).unwrap(), None);
    }

    #[test]
    fn read_line_replaces_invalid_utf8() {
        let mut reader = io::Cursor::new(b"PRIVMSG #c :caf\xe9\r\n".to_vec());
        assert_eq!(
            read_line(&mut reader).unwrap().as_deref(),
            Some("PRIVMSG #c :caf\u{fffd}")
        );
    }
}
