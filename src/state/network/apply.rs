//! Applying an event: the pure function from (state, event) to (new state, outcome).
//!
//! Deterministic: it reads nothing but the replica and the event (no clock, no
//! shard), so every replica that applies the same log reaches the same state and
//! the same outcome. The proposing shard answers its client from the outcome (433,
//! 471, 482, ...); every shard renders the outcome for its own local clients.
//!
//! Cost: O(1) expected map operations per event (a QUIT or NICK also records one
//! bounded WHOWAS entry), plus O(channels of the user) for
//! QUIT and NICK (bounded by CHANLIMIT) and O(bans) for a JOIN into a channel with
//! bans (bounded by [`MAX_BANS`](super::channel::MAX_BANS)) and O(server bans) for a
//! KLINE or DLINE (bounded by
//! [`MAX_SERVER_BANS`](super::server_bans::MAX_SERVER_BANS)) and O(users) for a DROP
//! of an account (rare: each takes a password checked off the shards, under the
//! login throttles); otherwise never O(members) or
//! O(channels): a JOIN into a channel of 100,000 members costs what one into a
//! channel of 10 does.

use super::accounts::{Account, MAX_ACCOUNTS, MAX_CERTFPS};
use super::channel::{Channel, Membership, Topic, MAX_INVITES};
use super::event::{Event, Sequenced};
use super::modes::{apply_mode, ModeChange, ModeRefusal};
use super::read_markers::Advance;
use super::server_bans::{ServerBan, ServerBans};
use super::users::User;
use super::Network;
use crate::proto::{Caseless, CaselessKey};
use crate::scram::ScramKeys;
use crate::state::ClientId;
use std::sync::Arc;

/// Why an event (or a channel message) was refused; each maps to one numeric, in one
/// place (`commands::errors`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The nickname is held or claimed by someone else (433).
    #[error("nickname is already in use")]
    NickInUse,
    /// No such channel (403).
    #[error("no such channel")]
    NoSuchChannel,
    /// The client is not a member (442).
    #[error("not on channel")]
    NotOnChannel,
    /// `+n`, `+m` or a ban (404).
    #[error("cannot send to channel")]
    CannotSend,
    /// The client is not a channel operator (482).
    #[error("not a channel operator")]
    NotOperator,
    /// The target nickname does not exist (401).
    #[error("no such nick")]
    NoSuchNick,
    /// The target is not a member (441).
    #[error("user not in channel")]
    UserNotInChannel,
    /// The target is already a member (443).
    #[error("user already on channel")]
    UserOnChannel,
    /// The client is in as many channels as CHANLIMIT allows (405).
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
    /// `+k` and the wrong key or none (475).
    #[error("bad channel key")]
    BadKey,
    /// The client is not a server operator (481).
    #[error("permission denied: not an IRC operator")]
    NoPrivileges,
    /// The server ban list holds [`MAX_SERVER_BANS`](super::server_bans::MAX_SERVER_BANS).
    #[error("the server ban list is full")]
    ServerBanListFull,
    /// UNKLINE or UNDLINE of a ban that does not exist.
    #[error("no such server ban")]
    NoSuchServerBan,
    /// REGISTER of a name that is already an account.
    #[error("the account already exists")]
    AccountExists,
    /// A login to an account that does not exist.
    #[error("no such account")]
    NoSuchAccount,
    /// The network holds [`MAX_ACCOUNTS`](super::accounts::MAX_ACCOUNTS) accounts.
    #[error("too many accounts")]
    TooManyAccounts,
    /// The user is not logged in to an account.
    #[error("you are not logged in")]
    NotLoggedIn,
    /// Another account already accepts this certificate.
    #[error("that certificate already belongs to an account")]
    CertificateInUse,
    /// The account accepts [`MAX_CERTFPS`] certificates.
    #[error("the account has as many certificates as it may")]
    CertificateListFull,
    /// The account does not accept this certificate.
    #[error("the account has no such certificate")]
    NoSuchCertificate,
    /// A cluster node cannot reach the cluster, so it cannot order the change (never
    /// an outcome of applying: the proposer refuses before proposing).
    #[error("the cluster cannot be reached")]
    ClusterUnavailable,
}

/// What applying an event did: the proposer's reply and every shard's notifications
/// are rendered from it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Nothing changed and nobody is told (a client that is already gone, a JOIN of a
    /// channel the client is in, a mode it already has).
    Unchanged,
    /// Refused; only the proposer is told.
    Refused(Refusal),
    /// An unregistered client's nick claim was recorded.
    NickClaimed,
    /// A claim was released.
    NickReleased,
    /// The client is now a registered user.
    Registered,
    /// The user was renamed; others knew it by `old_source`.
    NickChanged {
        /// `oldnick!~user@host`, the source of the NICK line.
        old_source: String,
    },
    /// The user joined `channel` (created it, when it was the first member).
    Joined {
        /// The channel as created.
        channel: CaselessKey,
    },
    /// The user left `channel` (gone if it was the last member).
    Parted {
        /// The channel as created.
        channel: CaselessKey,
    },
    /// `member` was removed from `channel`.
    Kicked {
        /// The channel as created.
        channel: CaselessKey,
        /// Who was removed.
        member: ClientId,
        /// The removed member's nickname as registered.
        nick: CaselessKey,
    },
    /// A lost node's users are gone, each with its last state, in client order.
    NodeLost {
        /// The users that quit.
        users: Vec<(ClientId, Box<User>)>,
    },
    /// The user is gone; `user` is its last state (its channels: who saw it).
    Quit {
        /// The removed user.
        user: Box<User>,
    },
    /// The topic of `channel` changed.
    TopicChanged {
        /// The channel as created.
        channel: CaselessKey,
    },
    /// `member` was invited to `channel`.
    Invited {
        /// The invitee.
        member: ClientId,
        /// Its nickname as registered.
        nick: CaselessKey,
        /// The channel as created.
        channel: CaselessKey,
        /// The invitee's AWAY message (301 to the inviter).
        away: Option<Box<[u8]>>,
    },
    /// Modes of `channel` were changed.
    ModesChanged {
        /// The channel as created.
        channel: CaselessKey,
        /// The changes that changed something, in order (empty: announce nothing).
        applied: Vec<ModeChange>,
        /// The changes refused, each for its numeric.
        refused: Vec<ModeRefusal>,
    },
    /// The user's AWAY state was set or cleared.
    AwayChanged,
    /// The user's `+i` changed to this value.
    InvisibleChanged(bool),
    /// The user's `+B` changed to this value.
    BotChanged(bool),
    /// The user's real name changed.
    RealnameChanged,
    /// The user's `+o` changed to this value.
    OperChanged(bool),
    /// The user's `+w` changed to this value.
    WallopsChanged(bool),
    /// `victim` is to be disconnected by its shard (KILL); it is still a user until
    /// that shard's QUIT.
    Killed {
        /// The victim.
        victim: ClientId,
        /// Its nickname as registered.
        nick: CaselessKey,
        /// The killing operator's nickname.
        by: CaselessKey,
    },
    /// A server ban was set; every shard closes its local clients that it matches.
    BanAdded,
    /// A server ban was lifted.
    BanRemoved,
    /// The ban list was replaced; `added` are the bans that are new in it (every
    /// shard closes its local clients they match).
    BansReplaced {
        /// Bans in the new list that were not in the old one.
        added: Vec<ServerBan>,
    },
    /// An account was registered.
    AccountRegistered {
        /// The account as registered.
        account: Account,
    },
    /// An account changed (its password or certificates); `account` is its new state.
    AccountUpdated {
        /// The account as it now is.
        account: Account,
    },
    /// An account was dropped: `users` (in client order) were logged in to it and
    /// are now logged out; its name is free.
    AccountDropped {
        /// The account as it was.
        account: Account,
        /// The users that were logged in to it.
        users: Vec<ClientId>,
    },
    /// The user logged in to `account` (`Some`) or out (`None`).
    AccountChanged {
        /// The account's name as registered.
        account: Option<CaselessKey>,
    },
    /// A WALLOPS was accepted; every shard sends it to its `+w` users.
    Wallops {
        /// `nick!~user@host` of the operator who sent it.
        source: String,
    },
    /// An account's read marker of `target` moved forward to `millis`; every shard
    /// tells its clients logged in to the account (IRCv3 `draft/read-marker`).
    ReadMarkerMoved {
        /// The account's name as registered.
        account: CaselessKey,
        /// The target as the event named it.
        target: CaselessKey,
        /// The new marker, Unix milliseconds.
        millis: u64,
        /// The target whose marker was dropped to keep the account within
        /// [`MAX_READ_MARKERS`](super::read_markers::MAX_READ_MARKERS).
        dropped: Option<CaselessKey>,
    },
    /// The marker was not older than the time set: it stays at `millis`.
    ReadMarkerKept {
        /// The stored marker, Unix milliseconds.
        millis: u64,
    },
}

impl Network {
    /// Applies `event`, which must be the next in log order; see the module comment.
    pub fn apply(&mut self, event: &Sequenced) -> Outcome {
        debug_assert!(event.seq > self.applied, "events are applied in order");
        self.applied = event.seq;
        let now = event.at_unix;
        match &event.event {
            Event::ClaimNick { client, nick } => self.claim_nick(*client, nick),
            Event::ReleaseNick { client } => self.release_claim(*client),
            Event::Register {
                client,
                user,
                host,
                address,
                tls,
                realname,
                activity,
            } => {
                // Uncloaked, the address is the host: one text, shared.
                let shown_host: Arc<str> = Arc::from(&**host);
                self.register(
                    *client,
                    User {
                        nick: CaselessKey::new("*"),
                        user: Arc::from(&**user),
                        address: if host == address {
                            shown_host.clone()
                        } else {
                            Arc::from(&**address)
                        },
                        host: shown_host,
                        tls: *tls,
                        realname: Arc::from(&**realname),
                        channels: Vec::new(),
                        away: None,
                        invisible: false,
                        bot: false,
                        oper: None,
                        wallops: false,
                        account: None,
                        activity: activity.clone(),
                    },
                )
            }
            Event::ChangeNick { client, nick } => self.change_nick(*client, nick, now),
            Event::Join {
                client,
                channel,
                key,
                channel_limit,
            } => self.join(*client, channel, key.as_deref(), *channel_limit, now),
            Event::Part {
                client, channel, ..
            } => self.part(*client, channel),
            Event::Kick {
                client,
                channel,
                target,
                ..
            } => self.kick(*client, channel, target),
            Event::Quit { client, .. } => self.quit(*client, now),
            Event::SetTopic {
                client,
                channel,
                text,
            } => self.set_topic(*client, channel, text, now),
            Event::Invite {
                client,
                target,
                channel,
            } => self.invite(*client, target, channel),
            Event::ChangeModes {
                client,
                channel,
                changes,
            } => self.change_modes(*client, channel, changes, now),
            Event::SetAway { client, message } => match self.users.get_mut(client) {
                Some(user) => {
                    user.away = message.clone();
                    Outcome::AwayChanged
                }
                None => Outcome::Unchanged,
            },
            Event::SetInvisible { client, invisible } => match self.users.get_mut(client) {
                Some(user) if user.invisible != *invisible => {
                    user.invisible = *invisible;
                    if *invisible {
                        self.invisible += 1;
                    } else {
                        self.invisible -= 1;
                    }
                    Outcome::InvisibleChanged(*invisible)
                }
                _ => Outcome::Unchanged,
            },
            Event::SetBot { client, bot } => match self.users.get_mut(client) {
                Some(user) if user.bot != *bot => {
                    user.bot = *bot;
                    Outcome::BotChanged(*bot)
                }
                _ => Outcome::Unchanged,
            },
            Event::SetRealname { client, realname } => match self.users.get_mut(client) {
                Some(user) => {
                    user.realname = Arc::from(&**realname);
                    Outcome::RealnameChanged
                }
                None => Outcome::Unchanged,
            },
            Event::SetOper { client, oper } => self.set_oper(*client, oper.as_deref()),
            Event::SetWallops { client, wallops } => match self.users.get_mut(client) {
                Some(user) if user.wallops != *wallops => {
                    user.wallops = *wallops;
                    Outcome::WallopsChanged(*wallops)
                }
                _ => Outcome::Unchanged,
            },
            Event::Kill { client, target, .. } => self.kill(*client, target),
            Event::NodeLost { node, .. } => self.node_lost(*node, now),
            Event::Unreadable => Outcome::Unchanged,
            Event::AddBan { client, ban } => match self.user(*client) {
                Some(user) if user.oper.is_some() => {
                    if Arc::make_mut(&mut self.server_bans).add(ban.clone()) {
                        Outcome::BanAdded
                    } else {
                        Outcome::Refused(Refusal::ServerBanListFull)
                    }
                }
                Some(_) => Outcome::Refused(Refusal::NoPrivileges),
                None => Outcome::Unchanged,
            },
            Event::ReplaceBans { bans } => {
                let old = std::mem::replace(
                    &mut self.server_bans,
                    Arc::new(ServerBans::new(bans.clone())),
                );
                let added = self
                    .server_bans
                    .iter()
                    .filter(|ban| !old.iter().any(|o| o == *ban))
                    .cloned()
                    .collect();
                Outcome::BansReplaced { added }
            }
            Event::RemoveBan { client, target } => match self.user(*client) {
                Some(user) if user.oper.is_some() => {
                    if Arc::make_mut(&mut self.server_bans).remove(target) {
                        Outcome::BanRemoved
                    } else {
                        Outcome::Refused(Refusal::NoSuchServerBan)
                    }
                }
                Some(_) => Outcome::Refused(Refusal::NoPrivileges),
                None => Outcome::Unchanged,
            },
            Event::RegisterAccount {
                account,
                password,
                scram,
                ..
            } => self.register_account(account, password, scram, now),
            Event::DropAccount { client, account } => self.drop_account(*client, account),
            Event::SetAccount { client, account } => self.set_account(*client, account.as_deref()),
            Event::Ghost { client, target } => self.ghost(*client, target),
            Event::SetCertificate {
                client,
                certfp,
                add,
            } => self.set_certificate(*client, certfp, *add),
            Event::SetPassword {
                client,
                password,
                scram,
            } => self.set_password(*client, password, scram),
            Event::Wallops { client, .. } => match self.users.get(client) {
                Some(user) if user.oper.is_some() => Outcome::Wallops {
                    source: user.source(),
                },
                Some(_) => Outcome::Refused(Refusal::NoPrivileges),
                None => Outcome::Unchanged,
            },
            Event::SetReadMarker {
                client,
                target,
                millis,
            } => self.set_read_marker(*client, target, *millis),
        }
    }

    /// Moves the read marker of `target` forward for the account `client` is
    /// logged in to; never back.
    fn set_read_marker(&mut self, client: ClientId, target: &str, millis: u64) -> Outcome {
        let Some(user) = self.users.get(&client) else {
            return Outcome::Unchanged;
        };
        let Some(account) = user
            .account
            .clone()
            .filter(|name| self.accounts.contains_key(name))
        else {
            return Outcome::Refused(Refusal::NotLoggedIn);
        };
        let target = CaselessKey::new(target);
        let mut markers = self.read_markers.get(&account).cloned().unwrap_or_default();
        match markers.advance(&target, millis) {
            Advance::Kept { millis } => Outcome::ReadMarkerKept { millis },
            Advance::Moved { dropped } => {
                self.read_markers.insert(account.clone(), markers);
                Outcome::ReadMarkerMoved {
                    account,
                    target,
                    millis,
                    dropped,
                }
            }
        }
    }

    /// Records a new account unless its name is taken (or the bound is reached).
    fn register_account(
        &mut self,
        name: &str,
        password: &str,
        scram: &ScramKeys,
        now: u64,
    ) -> Outcome {
        if self.accounts.contains_key(Caseless::new(name)) {
            return Outcome::Refused(Refusal::AccountExists);
        }
        if self.accounts.len() >= MAX_ACCOUNTS {
            return Outcome::Refused(Refusal::TooManyAccounts);
        }
        let account = Account {
            name: CaselessKey::new(name),
            password: password.into(),
            registered_at: now,
            certfps: Vec::new(),
            scram: Some(scram.clone()),
        };
        self.accounts.insert(account.name.clone(), account.clone());
        Outcome::AccountRegistered { account }
    }

    /// Removes the account `client` is logged in to (if it is still `name`), and
    /// logs out every user logged in to it. O(users).
    fn drop_account(&mut self, client: ClientId, name: &str) -> Outcome {
        let Some(user) = self.users.get(&client) else {
            return Outcome::Unchanged;
        };
        let Some(held) = user
            .account
            .clone()
            .filter(|held| held.as_str().eq_ignore_ascii_case(name))
        else {
            return Outcome::Refused(Refusal::NotLoggedIn);
        };
        let Some(account) = self.accounts.remove(&held) else {
            return Outcome::Refused(Refusal::NotLoggedIn);
        };
        self.read_markers.remove(&held);
        for certfp in &account.certfps {
            if self.certfps.get(certfp) == Some(&held) {
                self.certfps.remove(certfp);
            }
        }
        let users: Vec<ClientId> = self
            .users
            .iter()
            .filter(|(_, user)| user.account.as_ref() == Some(&held))
            .map(|(id, _)| *id)
            .collect();
        for id in &users {
            if let Some(user) = self.users.get_mut(id) {
                user.account = None;
            }
        }
        Outcome::AccountDropped { account, users }
    }

    /// Replaces the password hash and SCRAM keys of the account `client` is logged
    /// in to.
    fn set_password(&mut self, client: ClientId, password: &str, scram: &ScramKeys) -> Outcome {
        let Some(user) = self.users.get(&client) else {
            return Outcome::Unchanged;
        };
        let Some(account) = user
            .account
            .clone()
            .and_then(|name| self.accounts.get_mut(&name))
        else {
            return Outcome::Refused(Refusal::NotLoggedIn);
        };
        account.password = password.into();
        account.scram = Some(scram.clone());
        Outcome::AccountUpdated {
            account: account.clone(),
        }
    }

    /// Adds or removes a certificate of the account `client` is logged in to; a
    /// certificate belongs to one account at most.
    fn set_certificate(&mut self, client: ClientId, certfp: &str, add: bool) -> Outcome {
        let Some(user) = self.users.get(&client) else {
            return Outcome::Unchanged;
        };
        let Some(name) = user.account.clone() else {
            return Outcome::Refused(Refusal::NotLoggedIn);
        };
        let owner = self.certfps.get(certfp).cloned();
        let Some(account) = self.accounts.get_mut(&name) else {
            return Outcome::Refused(Refusal::NotLoggedIn);
        };
        if add {
            match owner {
                Some(owner) if owner == name => return Outcome::Unchanged,
                Some(_) => return Outcome::Refused(Refusal::CertificateInUse),
                None if account.certfps.len() >= MAX_CERTFPS => {
                    return Outcome::Refused(Refusal::CertificateListFull)
                }
                None => {}
            }
            account.certfps.push(certfp.into());
            self.certfps.insert(certfp.into(), name);
        } else {
            if owner.as_ref() != Some(&name) {
                return Outcome::Refused(Refusal::NoSuchCertificate);
            }
            account.certfps.retain(|held| &**held != certfp);
            self.certfps.remove(certfp);
        }
        Outcome::AccountUpdated {
            account: account.clone(),
        }
    }

    /// Logs a user in to an existing account (spelled as registered) or out.
    fn set_account(&mut self, client: ClientId, name: Option<&str>) -> Outcome {
        let account = match name {
            Some(name) => match self.accounts.get(Caseless::new(name)) {
                Some(account) => Some(account.name.clone()),
                None => return Outcome::Refused(Refusal::NoSuchAccount),
            },
            None => None,
        };
        let Some(user) = self.users.get_mut(&client) else {
            return Outcome::Unchanged;
        };
        if user.account == account {
            return Outcome::Unchanged;
        }
        user.account = account.clone();
        Outcome::AccountChanged { account }
    }

    /// Only the owner of the account named `target` ghosts (481), and only a user
    /// holding that nick other than itself (401). Like KILL, the victim stays a user
    /// until its own shard closes it.
    fn ghost(&mut self, client: ClientId, target: &str) -> Outcome {
        let Some(by) = self.users.get(&client) else {
            return Outcome::Unchanged;
        };
        if by
            .account
            .as_ref()
            .is_none_or(|account| !account.as_str().eq_ignore_ascii_case(target))
        {
            return Outcome::Refused(Refusal::NoPrivileges);
        }
        let by = by.nick.clone();
        match self.user_by_nick(target) {
            Some((victim, user)) if victim != client => Outcome::Killed {
                victim,
                nick: user.nick.clone(),
                by,
            },
            _ => Outcome::Refused(Refusal::NoSuchNick),
        }
    }

    /// Grants (`Some(account)`) or drops (`None`) `+o`, keeping the count for 252.
    /// Authenticating is the OPER command's job; replicas only record the result.
    fn set_oper(&mut self, client: ClientId, oper: Option<&str>) -> Outcome {
        let Some(user) = self.users.get_mut(&client) else {
            return Outcome::Unchanged;
        };
        let was = user.oper.is_some();
        user.oper = oper.map(Box::from);
        match (was, oper.is_some()) {
            (false, true) => {
                self.opers += 1;
                Outcome::OperChanged(true)
            }
            (true, false) => {
                self.opers -= 1;
                Outcome::OperChanged(false)
            }
            _ => Outcome::Unchanged,
        }
    }

    /// Only an operator kills (481), and only an existing user (401). The victim stays
    /// a user until its own shard closes it and proposes its QUIT, so others see one
    /// QUIT, rendered as for any other.
    fn kill(&mut self, client: ClientId, target: &str) -> Outcome {
        let Some(by) = self.users.get(&client) else {
            return Outcome::Unchanged;
        };
        if by.oper.is_none() {
            return Outcome::Refused(Refusal::NoPrivileges);
        }
        let by = by.nick.clone();
        let Some((victim, user)) = self.user_by_nick(target) else {
            return Outcome::Refused(Refusal::NoSuchNick);
        };
        Outcome::Killed {
            victim,
            nick: user.nick.clone(),
            by,
        }
    }

    fn claim_nick(&mut self, client: ClientId, nick: &str) -> Outcome {
        if self.users.contains_key(&client) {
            return Outcome::Unchanged;
        }
        match self.nick_owner(nick) {
            Some(owner) if owner != client => return Outcome::Refused(Refusal::NickInUse),
            _ => {}
        }
        if let Some(previous) = self.claims.remove(&client) {
            self.nicks.remove(&previous);
        }
        let key = CaselessKey::new(nick);
        self.nicks.insert(key.clone(), client);
        self.claims.insert(client, key);
        Outcome::NickClaimed
    }

    fn release_claim(&mut self, client: ClientId) -> Outcome {
        match self.claims.remove(&client) {
            Some(nick) => {
                if self.nicks.get(&nick) == Some(&client) {
                    self.nicks.remove(&nick);
                }
                Outcome::NickReleased
            }
            None => Outcome::Unchanged,
        }
    }

    /// Registration turns the client's claim into its nick; without a claim (it was
    /// released meanwhile) there is nothing to register.
    fn register(&mut self, client: ClientId, mut user: User) -> Outcome {
        let Some(nick) = self.claims.remove(&client) else {
            return Outcome::Unchanged;
        };
        user.nick = nick;
        self.users.insert(client, user);
        self.peak_users = self.peak_users.max(self.users.len());
        Outcome::Registered
    }

    fn change_nick(&mut self, client: ClientId, nick: &str, now: u64) -> Outcome {
        let Some(user) = self.users.get(&client) else {
            return Outcome::Unchanged;
        };
        if user.nick.as_str() == nick {
            return Outcome::Unchanged;
        }
        match self.nicks.get(Caseless::new(nick)) {
            Some(&owner) if owner != client => return Outcome::Refused(Refusal::NickInUse),
            _ => {}
        }
        let old_source = user.source();
        let old_nick = user.nick.clone();
        self.whowas
            .record(&old_nick, &user.user, &user.host, &user.realname, now);
        self.nicks.remove(&old_nick);
        let key = CaselessKey::new(nick);
        self.nicks.insert(key.clone(), client);
        if let Some(user) = self.users.get_mut(&client) {
            for channel in &user.channels {
                if let Some(channel) = self.channels.get_mut(channel) {
                    channel.members.rename(client, nick);
                }
            }
            user.nick = key;
        }
        Outcome::NickChanged { old_source }
    }

    /// An existing channel's `+l`, `+k`, `+i` and bans are checked in that order; an
    /// invitation lets the joiner past `+i` and bans, and is used up.
    fn join(
        &mut self,
        client: ClientId,
        name: &str,
        key: Option<&[u8]>,
        channel_limit: u32,
        now: u64,
    ) -> Outcome {
        let layout = self.layout;
        let Some(user) = self.users.get_mut(&client) else {
            return Outcome::Unchanged;
        };
        let existing = self.channels.get_mut(Caseless::new(name));
        if existing
            .as_ref()
            .is_some_and(|c| c.members.contains(client))
        {
            return Outcome::Unchanged;
        }
        if user.channels.len() >= channel_limit as usize {
            return Outcome::Refused(Refusal::TooManyChannels);
        }
        let channel = match existing {
            Some(channel) => {
                if let Err(refusal) = admit(channel, client, user, key) {
                    return Outcome::Refused(refusal);
                }
                channel
            }
            None => self
                .channels
                .get_or_insert_with(CaselessKey::new(name), || Channel::new(name, now, layout)),
        };
        let membership = Membership {
            op: channel.members.is_empty(),
            voice: false,
        };
        channel
            .members
            .insert(client, membership, user.nick.as_str());
        user.channels.push(channel.name.clone());
        Outcome::Joined {
            channel: channel.name.clone(),
        }
    }

    fn part(&mut self, client: ClientId, name: &str) -> Outcome {
        let Some(channel) = self.channels.get(Caseless::new(name)) else {
            return Outcome::Refused(Refusal::NoSuchChannel);
        };
        if !channel.members.contains(client) {
            return Outcome::Refused(Refusal::NotOnChannel);
        }
        let channel = channel.name.clone();
        self.leave(client, &channel);
        Outcome::Parted { channel }
    }

    fn kick(&mut self, client: ClientId, name: &str, target: &str) -> Outcome {
        let channel = match self.operated_channel(client, name) {
            Ok(channel) => channel,
            Err(refusal) => return Outcome::Refused(refusal),
        };
        let Some((member, user)) = self.user_by_nick(target) else {
            return Outcome::Refused(Refusal::NoSuchNick);
        };
        if !channel.members.contains(member) {
            return Outcome::Refused(Refusal::UserNotInChannel);
        }
        let (channel, nick) = (channel.name.clone(), user.nick.clone());
        self.leave(member, &channel);
        Outcome::Kicked {
            channel,
            member,
            nick,
        }
    }

    /// Every user of `node` quits, in client order (so every replica records WHOWAS
    /// the same way), and its nick claims are released.
    fn node_lost(&mut self, node: u16, now: u64) -> Outcome {
        let mut gone: Vec<ClientId> = self
            .users
            .keys()
            .copied()
            .filter(|id| id.node == node)
            .collect();
        gone.sort_unstable();
        let users = gone
            .into_iter()
            .filter_map(|id| match self.quit(id, now) {
                Outcome::Quit { user } => Some((id, user)),
                _ => None,
            })
            .collect::<Vec<_>>();
        let claims: Vec<ClientId> = self
            .claims
            .keys()
            .copied()
            .filter(|id| id.node == node)
            .collect();
        for id in claims {
            self.release_claim(id);
        }
        if users.is_empty() {
            Outcome::Unchanged
        } else {
            Outcome::NodeLost { users }
        }
    }

    fn quit(&mut self, client: ClientId, now: u64) -> Outcome {
        let Some(user) = self.users.remove(&client) else {
            return Outcome::Unchanged;
        };
        self.whowas
            .record(&user.nick, &user.user, &user.host, &user.realname, now);
        if self.nicks.get(&user.nick) == Some(&client) {
            self.nicks.remove(&user.nick);
        }
        if user.invisible {
            self.invisible -= 1;
        }
        if user.oper.is_some() {
            self.opers -= 1;
        }
        for channel in &user.channels {
            self.remove_member(channel, client);
        }
        Outcome::Quit {
            user: Box::new(user),
        }
    }

    fn set_topic(&mut self, client: ClientId, name: &str, text: &[u8], now: u64) -> Outcome {
        let Some(setter) = self.users.get(&client).map(User::source) else {
            return Outcome::Unchanged;
        };
        let Some(channel) = self.channels.get_mut(Caseless::new(name)) else {
            return Outcome::Refused(Refusal::NoSuchChannel);
        };
        let Some(membership) = channel.members.get(client) else {
            return Outcome::Refused(Refusal::NotOnChannel);
        };
        if channel.modes.topic_lock && !membership.op {
            return Outcome::Refused(Refusal::NotOperator);
        }
        channel.topic = (!text.is_empty()).then(|| {
            Arc::new(Topic {
                text: text.into(),
                set_by: setter.into(),
                set_at: now,
            })
        });
        Outcome::TopicChanged {
            channel: channel.name.clone(),
        }
    }

    /// Checks in Modern IRC's order: the invitee exists (401), the channel exists
    /// (403), the inviter is a member (442) and, on `+i`, an operator (482), the
    /// invitee is not a member yet (443).
    fn invite(&mut self, client: ClientId, target: &str, name: &str) -> Outcome {
        let Some((member, user)) = self.user_by_nick(target) else {
            return Outcome::Refused(Refusal::NoSuchNick);
        };
        let (nick, away) = (user.nick.clone(), user.away.clone());
        let Some(channel) = self.channels.get_mut(Caseless::new(name)) else {
            return Outcome::Refused(Refusal::NoSuchChannel);
        };
        let Some(membership) = channel.members.get(client) else {
            return Outcome::Refused(Refusal::NotOnChannel);
        };
        if channel.modes.invite_only && !membership.op {
            return Outcome::Refused(Refusal::NotOperator);
        }
        if channel.members.contains(member) {
            return Outcome::Refused(Refusal::UserOnChannel);
        }
        if !channel.invited.contains(&member) {
            if channel.invited.len() >= MAX_INVITES {
                channel.invited.remove(0);
            }
            channel.invited.push(member);
        }
        Outcome::Invited {
            member,
            nick,
            channel: channel.name.clone(),
            away,
        }
    }

    /// Only an operator changes modes (482 for anyone else, member or not, as Ergo);
    /// only changes that change something are announced, in order, with nicknames as
    /// registered.
    fn change_modes(
        &mut self,
        client: ClientId,
        name: &str,
        changes: &[ModeChange],
        now: u64,
    ) -> Outcome {
        let Some(channel) = self.channel(name) else {
            return Outcome::Refused(Refusal::NoSuchChannel);
        };
        if !channel.members.get(client).is_some_and(|m| m.op) {
            return Outcome::Refused(Refusal::NotOperator);
        }
        let Some(setter) = self.users.get(&client).map(|user| user.nick.clone()) else {
            return Outcome::Unchanged;
        };
        let mut applied = Vec::new();
        let mut refused = Vec::new();
        for change in changes {
            let target = match change {
                ModeChange::Member { nick, .. } => self
                    .user_by_nick(nick)
                    .map(|(id, user)| (id, user.nick.clone())),
                _ => None,
            };
            let Some(channel) = self.channels.get_mut(Caseless::new(name)) else {
                break;
            };
            let target = target.as_ref().map(|(id, nick)| (*id, nick.as_str()));
            match apply_mode(channel, change, target, setter.as_str(), now) {
                Ok(Some(change)) => applied.push(change),
                Ok(None) => {}
                Err(refusal) => refused.push(refusal),
            }
        }
        let Some(channel) = self.channels.get(Caseless::new(name)) else {
            return Outcome::Refused(Refusal::NoSuchChannel);
        };
        Outcome::ModesChanged {
            channel: channel.name.clone(),
            applied,
            refused,
        }
    }

    /// The channel `client` acts on as an operator: it must exist (403), `client`
    /// must be a member (442) and an operator (482).
    fn operated_channel(&self, client: ClientId, name: &str) -> Result<&Channel, Refusal> {
        let channel = self.channel(name).ok_or(Refusal::NoSuchChannel)?;
        match channel.members.get(client) {
            None => Err(Refusal::NotOnChannel),
            Some(membership) if !membership.op => Err(Refusal::NotOperator),
            Some(_) => Ok(channel),
        }
    }

    /// Takes `client` out of `channel` on both sides: the members and the user's list.
    fn leave(&mut self, client: ClientId, channel: &CaselessKey) {
        self.remove_member(channel, client);
        if let Some(user) = self.users.get_mut(&client) {
            user.channels.retain(|c| c != channel);
        }
    }

    /// Drops `client` from a channel's members, and the channel once it is empty.
    fn remove_member(&mut self, name: &CaselessKey, client: ClientId) {
        let Some(channel) = self.channels.get_mut(name) else {
            return;
        };
        channel.members.remove(client);
        if channel.members.is_empty() {
            self.channels.remove(name);
        }
    }
}

/// Whether `user` may join the existing `channel`: `+l`, `+k`, `+i`, bans, in that
/// order; an invitation passes `+i` and bans and is used up by the join, an invite
/// exception (`+I`) passes `+i`, a ban exception (`+e`) passes bans.
fn admit(
    channel: &mut Channel,
    client: ClientId,
    user: &User,
    key: Option<&[u8]>,
) -> Result<(), Refusal> {
    let invitation = channel.invited.iter().position(|&i| i == client);
    if channel
        .modes
        .limit
        .is_some_and(|limit| channel.members.len() >= limit)
    {
        return Err(Refusal::ChannelFull);
    }
    if let Some(expected) = &channel.modes.key {
        if key != Some(expected.as_bytes()) {
            return Err(Refusal::BadKey);
        }
    }
    if channel.modes.invite_only && invitation.is_none() && !channel.is_invite_exempt(user) {
        return Err(Refusal::InviteOnly);
    }
    if invitation.is_none() && channel.is_banned(user) {
        return Err(Refusal::Banned);
    }
    if let Some(index) = invitation {
        channel.invited.remove(index);
    }
    Ok(())
}
