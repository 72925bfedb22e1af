//! Snapshots of a replica: the whole network state as bytes, so that a node that
//! starts (or restarts) loads a recent one and applies only the log after its
//! `applied` position, reaching the state of a node that applied the whole log.
//!
//! What is written is the state, not this node's memory layout:
//! - A channel's members are one flat list (place by place, each in its own order,
//!   which is NAMES order); the loading node partitions them again for its own
//!   [`Layout`] (its shards, other nodes) through the [`Members`] API, keeping the
//!   written order within each of its places. Where the loading node merges places
//!   the writer kept apart (two shards of another node, say), their members follow
//!   each other; a node that applied the whole log may order such a place
//!   differently: NAMES order is node-local.
//! - A user's channels are positions in the snapshot's channel list: a varint
//!   instead of a name per membership, and no name lookup when loading.
//! - Indexes and counts that follow from the rest (who holds which nick, how many
//!   users are invisible or operators) are rebuilt rather than read.
//!
//! Everything read is checked ([`Network::from_snapshot`]): a corrupt snapshot is an
//! error at load, never a replica that panics or drifts later. The bytes depend only
//! on the state and the writer's layout (what memory keeps in hash order is written
//! sorted), so two replicas that agree, laid out alike, write the same snapshot.
//! Wire format: [`super::wire`].

use super::accounts::{Account, MAX_ACCOUNTS, MAX_CERTFPS};
use super::channel::{Ban, Channel, Layout, Members, Membership, Topic, MAX_BANS, MAX_INVITES};
use super::modes::ChannelModes;
use super::read_markers::{ReadMarkers, MAX_READ_MARKERS};
use super::server_bans::{ServerBan, ServerBans, MAX_SERVER_BANS};
use super::users::{Activity, User};
use super::whowas::{Whowas, WhowasImage};
use super::wire::{decode, encode, WireError};
use super::Network;
use crate::proto::{Caseless, CaselessKey};
use crate::state::ClientId;
use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize, Serializer};
use std::collections::HashMap;
use std::sync::Arc;

/// The layout of snapshots; bump it when anything in `SnapshotImage` changes shape.
pub const SNAPSHOT_FORMAT: u8 = 3;

/// A replica as written: borrowed from the [`Network`], field for field what
/// [`SnapshotImage`] reads back.
#[derive(Serialize)]
struct SnapshotRef<'a> {
    applied: u64,
    peak_users: usize,
    claims: Vec<(ClientId, &'a CaselessKey)>,
    channels: Vec<ChannelRef<'a>>,
    users: Vec<(ClientId, UserRef<'a>)>,
    whowas: &'a Whowas,
    server_bans: Vec<&'a ServerBan>,
    accounts: Vec<&'a Account>,
    /// Per account (in name order), its markers in target order.
    read_markers: Vec<(&'a CaselessKey, Vec<(&'a CaselessKey, u64)>)>,
}

/// A replica as read, before [`rebuild`] checks it and builds the indexes.
#[derive(Deserialize)]
struct SnapshotImage {
    applied: u64,
    peak_users: usize,
    claims: Vec<(ClientId, CaselessKey)>,
    channels: Vec<ChannelImage>,
    users: Vec<(ClientId, UserImage)>,
    whowas: WhowasImage,
    server_bans: Vec<ServerBan>,
    accounts: Vec<Account>,
    read_markers: Vec<(CaselessKey, Vec<(CaselessKey, u64)>)>,
}

/// A user as written; field for field what [`UserImage`] reads back.
#[derive(Serialize)]
struct UserRef<'a> {
    nick: &'a CaselessKey,
    user: &'a str,
    host: &'a str,
    address: &'a str,
    tls: bool,
    realname: &'a str,
    /// Positions in the snapshot's channel list, in the user's order.
    channels: Vec<u32>,
    away: &'a Option<Box<[u8]>>,
    invisible: bool,
    bot: bool,
    oper: &'a Option<Box<str>>,
    wallops: bool,
    account: &'a Option<CaselessKey>,
    /// All that travels of the activity clock; see [`Activity`].
    signon_unix: u64,
}

/// A user as read.
#[derive(Deserialize)]
struct UserImage {
    nick: CaselessKey,
    user: Box<str>,
    host: Box<str>,
    address: Box<str>,
    tls: bool,
    realname: Box<str>,
    channels: Vec<u32>,
    away: Option<Box<[u8]>>,
    invisible: bool,
    bot: bool,
    oper: Option<Box<str>>,
    wallops: bool,
    account: Option<CaselessKey>,
    signon_unix: u64,
}

/// A channel as written; field for field what [`ChannelImage`] reads back.
#[derive(Serialize)]
struct ChannelRef<'a> {
    name: &'a CaselessKey,
    created: u64,
    modes: &'a ChannelModes,
    topic: Option<&'a Topic>,
    bans: &'a [Ban],
    excepts: &'a [Ban],
    invite_exceptions: &'a [Ban],
    members: FlatMembers<'a>,
    invited: &'a [ClientId],
}

/// A channel as read.
#[derive(Deserialize)]
struct ChannelImage {
    name: CaselessKey,
    created: u64,
    modes: ChannelModes,
    topic: Option<Topic>,
    bans: Vec<Ban>,
    excepts: Vec<Ban>,
    invite_exceptions: Vec<Ban>,
    members: Vec<(ClientId, Membership)>,
    invited: Vec<ClientId>,
}

/// Writes a channel's members as one list of `(ClientId, Membership)`, partition by
/// partition in each partition's order, without collecting them first.
struct FlatMembers<'a>(&'a Members);

impl Serialize for FlatMembers<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut list = serializer.serialize_seq(Some(self.0.len()))?;
        for member in self.0.iter() {
            list.serialize_element(&member)?;
        }
        list.end()
    }
}

impl<'a> ChannelRef<'a> {
    fn new(channel: &'a Channel) -> ChannelRef<'a> {
        ChannelRef {
            name: &channel.name,
            created: channel.created,
            modes: &channel.modes,
            topic: channel.topic.as_deref(),
            bans: &channel.bans,
            excepts: &channel.excepts,
            invite_exceptions: &channel.invite_exceptions,
            members: FlatMembers(&channel.members),
            invited: &channel.invited,
        }
    }
}

impl<'a> UserRef<'a> {
    /// `user` with its channels as positions: found by the address of the channel's
    /// own name (a user's list holds clones of it, see `apply`), else by name. A name
    /// found neither way (a broken replica) is written as the list's length, which
    /// loading refuses.
    fn new(user: &'a User, positions: &ChannelPositions<'_>) -> UserRef<'a> {
        UserRef {
            nick: &user.nick,
            user: &user.user,
            host: &user.host,
            address: &user.address,
            tls: user.tls,
            realname: &user.realname,
            channels: user
                .channels
                .iter()
                .map(|name| positions.of(name))
                .collect(),
            away: &user.away,
            invisible: user.invisible,
            bot: user.bot,
            oper: &user.oper,
            wallops: user.wallops,
            account: &user.account,
            signon_unix: user.activity.signon(),
        }
    }
}

/// Where each channel is in the snapshot's channel list.
struct ChannelPositions<'a> {
    by_address: HashMap<*const u8, u32>,
    by_name: HashMap<&'a Caseless, u32>,
}

impl<'a> ChannelPositions<'a> {
    fn new(channels: &[&'a Channel]) -> ChannelPositions<'a> {
        let positions = || (0..).zip(channels.iter());
        ChannelPositions {
            by_address: positions()
                .map(|(at, c)| (c.name.as_str().as_ptr(), at))
                .collect(),
            by_name: positions()
                .map(|(at, c)| (Caseless::new(c.name.as_str()), at))
                .collect(),
        }
    }

    fn of(&self, name: &CaselessKey) -> u32 {
        let missing = u32::try_from(self.by_name.len()).unwrap_or(u32::MAX);
        self.by_address
            .get(&name.as_str().as_ptr())
            .or_else(|| self.by_name.get(Caseless::new(name.as_str())))
            .copied()
            .unwrap_or(missing)
    }
}

impl Network {
    /// The whole replica as bytes, for [`Network::from_snapshot`] on any node. Costs
    /// O(state) time and bytes plus sorting users and channels (so the bytes do not
    /// depend on hash order); it reads the replica only. Measured (`cargo bench
    /// --bench network -- snapshot`): 10,000 users each in 10 of 1,000 channels
    /// write 1.25 MB in about 7.5 ms and load in about 25 ms: written from a held
    /// version, off the shards, while the log goes on.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut claims: Vec<_> = self.claims.iter().map(|(&id, nick)| (id, nick)).collect();
        claims.sort_unstable_by_key(|&(id, _)| id);
        let mut channels: Vec<&Channel> = self.channels.values().collect();
        channels.sort_unstable_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
        let positions = ChannelPositions::new(&channels);
        let mut users: Vec<_> = self
            .users
            .iter()
            .map(|(&id, user)| (id, UserRef::new(user, &positions)))
            .collect();
        users.sort_unstable_by_key(|&(id, _)| id);
        encode(
            SNAPSHOT_FORMAT,
            &SnapshotRef {
                applied: self.applied,
                peak_users: self.peak_users,
                claims,
                channels: channels.into_iter().map(ChannelRef::new).collect(),
                users,
                whowas: &self.whowas,
                server_bans: self.server_bans.iter().collect(),
                accounts: self.accounts.values().collect(),
                read_markers: self
                    .read_markers
                    .iter()
                    .map(|(account, markers)| (account, markers.iter().collect()))
                    .collect(),
            },
        )
    }

    /// A replica laid out for this node (`layout`) from bytes made by
    /// [`Network::snapshot`] on any node, with any layout. Apply the log from
    /// [`Network::applied`]` + 1` on. Every user's activity clock is an
    /// [`Activity::remote`], this node's own users' too (a restarted node's old
    /// users, until their `NodeLost`).
    ///
    /// Refused with [`WireError::Inconsistent`] (besides malformed bytes): a nick held
    /// twice; a client registered twice or both registered and claiming; a channel
    /// named twice or without members; a member the users do not list, or a user
    /// listing a channel it is not in; a member whose place is past
    /// [`Layout::MAX_PLACES`]; a list past its bound (bans, invitations, server bans,
    /// WHOWAS).
    pub fn from_snapshot(bytes: &[u8], layout: Layout) -> Result<Network, WireError> {
        let image: SnapshotImage = decode("snapshot", SNAPSHOT_FORMAT, bytes)?;
        rebuild(image, layout).map_err(WireError::Inconsistent)
    }
}

/// Checks `image` and builds the replica with its indexes; see
/// [`Network::from_snapshot`]. O(state): one hash insert per nick, user, channel and
/// member, one lookup per channel a user lists.
fn rebuild(image: SnapshotImage, layout: Layout) -> Result<Network, String> {
    let mut network = Network::laid_out(layout);
    network.applied = image.applied;
    network.whowas = Whowas::from_image(image.whowas)?;
    if image.server_bans.len() > MAX_SERVER_BANS {
        return Err(format!(
            "{} server bans, more than {MAX_SERVER_BANS}",
            image.server_bans.len()
        ));
    }
    network.server_bans = Arc::new(ServerBans::new(image.server_bans));
    if image.accounts.len() > MAX_ACCOUNTS {
        return Err(format!(
            "{} accounts, more than {MAX_ACCOUNTS}",
            image.accounts.len()
        ));
    }
    for account in image.accounts {
        let name = account.name.clone();
        if account.certfps.len() > MAX_CERTFPS {
            return Err(format!(
                "account {name} has more than {MAX_CERTFPS} certificates"
            ));
        }
        network.index_certificates(&account);
        if network.accounts.insert(name.clone(), account) {
            return Err(format!("account {name} appears twice"));
        }
    }
    for (account, markers) in image.read_markers {
        if !network.accounts.contains_key(&account) {
            return Err(format!("read markers of {account}, no account"));
        }
        if markers.len() > MAX_READ_MARKERS {
            return Err(format!(
                "account {account} has more than {MAX_READ_MARKERS} read markers"
            ));
        }
        let count = markers.len();
        let markers = ReadMarkers::from_list(markers);
        if markers.len() != count || markers.is_empty() {
            return Err(format!(
                "account {account} lists a read marker twice, or none"
            ));
        }
        if network
            .read_markers
            .insert(account.clone(), markers)
            .is_some()
        {
            return Err(format!("read markers of {account} appear twice"));
        }
    }

    let mut channels = image
        .channels
        .into_iter()
        .map(|channel| rebuild_channel(channel, layout))
        .collect::<Result<Vec<Channel>, String>>()?;
    let memberships: usize = channels.iter().map(|c| c.members.len()).sum();

    let mut listed_memberships = 0;
    let mut listed = vec![false; channels.len()];
    for (id, image) in image.users {
        let user = rebuild_user(image, id, &mut channels, &mut listed)?;
        listed_memberships += user.channels.len();
        if let Some(account) = user.account.as_ref() {
            if !network.accounts.contains_key(account) {
                return Err(format!(
                    "client {id:?} is logged in to {account}, no account"
                ));
            }
        }
        hold_nick(&mut network.nicks, &user.nick, id)?;
        network.invisible += usize::from(user.invisible);
        network.opers += usize::from(user.oper.is_some());
        if network.users.insert(id, user) {
            return Err(format!("client {id:?} is registered twice"));
        }
    }
    // Every position a user lists is a distinct membership of that user: equal
    // counts mean every membership is listed by its user.
    if listed_memberships != memberships {
        return Err(format!(
            "channels have {memberships} members but users list {listed_memberships} channels"
        ));
    }
    for channel in channels.drain(..) {
        let name = channel.name.clone();
        if network.channels.insert(name.clone(), channel) {
            return Err(format!("channel {name} appears twice"));
        }
    }

    for (id, nick) in image.claims {
        if network.users.contains_key(&id) {
            return Err(format!("registered client {id:?} claims {nick}"));
        }
        hold_nick(&mut network.nicks, &nick, id)?;
        if network.claims.insert(id, nick).is_some() {
            return Err(format!("client {id:?} claims two nicks"));
        }
    }
    network.peak_users = image.peak_users.max(network.users.len());
    Ok(network)
}

/// The user `id` from its image, its channels named by the channels' own keys (one
/// shared name, not a copy per member), each of which lists it by its nick. Each
/// position must be in `channels`, name a channel that has `id` as a member, and
/// appear once; `listed` is scratch space, all `false` before and after a call that
/// succeeds.
fn rebuild_user(
    image: UserImage,
    id: ClientId,
    channels: &mut [Channel],
    listed: &mut [bool],
) -> Result<User, String> {
    let nick = image.nick;
    let mut names = Vec::with_capacity(image.channels.len());
    let count = channels.len();
    for &position in &image.channels {
        let Some(channel) = channels.get_mut(position as usize) else {
            return Err(format!("{nick} lists channel {position} of {count}"));
        };
        if !channel.members.contains(id) {
            return Err(format!("{nick} lists {}, which lacks it", channel.name));
        }
        if std::mem::replace(&mut listed[position as usize], true) {
            return Err(format!("{nick} lists {} twice", channel.name));
        }
        channel.members.rename(id, nick.as_str());
        names.push(channel.name.clone());
    }
    for &position in &image.channels {
        listed[position as usize] = false;
    }
    let host: Arc<str> = image.host.into();
    Ok(User {
        nick,
        user: image.user.into(),
        address: if *image.address == *host {
            Arc::clone(&host)
        } else {
            image.address.into()
        },
        host,
        tls: image.tls,
        realname: image.realname.into(),
        channels: names,
        away: image.away,
        invisible: image.invisible,
        bot: image.bot,
        oper: image.oper,
        wallops: image.wallops,
        account: image.account,
        activity: Arc::new(Activity::remote(image.signon_unix)),
    })
}

/// Records that `id` holds or claims `nick`, which nobody else may.
fn hold_nick(
    nicks: &mut imbl::OrdMap<CaselessKey, ClientId>,
    nick: &CaselessKey,
    id: ClientId,
) -> Result<(), String> {
    if nicks.contains_key(nick) {
        return Err(format!("nick {nick} is held twice"));
    }
    nicks.insert(nick.clone(), id);
    Ok(())
}

/// A channel from its image, its members partitioned for `layout` in the order they
/// were written.
fn rebuild_channel(image: ChannelImage, layout: Layout) -> Result<Channel, String> {
    let name = image.name;
    for (list, entries) in [
        ("bans", &image.bans),
        ("ban exceptions", &image.excepts),
        ("invite exceptions", &image.invite_exceptions),
    ] {
        if entries.len() > MAX_BANS {
            return Err(format!(
                "{name} has {} {list}, more than {MAX_BANS}",
                entries.len()
            ));
        }
    }
    if image.invited.len() > MAX_INVITES {
        return Err(format!(
            "{name} has {} invitations, more than {MAX_INVITES}",
            image.invited.len()
        ));
    }
    if image.members.is_empty() {
        return Err(format!("{name} has no members"));
    }
    let mut members = Members::new(layout);
    for (id, membership) in image.members {
        let place = layout.place(id);
        if usize::from(place) >= Layout::MAX_PLACES {
            return Err(format!(
                "{name} has member {id:?} at place {place}, past the {} a node has",
                Layout::MAX_PLACES
            ));
        }
        if members.contains(id) {
            return Err(format!("{name} lists member {id:?} twice"));
        }
        // The nick NAMES lists is the user's, written when the users are read.
        members.insert(id, membership, "");
    }
    Ok(Channel {
        name,
        created: image.created,
        modes: image.modes,
        topic: image.topic.map(Arc::new),
        bans: Arc::new(image.bans),
        excepts: Arc::new(image.excepts),
        invite_exceptions: Arc::new(image.invite_exceptions),
        members,
        invited: image.invited,
    })
}
