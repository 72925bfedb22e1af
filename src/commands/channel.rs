//! Channel membership: JOIN, PART, NAMES.

use super::{targets, unix_now, Ctx};
use crate::proto::names::is_valid_channel;
use crate::proto::numeric::*;
use crate::proto::{Caseless, CaselessKey, LineBuilder, Message};
use crate::shard::outgoing::Outgoing;
use crate::state::caps::Cap;
use crate::state::directory::{ChannelError, JoinError};

/// `JOIN #a,#b [keys]`, or `JOIN 0` to leave every channel.
pub fn join(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let list = message.param(0).unwrap_or_default();
    if list == b"0" {
        let channels = match ctx.shard.shared.directory().user(ctx.id) {
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
                .trailing("Bad Channel Mask");
            ctx.reply(reply);
            continue;
        };
        join_one(ctx, name, key);
    }
}

fn join_one(ctx: &mut Ctx<'_>, name: &str, key: Option<&[u8]>) {
    let limit = ctx.shard.shared.live.max_channels_per_client();
    let joined = ctx
        .shard
        .shared
        .directory()
        .join(ctx.id, name, key, limit, unix_now());
    let joined = match joined {
        Ok(joined) => joined,
        Err(error) => {
            let (code, text) = match error {
                JoinError::TooManyChannels => {
                    (ERR_TOOMANYCHANNELS, "You have joined too many channels")
                }
                JoinError::ChannelFull => (ERR_CHANNELISFULL, "Cannot join channel (+l)"),
                JoinError::InviteOnly => (ERR_INVITEONLYCHAN, "Cannot join channel (+i)"),
                JoinError::Banned => (ERR_BANNEDFROMCHAN, "Cannot join channel (+b)"),
                JoinError::BadKey => (ERR_BADCHANNELKEY, "Cannot join channel (+k)"),
            };
            let reply = ctx.numeric(code).arg(name).trailing(text);
            ctx.reply(reply);
            return;
        }
    };
    if !joined.is_new_member {
        return;
    }
    ctx.shard.add_local_member(&joined.channel, ctx.id);
    let line = LineBuilder::from_source(ctx.client().source(), "JOIN")
        .arg(joined.channel.as_str())
        .finish();
    ctx.shard.deliver_to_channel(
        Caseless::new(joined.channel.as_str()),
        joined.shards,
        Outgoing::new(line),
        None,
    );
    if let Some(topic) = &joined.topic {
        super::channel_ops::send_topic(ctx, joined.channel.as_str(), topic);
    }
    send_names(ctx, &joined.channel);
}

/// `PART #a,#b [:reason]`.
pub fn part(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let reason = message.param(1);
    for name in targets(message.param(0).unwrap_or_default()) {
        let name = String::from_utf8_lossy(name);
        leave(ctx, &name, reason);
    }
}

/// Leaves one channel; every member, the leaver included, sees the PART.
fn leave(ctx: &mut Ctx<'_>, name: &str, reason: Option<&[u8]>) {
    let parted = ctx.shard.shared.directory().part(ctx.id, name);
    let (channel, shards) = match parted {
        Ok(parted) => parted,
        Err(error) => {
            let (code, text) = match error {
                ChannelError::NotOnChannel => (ERR_NOTONCHANNEL, "You're not on that channel"),
                _ => (ERR_NOSUCHCHANNEL, "No such channel"),
            };
            let reply = ctx.numeric(code).arg(name).trailing(text);
            ctx.reply(reply);
            return;
        }
    };
    let mut line = LineBuilder::from_source(ctx.client().source(), "PART").arg(channel.as_str());
    if let Some(reason) = reason {
        line = line.trailing(reason);
    }
    ctx.shard.deliver_to_channel(
        Caseless::new(channel.as_str()),
        shards,
        Outgoing::new(line.finish()),
        None,
    );
    ctx.shard
        .remove_local_member(Caseless::new(channel.as_str()), ctx.id);
}

/// `NAMES [#channel]`.
pub fn names(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let Some(list) = message.param(0) else {
        let reply = ctx
            .numeric(RPL_ENDOFNAMES)
            .arg("*")
            .trailing("End of /NAMES list.");
        ctx.reply(reply);
        return;
    };
    for name in targets(list) {
        let name = String::from_utf8_lossy(name);
        let channel = ctx
            .shard
            .shared
            .directory()
            .channel(&name)
            .map(|c| c.name.clone());
        match channel {
            Some(channel) => send_names(ctx, &channel),
            None => {
                let reply = ctx
                    .numeric(RPL_ENDOFNAMES)
                    .arg(name.as_ref())
                    .trailing("End of /NAMES list.");
                ctx.reply(reply);
            }
        }
    }
}

/// 353 lines (each within 512 bytes) and 366 for one channel.
fn send_names(ctx: &mut Ctx<'_>, channel: &CaselessKey) {
    let caps = ctx.client().caps;
    let names: Vec<String> = {
        let directory = ctx.shard.shared.directory();
        let users = directory.users();
        directory
            .channel(channel.as_str())
            .map(|c| {
                // Like WHO: invisible (+i) users are listed only to fellow members.
                let asker_is_member = c.members.contains_key(&ctx.id);
                c.members
                    .iter()
                    .filter_map(|(id, membership)| {
                        let user = users.get(id).filter(|u| asker_is_member || !u.invisible)?;
                        let prefix = match caps.has(Cap::MultiPrefix) {
                            true => membership.all_prefixes(),
                            false => membership.prefix(),
                        };
                        Some(match caps.has(Cap::UserhostInNames) {
                            true => format!("{prefix}{}!{}@{}", user.nick, user.user, user.host),
                            false => format!("{prefix}{}", user.nick),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let header = ctx.numeric(RPL_NAMREPLY).arg("=").arg(channel.as_str());
    let header_len = header.len() + 2;
    let mut batch = String::new();
    for name in names {
        if !batch.is_empty() && header_len + batch.len() + 1 + name.len() + 2 > 512 {
            let reply = ctx
                .numeric(RPL_NAMREPLY)
                .arg("=")
                .arg(channel.as_str())
                .trailing(&batch);
            ctx.reply(reply);
            batch.clear();
        }
        if !batch.is_empty() {
            batch.push(' ');
        }
        batch.push_str(&name);
    }
    if !batch.is_empty() {
        let reply = header.trailing(&batch);
        ctx.reply(reply);
    }
    let end = ctx
        .numeric(RPL_ENDOFNAMES)
        .arg(channel.as_str())
        .trailing("End of /NAMES list.");
    ctx.reply(end);
}
