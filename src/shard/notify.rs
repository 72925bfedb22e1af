//! What a shard tells its own clients when it applies an event: the JOIN (with the
//! joiner's AWAY for `away-notify`), PART, KICK,
//! QUIT, NICK, TOPIC, MODE, INVITE, AWAY, SETNAME, ACCOUNT and WALLOPS lines that
//! members see, the MARKREAD lines of an account's other connections (and 901 to the users a dropped account logs out), the MONITOR notifications of watchers ([`super::monitor`]), the server
//! notices of `+s` operators ([`super::server_notices`]), and closing the local
//! clients that a KILL names or a new KLINE or DLINE matches.
//!
//! Every shard renders every event for its local clients only, straight from its
//! replica, so a state change costs no hand-off and each client hears of it exactly
//! once, in log order. Replies meant only for the client that caused the event
//! (numerics, the welcome burst, NAMES after JOIN) are the command handler's, from
//! the outcome that [`Shard::propose`] returns.

use super::Shard;
use crate::proto::caps::Cap;
use crate::proto::numeric::RPL_LOGGEDOUT;
use crate::proto::outgoing::Outgoing;
use crate::proto::texts;
use crate::proto::time::server_time;
use crate::proto::LineBuilder;
use crate::state::client::CloseReason;
use crate::state::network::{Event, Outcome, Sequenced, ServerBan, User};
use crate::state::ClientId;
use bytes::Bytes;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `:server MARKREAD <target> timestamp=<time>` (IRCv3 `draft/read-marker`), or
/// `*` in place of the time for a target without a marker.
pub fn markread_line(server: &str, target: &str, millis: Option<u64>) -> LineBuilder {
    let line = LineBuilder::from_source(server, "MARKREAD").arg(target);
    match millis {
        Some(millis) => line.arg(format!(
            "timestamp={}",
            server_time(UNIX_EPOCH + Duration::from_millis(millis))
        )),
        None => line.arg("*"),
    }
}

impl Shard {
    /// Renders `outcome` of the applied `entry` for this shard's clients.
    /// `at` is when the node applied the entry (see [`Shard::keep_event`]).
    pub(super) fn notify(&mut self, entry: &Sequenced, at: SystemTime, outcome: &Outcome) {
        self.tell_server_notices(entry, outcome);
        match (&entry.event, outcome) {
            (Event::ChangeNick { client, nick }, Outcome::NickChanged { old_source }) => {
                let line = LineBuilder::from_source(old_source, "NICK")
                    .trailing(&**nick)
                    .finish();
                let message = self.caused_by(*client, line);
                let channels = self.channels_of(*client);
                let mut message = self.keep_event(entry, at, &channels, message);
                self.tell_user_and_peers(*client, &mut message);
                // A change of case only keeps the user online under the same nick.
                let old_nick = old_source.split('!').next().unwrap_or_default();
                if !old_nick.eq_ignore_ascii_case(nick) {
                    self.tell_watchers_offline(old_nick);
                    if let Some(source) = self.source_of(*client) {
                        self.tell_watchers_online(nick, &source);
                    }
                }
            }
            (Event::Register { client, .. }, Outcome::Registered) => {
                if let Some(user) = self.log.network().user(*client) {
                    let (nick, source) = (user.nick.clone(), user.source());
                    self.tell_watchers_online(nick.as_str(), &source);
                }
            }
            (Event::Join { client, .. }, Outcome::Joined { channel }) => {
                let Some(source) = self.source_of(*client) else {
                    return;
                };
                let line = LineBuilder::from_source(&source, "JOIN")
                    .arg(channel.as_str())
                    .finish();
                let extended = self.extended_join(*client, channel.as_str(), &source);
                let channels = std::slice::from_ref(channel);
                let plain = self.keep_event(entry, at, channels, self.caused_by(*client, line));
                let extended = self.keep_event(entry, at, &[], extended);
                let mut message = plain.or_with(Cap::ExtendedJoin, extended);
                if self.is_local(*client) {
                    self.note_join_time(*client, channel, Some(super::unix_millis()));
                }
                self.deliver_to_local_members(channel.as_str(), &mut message, None);
                self.tell_away_on_join(*client, channel.as_str(), &source);
            }
            (Event::Part { client, reason, .. }, Outcome::Parted { channel }) => {
                let Some(source) = self.source_of(*client) else {
                    return;
                };
                let mut line = LineBuilder::from_source(&source, "PART").arg(channel.as_str());
                if let Some(reason) = reason {
                    line = line.trailing(&**reason);
                }
                let message = self.caused_by(*client, line.finish());
                let mut message =
                    self.keep_event(entry, at, std::slice::from_ref(channel), message);
                self.deliver_to_local_members(channel.as_str(), &mut message, None);
                self.tell_if_local(*client, &mut message);
                if self.is_local(*client) {
                    self.note_join_time(*client, channel, None);
                }
            }
            (
                Event::Kick { client, reason, .. },
                Outcome::Kicked {
                    channel,
                    member,
                    nick,
                },
            ) => {
                let Some(source) = self.source_of(*client) else {
                    return;
                };
                let line = LineBuilder::from_source(&source, "KICK")
                    .arg(channel.as_str())
                    .arg(nick.as_str())
                    .trailing(&**reason)
                    .finish();
                let message = self.caused_by(*client, line);
                let mut message =
                    self.keep_event(entry, at, std::slice::from_ref(channel), message);
                self.deliver_to_local_members(channel.as_str(), &mut message, None);
                self.tell_if_local(*member, &mut message);
                if self.is_local(*member) {
                    self.note_join_time(*member, channel, None);
                }
            }
            (Event::Quit { client, reason }, Outcome::Quit { user }) => {
                self.relay_quit((entry, at, 0), *client, user, reason);
            }
            (Event::NodeLost { node, reason }, Outcome::NodeLost { users }) => {
                let text = format!("Node lost: {reason}");
                for (nth, (id, user)) in (1..).zip(users) {
                    self.relay_quit((entry, at, nth), *id, user, &text);
                }
                if *node == self.node {
                    self.close_all_declared_lost();
                }
            }
            (Event::SetTopic { client, text, .. }, Outcome::TopicChanged { channel }) => {
                let Some(source) = self.source_of(*client) else {
                    return;
                };
                let line = LineBuilder::from_source(&source, "TOPIC")
                    .arg(channel.as_str())
                    .trailing(&**text)
                    .finish();
                let message = self.caused_by(*client, line);
                let mut message =
                    self.keep_event(entry, at, std::slice::from_ref(channel), message);
                self.deliver_to_local_members(channel.as_str(), &mut message, None);
            }
            (
                Event::Invite { client, .. },
                Outcome::Invited {
                    member,
                    nick,
                    channel,
                    ..
                },
            ) => {
                let Some(source) = self.source_of(*client) else {
                    return;
                };
                let line = LineBuilder::from_source(&source, "INVITE")
                    .arg(nick.as_str())
                    .arg(channel.as_str())
                    .finish();
                let mut message = self.caused_by(*client, line);
                self.tell_if_local(*member, &mut message);
                self.tell_invite_notify(channel.as_str(), *client, &mut message);
            }
            (
                Event::ChangeModes { client, .. },
                Outcome::ModesChanged {
                    channel, applied, ..
                },
            ) if !applied.is_empty() => {
                let Some(source) = self.source_of(*client) else {
                    return;
                };
                let mut modestring = String::new();
                let mut sign = None;
                let mut params = Vec::new();
                for change in applied {
                    if sign != Some(change.is_add()) {
                        sign = Some(change.is_add());
                        modestring.push(if change.is_add() { '+' } else { '-' });
                    }
                    modestring.push(change.letter());
                    params.extend(change.param());
                }
                let line = params.iter().fold(
                    LineBuilder::from_source(&source, "MODE")
                        .arg(channel.as_str())
                        .arg(&modestring),
                    |line, param| line.arg(param),
                );
                let message = self.caused_by(*client, line.finish());
                let mut message =
                    self.keep_event(entry, at, std::slice::from_ref(channel), message);
                self.deliver_to_local_members(channel.as_str(), &mut message, None);
            }
            (Event::SetAway { client, message }, Outcome::AwayChanged) => {
                let Some(source) = self.source_of(*client) else {
                    return;
                };
                let mut line = LineBuilder::from_source(&source, "AWAY");
                if let Some(message) = message {
                    line = line.trailing(&**message);
                }
                let mut notice = self
                    .caused_by(*client, line.finish())
                    .requiring(Cap::AwayNotify);
                let channels = self.channels_of(*client);
                self.deliver_to_local_members_once(&channels, &mut notice, Some(*client));
                self.tell_extended_watchers_of(*client, &mut notice);
            }
            (Event::SetAccount { client, .. }, Outcome::AccountChanged { account }) => {
                if let Some(local) = self.client_mut(*client) {
                    local.account = account.clone();
                }
                let Some(source) = self.source_of(*client) else {
                    return;
                };
                // IRCv3 account-notify: `ACCOUNT <name>` on login, `ACCOUNT *` on logout.
                let name = account.as_ref().map_or("*", |account| account.as_str());
                let line = LineBuilder::from_source(&source, "ACCOUNT")
                    .arg(name)
                    .finish();
                let mut message = self.caused_by(*client, line).requiring(Cap::AccountNotify);
                let channels = self.channels_of(*client);
                self.deliver_to_local_members_once(&channels, &mut message, Some(*client));
                self.tell_extended_watchers_of(*client, &mut message);
            }
            (Event::DropAccount { .. }, Outcome::AccountDropped { account, users }) => {
                self.log_out_dropped(account.name.as_str(), users);
            }
            (Event::SetRealname { client, realname }, Outcome::RealnameChanged) => {
                let Some(source) = self.source_of(*client) else {
                    return;
                };
                let line = LineBuilder::from_source(&source, "SETNAME")
                    .trailing(&**realname)
                    .finish();
                let mut message = self.caused_by(*client, line).requiring(Cap::Setname);
                self.tell_user_and_peers(*client, &mut message);
                self.tell_extended_watchers_of(*client, &mut message);
            }
            (Event::Kill { reason, .. }, Outcome::Killed { victim, by, .. })
                if self.is_local(*victim) =>
            {
                // Closed after the current operation: closing proposes the QUIT.
                let why = format!("Killed ({by} ({reason}))");
                self.doomed.push((*victim, CloseReason::Killed(why)));
            }
            (Event::Ghost { .. }, Outcome::Killed { victim, by, .. }) if self.is_local(*victim) => {
                let why = format!("Killed (NickServ (GHOST command used by {by}))");
                self.doomed.push((*victim, CloseReason::Killed(why)));
            }
            (Event::AddBan { ban, .. }, Outcome::BanAdded) => {
                self.close_banned(ban, entry.at_unix);
            }
            (Event::ReplaceBans { .. }, Outcome::BansReplaced { added }) => {
                for ban in added {
                    self.close_banned(ban, entry.at_unix);
                }
            }
            (
                Event::SetReadMarker { client, .. },
                Outcome::ReadMarkerMoved {
                    account,
                    target,
                    millis,
                    ..
                },
            ) => {
                // The setter gets its answer from the command, with its label.
                let line = markread_line(
                    &self.shared.config.server_name,
                    target.as_str(),
                    Some(*millis),
                )
                .finish();
                let readers: Vec<ClientId> = self
                    .clients
                    .iter()
                    .filter(|local| local.id != *client && local.caps.has(Cap::ReadMarker))
                    .filter(|local| {
                        let network = self.log.network();
                        let user = network.user(local.id);
                        user.and_then(|user| user.account.as_ref()) == Some(account)
                    })
                    .map(|local| local.id)
                    .collect();
                let mut message = Outgoing::new(line);
                for id in readers {
                    self.send_message(id, &mut message);
                }
            }
            (Event::Wallops { text, .. }, Outcome::Wallops { source }) => {
                let line = LineBuilder::from_source(source, "WALLOPS")
                    .trailing(&**text)
                    .finish();
                let readers: Vec<ClientId> = self
                    .clients
                    .iter()
                    .filter(|client| {
                        self.log
                            .network()
                            .user(client.id)
                            .is_some_and(|u| u.wallops)
                    })
                    .map(|client| client.id)
                    .collect();
                let mut message = Outgoing::new(line);
                for id in readers {
                    self.send_message(id, &mut message);
                }
            }
            _ => {}
        }
    }

    /// A new KLINE or DLINE applies at once: this shard's clients it matches are
    /// closed after the current operation (a DLINE also closes unregistered ones).
    /// O(local clients), once per ban.
    fn close_banned(&mut self, ban: &ServerBan, now_unix: u64) {
        let why = format!("{}d ({})", ban.target.kind(), ban.reason);
        let banned: Vec<ClientId> = self
            .clients
            .iter()
            .filter(|client| !client.closing)
            .filter(|client| match self.log.network().user(client.id) {
                Some(user) => user.is_server_banned(ban, now_unix),
                None => client
                    .host
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ban.matches(&[], ip, now_unix)),
            })
            .map(|client| client.id)
            .collect();
        for id in banned {
            self.doomed.push((id, CloseReason::Killed(why.clone())));
        }
    }

    /// A line caused by `id`, tagged `bot` for `message-tags` recipients when `id`
    /// has `+B` (IRCv3 bot mode: servers SHOULD tag everything a bot causes).
    fn caused_by(&self, id: ClientId, line: Bytes) -> Outgoing {
        let user = self.log.network().user(id);
        let bot = user.is_some_and(|user| user.bot);
        let account = user.and_then(|user| user.account.clone());
        Outgoing::new(line).from_bot(bot).with_account(account)
    }

    /// IRCv3 `extended-join`: `:source JOIN #c <account|*> :<real name>`, what the
    /// members with the capability get instead of the plain JOIN.
    fn extended_join(&self, id: ClientId, channel: &str, source: &str) -> Outgoing {
        let user = self.log.network().user(id);
        let account = user
            .and_then(|user| user.account.as_ref())
            .map_or("*", |account| account.as_str());
        let realname = user.map_or("", |user| &*user.realname);
        let line = LineBuilder::from_source(source, "JOIN")
            .arg(channel)
            .arg(account)
            .trailing(realname)
            .finish();
        self.caused_by(id, line)
    }

    /// IRCv3 `away-notify`: "Clients will be sent an AWAY message [...] when a user
    /// joins and has an away message set", so the members who see the JOIN of an
    /// away user see its AWAY right after it (the joiner does not: it knows).
    fn tell_away_on_join(&mut self, client: ClientId, channel: &str, source: &str) {
        let Some(away) = self
            .log
            .network()
            .user(client)
            .and_then(|user| user.away.clone())
        else {
            return;
        };
        let line = LineBuilder::from_source(source, "AWAY")
            .trailing(&*away)
            .finish();
        let mut notice = self.caused_by(client, line).requiring(Cap::AwayNotify);
        self.deliver_to_local_members(channel, &mut notice, Some(client));
    }

    /// `nick!~user@host` of a registered user, from the replica.
    /// An account was dropped: each of this shard's `users` (who were logged in to
    /// it) gets 901, and this shard's channel peers and extended watchers of every
    /// one of them `ACCOUNT *`; a client still registering that logged in to it will
    /// not be, and gets 901 too.
    fn log_out_dropped(&mut self, name: &str, users: &[ClientId]) {
        let server = self.shared.config.server_name.clone();
        for &id in users {
            let Some((nick, source)) = self
                .log
                .network()
                .user(id)
                .map(|user| (user.nick.clone(), user.source()))
            else {
                continue;
            };
            if let Some(local) = self.client_mut(id) {
                local.account = None;
                let logged_out = LineBuilder::from_source(&server, RPL_LOGGEDOUT)
                    .arg(nick.as_str())
                    .arg(&source)
                    .trailing(texts::YOU_ARE_NOW_LOGGED_OUT)
                    .finish();
                self.send(id, logged_out);
            }
            // Every shard tells its own members and watchers, as for a LOGOUT.
            let line = LineBuilder::from_source(&source, "ACCOUNT")
                .arg("*")
                .finish();
            let mut message = self.caused_by(id, line).requiring(Cap::AccountNotify);
            let channels = self.channels_of(id);
            self.deliver_to_local_members_once(&channels, &mut message, Some(id));
            self.tell_extended_watchers_of(id, &mut message);
        }
        let pending: Vec<(ClientId, String)> = self
            .clients
            .iter()
            .filter(|client| {
                client.auth.as_ref().is_some_and(|auth| {
                    auth.pending_account
                        .as_deref()
                        .is_some_and(|account| account.eq_ignore_ascii_case(name))
                })
            })
            .map(|client| (client.id, format!("{}!*@{}", client.nick(), client.host)))
            .collect();
        for (id, mask) in pending {
            let Some(client) = self.client_mut(id) else {
                continue;
            };
            if let Some(auth) = client.auth.as_mut() {
                auth.pending_account = None;
            }
            let nick = client.nick().to_owned();
            let logged_out = LineBuilder::from_source(&server, RPL_LOGGEDOUT)
                .arg(&nick)
                .arg(&mask)
                .trailing(texts::YOU_ARE_NOW_LOGGED_OUT)
                .finish();
            self.send(id, logged_out);
        }
    }

    fn source_of(&self, id: ClientId) -> Option<String> {
        self.log.network().user(id).map(|user| user.source())
    }

    /// The channels a registered user is in.
    fn channels_of(&self, id: ClientId) -> Vec<crate::proto::CaselessKey> {
        self.log
            .network()
            .user(id)
            .map(|user| user.channels.clone())
            .unwrap_or_default()
    }

    /// The user itself (if it lives here) and, once each, the local members of every
    /// channel it is in (NICK, SETNAME).
    fn tell_user_and_peers(&mut self, id: ClientId, message: &mut Outgoing) {
        self.tell_if_local(id, message);
        let channels = self.channels_of(id);
        self.deliver_to_local_members_once(&channels, message, Some(id));
    }

    /// `extended-monitor`: `message` to the local watchers of `id`'s nick that the
    /// channel fan-out just before did not reach.
    fn tell_extended_watchers_of(&mut self, id: ClientId, message: &mut Outgoing) {
        if let Some(nick) = self.log.network().user(id).map(|user| user.nick.clone()) {
            self.tell_extended_watchers(nick.as_str(), message, id);
        }
    }

    /// IRCv3 `invite-notify`: the INVITE line to this shard's members of `channel`
    /// with the capability who could have sent the invitation themselves (every
    /// member, or on a `+i` channel its operators), except the inviter.
    fn tell_invite_notify(&mut self, channel: &str, inviter: ClientId, message: &mut Outgoing) {
        let Some(found) = self.log.network().channel(channel) else {
            return;
        };
        let operators_only = found.modes.invite_only;
        let told: Vec<ClientId> = found
            .members
            .iter()
            .filter(|&(id, membership)| {
                self.is_local(id) && id != inviter && (membership.op || !operators_only)
            })
            .map(|(id, _)| id)
            .collect();
        let mut notice = message.clone().requiring(Cap::InviteNotify);
        for id in told {
            self.send_message(id, &mut notice);
        }
    }

    /// Tells the local members who shared a channel with `user` (once each) and its
    /// MONITOR watchers that it quit with `reason`, kept in history as line `nth` of
    /// the `entry` applied `at` (0: the QUIT's own entry; from 1: a lost node's users).
    fn relay_quit(
        &mut self,
        (entry, at, nth): (&Sequenced, SystemTime, u64),
        id: ClientId,
        user: &User,
        reason: &str,
    ) {
        let line = LineBuilder::from_source(&user.source(), "QUIT")
            .trailing(reason)
            .finish();
        let message = Outgoing::new(line).from_bot(user.bot);
        let mut message = self.keep_event_line(entry, at, nth, &user.channels, message);
        self.deliver_to_local_members_once(&user.channels, &mut message, Some(id));
        self.tell_watchers_offline(user.nick.as_str());
    }

    /// `message` to `id` if it lives on this shard.
    fn tell_if_local(&mut self, id: ClientId, message: &mut Outgoing) {
        if self.is_local(id) {
            self.send_message(id, message);
        }
    }
}
