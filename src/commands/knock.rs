//! `KNOCK <channel> [:reason]`: asks the operators of a channel one cannot join
//! (`+i`, `+k`, or full at `+l`) for an invitation, as Solanum and InspIRCd offer it.
//! The operators get a server NOTICE addressed to `@#channel` (through the STATUSMSG
//! fan-out, so on every shard and node), the knocker 711 RPL_KNOCKDLVR. Refusals use
//! the numerics those servers share: 713 ERR_CHANOPEN (the channel is open), 714
//! ERR_KNOCKONCHAN (already in it), 712 ERR_TOOMANYKNOCK (one KNOCK per
//! [`KNOCK_DELAY`] per connection), 404 for a banned user, 403 for a channel that
//! does not exist or that a secret mode hides.

use super::Ctx;
use crate::proto::numeric::*;
use crate::proto::outgoing::{Outgoing, StatusTarget};
use crate::proto::texts;
use crate::proto::{LineBuilder, Message};
use std::time::Duration;

/// Shortest time between two KNOCKs from one connection, so a knocker cannot flood a
/// channel's operators (Solanum's `knock_delay` is 5 minutes, per user).
pub const KNOCK_DELAY: Duration = Duration::from_secs(60);

/// `KNOCK <channel> [:reason]`.
pub fn knock(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let name = message.param_str(0).unwrap_or_default().to_owned();
    let refusal = {
        let network = ctx.network();
        match network.channel(&name).filter(|c| c.is_visible_to(ctx.id)) {
            None => Err((ERR_NOSUCHCHANNEL, "No such channel")),
            Some(channel) if channel.members.contains(ctx.id) => {
                Err((ERR_KNOCKONCHAN, "You are already on that channel"))
            }
            Some(channel) => {
                let modes = &channel.modes;
                let full = modes
                    .limit
                    .is_some_and(|limit| channel.members.len() >= limit);
                if !modes.invite_only && modes.key.is_none() && !full {
                    Err((ERR_CHANOPEN, "Channel is open"))
                } else if network
                    .user(ctx.id)
                    .is_some_and(|user| channel.is_banned(user))
                {
                    Err((ERR_CANNOTSENDTOCHAN, "Cannot knock: you are banned"))
                } else {
                    Ok(channel.name.clone())
                }
            }
        }
    };
    let channel = match refusal {
        Ok(channel) => channel,
        Err((numeric, text)) => {
            let reply = ctx.numeric(numeric).arg(&name).trailing(text);
            return ctx.reply(reply);
        }
    };
    let now = ctx.now;
    let client = ctx.client_mut();
    if client
        .last_knock
        .is_some_and(|last| now.saturating_duration_since(last) < KNOCK_DELAY)
    {
        let reply = ctx
            .numeric(ERR_TOOMANYKNOCK)
            .arg(channel.as_str())
            .trailing(texts::TOO_MANY_KNOCKS_CONNECTION);
        return ctx.reply(reply);
    }
    client.last_knock = Some(now);
    let reason = message
        .param(1)
        .filter(|reason| !reason.is_empty())
        .map(|reason| String::from_utf8_lossy(super::clip(reason, super::KICKLEN)).into_owned());
    let asker = ctx.client().source().to_owned();
    let text = match reason {
        Some(reason) => format!("KNOCK: {channel} ({asker} has asked for an invite: {reason})"),
        None => format!("KNOCK: {channel} ({asker} has asked for an invite)"),
    };
    let line = LineBuilder::from_source(&ctx.config().server_name, "NOTICE")
        .arg(format!("@{channel}"))
        .trailing(text)
        .finish();
    let to_operators = Outgoing::new(line).to_status(StatusTarget::Operators);
    ctx.deliver_to_channel(&channel, to_operators, None, None);
    let reply = ctx
        .numeric(RPL_KNOCKDLVR)
        .arg(channel.as_str())
        .trailing(texts::YOUR_KNOCK_HAS_BEEN_DELIVERED);
    ctx.reply(reply);
}
