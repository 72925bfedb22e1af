//! MARKREAD (IRCv3 `draft/read-marker`): where the user stopped reading each target,
//! kept per account in the network state so that every connection of the account,
//! on any shard or node, sees the same marker.
//!
//! A client not logged in keeps markers for its own connection only, as Ergo does:
//! at most [`SESSION_MARKERS`] targets, gone when it disconnects. A set later than
//! the server's clock is taken as now, so a wrong clock cannot pin a marker in the
//! future.

use super::Ctx;
use crate::proto::caps::Cap;
use crate::proto::names::{is_valid_channel, is_valid_nick};
use crate::proto::texts;
use crate::proto::time::parse_server_time;
use crate::proto::Message;
use crate::shard::notify::markread_line;
use crate::state::network::{Event, Outcome, Refusal};

/// Targets a connection not logged in keeps markers for; the oldest set goes first.
pub const SESSION_MARKERS: usize = 100;

/// `MARKREAD <target> [timestamp=YYYY-MM-DDThh:mm:ss.sssZ]`: a get without the
/// timestamp, a set with it.
pub fn markread(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let Some(target) = message.param(0).filter(|target| !target.is_empty()) else {
        return ctx.fail(
            "MARKREAD",
            "NEED_MORE_PARAMS",
            &[],
            texts::MISSING_PARAMETERS,
        );
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
        let marker = match account {
            Some(account) => ctx.network().read_marker(account.as_str(), target),
            None => session_marker(ctx, target),
        };
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
    let millis = millis.min(crate::shard::unix_millis());
    if account.is_none() {
        let stored = set_session_marker(ctx, target, millis);
        let reply = markread_line(&ctx.config().server_name, target, Some(stored));
        ctx.reply(reply);
        return;
    }
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
            let text = texts::THE_READ_TIMESTAMP_COULD_NOT_BE_SET;
            return ctx.fail("MARKREAD", "INTERNAL_ERROR", &[target], text);
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
    let account = ctx
        .network()
        .user(ctx.id)
        .and_then(|user| user.account.clone());
    let marker = match account {
        Some(account) => ctx.network().read_marker(account.as_str(), channel),
        None => session_marker(ctx, channel),
    };
    let reply = markread_line(&ctx.config().server_name, channel, marker);
    ctx.reply(reply);
}

/// The connection's own marker for `target` (a client not logged in).
fn session_marker(ctx: &Ctx<'_>, target: &str) -> Option<u64> {
    let markers = ctx.client().session_markers.as_ref()?;
    markers
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(target))
        .map(|&(_, millis)| millis)
}

/// Moves the connection's own marker for `target` forward to `millis` (never back);
/// returns the marker as it now stands.
fn set_session_marker(ctx: &mut Ctx<'_>, target: &str, millis: u64) -> u64 {
    let markers = ctx
        .client_mut()
        .session_markers
        .get_or_insert_with(Box::default);
    if let Some(at) = markers
        .iter()
        .position(|(known, _)| known.eq_ignore_ascii_case(target))
    {
        let (known, stored) = markers.remove(at);
        let stored = stored.max(millis);
        markers.push((known, stored));
        return stored;
    }
    if markers.len() >= SESSION_MARKERS {
        markers.remove(0);
    }
    markers.push((target.into(), millis));
    millis
}

fn invalid(ctx: &mut Ctx<'_>, what: &str, text: &str) {
    ctx.fail("MARKREAD", "INVALID_PARAMS", &[what], text);
}

fn account_required(ctx: &mut Ctx<'_>, target: &str) {
    let text = texts::READ_MARKERS_NEED_AN_ACCOUNT;
    ctx.fail("MARKREAD", "ACCOUNT_REQUIRED", &[target], text);
}
