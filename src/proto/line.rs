//! Serializing outgoing lines into `Bytes`, once per message.
//!
//! A line built here is shared by every recipient (`Bytes::clone` is a reference count
//! increment), so the builder is the only place a message's bytes are written.

use bytes::{BufMut, Bytes, BytesMut};

/// Builds one outgoing line: `[:source] COMMAND [args] [:trailing]\r\n`.
#[must_use]
pub struct LineBuilder {
    buf: BytesMut,
}

impl LineBuilder {
    /// Starts a line from `source` (a server name or `nick!user@host`).
    pub fn from_source(source: &str, command: &str) -> LineBuilder {
        LineBuilder::sized(source, command, 64)
    }

    /// Starts a line from `source` with room for `rest` more bytes of parameters
    /// (each with its separator), so a line whose parts are known is built in one
    /// allocation, however long its text: the message hot path.
    pub fn sized(source: &str, command: &str, rest: usize) -> LineBuilder {
        let mut buf = BytesMut::with_capacity(source.len() + command.len() + rest + 4);
        buf.put_u8(b':');
        buf.put_slice(source.as_bytes());
        buf.put_u8(b' ');
        buf.put_slice(command.as_bytes());
        LineBuilder { buf }
    }

    /// Starts a line with no source (`PING`, `ERROR`).
    pub fn sourceless(command: &str) -> LineBuilder {
        let mut buf = BytesMut::with_capacity(64);
        buf.put_slice(command.as_bytes());
        LineBuilder { buf }
    }

    /// Appends a middle parameter. One that cannot be one (empty, with a space or a
    /// line ending, or starting with `:`: a rejected value a client sent, echoed in
    /// an error) is written as `*`, as Modern IRC's 696 ERR_INVALIDMODEPARAM does, so
    /// no reply ever has its parameters shifted. Costs one scan of the argument.
    pub fn arg(mut self, arg: impl AsRef<[u8]>) -> LineBuilder {
        let arg = arg.as_ref();
        self.buf.put_u8(b' ');
        if is_middle_param(arg) {
            self.buf.put_slice(arg);
        } else {
            self.buf.put_u8(b'*');
        }
        self
    }

    /// Appends the final parameter, which may hold spaces.
    pub fn trailing(mut self, text: impl AsRef<[u8]>) -> LineBuilder {
        self.buf.put_slice(b" :");
        self.buf.put_slice(text.as_ref());
        self
    }

    /// Bytes written so far (for fitting replies into 512 bytes).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing has been written (never true: a line starts with its command).
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Ends the line with CR LF and freezes it for sharing.
    pub fn finish(mut self) -> Bytes {
        self.buf.put_slice(b"\r\n");
        self.buf.freeze()
    }
}

/// Whether `arg` can stand as a middle parameter of a line.
pub fn is_middle_param(arg: &[u8]) -> bool {
    !arg.is_empty()
        && arg[0] != b':'
        && !arg
            .iter()
            .any(|&b| matches!(b, b' ' | b'\r' | b'\n' | b'\0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_reply_with_trailing_text() {
        let line = LineBuilder::from_source("irc.test", "001")
            .arg("alice")
            .trailing("Welcome to IRC")
            .finish();
        assert_eq!(&line[..], b":irc.test 001 alice :Welcome to IRC\r\n");
    }

    #[test]
    fn a_sized_line_fits_its_first_buffer() {
        let text = [b'x'; 400];
        let line = LineBuilder::sized("a!~a@h", "PRIVMSG", 1 + 2 + 2 + text.len())
            .arg("#c")
            .trailing(text);
        let capacity = line.buf.capacity();
        let line = line.finish();
        assert_eq!(line.len(), capacity, "no growth, no waste");
    }

    /// Each row: a value a client sent that a reply echoes as a middle parameter,
    /// and what the reply carries.
    #[test]
    fn echoed_values_that_cannot_be_middle_parameters_become_a_star() {
        for (echoed, shown) in [
            (&b"bob"[..], &b"bob"[..]),
            (b"", b"*"),
            (b"x y", b"*"),
            (b":sneaky", b"*"),
            (b"a\rb", b"*"),
            (b"#c:d", b"#c:d"),
        ] {
            let line = LineBuilder::from_source("srv", "401")
                .arg("me")
                .arg(echoed)
                .trailing("No such nick/channel")
                .finish();
            let mut expected = b":srv 401 me ".to_vec();
            expected.extend_from_slice(shown);
            expected.extend_from_slice(b" :No such nick/channel\r\n");
            assert_eq!(line, expected, "{:?}", String::from_utf8_lossy(echoed));
        }
    }

    #[test]
    fn sourceless_line() {
        let line = LineBuilder::sourceless("ERROR")
            .trailing("Closing")
            .finish();
        assert_eq!(&line[..], b"ERROR :Closing\r\n");
    }

    #[test]
    fn text_is_passed_through_as_bytes() {
        let line = LineBuilder::from_source("a!~a@h", "PRIVMSG")
            .arg("#c")
            .trailing(b"\xff")
            .finish();
        assert_eq!(&line[..], b":a!~a@h PRIVMSG #c :\xff\r\n");
    }
}
