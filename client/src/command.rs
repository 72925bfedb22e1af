//! What a typed line means: plain text for the current channel, or a slash-command,
//! translated to IRC lines. Pure: the session loop sends and prints what this returns.

use crate::irc::{format_line, is_channel, split_text};

/// Sent with QUIT when the user gives no message.
pub const DEFAULT_QUIT_MESSAGE: &str = "ringchat-client";

/// The text `/help` shows.
pub const HELP: &str = "\
commands:
  TEXT              say TEXT in the current channel or query (//TEXT sends a line starting with /)
  /join #chan [key] join a channel and make it the current one
  /part [#chan] [reason]  leave a channel (default: the current one)
  /msg NICK TEXT    private message
  /query NICK [TEXT]  talk to NICK privately: typed text goes to NICK; /query alone ends it
  /notice TARGET TEXT  a notice to a nick or channel
  /me ACTION        action in the current channel or query: * you ACTION
  /nick NEW         change nickname
  /names [#chan]    who is in the channel
  /who [MASK]       details of the current channel's members
  /whois NICK       who NICK is: address, channels, idle time, away message
  /list [FILTER]    the server's channels; FILTER keeps those whose name or topic holds it
                    (#rust* and ? are wildcards on the name)
  /topic [TEXT]     show or set the current channel's topic
  /mode [TARGET] [MODES]  show or change modes (default target: the current channel)
  /kick NICK [reason], /kick #chan NICK [reason]  kick a member
  /ban NICK|MASK, /unban MASK  ban (MODE +b) in the current channel; a nick bans NICK!*@*
  /invite NICK [#chan]  invite NICK to the current (or named) channel
  /away [MESSAGE]   mark yourself away; without MESSAGE, back again
  /raw LINE         send LINE to the server as it is
  /quit [MESSAGE]   leave the server
  /help             this list
Tab completes nicks (at the start of a line with \": \").";

/// Where typed text and channel commands go: the current channel, and the open query
/// (a nick typed text goes to instead, see `/query`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Place<'a> {
    /// The channel joined last and still joined.
    pub channel: Option<&'a str>,
    /// The nick of the open query, if any: text and `/me` go there.
    pub query: Option<&'a str>,
}

impl<'a> Place<'a> {
    /// Where text goes: the query if one is open, else the channel.
    pub fn target(&self) -> Option<&'a str> {
        self.query.or(self.channel)
    }
}

/// What the session does with one input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send these IRC lines (without CRLF). With `echo`, each line is also shown as if
    /// the server had relayed it from us, since a server does not echo our own
    /// PRIVMSGs back.
    Send { lines: Vec<String>, echo: bool },
    /// Send this QUIT line, then wait for the server to close the link and exit.
    Quit { line: String },
    /// Show this text locally; nothing is sent.
    Show(String),
    /// Show this as an error (`!! ...`); nothing is sent.
    Error(String),
    /// Open a query with `nick` (typed text goes there), or end the open one (`None`);
    /// then send `lines` (PRIVMSGs to it, echoed).
    Query {
        nick: Option<String>,
        lines: Vec<String>,
    },
    /// Send LIST and show only the channels whose name or topic matches `filter`.
    List { filter: Option<String> },
    /// Nothing to do (an empty line).
    Nothing,
}

/// Translates one input line, given where text and channel commands go by default.
pub fn translate(input: &str, place: Place) -> Action {
    let current = place.channel;
    let input = input.trim_end_matches(['\r', '\n']);
    if input.trim().is_empty() {
        return Action::Nothing;
    }
    let Some(command_line) = input.strip_prefix('/') else {
        return say(place.target(), input);
    };
    if command_line.starts_with('/') {
        return say(place.target(), command_line);
    }
    let (name, args) = match command_line.split_once(' ') {
        Some((name, args)) => (name, args.trim()),
        None => (command_line, ""),
    };
    let (first, rest) = match args.split_once(' ') {
        Some((first, rest)) => (first, rest.trim_start()),
        None => (args, ""),
    };
    match name.to_ascii_lowercase().as_str() {
        "join" | "j" => join(first, rest),
        "part" | "leave" => part(current, args),
        "msg" => private_message(first, rest),
        "query" => query(first, rest),
        "notice" => notice(first, rest),
        "me" => me(place.target(), args),
        "whois" | "wi" => match first {
            "" => usage("/whois NICK"),
            nick => send(format_line("WHOIS", &[nick])),
        },
        "list" => Action::List {
            filter: (!args.is_empty()).then(|| args.to_string()),
        },
        "mode" => mode(current, args),
        "kick" | "k" => kick(current, first, rest),
        "ban" => ban(current, args, '+'),
        "unban" => ban(current, args, '-'),
        "invite" => invite(current, first, rest),
        "nick" => match first {
            "" => usage("/nick NEW"),
            nick => send(format_line("NICK", &[nick])),
        },
        "names" => with_channel(current, first, |chan| format_line("NAMES", &[chan])),
        "topic" => topic(current, args),
        "who" => with_channel(current, first, |target| format_line("WHO", &[target])),
        "away" => match args {
            "" => send("AWAY".to_string()),
            message => send(format_line("AWAY", &[message])),
        },
        "quit" | "exit" => {
            let message = if args.is_empty() {
                DEFAULT_QUIT_MESSAGE
            } else {
                args
            };
            Action::Quit {
                line: format_line("QUIT", &[message]),
            }
        }
        "help" => Action::Show(HELP.to_string()),
        "raw" | "quote" => match args {
            "" => usage("/raw LINE"),
            line => send(line.replace(['\r', '\n', '\0'], "")),
        },
        _ => Action::Error(format!("unknown command /{name} (try /help)")),
    }
}

fn send(line: String) -> Action {
    Action::Send {
        lines: vec![line],
        echo: false,
    }
}

fn usage(form: &str) -> Action {
    Action::Error(format!("usage: {form}"))
}

fn no_channel() -> Action {
    Action::Error("not in a channel (use /join #channel)".to_string())
}

/// PRIVMSG `text` to `target`, cut into lines that fit; echoed locally.
fn privmsg(target: &str, text: &str) -> Action {
    Action::Send {
        lines: split_text(target, text, 0)
            .iter()
            .map(|piece| format_line("PRIVMSG", &[target, piece]))
            .collect(),
        echo: true,
    }
}

fn say(current: Option<&str>, text: &str) -> Action {
    match current {
        Some(channel) => privmsg(channel, text),
        None => no_channel(),
    }
}

fn private_message(target: &str, text: &str) -> Action {
    if target.is_empty() || text.is_empty() {
        return usage("/msg NICK TEXT");
    }
    privmsg(target, text)
}

/// `/query NICK [TEXT]`: opens the query, and sends TEXT when given; `/query` alone
/// ends the open query.
fn query(nick: &str, text: &str) -> Action {
    if nick.is_empty() {
        return Action::Query {
            nick: None,
            lines: Vec::new(),
        };
    }
    if is_channel(nick) {
        return usage("/query NICK [TEXT] (a nick, not a channel: use /join)");
    }
    let lines = match (text, privmsg(nick, text)) {
        ("", _) => Vec::new(),
        (_, Action::Send { lines, .. }) => lines,
        (_, other) => return other,
    };
    Action::Query {
        nick: Some(nick.to_string()),
        lines,
    }
}

fn notice(target: &str, text: &str) -> Action {
    if target.is_empty() || text.is_empty() {
        return usage("/notice TARGET TEXT");
    }
    Action::Send {
        lines: split_text(target, text, 0)
            .iter()
            .map(|piece| format_line("NOTICE", &[target, piece]))
            .collect(),
        echo: true,
    }
}

/// `/mode`: the current channel's modes; `/mode +t` changes them; `/mode #chan ...`
/// or `/mode nick ...` names the target.
fn mode(current: Option<&str>, args: &str) -> Action {
    let mut words: Vec<&str> = args.split_whitespace().collect();
    let explicit = words.first().is_some_and(|w| !w.starts_with(['+', '-']));
    let target = if explicit {
        words.remove(0)
    } else {
        match current {
            Some(channel) => channel,
            None => return no_channel(),
        }
    };
    let mut params = vec![target];
    params.extend(words);
    send(format_line("MODE", &params))
}

/// `/kick NICK [reason]` in the current channel, or `/kick #chan NICK [reason]`.
fn kick(current: Option<&str>, first: &str, rest: &str) -> Action {
    let (channel, nick, reason) = if is_channel(first) {
        let (nick, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        (Some(first), nick, reason.trim_start())
    } else {
        (current, first, rest)
    };
    let Some(channel) = channel else {
        return no_channel();
    };
    match (nick, reason) {
        ("", _) => usage("/kick [#chan] NICK [reason]"),
        (nick, "") => send(format_line("KICK", &[channel, nick])),
        (nick, reason) => send(format_line("KICK", &[channel, nick, reason])),
    }
}

/// `/ban NICK|MASK` (`sign` '+') or `/unban MASK` ('-') in the current channel, or in
/// the channel named first. A bare nick becomes the mask `NICK!*@*`; `/ban` alone
/// lists the bans.
fn ban(current: Option<&str>, args: &str, sign: char) -> Action {
    let mut words = args.split_whitespace().peekable();
    let channel = match words.peek() {
        Some(word) if is_channel(word) => words.next(),
        _ => current,
    };
    let Some(channel) = channel else {
        return no_channel();
    };
    let masks: Vec<String> = words
        .map(|word| {
            if word.contains(['!', '@', '*', '?']) {
                word.to_string()
            } else {
                format!("{word}!*@*")
            }
        })
        .collect();
    if masks.is_empty() {
        return if sign == '+' {
            send(format_line("MODE", &[channel, "+b"]))
        } else {
            usage("/unban [#chan] MASK")
        };
    }
    let modes = format!("{sign}{}", "b".repeat(masks.len()));
    let mut params = vec![channel, modes.as_str()];
    params.extend(masks.iter().map(String::as_str));
    send(format_line("MODE", &params))
}

/// `/invite NICK [#chan]`: INVITE nick to the named or current channel.
fn invite(current: Option<&str>, nick: &str, channel: &str) -> Action {
    if nick.is_empty() {
        return usage("/invite NICK [#chan]");
    }
    match (channel, current) {
        ("", None) => no_channel(),
        ("", Some(current)) => send(format_line("INVITE", &[nick, current])),
        (channel, _) => send(format_line("INVITE", &[nick, channel])),
    }
}

fn me(current: Option<&str>, action: &str) -> Action {
    let Some(channel) = current else {
        return no_channel();
    };
    if action.is_empty() {
        return usage("/me ACTION");
    }
    const CTCP_ACTION_OVERHEAD: usize = "\x01ACTION \x01".len();
    Action::Send {
        lines: split_text(channel, action, CTCP_ACTION_OVERHEAD)
            .iter()
            .map(|piece| format_line("PRIVMSG", &[channel, &format!("\x01ACTION {piece}\x01")]))
            .collect(),
        echo: true,
    }
}

fn join(channel: &str, key: &str) -> Action {
    if channel.is_empty() {
        return usage("/join #channel [key]");
    }
    let channel = if is_channel(channel) {
        channel.to_string()
    } else {
        format!("#{channel}")
    };
    if key.is_empty() {
        send(format_line("JOIN", &[&channel]))
    } else {
        send(format_line("JOIN", &[&channel, key]))
    }
}

fn part(current: Option<&str>, args: &str) -> Action {
    let (channel, reason) = match args.split_once(' ') {
        Some((first, reason)) if is_channel(first) => (Some(first), reason.trim_start()),
        None if is_channel(args) => (Some(args), ""),
        _ => (current, args),
    };
    match (channel, reason) {
        (None, _) => no_channel(),
        (Some(channel), "") => send(format_line("PART", &[channel])),
        (Some(channel), reason) => send(format_line("PART", &[channel, reason])),
    }
}

fn topic(current: Option<&str>, text: &str) -> Action {
    match (current, text) {
        (None, _) => no_channel(),
        (Some(channel), "") => send(format_line("TOPIC", &[channel])),
        (Some(channel), text) => send(format_line("TOPIC", &[channel, text])),
    }
}

/// A command about a channel: the one named in `explicit`, else the current one.
fn with_channel(current: Option<&str>, explicit: &str, line: impl Fn(&str) -> String) -> Action {
    match (explicit, current) {
        ("", None) => no_channel(),
        ("", Some(channel)) => send(line(channel)),
        (explicit, _) => send(line(explicit)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOBBY: Place = Place {
        channel: Some("#lobby"),
        query: None,
    };
    const NOWHERE: Place = Place {
        channel: None,
        query: None,
    };

    fn sends(lines: &[&str]) -> Action {
        Action::Send {
            lines: lines.iter().map(|l| l.to_string()).collect(),
            echo: false,
        }
    }

    fn says(lines: &[&str]) -> Action {
        Action::Send {
            lines: lines.iter().map(|l| l.to_string()).collect(),
            echo: true,
        }
    }

    #[test]
    fn text_goes_to_the_current_channel() {
        assert_eq!(
            translate("hi all", LOBBY),
            says(&["PRIVMSG #lobby :hi all"])
        );
        assert_eq!(translate("hi\r\n", LOBBY), says(&["PRIVMSG #lobby hi"]));
        assert_eq!(
            translate("//etc/passwd", LOBBY),
            says(&["PRIVMSG #lobby /etc/passwd"])
        );
        assert!(matches!(translate("hi", NOWHERE), Action::Error(_)));
        assert_eq!(translate("   ", LOBBY), Action::Nothing);
        assert_eq!(translate("", NOWHERE), Action::Nothing);
    }

    #[test]
    fn long_text_is_split_into_several_privmsgs() {
        let long = "x".repeat(1000);
        let Action::Send { lines, echo: true } = translate(&long, LOBBY) else {
            panic!("expected a send");
        };
        assert!(lines.len() >= 3);
        assert!(lines
            .iter()
            .all(|l| l.len() + 2 <= crate::irc::MAX_LINE_BYTES));
    }

    #[test]
    fn join_and_part() {
        assert_eq!(translate("/join #rust", LOBBY), sends(&["JOIN #rust"]));
        assert_eq!(translate("/join rust", NOWHERE), sends(&["JOIN #rust"]));
        assert_eq!(
            translate("/JOIN #k sesame", NOWHERE),
            sends(&["JOIN #k sesame"])
        );
        assert!(matches!(translate("/join", LOBBY), Action::Error(_)));
        assert_eq!(translate("/part", LOBBY), sends(&["PART #lobby"]));
        assert_eq!(
            translate("/part bye now", LOBBY),
            sends(&["PART #lobby :bye now"])
        );
        assert_eq!(translate("/part #rust", LOBBY), sends(&["PART #rust"]));
        assert_eq!(
            translate("/part #rust later", LOBBY),
            sends(&["PART #rust later"])
        );
        assert!(matches!(translate("/part", NOWHERE), Action::Error(_)));
    }

    #[test]
    fn messages_and_actions() {
        assert_eq!(
            translate("/msg bob hi there", LOBBY),
            says(&["PRIVMSG bob :hi there"])
        );
        assert!(matches!(translate("/msg bob", LOBBY), Action::Error(_)));
        assert_eq!(
            translate("/me waves", LOBBY),
            says(&["PRIVMSG #lobby :\x01ACTION waves\x01"])
        );
        assert!(matches!(translate("/me", LOBBY), Action::Error(_)));
        assert!(matches!(translate("/me waves", NOWHERE), Action::Error(_)));
    }

    #[test]
    fn channel_queries() {
        assert_eq!(translate("/names", LOBBY), sends(&["NAMES #lobby"]));
        assert_eq!(translate("/names #rust", LOBBY), sends(&["NAMES #rust"]));
        assert_eq!(translate("/who", LOBBY), sends(&["WHO #lobby"]));
        assert_eq!(translate("/topic", LOBBY), sends(&["TOPIC #lobby"]));
        assert_eq!(
            translate("/topic all about rust", LOBBY),
            sends(&["TOPIC #lobby :all about rust"])
        );
        assert!(matches!(translate("/topic", NOWHERE), Action::Error(_)));
    }

    #[test]
    fn nick_away_raw_quit_help() {
        assert_eq!(translate("/nick rob", LOBBY), sends(&["NICK rob"]));
        assert!(matches!(translate("/nick", LOBBY), Action::Error(_)));
        assert_eq!(
            translate("/away lunch break", LOBBY),
            sends(&["AWAY :lunch break"])
        );
        assert_eq!(translate("/away", LOBBY), sends(&["AWAY"]));
        assert_eq!(
            translate("/raw MODE #lobby +t", LOBBY),
            sends(&["MODE #lobby +t"])
        );
        assert_eq!(
            translate("/quit see you", LOBBY),
            Action::Quit {
                line: "QUIT :see you".to_string()
            }
        );
        assert_eq!(
            translate("/quit", NOWHERE),
            Action::Quit {
                line: format!("QUIT {DEFAULT_QUIT_MESSAGE}")
            }
        );
        assert_eq!(translate("/help", NOWHERE), Action::Show(HELP.to_string()));
        assert!(matches!(translate("/frobnicate", LOBBY), Action::Error(e) if e.contains("/help")));
    }

    #[test]
    fn whois_list_notice() {
        assert_eq!(translate("/whois bob", LOBBY), sends(&["WHOIS bob"]));
        assert!(matches!(translate("/whois", LOBBY), Action::Error(_)));
        assert_eq!(translate("/list", NOWHERE), Action::List { filter: None });
        assert_eq!(
            translate("/list rust", NOWHERE),
            Action::List {
                filter: Some("rust".into())
            }
        );
        assert_eq!(
            translate("/notice bob build done", LOBBY),
            says(&["NOTICE bob :build done"])
        );
        assert!(matches!(translate("/notice bob", LOBBY), Action::Error(_)));
    }

    #[test]
    fn queries_take_typed_text() {
        assert_eq!(
            translate("/query bob", LOBBY),
            Action::Query {
                nick: Some("bob".into()),
                lines: vec![]
            }
        );
        assert_eq!(
            translate("/query bob hi there", LOBBY),
            Action::Query {
                nick: Some("bob".into()),
                lines: vec!["PRIVMSG bob :hi there".into()]
            }
        );
        assert_eq!(
            translate("/query", LOBBY),
            Action::Query {
                nick: None,
                lines: vec![]
            }
        );
        assert!(matches!(translate("/query #rust", LOBBY), Action::Error(_)));
        let with_bob = Place {
            channel: Some("#lobby"),
            query: Some("bob"),
        };
        assert_eq!(translate("psst", with_bob), says(&["PRIVMSG bob psst"]));
        assert_eq!(
            translate("/me hugs", with_bob),
            says(&["PRIVMSG bob :\x01ACTION hugs\x01"])
        );
        // Channel commands still act on the channel.
        assert_eq!(translate("/topic", with_bob), sends(&["TOPIC #lobby"]));
    }

    #[test]
    fn channel_operator_commands() {
        assert_eq!(translate("/mode", LOBBY), sends(&["MODE #lobby"]));
        assert_eq!(translate("/mode +tn", LOBBY), sends(&["MODE #lobby +tn"]));
        assert_eq!(
            translate("/mode #rust +o bob", LOBBY),
            sends(&["MODE #rust +o bob"])
        );
        assert_eq!(translate("/mode me +i", NOWHERE), sends(&["MODE me +i"]));
        assert!(matches!(translate("/mode +t", NOWHERE), Action::Error(_)));
        assert_eq!(translate("/kick eve", LOBBY), sends(&["KICK #lobby eve"]));
        assert_eq!(
            translate("/kick eve stop spamming", LOBBY),
            sends(&["KICK #lobby eve :stop spamming"])
        );
        assert_eq!(
            translate("/kick #rust eve spam", LOBBY),
            sends(&["KICK #rust eve spam"])
        );
        assert!(matches!(translate("/kick", LOBBY), Action::Error(_)));
        assert_eq!(
            translate("/ban eve", LOBBY),
            sends(&["MODE #lobby +b eve!*@*"])
        );
        assert_eq!(
            translate("/ban #rust *!*@10.0.0.* mal", LOBBY),
            sends(&["MODE #rust +bb *!*@10.0.0.* mal!*@*"])
        );
        assert_eq!(translate("/ban", LOBBY), sends(&["MODE #lobby +b"]));
        assert_eq!(
            translate("/unban eve!*@*", LOBBY),
            sends(&["MODE #lobby -b eve!*@*"])
        );
        assert_eq!(
            translate("/invite bob", LOBBY),
            sends(&["INVITE bob #lobby"])
        );
        assert_eq!(
            translate("/invite bob #secret", NOWHERE),
            sends(&["INVITE bob #secret"])
        );
        assert!(matches!(
            translate("/invite bob", NOWHERE),
            Action::Error(_)
        ));
    }
}
