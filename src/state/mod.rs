//! Server state: what one connection owns ([`client`], [`outbox`], [`flood`]), what a
//! shard owns ([`slab`]), and the few structures every shard shares ([`directory`],
//! [`shared`]).

pub mod caps;
pub mod client;
pub mod directory;
pub mod flood;
pub mod outbox;
pub mod shared;
pub mod slab;

pub use client::{Client, ClientId};
pub use directory::{Directory, ShardSet};
pub use outbox::{Outbox, SendQueueExceeded};
pub use shared::Shared;
