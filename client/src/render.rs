//! How incoming IRC traffic looks on screen: one parsed message in, one readable line
//! out (`[12:01] <alice> hi`, `-- carol joined #lobby`, `!! ...` for errors). Pure: the
//! caller supplies the clock and who we are, and decides where the line is printed.
//! The line keeps mIRC formatting codes (bold, colours) and nothing else that is a
//! control character; the output turns them into colours or removes them
//! ([`crate::format`]).

use crate::format::is_format_code;
use crate::irc::{is_channel, numeric, Message};

/// What rendering needs to know about us and the moment.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    /// Our current nick: messages from it are our own, echoed locally.
    pub own_nick: &'a str,
    /// The channel typed lines go to; messages for other channels name theirs.
    pub current_channel: Option<&'a str>,
    /// Local time as `HH:MM`, stamped on conversation lines.
    pub clock: &'a str,
    /// The filter of the `/list` in progress: channels (322) not matching it are not
    /// shown (see [`list_matches`]).
    pub list_filter: Option<&'a str>,
}

/// The readable line for `msg`, or `None` for traffic not worth showing (PING/PONG,
/// CAP, ISUPPORT, end-of-list markers).
pub fn render(msg: &Message, view: &View) -> Option<String> {
    let nick = msg.source_nick().unwrap_or("server");
    let line = match msg.command.as_str() {
        "PRIVMSG" => chat_line(msg, view, nick, false),
        "NOTICE" => chat_line(msg, view, nick, true),
        "JOIN" => format!("-- {nick} joined {}", msg.param(0)),
        "PART" => format!("-- {nick} left {}{}", msg.param(0), reason(msg.param(1))),
        "QUIT" => format!("-- {nick} quit{}", reason(msg.param(0))),
        "NICK" => format!("-- {nick} is now known as {}", msg.param(0)),
        "KICK" => format!(
            "-- {} was kicked from {} by {nick}{}",
            msg.param(1),
            msg.param(0),
            reason(msg.param(2))
        ),
        "TOPIC" => format!(
            "-- {nick} changed the topic of {} to: {}",
            msg.param(0),
            msg.param(1)
        ),
        "MODE" => format!(
            "-- {nick} sets mode {} on {}",
            msg.params.get(1..).unwrap_or_default().join(" "),
            msg.param(0)
        ),
        "INVITE" => format!("-- {nick} invites {} to {}", msg.param(0), msg.param(1)),
        "ERROR" => format!("!! {}", msg.last_param()),
        "PING" | "PONG" | "CAP" => return None,
        code if is_numeric(code) => return numeric_line(code, msg, view),
        other => format!("-- {nick} {other} {}", msg.params.join(" ")),
    };
    Some(sanitize(&line))
}

/// PRIVMSG and NOTICE: `[12:01] <alice> hi`, `[12:01] * bob waves`, with the channel
/// named when it is not the current one, `*alice*` for private messages to us and
/// `-> *bob*` for ours to others, `-alice-` for notices.
fn chat_line(msg: &Message, view: &View, nick: &str, notice: bool) -> String {
    let target = msg.param(0);
    let mut text = msg.param(1);
    let mut ctcp = None;
    if let Some(inner) = text.strip_prefix('\x01') {
        let inner = inner.strip_suffix('\x01').unwrap_or(inner);
        let (command, args) = inner.split_once(' ').unwrap_or((inner, ""));
        ctcp = Some(command);
        text = args;
    }
    let from_us = nick.eq_ignore_ascii_case(view.own_nick);
    let private = !is_channel(target);
    let body = match ctcp {
        Some("ACTION") => format!("* {nick} {text}"),
        Some(other) => {
            return format!("-- {nick} sent CTCP {other} {text}")
                .trim_end()
                .to_string()
        }
        None if notice => format!("-{nick}- {text}"),
        None if private && from_us => text.to_string(),
        None if private => format!("*{nick}* {text}"),
        None => format!("<{nick}> {text}"),
    };
    let place = match view.current_channel {
        _ if private && from_us => format!("-> *{target}* "),
        _ if private => String::new(),
        Some(current) if current.eq_ignore_ascii_case(target) => String::new(),
        _ => format!("{target} "),
    };
    format!("[{}] {place}{body}", view.clock)
}

/// ` (reason)`, or nothing when the reason is empty.
fn reason(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(" ({text})")
    }
}

fn is_numeric(command: &str) -> bool {
    command.len() == 3 && command.bytes().all(|b| b.is_ascii_digit())
}

/// Numeric replies. The first parameter is our own nick and is left out; errors (4xx,
/// 5xx) become `!! subject: text`; well-known replies get a sentence; any other one
/// shows its parameters as they are.
fn numeric_line(code: &str, msg: &Message, view: &View) -> Option<String> {
    let args = msg.params.get(1..).unwrap_or_default();
    let arg = |i: usize| args.get(i).map_or("", String::as_str);
    let line = match code {
        numeric::RPL_ISUPPORT
        | numeric::RPL_MYINFO
        | numeric::RPL_ENDOFWHO
        | numeric::RPL_ENDOFNAMES
        | numeric::RPL_ENDOFWHOIS
        | numeric::RPL_ENDOFBANLIST
        | numeric::RPL_LISTSTART
        | numeric::RPL_CREATIONTIME
        | numeric::RPL_MOTDSTART
        | numeric::RPL_ENDOFMOTD => return None,
        // Not an error for the user: the server simply has no message of the day.
        numeric::ERR_NOMOTD => format!("-- {}", msg.last_param()),
        numeric::RPL_NAMREPLY => format!("-- names {}: {}", arg(1), arg(2)),
        numeric::RPL_TOPIC => format!("-- topic of {}: {}", arg(0), arg(1)),
        numeric::RPL_NOTOPIC => format!("-- {} has no topic", arg(0)),
        numeric::RPL_TOPICWHOTIME => format!("-- topic of {} set by {}", arg(0), arg(1)),
        // `[<u> <m>] :Current local users <u>, max <m>`: the sentence says it all.
        numeric::RPL_LOCALUSERS | numeric::RPL_GLOBALUSERS => format!("-- {}", msg.last_param()),
        numeric::RPL_AWAY => format!("-- {} is away: {}", arg(0), arg(1)),
        // WHOIS replies (Modern IRC, "WHOIS message"): one line each, named by the nick.
        numeric::RPL_WHOISUSER => format!(
            "-- {} is {}@{} ({})",
            arg(0),
            arg(1),
            arg(2),
            msg.last_param()
        ),
        numeric::RPL_WHOISSERVER => format!("-- {} is on {} ({})", arg(0), arg(1), arg(2)),
        numeric::RPL_WHOISOPERATOR => format!("-- {} is an IRC operator", arg(0)),
        numeric::RPL_WHOISIDLE => format!(
            "-- {} has been idle {}",
            arg(0),
            arg(1)
                .parse()
                .map_or_else(|_| arg(1).to_string(), idle_time)
        ),
        numeric::RPL_WHOISCHANNELS => format!("-- {} is in {}", arg(0), msg.last_param()),
        numeric::RPL_WHOISACCOUNT => format!("-- {} is logged in as {}", arg(0), arg(1)),
        numeric::RPL_WHOISSECURE => format!("-- {} is using a secure connection", arg(0)),
        numeric::RPL_LIST => {
            if let Some(filter) = view.list_filter {
                if !list_matches(filter, arg(0), arg(2)) {
                    return None;
                }
            }
            format!("-- {} ({} users): {}", arg(0), arg(1), arg(2))
        }
        numeric::RPL_LISTEND => "-- end of the channel list".to_string(),
        numeric::RPL_CHANNELMODEIS => format!(
            "-- modes of {}: {}",
            arg(0),
            args.get(1..).unwrap_or_default().join(" ")
        ),
        numeric::RPL_UMODEIS => format!("-- your modes: {}", arg(0)),
        numeric::RPL_BANLIST if arg(2).is_empty() => format!("-- {} bans {}", arg(0), arg(1)),
        numeric::RPL_BANLIST => format!("-- {} bans {} (set by {})", arg(0), arg(1), arg(2)),
        numeric::RPL_INVITING => format!("-- invited {} to {}", arg(0), arg(1)),
        numeric::RPL_WHOREPLY => {
            let realname = arg(6).split_once(' ').map_or("", |(_, name)| name);
            format!(
                "-- {} {} ({}@{}) {} {}",
                arg(0),
                arg(4),
                arg(1),
                arg(2),
                arg(5),
                realname
            )
        }
        _ if code.starts_with(['4', '5']) => match args.split_last() {
            Some((text, subjects)) if !subjects.is_empty() => {
                format!("!! {}: {text}", subjects.join(" "))
            }
            Some((text, _)) => format!("!! {text}"),
            None => format!("!! error {code}"),
        },
        _ if args.is_empty() => return None,
        _ => format!("-- {}", args.join(" ")),
    };
    Some(sanitize(&line))
}

/// `3d 4h`, `2h 5m`, `1m 5s`, `42s`: an idle time in seconds, for people.
fn idle_time(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// Whether a channel of a LIST reply passes `/list FILTER`: with `*` or `?` in it, a
/// wildcard match on the channel's name; otherwise the name or the topic contains it.
/// Case is ignored either way.
pub fn list_matches(filter: &str, channel: &str, topic: &str) -> bool {
    let filter = filter.to_lowercase();
    let channel = channel.to_lowercase();
    if filter.contains(['*', '?']) {
        let pattern: Vec<char> = filter.chars().collect();
        let name: Vec<char> = channel.chars().collect();
        return wildcard_match(&pattern, &name);
    }
    channel.contains(&filter) || topic.to_lowercase().contains(&filter)
}

/// `*` any run of characters, `?` one character; iterative, linear in practice.
fn wildcard_match(pattern: &[char], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Removes every control character but the mIRC formatting codes, so that nothing a
/// peer sends can move the cursor, change the terminal's state or break the line
/// being typed; the formatting codes are turned into colours or removed on output.
pub fn sanitize(text: &str) -> String {
    text.chars()
        .filter(|&c| !c.is_control() || is_format_code(c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIEW: View = View {
        own_nick: "me",
        current_channel: Some("#lobby"),
        clock: "12:01",
        list_filter: None,
    };

    /// The line as a pipe shows it (formatting removed).
    fn show(line: &str) -> Option<String> {
        render(&Message::parse(line).expect("test line parses"), &VIEW)
            .map(|text| crate::format::strip(&text))
    }

    fn shows(line: &str, expected: &str) {
        assert_eq!(show(line).as_deref(), Some(expected), "for {line:?}");
    }

    #[test]
    fn channel_messages_and_actions() {
        shows(":alice!~a@h PRIVMSG #lobby :hi", "[12:01] <alice> hi");
        shows(":alice!~a@h PRIVMSG #LOBBY :hi", "[12:01] <alice> hi");
        shows(":alice!~a@h PRIVMSG #rust :hi", "[12:01] #rust <alice> hi");
        shows(
            ":bob!~b@h PRIVMSG #lobby :\x01ACTION waves\x01",
            "[12:01] * bob waves",
        );
        shows(
            ":bob!~b@h PRIVMSG #rust :\x01ACTION waves\x01",
            "[12:01] #rust * bob waves",
        );
        shows(":me PRIVMSG #lobby :mine", "[12:01] <me> mine");
    }

    #[test]
    fn private_messages_notices_and_ctcp() {
        shows(":alice!~a@h PRIVMSG me :psst", "[12:01] *alice* psst");
        shows(":me PRIVMSG alice :psst", "[12:01] -> *alice* psst");
        shows(
            ":me PRIVMSG alice :\x01ACTION hugs\x01",
            "[12:01] -> *alice* * me hugs",
        );
        shows(":alice!~a@h NOTICE me :note", "[12:01] -alice- note");
        shows(
            ":irc.test NOTICE * :*** Looking up",
            "[12:01] -irc.test- *** Looking up",
        );
        shows(
            ":alice!~a@h PRIVMSG me :\x01VERSION\x01",
            "-- alice sent CTCP VERSION",
        );
    }

    #[test]
    fn membership_events() {
        shows(":carol!~c@h JOIN #lobby", "-- carol joined #lobby");
        shows(":carol!~c@h JOIN :#lobby", "-- carol joined #lobby");
        shows(
            ":carol!~c@h PART #lobby :gone home",
            "-- carol left #lobby (gone home)",
        );
        shows(":carol!~c@h PART #lobby", "-- carol left #lobby");
        shows(":dave!~d@h QUIT :Quit: bye", "-- dave quit (Quit: bye)");
        shows(":dave!~d@h QUIT", "-- dave quit");
        shows(":bob!~b@h NICK rob", "-- bob is now known as rob");
        shows(":bob!~b@h NICK :rob", "-- bob is now known as rob");
        shows(
            ":op!~o@h KICK #lobby eve :spam",
            "-- eve was kicked from #lobby by op (spam)",
        );
        shows(
            ":op!~o@h TOPIC #lobby :Rust talk",
            "-- op changed the topic of #lobby to: Rust talk",
        );
        shows(
            ":op!~o@h MODE #lobby +o bob",
            "-- op sets mode +o bob on #lobby",
        );
        shows(":op!~o@h INVITE me #secret", "-- op invites me to #secret");
    }

    #[test]
    fn errors_are_marked() {
        shows(
            "ERROR :Closing link: (Excess Flood)",
            "!! Closing link: (Excess Flood)",
        );
        shows(
            ":irc.test 401 me bob :No such nick/channel",
            "!! bob: No such nick/channel",
        );
        shows(
            ":irc.test 433 * alice :Nickname is already in use",
            "!! alice: Nickname is already in use",
        );
        shows(
            ":irc.test 451 * :You have not registered",
            "!! You have not registered",
        );
        shows(":irc.test 502 me", "!! error 502");
    }

    #[test]
    fn numerics_are_readable() {
        shows(
            ":irc.test 001 me :Welcome to the network, me",
            "-- Welcome to the network, me",
        );
        shows(
            ":irc.test 353 me = #lobby :@alice bob",
            "-- names #lobby: @alice bob",
        );
        shows(
            ":irc.test 332 me #lobby :Rust talk",
            "-- topic of #lobby: Rust talk",
        );
        shows(
            ":irc.test 331 me #lobby :No topic is set",
            "-- #lobby has no topic",
        );
        shows(
            ":irc.test 333 me #lobby alice 1700000000",
            "-- topic of #lobby set by alice",
        );
        shows(
            ":irc.test 265 me 1 3 :Current local users 1, max 3",
            "-- Current local users 1, max 3",
        );
        shows(":irc.test 301 me bob :at lunch", "-- bob is away: at lunch");
        shows(
            ":irc.test 352 me #lobby ~b 127.0.0.1 irc.test bob H :0 Bob B",
            "-- #lobby bob (~b@127.0.0.1) H Bob B",
        );
        shows(
            ":irc.test 306 me :You have been marked as being away",
            "-- You have been marked as being away",
        );
        assert_eq!(
            show(":irc.test 005 me CASEMAPPING=ascii :are supported"),
            None
        );
        assert_eq!(show(":irc.test 366 me #lobby :End of /NAMES list"), None);
        assert_eq!(show(":irc.test 999 me"), None);
    }

    #[test]
    fn keepalive_is_silent_and_unknown_commands_shown() {
        assert_eq!(show("PING :x"), None);
        assert_eq!(show(":irc.test PONG irc.test :x"), None);
        shows(
            ":irc.test WALLOPS :hello ops",
            "-- irc.test WALLOPS hello ops",
        );
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        shows(
            ":evil!~e@h PRIVMSG #lobby :\x1b[2J\x02bold\x02 \x0304,12red\x03 x\x07",
            "[12:01] <evil> [2Jbold red x",
        );
        assert_eq!(sanitize("c1\u{9b}31m"), "c131m");
        // Formatting survives rendering, for the output to colour.
        let kept = render(
            &Message::parse(":a!~a@h PRIVMSG #lobby :\x1b[31m\x02b\x02 \x0304r").expect("parses"),
            &VIEW,
        );
        assert_eq!(kept.as_deref(), Some("[12:01] <a> [31m\x02b\x02 \x0304r"));
    }

    #[test]
    fn whois_replies_are_sentences() {
        shows(
            ":irc.test 311 me bob ~b 127.0.0.1 * :Bob B",
            "-- bob is ~b@127.0.0.1 (Bob B)",
        );
        shows(
            ":irc.test 312 me bob irc.test :ringchat",
            "-- bob is on irc.test (ringchat)",
        );
        shows(
            ":irc.test 317 me bob 3725 1700000000 :seconds idle, signon time",
            "-- bob has been idle 1h 2m",
        );
        shows(
            ":irc.test 319 me bob :@#lobby #rust",
            "-- bob is in @#lobby #rust",
        );
        shows(
            ":irc.test 313 me bob :is an IRC operator",
            "-- bob is an IRC operator",
        );
        assert_eq!(show(":irc.test 318 me bob :End of /WHOIS list"), None);
    }

    #[test]
    fn list_modes_bans_invites() {
        shows(
            ":irc.test 322 me #rust 12 :all about rust",
            "-- #rust (12 users): all about rust",
        );
        shows(
            ":irc.test 323 me :End of /LIST",
            "-- end of the channel list",
        );
        assert_eq!(show(":irc.test 321 me Channel :Users Name"), None);
        shows(":irc.test 324 me #lobby +nt", "-- modes of #lobby: +nt");
        shows(
            ":irc.test 367 me #lobby eve!*@* op 1700000000",
            "-- #lobby bans eve!*@* (set by op)",
        );
        shows(":irc.test 341 me bob #secret", "-- invited bob to #secret");
        let filtered = View {
            list_filter: Some("rust"),
            ..VIEW
        };
        let list = |line: &str| render(&Message::parse(line).expect("parses"), &filtered);
        assert!(list(":irc 322 me #rust 3 :x").is_some());
        assert!(list(":irc 322 me #lobby 3 :we talk Rust here").is_some());
        assert!(list(":irc 322 me #go 3 :gophers").is_none());
    }

    #[test]
    fn list_filters_by_substring_or_wildcard() {
        assert!(list_matches("RUST", "#rust-lang", ""));
        assert!(list_matches("#rust*", "#rust-lang", ""));
        assert!(!list_matches("#rust*", "#go", "rust"));
        assert!(list_matches("#?o", "#go", ""));
        assert!(!list_matches("#?o", "#goo", ""));
        assert!(list_matches("*a*b*", "#xaxxb", ""));
    }
}
