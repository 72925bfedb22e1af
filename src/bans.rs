//! One server ban (KLINE, DLINE) as a value: what it matches, why, until when. A leaf:
//! the network state holds the list (`crate::state::network::ServerBans`), the ban
//! file reads and writes it (`crate::ban_file`), and the settings carry the list a
//! server starts with; none of them is imported here.

use crate::proto::mask::wildcard_match;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// What a ban matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BanTarget {
    /// KLINE: a `user@host` wildcard mask against `~user@ip`, checked when
    /// registration completes.
    User(Box<str>),
    /// DLINE: an address or network, checked at accept, before registration.
    Address(IpNet),
}

impl BanTarget {
    /// The kind's name as operators write it: `K-Line` or `D-Line`.
    pub fn kind(&self) -> &'static str {
        match self {
            BanTarget::User(_) => "K-Line",
            BanTarget::Address(_) => "D-Line",
        }
    }

    /// The mask or network as text.
    pub fn mask(&self) -> String {
        match self {
            BanTarget::User(mask) => mask.to_string(),
            BanTarget::Address(net) => net.to_string(),
        }
    }
}

/// One server ban.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerBan {
    /// What it matches.
    pub target: BanTarget,
    /// Why: shown to whoever it disconnects or refuses.
    pub reason: Box<str>,
    /// The operator who set it (nick), for the record.
    pub set_by: Box<str>,
    /// When it was set, in Unix seconds (`STATS K`/`D`); 0: unknown (a ban file
    /// written before the time was kept).
    pub set_at: u64,
    /// When it stops matching, in Unix seconds; `None`: never.
    pub expires_at: Option<u64>,
}

impl ServerBan {
    /// Whether it still matches at `now_unix`.
    pub fn is_active(&self, now_unix: u64) -> bool {
        self.expires_at.is_none_or(|end| now_unix < end)
    }

    /// Whether this active ban keeps out a user at `ip` known as any of
    /// `user_at_hosts` (`~user@ip`, and `~user@cloak` for a cloaked user: a K-line
    /// on either holds; none for a connection not yet registered).
    pub fn matches(&self, user_at_hosts: &[&str], ip: IpAddr, now_unix: u64) -> bool {
        self.is_active(now_unix)
            && match &self.target {
                BanTarget::User(mask) => user_at_hosts
                    .iter()
                    .any(|uh| wildcard_match(mask.as_bytes(), uh.as_bytes())),
                BanTarget::Address(net) => net.contains(&canonical(ip)),
            }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is (a dual-stack listener sees
/// IPv4 peers that way), so a DLINE on `192.0.2.0/24` keeps them out too.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban(target: BanTarget, expires_at: Option<u64>) -> ServerBan {
        ServerBan {
            target,
            reason: "r".into(),
            set_by: "op".into(),
            set_at: 0,
            expires_at,
        }
    }

    #[test]
    fn kline_masks_match_user_at_ip_and_dlines_match_networks() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let kline = ban(BanTarget::User("~bad*@192.0.2.*".into()), None);
        assert!(kline.matches(&["~badguy@192.0.2.7"], ip, 0));
        assert!(!kline.matches(&["~good@192.0.2.7", "~good@abc.ip"], ip, 0));
        assert!(!kline.matches(&[], ip, 0));
        let dline = ban(BanTarget::Address("192.0.2.0/24".parse().unwrap()), None);
        assert!(dline.matches(&[], ip, 0));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert!(dline.matches(&[], mapped, 0));
        assert!(!dline.matches(&[], "198.51.100.1".parse().unwrap(), 0));
    }

    #[test]
    fn an_expired_ban_matches_nobody() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let dline = ban(
            BanTarget::Address("192.0.2.7/32".parse().unwrap()),
            Some(100),
        );
        assert!(dline.matches(&[], ip, 99));
        assert!(!dline.matches(&[], ip, 100));
    }
}
