//! Talking: PRIVMSG and NOTICE to channels and nicknames.

use super::{targets, Ctx};
use crate::proto::numeric::*;
use crate::proto::{Caseless, LineBuilder, Message};
use crate::state::directory::ChannelError;

/// Most targets in one PRIVMSG or NOTICE (TARGMAX).
pub const MAX_TARGETS: usize = 4;

/// `PRIVMSG target[,target] :text`.
pub fn privmsg(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    relay(ctx, message, "PRIVMSG");
}

/// `NOTICE target[,target] :text`: like PRIVMSG, but never answered with an error.
pub fn notice(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    relay(ctx, message, "NOTICE");
}

fn relay(ctx: &mut Ctx<'_>, message: &Message<'_>, command: &str) {
    let quiet = command == "NOTICE";
    let text = message.param(1).unwrap_or_default();
    if text.is_empty() {
        if !quiet {
            let reply = ctx.numeric(ERR_NOTEXTTOSEND).trailing("No text to send");
            ctx.reply(reply);
        }
        return;
    }
    for (index, target) in targets(message.param(0).unwrap_or_default()).enumerate() {
        let target = String::from_utf8_lossy(target);
        let error = if index >= MAX_TARGETS {
            Some((ERR_TOOMANYTARGETS, "Too many targets"))
        } else if target.starts_with('#') {
            to_channel(ctx, command, &target, text)
        } else {
            to_nick(ctx, command, &target, text)
        };
        if let Some((code, explanation)) = error.filter(|_| !quiet) {
            let reply = ctx.numeric(code).arg(target.as_ref()).trailing(explanation);
            ctx.reply(reply);
        }
    }
}

/// The hot path: one directory lookup, one serialization, then fan-out by reference.
fn to_channel(
    ctx: &mut Ctx<'_>,
    command: &str,
    name: &str,
    text: &[u8],
) -> Option<(&'static str, &'static str)> {
    let routed = {
        let directory = ctx.shard.shared.directory();
        directory
            .message_target(ctx.id, name)
            .map(|(channel, shards)| {
                let line = LineBuilder::from_source(ctx.client().source(), command)
                    .arg(channel.as_str())
                    .trailing(text)
                    .finish();
                (line, shards)
            })
    };
    match routed {
        Ok((line, shards)) => {
            ctx.shard
                .deliver_to_channel(Caseless::new(name), shards, line, Some(ctx.id));
            None
        }
        Err(ChannelError::CannotSend) => Some((ERR_CANNOTSENDTOCHAN, "Cannot send to channel")),
        Err(_) => Some((ERR_NOSUCHCHANNEL, "No such channel")),
    }
}

fn to_nick(
    ctx: &mut Ctx<'_>,
    command: &str,
    nick: &str,
    text: &[u8],
) -> Option<(&'static str, &'static str)> {
    let recipient = {
        let directory = ctx.shard.shared.directory();
        directory
            .nick_owner(nick)
            .and_then(|id| Some((id, directory.user(id)?.nick.clone())))
    };
    let Some((recipient, nick)) = recipient else {
        return Some((ERR_NOSUCHNICK, "No such nick/channel"));
    };
    let line = LineBuilder::from_source(ctx.client().source(), command)
        .arg(nick.as_str())
        .trailing(text)
        .finish();
    ctx.shard.send_anywhere(recipient, line);
    None
}
