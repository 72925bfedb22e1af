//! A user's own state: AWAY and user MODE (`+i` invisible, `+B` bot, `+w` wallops,
//! `-o` to stop being a server operator).

use super::{clip, Ctx, AWAYLEN};
use crate::proto::numeric::*;
use crate::proto::{LineBuilder, Message};
use crate::state::network::{Event, Outcome};

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
    ctx.shard.propose(Event::SetAway {
        client: ctx.id,
        message: away,
    });
    ctx.reply(reply);
}

/// `MODE nick [+i|-i|+B|-B|+w|-w|-o]`: 221 answers a query; a change is echoed as a
/// MODE line to the user. `+o` comes only from OPER, so `MODE nick +o` is ignored (as
/// RFC 2812 says). Another user's modes are neither shown nor changed (502).
pub fn user_mode(ctx: &mut Ctx<'_>, message: &Message<'_>, target: &str) {
    let found = ctx.shard.network().user_by_nick(target).map(|(id, user)| {
        (
            id,
            user.invisible,
            user.bot,
            user.oper.is_some(),
            user.wallops,
        )
    });
    let Some((owner, invisible, bot, oper, wallops)) = found else {
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
        let mut shown = String::from("+");
        if bot {
            shown.push('B');
        }
        if invisible {
            shown.push('i');
        }
        if oper {
            shown.push('o');
        }
        if wallops {
            shown.push('w');
        }
        let reply = ctx.numeric(RPL_UMODEIS).arg(&shown);
        ctx.reply(reply);
        return;
    };
    let mut add = true;
    let mut wanted_invisible = None;
    let mut wanted_bot = None;
    let mut wanted_wallops = None;
    let mut drop_oper = false;
    let mut unknown = false;
    for &byte in modes {
        match byte {
            b'+' => add = true,
            b'-' => add = false,
            b'i' => wanted_invisible = Some(add),
            b'B' => wanted_bot = Some(add),
            b'w' => wanted_wallops = Some(add),
            b'o' => drop_oper |= !add,
            _ => unknown = true,
        }
    }
    if unknown {
        let reply = ctx
            .numeric(ERR_UMODEUNKNOWNFLAG)
            .trailing("Unknown MODE flag");
        ctx.reply(reply);
    }
    let mut changed = Vec::new();
    if let Some(invisible) = wanted_invisible {
        let outcome = ctx.shard.propose(Event::SetInvisible {
            client: ctx.id,
            invisible,
        });
        if outcome == Outcome::InvisibleChanged(invisible) {
            changed.push((invisible, 'i'));
        }
    }
    if let Some(bot) = wanted_bot {
        let outcome = ctx.shard.propose(Event::SetBot {
            client: ctx.id,
            bot,
        });
        if outcome == Outcome::BotChanged(bot) {
            if let Some(client) = ctx.shard.client_mut(ctx.id) {
                client.bot = bot;
            }
            changed.push((bot, 'B'));
        }
    }
    if let Some(wallops) = wanted_wallops {
        let outcome = ctx.shard.propose(Event::SetWallops {
            client: ctx.id,
            wallops,
        });
        if outcome == Outcome::WallopsChanged(wallops) {
            changed.push((wallops, 'w'));
        }
    }
    if drop_oper {
        let outcome = ctx.shard.propose(Event::SetOper {
            client: ctx.id,
            oper: None,
        });
        if outcome == Outcome::OperChanged(false) {
            changed.push((false, 'o'));
        }
    }
    if changed.is_empty() {
        return;
    }
    let mut modestring = String::new();
    let mut sign = None;
    for (add, letter) in changed {
        if sign != Some(add) {
            sign = Some(add);
            modestring.push(if add { '+' } else { '-' });
        }
        modestring.push(letter);
    }
    let line = LineBuilder::from_source(ctx.client().source(), "MODE")
        .arg(ctx.client().nick())
        .arg(&modestring)
        .finish();
    ctx.send(line);
}
