//! Tab completion of nicks: the nicks seen (NAMES replies, joins, messages, nick
//! changes), and the completion of the word before the cursor against them, as
//! irssi does (`ali<Tab>` gives `alice: ` at the start of a line, `alice ` elsewhere).
//!
//! Owns: the list of nicks and the pure completion. Must not: block (the line editor
//! calls it on Tab; the reader thread updates the list under a short lock).

use std::sync::{Arc, Mutex, PoisonError};

use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};

use crate::irc::{numeric, Message};

/// Most nicks kept: the oldest seen are forgotten first, so a busy network cannot
/// grow the list without bound.
const MAX_NICKS: usize = 4096;

/// The nicks seen, most recently active last. Shared by the reader thread (which
/// records them) and the line editor (which completes from them).
#[derive(Debug, Clone, Default)]
pub struct NickList(Arc<Mutex<Vec<String>>>);

impl NickList {
    /// Records the nicks a message shows: its sender, NAMES entries, a new nick.
    pub fn observe(&self, msg: &Message) {
        match msg.command.as_str() {
            numeric::RPL_NAMREPLY => {
                for entry in msg.param(3).split_whitespace() {
                    // Membership prefixes (@ op, + voice, ...) are not part of the nick.
                    self.add(entry.trim_start_matches(['~', '&', '@', '%', '+']));
                }
            }
            "NICK" => {
                if let Some(old) = msg.source_nick() {
                    self.remove(old);
                }
                self.add(msg.param(0));
            }
            "QUIT" => {
                if let Some(nick) = msg.source_nick() {
                    self.remove(nick);
                }
            }
            "JOIN" | "PRIVMSG" | "NOTICE" => {
                if let Some(nick) = msg.source_nick().filter(|n| !n.contains('.')) {
                    self.add(nick);
                }
            }
            _ => {}
        }
    }

    fn add(&self, nick: &str) {
        if nick.is_empty() {
            return;
        }
        let mut nicks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        nicks.retain(|n| !n.eq_ignore_ascii_case(nick));
        if nicks.len() >= MAX_NICKS {
            nicks.remove(0);
        }
        nicks.push(nick.to_string());
    }

    fn remove(&self, nick: &str) {
        let mut nicks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        nicks.retain(|n| !n.eq_ignore_ascii_case(nick));
    }

    /// A copy of the nicks, most recently active last.
    pub fn snapshot(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Completes the word that ends at byte `pos` of `line` against `nicks` (case
/// insensitive, most recently active first): where the word starts, and the
/// replacements, each followed by `": "` at the start of the line and `" "` elsewhere.
pub fn complete_nick(line: &str, pos: usize, nicks: &[String]) -> (usize, Vec<String>) {
    let before = line.get(..pos).unwrap_or(line);
    let start = before.rfind(' ').map_or(0, |space| space + 1);
    let word = &before[start..];
    if word.is_empty() || word.starts_with(['/', '#']) {
        return (start, Vec::new());
    }
    let suffix = if start == 0 { ": " } else { " " };
    let word = word.to_ascii_lowercase();
    let found = nicks
        .iter()
        .rev()
        .filter(|nick| nick.to_ascii_lowercase().starts_with(&word))
        .map(|nick| format!("{nick}{suffix}"))
        .collect();
    (start, found)
}

/// The line editor's helper: Tab completes nicks; nothing else is changed.
pub struct NickCompleter {
    pub nicks: NickList,
}

impl Completer for NickCompleter {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let (start, found) = complete_nick(line, pos, &self.nicks.snapshot());
        let pairs = found
            .into_iter()
            .map(|nick| Pair {
                display: nick.trim_end_matches([':', ' ']).to_string(),
                replacement: nick,
            })
            .collect();
        Ok((start, pairs))
    }
}

impl Hinter for NickCompleter {
    type Hint = String;
}
impl Highlighter for NickCompleter {}
impl Validator for NickCompleter {}
impl Helper for NickCompleter {}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(line: &str) -> Message {
        Message::parse(line).expect("test line parses")
    }

    #[test]
    fn learns_nicks_from_traffic() {
        let nicks = NickList::default();
        nicks.observe(&msg(":irc 353 me = #lobby :@alice +bob me"));
        nicks.observe(&msg(":carol!~c@h JOIN #lobby"));
        nicks.observe(&msg(":bob!~b@h NICK robert"));
        nicks.observe(&msg(":alice!~a@h QUIT :bye"));
        nicks.observe(&msg(":irc.test NOTICE * :*** hello"));
        assert_eq!(nicks.snapshot(), ["me", "carol", "robert"]);
        nicks.observe(&msg(":me!~m@h PRIVMSG #lobby :hi"));
        assert_eq!(nicks.snapshot(), ["carol", "robert", "me"]);
    }

    #[test]
    fn completes_the_word_before_the_cursor() {
        let nicks: Vec<String> = ["alice", "Albert", "bob"].map(String::from).to_vec();
        assert_eq!(
            complete_nick("al", 2, &nicks),
            (0, vec!["Albert: ".to_string(), "alice: ".to_string()])
        );
        assert_eq!(
            complete_nick("thanks BO", 9, &nicks),
            (7, vec!["bob ".to_string()])
        );
        assert_eq!(complete_nick("thanks ", 7, &nicks), (7, vec![]));
        assert_eq!(complete_nick("/whois al", 9, &nicks).1.len(), 2);
        assert_eq!(complete_nick("/wh", 3, &nicks), (0, vec![]));
        assert_eq!(complete_nick("#lo", 3, &nicks), (0, vec![]));
    }
}
