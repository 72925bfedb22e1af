//! Registered users as the network knows them: identity, channels, away, and user
//! modes `+i`, `+B`, `+o`, `+w`.
//! Plain data; only [`super::apply`] changes it.

use crate::proto::mask::wildcard_match;
use crate::proto::CaselessKey;
use crate::store::history::Party;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// When a connection signed on and when it last did something other than PING/PONG.
///
/// Shared by the connection's [`Client`](crate::state::Client) (created at accept,
/// stamped by the command dispatcher with one relaxed store, no lock) and every
/// replica's [`User`] (read by WHOIS and WHOX on any shard). It is the one piece of a
/// user that is not carried by events: activity changes with every command, and
/// logging each one would make the event log a second message path. On one machine
/// the registration event carries this handle. Between machines only the signon time
/// travels ([`signon_only`]): a node that learns of a user from another node (an event
/// or a snapshot) makes an [`Activity::remote`], so a remote user's idle time is
/// counted from when this node learned of it, not from its last command.
#[derive(Debug)]
pub struct Activity {
    /// The accept time; `last_active_ms` counts from it.
    connected: Instant,
    /// The accept time as Unix seconds (WHOIS signon).
    signon_unix: u64,
    /// Milliseconds from `connected` to the last command that counts as activity.
    last_active_ms: AtomicU64,
}

impl Activity {
    /// A clock for a connection accepted at `now` (`now_unix` in wall-clock seconds).
    pub fn new(now: Instant, now_unix: u64) -> Activity {
        Activity {
            connected: now,
            signon_unix: now_unix,
            last_active_ms: AtomicU64::new(0),
        }
    }

    /// The clock of a user this node learned of from another node (an event or a
    /// snapshot) that signed on at `signon_unix`: idle since now, as far as this node
    /// can tell.
    pub fn remote(signon_unix: u64) -> Activity {
        Activity::new(Instant::now(), signon_unix)
    }

    /// Records activity at `now`.
    pub fn touch(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.connected).as_millis();
        self.last_active_ms
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Whole seconds since the last activity, as seen at `now`.
    pub fn idle_secs(&self, now: Instant) -> u64 {
        let since_connect = now.saturating_duration_since(self.connected).as_millis();
        let since_connect = u64::try_from(since_connect).unwrap_or(u64::MAX);
        since_connect.saturating_sub(self.last_active_ms.load(Ordering::Relaxed)) / 1000
    }

    /// The clock of a connection handed over by a live upgrade: accepted at
    /// `connected` (in this process's clock), last active `last_active_ms` after it.
    pub fn resumed(connected: Instant, signon_unix: u64, last_active_ms: u64) -> Activity {
        Activity {
            connected,
            signon_unix,
            last_active_ms: AtomicU64::new(last_active_ms),
        }
    }

    /// When the connection was accepted, in Unix seconds.
    pub fn signon(&self) -> u64 {
        self.signon_unix
    }
}

/// Activities are equal when their signon times are: the wire tests' notion, since
/// the signon is all that travels.
#[cfg(test)]
impl PartialEq for Activity {
    fn eq(&self, other: &Activity) -> bool {
        self.signon_unix == other.signon_unix
    }
}

/// The wire form of an activity clock (`#[serde(with = "...")]`): the signon time in
/// Unix seconds, nothing else. `Instant`s mean nothing on another machine and the
/// idle clock changes with every command; decoding makes an [`Activity::remote`].
pub mod signon_only {
    use super::Activity;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::sync::Arc;

    /// Writes the signon time.
    pub fn serialize<S: Serializer>(
        activity: &Arc<Activity>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(activity.signon())
    }

    /// Reads a signon time into a fresh remote clock.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Arc<Activity>, D::Error> {
        u64::deserialize(deserializer).map(|signon| Arc::new(Activity::remote(signon)))
    }
}

/// A registered user as every shard's replica holds it.
#[derive(Debug, Clone)]
pub struct User {
    /// The nickname, spelled as chosen.
    pub nick: CaselessKey,
    /// `~user` as shown in the source. The texts are shared (`Arc`): a user is copied
    /// whenever an event changes it while an older version of the replica holds it
    /// (every JOIN, PART and NICK), and a copy should not allocate.
    pub user: Arc<str>,
    /// The host others see: a cloak of the address ([`crate::cloak`]), or the
    /// address itself when cloaking is off.
    pub host: Arc<str>,
    /// The peer IP as text, for bans, operators (WHOIS 378) and the user itself;
    /// the same text as `host` when cloaking is off.
    pub address: Arc<str>,
    /// Connected through a TLS listener (WHOIS 671).
    pub tls: bool,
    /// USER's real name.
    pub realname: Arc<str>,
    /// Channels the user is in, spelled as the channel was created. At most CHANLIMIT
    /// entries, so removing one is a short scan.
    pub channels: Vec<CaselessKey>,
    /// The AWAY message (at most AWAYLEN bytes), `None` while present.
    pub away: Option<Box<[u8]>>,
    /// User mode `+i`: hidden from WHO and NAMES by users who share no channel with it.
    pub invisible: bool,
    /// User mode `+B` (IRCv3 bot mode): marked in WHOIS (335) and WHO (`B`).
    pub bot: bool,
    /// The operator account this user authenticated as (user mode `+o`): WHO `*`,
    /// WHOIS 313, LUSERS 252, and the right to KILL, WALLOPS, REHASH and DIE.
    pub oper: Option<Box<str>>,
    /// User mode `+w`: receives WALLOPS.
    pub wallops: bool,
    /// The account the user is logged in to, spelled as registered (WHOIS 330, WHOX
    /// `a`, `extended-join`, `account-tag`).
    pub account: Option<CaselessKey>,
    /// Signon and idle times; see [`Activity`] (only the signon travels).
    pub activity: Arc<Activity>,
}

/// Equal when every field is, the activity clock by identity (it is shared, not
/// copied, between replicas).
impl PartialEq for User {
    fn eq(&self, other: &User) -> bool {
        self.nick.as_str() == other.nick.as_str()
            && self.user == other.user
            && self.host == other.host
            && self.address == other.address
            && self.tls == other.tls
            && self.realname == other.realname
            && self.channels == other.channels
            && self.away == other.away
            && self.invisible == other.invisible
            && self.bot == other.bot
            && self.oper == other.oper
            && self.wallops == other.wallops
            && self.account == other.account
            && Arc::ptr_eq(&self.activity, &other.activity)
    }
}

impl User {
    /// This user's side of a direct conversation in history: its account if it is
    /// logged in, else its nick.
    pub fn history_party(&self) -> Party {
        match &self.account {
            Some(account) => Party::account(account.as_str(), self.nick.as_str()),
            None => Party::nick(self.nick.as_str()),
        }
    }

    /// `nick!~user@host`: the source of the lines this user causes, and what ban masks
    /// are matched against.
    pub fn source(&self) -> String {
        format!("{}!{}@{}", self.nick, self.user, self.host)
    }

    /// Whether a `nick!user@host` wildcard mask matches this user, by the host
    /// others see or by the real address (a ban on an address still holds a cloaked
    /// user), or an account extban does (`$a`: logged in; `$a:pattern`: to an
    /// account the pattern matches). Costs one small allocation (the user's full
    /// mask), two for a cloaked user the first does not match; none for an extban.
    pub fn matches(&self, mask: &str) -> bool {
        if let Some(extban) = mask.strip_prefix("$a") {
            return match (extban.strip_prefix(':'), &self.account) {
                (_, None) => false,
                (None, Some(_)) => extban.is_empty(),
                (Some(pattern), Some(account)) => {
                    wildcard_match(pattern.as_bytes(), account.as_str().as_bytes())
                }
            };
        }
        wildcard_match(mask.as_bytes(), self.source().as_bytes())
            || (self.is_cloaked()
                && wildcard_match(
                    mask.as_bytes(),
                    format!("{}!{}@{}", self.nick, self.user, self.address).as_bytes(),
                ))
    }

    /// Whether others see a cloak rather than the address.
    pub fn is_cloaked(&self) -> bool {
        self.host != self.address
    }

    /// `~user@address`: what `[[oper]]` hosts are matched against.
    pub fn user_at_address(&self) -> String {
        format!("{}@{}", self.user, self.address)
    }

    /// Whether an active KLINE or DLINE keeps this user out, by its address or by
    /// its cloak. Costs two small allocations.
    pub fn is_server_banned(&self, ban: &crate::bans::ServerBan, now_unix: u64) -> bool {
        let Ok(ip) = self.address.parse::<std::net::IpAddr>() else {
            return false;
        };
        let shown = format!("{}@{}", self.user, self.host);
        ban.matches(&[&self.user_at_address(), &shown], ip, now_unix)
    }
}
