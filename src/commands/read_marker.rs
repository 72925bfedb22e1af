//! MARKREAD (IRCv3 `draft/read-marker`): where the user stopped reading each target,
//! kept per account in the network state so that every connection of the account,
//! on any shard or node, sees the same marker.
//!
//! A client not logged in has no marker: a get answers `*` (none known), a set is
//! refused with `FAIL MARKREAD ACCOUNT_REQUIRED`. A set later than the server's
//! clock is taken as now, so a wrong clock cannot pin a marker in the future.

use super::Ctx;
use crate::proto::caps::Cap;
use crate::proto::names::{is_valid_channel, is_valid_nick};
use crate::proto::texts;
use crate::proto::time::parse_server_time;
use crate::proto::Message;
use crate::shard::notify::markread_line;
use crate::state::network::{Event, Outcome, Refusal};

/// `MARKREAD <target> [timestamp=YYYY-MM-DDThh:mm:ss.sssZ]`: a get without the
/// timestamp, a set with it.
pub fn markread(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let Some(target) = message.param(0).filter(|target| !target.is_empty()) else {
        let reply = ctx
            .from_server("FAIL")
            .arg("MARKREAD")
            .arg("NEED_MORE_PARAMS")
            .trailing(texts::MISSING_PARAMETERS);
        ctx.reply(reply);
        return;
    };
    let Some(target) = std::str::from_utf8(target)
        .ok()
        .filter(|target| is_valid_channel(target.as_bytes()) || is_valid_nick(target.as_bytes()))
    else {
        let shown = String::from_utf8_lossy(target).into_owned();
        invalid(ctx, &shown, texts::INVALID_READ_MARKER_TARGET);
        return;
    };
    let account = ctx
        .network()
        .user(ctx.id)
        .and_then(|user| user.account.clone());
    let Some(timestamp) = message.param(1) else {
        let marker =
            account.and_then(|account| ctx.network().read_marker(account.as_str(), target));
        let reply = markread_line(&ctx.config().server_name, target, marker);
        ctx.reply(reply);
        return;
    };
    let Some(millis) = std::str::from_utf8(timestamp)
        .ok()
        .and_then(|timestamp| timestamp.strip_prefix("timestamp="))
        .and_then(parse_server_time)
    else {
        let shown = String::from_utf8_lossy(timestamp).into_owned();
        invalid(ctx, &shown, texts::INVALID_READ_MARKER_TIMESTAMP);
        return;
    };
    if account.is_none() {
        account_required(ctx, target);
        return;
    }
    let millis = millis.min(crate::shard::unix_millis());
    let outcome = ctx.propose(Event::SetReadMarker {
        client: ctx.id,
        target: target.into(),
        millis,
    });
    // The other connections of the account hear of a move from the shards'
    // notifications; this one gets the answer to its command, with its label.
    let stored = match outcome {
        Outcome::ReadMarkerMoved { millis, .. } | Outcome::ReadMarkerKept { millis } => millis,
        Outcome::Refused(Refusal::NotLoggedIn) => {
            account_required(ctx, target);
            return;
        }
        // Not ordered (a cluster node that cannot reach the cluster).
        Outcome::Refused(_) => {
            let reply = ctx
                .from_server("FAIL")
                .arg("MARKREAD")
                .arg("INTERNAL_ERROR")
                .arg(target)
                .trailing(texts::THE_READ_TIMESTAMP_COULD_NOT_BE_SET);
            ctx.reply(reply);
            return;
        }
        _ => return,
    };
    let reply = markread_line(&ctx.config().server_name, target, Some(stored));
    ctx.reply(reply);
}

/// After a JOIN, a client with `draft/read-marker` gets the channel's marker (the
/// specification: before the end of NAMES; here right after the JOIN, as Ergo does).
pub fn after_join(ctx: &mut Ctx<'_>, channel: &str) {
    if !ctx.client().caps.has(Cap::ReadMarker) {
        return;
    }
    let marker = ctx
        .network()
        .user(ctx.id)
        .and_then(|user| user.account.as_ref())
        .and_then(|account| ctx.network().read_marker(account.as_str(), channel));
    let reply = markread_line(&ctx.config().server_name, channel, marker);
    ctx.reply(reply);
}

fn invalid(ctx: &mut Ctx<'_>, what: &str, text: &str) {
    let reply = ctx
        .from_server("FAIL")
        .arg("MARKREAD")
        .arg("INVALID_PARAMS")
        .arg(safe_param(what))
        .trailing(text);
    ctx.reply(reply);
}

fn account_required(ctx: &mut Ctx<'_>, target: &str) {
    let reply = ctx
        .from_server("FAIL")
        .arg("MARKREAD")
        .arg("ACCOUNT_REQUIRED")
        .arg(target)
        .trailing(texts::READ_MARKERS_NEED_AN_ACCOUNT);
    ctx.reply(reply);
}

/// A client-given word shown as a middle parameter: `*` when it could not be one.
fn safe_param(text: &str) -> &str {
    if text.is_empty() || text.starts_with(':') || text.contains(' ') {
        "*"
    } else {
        text
    }
}
