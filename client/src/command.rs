//! What a typed line means: plain text for the current channel, or a slash-command,
//! translated to IRC lines. Pure: the session loop sends and prints what this returns.

use crate::irc::{format_line, is_channel, split_text};

/// Sent with QUIT when the user gives no message.
pub const DEFAULT_QUIT_MESSAGE: &str = "ringchat-client";

/// The text `/help` shows.
pub const HELP: &str = "\
commands:
  TEXT              say TEXT in the current channel (//TEXT sends a line starting with /)
  /join #chan [key] join a channel and make it the current one
  /part [#chan] [reason]  leave a channel (default: the current one)
  /msg NICK TEXT    private message
  /me ACTION        action in the current channel: * you ACTION
  /nick NEW         change nickname
  /names [#chan]    who is in the channel
  /topic [TEXT]     show or set the current channel's topic
  /who [MASK]       details of the current channel's members
  /away [MESSAGE]   mark yourself away; without MESSAGE, back again
  /raw LINE         send LINE to the server as it is
  /quit [MESSAGE]   leave the server
  /help             this list";

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
    /// Nothing to do (an empty line).
    Nothing,
}

/// Translates one input line, given the current channel (where text and channel
/// commands go by default).
pub fn translate(input: &str, current: Option<&str>) -> Action {
    let input = input.trim_end_matches(['\r', '\n']);
    if input.trim().is_empty() {
        return Action::Nothing;
    }
    let Some(command_line) = input.strip_prefix('/') else {
        return say(current, input);
    };
    if command_line.starts_with('/') {
        return say(current, command_line);
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
        "msg" | "query" => private_message(first, rest),
        "me" => me(current, args),
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

    const LOBBY: Option<&str> = Some("#lobby");

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
        assert!(matches!(translate("hi", None), Action::Error(_)));
        assert_eq!(translate("   ", LOBBY), Action::Nothing);
        assert_eq!(translate("", None), Action::Nothing);
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
        assert_eq!(translate("/join rust", None), sends(&["JOIN #rust"]));
        assert_eq!(
            translate("/JOIN #k sesame", None),
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
        assert!(matches!(translate("/part", None), Action::Error(_)));
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
        assert!(matches!(translate("/me waves", None), Action::Error(_)));
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
        assert!(matches!(translate("/topic", None), Action::Error(_)));
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
            translate("/quit", None),
            Action::Quit {
                line: format!("QUIT {DEFAULT_QUIT_MESSAGE}")
            }
        );
        assert_eq!(translate("/help", None), Action::Show(HELP.to_string()));
        assert!(matches!(translate("/frobnicate", LOBBY), Action::Error(e) if e.contains("/help")));
    }
}
