//! The IRC wire format: framing, parsing, serializing (once per message, in the
//! variants capabilities ask for), names, numerics, capabilities and the closing
//! lines.
//!
//! Everything here is pure: no sockets, no runtime, no shared state. It is the part of
//! the server that a hostile client talks to first, so it is table-tested on its own.

pub mod caps;
pub mod casemap;
pub mod closing;
pub mod framing;
pub mod line;
pub mod mask;
pub mod message;
pub mod names;
pub mod numeric;
pub mod outgoing;
pub mod snomask;
pub mod texts;
pub mod time;

pub use casemap::{Caseless, CaselessKey};
pub use framing::{Frame, LineLimits};
pub use line::LineBuilder;
pub use message::{Message, ParseError};
