//! Server bans (KLINE, DLINE): who may not connect, as every replica holds them. One
//! ban as a value is [`crate::bans`]' (the ban file and the settings use it too).
//!
//! Plain data changed only by [`super::apply`] (events `AddBan`, `RemoveBan`), so every
//! shard agrees on the list; the list a server starts with comes from its ban file
//! (`crate::ban_file`). Expiry is judged by the reader against its own clock (apply has
//! none): an expired ban stays in the replica, matches nobody, and is left out when
//! the file is next written. At most [`MAX_SERVER_BANS`], so matching a connection
//! costs at most that many comparisons.

pub use crate::bans::{canonical, BanTarget, ServerBan};
use std::net::IpAddr;

/// Most server bans kept; one more is refused.
pub const MAX_SERVER_BANS: usize = 10_000;

/// The server bans of one replica, in the order they were set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerBans {
    bans: Vec<ServerBan>,
}

impl ServerBans {
    /// A list as read from the ban file (cut to [`MAX_SERVER_BANS`]).
    pub fn new(mut bans: Vec<ServerBan>) -> ServerBans {
        bans.truncate(MAX_SERVER_BANS);
        ServerBans { bans }
    }

    /// Every ban, expired ones included.
    pub fn iter(&self) -> impl Iterator<Item = &ServerBan> {
        self.bans.iter()
    }

    /// The first active ban that keeps out `ip` (D-Lines only: before registration).
    pub fn address_ban(&self, ip: IpAddr, now_unix: u64) -> Option<&ServerBan> {
        self.bans.iter().find(|ban| {
            matches!(ban.target, BanTarget::Address(_)) && ban.matches(&[], ip, now_unix)
        })
    }

    /// The first active ban of either kind that keeps out a user at `ip` known as
    /// any of `user_at_hosts` (see [`ServerBan::matches`]).
    pub fn user_ban(
        &self,
        user_at_hosts: &[&str],
        ip: IpAddr,
        now_unix: u64,
    ) -> Option<&ServerBan> {
        self.bans
            .iter()
            .find(|ban| ban.matches(user_at_hosts, ip, now_unix))
    }

    /// Adds `ban`, replacing one with the same target; `false` when the list is full.
    pub(super) fn add(&mut self, ban: ServerBan) -> bool {
        if let Some(existing) = self.bans.iter_mut().find(|b| b.target == ban.target) {
            *existing = ban;
            return true;
        }
        if self.bans.len() >= MAX_SERVER_BANS {
            return false;
        }
        self.bans.push(ban);
        true
    }

    /// Removes the ban on `target`; `false` when there is none.
    pub(super) fn remove(&mut self, target: &BanTarget) -> bool {
        let before = self.bans.len();
        self.bans.retain(|ban| ban.target != *target);
        self.bans.len() != before
    }
}
