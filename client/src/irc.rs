//! The IRC wire format as the client needs it: parse one received line, format one line
//! to send. Pure: no I/O. Deliberately not the server's parser, so that a bug in one
//! cannot hide on both sides, and so the client works against any IRC server.

/// Longest line the protocol allows, CRLF included, not counting IRCv3 tags.
pub const MAX_LINE_BYTES: usize = 512;

/// Room kept for the `:nick!~user@host ` prefix the server adds when it relays our
/// message to others: the relayed line must still fit [`MAX_LINE_BYTES`].
/// NICKLEN 30 + a 10-byte user + an IPv6 address with punctuation stays below this.
const RELAY_PREFIX_BUDGET: usize = 100;

/// One parsed IRC message. Tags are skipped: the client uses none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `nick!user@host` or a server name, without the leading `:`; `None` when absent.
    pub prefix: Option<String>,
    /// The command or three-digit numeric, upper-cased.
    pub command: String,
    /// Middle parameters then the trailing one, with its `:` removed.
    pub params: Vec<String>,
}

impl Message {
    /// Parses one line (CR/LF already stripped or not). `None` for an empty line or one
    /// without a command: the caller skips it, as a server would.
    pub fn parse(line: &str) -> Option<Message> {
        let mut rest = line.trim_end_matches(['\r', '\n']).trim_start_matches(' ');
        if rest.starts_with('@') {
            rest = split_word(rest).1;
        }
        let prefix = match rest.strip_prefix(':') {
            Some(after_colon) => {
                let (prefix, after) = split_word(after_colon);
                rest = after;
                Some(prefix.to_string())
            }
            None => None,
        };
        let (command, mut rest) = split_word(rest);
        if command.is_empty() {
            return None;
        }
        let mut params = Vec::new();
        while !rest.is_empty() {
            if let Some(trailing) = rest.strip_prefix(':') {
                params.push(trailing.to_string());
                break;
            }
            let (param, after) = split_word(rest);
            params.push(param.to_string());
            rest = after;
        }
        Some(Message {
            prefix,
            command: command.to_ascii_uppercase(),
            params,
        })
    }

    /// The nick of the sender: the prefix up to `!`, or the whole prefix (a server name).
    pub fn source_nick(&self) -> Option<&str> {
        let prefix = self.prefix.as_deref()?;
        Some(prefix.split_once('!').map_or(prefix, |(nick, _)| nick))
    }

    /// The `i`-th parameter, or `""` when the server sent fewer: rendering never fails
    /// on a short message from a server.
    pub fn param(&self, i: usize) -> &str {
        self.params.get(i).map_or("", String::as_str)
    }

    /// The last parameter (usually the human-readable text), or `""`.
    pub fn last_param(&self) -> &str {
        self.params.last().map_or("", String::as_str)
    }
}

/// Splits off the first space-separated word; the rest has its leading spaces removed.
fn split_word(s: &str) -> (&str, &str) {
    match s.split_once(' ') {
        Some((word, rest)) => (word, rest.trim_start_matches(' ')),
        None => (s, ""),
    }
}

/// Formats a line to send (without CRLF). The last parameter is sent as a trailing
/// one (`:text`) when it needs to be: empty, containing a space, or starting with `:`.
/// CR, LF and NUL are removed from every parameter so that user text can never
/// smuggle a second command onto the wire.
pub fn format_line(command: &str, params: &[&str]) -> String {
    let mut line = String::from(command);
    for (i, param) in params.iter().enumerate() {
        let clean: String = param
            .chars()
            .filter(|c| !matches!(c, '\r' | '\n' | '\0'))
            .collect();
        line.push(' ');
        let is_last = i + 1 == params.len();
        if is_last && (clean.is_empty() || clean.contains(' ') || clean.starts_with(':')) {
            line.push(':');
        }
        line.push_str(&clean);
    }
    line
}

/// Cuts `text` into pieces that each fit one `PRIVMSG target :piece` line even after
/// the server prepends our prefix; `overhead` is any extra bytes wrapped around each
/// piece (the CTCP ACTION envelope). Cuts at the last space that keeps a piece full
/// enough, else at a character boundary, so UTF-8 is never split.
pub fn split_text(target: &str, text: &str, overhead: usize) -> Vec<String> {
    let fixed = RELAY_PREFIX_BUDGET + "PRIVMSG ".len() + target.len() + " :".len() + 2;
    let budget = MAX_LINE_BYTES.saturating_sub(fixed + overhead).max(16);
    let mut pieces = Vec::new();
    let mut rest = text;
    while rest.len() > budget {
        let mut cut = budget;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        if let Some(space) = rest[..cut].rfind(' ').filter(|&at| at > cut / 2) {
            cut = space;
        }
        pieces.push(rest[..cut].to_string());
        rest = rest[cut..].trim_start_matches(' ');
    }
    if !rest.is_empty() || pieces.is_empty() {
        pieces.push(rest.to_string());
    }
    pieces
}

/// The numeric replies the client reacts to or renders specially, by name.
pub mod numeric {
    pub const RPL_WELCOME: &str = "001";
    pub const RPL_MYINFO: &str = "004";
    pub const RPL_ISUPPORT: &str = "005";
    pub const RPL_LOCALUSERS: &str = "265";
    pub const RPL_GLOBALUSERS: &str = "266";
    pub const RPL_UMODEIS: &str = "221";
    pub const RPL_AWAY: &str = "301";
    pub const RPL_WHOISUSER: &str = "311";
    pub const RPL_WHOISSERVER: &str = "312";
    pub const RPL_WHOISOPERATOR: &str = "313";
    pub const RPL_WHOISIDLE: &str = "317";
    pub const RPL_WHOISCHANNELS: &str = "319";
    pub const RPL_LISTSTART: &str = "321";
    pub const RPL_LIST: &str = "322";
    pub const RPL_LISTEND: &str = "323";
    pub const RPL_CHANNELMODEIS: &str = "324";
    pub const RPL_WHOISACCOUNT: &str = "330";
    pub const RPL_INVITING: &str = "341";
    pub const RPL_BANLIST: &str = "367";
    pub const RPL_ENDOFBANLIST: &str = "368";
    pub const RPL_WHOISSECURE: &str = "671";
    pub const RPL_ENDOFWHO: &str = "315";
    pub const RPL_ENDOFWHOIS: &str = "318";
    pub const RPL_CREATIONTIME: &str = "329";
    pub const RPL_NOTOPIC: &str = "331";
    pub const RPL_TOPIC: &str = "332";
    pub const RPL_TOPICWHOTIME: &str = "333";
    pub const RPL_WHOREPLY: &str = "352";
    pub const RPL_NAMREPLY: &str = "353";
    pub const RPL_ENDOFNAMES: &str = "366";
    pub const RPL_MOTDSTART: &str = "375";
    pub const RPL_ENDOFMOTD: &str = "376";
    pub const ERR_NOSUCHCHANNEL: &str = "403";
    pub const ERR_TOOMANYCHANNELS: &str = "405";
    pub const ERR_NOMOTD: &str = "422";
    pub const ERR_ERRONEUSNICKNAME: &str = "432";
    pub const ERR_NICKNAMEINUSE: &str = "433";
    pub const ERR_NICKCOLLISION: &str = "436";
    pub const ERR_UNAVAILRESOURCE: &str = "437";
    pub const ERR_CHANNELISFULL: &str = "471";
    pub const ERR_INVITEONLYCHAN: &str = "473";
    pub const ERR_BANNEDFROMCHAN: &str = "474";
    pub const ERR_BADCHANNELKEY: &str = "475";
    pub const ERR_BADCHANMASK: &str = "476";
}

/// Is `name` a channel name (by its first character, as CHANTYPES `#&` says)?
pub fn is_channel(name: &str) -> bool {
    name.starts_with(['#', '&'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prefix_command_params_and_trailing() {
        let msg = Message::parse(":alice!~a@127.0.0.1 PRIVMSG #lobby :hello there\r\n").unwrap();
        assert_eq!(msg.prefix.as_deref(), Some("alice!~a@127.0.0.1"));
        assert_eq!(msg.source_nick(), Some("alice"));
        assert_eq!(msg.command, "PRIVMSG");
        assert_eq!(msg.params, vec!["#lobby", "hello there"]);
    }

    #[test]
    fn parses_tags_numerics_and_missing_prefix() {
        let msg = Message::parse("@time=x;id=1 :irc.test 001 alice :Welcome").unwrap();
        assert_eq!(msg.source_nick(), Some("irc.test"));
        assert_eq!(msg.command, "001");
        assert_eq!(msg.params, vec!["alice", "Welcome"]);
        let ping = Message::parse("ping :token").unwrap();
        assert_eq!(ping.prefix, None);
        assert_eq!(ping.command, "PING");
        assert_eq!(ping.last_param(), "token");
    }

    #[test]
    fn tolerates_extra_spaces_empty_trailing_and_short_messages() {
        let msg = Message::parse(":s  MODE   #c  +o   bob").unwrap();
        assert_eq!(msg.params, vec!["#c", "+o", "bob"]);
        let msg = Message::parse(":s TOPIC #c :").unwrap();
        assert_eq!(msg.params, vec!["#c", ""]);
        let msg = Message::parse(":s 401").unwrap();
        assert_eq!(msg.param(3), "");
        assert_eq!(msg.last_param(), "");
    }

    #[test]
    fn rejects_lines_without_a_command() {
        assert_eq!(Message::parse(""), None);
        assert_eq!(Message::parse("\r\n"), None);
        assert_eq!(Message::parse(":only.prefix"), None);
        assert_eq!(Message::parse("@tags-only"), None);
    }

    #[test]
    fn formats_trailing_only_when_needed() {
        assert_eq!(format_line("JOIN", &["#lobby"]), "JOIN #lobby");
        assert_eq!(
            format_line("PRIVMSG", &["#c", "hi there"]),
            "PRIVMSG #c :hi there"
        );
        assert_eq!(format_line("PRIVMSG", &["#c", ":)"]), "PRIVMSG #c ::)");
        assert_eq!(format_line("AWAY", &[""]), "AWAY :");
        assert_eq!(format_line("NAMES", &[]), "NAMES");
    }

    #[test]
    fn format_strips_line_breaks_and_nul() {
        assert_eq!(
            format_line("PRIVMSG", &["#c", "a\r\nQUIT\0 b"]),
            "PRIVMSG #c :aQUIT b"
        );
    }

    #[test]
    fn split_keeps_short_text_whole() {
        assert_eq!(split_text("#c", "hi", 0), vec!["hi"]);
        assert_eq!(split_text("#c", "", 0), vec![""]);
    }

    #[test]
    fn split_cuts_long_text_at_spaces_and_char_boundaries() {
        let words = "word ".repeat(300);
        let pieces = split_text("#lobby", words.trim_end(), 0);
        assert!(pieces.len() > 1);
        for piece in &pieces {
            assert!(piece.len() + 100 + "PRIVMSG #lobby :".len() + 2 <= MAX_LINE_BYTES);
            assert!(!piece.starts_with(' ') && !piece.ends_with(' '));
        }
        assert_eq!(pieces.join(" "), words.trim_end());

        let wide = "é".repeat(600);
        let pieces = split_text("#lobby", &wide, 0);
        assert_eq!(pieces.concat(), wide);
    }
}
