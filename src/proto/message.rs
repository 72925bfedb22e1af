//! Parsing one IRC line into a borrowed [`Message`]: no allocation, no copy.

/// The most parameters a message may carry (RFC 1459: 15).
pub const MAX_PARAMS: usize = 15;

/// One parsed line. Every field borrows from the input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    /// The raw tag section without the leading `@`, if any.
    pub tags: Option<&'a [u8]>,
    /// The source prefix without its `:`; clients have no business sending one, and it
    /// is ignored.
    pub source: Option<&'a [u8]>,
    /// The command or numeric, as sent (compare it case-insensitively).
    pub command: &'a str,
    params: [&'a [u8]; MAX_PARAMS],
    param_count: usize,
}

/// Why a line is not a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Only tags and/or a prefix, or nothing at all.
    #[error("no command")]
    NoCommand,
    /// The command has a byte that is not printable ASCII, or starts with `:`.
    #[error("malformed command")]
    BadCommand,
}

impl<'a> Message<'a> {
    /// Parses a line that has no CR LF.
    pub fn parse(line: &'a [u8]) -> Result<Message<'a>, ParseError> {
        let mut rest = line;
        let tags = match rest.strip_prefix(b"@") {
            Some(tagged) => {
                let (tags, after) = split_word(tagged);
                rest = after;
                Some(tags)
            }
            None => None,
        };
        rest = rest.trim_ascii_start();
        let source = match rest.strip_prefix(b":") {
            Some(prefixed) => {
                let (source, after) = split_word(prefixed);
                rest = after;
                Some(source)
            }
            None => None,
        };
        rest = trim_spaces(rest);
        let (command, mut rest) = split_word(rest);
        if command.is_empty() {
            return Err(ParseError::NoCommand);
        }
        // Modern IRC ("Messages"): a command is letters or three digits; anything
        // else printable is still a command word, one the server does not know, so
        // it gets 421 ERR_UNKNOWNCOMMAND (with its label) like any unknown command,
        // as Ergo answers. A word that could not be echoed as a middle parameter in
        // that reply (a control byte, non-ASCII, a leading `:`) is refused here.
        if command.starts_with(b":") || !command.iter().all(u8::is_ascii_graphic) {
            return Err(ParseError::BadCommand);
        }
        let command = std::str::from_utf8(command).map_err(|_| ParseError::BadCommand)?;

        let mut params = [&b""[..]; MAX_PARAMS];
        let mut param_count = 0;
        loop {
            rest = trim_spaces(rest);
            if rest.is_empty() || param_count == MAX_PARAMS {
                break;
            }
            if let Some(trailing) = rest.strip_prefix(b":") {
                params[param_count] = trailing;
                param_count += 1;
                break;
            }
            if param_count == MAX_PARAMS - 1 {
                params[param_count] = rest;
                param_count += 1;
                break;
            }
            let (param, after) = split_word(rest);
            params[param_count] = param;
            param_count += 1;
            rest = after;
        }
        Ok(Message {
            tags,
            source,
            command,
            params,
            param_count,
        })
    }

    /// All parameters, the trailing one included.
    pub fn params(&self) -> &[&'a [u8]] {
        &self.params[..self.param_count]
    }

    /// Parameter `index`, if present.
    pub fn param(&self, index: usize) -> Option<&'a [u8]> {
        self.params().get(index).copied()
    }

    /// Parameter `index` as text, if present and valid UTF-8.
    pub fn param_str(&self, index: usize) -> Option<&'a str> {
        self.param(index).and_then(|p| std::str::from_utf8(p).ok())
    }
}

fn split_word(input: &[u8]) -> (&[u8], &[u8]) {
    match input.iter().position(|&b| b == b' ') {
        Some(space) => (&input[..space], &input[space + 1..]),
        None => (input, &[]),
    }
}

fn trim_spaces(input: &[u8]) -> &[u8] {
    let start = input.iter().position(|&b| b != b' ').unwrap_or(input.len());
    &input[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Message<'_> {
        Message::parse(line.as_bytes()).expect("valid line")
    }

    #[test]
    fn command_with_middle_and_trailing_params() {
        let m = parse("PRIVMSG #rust :hello there");
        assert_eq!(m.command, "PRIVMSG");
        assert_eq!(m.params(), &[&b"#rust"[..], b"hello there"]);
    }

    #[test]
    fn tags_and_source_are_split_off() {
        let m = parse("@+draft/reply=1;a=b :nick!u@h PRIVMSG #c :x");
        assert_eq!(m.tags, Some(&b"+draft/reply=1;a=b"[..]));
        assert_eq!(m.source, Some(&b"nick!u@h"[..]));
        assert_eq!(m.command, "PRIVMSG");
        assert_eq!(m.params().len(), 2);
    }

    #[test]
    fn repeated_spaces_separate_params() {
        let m = parse("USER  guest   0 *   :Real Name");
        assert_eq!(m.params(), &[&b"guest"[..], b"0", b"*", b"Real Name"]);
    }

    #[test]
    fn an_empty_trailing_param_is_kept() {
        assert_eq!(parse("TOPIC #c :").params(), &[&b"#c"[..], b""]);
    }

    #[test]
    fn the_fifteenth_param_takes_the_rest_of_the_line() {
        let m = parse("X 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16");
        assert_eq!(m.params().len(), MAX_PARAMS);
        assert_eq!(m.param(14), Some(&b"15 16"[..]));
    }

    #[test]
    fn text_need_not_be_utf8() {
        let m = Message::parse(b"PRIVMSG #c :\xff\xfe").expect("bytes pass");
        assert_eq!(m.param(1), Some(&b"\xff\xfe"[..]));
        assert_eq!(m.param_str(1), None);
    }

    #[test]
    fn garbage_is_rejected_not_panicked_on() {
        assert_eq!(
            Message::parse(b":only-a-prefix"),
            Err(ParseError::NoCommand)
        );
        assert_eq!(Message::parse(b"@tags-only"), Err(ParseError::NoCommand));
        assert_eq!(Message::parse(b"   "), Err(ParseError::NoCommand));
        assert_eq!(
            Message::parse(b"PRIV\xffMSG x"),
            Err(ParseError::BadCommand)
        );
        assert_eq!(Message::parse(b"NI\x01CK x"), Err(ParseError::BadCommand));
        assert_eq!(Message::parse(b":src ::x y"), Err(ParseError::BadCommand));
        let unknown = Message::parse(b"NONEXISTENT_COMMAND x").expect("a command word");
        assert_eq!(unknown.command, "NONEXISTENT_COMMAND");
    }
}
