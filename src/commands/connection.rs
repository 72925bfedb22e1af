//! Keeping a connection alive and ending it: PING, PONG, QUIT.

use super::Ctx;
use crate::proto::numeric::*;
use crate::proto::texts;
use crate::proto::Message;
use crate::state::client::CloseReason;

/// `PING token` is answered with `PONG server :token`.
pub fn ping(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let Some(token) = message.param(0) else {
        let reply = ctx
            .numeric(ERR_NOORIGIN)
            .trailing(texts::NO_ORIGIN_SPECIFIED);
        ctx.reply(reply);
        return;
    };
    let server = ctx.config().server_name.clone();
    let reply = ctx.from_server("PONG").arg(server).trailing(token);
    ctx.reply(reply);
}

/// `PONG`: any input already counts as liveness, so there is nothing more to do.
pub fn pong(_ctx: &mut Ctx<'_>, _message: &Message<'_>) {}

/// `QUIT [:message]`: everyone sharing a channel sees the QUIT, once.
pub fn quit(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let reason = message.param(0).unwrap_or(b"Client Quit");
    let text = String::from_utf8_lossy(super::clip(reason, super::KICKLEN)).into_owned();
    ctx.close(ctx.id, CloseReason::Quit(text));
}
