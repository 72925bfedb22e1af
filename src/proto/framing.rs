//! Splitting a byte stream into IRC lines, with the limits of docs/protocol.md.
//!
//! The framer never buffers: it looks at bytes the caller holds and says how many it
//! consumed. It remembers one bit between calls (whether it is discarding the rest of
//! an overlong line), so a client cannot make the server hold more than one maximal
//! line of unterminated input.
//!
//! A line ends at CR LF, at a bare LF, or at a bare CR: RFC 2812 section 2.3.1
//! designates "two characters, CR and LF, as message separators", and Modern IRC's
//! "Messages" section keeps that framing. Ending a line at a bare CR (rather than
//! passing it through) means no byte a client sends can become a line boundary in
//! what another client receives: a CR inside a PRIVMSG, topic, real name, away
//! message, reason or tag value cannot smuggle in a forged line for clients that end
//! lines at CR. Empty lines are ignored, and consumed even at the end of a read.

/// Size limits on one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineLimits {
    /// The message without tags, CR LF included (RFC 1459: 512).
    pub body: usize,
    /// The tag section including its leading `@` and trailing space (IRCv3: 4096 for
    /// client tags plus 4094 more for server tags; a client may send 4096).
    pub tags: usize,
}

impl LineLimits {
    /// 512 bytes of message, plus 4094 bytes of client tags.
    pub const IRC: LineLimits = LineLimits {
        body: 512,
        tags: 4096,
    };

    /// The longest input line that can be valid: tags and body together.
    pub fn max_total(&self) -> usize {
        self.body + self.tags
    }
}

/// What the framer found at the front of the input.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete line without its line ending; never empty, never with CR or LF.
    Line(&'a [u8]),
    /// A line over the limits ended here; it was discarded (reply `417`).
    TooLong,
    /// A line containing a NUL byte was discarded.
    Nul,
    /// Bytes were discarded: the start of an overlong line whose end has not
    /// arrived yet, or empty lines.
    Skipped,
}

/// Splits input into lines; see the module comment.
#[derive(Debug, Default)]
pub struct Framer {
    /// Set while the rest of an overlong line is being thrown away.
    discarding: bool,
}

impl Framer {
    /// Whether the rest of an overlong line is being thrown away (a live upgrade's
    /// handover carries it).
    pub fn is_discarding(&self) -> bool {
        self.discarding
    }

    /// Sets what [`Framer::is_discarding`] said.
    pub fn set_discarding(&mut self, discarding: bool) {
        self.discarding = discarding;
    }

    /// Takes the next frame from `input`, returning it with the number of bytes it
    /// covers, or `None` when `input` holds only the start of a line (read more).
    pub fn next<'a>(&mut self, input: &'a [u8], limits: LineLimits) -> Option<(Frame<'a>, usize)> {
        let mut start = 0;
        loop {
            let rest = &input[start..];
            let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
                if self.discarding && !rest.is_empty() {
                    return Some((Frame::Skipped, input.len()));
                }
                if rest.len() >= limits.max_total() {
                    self.discarding = true;
                    return Some((Frame::Skipped, input.len()));
                }
                // Empty lines before an incomplete one are consumed, so they never
                // pile up in the client's input.
                return (start > 0).then_some((Frame::Skipped, start));
            };
            let crlf = rest[end] == b'\r' && rest.get(end + 1) == Some(&b'\n');
            let consumed = start + end + 1 + usize::from(crlf);
            if std::mem::take(&mut self.discarding) {
                return Some((Frame::TooLong, consumed));
            }
            let line = &rest[..end];
            if line.is_empty() {
                start = consumed;
                continue;
            }
            if !fits(line, limits) {
                return Some((Frame::TooLong, consumed));
            }
            if line.contains(&0) {
                return Some((Frame::Nul, consumed));
            }
            return Some((Frame::Line(line), consumed));
        }
    }
}

/// Whether a line (without CR LF) is within both the tag and the body limit.
fn fits(line: &[u8], limits: LineLimits) -> bool {
    let (tags, body) = match line.strip_prefix(b"@") {
        Some(tagged) => match tagged.iter().position(|&b| b == b' ') {
            Some(space) => (space + 2, &tagged[space + 1..]),
            None => (line.len(), &[][..]),
        },
        None => (0, line),
    };
    let body = body.trim_ascii_start();
    tags <= limits.tags && body.len() + 2 <= limits.body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(input: &[u8]) -> Vec<Frame<'_>> {
        let mut framer = Framer::default();
        let mut out = Vec::new();
        let mut at = 0;
        while let Some((frame, used)) = framer.next(&input[at..], LineLimits::IRC) {
            out.push(frame);
            at += used;
        }
        out
    }

    #[test]
    fn crlf_and_bare_lf_both_end_a_line() {
        assert_eq!(
            frames(b"NICK a\r\nUSER b\nPING x"),
            vec![Frame::Line(b"NICK a"), Frame::Line(b"USER b")]
        );
    }

    #[test]
    fn empty_lines_are_ignored() {
        assert_eq!(
            frames(b"\r\n\n\r\nPING x\r\n"),
            vec![Frame::Line(b"PING x")]
        );
    }

    #[test]
    fn empty_lines_at_the_end_of_a_read_are_consumed() {
        let mut framer = Framer::default();
        let blank = b"\r\n".repeat(5_000);
        assert_eq!(
            framer.next(&blank, LineLimits::IRC),
            Some((Frame::Skipped, blank.len()))
        );
        assert_eq!(
            framer.next(b"\r\nPING", LineLimits::IRC),
            Some((Frame::Skipped, 2))
        );
    }

    #[test]
    fn a_bare_cr_ends_a_line_so_it_can_never_be_relayed() {
        assert_eq!(
            frames(b"PRIVMSG #c :hi\r:admin!a@b PRIVMSG #c :forged\r\n"),
            vec![
                Frame::Line(b"PRIVMSG #c :hi"),
                Frame::Line(b":admin!a@b PRIVMSG #c :forged")
            ]
        );
        let mut framer = Framer::default();
        assert_eq!(
            framer.next(b"PING a\r", LineLimits::IRC),
            Some((Frame::Line(b"PING a"), 7)),
            "a CR at the end of a read ends the line; its LF is an empty line later"
        );
        assert_eq!(
            framer.next(b"\n", LineLimits::IRC),
            Some((Frame::Skipped, 1))
        );
    }

    #[test]
    fn a_line_of_exactly_512_bytes_fits_and_513_does_not() {
        let ok = format!("PRIVMSG #c :{}\r\n", "a".repeat(512 - 14));
        assert_eq!(ok.len(), 512);
        assert!(matches!(frames(ok.as_bytes())[..], [Frame::Line(_)]));
        let long = format!("PRIVMSG #c :{}\r\n", "a".repeat(513 - 14));
        assert_eq!(frames(long.as_bytes()), vec![Frame::TooLong]);
    }

    #[test]
    fn tags_have_their_own_budget() {
        let line = format!("@+x={} PRIVMSG #c :hi\r\n", "v".repeat(4000));
        assert!(matches!(frames(line.as_bytes())[..], [Frame::Line(_)]));
        let line = format!("@+x={} PRIVMSG #c :hi\r\n", "v".repeat(4100));
        assert_eq!(frames(line.as_bytes()), vec![Frame::TooLong]);
    }

    #[test]
    fn an_unterminated_flood_is_skipped_then_reported_once_at_its_end() {
        let mut framer = Framer::default();
        let junk = vec![b'x'; 10_000];
        assert_eq!(
            framer.next(&junk, LineLimits::IRC),
            Some((Frame::Skipped, 10_000))
        );
        assert_eq!(
            framer.next(b"xxxx", LineLimits::IRC),
            Some((Frame::Skipped, 4))
        );
        assert_eq!(
            framer.next(b"xx\r\nPING a\r\n", LineLimits::IRC),
            Some((Frame::TooLong, 4))
        );
        assert_eq!(
            framer.next(b"PING a\r\n", LineLimits::IRC),
            Some((Frame::Line(b"PING a"), 8))
        );
    }

    #[test]
    fn a_nul_byte_discards_only_its_own_line() {
        assert_eq!(
            frames(b"PRIVMSG #c :a\0b\r\nPING x\r\n"),
            vec![Frame::Nul, Frame::Line(b"PING x")]
        );
    }

    #[test]
    fn incomplete_input_asks_for_more() {
        let mut framer = Framer::default();
        assert_eq!(framer.next(b"PRIVMSG #c :hal", LineLimits::IRC), None);
    }
}
