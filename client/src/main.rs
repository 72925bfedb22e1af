//! ringchat-client: a terminal IRC chat client that needs no setup. Start it, type, and
//! talk to everyone in the channel; it speaks plain IRC, so any IRC server will do.
//!
//! Map of the modules, from the wire to the screen:
//! - [`cli`]: command-line arguments (server, nick, channel, password, TLS).
//! - [`irc`]: the IRC line format: parse what arrives, format what leaves. Pure.
//! - [`nick`]: a valid nick from the login name; fallbacks after 433. Pure.
//! - [`command`]: typed lines and `/commands` to IRC lines. Pure.
//! - [`render`]: incoming messages to readable lines. Pure.
//! - [`format`]: mIRC bold and colours to ANSI colours, or removed. Pure.
//! - [`complete`]: the nicks seen, and Tab completion of them.
//! - [`windows`]: the full-screen mode's windows, members, scroll-back, history. Pure.
//! - [`fullscreen`]: the full-screen mode (`--full-screen`), drawn with ratatui.
//! - [`clock`]: local `HH:MM` for the time stamps.
//! - [`session`]: the connection: register, reader thread, input handling, QUIT.
//! - [`transport`]: plain TCP or TLS, split into a read and a write half.
//! - [`terminal`]: line editor or pipe in, printer or stdout out, and exiting.
//! - [`error`]: how a session ends badly, and its exit code.

mod cli;
mod clock;
mod command;
mod complete;
mod error;
mod format;
mod fullscreen;
mod irc;
mod nick;
mod render;
mod session;
mod terminal;
mod transport;
mod windows;

use std::io::IsTerminal;

use clap::Parser;

use crate::cli::Args;
use crate::complete::NickList;
use crate::error::ClientError;
use crate::irc::format_line;
use crate::session::{Flow, Identity, Reconnect};
use crate::terminal::{Input, InputEvent, Output};

fn main() {
    let args = Args::parse();
    match run(args) {
        Ok(()) => terminal::exit_ok(),
        Err(err) => terminal::exit_with(err),
    }
}

/// The whole session: connect, register, join, then relay input until the user quits
/// or input ends. Returns after a clean QUIT. A link the server drops is reconnected by
/// the reader thread, or with `--no-reconnect` ends the process from there (see
/// [`session::Session::start_reader`]).
fn run(args: Args) -> Result<(), ClientError> {
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let login = nick::default_nick();
    let identity = Identity {
        nick: args.nick.clone().unwrap_or_else(|| login.clone()),
        user: login,
        password: args.password.clone(),
    };
    let again = Reconnect {
        server: args.server_addr(),
        tls: args.tls(),
        identity: identity.clone(),
        enabled: !args.no_reconnect,
    };

    let stream = session::connect(&again.server, again.tls)?;
    let nicks = NickList::default();
    if args.full_screen && interactive {
        let (events, screen_events) = std::sync::mpsc::channel();
        let output = Output::screen(events.clone());
        let registered = session::register(stream, &identity, nicks.clone(), &output)?;
        registered
            .link
            .send(&format_line("JOIN", &[&args.channel]))?;
        let (link, closed) = registered.start_reader(Output::screen(events), again)?;
        let quit_line = fullscreen::run(&link, &output, screen_events, nicks)?;
        session::quit(&link, &closed, &quit_line);
        return Ok(());
    }
    let colour = args.color.enabled(std::io::stdout().is_terminal());
    let (mut input, output, reader_output) = Input::open(interactive, colour, nicks.clone())?;
    let registered = session::register(stream, &identity, nicks, &output)?;
    registered
        .link
        .send(&format_line("JOIN", &[&args.channel]))?;
    let (link, closed) = registered.start_reader(reader_output, again)?;

    let quit_line = loop {
        let prompt = {
            let state = link.state();
            match state.place().target() {
                Some(target) => format!("{target}> "),
                None => "> ".to_string(),
            }
        };
        match input.next(&prompt)? {
            InputEvent::Line(line) => match session::handle_input(&link, &output, &line)? {
                Flow::Continue => {}
                Flow::Quit(line) => break line,
            },
            InputEvent::End => break format_line("QUIT", &[command::DEFAULT_QUIT_MESSAGE]),
        }
    };
    session::quit(&link, &closed, &quit_line);
    Ok(())
}
