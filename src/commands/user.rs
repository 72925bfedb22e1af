//! A user's own state: AWAY and user MODE (`+i` invisible, `+B` bot, `+w` wallops,
//! `+s` server notices for operators, `-o` to stop being a server operator).

use super::{clip, Ctx, AWAYLEN};
use crate::proto::numeric::*;
use crate::proto::snomask::Snomask;
use crate::proto::texts;
use crate::proto::{LineBuilder, Message};
use crate::state::network::{Event, Outcome};

/// `AWAY :message` marks the user away (306); `AWAY` or `AWAY :` marks it back (305).
/// Members of shared channels with `away-notify` see an AWAY line, once each.
pub fn away(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let text = message.param(0).filter(|text| !text.is_empty());
    let away = text.map(|text| Box::<[u8]>::from(clip(text, AWAYLEN)));
    let reply = if away.is_some() {
        ctx.numeric(RPL_NOWAWAY)
            .trailing(texts::YOU_HAVE_BEEN_MARKED_AS_BEING_AWAY)
    } else {
        ctx.numeric(RPL_UNAWAY)
            .trailing(texts::YOU_ARE_NO_LONGER_MARKED_AS_BEING)
    };
    ctx.propose(Event::SetAway {
        client: ctx.id,
        message: away,
    });
    ctx.reply(reply);
}

/// `MODE nick [+i|-i|+B|-B|+w|-w|+s [mask]|-s|-o]`: 221 answers a query; a change is
/// echoed as a MODE line to the user. `+s` (operators only, else 481) takes a snomask
/// change (`+cf-k`; none: every kind) and is answered with 008, as InspIRCd and
/// Solanum do. `+o` comes only from OPER, so `MODE nick +o` is ignored (as
/// RFC 2812 says). Another user's modes are neither shown nor changed (502).
pub fn user_mode(ctx: &mut Ctx<'_>, message: &Message<'_>, target: &str) {
    let found = ctx.network().user_by_nick(target).map(|(id, user)| {
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
            .trailing(texts::NO_SUCH_NICK_CHANNEL);
        ctx.reply(reply);
        return;
    };
    if owner != ctx.id {
        let reply = ctx
            .numeric(ERR_USERSDONTMATCH)
            .trailing(texts::CANT_CHANGE_MODE_FOR_OTHER_USERS);
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
        if !ctx.client().snomask.is_empty() {
            shown.push('s');
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
    let mut wanted_notices = None;
    let mut unknown = false;
    for &byte in modes {
        match byte {
            b'+' => add = true,
            b'-' => add = false,
            b'i' => wanted_invisible = Some(add),
            b'B' => wanted_bot = Some(add),
            b'w' => wanted_wallops = Some(add),
            b'o' => drop_oper |= !add,
            b's' => wanted_notices = Some(add),
            _ => unknown = true,
        }
    }
    if unknown {
        let reply = ctx
            .numeric(ERR_UMODEUNKNOWNFLAG)
            .trailing(texts::UNKNOWN_MODE_FLAG);
        ctx.reply(reply);
    }
    let mut changed = Vec::new();
    if let Some(invisible) = wanted_invisible {
        let outcome = ctx.propose(Event::SetInvisible {
            client: ctx.id,
            invisible,
        });
        if outcome == Outcome::InvisibleChanged(invisible) {
            changed.push((invisible, 'i'));
        }
    }
    if let Some(bot) = wanted_bot {
        let outcome = ctx.propose(Event::SetBot {
            client: ctx.id,
            bot,
        });
        if outcome == Outcome::BotChanged(bot) {
            ctx.client_mut().bot = bot;
            changed.push((bot, 'B'));
        }
    }
    if let Some(wallops) = wanted_wallops {
        let outcome = ctx.propose(Event::SetWallops {
            client: ctx.id,
            wallops,
        });
        if outcome == Outcome::WallopsChanged(wallops) {
            changed.push((wallops, 'w'));
        }
    }
    if drop_oper {
        let outcome = ctx.propose(Event::SetOper {
            client: ctx.id,
            oper: None,
        });
        if outcome == Outcome::OperChanged(false) {
            changed.push((false, 'o'));
            // Server notices are for operators only.
            wanted_notices = Some(false);
        }
    }
    if let Some(add) = wanted_notices {
        if let Some(notices_on) =
            change_snomask(ctx, add && oper && !drop_oper, add, message.param(2))
        {
            changed.push((notices_on, 's'));
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

/// Applies `+s [mask]` (when `allowed`: the user is an operator) or `-s`; returns
/// whether notices are now on if that changed (for the MODE line).
fn change_snomask(
    ctx: &mut Ctx<'_>,
    allowed: bool,
    add: bool,
    mask: Option<&[u8]>,
) -> Option<bool> {
    let current = ctx.client().snomask;
    if add && !allowed {
        let reply = ctx
            .numeric(ERR_NOPRIVILEGES)
            .trailing(texts::PERMISSION_DENIED_ONLY_OPERATORS_MAY_SET_USER);
        ctx.reply(reply);
        return None;
    }
    let wanted = match (add, mask) {
        (false, _) => Snomask::default(),
        (true, None) => Snomask::ALL,
        (true, Some(change)) => {
            let (wanted, unknown) = current.changed_by(change);
            // InspIRCd answers an unknown snomask letter with 501 too.
            if !unknown.is_empty() {
                let unknown: String = unknown.into_iter().collect();
                let reply = ctx
                    .numeric(ERR_UMODEUNKNOWNFLAG)
                    .arg(&unknown)
                    .trailing(texts::IS_AN_UNKNOWN_SNOMASK_LETTER_KNOWN_BCFKO);
                ctx.reply(reply);
            }
            wanted
        }
    };
    ctx.set_snomask(wanted);
    if !wanted.is_empty() {
        let reply = ctx
            .numeric(RPL_SNOMASK)
            .arg(wanted.to_string())
            .trailing(texts::SERVER_NOTICE_MASK);
        ctx.reply(reply);
    }
    (wanted.is_empty() != current.is_empty()).then_some(!wanted.is_empty())
}
