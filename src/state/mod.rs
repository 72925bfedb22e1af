//! Server state: what one connection owns ([`client`], [`outbox`], [`flood`]), what a
//! shard owns ([`slab`], its replica of the [`network`]), and what every shard shares
//! ([`shared`]: the event [`log`] that orders every network change, and the [`bus`]
//! that carries hand-offs between shards).

pub mod bus;
pub mod client;
pub mod cluster;
pub mod flood;
pub mod log;
pub mod network;
pub mod outbox;
pub mod shared;
pub mod slab;
pub mod sources;

pub use client::{Client, ClientId};
pub use network::{Network, ShardSet};
pub use outbox::{Outbox, SendQueueExceeded};
pub use shared::Shared;
