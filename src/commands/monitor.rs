//! MONITOR (IRCv3 `monitor`): a client's list of nicknames to be told about when they
//! come online or go offline. The list and the shard's index of watchers live on the
//! shard ([`crate::shard::monitor`]); the notifications are rendered as events are
//! applied ([`crate::shard::notify`]), so watchers on every shard hear the same.

use super::{targets, Ctx, LINELEN};
use crate::proto::names::is_valid_nick;
use crate::proto::numeric::*;
use crate::proto::texts;
use crate::proto::Message;
use crate::shard::monitor::{MonitorRefusal, MONITOR_LIMIT};

/// `MONITOR + nick[,nick]`, `MONITOR - nick[,nick]`, `MONITOR C`, `MONITOR L`,
/// `MONITOR S`.
pub fn monitor(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let subcommand = message.param_str(0).unwrap_or_default();
    let list = message.param(1);
    match (subcommand, list) {
        ("+", Some(list)) => add(ctx, list),
        ("-", Some(list)) => {
            for nick in targets(list) {
                let nick = String::from_utf8_lossy(nick);
                ctx.monitor_remove(&nick);
            }
        }
        ("+" | "-", None) => {
            let reply = ctx
                .numeric(ERR_NEEDMOREPARAMS)
                .arg("MONITOR")
                .trailing(texts::NOT_ENOUGH_PARAMETERS);
            ctx.reply(reply);
        }
        ("C" | "c", _) => ctx.monitor_clear(),
        ("L" | "l", _) => {
            let nicks: Vec<String> = ctx
                .client()
                .monitoring
                .iter()
                .map(|nick| nick.to_string())
                .collect();
            reply_in_comma_lines(ctx, RPL_MONLIST, &nicks);
            let end = ctx
                .numeric(RPL_ENDOFMONLIST)
                .trailing(texts::END_OF_MONITOR_LIST);
            ctx.reply(end);
        }
        ("S" | "s", _) => {
            let nicks: Vec<String> = ctx
                .client()
                .monitoring
                .iter()
                .map(|nick| nick.to_string())
                .collect();
            send_status(ctx, &nicks);
        }
        _ => ctx.fail_nonstandard("MONITOR", "INVALID_PARAMS", "MONITOR takes +, -, C, L or S"),
    }
}

/// Adds each valid nickname until the list is full, then answers 730/731 for the
/// added ones and 734 with those that did not fit. A target that is not a valid
/// nickname could never come online, so it is skipped.
fn add(ctx: &mut Ctx<'_>, list: &[u8]) {
    let mut added = Vec::new();
    let mut left_out = Vec::new();
    for nick in targets(list) {
        let Some(nick) = std::str::from_utf8(nick)
            .ok()
            .filter(|n| is_valid_nick(n.as_bytes()))
        else {
            continue;
        };
        match ctx.monitor_add(nick) {
            Ok(()) => added.push(nick.to_owned()),
            Err(MonitorRefusal::ListFull) => left_out.push(nick.to_owned()),
        }
    }
    send_status(ctx, &added);
    if !left_out.is_empty() {
        let reply = ctx
            .numeric(ERR_MONLISTFULL)
            .arg(MONITOR_LIMIT.to_string())
            .arg(left_out.join(","))
            .trailing(texts::MONITOR_LIST_IS_FULL);
        ctx.reply(reply);
    }
}

/// 730 with `nick!user@host` of those of `nicks` that are online, 731 with the rest.
fn send_status(ctx: &mut Ctx<'_>, nicks: &[String]) {
    let (online, offline): (Vec<_>, Vec<_>) = {
        let network = ctx.network();
        nicks
            .iter()
            .map(|nick| match network.user_by_nick(nick) {
                Some((_, user)) => Ok(user.source()),
                None => Err(nick.clone()),
            })
            .partition(Result::is_ok)
    };
    let online: Vec<String> = online.into_iter().flatten().collect();
    let offline: Vec<String> = offline.into_iter().filter_map(Result::err).collect();
    reply_in_comma_lines(ctx, RPL_MONONLINE, &online);
    reply_in_comma_lines(ctx, RPL_MONOFFLINE, &offline);
}

/// `:server CODE nick :a,b,c` in as many lines as it takes to stay within LINELEN.
fn reply_in_comma_lines(ctx: &mut Ctx<'_>, code: &str, items: &[String]) {
    let room = LINELEN.saturating_sub(ctx.numeric(code).len() + 4);
    let mut batch = String::new();
    for item in items {
        if !batch.is_empty() && batch.len() + 1 + item.len() > room {
            let line = ctx.numeric(code).trailing(&batch);
            ctx.reply(line);
            batch.clear();
        }
        if !batch.is_empty() {
            batch.push(',');
        }
        batch.push_str(item);
    }
    if !batch.is_empty() {
        let line = ctx.numeric(code).trailing(&batch);
        ctx.reply(line);
    }
}
