//! A channel as the network knows it: members with their status, modes, topic, bans
//! and invitations. Plain data; only [`super::apply`] changes it.
//!
//! Node-wide: one per node, shared by its shards (see [`Members`] for how fan-out
//! reaches the members of one shard).

use super::modes::{ChannelModes, MaskList};
use super::users::User;
use crate::proto::CaselessKey;
use crate::state::ClientId;
use imbl::OrdMap;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Most entries in each of a channel's mask lists (bans, ban exceptions, invite
/// exceptions; `478 ERR_BANLISTFULL` past it).
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

    /// The set as one word (bit `n` is shard `n`), to share it through an atomic.
    pub fn bits(self) -> u64 {
        self.0
    }

    /// The set whose word [`ShardSet::bits`] gave.
    pub fn from_bits(bits: u64) -> ShardSet {
        ShardSet(bits)
    }

    /// Adds every shard of `other`.
    pub fn extend(&mut self, other: ShardSet) {
        self.0 |= other.0;
    }

    /// Whether `shard` is in the set.
    pub fn contains(self, shard: u16) -> bool {
        self.0 & (1 << shard) != 0
    }

    /// The shards in the set, lowest first.
    pub fn iter(self) -> impl Iterator<Item = u16> {
        let mut rest = self.0;
        std::iter::from_fn(move || {
            if rest == 0 {
                return None;
            }
            let shard = rest.trailing_zeros() as u16;
            rest &= rest - 1;
            Some(shard)
        })
    }
}

/// Where a node keeps each member of a channel: its own shards are places
/// `0..shard_count`, and each other node of a cluster is the one place
/// `shard_count + node` (its members are reached through one cross-node message,
/// whichever of its shards they live on). Alone, every client is on this node.
///
/// The layout is node-local: two nodes partition the same members differently, and
/// nothing outside [`Members`] depends on how, so replicas on different nodes apply
/// the same events to the same outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Layout {
    /// This node's number (0 when alone).
    pub node: u16,
    /// This node's shards.
    pub shard_count: u16,
}

impl Layout {
    /// The most places a channel can spread over ([`ShardSet::MAX_SHARDS`]), so a
    /// node's shards plus the highest node number must stay below it.
    pub const MAX_PLACES: usize = ShardSet::MAX_SHARDS;

    /// A server that is not part of a cluster.
    pub fn standalone(shard_count: usize) -> Layout {
        Layout {
            node: 0,
            shard_count: shard_count as u16,
        }
    }

    /// Where `id`'s membership is kept: its shard when it is local, its node's place
    /// otherwise. Saturates rather than overflows for a node number no configuration
    /// allows (an event or snapshot from another node is decoded, not trusted): such
    /// a place is past [`Layout::MAX_PLACES`], which [`Members`] refuses.
    pub fn place(self, id: ClientId) -> u16 {
        if id.node == self.node {
            id.shard
        } else {
            self.shard_count.saturating_add(id.node)
        }
    }

    /// The node a place stands for, when it is not one of this node's shards.
    pub fn remote_node(self, place: u16) -> Option<u16> {
        place.checked_sub(self.shard_count)
    }

    /// Whether `id` lives on this node.
    pub fn is_local(self, id: ClientId) -> bool {
        id.node == self.node
    }
}

/// A member's status in one channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// Channel operator (`@`).
    pub op: bool,
    /// Voiced (`+`).
    pub voice: bool,
}

/// A member's nick as the channel lists it: a copy kept beside its status, so that
/// NAMES reads the members' own entries in order (one sequential walk) instead of
/// following each member to its user and on to its nick's heap string. A member
/// flood lists the channel to every joiner (8,000 members: 32 M names), and those
/// two pointer chases per name were a third of the server's CPU. [`super::apply`]
/// writes it with the membership and on every nick change; a nick longer than the
/// copy holds (never: NICKLEN is 30) is not copied and NAMES reads the user.
#[derive(Clone, Copy)]
struct ListedNick {
    len: u8,
    bytes: [u8; ListedNick::CAPACITY],
}

impl ListedNick {
    const CAPACITY: usize = 31;
    const TOO_LONG: u8 = u8::MAX;

    fn new(nick: &str) -> ListedNick {
        let mut listed = ListedNick {
            len: ListedNick::TOO_LONG,
            bytes: [0; ListedNick::CAPACITY],
        };
        if let Some(slot) = listed.bytes.get_mut(..nick.len()) {
            slot.copy_from_slice(nick.as_bytes());
            listed.len = nick.len() as u8;
        }
        listed
    }

    fn as_str(&self) -> Option<&str> {
        let bytes = self.bytes.get(..usize::from(self.len))?;
        std::str::from_utf8(bytes).ok()
    }
}

impl std::fmt::Debug for ListedNick {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().unwrap_or("(too long)").fmt(f)
    }
}

/// One member's entry: its status and the nick NAMES lists.
#[derive(Debug, Clone, Copy)]
struct Member {
    status: Membership,
    nick: ListedNick,
}

/// A channel's members with their status, and how many live in each place
/// ([`Layout`]): this node's shards, then one place per other node.
///
/// Node-wide and persistent: the set is an [`OrdMap`] shared between versions of
/// the replica, so a JOIN or PART into a channel of 100,000 members copies one path
/// of the tree (O(log n)), never the members. Fan-out does not walk this set: each
/// shard walks its own dense array of its local members
/// ([`crate::state::local_members`]), derived from the same events. What the
/// message path reads here is [`Members::shards`] (which places to hand a message
/// to) and one member's status (the sender's permission).
#[derive(Debug, Clone, Default)]
pub struct Members {
    layout: Layout,
    all: OrdMap<ClientId, Member>,
    /// Members per place, indexed by place; a place's bit in `shards` is set while
    /// its count is not zero.
    per_place: Vec<u32>,
    /// The places whose count is not zero: the routing read on the message path.
    shards: ShardSet,
    /// Which set this is and how many changes it has seen: see [`Revision`].
    revision: Revision,
}

/// A member set's identity and change count, for caches of what is derived from it
/// (a big channel's NAMES text, [`crate::state::names_cache`]): equal revisions mean
/// equal members, statuses and nicks. `lineage` is unique per set made on this node
/// (a channel created twice, or loaded from a snapshot, gets a new one; 0 is never
/// made); `changes` counts every insert, removal, rename and status change (every
/// [`Members::get_mut`], changed or not: a spare re-rendering, never a stale one);
/// `appended` names the member the last change added, if that is what it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Revision {
    pub lineage: u64,
    pub changes: u64,
    pub appended: Option<ClientId>,
}

impl Revision {
    fn fresh() -> Revision {
        static LINEAGES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Revision {
            lineage: LINEAGES.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            changes: 0,
            appended: None,
        }
    }

    fn changed(&mut self, appended: Option<ClientId>) {
        self.changes += 1;
        self.appended = appended;
    }
}

impl Members {
    /// No members, laid out for this node.
    pub fn new(layout: Layout) -> Members {
        Members {
            layout,
            revision: Revision::fresh(),
            all: OrdMap::new(),
            per_place: Vec::new(),
            shards: ShardSet::default(),
        }
    }

    /// How many members the channel has.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// Whether the channel has no members (it is then removed).
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// The places with at least one member: where a channel message is handed (this
    /// node's shards, and other nodes as [`Layout::remote_node`] tells).
    pub fn shards(&self) -> ShardSet {
        self.shards
    }

    /// How many members live in `place`.
    pub fn count_in(&self, place: u16) -> usize {
        self.per_place
            .get(place as usize)
            .map_or(0, |&n| n as usize)
    }

    /// `id`'s status, if it is a member.
    pub fn get(&self, id: ClientId) -> Option<Membership> {
        self.all.get(&id).map(|member| member.status)
    }

    /// Whether `id` is a member.
    pub fn contains(&self, id: ClientId) -> bool {
        self.all.contains_key(&id)
    }

    /// `id`'s status for changing, if it is a member.
    pub fn get_mut(&mut self, id: ClientId) -> Option<&mut Membership> {
        self.revision.changed(None);
        self.all.get_mut(&id).map(|member| &mut member.status)
    }

    /// This set's identity and change count.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// Member `id`'s status and nick as NAMES lists it (see [`Members::iter_listed`]).
    pub fn listed(&self, id: ClientId) -> Option<(Membership, Option<&str>)> {
        self.all
            .get(&id)
            .map(|member| (member.status, member.nick.as_str()))
    }

    /// Every member with its status, in client order (node, shard, slot).
    pub fn iter(&self) -> impl Iterator<Item = (ClientId, Membership)> + '_ {
        self.all.iter().map(|(&id, member)| (id, member.status))
    }

    /// Every member with its status and nick as NAMES lists it, in client order; the
    /// nick is `None` for one too long to copy (then it is the user's).
    pub fn iter_listed(&self) -> impl Iterator<Item = (ClientId, Membership, Option<&str>)> + '_ {
        self.all
            .iter()
            .map(|(&id, member)| (id, member.status, member.nick.as_str()))
    }

    /// Adds `id`, known as `nick` (it must not be a member yet). A place beyond
    /// [`Layout::MAX_PLACES`] cannot occur: configuration refuses such a cluster.
    pub(super) fn insert(&mut self, id: ClientId, membership: Membership, nick: &str) {
        let place = self.layout.place(id);
        if place as usize >= Layout::MAX_PLACES {
            return;
        }
        let member = Member {
            status: membership,
            nick: ListedNick::new(nick),
        };
        let added = self.all.insert(id, member).is_none();
        self.revision.changed(added.then_some(id));
        if added {
            if self.per_place.len() <= place as usize {
                self.per_place.resize(place as usize + 1, 0);
            }
            self.per_place[place as usize] += 1;
            self.shards.insert(place);
        }
    }

    /// Member `id` is now known as `nick`.
    pub(super) fn rename(&mut self, id: ClientId, nick: &str) {
        self.revision.changed(None);
        if let Some(member) = self.all.get_mut(&id) {
            member.nick = ListedNick::new(nick);
        }
    }

    /// Removes `id`; whether it was a member.
    pub(super) fn remove(&mut self, id: ClientId) -> bool {
        self.revision.changed(None);
        if self.all.remove(&id).is_none() {
            return false;
        }
        let place = self.layout.place(id);
        if let Some(count) = self.per_place.get_mut(place as usize) {
            *count -= 1;
            if *count == 0 {
                self.shards = ShardSet(self.shards.0 & !(1 << place));
            }
        }
        true
    }
}

/// A channel topic and who set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topic {
    /// The text, at most TOPICLEN bytes, passed through as bytes.
    pub text: Box<[u8]>,
    /// `nick!~user@host` of the setter (333).
    pub set_by: Box<str>,
    /// When, in Unix seconds (333).
    pub set_at: u64,
}

/// One entry of a channel's ban, ban-exception or invite-exception list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    /// A `nick!user@host` mask with `*`/`?` wildcards, spelled as set.
    pub mask: Box<str>,
    /// The nickname of who set it (367).
    pub set_by: Box<str>,
    /// When, in Unix seconds (367).
    pub set_at: u64,
}

/// A channel and its members across all shards.
#[derive(Debug, Clone)]
pub struct Channel {
    /// The channel's name as first created.
    pub name: CaselessKey,
    /// Creation time, seconds since the Unix epoch.
    pub created: u64,
    /// Modes.
    pub modes: ChannelModes,
    /// The topic, if one is set (shared between versions of the replica).
    pub topic: Option<Arc<Topic>>,
    /// Ban masks (`+b`), at most [`MAX_BANS`]. The mask lists are behind an `Arc`
    /// so a JOIN, which copies the channel once per version, does not copy them.
    pub bans: Arc<Vec<Ban>>,
    /// Ban exception masks (`+e`), at most [`MAX_BANS`].
    pub excepts: Arc<Vec<Ban>>,
    /// Invite exception masks (`+I`), at most [`MAX_BANS`].
    pub invite_exceptions: Arc<Vec<Ban>>,
    /// Every member, with status.
    pub members: Members,
    /// Clients invited and not yet joined, at most [`MAX_INVITES`]; an invitation lets
    /// its holder past `+i` and bans once (as Ergo).
    pub(super) invited: Vec<ClientId>,
}

impl Channel {
    /// A new empty channel, `+nt` (as Ergo and InspIRCd).
    pub(super) fn new(name: &str, created: u64, layout: Layout) -> Channel {
        Channel {
            name: CaselessKey::new(name),
            created,
            modes: ChannelModes::new_channel(),
            topic: None,
            bans: Arc::default(),
            excepts: Arc::default(),
            invite_exceptions: Arc::default(),
            members: Members::new(layout),
            invited: Vec::new(),
        }
    }

    /// Whether `asker` may see this channel in LIST, NAMES, WHO and WHOIS: a secret
    /// (`+s`) channel shows only to its members.
    pub fn is_visible_to(&self, asker: ClientId) -> bool {
        !self.modes.secret || self.members.contains(asker)
    }

    /// One of the mask lists.
    pub fn list(&self, list: MaskList) -> &[Ban] {
        match list {
            MaskList::Ban => &self.bans,
            MaskList::Except => &self.excepts,
            MaskList::InviteException => &self.invite_exceptions,
        }
    }

    /// One of the mask lists, for changing.
    pub(super) fn list_mut(&mut self, list: MaskList) -> &mut Vec<Ban> {
        match list {
            MaskList::Ban => Arc::make_mut(&mut self.bans),
            MaskList::Except => Arc::make_mut(&mut self.excepts),
            MaskList::InviteException => Arc::make_mut(&mut self.invite_exceptions),
        }
    }

    /// Whether a ban mask matches `user` and no ban exception (`+e`) does. Costs a
    /// match only when bans are set.
    pub fn is_banned(&self, user: &User) -> bool {
        !self.bans.is_empty()
            && self.bans.iter().any(|ban| user.matches(&ban.mask))
            && !self.excepts.iter().any(|except| user.matches(&except.mask))
    }

    /// Whether an invite exception (`+I`) lets `user` into this `+i` channel.
    pub fn is_invite_exempt(&self, user: &User) -> bool {
        self.invite_exceptions
            .iter()
            .any(|entry| user.matches(&entry.mask))
    }

    /// Whether `id` holds an invitation it has not used yet (the invite list).
    pub fn has_invited(&self, id: ClientId) -> bool {
        self.invited.contains(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::slab::SlotKey;

    fn client(shard: u16, index: u32) -> ClientId {
        ClientId {
            node: 0,
            shard,
            slot: SlotKey {
                index,
                generation: 0,
            },
        }
    }

    #[test]
    fn members_are_partitioned_by_shard_and_removal_keeps_the_rest() {
        let mut members = Members::new(Layout::standalone(3));
        for i in 0..5 {
            members.insert(client(i % 2, i as u32), Membership::default(), "n");
        }
        assert_eq!(members.len(), 5);
        assert_eq!(members.shards().iter().collect::<Vec<_>>(), vec![0, 1]);
        assert!(members.remove(client(0, 2)));
        assert!(!members.remove(client(0, 2)), "removed once");
        assert_eq!(members.count_in(0), 2);
        assert!(members.contains(client(0, 0)) && members.contains(client(0, 4)));
        members.remove(client(1, 1));
        members.remove(client(1, 3));
        assert_eq!(members.shards().iter().collect::<Vec<_>>(), vec![0]);
    }

    /// Node numbers come from decoded events and snapshots: one no configuration
    /// allows must not overflow the place arithmetic, and is placed nowhere.
    #[test]
    fn a_node_number_past_any_layout_is_placed_nowhere() {
        let layout = Layout {
            node: 0,
            shard_count: 2,
        };
        let stranger = ClientId {
            node: u16::MAX,
            ..client(1, 7)
        };
        assert_eq!(layout.place(stranger), u16::MAX);
        let mut members = Members::new(layout);
        members.insert(stranger, Membership::default(), "stranger");
        assert!(members.is_empty() && !members.contains(stranger));
        assert!(!members.remove(stranger));
    }

    #[test]
    fn shard_sets_iterate_in_order() {
        let mut set = ShardSet::default();
        for shard in [5, 0, 63] {
            set.insert(shard);
        }
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![0, 5, 63]);
        assert!(set.contains(5) && !set.contains(4));
    }
}
