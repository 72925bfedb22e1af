//! Server bans, operators only: `KLINE [FORCE] [duration] user@host :reason`, `DLINE
//! [FORCE] [duration] ip-or-cidr :reason`, `UNKLINE user@host`, `UNDLINE ip-or-cidr`,
//! and the lists, `STATS K` and `STATS D`.
//!
//! A ban that would hit the operator who sets it, or more than `max-ban-share` percent
//! of the connected users (a slip such as `KLINE *@*` closes everyone at once), is
//! refused with how many it would hit unless the first word is `FORCE`.
//!
//! A ban is network state (events `AddBan`, `RemoveBan`), so every shard agrees and
//! closes its own matching clients at once; the proposing shard then writes the list
//! to the ban file (`crate::ban_file`). A duration is a number of minutes (as
//! ircd-ratbox and Solanum read `KLINE 60 ...`) or a number with a unit: `30s`,
//! `10m`, `2h`, `7d`.

use super::errors::reply_refusal;
use super::Ctx;
use crate::proto::mask::MAX_BAN_MASK;
use crate::proto::numeric::{RPL_STATSDLINE, RPL_STATSKLINE};
use crate::proto::Message;
use crate::state::network::{BanTarget, Event, Outcome, Refusal, ServerBan};
use ipnet::IpNet;
use std::net::IpAddr;
use tracing::{info, warn};

/// Longest ban a duration may ask for: a year (longer is written without one).
const MAX_BAN_SECONDS: u64 = 366 * 24 * 3600;

/// `KLINE [duration] user@host :reason`: a mask without `@` means `*@mask`.
pub fn kline(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    add(ctx, message, "KLINE", parse_user_mask);
}

/// `DLINE [duration] address-or-cidr :reason`.
pub fn dline(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    add(ctx, message, "DLINE", parse_network);
}

/// `UNKLINE user@host`.
pub fn unkline(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    remove(ctx, message, "UNKLINE", parse_user_mask);
}

/// `UNDLINE address-or-cidr`.
pub fn undline(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    remove(ctx, message, "UNDLINE", parse_network);
}

type TargetParser = fn(&str) -> Result<BanTarget, &'static str>;

fn add(ctx: &mut Ctx<'_>, message: &Message<'_>, command: &str, parse: TargetParser) {
    let mut params = message.params();
    let forced = params
        .first()
        .is_some_and(|first| first.eq_ignore_ascii_case(b"FORCE"));
    if forced {
        params = &params[1..];
    }
    let text = |i: usize| {
        params
            .get(i)
            .map(|p| String::from_utf8_lossy(p).into_owned())
    };
    let (duration, mask, reason) = match params.first().and_then(|p| parse_duration(p)) {
        Some(duration) if params.len() >= 2 => (Some(duration), text(1), text(2)),
        _ => (None, text(0), text(1)),
    };
    let Some(mask) = mask else {
        return notice(ctx, format!("{command}: a mask is needed"));
    };
    let target = match parse(&mask) {
        Ok(target) => target,
        Err(problem) => return notice(ctx, format!("{command} {mask}: {problem}")),
    };
    let reason = reason
        .filter(|r| !r.is_empty())
        .map(|r| String::from_utf8_lossy(super::clip(r.as_bytes(), super::KICKLEN)).into_owned())
        .unwrap_or_else(|| "No reason".to_owned());
    let set_by = ctx.client().nick().to_owned();
    let now = super::unix_now();
    let ban = ServerBan {
        target: target.clone(),
        reason: reason.as_str().into(),
        set_by: set_by.as_str().into(),
        set_at: now,
        expires_at: duration.map(|seconds| now + seconds),
    };
    if !forced && is_oper(ctx) {
        if let Some(why) = too_wide(ctx, &ban, now) {
            let mask = target.mask();
            return notice(
                ctx,
                format!("{command} [{mask}] not set: {why}; to set it anyway: {command} FORCE ..."),
            );
        }
    }
    let outcome = ctx.propose(Event::AddBan {
        client: ctx.id,
        ban,
    });
    match outcome {
        Outcome::BanAdded => {
            let kind = target.kind();
            let lasting = duration.map_or("permanent".to_owned(), |s| format!("for {s} s"));
            info!(oper = %set_by, %kind, mask = %target.mask(), %reason, %lasting, "ban added");
            notice(
                ctx,
                format!("Added {lasting} {kind} for [{}]: {reason}", target.mask()),
            );
            save(ctx);
        }
        Outcome::Refused(refusal) => reply_refusal(ctx, refusal, "", &mask),
        _ => {}
    }
}

fn remove(ctx: &mut Ctx<'_>, message: &Message<'_>, command: &str, parse: TargetParser) {
    let mask = message.param_str(0).unwrap_or_default().to_owned();
    let target = match parse(&mask) {
        Ok(target) => target,
        Err(problem) => return notice(ctx, format!("{command} {mask}: {problem}")),
    };
    let outcome = ctx.propose(Event::RemoveBan {
        client: ctx.id,
        target: target.clone(),
    });
    match outcome {
        Outcome::BanRemoved => {
            let kind = target.kind();
            info!(oper = %ctx.client().nick(), %kind, mask = %target.mask(), "ban removed");
            notice(ctx, format!("Removed {kind} for [{}]", target.mask()));
            save(ctx);
        }
        Outcome::Refused(refusal) => reply_refusal(ctx, refusal, "", &target.mask()),
        _ => {}
    }
}

/// Whether the client is an operator (the event refuses the ban otherwise, with 481:
/// a non-operator learns nothing about whom a mask would hit).
fn is_oper(ctx: &mut Ctx<'_>) -> bool {
    ctx.network()
        .user(ctx.id)
        .is_some_and(|user| user.oper.is_some())
}

/// Why `ban` needs FORCE, if it does: it hits the operator setting it, or more than
/// `max-ban-share` percent of the connected users (every node's; more than one user).
/// O(users), once per ban an operator sets.
fn too_wide(ctx: &mut Ctx<'_>, ban: &ServerBan, now: u64) -> Option<String> {
    let network = ctx.network();
    let hits_user = |user: &crate::state::network::User| user.is_server_banned(ban, now);
    let (mut users, mut hits) = (0usize, 0usize);
    for (_, user) in network.users() {
        users += 1;
        hits += usize::from(hits_user(user));
    }
    if network.user(ctx.id).is_some_and(hits_user) {
        return Some(format!(
            "it matches you, and {hits} of the {users} connected users in all"
        ));
    }
    let share = u64::from(ctx.shared().config.max_ban_share);
    (hits > 1 && hits as u64 * 100 > share * users as u64).then(|| {
        format!(
            "it would hit {hits} of the {users} connected users, more than max-ban-share ({share}%)"
        )
    })
}

/// `STATS K` (and `k`) or `STATS D` (and `d`): every ban of that kind, expired ones
/// left out, one line each, for operators (481 for others; the caller ends the list
/// with 219). Temporary and permanent bans are not kept apart, so `k` and `K` list
/// the same. The line is InspIRCd's (`216 nick mask set-time duration setter
/// :reason`, duration 0 for a permanent ban, so expiry = set-time + duration), with
/// the numbers Solanum uses: 216 RPL_STATSKLINE for K-Lines, 225 RPL_STATSDLINE for
/// D-Lines.
pub fn stats(ctx: &mut Ctx<'_>, kind: char) {
    if !is_oper(ctx) {
        return reply_refusal(ctx, Refusal::NoPrivileges, "", "");
    }
    let now = super::unix_now();
    let (numeric, klines) = match kind.to_ascii_uppercase() {
        'K' => (RPL_STATSKLINE, true),
        _ => (RPL_STATSDLINE, false),
    };
    let lines: Vec<_> = ctx
        .network()
        .server_bans()
        .iter()
        .filter(|ban| ban.is_active(now) && matches!(ban.target, BanTarget::User(_)) == klines)
        .map(|ban| {
            let duration = ban
                .expires_at
                .map_or(0, |end| end.saturating_sub(ban.set_at));
            // `::1/128` would end the parameters early: written `0::1/128`, as
            // Solanum writes such addresses.
            let mask = ban.target.mask();
            let mask = if mask.starts_with(':') {
                format!("0{mask}")
            } else {
                mask
            };
            ctx.numeric(numeric)
                .arg(&mask)
                .arg(ban.set_at.to_string())
                .arg(duration.to_string())
                .arg(ban.set_by.as_bytes())
                .trailing(&*ban.reason)
        })
        .collect();
    for line in lines {
        ctx.reply(line);
    }
}

/// Writes this replica's list to the ban file; a failure is logged and told to the
/// operator (the ban holds until the server stops).
fn save(ctx: &mut Ctx<'_>) {
    let shared = ctx.shared();
    let network = ctx.network();
    if let Err(error) = shared.ban_store.save(
        network.applied(),
        network.server_bans().iter(),
        super::unix_now(),
    ) {
        warn!("server bans not saved: {error:#}");
        notice(ctx, format!("The ban holds, but was not saved: {error:#}"));
    }
}

/// A server NOTICE to the operator.
fn notice(ctx: &mut Ctx<'_>, text: String) {
    let reply = ctx
        .from_server("NOTICE")
        .arg(ctx.client().nick())
        .trailing(text);
    ctx.reply(reply);
}

/// `user@host`, or `host` as `*@host`.
fn parse_user_mask(mask: &str) -> Result<BanTarget, &'static str> {
    let mask = if mask.contains('@') {
        mask.to_owned()
    } else {
        format!("*@{mask}")
    };
    let (user, host) = mask.split_once('@').unwrap_or_default();
    if user.is_empty() || host.is_empty() || host.contains('@') {
        return Err("not a user@host mask");
    }
    if mask.len() > MAX_BAN_MASK {
        return Err("mask too long");
    }
    Ok(BanTarget::User(mask.into()))
}

/// An address (a host network: /32 or /128) or a CIDR network.
fn parse_network(text: &str) -> Result<BanTarget, &'static str> {
    let net = match text.parse::<IpNet>() {
        Ok(net) => net.trunc(),
        Err(_) => IpNet::from(
            text.parse::<IpAddr>()
                .map_err(|_| "not an address or CIDR network")?,
        ),
    };
    Ok(BanTarget::Address(net))
}

/// `60` (minutes), `30s`, `10m`, `2h`, `7d` in seconds; `None` if `text` is not a
/// duration (it is then the mask).
fn parse_duration(text: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?;
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, "m"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    };
    let amount: u64 = digits.parse().ok()?;
    (amount > 0).then(|| amount.saturating_mul(scale).min(MAX_BAN_SECONDS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_minutes_or_carry_a_unit() {
        assert_eq!(parse_duration(b"60"), Some(3600));
        assert_eq!(parse_duration(b"30s"), Some(30));
        assert_eq!(parse_duration(b"2h"), Some(7200));
        assert_eq!(parse_duration(b"7d"), Some(7 * 86400));
        assert_eq!(parse_duration(b"0"), None);
        assert_eq!(parse_duration(b"*@1.2.3.4"), None);
        assert_eq!(parse_duration(b"1.2.3.4"), None);
        assert_eq!(parse_duration(b"10x"), None);
    }

    #[test]
    fn masks_and_networks_are_checked() {
        assert_eq!(
            parse_user_mask("10.0.0.1"),
            Ok(BanTarget::User("*@10.0.0.1".into()))
        );
        assert!(parse_user_mask("a@b@c").is_err());
        assert!(parse_user_mask("@host").is_err());
        assert_eq!(
            parse_network("10.1.2.3/8"),
            Ok(BanTarget::Address("10.0.0.0/8".parse().unwrap()))
        );
        assert_eq!(
            parse_network("::1"),
            Ok(BanTarget::Address("::1/128".parse().unwrap()))
        );
        assert!(parse_network("example.org").is_err());
    }
}
