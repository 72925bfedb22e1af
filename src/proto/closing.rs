//! The lines a connection gets when the server closes it: `ERROR :Closing Link: HOST
//! (WHY)` for one client dropped or refused at accept, and `ERROR :Server shutting
//! down` at shutdown. One place for the texts, so every driver and the shard say the
//! same thing. Modern IRC, "ERROR message": a server sends ERROR before it closes a
//! client's link, and clients show its text.

use super::LineBuilder;
use bytes::Bytes;
use std::fmt::Display;

/// Why every client is closed at a graceful shutdown.
pub const SERVER_SHUTTING_DOWN: &str = "Server shutting down";

/// The whole line for a connection refused while the server shuts down (a static
/// line: the accept path writes it without building anything).
pub const SHUTTING_DOWN_LINE: &[u8] = b"ERROR :Server shutting down\r\n";

/// `ERROR :Closing Link: HOST (WHY)`: one client closed, or refused at accept, and
/// why. One allocation.
pub fn closing_link(host: impl Display, why: impl Display) -> Bytes {
    LineBuilder::sourceless("ERROR")
        .trailing(format!("Closing Link: {host} ({why})"))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_closing_lines_read_as_irc_servers_write_them() {
        assert_eq!(
            &closing_link("192.0.2.1", "Server is full")[..],
            b"ERROR :Closing Link: 192.0.2.1 (Server is full)\r\n"
        );
        assert_eq!(
            SHUTTING_DOWN_LINE,
            format!("ERROR :{SERVER_SHUTTING_DOWN}\r\n").as_bytes()
        );
    }
}
