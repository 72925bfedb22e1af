//! loadgen's own IRC line reader and the benchmark payload format.
//!
//! Owns: splitting a byte stream into lines, classifying a line into the few things a
//! benchmark client cares about, and writing/reading the payload
//! `lg <step> <slot> <seq> <sched_ns>[ padding]`. Must not: allocate per line (it runs
//! half a million times a second), or depend on ringchat's parser (STYLE rule 12).

/// The marker that starts every benchmark payload, after the trailing-parameter colon.
pub const PAYLOAD_MARKER: &[u8] = b"lg ";

/// Longest line kept while waiting for its end; longer lines are discarded up to their
/// line end. Servers send at most 512 bytes (8191 with tags), so this only guards
/// against a misbehaving peer.
pub const MAX_LINE: usize = 16 * 1024;

/// Splits a TCP byte stream into lines. Keeps the one incomplete line between reads.
///
/// Its buffer is allocated on the first split line and reused after: no allocation
/// per line in the steady state, and nothing held by an idle client that never saw one.
#[derive(Default)]
pub struct LineSplitter {
    /// The start of a line whose end has not arrived yet (at most [`MAX_LINE`] bytes).
    partial: Vec<u8>,
    /// True while discarding an over-long line up to its end.
    discarding: bool,
}

impl LineSplitter {
    /// Calls `on_line` with each complete line in `chunk`, CR LF or LF removed.
    /// Empty lines are skipped.
    pub fn feed(&mut self, mut chunk: &[u8], mut on_line: impl FnMut(&[u8])) {
        if !self.partial.is_empty() || self.discarding {
            let Some(end) = find_newline(chunk) else {
                self.keep_partial(chunk);
                return;
            };
            if !self.discarding {
                self.partial.extend_from_slice(&chunk[..end]);
                let line = trim_cr(&self.partial);
                if !line.is_empty() {
                    on_line(line);
                }
            }
            self.partial.clear();
            self.discarding = false;
            chunk = &chunk[end + 1..];
        }
        while let Some(end) = find_newline(chunk) {
            let line = trim_cr(&chunk[..end]);
            if !line.is_empty() {
                on_line(line);
            }
            chunk = &chunk[end + 1..];
        }
        self.keep_partial(chunk);
    }

    fn keep_partial(&mut self, rest: &[u8]) {
        if self.discarding || rest.is_empty() {
            return;
        }
        if self.partial.len() + rest.len() > MAX_LINE {
            self.partial.clear();
            self.discarding = true;
        } else {
            self.partial.extend_from_slice(rest);
        }
    }
}

/// Position of the first `\n`. A word at a time: this is the hottest loop in loadgen.
#[inline]
fn find_newline(bytes: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const NL: u64 = LO * b'\n' as u64;
    let mut i = 0;
    while i + 8 <= bytes.len() {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[i..i + 8]);
        let x = u64::from_le_bytes(word) ^ NL;
        let found = x.wrapping_sub(LO) & !x & HI;
        if found != 0 {
            return Some(i + (found.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    bytes[i..].iter().position(|&b| b == b'\n').map(|p| i + p)
}

fn trim_cr(line: &[u8]) -> &[u8] {
    match line.split_last() {
        Some((b'\r', rest)) => rest,
        _ => line,
    }
}

/// One benchmark message as carried in a PRIVMSG text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload {
    /// Which step of the run sent it; a late message from an earlier step is not
    /// counted in the current one.
    pub step: u32,
    /// The sender's index among the senders of its channel (dense from 0).
    pub slot: u32,
    /// The sender's sequence number, from 0, continuing across steps.
    pub seq: u64,
    /// When the message was *scheduled* to be sent, in ns since the run's start.
    pub sched_ns: u64,
}

/// What a benchmark client needs to know about one line from the server.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// A PRIVMSG or NOTICE carrying a benchmark payload.
    Bench(Payload),
    /// `PING <token>`: must be answered with `PONG <token>`.
    Ping(&'a [u8]),
    /// A numeric reply, with everything after the numeric (target and parameters).
    Numeric(u16, &'a [u8]),
    /// `ERROR :<reason>`: the server is closing the connection.
    Error(&'a [u8]),
    /// Anything else (other members' JOINs, unrelated PRIVMSGs, notices, ...).
    Other,
}

/// Classifies one line (without its line end). Never allocates; never fails: what it
/// does not recognise is [`Line::Other`].
pub fn classify(line: &[u8]) -> Line<'_> {
    let mut rest = line;
    if rest.first() == Some(&b'@') {
        rest = after_space(rest);
    }
    if rest.first() == Some(&b':') {
        rest = after_space(rest);
    }
    let (command, params) = split_word(rest);
    match command {
        b"PRIVMSG" | b"NOTICE" => match trailing(params).and_then(parse_payload) {
            Some(p) => Line::Bench(p),
            None => Line::Other,
        },
        b"PING" => Line::Ping(params),
        b"ERROR" => Line::Error(params.strip_prefix(b":").unwrap_or(params)),
        [a, b, c] if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() => {
            let code = (a - b'0') as u16 * 100 + (b - b'0') as u16 * 10 + (c - b'0') as u16;
            Line::Numeric(code, params)
        }
        _ => Line::Other,
    }
}

/// The text after the first space (empty if none).
fn after_space(bytes: &[u8]) -> &[u8] {
    match bytes.iter().position(|&b| b == b' ') {
        Some(i) => trim_spaces(&bytes[i + 1..]),
        None => &[],
    }
}

fn trim_spaces(mut bytes: &[u8]) -> &[u8] {
    while let Some((b' ', rest)) = bytes.split_first() {
        bytes = rest;
    }
    bytes
}

/// Splits off the first space-separated word.
fn split_word(bytes: &[u8]) -> (&[u8], &[u8]) {
    match bytes.iter().position(|&b| b == b' ') {
        Some(i) => (&bytes[..i], trim_spaces(&bytes[i + 1..])),
        None => (bytes, &[]),
    }
}

/// The trailing parameter (after ` :`), or the last word if there is no colon.
fn trailing(params: &[u8]) -> Option<&[u8]> {
    if let Some(text) = params.strip_prefix(b":") {
        return Some(text);
    }
    let colon = params.windows(2).position(|w| w == b" :");
    match colon {
        Some(i) => Some(&params[i + 2..]),
        None => params.rsplit(|&b| b == b' ').next(),
    }
}

/// Reads `lg <step> <slot> <seq> <sched_ns>`, ignoring any padding after it.
pub fn parse_payload(text: &[u8]) -> Option<Payload> {
    let mut rest = text.strip_prefix(PAYLOAD_MARKER)?;
    let step = next_number(&mut rest)?;
    let slot = next_number(&mut rest)?;
    let seq = next_number(&mut rest)?;
    let sched_ns = next_number(&mut rest)?;
    Some(Payload {
        step: u32::try_from(step).ok()?,
        slot: u32::try_from(slot).ok()?,
        seq,
        sched_ns,
    })
}

/// Parses a decimal number and the single space after it, if any.
fn next_number(rest: &mut &[u8]) -> Option<u64> {
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    let mut value = 0u64;
    for &b in &rest[..digits] {
        value = value * 10 + (b - b'0') as u64;
    }
    *rest = &rest[digits..];
    if let Some(after) = rest.strip_prefix(b" ") {
        *rest = after;
    } else if !rest.is_empty() {
        return None;
    }
    Some(value)
}

/// Appends `PRIVMSG <channel> :lg <step> <slot> <seq> <sched_ns>[ xxx..]\r\n` to `out`,
/// padding the text with `x` up to `text_len` bytes when asked. No allocation beyond
/// `out` growing (it is reused by the caller).
pub fn write_privmsg(out: &mut Vec<u8>, channel: &str, p: &Payload, text_len: usize) {
    out.extend_from_slice(b"PRIVMSG ");
    out.extend_from_slice(channel.as_bytes());
    out.extend_from_slice(b" :");
    let text_start = out.len();
    out.extend_from_slice(PAYLOAD_MARKER);
    push_number(out, p.step as u64);
    out.push(b' ');
    push_number(out, p.slot as u64);
    out.push(b' ');
    push_number(out, p.seq);
    out.push(b' ');
    push_number(out, p.sched_ns);
    let written = out.len() - text_start;
    if text_len > written + 1 {
        out.push(b' ');
        out.resize(text_start + text_len, b'x');
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends the decimal digits of `value`.
pub fn push_number(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(splitter: &mut LineSplitter, chunk: &[u8]) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        splitter.feed(chunk, |l| lines.push(l.to_vec()));
        lines
    }

    #[test]
    fn splits_lines_across_chunks() {
        let mut s = LineSplitter::default();
        assert_eq!(
            lines_of(&mut s, b"PING :a\r\nPI"),
            vec![b"PING :a".to_vec()]
        );
        assert!(lines_of(&mut s, b"NG :b").is_empty());
        assert_eq!(
            lines_of(&mut s, b"\r\n\r\nbare lf\nnext"),
            vec![b"PING :b".to_vec(), b"bare lf".to_vec()]
        );
        assert_eq!(lines_of(&mut s, b"\n"), vec![b"next".to_vec()]);
        // The CR of a CR LF split across reads is still removed.
        assert!(lines_of(&mut s, b"x\r").is_empty());
        assert_eq!(lines_of(&mut s, b"\n"), vec![b"x".to_vec()]);
    }

    #[test]
    fn discards_overlong_line() {
        let mut s = LineSplitter::default();
        let long = vec![b'a'; MAX_LINE + 10];
        assert!(lines_of(&mut s, &long).is_empty());
        assert!(lines_of(&mut s, b"aaa").is_empty());
        assert_eq!(lines_of(&mut s, b"aa\nok\n"), vec![b"ok".to_vec()]);
    }

    #[test]
    fn newline_finder_matches_naive_search() {
        for len in 0..40 {
            for pos in 0..=len {
                let mut v = vec![b'a'; len];
                if pos < len {
                    v[pos] = b'\n';
                }
                let expected = v.iter().position(|&b| b == b'\n');
                assert_eq!(find_newline(&v), expected, "len {len} pos {pos}");
            }
        }
        // Bytes with the high bit set must not be mistaken for a newline.
        assert_eq!(
            find_newline(&[0x8a, 0x0b, 0xff, 0x09, 0x8a, 0, 1, 2, 3]),
            None
        );
    }

    #[test]
    fn classifies_server_lines() {
        let p = Payload {
            step: 2,
            slot: 7,
            seq: 12345,
            sched_ns: 987654321,
        };
        assert_eq!(
            classify(b":lgab1!~lgab1@127.0.0.1 PRIVMSG #lgab :lg 2 7 12345 987654321"),
            Line::Bench(p)
        );
        assert_eq!(
            classify(b"@time=x :n!u@h PRIVMSG #c :lg 2 7 12345 987654321 xxxxxxxx"),
            Line::Bench(p)
        );
        assert_eq!(classify(b":n!u@h PRIVMSG #c :hello"), Line::Other);
        assert_eq!(classify(b":n!u@h PRIVMSG #c :lg 1 2"), Line::Other);
        assert_eq!(classify(b"PING :irc.example"), Line::Ping(b":irc.example"));
        assert_eq!(classify(b":srv PING srv"), Line::Ping(b"srv"));
        assert_eq!(
            classify(b":srv 001 lg1 :Welcome"),
            Line::Numeric(1, b"lg1 :Welcome")
        );
        assert_eq!(
            classify(b":srv 366 lg1 #c :End"),
            Line::Numeric(366, b"lg1 #c :End")
        );
        assert_eq!(
            classify(b"ERROR :Closing link"),
            Line::Error(b"Closing link")
        );
        assert_eq!(classify(b":n!u@h JOIN #c"), Line::Other);
        assert_eq!(classify(b""), Line::Other);
        assert_eq!(classify(b":"), Line::Other);
    }

    #[test]
    fn payload_round_trips_with_padding() {
        let p = Payload {
            step: 0,
            slot: 3,
            seq: 0,
            sched_ns: 1,
        };
        let mut out = Vec::new();
        write_privmsg(&mut out, "#b", &p, 0);
        assert_eq!(out, b"PRIVMSG #b :lg 0 3 0 1\r\n");
        out.clear();
        write_privmsg(&mut out, "#b", &p, 64);
        let text = &out[b"PRIVMSG #b :".len()..out.len() - 2];
        assert_eq!(text.len(), 64);
        assert_eq!(parse_payload(text), Some(p));
        assert_eq!(classify(&out[..out.len() - 2]), Line::Bench(p));
    }

    #[test]
    fn rejects_malformed_payloads() {
        assert_eq!(parse_payload(b"lg 1 2 3"), None);
        assert_eq!(parse_payload(b"lg 1 2 3 x"), None);
        assert_eq!(parse_payload(b"lg 1 2 3 4x"), None);
        assert_eq!(parse_payload(b"lg 99999999999 2 3 4"), None);
        assert_eq!(parse_payload(b"lg 1 2 3 99999999999999999999999"), None);
    }
}
