//! A user's own state: AWAY and user MODE (`+i`, the one user mode this server has).

use super::{clip, Ctx, AWAYLEN};
use crate::proto::numeric::*;
use crate::proto::{LineBuilder, Message};
use crate::shard::outgoing::Outgoing;
use crate::state::caps::Cap;

/// `AWAY :message` marks the user away (306); `AWAY` or `AWAY :` marks it back (305).
/// Members of shared channels with `away-notify` see an AWAY line, once each.
pub fn away(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let text = message.param(0).filter(|text| !text.is_empty());
    let away = text.map(|text| Box::<[u8]>::from(clip(text, AWAYLEN)));
    let reply = if away.is_some() {
        ctx.numeric(RPL_NOWAWAY)
            .trailing("You have been marked as being away")
    } else {
        ctx.numeric(RPL_UNAWAY)
            .trailing("You are no longer marked as being away")
    };
    let audience = {
        let mut directory = ctx.shard.shared.directory();
        directory.set_away(ctx.id, away.clone());
        directory.audience(ctx.id)
    };
    ctx.reply(reply);
    let mut line = LineBuilder::from_source(ctx.client().source(), "AWAY");
    if let Some(away) = &away {
        line = line.trailing(away);
    }
    let notice = Outgoing::new(line.finish()).requiring(Cap::AwayNotify);
    ctx.shard
        .deliver_to_channels(&audience.channels, audience.shards, notice, Some(ctx.id));
}

/// `MODE nick [+i|-i]`: 221 answers a query; a change is echoed as a MODE line to the
/// user. Another user's modes are neither shown nor changed (502).
pub fn user_mode(ctx: &mut Ctx<'_>, message: &Message<'_>, target: &str) {
    let found = {
        let directory = ctx.shard.shared.directory();
        directory
            .user_by_nick(target)
            .map(|(id, user)| (id, user.invisible))
    };
    let Some((owner, invisible)) = found else {
        let reply = ctx
            .numeric(ERR_NOSUCHNICK)
            .arg(target)
            .trailing("No such nick/channel");
        ctx.reply(reply);
        return;
    };
    if owner != ctx.id {
        let reply = ctx
            .numeric(ERR_USERSDONTMATCH)
            .trailing("Can't change mode for other users");
        ctx.reply(reply);
        return;
    }
    let Some(modes) = message.param(1) else {
        let reply = ctx
            .numeric(RPL_UMODEIS)
            .arg(if invisible { "+i" } else { "+" });
        ctx.reply(reply);
        return;
    };
    let mut add = true;
    let mut wanted = None;
    let mut unknown = false;
    for &byte in modes {
        match byte {
            b'+' => add = true,
            b'-' => add = false,
            b'i' => wanted = Some(add),
            _ => unknown = true,
        }
    }
    if unknown {
        let reply = ctx
            .numeric(ERR_UMODEUNKNOWNFLAG)
            .trailing("Unknown MODE flag");
        ctx.reply(reply);
    }
    let Some(invisible) = wanted else {
        return;
    };
    if ctx
        .shard
        .shared
        .directory()
        .set_invisible(ctx.id, invisible)
    {
        let line = LineBuilder::from_source(ctx.client().source(), "MODE")
            .arg(ctx.client().nick())
            .arg(if invisible { "+i" } else { "-i" })
            .finish();
        ctx.send(line);
    }
}
