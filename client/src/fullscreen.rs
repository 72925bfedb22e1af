//! The full-screen mode (`--full-screen`): a window per channel and query plus a
//! status window, a member list beside a channel, scroll-back, a window bar and an
//! input line with history and nick completion, drawn with ratatui.
//!
//! Threads: the reader thread sends what arrives as [`ScreenEvent`]s; this loop (on
//! the main thread) files them into [`Windows`], draws, and reads keys, polling every
//! [`TICK`] so that incoming lines appear while nothing is typed. Typed lines go
//! through [`session::handle_input`] exactly as in line mode. Must not: block on the
//! network (sending a line is a short write, as in line mode).

use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Duration;

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::{DefaultTerminal, Frame};

use crate::command::DEFAULT_QUIT_MESSAGE;
use crate::complete::{complete_nick, NickList};
use crate::error::ClientError;
use crate::format;
use crate::irc::format_line;
use crate::session::{self, Flow, Link};
use crate::terminal::{self, Output, ScreenEvent};
use crate::windows::{Window, Windows};

/// How often the screen looks for incoming lines while no key is pressed.
const TICK: Duration = Duration::from_millis(50);
/// Width of the member list beside a channel.
const MEMBERS_WIDTH: u16 = 18;
/// Lines PageUp and PageDown move.
const PAGE: isize = 10;

/// What the user typed so far, and where the cursor is (in characters).
#[derive(Debug, Default)]
struct InputLine {
    text: String,
    cursor: usize,
}

impl InputLine {
    fn byte_at(&self, chars: usize) -> usize {
        self.text
            .char_indices()
            .nth(chars)
            .map_or(self.text.len(), |(i, _)| i)
    }

    fn insert(&mut self, c: char) {
        let at = self.byte_at(self.cursor);
        self.text.insert(at, c);
        self.cursor += 1;
    }

    fn backspace(&mut self) {
        if self.cursor > 0 {
            self.cursor -= 1;
            let at = self.byte_at(self.cursor);
            self.text.remove(at);
        }
    }

    fn delete(&mut self) {
        if self.cursor < self.text.chars().count() {
            let at = self.byte_at(self.cursor);
            self.text.remove(at);
        }
    }

    fn set(&mut self, text: &str) {
        self.text = text.to_string();
        self.cursor = text.chars().count();
    }

    fn take(&mut self) -> String {
        self.cursor = 0;
        std::mem::take(&mut self.text)
    }
}

/// Runs the full-screen mode until the user quits; returns the QUIT line to send.
pub fn run(
    link: &Link,
    output: &Output,
    events: Receiver<ScreenEvent>,
    nicks: NickList,
) -> Result<String, ClientError> {
    terminal::entering_full_screen();
    let mut screen = ratatui::try_init()?;
    let result = event_loop(&mut screen, link, output, &events, &nicks);
    ratatui::restore();
    terminal::left_full_screen();
    result
}

fn event_loop(
    screen: &mut DefaultTerminal,
    link: &Link,
    output: &Output,
    events: &Receiver<ScreenEvent>,
    nicks: &NickList,
) -> Result<String, ClientError> {
    let mut windows = Windows::default();
    let mut input = InputLine::default();
    loop {
        loop {
            match events.try_recv() {
                Ok(ScreenEvent::Local(text)) => windows.local(&text),
                Ok(ScreenEvent::Incoming {
                    msg,
                    text,
                    own_nick,
                }) => windows.incoming(&msg, text.as_deref(), &own_nick),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let (prompt, nick) = {
            let state = link.state();
            (
                state.place().target().unwrap_or("").to_string(),
                state.nick.clone(),
            )
        };
        screen.draw(|frame| draw(frame, &windows, &input, &prompt, &nick))?;
        if !event::poll(TICK)? {
            continue;
        }
        let Event::Key(key) = event::read()? else {
            continue;
        };
        if key.kind != KeyEventKind::Press {
            continue;
        }
        if let Some(quit) = on_key(key, &mut windows, &mut input, link, output, nicks)? {
            return Ok(quit);
        }
    }
}

/// Handles one key; `Some(QUIT line)` when the user quits.
fn on_key(
    key: KeyEvent,
    windows: &mut Windows,
    input: &mut InputLine,
    link: &Link,
    output: &Output,
    nicks: &NickList,
) -> Result<Option<String>, ClientError> {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let alt = key.modifiers.contains(KeyModifiers::ALT);
    match key.code {
        KeyCode::Char('c') if ctrl => return Ok(Some(default_quit())),
        KeyCode::Char('d') if ctrl && input.text.is_empty() => return Ok(Some(default_quit())),
        KeyCode::Char('n') if ctrl => switch(windows, link, |w| w.cycle(1)),
        KeyCode::Char('p') if ctrl => switch(windows, link, |w| w.cycle(-1)),
        KeyCode::Char(digit @ '0'..='9') if alt => {
            let index = (digit as usize - '0' as usize + 9) % 10;
            switch(windows, link, |w| w.show(index));
        }
        KeyCode::Char('a') if ctrl => input.cursor = 0,
        KeyCode::Char('e') if ctrl => input.cursor = input.text.chars().count(),
        KeyCode::Char('u') if ctrl => input.set(""),
        KeyCode::Char(c) if !ctrl && !alt => input.insert(c),
        KeyCode::Backspace => input.backspace(),
        KeyCode::Delete => input.delete(),
        KeyCode::Left => input.cursor = input.cursor.saturating_sub(1),
        KeyCode::Right => input.cursor = (input.cursor + 1).min(input.text.chars().count()),
        KeyCode::Home => input.cursor = 0,
        KeyCode::End => input.cursor = input.text.chars().count(),
        KeyCode::Up => {
            if let Some(line) = windows.history_up() {
                let line = line.to_string();
                input.set(&line);
            }
        }
        KeyCode::Down => {
            let line = windows.history_down().to_string();
            input.set(&line);
        }
        KeyCode::PageUp => windows.scroll(PAGE),
        KeyCode::PageDown => windows.scroll(-PAGE),
        KeyCode::Tab => {
            let at = input.byte_at(input.cursor);
            let (start, found) = complete_nick(&input.text, at, &nicks.snapshot());
            if let Some(nick) = found.first() {
                let rest = input.text[at..].to_string();
                let done = format!("{}{nick}", &input.text[..start]);
                input.set(&format!("{done}{rest}"));
                input.cursor = done.chars().count();
            }
        }
        KeyCode::Enter => {
            let line = input.take();
            windows.remember(&line);
            if let Flow::Quit(quit) = session::handle_input(link, output, &line)? {
                return Ok(Some(quit));
            }
            follow_query(windows, link);
        }
        _ => {}
    }
    Ok(None)
}

fn default_quit() -> String {
    format_line("QUIT", &[DEFAULT_QUIT_MESSAGE])
}

/// Switches windows with `how`, then points typed text at the window shown: its
/// channel, or its nick for a query (the status window leaves it as it is).
fn switch(windows: &mut Windows, link: &Link, how: impl FnOnce(&mut Windows)) {
    how(windows);
    let window = windows.active();
    let mut state = link.state();
    if window.is_channel() {
        state.focus_channel(&window.name);
    } else if windows.active != 0 {
        state.query = Some(window.name.clone());
    }
}

/// After a typed line: `/query NICK` shows NICK's window, `/query` alone the
/// current channel's.
fn follow_query(windows: &mut Windows, link: &Link) {
    let (query, channel) = {
        let state = link.state();
        (
            state.query.clone(),
            state.current_channel().map(str::to_string),
        )
    };
    match query {
        Some(nick) => {
            let i = windows.open(&nick);
            windows.show(i);
        }
        None if !windows.active().is_channel() && windows.active != 0 => {
            let i = channel.map_or(0, |c| windows.open(&c));
            windows.show(i);
        }
        None => {}
    }
}

/// Draws the shown window (and its member list), the window bar and the input line.
fn draw(frame: &mut Frame, windows: &Windows, input: &InputLine, prompt: &str, nick: &str) {
    let [body, bar, input_area] = Layout::vertical([
        Constraint::Min(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let window = windows.active();
    let text_area = if window.is_channel() && body.width > MEMBERS_WIDTH * 2 {
        let [text, members] =
            Layout::horizontal([Constraint::Min(1), Constraint::Length(MEMBERS_WIDTH)]).areas(body);
        draw_members(frame, window, members);
        text
    } else {
        body
    };
    draw_lines(frame, window, text_area);
    frame.render_widget(Paragraph::new(window_bar(windows, nick)), bar);
    let prompt = format!("{prompt}> ");
    let before_cursor: String = input.text.chars().take(input.cursor).collect();
    let width = input_area.width as usize;
    let shown_from =
        (prompt.chars().count() + before_cursor.chars().count() + 1).saturating_sub(width);
    let whole: String = format!("{prompt}{}", input.text)
        .chars()
        .skip(shown_from)
        .collect();
    frame.render_widget(Paragraph::new(whole), input_area);
    let x = (prompt.chars().count() + before_cursor.chars().count() - shown_from) as u16;
    frame.set_cursor_position(Position::new(input_area.x + x, input_area.y));
}

/// The window's lines, wrapped to the width, the newest at the bottom (less the
/// scroll).
fn draw_lines(frame: &mut Frame, window: &Window, area: Rect) {
    let width = area.width.max(1) as usize;
    let height = area.height as usize;
    let newest = window.lines.len().saturating_sub(window.scroll);
    // Wrap from the newest line back until the area is full, then put them in order.
    let mut chunks: Vec<Vec<Line>> = Vec::new();
    let mut count = 0;
    for line in window.lines.range(..newest).rev() {
        let wrapped = wrap(line, width);
        count += wrapped.len();
        chunks.push(wrapped);
        if count >= height {
            break;
        }
    }
    let rows: Vec<Line> = chunks.into_iter().rev().flatten().collect();
    let skip = rows.len().saturating_sub(height);
    // The newest line sits at the bottom, as in every chat window.
    let mut visible: Vec<Line> = vec![Line::default(); height.saturating_sub(rows.len())];
    visible.extend(rows.into_iter().skip(skip));
    frame.render_widget(Paragraph::new(visible), area);
}

/// One line with mIRC formatting as styled rows of at most `width` characters.
fn wrap(line: &str, width: usize) -> Vec<Line<'static>> {
    let mut rows = vec![Vec::new()];
    let mut used = 0;
    for (style, text) in format::segments(line) {
        let style = to_ratatui(&style);
        let mut piece = String::new();
        for c in text.chars() {
            if used == width {
                let row = rows.last_mut().expect("a row");
                row.push(Span::styled(std::mem::take(&mut piece), style));
                rows.push(Vec::new());
                used = 0;
            }
            piece.push(c);
            used += 1;
        }
        rows.last_mut()
            .expect("a row")
            .push(Span::styled(piece, style));
    }
    rows.into_iter().map(Line::from).collect()
}

/// mIRC attributes as a ratatui style.
fn to_ratatui(attributes: &format::Style) -> Style {
    const MIRC: [Color; 16] = [
        Color::White,
        Color::Black,
        Color::Blue,
        Color::Green,
        Color::LightRed,
        Color::Red,
        Color::Magenta,
        Color::Yellow,
        Color::LightYellow,
        Color::LightGreen,
        Color::Cyan,
        Color::LightCyan,
        Color::LightBlue,
        Color::LightMagenta,
        Color::DarkGray,
        Color::Gray,
    ];
    let mut style = Style::default();
    for (on, modifier) in [
        (attributes.bold, Modifier::BOLD),
        (attributes.italic, Modifier::ITALIC),
        (attributes.underline, Modifier::UNDERLINED),
        (attributes.reverse, Modifier::REVERSED),
        (attributes.strike, Modifier::CROSSED_OUT),
    ] {
        if on {
            style = style.add_modifier(modifier);
        }
    }
    if let Some(fg) = attributes.foreground.and_then(|n| MIRC.get(n as usize)) {
        style = style.fg(*fg);
    }
    if let Some(bg) = attributes.background.and_then(|n| MIRC.get(n as usize)) {
        style = style.bg(*bg);
    }
    style
}

/// A channel's members, operators first, then voiced, then the rest, by name.
fn draw_members(frame: &mut Frame, window: &Window, area: Rect) {
    let rank = |m: &str| match m.chars().next() {
        Some('~' | '&' | '@') => 0,
        Some('%' | '+') => 1,
        _ => 2,
    };
    let mut members: Vec<&String> = window.members.iter().collect();
    members.sort_by_key(|m| (rank(m), m.to_ascii_lowercase()));
    let lines: Vec<Line> = members
        .into_iter()
        .map(|m| Line::from(m.as_str()))
        .collect();
    let block = Block::default()
        .borders(Borders::LEFT)
        .title(format!(" {} ", window.members.len()));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// `alice | 1:status 2:#lobby 3:bob*`: our nick, then each window by number, the
/// one shown highlighted, `*` on those with unread lines.
fn window_bar(windows: &Windows, nick: &str) -> Line<'static> {
    let mut spans = vec![Span::styled(
        format!(" {nick} |"),
        Style::default().add_modifier(Modifier::BOLD),
    )];
    for (i, window) in windows.windows.iter().enumerate() {
        let label = format!(
            " {}:{}{}",
            i + 1,
            window.name,
            if window.unread { "*" } else { "" }
        );
        let style = if i == windows.active {
            Style::default().add_modifier(Modifier::REVERSED)
        } else if window.unread {
            Style::default().add_modifier(Modifier::BOLD)
        } else {
            Style::default()
        };
        spans.push(Span::styled(label, style));
    }
    Line::from(spans).style(Style::default().bg(Color::Blue).fg(Color::White))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_at_the_width_keeping_styles() {
        let rows = wrap("abcdef\x02gh", 3);
        let text: Vec<String> = rows
            .iter()
            .map(|row| row.spans.iter().map(|s| s.content.as_ref()).collect())
            .collect();
        assert_eq!(text, ["abc", "def", "gh"]);
        assert!(rows[2].spans[0].style.add_modifier.contains(Modifier::BOLD));
    }

    #[test]
    fn input_line_edits_by_character() {
        let mut input = InputLine::default();
        for c in "héllo".chars() {
            input.insert(c);
        }
        input.cursor = 2;
        input.backspace();
        input.insert('e');
        assert_eq!(input.text, "hello");
        input.delete();
        assert_eq!(input.text, "helo");
        assert_eq!(input.take(), "helo");
        assert_eq!((input.text.as_str(), input.cursor), ("", 0));
    }
}
