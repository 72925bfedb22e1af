//! The network state: nicknames, registered users and channels. One replica per
//! node, read by all of its shards.
//!
//! The [`EventLog`](crate::state::log::EventLog) is its only writer: appending an
//! event applies it ([`Network::apply`], a pure function of the state and the event,
//! O(log n)) to the newest version and publishes the result with the entry, as an
//! immutable `Arc<Network>`. Versions share all they did not change ([`persistent`]),
//! so holding one is free while the writer goes on. A shard reads the version of the
//! last entry it has taken in, so what it reads always agrees with what it has told
//! its clients. Readers (the channel-message permission check and routing, NAMES,
//! WHO, LIST, WHOIS, ...) take no lock and never wait, however large the answer; the
//! same function applied to the same log gives every node of a cluster the same state.
//!
//! Layout: [`event`] (what can change), [`apply`] (how it changes), [`channel`],
//! [`modes`], [`users`], [`accounts`], [`read_markers`], [`whowas`] and [`server_bans`] (the data), [`wire`] (events
//! as bytes between nodes) and [`snapshot`] (a whole replica as bytes). Rendering any
//! of it as IRC text is done by the commands and the shard's notifications, not here.

pub mod accounts;
pub mod apply;
#[cfg(test)]
mod apply_tests;
pub mod channel;
pub mod event;
pub mod modes;
pub mod persistent;
pub mod read_markers;
pub mod server_bans;
pub mod snapshot;
#[cfg(test)]
mod snapshot_tests;
pub mod users;
pub mod whowas;
pub mod wire;

pub use accounts::Account;
pub use apply::{Outcome, Refusal};
pub use channel::{Ban, Channel, Layout, Members, Membership, Revision, ShardSet, Topic};
pub use event::{Event, Sequenced};
pub use modes::{ChannelModes, MaskList, ModeChange, ModeRefusal};
pub use read_markers::ReadMarkers;
pub use server_bans::{BanTarget, ServerBan, ServerBans};
pub use users::{Activity, User};
pub use whowas::{Whowas, WhowasEntry};
pub use wire::{decode_event, encode_event, WireError};

use crate::proto::{Caseless, CaselessKey};
use crate::state::ClientId;
use crate::store::history::Conversation;
use imbl::OrdMap;
use persistent::ArcMap;
use std::sync::Arc;

/// One replica of the network state; see the module comment.
#[derive(Debug, Clone)]
pub struct Network {
    /// How this node partitions channel members (its shards, other nodes).
    layout: Layout,
    /// Every nickname in use or claimed by a registering client.
    nicks: OrdMap<CaselessKey, ClientId>,
    /// What each registering client claimed, so its claim can be released.
    claims: OrdMap<ClientId, CaselessKey>,
    /// Registered users.
    users: ArcMap<ClientId, User>,
    /// Channels with at least one member.
    channels: ArcMap<CaselessKey, Channel>,
    /// Registered users with `+i` (251 RPL_LUSERCLIENT).
    invisible: usize,
    /// Registered users with `+o` (252 RPL_LUSEROP).
    opers: usize,
    /// The most registered users there have been at once (265/266 "max").
    peak_users: usize,
    /// Who held which nickname before (WHOWAS), bounded.
    whowas: Whowas,
    /// KLINEs and DLINEs (shared between versions until one changes them).
    server_bans: Arc<ServerBans>,
    /// Registered accounts, by name.
    accounts: ArcMap<CaselessKey, Account>,
    /// Which account accepts each client certificate (SASL EXTERNAL).
    certfps: OrdMap<Box<str>, CaselessKey>,
    /// Each account's read markers (IRCv3 `draft/read-marker`); an account without
    /// any has no entry.
    read_markers: OrdMap<CaselessKey, ReadMarkers>,
    /// Log position of the last event applied.
    applied: u64,
}

impl Network {
    /// Makes local user `id`'s activity clock the one its handed-over connection
    /// keeps (a live upgrade: the snapshot gives every user a remote clock).
    pub fn share_activity(&mut self, id: ClientId, activity: std::sync::Arc<Activity>) {
        if let Some(user) = self.users.get_mut(&id) {
            user.activity = activity;
        }
    }

    /// An empty network for a standalone server of `shard_count` shards.
    pub fn new(shard_count: usize) -> Network {
        Network::laid_out(Layout::standalone(shard_count))
    }

    /// An empty network as node `layout.node` of a cluster sees it.
    pub fn laid_out(layout: Layout) -> Network {
        Network {
            layout,
            nicks: OrdMap::new(),
            claims: OrdMap::new(),
            users: ArcMap::default(),
            channels: ArcMap::default(),
            invisible: 0,
            opers: 0,
            peak_users: 0,
            whowas: Whowas::default(),
            server_bans: Arc::default(),
            accounts: ArcMap::default(),
            certfps: OrdMap::new(),
            read_markers: OrdMap::new(),
            applied: 0,
        }
    }

    /// A network that starts with `bans` (read from the ban file at start: every
    /// replica starts from the same list).
    pub fn with_server_bans(layout: Layout, bans: Vec<ServerBan>) -> Network {
        Network {
            server_bans: Arc::new(ServerBans::new(bans)),
            ..Network::laid_out(layout)
        }
    }

    /// The same network with `accounts` registered (read from the node's store at
    /// start, before any event is applied); a name listed twice keeps its first.
    pub fn with_accounts(mut self, accounts: impl IntoIterator<Item = Account>) -> Network {
        for account in accounts {
            if !self.accounts.contains_key(&account.name) {
                self.index_certificates(&account);
                self.accounts.insert(account.name.clone(), account);
            }
        }
        self
    }

    /// The same network with read markers (read from the node's store at start,
    /// after the accounts): `(account, target, Unix milliseconds)`. Markers of an
    /// account the network does not hold are left out; each account keeps its
    /// newest [`read_markers::MAX_READ_MARKERS`].
    pub fn with_read_markers(
        mut self,
        markers: impl IntoIterator<Item = (CaselessKey, CaselessKey, u64)>,
    ) -> Network {
        let mut by_account: std::collections::BTreeMap<CaselessKey, Vec<(CaselessKey, u64)>> =
            std::collections::BTreeMap::new();
        for (account, target, millis) in markers {
            if self.accounts.contains_key(&account) {
                by_account
                    .entry(account)
                    .or_default()
                    .push((target, millis));
            }
        }
        for (account, list) in by_account {
            self.read_markers
                .insert(account, ReadMarkers::from_list(list));
        }
        self
    }

    /// The read markers of the account `name`; `None` when it has none.
    pub fn read_markers(&self, name: &str) -> Option<&ReadMarkers> {
        self.read_markers.get(Caseless::new(name))
    }

    /// The read marker of `target` for the account `name`, Unix milliseconds.
    pub fn read_marker(&self, name: &str, target: &str) -> Option<u64> {
        self.read_markers(name)?.get(target)
    }

    /// Records which certificates `account` accepts (a certificate an earlier
    /// account holds stays with it).
    fn index_certificates(&mut self, account: &Account) {
        for certfp in &account.certfps {
            if !self.certfps.contains_key(certfp) {
                self.certfps.insert(certfp.clone(), account.name.clone());
            }
        }
    }

    /// The account that accepts the client certificate `certfp` (SASL EXTERNAL).
    pub fn account_by_certfp(&self, certfp: &str) -> Option<&Account> {
        self.accounts.get(self.certfps.get(certfp)?)
    }

    /// The account called `name` (without case).
    pub fn account(&self, name: &str) -> Option<&Account> {
        self.accounts.get(Caseless::new(name))
    }

    /// Every account, in name order.
    pub fn accounts(&self) -> impl Iterator<Item = &Account> {
        self.accounts.values()
    }

    /// How many accounts are registered.
    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    /// How this replica partitions channel members.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The KLINEs and DLINEs.
    pub fn server_bans(&self) -> &ServerBans {
        &self.server_bans
    }

    /// The log position of the last event applied to this replica.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Who holds or claims `nick`.
    pub fn nick_owner(&self, nick: &str) -> Option<ClientId> {
        self.nicks.get(Caseless::new(nick)).copied()
    }

    /// A registered user.
    pub fn user(&self, id: ClientId) -> Option<&User> {
        self.users.get(&id)
    }

    /// The users of `members` with their status, in id order.
    ///
    /// NAMES and WHO list every member, and a member flood lists the channel to each
    /// joiner: a tree lookup per member was a third of the server's CPU while 8,000
    /// members filled one channel. Both maps are ordered by id, so a channel holding a
    /// good share of the network is walked beside the users in one pass (a step costs
    /// a few nanoseconds, a lookup a walk from the root); a small one is looked up.
    pub fn users_of<'a>(
        &'a self,
        members: &'a Members,
    ) -> impl Iterator<Item = (&'a User, Membership)> + 'a {
        const WALK_WHEN_ONE_IN: usize = 16;
        let mut walk = members
            .iter()
            .next()
            .filter(|_| members.len() * WALK_WHEN_ONE_IN >= self.users.len())
            .map(|(first, _)| self.users.iter_from(&first).peekable());
        members.iter().filter_map(move |(id, membership)| {
            let Some(users) = &mut walk else {
                return Some((self.users.get(&id)?, membership));
            };
            // Every member is a user; one that is not (never, but cheap to survive)
            // is skipped without losing the walk's place.
            while users.next_if(|(user, _)| **user < id).is_some() {}
            users
                .next_if(|(user, _)| **user == id)
                .map(|(_, user)| (user, membership))
        })
    }

    /// The conversation whose history keeps a direct message between users `a` and
    /// `b` as this replica knows them, if it is kept (one side is logged in). The
    /// sender's node and the recipient's compute it alike.
    pub fn conversation(&self, a: ClientId, b: ClientId) -> Option<Conversation> {
        let (a, b) = (self.user(a)?, self.user(b)?);
        Conversation::between(a.history_party(), b.history_party())
    }

    /// The registered user holding `nick`.
    pub fn user_by_nick(&self, nick: &str) -> Option<(ClientId, &User)> {
        let id = self.nick_owner(nick)?;
        Some((id, self.users.get(&id)?))
    }

    /// Every registered user, in no particular order.
    pub fn users(&self) -> impl Iterator<Item = (ClientId, &User)> {
        self.users.iter().map(|(&id, user)| (id, user))
    }

    /// A channel by name.
    pub fn channel(&self, name: &str) -> Option<&Channel> {
        self.channels.get(Caseless::new(name))
    }

    /// Every channel, in no particular order.
    pub fn channels(&self) -> impl Iterator<Item = &Channel> {
        self.channels.values()
    }

    /// How many users completed registration.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// How many registered users have `+i`.
    pub fn invisible_count(&self) -> usize {
        self.invisible
    }

    /// How many registered users are server operators.
    pub fn oper_count(&self) -> usize {
        self.opers
    }

    /// The most users that have been registered at once since the server started
    /// (Modern IRC's 265/266 "max").
    pub fn peak_user_count(&self) -> usize {
        self.peak_users
    }

    /// Who held nicknames before (WHOWAS).
    pub fn whowas(&self) -> &Whowas {
        &self.whowas
    }

    /// The cluster nodes holding users or nick claims, lowest first. O(users): for
    /// the cluster link's start-up, not for the message path.
    pub fn nodes(&self) -> Vec<u16> {
        let mut nodes: Vec<u16> = self
            .users
            .keys()
            .chain(self.claims.keys())
            .map(|id| id.node)
            .collect();
        nodes.sort_unstable();
        nodes.dedup();
        nodes
    }

    /// How many channels exist.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Whether `a` and `b` are members of at least one common channel. O(channels of
    /// `a`), which CHANLIMIT bounds.
    pub fn share_a_channel(&self, a: ClientId, b: ClientId) -> bool {
        let Some(user) = self.users.get(&a) else {
            return false;
        };
        user.channels.iter().any(|name| {
            self.channels
                .get(name)
                .is_some_and(|channel| channel.members.contains(b))
        })
    }

    /// Checks that `id` may send to `name` (the message hot path): `+n` keeps
    /// non-members out; `+m` and bans silence all but voiced members and operators.
    /// One map lookup for the channel and one for the sender; bans cost a match only
    /// when set.
    pub fn can_send(&self, id: ClientId, name: &str) -> Result<&Channel, Refusal> {
        let channel = self.channel(name).ok_or(Refusal::NoSuchChannel)?;
        let membership = channel.members.get(id);
        if channel.modes.no_external && membership.is_none() {
            return Err(Refusal::CannotSend);
        }
        let privileged = membership.is_some_and(|m| m.op || m.voice);
        if !privileged {
            if channel.modes.moderated {
                return Err(Refusal::CannotSend);
            }
            if !channel.bans.is_empty() && self.users.get(&id).is_some_and(|u| channel.is_banned(u))
            {
                return Err(Refusal::CannotSend);
            }
        }
        Ok(channel)
    }
}
