//! Channel membership: JOIN, PART, NAMES.

use super::errors::reply_refusal;
use super::{clip, targets, Ctx, KICKLEN};
use crate::proto::caps::Cap;
use crate::proto::names::is_valid_channel;
use crate::proto::numeric::*;
use crate::proto::texts;
use crate::proto::{CaselessKey, Message};
use crate::state::network::{Event, Membership, Network, Outcome};

/// `JOIN #a,#b [keys]`, or `JOIN 0` to leave every channel.
pub fn join(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let list = message.param(0).unwrap_or_default();
    if list == b"0" {
        let channels = match ctx.network().user(ctx.id) {
            Some(user) => user.channels.clone(),
            None => return,
        };
        for channel in channels {
            leave(ctx, channel.as_str(), None);
        }
        return;
    }
    let mut keys = message.param(1).unwrap_or_default().split(|&b| b == b',');
    for name in targets(list) {
        let key = keys.next().filter(|key| !key.is_empty());
        let Some(name) = std::str::from_utf8(name)
            .ok()
            .filter(|n| is_valid_channel(n.as_bytes()))
        else {
            let reply = ctx
                .numeric(ERR_BADCHANMASK)
                .arg(String::from_utf8_lossy(name).as_ref())
                .trailing(texts::BAD_CHANNEL_MASK);
            ctx.reply(reply);
            continue;
        };
        join_one(ctx, name, key);
    }
}

/// Joins one channel. Applying the JOIN tells every member, the joiner included;
/// then the joiner gets the topic and NAMES.
fn join_one(ctx: &mut Ctx<'_>, name: &str, key: Option<&[u8]>) {
    let outcome = ctx.propose(Event::Join {
        client: ctx.id,
        channel: name.into(),
        key: key.map(Into::into),
        channel_limit: ctx.shared().live.max_channels_per_client() as u32,
    });
    match outcome {
        Outcome::Joined { channel } => {
            super::read_marker::after_join(ctx, channel.as_str());
            let topic = ctx
                .network()
                .channel(channel.as_str())
                .and_then(|c| c.topic.clone());
            if let Some(topic) = &topic {
                super::channel_ops::send_topic(ctx, channel.as_str(), topic);
            }
            send_names(ctx, &channel);
        }
        Outcome::Refused(refusal) => reply_refusal(ctx, refusal, name, ""),
        _ => {}
    }
}

/// `PART #a,#b [:reason]`.
pub fn part(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let reason = message.param(1).map(|reason| clip(reason, KICKLEN));
    for name in targets(message.param(0).unwrap_or_default()) {
        let name = String::from_utf8_lossy(name);
        leave(ctx, &name, reason);
    }
}

/// Leaves one channel; applying the PART tells every member, the leaver included.
fn leave(ctx: &mut Ctx<'_>, name: &str, reason: Option<&[u8]>) {
    let outcome = ctx.propose(Event::Part {
        client: ctx.id,
        channel: name.into(),
        reason: reason.map(Into::into),
    });
    if let Outcome::Refused(refusal) = outcome {
        reply_refusal(ctx, refusal, name, "");
    }
}

/// `NAMES [#channel]`: one channel per command (ISUPPORT `TARGMAX=NAMES:1`); a
/// further target is answered `407 ERR_TOOMANYTARGETS` and not looked at.
pub fn names(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let Some(list) = message.param(0) else {
        let reply = ctx
            .numeric(RPL_ENDOFNAMES)
            .arg("*")
            .trailing(texts::END_OF_NAMES_LIST);
        ctx.reply(reply);
        return;
    };
    let mut names = targets(list);
    if let Some(extra) = names.clone().nth(1) {
        super::too_many_targets(ctx, extra);
    }
    if let Some(name) = names.next() {
        let name = String::from_utf8_lossy(name);
        let channel = ctx
            .network()
            .channel(&name)
            .filter(|c| c.is_visible_to(ctx.id))
            .map(|c| c.name.clone());
        match channel {
            Some(channel) => send_names(ctx, &channel),
            None => {
                let reply = ctx
                    .numeric(RPL_ENDOFNAMES)
                    .arg(name.as_ref())
                    .trailing(texts::END_OF_NAMES_LIST);
                ctx.reply(reply);
            }
        }
    }
}

/// Every status prefix, highest first (`multi-prefix`).
pub(super) fn all_prefixes(membership: Membership) -> &'static str {
    match (membership.op, membership.voice) {
        (true, true) => "@+",
        (true, false) => "@",
        (false, true) => "+",
        (false, false) => "",
    }
}

/// The prefix of the highest status, if any.
pub(super) fn highest_prefix(membership: Membership) -> &'static str {
    if membership.op {
        "@"
    } else if membership.voice {
        "+"
    } else {
        ""
    }
}

/// 353 lines (each within LINELEN) and 366 for one channel, read from this shard's
/// replica: no other shard waits while a large channel is listed.
/// One NAMES entry: status prefix, nick, and `user@host` with userhost-in-names.
type NameEntry<'a> = (&'static str, &'a str, Option<(&'a str, &'a str)>);

fn write_name((prefix, nick, userhost): &NameEntry<'_>, line: &mut String) {
    line.push_str(prefix);
    line.push_str(nick);
    if let Some((user, host)) = userhost {
        line.push('!');
        line.push_str(user);
        line.push('@');
        line.push_str(host);
    }
}

fn send_names(ctx: &mut Ctx<'_>, channel: &CaselessKey) {
    let caps = ctx.client().caps;
    let prefix = match caps.has(Cap::MultiPrefix) {
        true => all_prefixes,
        false => highest_prefix,
    };
    // A version of the replica held for the reply (a reference count): the names are
    // formatted straight into the reply lines, with no list of them in between.
    let version = ctx.network_version();
    let network: &Network = &version;
    let found = network.channel(channel.as_str());
    // Modern IRC RPL_NAMREPLY: `@` marks a secret channel.
    let symbol = match found {
        Some(c) if c.modes.secret => "@",
        _ => "=",
    };
    // Like WHO: invisible (+i) users are listed only to fellow members.
    let asker_is_member = found.is_some_and(|c| c.members.contains(ctx.id));
    let userhost = caps.has(Cap::UserhostInNames);
    let header = |ctx: &Ctx<'_>| ctx.numeric(RPL_NAMREPLY).arg(symbol).arg(channel.as_str());
    // A member asking without userhost-in-names (every joiner of a member flood) is
    // answered from the members' own entries, a big channel's from the shard's kept
    // text; anyone else needs the users.
    let members_alone = asker_is_member && !userhost;
    if let Some(found) = found.filter(|_| members_alone) {
        if let Some(text) = ctx.names_cache().text(channel, &found.members, prefix) {
            let text = text.to_owned();
            super::write_text_in_lines(ctx, header, &text);
        } else {
            let names = found
                .members
                .iter_listed()
                .filter_map(|(id, membership, nick)| {
                    let nick = nick.or_else(|| Some(network.user(id)?.nick.as_str()))?;
                    Some((prefix(membership), nick, None))
                });
            super::write_in_lines(ctx, header, names, write_name);
        }
    } else {
        let names = found
            .into_iter()
            .flat_map(|c| network.users_of(&c.members))
            .filter(|(user, _)| asker_is_member || !user.invisible)
            .map(|(user, membership)| {
                let userhost = userhost.then_some((&*user.user, &*user.host));
                (prefix(membership), user.nick.as_str(), userhost)
            });
        super::write_in_lines(ctx, header, names, write_name);
    }
    let end = ctx
        .numeric(RPL_ENDOFNAMES)
        .arg(channel.as_str())
        .trailing(texts::END_OF_NAMES_LIST);
    ctx.reply(end);
}
