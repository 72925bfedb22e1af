//! The server-wide directory: nicknames, registered users and channels.
//!
//! It sits behind one lock in [`super::Shared`] and is touched by the rare operations
//! (registration, NICK, JOIN, PART, QUIT, NAMES, LUSERS, TOPIC, KICK, INVITE, MODE,
//! AWAY, WHO, WHOIS, LIST) and, once per channel message, to check the sender may speak
//! and to read which shards hold members. It never sees a socket or an outbox: methods
//! answer "who and which shards", and the caller delivers.

use super::client::ClientId;
use crate::proto::mask::wildcard_match;
use crate::proto::{Caseless, CaselessKey};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Most bans a channel holds (`478 ERR_BANLISTFULL` past it).
pub const MAX_BANS: usize = 100;
/// Most pending invitations a channel remembers; the oldest is forgotten first, so a
/// flood of INVITEs cannot grow a channel without bound.
pub const MAX_INVITES: usize = 64;

/// A set of shard numbers (at most 64 shards).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardSet(u64);

impl ShardSet {
    /// The most shards a server can run.
    pub const MAX_SHARDS: usize = 64;

    /// Adds `shard`.
    pub fn insert(&mut self, shard: u16) {
        self.0 |= 1 << shard;
    }

    /// Adds every shard of `other`.
    pub fn extend(&mut self, other: ShardSet) {
        self.0 |= other.0;
    }

    /// The shards in the set, lowest first.
    pub fn iter(self) -> impl Iterator<Item = u16> {
        (0..64u16).filter(move |shard| self.0 & (1 << shard) != 0)
    }
}

/// When a connection signed on and when it last did something other than PING/PONG.
///
/// Shared by the connection's [`Client`](super::Client) (created at accept, stamped by
/// the command dispatcher with one relaxed store, no lock) and its [`User`] (read by
/// WHOIS and WHOX under the directory lock, from any shard). Dropped with the last of
/// the two.
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

    /// When the connection was accepted, in Unix seconds.
    pub fn signon(&self) -> u64 {
        self.signon_unix
    }
}

/// A registered user as every shard sees it.
#[derive(Debug)]
pub struct User {
    /// The nickname, spelled as chosen.
    pub nick: CaselessKey,
    /// `~user` as shown in the source.
    pub user: Box<str>,
    /// The peer IP as text.
    pub host: Box<str>,
    /// USER's real name.
    pub realname: Box<str>,
    /// Channels the user is in, spelled as the channel was created.
    pub channels: Vec<CaselessKey>,
    /// The AWAY message (at most AWAYLEN bytes), `None` while present.
    pub away: Option<Box<[u8]>>,
    /// User mode `+i`: hidden from WHO by users who share no channel with it.
    pub invisible: bool,
    /// Signon and idle times; see [`Activity`].
    pub activity: Arc<Activity>,
}

impl User {
    /// `nick!~user@host`, what ban masks and USERHOST describe.
    pub fn mask(&self) -> String {
        format!("{}!{}@{}", self.nick, self.user, self.host)
    }
}

/// A member's status in one channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Membership {
    /// Channel operator (`@`).
    pub op: bool,
    /// Voiced (`+`).
    pub voice: bool,
}

impl Membership {
    /// Every status prefix, highest first (`multi-prefix`).
    pub fn all_prefixes(self) -> &'static str {
        match (self.op, self.voice) {
            (true, true) => "@+",
            (true, false) => "@",
            (false, true) => "+",
            (false, false) => "",
        }
    }

    /// The NAMES prefix of the highest status, if any.
    pub fn prefix(self) -> &'static str {
        if self.op {
            "@"
        } else if self.voice {
            "+"
        } else {
            ""
        }
    }
}

/// Channel modes that gate who may join, speak or set the topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelModes {
    /// `+n`: only members may send to the channel (set on every new channel).
    pub no_external: bool,
    /// `+t`: only operators may set the topic (set on every new channel).
    pub topic_lock: bool,
    /// `+m`: only voiced members and operators may speak.
    pub moderated: bool,
    /// `+i`: JOIN needs an INVITE.
    pub invite_only: bool,
    /// `+k`: JOIN needs this key.
    pub key: Option<Box<str>>,
    /// `+l`: JOIN is refused once the channel has this many members.
    pub limit: Option<usize>,
}

impl ChannelModes {
    /// The modes of a new channel, `+nt` (as Ergo and InspIRCd).
    pub fn new_channel() -> ChannelModes {
        ChannelModes {
            no_external: true,
            topic_lock: true,
            ..ChannelModes::default()
        }
    }

    /// The `+...` string shown by MODE queries, letters in alphabetical order.
    pub fn flags(&self) -> String {
        let mut flags = String::from("+");
        for (on, letter) in [
            (self.invite_only, 'i'),
            (self.key.is_some(), 'k'),
            (self.limit.is_some(), 'l'),
            (self.moderated, 'm'),
            (self.no_external, 'n'),
            (self.topic_lock, 't'),
        ] {
            if on {
                flags.push(letter);
            }
        }
        flags
    }

    /// The parameters that follow [`ChannelModes::flags`] in `324`: the key (or
    /// `<key>` for non-members, as InspIRCd) and the limit.
    pub fn flag_params(&self, show_key: bool) -> Vec<String> {
        let mut params = Vec::new();
        if let Some(key) = &self.key {
            params.push(if show_key {
                key.to_string()
            } else {
                "<key>".to_owned()
            });
        }
        if let Some(limit) = self.limit {
            params.push(limit.to_string());
        }
        params
    }
}

/// A channel topic and who set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    /// The text, at most TOPICLEN bytes, passed through as bytes.
    pub text: Box<[u8]>,
    /// `nick!~user@host` of the setter (333).
    pub set_by: Box<str>,
    /// When, in Unix seconds (333).
    pub set_at: u64,
}

/// One entry of a channel's ban list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// A `nick!user@host` mask with `*`/`?` wildcards, spelled as set.
    pub mask: Box<str>,
    /// The nickname of who set it (367).
    pub set_by: Box<str>,
    /// When, in Unix seconds (367).
    pub set_at: u64,
}

/// A channel and its members across all shards.
#[derive(Debug)]
pub struct Channel {
    /// The channel's name as first created.
    pub name: CaselessKey,
    /// Creation time, seconds since the Unix epoch.
    pub created: u64,
    /// Modes.
    pub modes: ChannelModes,
    /// The topic, if one is set.
    pub topic: Option<Topic>,
    /// Ban masks (`+b`), at most [`MAX_BANS`].
    pub bans: Vec<Ban>,
    /// Every member, with status.
    pub members: HashMap<ClientId, Membership>,
    /// Clients invited and not yet joined, at most [`MAX_INVITES`]; an invitation lets
    /// its holder past `+i` and bans once (as Ergo).
    invited: Vec<ClientId>,
    /// Members per shard, so a message is handed only to shards that have members.
    members_per_shard: Vec<u32>,
}

impl Channel {
    /// The shards that have at least one member.
    pub fn shards(&self) -> ShardSet {
        let mut set = ShardSet::default();
        for (shard, &count) in self.members_per_shard.iter().enumerate() {
            if count > 0 {
                set.insert(shard as u16);
            }
        }
        set
    }

    /// NAMES entries: each member's prefix and nickname.
    pub fn names<'d>(&'d self, users: &'d HashMap<ClientId, User>) -> Vec<String> {
        self.members
            .iter()
            .filter_map(|(id, membership)| {
                let user = users.get(id)?;
                Some(format!("{}{}", membership.prefix(), user.nick))
            })
            .collect()
    }

    /// Whether `user` matches a ban mask. Costs one small allocation (the user's mask)
    /// and only when the channel has bans.
    pub fn is_banned(&self, user: &User) -> bool {
        if self.bans.is_empty() {
            return false;
        }
        let mask = user.mask();
        self.bans
            .iter()
            .any(|ban| wildcard_match(ban.mask.as_bytes(), mask.as_bytes()))
    }
}

/// The nickname is held by someone else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("nickname is already in use")]
pub struct NickInUse;

/// Why a JOIN was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// The client is in as many channels as CHANLIMIT allows.
    #[error("too many channels")]
    TooManyChannels,
    /// `+l`: the channel is full (471).
    #[error("channel is full")]
    ChannelFull,
    /// `+i` and no invitation (473).
    #[error("invite only channel")]
    InviteOnly,
    /// A ban mask matches the joiner (474).
    #[error("banned from channel")]
    Banned,
    /// `+k` and the key is missing or wrong (475).
    #[error("bad channel key")]
    BadKey,
}

/// Why a channel operation (PART, TOPIC, KICK, INVITE, MODE, a message) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// No channel by that name (403).
    #[error("no such channel")]
    NoSuchChannel,
    /// The client is not a member (442).
    #[error("you're not on that channel")]
    NotOnChannel,
    /// The channel's modes forbid this sender (404).
    #[error("cannot send to channel")]
    CannotSend,
    /// The client is not a channel operator (482).
    #[error("you're not channel operator")]
    NotOperator,
    /// The target nickname does not exist (401).
    #[error("no such nick")]
    NoSuchNick,
    /// The target is not a member (441).
    #[error("they aren't on that channel")]
    UserNotInChannel,
    /// The target is already a member (443).
    #[error("is already on channel")]
    UserOnChannel,
}

/// What a successful JOIN changed.
#[derive(Debug)]
pub struct Joined {
    /// The channel's name as created.
    pub channel: CaselessKey,
    /// Shards with members, the joiner's included.
    pub shards: ShardSet,
    /// False when the client was already a member (nothing to announce).
    pub is_new_member: bool,
    /// The topic, for 332/333 to the joiner.
    pub topic: Option<Topic>,
}

/// What a user leaving the server (QUIT or disconnect) or changing nick touches.
#[derive(Debug, Default)]
pub struct Audience {
    /// The channels whose members must be told.
    pub channels: Vec<CaselessKey>,
    /// The shards those members live on.
    pub shards: ShardSet,
}

/// A member removed by KICK.
#[derive(Debug)]
pub struct Kicked {
    /// The channel's name as created.
    pub channel: CaselessKey,
    /// Shards that had members before the removal (the kicked member's included).
    pub shards: ShardSet,
    /// Who was removed.
    pub member: ClientId,
    /// Its nickname as spelled.
    pub nick: CaselessKey,
}

/// A recorded INVITE.
#[derive(Debug)]
pub struct Invited {
    /// The invited client.
    pub member: ClientId,
    /// Its nickname as spelled.
    pub nick: CaselessKey,
    /// The channel's name as created.
    pub channel: CaselessKey,
    /// The invitee's AWAY message (301 to the inviter).
    pub away: Option<Box<[u8]>>,
}

/// One channel mode change, parsed from a MODE line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModeChange {
    /// `+i`, `+m`, `+n` or `+t` (`mode` is the letter).
    Flag {
        /// Set (`+`) or unset (`-`).
        add: bool,
        /// The mode letter.
        mode: char,
    },
    /// `+k key` / `-k`.
    Key {
        /// Set or unset.
        add: bool,
        /// The key; shown as `*` when unset.
        key: String,
    },
    /// `+l n` / `-l`.
    Limit(Option<usize>),
    /// `+b mask` / `-b mask`, the mask already in `nick!user@host` form.
    Ban {
        /// Add or remove.
        add: bool,
        /// The mask.
        mask: String,
    },
    /// `+o nick`, `+v nick` and their removal.
    Member {
        /// Give or take.
        add: bool,
        /// `o` or `v`.
        mode: char,
        /// The member's nickname (spelled as registered once applied).
        nick: String,
    },
}

impl ModeChange {
    /// Whether this change is a `+` change.
    pub fn is_add(&self) -> bool {
        match self {
            ModeChange::Flag { add, .. }
            | ModeChange::Key { add, .. }
            | ModeChange::Ban { add, .. }
            | ModeChange::Member { add, .. } => *add,
            ModeChange::Limit(limit) => limit.is_some(),
        }
    }

    /// The mode letter.
    pub fn letter(&self) -> char {
        match self {
            ModeChange::Flag { mode, .. } | ModeChange::Member { mode, .. } => *mode,
            ModeChange::Key { .. } => 'k',
            ModeChange::Limit(_) => 'l',
            ModeChange::Ban { .. } => 'b',
        }
    }

    /// The parameter shown in the MODE line, if the change has one.
    pub fn param(&self) -> Option<String> {
        match self {
            ModeChange::Flag { .. } | ModeChange::Limit(None) => None,
            ModeChange::Key { add: true, key } => Some(key.clone()),
            ModeChange::Key { add: false, .. } => Some("*".to_owned()),
            ModeChange::Limit(Some(limit)) => Some(limit.to_string()),
            ModeChange::Ban { mask, .. } => Some(mask.clone()),
            ModeChange::Member { nick, .. } => Some(nick.clone()),
        }
    }
}

/// A mode change refused for its target, answered with a numeric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModeRefusal {
    /// `+o`/`+v` for a nickname nobody has (401).
    NoSuchNick(String),
    /// `+o`/`+v` for someone not on the channel (441).
    UserNotInChannel(String),
    /// `+b` past [`MAX_BANS`] (478).
    BanListFull(String),
}

/// The outcome of a channel MODE change.
#[derive(Debug)]
pub struct ModesChanged {
    /// The channel's name as created.
    pub channel: CaselessKey,
    /// Shards with members: where the MODE line goes.
    pub shards: ShardSet,
    /// The changes that changed something, in order (empty: announce nothing).
    pub applied: Vec<ModeChange>,
    /// The changes refused, each for its numeric.
    pub refused: Vec<ModeRefusal>,
}

/// The directory proper; see the module comment.
#[derive(Debug)]
pub struct Directory {
    shard_count: usize,
    nicks: HashMap<CaselessKey, ClientId>,
    users: HashMap<ClientId, User>,
    channels: HashMap<CaselessKey, Channel>,
}

impl Directory {
    /// An empty directory for a server of `shard_count` shards.
    pub fn new(shard_count: usize) -> Directory {
        Directory {
            shard_count,
            nicks: HashMap::new(),
            users: HashMap::new(),
            channels: HashMap::new(),
        }
    }

    /// Who holds `nick`, registered or not.
    pub fn nick_owner(&self, nick: &str) -> Option<ClientId> {
        self.nicks.get(Caseless::new(nick)).copied()
    }

    /// The registered user holding `nick`.
    pub fn user_by_nick(&self, nick: &str) -> Option<(ClientId, &User)> {
        let id = self.nick_owner(nick)?;
        Some((id, self.users.get(&id)?))
    }

    /// Reserves `nick` for `id` (during registration), releasing `previous`.
    pub fn reserve_nick(
        &mut self,
        id: ClientId,
        nick: &str,
        previous: Option<&str>,
    ) -> Result<(), NickInUse> {
        match self.nick_owner(nick) {
            Some(owner) if owner != id => return Err(NickInUse),
            _ => {}
        }
        if let Some(previous) = previous {
            self.nicks.remove(Caseless::new(previous));
        }
        self.nicks.insert(CaselessKey::new(nick), id);
        Ok(())
    }

    /// Releases a nickname reserved by an unregistered client that went away.
    pub fn release_nick(&mut self, id: ClientId, nick: &str) {
        if self.nick_owner(nick) == Some(id) {
            self.nicks.remove(Caseless::new(nick));
        }
    }

    /// Records a client that completed registration; its nick is already reserved.
    pub fn register(&mut self, id: ClientId, user: User) {
        self.users.insert(id, user);
    }

    /// A registered user.
    pub fn user(&self, id: ClientId) -> Option<&User> {
        self.users.get(&id)
    }

    /// Every registered user, for NAMES-like lookups.
    pub fn users(&self) -> &HashMap<ClientId, User> {
        &self.users
    }

    /// Sets (`Some`) or clears (`None`) a user's AWAY message.
    pub fn set_away(&mut self, id: ClientId, message: Option<Box<[u8]>>) {
        if let Some(user) = self.users.get_mut(&id) {
            user.away = message;
        }
    }

    /// Sets or clears user mode `+i`; returns whether it changed.
    pub fn set_invisible(&mut self, id: ClientId, invisible: bool) -> bool {
        match self.users.get_mut(&id) {
            Some(user) if user.invisible != invisible => {
                user.invisible = invisible;
                true
            }
            _ => false,
        }
    }

    /// Whether `a` and `b` are members of at least one common channel.
    pub fn share_a_channel(&self, a: ClientId, b: ClientId) -> bool {
        let Some(user) = self.users.get(&a) else {
            return false;
        };
        user.channels.iter().any(|name| {
            self.channels
                .get(name)
                .is_some_and(|channel| channel.members.contains_key(&b))
        })
    }

    /// Renames a registered user; returns who must see the NICK line.
    pub fn change_nick(&mut self, id: ClientId, new_nick: &str) -> Result<Audience, NickInUse> {
        let old_nick = match self.users.get(&id) {
            Some(user) => user.nick.clone(),
            None => return Err(NickInUse),
        };
        self.reserve_nick(id, new_nick, Some(old_nick.as_str()))?;
        let user = self.users.get_mut(&id).ok_or(NickInUse)?;
        user.nick = CaselessKey::new(new_nick);
        Ok(self.audience_of(id))
    }

    /// Changes a user's real name (SETNAME); returns who shares a channel with it.
    pub fn set_realname(&mut self, id: ClientId, realname: &str) -> Audience {
        if let Some(user) = self.users.get_mut(&id) {
            user.realname = realname.into();
        }
        self.audience_of(id)
    }

    /// Who shares a channel with `id`: the channels and their shards (AWAY notices).
    pub fn audience(&self, id: ClientId) -> Audience {
        self.audience_of(id)
    }

    fn audience_of(&self, id: ClientId) -> Audience {
        let mut audience = Audience::default();
        if let Some(user) = self.users.get(&id) {
            for name in &user.channels {
                if let Some(channel) = self.channels.get(name) {
                    audience.shards.extend(channel.shards());
                    audience.channels.push(channel.name.clone());
                }
            }
        }
        audience
    }

    /// Removes a registered user everywhere; returns who must see the QUIT line.
    pub fn remove_user(&mut self, id: ClientId) -> Audience {
        let audience = self.audience_of(id);
        if let Some(user) = self.users.remove(&id) {
            self.release_nick(id, user.nick.as_str());
            for channel in &user.channels {
                self.remove_member(channel.as_str(), id);
            }
        }
        audience
    }

    /// Adds `id` to `name`, creating the channel (`+nt`, with `id` as operator) if
    /// needed. An existing channel's `+l`, `+k`, `+i` and bans are checked in that
    /// order; an invitation lets the joiner past `+i` and bans, and is used up.
    pub fn join(
        &mut self,
        id: ClientId,
        name: &str,
        key: Option<&[u8]>,
        channel_limit: usize,
        now_unix: u64,
    ) -> Result<Joined, JoinError> {
        let shard_count = self.shard_count;
        let user = self.users.get_mut(&id).ok_or(JoinError::TooManyChannels)?;
        let channel = self
            .channels
            .entry(CaselessKey::new(name))
            .or_insert_with(|| Channel {
                name: CaselessKey::new(name),
                created: now_unix,
                modes: ChannelModes::new_channel(),
                topic: None,
                bans: Vec::new(),
                members: HashMap::new(),
                invited: Vec::new(),
                members_per_shard: vec![0; shard_count],
            });
        if channel.members.contains_key(&id) {
            return Ok(Joined {
                channel: channel.name.clone(),
                shards: channel.shards(),
                is_new_member: false,
                topic: None,
            });
        }
        if user.channels.len() >= channel_limit {
            if channel.members.is_empty() {
                self.channels.remove(Caseless::new(name));
            }
            return Err(JoinError::TooManyChannels);
        }
        if !channel.members.is_empty() {
            let invitation = channel.invited.iter().position(|&i| i == id);
            if channel
                .modes
                .limit
                .is_some_and(|limit| channel.members.len() >= limit)
            {
                return Err(JoinError::ChannelFull);
            }
            if let Some(expected) = &channel.modes.key {
                if key != Some(expected.as_bytes()) {
                    return Err(JoinError::BadKey);
                }
            }
            if channel.modes.invite_only && invitation.is_none() {
                return Err(JoinError::InviteOnly);
            }
            if invitation.is_none() && channel.is_banned(user) {
                return Err(JoinError::Banned);
            }
            if let Some(index) = invitation {
                channel.invited.remove(index);
            }
        }
        let membership = Membership {
            op: channel.members.is_empty(),
            voice: false,
        };
        channel.members.insert(id, membership);
        channel.members_per_shard[id.shard as usize] += 1;
        user.channels.push(channel.name.clone());
        Ok(Joined {
            channel: channel.name.clone(),
            shards: channel.shards(),
            is_new_member: true,
            topic: channel.topic.clone(),
        })
    }

    /// Removes `id` from `name`; returns the channel and the shards that must see the
    /// PART (computed before the leaver is gone, so its shard is included).
    pub fn part(
        &mut self,
        id: ClientId,
        name: &str,
    ) -> Result<(CaselessKey, ShardSet), ChannelError> {
        let channel = self
            .channels
            .get(Caseless::new(name))
            .ok_or(ChannelError::NoSuchChannel)?;
        if !channel.members.contains_key(&id) {
            return Err(ChannelError::NotOnChannel);
        }
        let result = (channel.name.clone(), channel.shards());
        self.leave(id, name);
        Ok(result)
    }

    /// Takes `id` out of `name` on both sides: the channel's members and the user's
    /// channel list.
    fn leave(&mut self, id: ClientId, name: &str) {
        self.remove_member(name, id);
        if let Some(user) = self.users.get_mut(&id) {
            user.channels.retain(|c| *c != *Caseless::new(name));
        }
    }

    /// Drops `id` from a channel's member table, and the channel once it is empty.
    fn remove_member(&mut self, name: &str, id: ClientId) {
        let Some(channel) = self.channels.get_mut(Caseless::new(name)) else {
            return;
        };
        if channel.members.remove(&id).is_some() {
            channel.members_per_shard[id.shard as usize] -= 1;
        }
        if channel.members.is_empty() {
            self.channels.remove(Caseless::new(name));
        }
    }

    /// The channel `id` acts on as an operator: it must exist, `id` must be a member
    /// (442) and an operator (482).
    fn operated_channel(&self, id: ClientId, name: &str) -> Result<&Channel, ChannelError> {
        let channel = self
            .channels
            .get(Caseless::new(name))
            .ok_or(ChannelError::NoSuchChannel)?;
        match channel.members.get(&id) {
            None => Err(ChannelError::NotOnChannel),
            Some(membership) if !membership.op => Err(ChannelError::NotOperator),
            Some(_) => Ok(channel),
        }
    }

    /// Checks that `id` may send to `name` and returns where its members are: `+n`
    /// keeps non-members out; `+m` and bans silence all but voiced members and
    /// operators. One map lookup for the sender; bans cost a match only when set.
    pub fn message_target(
        &self,
        id: ClientId,
        name: &str,
    ) -> Result<(&CaselessKey, ShardSet), ChannelError> {
        let channel = self
            .channels
            .get(Caseless::new(name))
            .ok_or(ChannelError::NoSuchChannel)?;
        let membership = channel.members.get(&id);
        if channel.modes.no_external && membership.is_none() {
            return Err(ChannelError::CannotSend);
        }
        let privileged = membership.is_some_and(|m| m.op || m.voice);
        if !privileged {
            if channel.modes.moderated {
                return Err(ChannelError::CannotSend);
            }
            if !channel.bans.is_empty() && self.users.get(&id).is_some_and(|u| channel.is_banned(u))
            {
                return Err(ChannelError::CannotSend);
            }
        }
        Ok((&channel.name, channel.shards()))
    }

    /// Sets (or, with empty `text`, clears) the topic of `name`. The setter must be a
    /// member, and an operator when the channel is `+t`. Returns the channel and the
    /// shards whose members must see the TOPIC line.
    pub fn set_topic(
        &mut self,
        id: ClientId,
        name: &str,
        text: &[u8],
        set_by: &str,
        now_unix: u64,
    ) -> Result<(CaselessKey, ShardSet), ChannelError> {
        let channel = self
            .channels
            .get_mut(Caseless::new(name))
            .ok_or(ChannelError::NoSuchChannel)?;
        let membership = channel.members.get(&id).ok_or(ChannelError::NotOnChannel)?;
        if channel.modes.topic_lock && !membership.op {
            return Err(ChannelError::NotOperator);
        }
        channel.topic = (!text.is_empty()).then(|| Topic {
            text: text.into(),
            set_by: set_by.into(),
            set_at: now_unix,
        });
        Ok((channel.name.clone(), channel.shards()))
    }

    /// Operator `id` removes `nick` from `name`. The shards returned are those that had
    /// members before, so the KICK line reaches the kicked member too; the caller then
    /// forgets the member in its shard's index.
    pub fn kick(&mut self, id: ClientId, name: &str, nick: &str) -> Result<Kicked, ChannelError> {
        let channel = self.operated_channel(id, name)?;
        let (member, user) = self.user_by_nick(nick).ok_or(ChannelError::NoSuchNick)?;
        if !channel.members.contains_key(&member) {
            return Err(ChannelError::UserNotInChannel);
        }
        let kicked = Kicked {
            channel: channel.name.clone(),
            shards: channel.shards(),
            member,
            nick: user.nick.clone(),
        };
        self.leave(member, name);
        Ok(kicked)
    }

    /// Member `id` invites `nick` to `name` (an operator, if the channel is `+i`);
    /// the invitation is remembered until used.
    pub fn invite(
        &mut self,
        id: ClientId,
        nick: &str,
        name: &str,
    ) -> Result<Invited, ChannelError> {
        let (member, user) = self.user_by_nick(nick).ok_or(ChannelError::NoSuchNick)?;
        let (nick, away) = (user.nick.clone(), user.away.clone());
        let channel = self
            .channels
            .get_mut(Caseless::new(name))
            .ok_or(ChannelError::NoSuchChannel)?;
        let membership = channel.members.get(&id).ok_or(ChannelError::NotOnChannel)?;
        if channel.modes.invite_only && !membership.op {
            return Err(ChannelError::NotOperator);
        }
        if channel.members.contains_key(&member) {
            return Err(ChannelError::UserOnChannel);
        }
        if !channel.invited.contains(&member) {
            if channel.invited.len() >= MAX_INVITES {
                channel.invited.remove(0);
            }
            channel.invited.push(member);
        }
        Ok(Invited {
            member,
            nick,
            channel: channel.name.clone(),
            away,
        })
    }

    /// Operator `id` applies `changes` to `name`. Only changes that change something
    /// are returned as applied (as Ergo), in order, with nicknames as registered.
    pub fn change_channel_modes(
        &mut self,
        id: ClientId,
        name: &str,
        changes: Vec<ModeChange>,
        set_by: &str,
        now_unix: u64,
    ) -> Result<ModesChanged, ChannelError> {
        let channel = self
            .channels
            .get(Caseless::new(name))
            .ok_or(ChannelError::NoSuchChannel)?;
        if !channel.members.get(&id).is_some_and(|m| m.op) {
            return Err(ChannelError::NotOperator);
        }
        let mut applied = Vec::new();
        let mut refused = Vec::new();
        for change in changes {
            let member = match &change {
                ModeChange::Member { nick, .. } => match self.user_by_nick(nick) {
                    Some((member, user)) => Some((member, user.nick.to_string())),
                    None => {
                        refused.push(ModeRefusal::NoSuchNick(nick.clone()));
                        continue;
                    }
                },
                _ => None,
            };
            let Some(channel) = self.channels.get_mut(Caseless::new(name)) else {
                break;
            };
            let outcome = apply_mode(channel, change, member, set_by, now_unix);
            match outcome {
                Ok(Some(change)) => applied.push(change),
                Ok(None) => {}
                Err(refusal) => refused.push(refusal),
            }
        }
        let channel = self
            .channels
            .get(Caseless::new(name))
            .ok_or(ChannelError::NoSuchChannel)?;
        Ok(ModesChanged {
            channel: channel.name.clone(),
            shards: channel.shards(),
            applied,
            refused,
        })
    }

    /// A channel by name.
    pub fn channel(&self, name: &str) -> Option<&Channel> {
        self.channels.get(Caseless::new(name))
    }

    /// Every channel, in no particular order (LIST).
    pub fn channels(&self) -> impl Iterator<Item = &Channel> {
        self.channels.values()
    }

    /// How many channels exist.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// How many users completed registration.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }
}

/// Applies one change to `channel`; `Ok(None)` when it changed nothing. `member` is the
/// resolved target of a `+o`/`+v` change.
fn apply_mode(
    channel: &mut Channel,
    change: ModeChange,
    member: Option<(ClientId, String)>,
    set_by: &str,
    now_unix: u64,
) -> Result<Option<ModeChange>, ModeRefusal> {
    let modes = &mut channel.modes;
    let changed = match &change {
        ModeChange::Flag { add, mode } => {
            let flag = match mode {
                'i' => &mut modes.invite_only,
                'm' => &mut modes.moderated,
                'n' => &mut modes.no_external,
                't' => &mut modes.topic_lock,
                _ => return Ok(None),
            };
            std::mem::replace(flag, *add) != *add
        }
        ModeChange::Key { add: true, key } => {
            let key: Box<str> = key.as_str().into();
            modes.key.replace(key.clone()) != Some(key)
        }
        ModeChange::Key { add: false, .. } => modes.key.take().is_some(),
        ModeChange::Limit(limit) => std::mem::replace(&mut modes.limit, *limit) != *limit,
        ModeChange::Ban { add: true, mask } => {
            if channel
                .bans
                .iter()
                .any(|ban| ban.mask.eq_ignore_ascii_case(mask))
            {
                false
            } else if channel.bans.len() >= MAX_BANS {
                return Err(ModeRefusal::BanListFull(mask.clone()));
            } else {
                channel.bans.push(Ban {
                    mask: mask.as_str().into(),
                    set_by: set_by.into(),
                    set_at: now_unix,
                });
                true
            }
        }
        ModeChange::Ban { add: false, mask } => {
            let Some(index) = channel
                .bans
                .iter()
                .position(|ban| ban.mask.eq_ignore_ascii_case(mask))
            else {
                return Ok(None);
            };
            let removed = channel.bans.remove(index);
            return Ok(Some(ModeChange::Ban {
                add: false,
                mask: removed.mask.into(),
            }));
        }
        ModeChange::Member { add, mode, .. } => {
            let Some((member, nick)) = member else {
                return Ok(None);
            };
            let Some(membership) = channel.members.get_mut(&member) else {
                return Err(ModeRefusal::UserNotInChannel(nick));
            };
            let status = if *mode == 'o' {
                &mut membership.op
            } else {
                &mut membership.voice
            };
            if std::mem::replace(status, *add) == *add {
                return Ok(None);
            }
            return Ok(Some(ModeChange::Member {
                add: *add,
                mode: *mode,
                nick,
            }));
        }
    };
    Ok(changed.then_some(change))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::slab::SlotKey;

    fn client(shard: u16, index: u32) -> ClientId {
        ClientId {
            shard,
            slot: SlotKey {
                index,
                generation: 0,
            },
        }
    }

    fn registered(dir: &mut Directory, id: ClientId, nick: &str) {
        dir.reserve_nick(id, nick, None).expect("free nick");
        dir.register(
            id,
            User {
                nick: CaselessKey::new(nick),
                user: "~u".into(),
                host: "127.0.0.1".into(),
                realname: "R".into(),
                channels: Vec::new(),
                away: None,
                invisible: false,
                activity: Arc::new(Activity::new(Instant::now(), 0)),
            },
        );
    }

    #[test]
    fn nicknames_are_unique_ignoring_case() {
        let mut dir = Directory::new(1);
        registered(&mut dir, client(0, 1), "Alice");
        assert_eq!(
            dir.reserve_nick(client(0, 2), "aLiCe", None),
            Err(NickInUse)
        );
        assert_eq!(dir.nick_owner("ALICE"), Some(client(0, 1)));
    }

    #[test]
    fn first_joiner_is_operator_and_an_empty_channel_is_gone() {
        let mut dir = Directory::new(2);
        let (alice, bob) = (client(0, 1), client(1, 2));
        registered(&mut dir, alice, "alice");
        registered(&mut dir, bob, "bob");
        let joined = dir.join(alice, "#Rust", None, 50, 0).expect("join");
        assert!(joined.is_new_member);
        dir.join(bob, "#rust", None, 50, 0).expect("join");
        let channel = dir.channel("#RUST").expect("exists");
        assert_eq!(channel.name.as_str(), "#Rust");
        assert!(channel.members[&alice].op && !channel.members[&bob].op);
        assert_eq!(channel.shards().iter().collect::<Vec<_>>(), vec![0, 1]);

        dir.part(alice, "#rust").expect("member");
        assert_eq!(
            dir.channel("#rust")
                .expect("bob stays")
                .shards()
                .iter()
                .count(),
            1
        );
        dir.remove_user(bob);
        assert!(dir.channel("#rust").is_none());
        assert_eq!(dir.nick_owner("bob"), None);
    }

    #[test]
    fn no_external_messages_by_default() {
        let mut dir = Directory::new(1);
        let (alice, bob) = (client(0, 1), client(0, 2));
        registered(&mut dir, alice, "alice");
        registered(&mut dir, bob, "bob");
        dir.join(alice, "#c", None, 50, 0).expect("join");
        assert!(dir.message_target(alice, "#c").is_ok());
        assert_eq!(
            dir.message_target(bob, "#c").err(),
            Some(ChannelError::CannotSend)
        );
        assert_eq!(
            dir.message_target(bob, "#none").err(),
            Some(ChannelError::NoSuchChannel)
        );
    }

    #[test]
    fn channel_limit_is_enforced_without_leaving_an_empty_channel() {
        let mut dir = Directory::new(1);
        let alice = client(0, 1);
        registered(&mut dir, alice, "alice");
        dir.join(alice, "#one", None, 1, 0).expect("first");
        assert_eq!(
            dir.join(alice, "#two", None, 1, 0).err(),
            Some(JoinError::TooManyChannels)
        );
        assert!(dir.channel("#two").is_none());
    }

    #[test]
    fn quit_audience_names_each_shared_channel_once() {
        let mut dir = Directory::new(2);
        let (alice, bob) = (client(0, 1), client(1, 1));
        registered(&mut dir, alice, "alice");
        registered(&mut dir, bob, "bob");
        for name in ["#a", "#b"] {
            dir.join(alice, name, None, 50, 0).expect("join");
            dir.join(bob, name, None, 50, 0).expect("join");
        }
        let audience = dir.remove_user(alice);
        assert_eq!(audience.channels.len(), 2);
        assert_eq!(audience.shards.iter().collect::<Vec<_>>(), vec![0, 1]);
    }

    fn op_and_member(shards: usize) -> (Directory, ClientId, ClientId) {
        let mut dir = Directory::new(shards);
        let (alice, bob) = (client(0, 1), client((shards - 1) as u16, 2));
        registered(&mut dir, alice, "alice");
        registered(&mut dir, bob, "bob");
        dir.join(alice, "#c", None, 50, 0).expect("join");
        (dir, alice, bob)
    }

    fn set(dir: &mut Directory, by: ClientId, changes: Vec<ModeChange>) -> Vec<ModeChange> {
        dir.change_channel_modes(by, "#c", changes, "alice", 0)
            .expect("operator")
            .applied
    }

    fn flag(add: bool, mode: char) -> ModeChange {
        ModeChange::Flag { add, mode }
    }

    #[test]
    fn new_channels_are_no_external_and_topic_locked() {
        let (dir, _, _) = op_and_member(1);
        let modes = &dir.channel("#c").expect("exists").modes;
        assert_eq!(modes.flags(), "+nt");
    }

    #[test]
    fn join_checks_limit_key_invite_and_bans() {
        let (mut dir, alice, bob) = op_and_member(2);
        set(&mut dir, alice, vec![ModeChange::Limit(Some(1))]);
        assert_eq!(
            dir.join(bob, "#c", None, 50, 0).err(),
            Some(JoinError::ChannelFull)
        );
        set(&mut dir, alice, vec![ModeChange::Limit(None)]);

        let key = ModeChange::Key {
            add: true,
            key: "sesame".into(),
        };
        set(&mut dir, alice, vec![key]);
        assert_eq!(
            dir.join(bob, "#c", None, 50, 0).err(),
            Some(JoinError::BadKey)
        );
        assert_eq!(
            dir.join(bob, "#c", Some(b"wrong"), 50, 0).err(),
            Some(JoinError::BadKey)
        );
        let unkey = ModeChange::Key {
            add: false,
            key: String::new(),
        };
        set(&mut dir, alice, vec![unkey]);

        let ban = ModeChange::Ban {
            add: true,
            mask: "B*!*@*".into(),
        };
        set(&mut dir, alice, vec![ban, flag(true, 'i')]);
        assert_eq!(
            dir.join(bob, "#c", None, 50, 0).err(),
            Some(JoinError::InviteOnly)
        );
        set(&mut dir, alice, vec![flag(false, 'i')]);
        assert_eq!(
            dir.join(bob, "#c", None, 50, 0).err(),
            Some(JoinError::Banned)
        );

        set(&mut dir, alice, vec![flag(true, 'i')]);
        dir.invite(alice, "BOB", "#c").expect("invite");
        assert!(
            dir.join(bob, "#c", None, 50, 0)
                .expect("invited")
                .is_new_member
        );
        dir.part(bob, "#c").expect("member");
        assert_eq!(
            dir.join(bob, "#c", None, 50, 0).err(),
            Some(JoinError::InviteOnly),
            "an invitation is used up by the join"
        );
    }

    #[test]
    fn moderated_and_banned_senders_are_silenced_unless_voiced() {
        let (mut dir, alice, bob) = op_and_member(2);
        dir.join(bob, "#c", None, 50, 0).expect("join");
        set(&mut dir, alice, vec![flag(true, 'm')]);
        assert_eq!(
            dir.message_target(bob, "#c").err(),
            Some(ChannelError::CannotSend)
        );
        assert!(dir.message_target(alice, "#c").is_ok(), "operators speak");
        let voice = ModeChange::Member {
            add: true,
            mode: 'v',
            nick: "bob".into(),
        };
        set(&mut dir, alice, vec![voice]);
        assert!(dir.message_target(bob, "#c").is_ok());

        let devoice = ModeChange::Member {
            add: false,
            mode: 'v',
            nick: "bob".into(),
        };
        let ban = ModeChange::Ban {
            add: true,
            mask: "*!*@127.0.0.*".into(),
        };
        set(&mut dir, alice, vec![flag(false, 'm'), devoice, ban]);
        assert_eq!(
            dir.message_target(bob, "#c").err(),
            Some(ChannelError::CannotSend)
        );
    }

    #[test]
    fn only_changes_that_change_something_are_applied() {
        let (mut dir, alice, bob) = op_and_member(1);
        let applied = set(
            &mut dir,
            alice,
            vec![
                flag(true, 'n'),
                flag(true, 'm'),
                ModeChange::Member {
                    add: true,
                    mode: 'o',
                    nick: "ALICE".into(),
                },
                ModeChange::Ban {
                    add: true,
                    mask: "x!*@*".into(),
                },
                ModeChange::Ban {
                    add: true,
                    mask: "X!*@*".into(),
                },
                ModeChange::Ban {
                    add: false,
                    mask: "nobody!*@*".into(),
                },
            ],
        );
        assert_eq!(
            applied,
            vec![
                flag(true, 'm'),
                ModeChange::Ban {
                    add: true,
                    mask: "x!*@*".into()
                }
            ]
        );
        let outcome = dir
            .change_channel_modes(
                alice,
                "#c",
                vec![
                    ModeChange::Member {
                        add: true,
                        mode: 'v',
                        nick: "bob".into(),
                    },
                    ModeChange::Member {
                        add: true,
                        mode: 'v',
                        nick: "carol".into(),
                    },
                ],
                "alice",
                0,
            )
            .expect("operator");
        assert!(outcome.applied.is_empty());
        assert_eq!(
            outcome.refused,
            vec![
                ModeRefusal::UserNotInChannel("bob".into()),
                ModeRefusal::NoSuchNick("carol".into())
            ]
        );
        assert_eq!(
            dir.change_channel_modes(bob, "#c", vec![], "bob", 0).err(),
            Some(ChannelError::NotOperator)
        );
    }

    #[test]
    fn the_ban_list_is_bounded() {
        let (mut dir, alice, _) = op_and_member(1);
        let bans = (0..MAX_BANS + 1)
            .map(|i| ModeChange::Ban {
                add: true,
                mask: format!("n{i}!*@*"),
            })
            .collect();
        let outcome = dir
            .change_channel_modes(alice, "#c", bans, "alice", 0)
            .expect("operator");
        assert_eq!(outcome.applied.len(), MAX_BANS);
        assert_eq!(outcome.refused.len(), 1);
    }

    #[test]
    fn topic_lock_and_membership_gate_the_topic() {
        let (mut dir, alice, bob) = op_and_member(1);
        assert_eq!(
            dir.set_topic(bob, "#c", b"hi", "bob", 1).err(),
            Some(ChannelError::NotOnChannel)
        );
        dir.join(bob, "#c", None, 50, 0).expect("join");
        assert_eq!(
            dir.set_topic(bob, "#c", b"hi", "bob", 1).err(),
            Some(ChannelError::NotOperator)
        );
        dir.set_topic(alice, "#c", b"hello", "alice!~a@h", 7)
            .expect("op");
        let topic = dir
            .channel("#c")
            .and_then(|c| c.topic.clone())
            .expect("set");
        assert_eq!(
            (&*topic.text, &*topic.set_by, topic.set_at),
            (&b"hello"[..], "alice!~a@h", 7)
        );
        set(&mut dir, alice, vec![flag(false, 't')]);
        dir.set_topic(bob, "#c", b"", "bob", 8).expect("-t");
        assert!(
            dir.channel("#c").expect("exists").topic.is_none(),
            "empty clears"
        );
    }

    #[test]
    fn kick_needs_an_operator_and_a_member() {
        let (mut dir, alice, bob) = op_and_member(2);
        assert_eq!(
            dir.kick(alice, "#c", "bob").err(),
            Some(ChannelError::UserNotInChannel)
        );
        assert_eq!(
            dir.kick(alice, "#c", "nobody").err(),
            Some(ChannelError::NoSuchNick)
        );
        assert_eq!(
            dir.kick(bob, "#c", "alice").err(),
            Some(ChannelError::NotOnChannel)
        );
        dir.join(bob, "#c", None, 50, 0).expect("join");
        assert_eq!(
            dir.kick(bob, "#c", "alice").err(),
            Some(ChannelError::NotOperator)
        );
        let kicked = dir.kick(alice, "#c", "BOB").expect("kick");
        assert_eq!((kicked.member, kicked.nick.as_str()), (bob, "bob"));
        assert_eq!(kicked.shards.iter().collect::<Vec<_>>(), vec![0, 1]);
        assert!(dir.user(bob).expect("registered").channels.is_empty());
        assert_eq!(dir.channel("#c").expect("alice stays").members.len(), 1);
    }

    #[test]
    fn invite_checks_in_modern_irc_order() {
        let (mut dir, alice, bob) = op_and_member(1);
        assert_eq!(
            dir.invite(alice, "nobody", "#c").err(),
            Some(ChannelError::NoSuchNick)
        );
        assert_eq!(
            dir.invite(alice, "bob", "#none").err(),
            Some(ChannelError::NoSuchChannel)
        );
        assert_eq!(
            dir.invite(bob, "alice", "#c").err(),
            Some(ChannelError::NotOnChannel)
        );
        dir.join(bob, "#c", None, 50, 0).expect("join");
        assert_eq!(
            dir.invite(alice, "bob", "#c").err(),
            Some(ChannelError::UserOnChannel)
        );
    }

    #[test]
    fn activity_counts_idle_seconds_from_the_last_command() {
        let start = Instant::now();
        let activity = Activity::new(start, 1_000);
        let later = start + std::time::Duration::from_secs(90);
        assert_eq!(activity.idle_secs(later), 90);
        activity.touch(start + std::time::Duration::from_secs(60));
        assert_eq!(activity.idle_secs(later), 30);
        assert_eq!(activity.signon(), 1_000);
    }
}
