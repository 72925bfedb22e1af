//! Registration and identity: CAP, PASS, NICK, USER, and the welcome burst.

use super::{info, Ctx};
use crate::proto::names::{is_valid_nick, sanitize_user, CHANNELLEN, NICKLEN};
use crate::proto::numeric::*;
use crate::proto::CaselessKey;
use crate::proto::{LineBuilder, Message};
use crate::state::client::CloseReason;
use crate::state::directory::User;

/// The server's version string, as shown in 002, 004 and VERSION.
pub const VERSION: &str = concat!("ringchat-", env!("CARGO_PKG_VERSION"));

/// Capabilities offered in `CAP LS`; grows as capabilities are implemented.
const CAPABILITIES: &[&str] = &[];

/// `CAP LS|REQ|LIST|END`: capability negotiation (IRCv3 version 302).
pub fn cap(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let subcommand = message.param_str(0).unwrap_or("").to_ascii_uppercase();
    let negotiating = |ctx: &mut Ctx<'_>, on: bool| {
        if let Some(registration) = ctx
            .shard
            .client_mut(ctx.id)
            .and_then(|c| c.registration.as_mut())
        {
            registration.negotiating_caps = on;
        }
    };
    match subcommand.as_str() {
        "LS" => {
            negotiating(ctx, true);
            let reply = ctx
                .from_server("CAP")
                .arg(ctx.client().nick())
                .arg("LS")
                .trailing(CAPABILITIES.join(" "));
            ctx.reply(reply);
        }
        "LIST" => {
            let reply = ctx
                .from_server("CAP")
                .arg(ctx.client().nick())
                .arg("LIST")
                .trailing("");
            ctx.reply(reply);
        }
        "REQ" => {
            negotiating(ctx, true);
            let requested = message.param(1).unwrap_or_default();
            let reply = ctx
                .from_server("CAP")
                .arg(ctx.client().nick())
                .arg("NAK")
                .trailing(requested);
            ctx.reply(reply);
        }
        "END" => {
            negotiating(ctx, false);
            try_complete_registration(ctx);
        }
        _ => {
            let reply = ctx
                .numeric(ERR_INVALIDCAPCMD)
                .arg(message.param(0).unwrap_or_default())
                .trailing("Invalid CAP command");
            ctx.reply(reply);
        }
    }
}

/// `PASS password`: must match `--password` before registration completes.
pub fn pass(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    if ctx.client().is_registered() {
        already_registered(ctx);
        return;
    }
    let Some(expected) = ctx.config().password.clone() else {
        return;
    };
    if message.param(0) == Some(expected.as_bytes()) {
        if let Some(registration) = ctx
            .shard
            .client_mut(ctx.id)
            .and_then(|c| c.registration.as_mut())
        {
            registration.password_ok = true;
        }
    } else {
        password_mismatch(ctx);
    }
}

fn password_mismatch(ctx: &mut Ctx<'_>) {
    let reply = ctx
        .numeric(ERR_PASSWDMISMATCH)
        .trailing("Password incorrect");
    ctx.reply(reply);
    ctx.shard
        .close(ctx.id, CloseReason::Server("Password incorrect"));
}

/// `NICK new`: choose a nickname (registering) or change it (registered).
pub fn nick(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let Some(wanted) = message.param(0).filter(|n| !n.is_empty()) else {
        let reply = ctx
            .numeric(ERR_NONICKNAMEGIVEN)
            .trailing("No nickname given");
        ctx.reply(reply);
        return;
    };
    let wanted_text = String::from_utf8_lossy(wanted);
    let Some(wanted) = std::str::from_utf8(wanted)
        .ok()
        .filter(|n| is_valid_nick(n.as_bytes()))
    else {
        let reply = ctx
            .numeric(ERR_ERRONEUSNICKNAME)
            .arg(wanted_text.as_ref())
            .trailing("Erroneous nickname");
        ctx.reply(reply);
        return;
    };
    if ctx.client().is_registered() {
        change_nick(ctx, wanted);
        return;
    }
    let previous = ctx
        .client()
        .registration
        .as_ref()
        .and_then(|r| r.nick.clone());
    let reserved = ctx
        .shard
        .shared
        .directory()
        .reserve_nick(ctx.id, wanted, previous.as_deref());
    if reserved.is_err() {
        nick_in_use(ctx, wanted);
        return;
    }
    if let Some(registration) = ctx
        .shard
        .client_mut(ctx.id)
        .and_then(|c| c.registration.as_mut())
    {
        registration.nick = Some(wanted.to_owned());
    }
    try_complete_registration(ctx);
}

fn nick_in_use(ctx: &mut Ctx<'_>, wanted: &str) {
    let reply = ctx
        .numeric(ERR_NICKNAMEINUSE)
        .arg(wanted)
        .trailing("Nickname is already in use");
    ctx.reply(reply);
}

/// A registered client renames itself: everyone sharing a channel sees it once.
fn change_nick(ctx: &mut Ctx<'_>, wanted: &str) {
    if ctx.client().nick() == wanted {
        return;
    }
    let changed = ctx.shard.shared.directory().change_nick(ctx.id, wanted);
    let Ok(audience) = changed else {
        nick_in_use(ctx, wanted);
        return;
    };
    let line = LineBuilder::from_source(ctx.client().source(), "NICK")
        .trailing(wanted)
        .finish();
    if let Some(client) = ctx.shard.client_mut(ctx.id) {
        client.rename(wanted);
    }
    ctx.shard.deliver_to_channels(
        &audience.channels,
        audience.shards,
        line.clone(),
        Some(ctx.id),
    );
    ctx.send(line);
}

/// `USER user mode unused :real name`.
pub fn user(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    if ctx.client().is_registered() {
        already_registered(ctx);
        return;
    }
    let user = sanitize_user(message.param(0).unwrap_or_default());
    let realname = String::from_utf8_lossy(message.param(3).unwrap_or_default()).into_owned();
    if let Some(registration) = ctx
        .shard
        .client_mut(ctx.id)
        .and_then(|c| c.registration.as_mut())
    {
        registration.user = Some((user, realname));
    }
    try_complete_registration(ctx);
}

fn already_registered(ctx: &mut Ctx<'_>) {
    let reply = ctx
        .numeric(ERR_ALREADYREGISTERED)
        .trailing("You may not reregister");
    ctx.reply(reply);
}

/// Completes registration once NICK and USER are in and CAP negotiation is over.
fn try_complete_registration(ctx: &mut Ctx<'_>) {
    let password_required = ctx.config().password.is_some();
    let Some(registration) = ctx.client().registration.as_deref() else {
        return;
    };
    let (Some(nick), Some((user, realname))) = (&registration.nick, &registration.user) else {
        return;
    };
    if registration.negotiating_caps {
        return;
    }
    if password_required && !registration.password_ok {
        password_mismatch(ctx);
        return;
    }
    let (nick, user, realname) = (nick.clone(), user.clone(), realname.clone());
    let host = ctx.client().host.clone();
    ctx.shard.shared.directory().register(
        ctx.id,
        User {
            nick: CaselessKey::new(&nick),
            user: format!("~{user}").into(),
            host,
            realname: realname.into(),
            channels: Vec::new(),
        },
    );
    if let Some(client) = ctx.shard.client_mut(ctx.id) {
        client.registration = None;
        client.set_identity(&nick, &user);
    }
    welcome(ctx);
}

/// 001-005, the LUSERS replies and the MOTD.
fn welcome(ctx: &mut Ctx<'_>) {
    let config = ctx.config();
    let network = config.network.clone();
    let server = config.server_name.clone();
    let created = format_time(ctx.shard.shared.started);
    let source = ctx.client().source().to_owned();
    let replies = [
        ctx.numeric(RPL_WELCOME)
            .trailing(format!("Welcome to the {network} IRC Network {source}")),
        ctx.numeric(RPL_YOURHOST)
            .trailing(format!("Your host is {server}, running version {VERSION}")),
        ctx.numeric(RPL_CREATED)
            .trailing(format!("This server was created {created}")),
        ctx.numeric(RPL_MYINFO)
            .arg(&server)
            .arg(VERSION)
            .arg("i")
            .arg("n"),
    ];
    for reply in replies {
        ctx.reply(reply);
    }
    send_isupport(ctx);
    info::send_lusers(ctx);
    info::send_motd(ctx);
}

/// The ISUPPORT tokens, at most 13 to a 005 line.
pub fn send_isupport(ctx: &mut Ctx<'_>) {
    let config = ctx.config();
    let tokens = [
        "CASEMAPPING=ascii".to_owned(),
        "CHANTYPES=#".to_owned(),
        format!("CHANLIMIT=#:{}", config.max_channels_per_client),
        "CHANMODES=,,,n".to_owned(),
        format!("CHANNELLEN={CHANNELLEN}"),
        format!("NICKLEN={NICKLEN}"),
        "PREFIX=(o)@".to_owned(),
        format!("NETWORK={}", config.network),
        "TARGMAX=JOIN:,NAMES:1,PART:,PRIVMSG:4,NOTICE:4".to_owned(),
        "TOPICLEN=390".to_owned(),
        "AWAYLEN=200".to_owned(),
        "KICKLEN=255".to_owned(),
        "LINELEN=512".to_owned(),
        "MAXTARGETS=4".to_owned(),
        "MODES=4".to_owned(),
    ];
    for chunk in tokens.chunks(13) {
        let reply = chunk
            .iter()
            .fold(ctx.numeric(RPL_ISUPPORT), |line, token| line.arg(token))
            .trailing("are supported by this server");
        ctx.reply(reply);
    }
}

/// A time as RFC 2822-ish UTC text, without a date crate: `2026-11-25 09:00:00 UTC`.
pub fn format_time(time: std::time::SystemTime) -> String {
    let secs = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 to a (year, month, day) date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_417), (2025, 11, 25));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
