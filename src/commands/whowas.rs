//! WHOWAS: who held a nickname before, from the history every replica keeps
//! ([`crate::state::network::Whowas`]), so the answer is the same on every shard.

use super::Ctx;
use crate::proto::numeric::*;
use crate::proto::texts;
use crate::proto::time::human;
use crate::proto::Message;
use std::time::{Duration, UNIX_EPOCH};

/// `WHOWAS nick [count [server]]`: for each former holder of `nick`, most recent
/// first (at most `count` when it is positive), 314 and 312 with the time it left
/// the nick; 406 when there is none; then 369.
pub fn whowas(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let nick = String::from_utf8_lossy(message.param(0).unwrap_or_default()).into_owned();
    if nick.is_empty() {
        let reply = ctx
            .numeric(ERR_NONICKNAMEGIVEN)
            .trailing(texts::NO_NICKNAME_GIVEN);
        ctx.reply(reply);
        return;
    }
    let count = message
        .param_str(1)
        .and_then(|count| count.parse::<i64>().ok())
        .filter(|&count| count > 0)
        .map_or(usize::MAX, |count| count as usize);
    let entries: Vec<_> = ctx
        .network()
        .whowas()
        .lookup(&nick)
        .take(count)
        .cloned()
        .collect();
    if entries.is_empty() {
        let reply = ctx
            .numeric(ERR_WASNOSUCHNICK)
            .arg(&nick)
            .trailing(texts::THERE_WAS_NO_SUCH_NICKNAME);
        ctx.reply(reply);
    }
    let server = ctx.config().server_name.clone();
    for entry in entries {
        let user = ctx
            .numeric(RPL_WHOWASUSER)
            .arg(entry.nick.as_str())
            .arg(&*entry.user)
            .arg(&*entry.host)
            .arg("*")
            .trailing(&*entry.realname);
        ctx.reply(user);
        let left = human(UNIX_EPOCH + Duration::from_secs(entry.left_at));
        let server = ctx
            .numeric(RPL_WHOISSERVER)
            .arg(entry.nick.as_str())
            .arg(&server)
            .trailing(left);
        ctx.reply(server);
    }
    let end = ctx
        .numeric(RPL_ENDOFWHOWAS)
        .arg(&nick)
        .trailing(texts::END_OF_WHOWAS);
    ctx.reply(end);
}
