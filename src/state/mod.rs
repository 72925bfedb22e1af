//! Server state, split by who owns it:
//! - node-wide, one per process: the [`network`] replica (users, channels, modes:
//!   persistent versions, read by every shard without a lock) and its one writer, the
//!   event [`log`] that orders every change; [`shared`] holds them with the [`bus`]
//!   that carries hand-offs between shards, the [`deferred`] replies built off the
//!   shards, and the [`offload`] pool (argon2 and store waits, off the shard threads);
//! - per shard: its connections ([`slab`] of [`client`]s, each with an [`outbox`] and
//!   a [`flood`] bucket) and its members of each channel ([`local_members`], the
//!   dense arrays fan-out walks, derived from the log).

pub mod auth_throttle;
pub mod bus;
pub mod client;
pub mod cluster;
pub mod deferred;
pub mod flood;
pub mod freeze;
pub mod handover;
pub mod local_members;
pub mod log;
pub mod names_cache;
pub mod network;
pub mod offload;
pub mod outbox;
pub mod rehash;
pub mod shared;
pub mod slab;
pub mod sources;

pub use client::{Client, ClientId};
pub use network::{Network, ShardSet};
pub use outbox::{Outbox, SendQueueExceeded};
pub use shared::Shared;
