//! The server-wide directory: nicknames, registered users and channels.
//!
//! It sits behind one lock in [`super::Shared`] and is touched by the rare operations
//! (registration, NICK, JOIN, PART, QUIT, NAMES, LUSERS) and, once per channel message,
//! to check the sender may speak and to read which shards hold members. It never sees
//! a socket or an outbox: methods answer "who and which shards", and the caller
//! delivers.

use super::client::ClientId;
use crate::proto::{Caseless, CaselessKey};
use std::collections::HashMap;

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

/// Channel modes that gate who may join or speak.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelModes {
    /// `+n`: only members may send to the channel (set on every new channel).
    pub no_external: bool,
}

impl ChannelModes {
    /// The `+...` string shown by MODE queries.
    pub fn flags(&self) -> String {
        let mut flags = String::from("+");
        if self.no_external {
            flags.push('n');
        }
        flags
    }
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
    /// Every member, with status.
    pub members: HashMap<ClientId, Membership>,
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
}

/// Why a PART (or a channel lookup) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// No channel by that name.
    #[error("no such channel")]
    NoSuchChannel,
    /// The client is not a member.
    #[error("you're not on that channel")]
    NotOnChannel,
    /// The channel's modes forbid this sender.
    #[error("cannot send to channel")]
    CannotSend,
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
}

/// What a user leaving the server (QUIT or disconnect) or changing nick touches.
#[derive(Debug, Default)]
pub struct Audience {
    /// The channels whose members must be told.
    pub channels: Vec<CaselessKey>,
    /// The shards those members live on.
    pub shards: ShardSet,
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

    /// Adds `id` to `name`, creating the channel (with `id` as operator) if needed.
    pub fn join(
        &mut self,
        id: ClientId,
        name: &str,
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
                modes: ChannelModes { no_external: true },
                members: HashMap::new(),
                members_per_shard: vec![0; shard_count],
            });
        if channel.members.contains_key(&id) {
            return Ok(Joined {
                channel: channel.name.clone(),
                shards: channel.shards(),
                is_new_member: false,
            });
        }
        if user.channels.len() >= channel_limit {
            if channel.members.is_empty() {
                self.channels.remove(Caseless::new(name));
            }
            return Err(JoinError::TooManyChannels);
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
        self.remove_member(name, id);
        if let Some(user) = self.users.get_mut(&id) {
            user.channels.retain(|c| *c != *Caseless::new(name));
        }
        Ok(result)
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

    /// Checks that `id` may send to `name` and returns where its members are.
    pub fn message_target(
        &self,
        id: ClientId,
        name: &str,
    ) -> Result<(&CaselessKey, ShardSet), ChannelError> {
        let channel = self
            .channels
            .get(Caseless::new(name))
            .ok_or(ChannelError::NoSuchChannel)?;
        if channel.modes.no_external && !channel.members.contains_key(&id) {
            return Err(ChannelError::CannotSend);
        }
        Ok((&channel.name, channel.shards()))
    }

    /// A channel by name.
    pub fn channel(&self, name: &str) -> Option<&Channel> {
        self.channels.get(Caseless::new(name))
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
        let joined = dir.join(alice, "#Rust", 50, 0).expect("join");
        assert!(joined.is_new_member);
        dir.join(bob, "#rust", 50, 0).expect("join");
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
        dir.join(alice, "#c", 50, 0).expect("join");
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
        dir.join(alice, "#one", 1, 0).expect("first");
        assert_eq!(
            dir.join(alice, "#two", 1, 0).err(),
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
            dir.join(alice, name, 50, 0).expect("join");
            dir.join(bob, name, 50, 0).expect("join");
        }
        let audience = dir.remove_user(alice);
        assert_eq!(audience.channels.len(), 2);
        assert_eq!(audience.shards.iter().collect::<Vec<_>>(), vec![0, 1]);
    }
}
