//! The user's side: where input lines come from (a rustyline editor with nick
//! completion on a terminal, or plain lines from a pipe), where output lines go
//! (through rustyline's external printer so they never garble the line being typed, or
//! straight to stdout) and whether their mIRC formatting becomes colours, and the one
//! way the process exits on an error.

use std::io::{self, BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Mutex, OnceLock, PoisonError};

use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{Editor, ExternalPrinter};

use crate::complete::{NickCompleter, NickList};
use crate::error::ClientError;
use crate::format;
use crate::irc::Message;

/// The line editor: history on the arrow keys, Tab completes nicks.
type LineEditor = Editor<NickCompleter, DefaultHistory>;

/// Where shown lines go, and whether formatting becomes colours. Each thread that
/// prints has its own `Output` (see [`Input::open`]); it lives until the process exits.
pub struct Output {
    sink: Sink,
    /// mIRC colours and bold as ANSI colours (a colour terminal); else removed.
    colour: bool,
}

/// What the reader thread and the input handling tell the full-screen mode.
#[derive(Debug)]
pub enum ScreenEvent {
    /// A local line (help, errors, notes): shown in the window being looked at.
    Local(String),
    /// A message from the server (or our own, echoed), its rendering (`None`: not
    /// shown) and our nick before it: the screen files it into its window.
    Incoming {
        msg: Message,
        text: Option<String>,
        own_nick: String,
    },
}

/// Where an [`Output`] writes.
enum Sink {
    /// Standard output, one write per line (a pipe, a file, or a terminal rustyline
    /// cannot drive).
    Plain,
    /// rustyline's external printer: it clears the prompt and the partly typed line,
    /// prints, and draws them again.
    ///
    /// MUST NOT be shared between threads: while `readline` runs, a print waits until
    /// the editor takes the line (a channel of one), so a thread that shared this
    /// printer's lock with the reader thread could wait for the reader, which waits for
    /// the editor, which waits for that thread. The mutex only makes it `Sync`.
    Editor(Mutex<Box<dyn ExternalPrinter + Send>>),
    /// The full-screen mode's event queue (unbounded: the screen drains it every
    /// 50 ms, and a chat's rate is far below what it draws).
    Screen(Sender<ScreenEvent>),
}

impl Output {
    /// Shows `text` (one or more lines), its formatting as colours or removed. Output
    /// that cannot be written (stdout closed) is dropped: the chat goes on, and an
    /// error here must not kill the session.
    pub fn show(&self, text: &str) {
        if let Sink::Screen(events) = &self.sink {
            let _ = events.send(ScreenEvent::Local(text.to_string()));
            return;
        }
        let text = if self.colour {
            format::to_ansi(text)
        } else {
            format::strip(text)
        };
        if let Sink::Editor(printer) = &self.sink {
            let mut printer = printer.lock().unwrap_or_else(PoisonError::into_inner);
            if printer.print(format!("{text}\n")).is_ok() {
                return;
            }
        }
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }
}

impl Output {
    /// The output of the full-screen mode: events for its windows.
    pub fn screen(events: Sender<ScreenEvent>) -> Output {
        Output {
            sink: Sink::Screen(events),
            colour: true,
        }
    }

    /// Shows a message from the server rendered as `text` (`None`: not shown); the
    /// full-screen mode also gets the message itself, to file it into its window and
    /// follow channel membership.
    pub fn show_message(&self, msg: &Message, text: Option<&str>, own_nick: &str) {
        match (&self.sink, text) {
            (Sink::Screen(events), _) => {
                let _ = events.send(ScreenEvent::Incoming {
                    msg: msg.clone(),
                    text: text.map(str::to_string),
                    own_nick: own_nick.to_string(),
                });
            }
            (_, Some(text)) => self.show(text),
            (_, None) => {}
        }
    }
}

/// One thing the user did at the input.
#[derive(Debug, PartialEq, Eq)]
pub enum InputEvent {
    /// A line was entered (without its line end).
    Line(String),
    /// End of input: Ctrl-D or Ctrl-C on a terminal, end of file on a pipe.
    End,
}

/// Where input lines come from.
pub enum Input {
    /// Standard input, read line by line as it arrives.
    Plain(io::Stdin),
    /// A line editor on the terminal, with history on the arrow keys and Tab
    /// completion of `nicks`.
    Editor(Box<LineEditor>),
}

impl Input {
    /// A line editor completing `nicks` when stdin and stdout are both terminals,
    /// else plain lines; and two matching outputs (formatting as colours when
    /// `colour`), one for the input loop and one for the reader thread.
    pub fn open(
        interactive: bool,
        colour: bool,
        nicks: NickList,
    ) -> Result<(Input, Output, Output), ClientError> {
        let plain = || Output {
            sink: Sink::Plain,
            colour,
        };
        if !interactive {
            return Ok((Input::Plain(io::stdin()), plain(), plain()));
        }
        save_terminal_mode();
        let mut editor = LineEditor::new().map_err(readline_error)?;
        editor.set_helper(Some(NickCompleter { nicks }));
        let mut printer = || match editor.create_external_printer() {
            Ok(printer) => Output {
                sink: Sink::Editor(Mutex::new(Box::new(printer))),
                colour,
            },
            // A terminal rustyline cannot drive (TERM=dumb): it reads plain lines, and
            // printing straight to stdout garbles nothing it has drawn.
            Err(_) => plain(),
        };
        let (for_input, for_reader) = (printer(), printer());
        Ok((Input::Editor(Box::new(editor)), for_input, for_reader))
    }

    /// Waits for the next input line; `prompt` is shown by the editor only.
    pub fn next(&mut self, prompt: &str) -> Result<InputEvent, ClientError> {
        match self {
            Input::Plain(stdin) => {
                let mut line = Vec::new();
                if stdin.lock().read_until(b'\n', &mut line)? == 0 {
                    return Ok(InputEvent::End);
                }
                let text = String::from_utf8_lossy(&line);
                Ok(InputEvent::Line(
                    text.trim_end_matches(['\r', '\n']).to_string(),
                ))
            }
            Input::Editor(editor) => match editor.readline(prompt) {
                Ok(line) => {
                    if !line.trim().is_empty() {
                        editor
                            .add_history_entry(line.as_str())
                            .map_err(readline_error)?;
                    }
                    Ok(InputEvent::Line(line))
                }
                Err(ReadlineError::Eof | ReadlineError::Interrupted) => Ok(InputEvent::End),
                Err(err) => Err(readline_error(err)),
            },
        }
    }
}

fn readline_error(err: ReadlineError) -> ClientError {
    match err {
        ReadlineError::Io(err) => ClientError::Io(err),
        other => ClientError::Io(io::Error::other(format!("terminal: {other}"))),
    }
}

/// The terminal settings from before rustyline switched to raw mode, so that an exit
/// from another thread (the server closed the link mid-typing) leaves a usable shell.
/// Set once by [`Input::open`]; read only by [`exit_with`].
static SAVED_TERMINAL_MODE: OnceLock<libc::termios> = OnceLock::new();

/// Set while the full-screen mode has the terminal (raw mode, alternate screen): an
/// exit from another thread must leave the alternate screen too.
static FULL_SCREEN: AtomicBool = AtomicBool::new(false);

/// Saves the terminal mode before the full-screen mode takes the terminal, so that
/// [`exit_with`] can give it back from any thread.
pub fn entering_full_screen() {
    save_terminal_mode();
    FULL_SCREEN.store(true, Ordering::SeqCst);
}

/// The full-screen mode gave the terminal back itself.
pub fn left_full_screen() {
    FULL_SCREEN.store(false, Ordering::SeqCst);
}

fn save_terminal_mode() {
    // SAFETY: tcgetattr fills the plain-data struct it is given; fd 0 is ours.
    unsafe {
        let mut mode: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(libc::STDIN_FILENO, &mut mode) == 0 {
            let _ = SAVED_TERMINAL_MODE.set(mode);
        }
    }
}

fn restore_terminal_mode() {
    if FULL_SCREEN.load(Ordering::SeqCst) {
        // Leave the alternate screen and show the cursor again.
        let _ = io::stdout().write_all(b"\x1b[?1049l\x1b[?25h");
    }
    if let Some(mode) = SAVED_TERMINAL_MODE.get() {
        // SAFETY: `mode` came from tcgetattr on the same descriptor.
        unsafe {
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSADRAIN, mode);
        }
        // Leave the half-typed line behind on its own row.
        let _ = io::stdout().write_all(b"\r\n");
    }
}

/// Serialises exits: the input loop and the reader thread may both decide to stop at
/// once, and only the first one prints its reason.
static EXITING: Mutex<()> = Mutex::new(());

/// Ends the process: terminal mode restored, stdout flushed, one `!! reason` line on
/// stderr, the error's exit code. The only way the client exits on an error, from any
/// thread (the reader thread uses it when the server closes the link while the main
/// thread is blocked reading the keyboard).
pub fn exit_with(err: ClientError) -> ! {
    let _only_one = EXITING.lock().unwrap_or_else(PoisonError::into_inner);
    restore_terminal_mode();
    let _ = io::stdout().flush();
    let _ = writeln!(io::stderr(), "!! {err}");
    std::process::exit(err.exit_code())
}

/// Ends the process after a normal quit, with exit code 0.
pub fn exit_ok() -> ! {
    let _only_one = EXITING.lock().unwrap_or_else(PoisonError::into_inner);
    let _ = io::stdout().flush();
    std::process::exit(crate::error::EXIT_OK)
}
