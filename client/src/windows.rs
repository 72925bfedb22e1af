//! The full-screen mode's windows: one for the server (status), one per channel and
//! per query, each with its scroll-back, its member list (channels) and an unread
//! mark; which window an incoming message belongs to; and the input line's history.
//!
//! Owns: the model of the screen, pure (no terminal): [`crate::fullscreen`] draws it
//! and feeds it. Must not: grow without bound (scroll-back and history are capped).

use std::collections::{BTreeSet, VecDeque};

use crate::irc::{is_channel, numeric, Message};

/// Lines kept per window; the oldest go first.
pub const MAX_SCROLLBACK: usize = 2000;
/// Input lines kept for Up/Down.
pub const MAX_HISTORY: usize = 500;
/// The status window's name.
pub const STATUS: &str = "status";

/// One window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// `status`, a channel (`#rust`) or a nick (a query).
    pub name: String,
    /// Its lines, oldest first, with their mIRC formatting.
    pub lines: VecDeque<String>,
    /// A channel's members as NAMES shows them (`@alice`, `bob`); empty otherwise.
    pub members: BTreeSet<String>,
    /// Lines scrolled up from the bottom (0: the newest line is at the bottom).
    pub scroll: usize,
    /// Something arrived while another window was shown.
    pub unread: bool,
}

impl Window {
    fn new(name: &str) -> Window {
        Window {
            name: name.to_string(),
            lines: VecDeque::new(),
            members: BTreeSet::new(),
            scroll: 0,
            unread: false,
        }
    }

    fn push(&mut self, text: &str) {
        for line in text.lines() {
            if self.lines.len() == MAX_SCROLLBACK {
                self.lines.pop_front();
            }
            self.lines.push_back(line.to_string());
            // A reader scrolled up keeps their place.
            if self.scroll > 0 {
                self.scroll = (self.scroll + 1).min(self.lines.len());
            }
        }
    }

    /// The member entry of `nick` (with its prefix), if it is one.
    fn member(&self, nick: &str) -> Option<String> {
        self.members
            .iter()
            .find(|m| strip_prefix(m).eq_ignore_ascii_case(nick))
            .cloned()
    }

    /// Whether this is a channel's window (it has a member list).
    pub fn is_channel(&self) -> bool {
        is_channel(&self.name)
    }
}

/// A member entry without its status prefix (`@alice` -> `alice`).
fn strip_prefix(entry: &str) -> &str {
    entry.trim_start_matches(['~', '&', '@', '%', '+'])
}

/// Every window, the one shown, and the input history.
#[derive(Debug, Clone)]
pub struct Windows {
    /// The status window first, then in the order they opened.
    pub windows: Vec<Window>,
    /// The index of the window shown.
    pub active: usize,
    /// Lines entered, oldest first.
    history: VecDeque<String>,
    /// Position while walking the history with Up/Down (`None`: not walking).
    history_at: Option<usize>,
}

impl Default for Windows {
    fn default() -> Self {
        Windows {
            windows: vec![Window::new(STATUS)],
            active: 0,
            history: VecDeque::new(),
            history_at: None,
        }
    }
}

impl Windows {
    /// The window shown.
    pub fn active(&self) -> &Window {
        &self.windows[self.active]
    }

    /// The index of the window named `name`, opening it (at the end) if there is none.
    pub fn open(&mut self, name: &str) -> usize {
        if let Some(i) = self.find(name) {
            return i;
        }
        self.windows.push(Window::new(name));
        self.windows.len() - 1
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.windows
            .iter()
            .position(|w| w.name.eq_ignore_ascii_case(name))
    }

    /// Shows window `index` (ignored when there is none).
    pub fn show(&mut self, index: usize) {
        if index < self.windows.len() {
            self.active = index;
            self.windows[index].unread = false;
        }
    }

    /// Shows the next (`+1`) or previous (`-1`) window, round.
    pub fn cycle(&mut self, step: isize) {
        let n = self.windows.len() as isize;
        self.show((self.active as isize + step).rem_euclid(n) as usize);
    }

    /// Scrolls the shown window up (`lines` > 0) or down.
    pub fn scroll(&mut self, lines: isize) {
        let window = &mut self.windows[self.active];
        let top = window.lines.len().saturating_sub(1) as isize;
        window.scroll = (window.scroll as isize + lines).clamp(0, top) as usize;
    }

    /// A local line (help, errors, our own notes): in the shown window.
    pub fn local(&mut self, text: &str) {
        let active = self.active;
        self.add_to(active, text);
    }

    fn add_to(&mut self, index: usize, text: &str) {
        let window = &mut self.windows[index];
        window.push(text);
        if index != self.active {
            window.unread = true;
        }
    }

    /// Files `text`, the rendering of `msg` (`None`: not shown), into its window(s),
    /// and follows the membership it tells of. `own_nick` is our nick before `msg`.
    pub fn incoming(&mut self, msg: &Message, text: Option<&str>, own_nick: &str) {
        let from = msg.source_nick().unwrap_or("");
        let from_us = from.eq_ignore_ascii_case(own_nick);
        let mut targets: Vec<usize> = Vec::new();
        match msg.command.as_str() {
            "PRIVMSG" | "NOTICE" => {
                let target = msg.param(0);
                let window = if is_channel(target) || from_us {
                    target
                } else if from.is_empty() || from.contains('.') || target == "*" {
                    // A server notice: the status window.
                    STATUS
                } else {
                    from
                };
                targets.push(self.open(window));
            }
            "JOIN" => {
                let channel = msg.param(0);
                let i = if from_us {
                    let i = self.open(channel);
                    self.show(i);
                    i
                } else {
                    self.open(channel)
                };
                self.windows[i].members.insert(from.to_string());
                targets.push(i);
            }
            "PART" | "KICK" => {
                let leaving = if msg.command == "KICK" {
                    msg.param(1)
                } else {
                    from
                };
                if let Some(i) = self.find(msg.param(0)) {
                    if let Some(entry) = self.windows[i].member(leaving) {
                        self.windows[i].members.remove(&entry);
                    }
                    targets.push(i);
                }
            }
            "QUIT" | "NICK" => {
                for (i, window) in self.windows.iter_mut().enumerate() {
                    let query = window.name.eq_ignore_ascii_case(from);
                    let Some(entry) = window.member(from).or(query.then(String::new)) else {
                        continue;
                    };
                    if msg.command == "NICK" {
                        if query {
                            window.name = msg.param(0).to_string();
                        } else {
                            window.members.remove(&entry);
                            let prefix = &entry[..entry.len() - from.len()];
                            window.members.insert(format!("{prefix}{}", msg.param(0)));
                        }
                    } else if !query {
                        window.members.remove(&entry);
                    }
                    targets.push(i);
                }
            }
            "TOPIC" | "MODE" | "INVITE" => {
                let subject = if msg.command == "INVITE" {
                    msg.param(1)
                } else {
                    msg.param(0)
                };
                targets.extend(self.find(subject));
            }
            numeric::RPL_NAMREPLY => {
                let i = self.open(msg.param(2));
                for entry in msg.param(3).split_whitespace() {
                    let bare = strip_prefix(entry);
                    if let Some(old) = self.windows[i].member(bare) {
                        self.windows[i].members.remove(&old);
                    }
                    self.windows[i].members.insert(entry.to_string());
                }
                targets.push(i);
            }
            code if code.len() == 3 => {
                // A reply about a channel we have a window for goes there.
                targets.extend(
                    msg.params
                        .get(1)
                        .filter(|p| is_channel(p))
                        .and_then(|channel| self.find(channel)),
                );
            }
            _ => {}
        }
        let Some(text) = text else {
            return;
        };
        if targets.is_empty() {
            // Replies to our commands (WHOIS, LIST, errors) where we are looking;
            // anything else from the server in the status window.
            targets.push(if msg.command.len() == 3 {
                self.active
            } else {
                0
            });
        }
        targets.dedup();
        for i in targets {
            self.add_to(i, text);
        }
    }

    /// Remembers an entered line for Up/Down.
    pub fn remember(&mut self, line: &str) {
        self.history_at = None;
        if line.trim().is_empty() || self.history.back().is_some_and(|last| last == line) {
            return;
        }
        if self.history.len() == MAX_HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(line.to_string());
    }

    /// The line before (Up) the one shown from the history, if any.
    pub fn history_up(&mut self) -> Option<&str> {
        let at = match self.history_at {
            None => self.history.len().checked_sub(1)?,
            Some(0) => 0,
            Some(at) => at - 1,
        };
        self.history_at = Some(at);
        self.history.get(at).map(String::as_str)
    }

    /// The line after (Down) the one shown, or an empty line past the newest.
    pub fn history_down(&mut self) -> &str {
        match self.history_at {
            Some(at) if at + 1 < self.history.len() => {
                self.history_at = Some(at + 1);
                &self.history[at + 1]
            }
            _ => {
                self.history_at = None;
                ""
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(line: &str) -> Message {
        Message::parse(line).expect("test line parses")
    }

    fn names(w: &Windows) -> Vec<&str> {
        w.windows.iter().map(|w| w.name.as_str()).collect()
    }

    #[test]
    fn channels_and_queries_get_their_own_windows() {
        let mut w = Windows::default();
        w.incoming(&msg(":irc 001 me :Welcome"), Some("-- Welcome"), "me");
        w.incoming(
            &msg(":me!~m@h JOIN #lobby"),
            Some("-- me joined #lobby"),
            "me",
        );
        assert_eq!(names(&w), ["status", "#lobby"]);
        assert_eq!(w.active, 1, "our join shows the channel");
        w.incoming(
            &msg(":irc 353 me = #lobby :@alice me"),
            Some("-- names"),
            "me",
        );
        w.incoming(&msg(":bob!~b@h JOIN #lobby"), Some("-- bob joined"), "me");
        let members: Vec<&String> = w.windows[1].members.iter().collect();
        assert_eq!(members, ["@alice", "bob", "me"]);
        w.incoming(&msg(":bob!~b@h PRIVMSG me :psst"), Some("*bob* psst"), "me");
        assert_eq!(names(&w), ["status", "#lobby", "bob"]);
        assert!(w.windows[2].unread);
        w.incoming(&msg(":me PRIVMSG bob :hi"), Some("-> *bob* hi"), "me");
        assert_eq!(w.windows[2].lines, ["*bob* psst", "-> *bob* hi"]);
        w.incoming(
            &msg(":irc.test NOTICE * :*** hi"),
            Some("-irc.test- hi"),
            "me",
        );
        assert_eq!(
            w.windows[0].lines.back().map(String::as_str),
            Some("-irc.test- hi")
        );
        w.show(2);
        assert!(!w.windows[2].unread);
    }

    #[test]
    fn members_follow_parts_kicks_quits_and_nicks() {
        let mut w = Windows::default();
        w.incoming(&msg(":me!~m@h JOIN #a"), None, "me");
        w.incoming(&msg(":me!~m@h JOIN #b"), None, "me");
        w.incoming(&msg(":irc 353 me = #a :@bob carol me"), None, "me");
        w.incoming(&msg(":irc 353 me = #b :bob me"), None, "me");
        w.incoming(
            &msg(":bob!~b@h NICK robert"),
            Some("-- bob is now robert"),
            "me",
        );
        assert!(w.windows[1].members.contains("@robert"));
        assert!(w.windows[2].members.contains("robert"));
        assert_eq!(w.windows[1].lines, ["-- bob is now robert"]);
        w.incoming(&msg(":op!~o@h KICK #a carol"), Some("-- kicked"), "me");
        assert!(!w.windows[1].members.contains("carol"));
        w.incoming(&msg(":robert!~b@h QUIT :bye"), Some("-- robert quit"), "me");
        assert!(!w.windows[1].members.contains("@robert"));
        assert_eq!(
            w.windows[2].lines.back().map(String::as_str),
            Some("-- robert quit")
        );
        assert!(w.windows[0].lines.is_empty(), "not in status");
    }

    #[test]
    fn replies_go_where_we_look_and_scroll_back_is_bounded() {
        let mut w = Windows::default();
        w.incoming(&msg(":me!~m@h JOIN #a"), None, "me");
        w.incoming(
            &msg(":irc 311 me bob ~b h * :Bob"),
            Some("-- bob is ~b@h (Bob)"),
            "me",
        );
        assert_eq!(w.windows[1].lines, ["-- bob is ~b@h (Bob)"]);
        w.incoming(
            &msg(":irc 332 me #a :topic"),
            Some("-- topic of #a: topic"),
            "me",
        );
        assert_eq!(w.windows[1].lines.len(), 2);
        for i in 0..MAX_SCROLLBACK + 5 {
            w.local(&format!("line {i}"));
        }
        assert_eq!(w.windows[1].lines.len(), MAX_SCROLLBACK);
        w.scroll(10);
        assert_eq!(w.active().scroll, 10);
        w.local("one more");
        assert_eq!(
            w.active().scroll,
            11,
            "a reader scrolled up keeps their place"
        );
        w.scroll(-100);
        assert_eq!(w.active().scroll, 0);
    }

    #[test]
    fn history_walks_up_and_down() {
        let mut w = Windows::default();
        assert_eq!(w.history_up(), None);
        w.remember("one");
        w.remember("two");
        w.remember("two");
        assert_eq!(w.history_up(), Some("two"));
        assert_eq!(w.history_up(), Some("one"));
        assert_eq!(w.history_up(), Some("one"));
        assert_eq!(w.history_down(), "two");
        assert_eq!(w.history_down(), "");
    }
}
