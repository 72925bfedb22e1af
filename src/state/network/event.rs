//! Events: every change to the network state, as a plain value.
//!
//! A shard turns a command that changes the network (NICK, JOIN, KICK, ...) into an
//! [`Event`] and proposes it; the [`EventLog`](crate::state::log::EventLog) gives it
//! its place in the one total order, and every replica applies it in that order with
//! [`Network::apply`](super::Network::apply). Whether the change is allowed (the nick
//! is free, the joiner is not banned) is decided by applying it, so every replica
//! reaches the same decision. Events carry everything a replica needs to render what
//! its local clients should see (a PART reason, a QUIT message), never a reference to
//! anything shard-local: the same values can later travel between machines.

use super::modes::ModeChange;
use super::server_bans::{BanTarget, ServerBan};
use super::users::Activity;
use crate::scram::ScramKeys;
use crate::state::ClientId;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One change to the network state; see the module comment. `client` is always the
/// client that caused it (whose shard proposed it); only `ReplaceBans` has none.
/// Its wire form between nodes is in [`super::wire`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(PartialEq))]
pub enum Event {
    /// An unregistered client claims `nick` (NICK during registration), releasing any
    /// nick it claimed before.
    ClaimNick {
        /// The claimant.
        client: ClientId,
        /// The wanted nickname (already validated).
        nick: Box<str>,
    },
    /// An unregistered client went away: its claim, if any, is released.
    ReleaseNick {
        /// The client.
        client: ClientId,
    },
    /// A client completed registration with the nick it claimed.
    Register {
        /// The client.
        client: ClientId,
        /// `~user`, sanitized.
        user: Box<str>,
        /// The host others see: the address's cloak ([`crate::cloak`]), or the
        /// address itself when cloaking is off.
        host: Box<str>,
        /// The peer address as text: for bans, operators (WHOIS 378) and the user.
        address: Box<str>,
        /// The connection came in on a TLS listener (WHOIS 671).
        tls: bool,
        /// The real name from USER.
        realname: Box<str>,
        /// Signon and idle clock; see [`Activity`]. Only the signon time travels
        /// between nodes: another node's replica gets an [`Activity::remote`].
        #[serde(with = "super::users::signon_only")]
        activity: Arc<Activity>,
    },
    /// A registered user changes its nick.
    ChangeNick {
        /// The user.
        client: ClientId,
        /// The new nickname (already validated).
        nick: Box<str>,
    },
    /// A user joins (or creates) a channel.
    Join {
        /// The joiner.
        client: ClientId,
        /// The channel name (already validated).
        channel: Box<str>,
        /// The key given, for `+k`.
        key: Option<Box<[u8]>>,
        /// CHANLIMIT: most channels one user may be in.
        channel_limit: u32,
    },
    /// A user leaves a channel.
    Part {
        /// The leaver.
        client: ClientId,
        /// The channel as named by the client.
        channel: Box<str>,
        /// The PART reason, if one was given.
        reason: Option<Box<[u8]>>,
    },
    /// An operator removes a member.
    Kick {
        /// The operator.
        client: ClientId,
        /// The channel as named by the client.
        channel: Box<str>,
        /// The nickname to remove.
        target: Box<str>,
        /// The reason shown.
        reason: Box<[u8]>,
    },
    /// A registered user leaves the network (QUIT, a closed connection, a timeout).
    Quit {
        /// The user.
        client: ClientId,
        /// The text after `QUIT :` that others see.
        reason: Box<str>,
    },
    /// A member sets (or, with empty text, clears) a channel's topic.
    SetTopic {
        /// The setter.
        client: ClientId,
        /// The channel as named by the client.
        channel: Box<str>,
        /// The topic, already clipped to TOPICLEN.
        text: Box<[u8]>,
    },
    /// A member invites a user to a channel.
    Invite {
        /// The inviter.
        client: ClientId,
        /// The invitee's nickname.
        target: Box<str>,
        /// The channel as named by the client.
        channel: Box<str>,
    },
    /// An operator changes channel modes.
    ChangeModes {
        /// The operator.
        client: ClientId,
        /// The channel as named by the client.
        channel: Box<str>,
        /// The parsed changes, in order.
        changes: Vec<ModeChange>,
    },
    /// A user sets (`Some`) or clears (`None`) its AWAY message.
    SetAway {
        /// The user.
        client: ClientId,
        /// The message, already clipped to AWAYLEN.
        message: Option<Box<[u8]>>,
    },
    /// A user sets or clears user mode `+i`.
    SetInvisible {
        /// The user.
        client: ClientId,
        /// `+i` or `-i`.
        invisible: bool,
    },
    /// A user sets or clears user mode `+B` (IRCv3 bot mode).
    SetBot {
        /// The user.
        client: ClientId,
        /// `+B` or `-B`.
        bot: bool,
    },
    /// A user changes its real name (SETNAME).
    SetRealname {
        /// The user.
        client: ClientId,
        /// The new real name (already validated).
        realname: Box<str>,
    },
    /// A user became a server operator (OPER, `Some` with its account's name) or
    /// stopped being one (`MODE nick -o`, `None`).
    SetOper {
        /// The user.
        client: ClientId,
        /// The operator account it authenticated as.
        oper: Option<Box<str>>,
    },
    /// A user sets or clears user mode `+w` (receives WALLOPS).
    SetWallops {
        /// The user.
        client: ClientId,
        /// `+w` or `-w`.
        wallops: bool,
    },
    /// A server operator disconnects a user (KILL); the victim's shard closes it.
    Kill {
        /// The operator.
        client: ClientId,
        /// The victim's nickname.
        target: Box<str>,
        /// The reason given.
        reason: Box<str>,
    },
    /// A server operator sets a KLINE or DLINE (replacing one on the same target);
    /// every shard then closes its local clients that it matches.
    AddBan {
        /// The operator.
        client: ClientId,
        /// The ban (its `set_by` is the operator's nick).
        ban: ServerBan,
    },
    /// A server operator lifts a KLINE or DLINE (UNKLINE, UNDLINE).
    RemoveBan {
        /// The operator.
        client: ClientId,
        /// What the ban matched.
        target: BanTarget,
    },
    /// A reload found the ban file changed: the whole list is replaced. Proposed by
    /// shard 0 on the server's behalf, so it names no client.
    ReplaceBans {
        /// The bans as the file now holds them.
        bans: Vec<ServerBan>,
    },
    /// A cluster node stopped (its heartbeats ceased) or started again: every user
    /// and nick claim it held leaves the network, each user with a QUIT carrying
    /// `reason`. Any node that notices proposes it; applying it again finds nobody,
    /// so the users quit once. Proposed on the network's behalf: it names no client.
    NodeLost {
        /// The node's number.
        node: u16,
        /// Why, as others see it in the QUIT lines.
        reason: Box<str>,
    },
    /// A cluster stream entry this node could not decode (written by a newer build,
    /// or corrupt): it keeps its place in the order and changes nothing, here as on
    /// every node that cannot read it.
    Unreadable,
    /// A client registers an account (REGISTER, NickServ REGISTER). The name is
    /// claimed for the whole network by this event's place in the order: of two
    /// registrations of one name, the later is refused everywhere.
    RegisterAccount {
        /// The registering client (a user, or a client still registering).
        client: ClientId,
        /// The account name (already validated).
        account: Box<str>,
        /// The password's argon2id hash, PHC form (hashed off the shard threads).
        password: Box<str>,
        /// The password's SCRAM-SHA-256 keys (made with the hash).
        scram: ScramKeys,
    },
    /// A user logs in to an account (`Some`: SASL, IDENTIFY, REGISTER) or out (`None`).
    /// Authenticating is the command's job; replicas only record the result.
    SetAccount {
        /// The user.
        client: ClientId,
        /// The account, by name.
        account: Option<Box<str>>,
    },
    /// A logged-in user changes its account's password (NickServ SET PASSWORD).
    SetPassword {
        /// The user.
        client: ClientId,
        /// The new password's argon2id hash, PHC form.
        password: Box<str>,
        /// The new password's SCRAM-SHA-256 keys.
        scram: ScramKeys,
    },
    /// A logged-in user drops the account it is logged in to (NickServ DROP; the
    /// password was checked by the command): the account is gone, every user logged
    /// in to it is logged out, and its name is free.
    DropAccount {
        /// The user.
        client: ClientId,
        /// The account, as the user names it: it must still be the one the user is
        /// logged in to when the event is applied.
        account: Box<str>,
    },
    /// A logged-in user adds (`add`) or removes a client certificate fingerprint of
    /// its account (NickServ CERT), for SASL EXTERNAL.
    SetCertificate {
        /// The user.
        client: ClientId,
        /// SHA-256 of the certificate, lowercase hex (already validated).
        certfp: Box<str>,
        /// Add it, or remove it.
        add: bool,
    },
    /// A user logged in to an account disconnects whoever holds the account's name
    /// as a nick (NickServ GHOST); the holder's shard closes it.
    Ghost {
        /// The account's owner.
        client: ClientId,
        /// The nick to free (an account's name).
        target: Box<str>,
    },
    /// A server operator sends a message to every user with `+w` (WALLOPS).
    Wallops {
        /// The operator.
        client: ClientId,
        /// The text.
        text: Box<[u8]>,
    },
    /// A logged-in user marks what it has read in a target (IRCv3 `MARKREAD`): the
    /// account's marker of `target` moves to `millis` if that is newer.
    SetReadMarker {
        /// The user.
        client: ClientId,
        /// The channel or nick (already validated).
        target: Box<str>,
        /// The time of the last message read, Unix milliseconds.
        millis: u64,
    },
}

impl Event {
    /// A cluster node is gone: see [`Event::NodeLost`].
    pub fn node_lost(node: u16, reason: &str) -> Event {
        Event::NodeLost {
            node,
            reason: reason.into(),
        }
    }
}

/// An event with its place in the total order.
#[derive(Debug, Clone)]
pub struct Sequenced {
    /// Position in the log, from 1, without gaps.
    pub seq: u64,
    /// The shard that proposed it, when it came from this node; on a cluster node,
    /// an event from another node has the cluster link's bus endpoint here (so the
    /// messages it forwarded before the event are handled first).
    pub origin: u16,
    /// The proposing shard's number for the proposal, so it can tell its own entry
    /// when it comes back from the cluster; 0 when not needed.
    pub proposal: u64,
    /// Wall-clock time of the proposal in Unix seconds: channel creation and topic
    /// times come from here, so every replica records the same values.
    pub at_unix: u64,
    /// The change.
    pub event: Event,
}
