//! One IRC session over one TCP connection: connect, register (with nick fallbacks),
//! the reader thread that shows incoming traffic and answers PING, typed lines turned
//! into IRC lines, and a clean QUIT.
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
use crate::command::{translate, Action};
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

/// What the input loop and the reader thread share. Created after connecting, kept in
/// an `Arc` by both; dropped when the process exits.
pub struct Link {
    /// The socket's write side. Whole lines are written under the lock, so the PONGs
    /// of the reader thread never interleave with the user's lines.
    writer: Mutex<WriteHalf>,
    /// Who we are and where typed lines go; updated from the server's replies.
    state: Mutex<ChatState>,
    /// Set just before QUIT is sent: from then on, the server closing the link is the
    /// expected end, not an error.
    quitting: AtomicBool,
}

impl Link {
    /// Sends one line (CRLF added). Lines that join or part channels are also noted in
    /// the state, so that text typed right after `/join` goes to the new channel. A
    /// failed write means the link is gone: [`ClientError::ServerClosed`].
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
        writer.write_all(&wire)?;
        writer.flush()
    }

    /// The chat state, locked briefly; a panic elsewhere does not make it unusable.
    pub fn state(&self) -> MutexGuard<'_, ChatState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Who we are and which channels we are in. Changed only by [`ChatState::observe`]
/// (server replies) and [`ChatState::observe_sent`] (our JOINs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatState {
    /// Our nick as the server knows it.
    pub nick: String,
    /// Channels we are in or are joining, oldest first; the last is the current one.
    channels: Vec<String>,
}

impl ChatState {
    /// A state with no channels yet.
    pub fn new(nick: &str) -> ChatState {
        ChatState {
            nick: nick.to_string(),
            channels: Vec::new(),
        }
    }

    /// Where typed text goes: the most recently joined channel still joined.
    pub fn current_channel(&self) -> Option<&str> {
        self.channels.last().map(String::as_str)
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
    /// and failed joins.
    pub fn observe(&mut self, msg: &Message) {
        let from_us = msg
            .source_nick()
            .is_some_and(|nick| nick.eq_ignore_ascii_case(&self.nick));
        match msg.command.as_str() {
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

/// Who to register as.
pub struct Identity<'a> {
    /// The nick we want; fallbacks are derived from it on 433.
    pub nick: &'a str,
    /// USER's user name.
    pub user: &'a str,
    /// Sent with PASS first, when set.
    pub password: Option<&'a str>,
}

/// A registered session: the shared link and the socket's buffered read side.
pub struct Session {
    /// Shared with the reader thread once it starts.
    pub link: Arc<Link>,
    /// The read side; buffered bytes read during registration are kept.
    reader: BufReader<ReadHalf>,
}

/// Registers on `stream`: PASS, NICK, USER, then waits for 001, answering PING, trying
/// the next fallback nick on 433 and showing everything else the server says.
pub fn register(
    (read, write): (ReadHalf, WriteHalf),
    me: &Identity,
    output: &Output,
) -> Result<Session, ClientError> {
    let mut reader = BufReader::new(read);
    let link = Arc::new(Link {
        writer: Mutex::new(write),
        state: Mutex::new(ChatState::new(me.nick)),
        quitting: AtomicBool::new(false),
    });
    if let Some(password) = me.password {
        link.send(&format_line("PASS", &[password]))?;
    }
    let mut attempt = 0;
    let mut tried = vec![me.nick.to_string()];
    link.send(&format_line("NICK", &[me.nick]))?;
    link.send(&format_line("USER", &[me.user, "0", "*", REALNAME]))?;

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
                let Some(next) = nick::candidate(me.nick, attempt) else {
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
                show_incoming(&link, output, &msg);
                if welcome {
                    reader.get_ref().set_read_timeout(None)?;
                    return Ok(Session { link, reader });
                }
            }
        }
    }
}

impl Session {
    /// Starts the reader thread. It shows incoming traffic and answers PING until the
    /// link ends. If we were quitting it then signals the returned receiver; otherwise
    /// the server dropped us, and it ends the process with "server closed the link".
    pub fn start_reader(self, output: Output) -> io::Result<(Arc<Link>, Receiver<()>)> {
        let (closed_tx, closed_rx) = mpsc::channel();
        let link = Arc::clone(&self.link);
        thread::Builder::new()
            .name("irc-reader".into())
            .spawn(move || read_until_closed(self, &output, closed_tx))?;
        Ok((link, closed_rx))
    }
}

/// The reader thread's body; see [`Session::start_reader`].
fn read_until_closed(mut session: Session, output: &Output, closed: Sender<()>) {
    let reason = loop {
        let line = match read_line(&mut session.reader) {
            Ok(Some(line)) => line,
            Ok(None) => break "connection closed".to_string(),
            Err(err) => break err.to_string(),
        };
        let Some(msg) = Message::parse(&line) else {
            continue;
        };
        match msg.command.as_str() {
            // A failed PONG means the link is going down; the next read tells us why.
            "PING" => {
                let _ = session.link.send(&format_line("PONG", &[msg.param(0)]));
            }
            "ERROR" => break msg.last_param().to_string(),
            _ => show_incoming(&session.link, output, &msg),
        }
    };
    if session.link.quitting.load(Ordering::SeqCst) {
        let _ = closed.send(());
    } else {
        exit_with(ClientError::ServerClosed(reason));
    }
}

/// Renders one message from the server as seen now, then lets the state follow it.
fn show_incoming(link: &Link, output: &Output, msg: &Message) {
    let shown = {
        let mut state = link.state();
        let clock = clock::now_hhmm();
        let view = View {
            own_nick: &state.nick,
            current_channel: state.current_channel(),
            clock: &clock,
        };
        let shown = render(msg, &view);
        state.observe(msg);
        shown
    };
    if let Some(text) = shown {
        output.show(&text);
    }
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
pub fn handle_input(link: &Link, output: &Output, input: &str) -> Result<Flow, ClientError> {
    let action = {
        let state = link.state();
        translate(input, state.current_channel())
    };
    match action {
        Action::Send { lines, echo } => {
            for line in lines {
                link.send(&line)?;
                if echo {
                    show_own(link, output, &line);
                }
            }
        }
        Action::Quit { line } => return Ok(Flow::Quit(line)),
        Action::Show(text) => output.show(&text),
        Action::Error(text) => output.show(&format!("!! {text}")),
        Action::Nothing => {}
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
        let mut state = ChatState::new("me");
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
        let mut state = ChatState::new("me");
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
        let mut state = ChatState::new("me");
        state.observe_sent(&msg("JOIN #lobby"));
        state.observe_sent(&msg("JOIN #secret"));
        state.observe(&msg(":irc 473 me #secret :Cannot join channel (+i)"));
        assert_eq!(state.current_channel(), Some("#lobby"));
    }

    #[test]
    fn nick_follows_welcome_and_own_changes() {
        let mut state = ChatState::new("me");
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
