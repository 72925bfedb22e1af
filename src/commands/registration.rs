//! Registration and identity: CAP, PASS, NICK, USER, and the welcome burst.

use super::errors::reply_refusal;
use super::{clip, info, Ctx, NAMELEN};
use crate::proto::caps::{apply_request, Cap};
use crate::proto::names::{is_valid_nick, sanitize_user, CHANNELLEN, NICKLEN, USERLEN};
use crate::proto::numeric::*;
use crate::proto::Message;
use crate::state::client::CloseReason;
use crate::state::network::{Event, Outcome, Refusal};

/// The server's version string, as shown in 002, 004 and VERSION.
pub const VERSION: &str = concat!("ringchat-", env!("CARGO_PKG_VERSION"));

/// Longest capability list in one `CAP LS` line before it continues on the next.
const CAP_LS_CHUNK: usize = 400;

/// `CAP LS|REQ|LIST|END`: capability negotiation (IRCv3 version 302). LS and REQ
/// before registration hold it until END.
pub fn cap(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let subcommand = message.param_str(0).unwrap_or("").to_ascii_uppercase();
    let negotiating = |ctx: &mut Ctx<'_>| {
        if let Some(registration) = ctx
            .shard
            .client_mut(ctx.id)
            .and_then(|c| c.registration.as_mut())
        {
            registration.negotiating_caps = true;
        }
    };
    let cap_line =
        |ctx: &Ctx<'_>, sub: &str| ctx.from_server("CAP").arg(ctx.client().nick()).arg(sub);
    match subcommand.as_str() {
        "LS" => {
            negotiating(ctx);
            let version_302 = message.param_str(1).and_then(|v| v.parse::<u32>().ok()) >= Some(302);
            if version_302 {
                set_cap(ctx, Cap::CapNotify);
            }
            // Capability values (and so STS, which is nothing without them) are for
            // CAP LS 302 clients only.
            let sts = sts_token(ctx).filter(|_| version_302);
            let names: Vec<String> = Cap::ALL
                .iter()
                .map(|cap| match cap.value().filter(|_| version_302) {
                    Some(value) => format!("{}={value}", cap.name()),
                    None => cap.name().to_owned(),
                })
                .chain(sts)
                .collect();
            let mut lines = Vec::new();
            let mut current = String::new();
            for name in names {
                if !current.is_empty() && current.len() + 1 + name.len() > CAP_LS_CHUNK {
                    lines.push(std::mem::take(&mut current));
                }
                if !current.is_empty() {
                    current.push(' ');
                }
                current.push_str(&name);
            }
            let last = lines.len();
            lines.push(current);
            for (index, list) in lines.into_iter().enumerate() {
                let line = cap_line(ctx, "LS");
                let line = if index < last { line.arg("*") } else { line };
                ctx.reply(line.trailing(list));
            }
        }
        "LIST" => {
            let enabled = ctx.client().caps.names();
            let reply = cap_line(ctx, "LIST").trailing(enabled);
            ctx.reply(reply);
        }
        "REQ" => {
            negotiating(ctx);
            let requested =
                String::from_utf8_lossy(message.param(1).unwrap_or_default()).into_owned();
            match apply_request(ctx.client().caps, &requested) {
                Some(caps) => {
                    if let Some(client) = ctx.shard.client_mut(ctx.id) {
                        client.caps = caps;
                    }
                    let reply = cap_line(ctx, "ACK").trailing(requested.trim());
                    ctx.reply(reply);
                }
                None => {
                    let reply = cap_line(ctx, "NAK").trailing(requested.trim());
                    ctx.reply(reply);
                }
            }
        }
        "END" => {
            if let Some(registration) = ctx
                .shard
                .client_mut(ctx.id)
                .and_then(|c| c.registration.as_mut())
            {
                registration.negotiating_caps = false;
            }
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

/// The IRCv3 `sts` capability with its value, when a policy is configured: a
/// plaintext connection is told which TLS port to reconnect to, a TLS connection how
/// long to keep using TLS (the spec forbids the other key on each).
fn sts_token(ctx: &Ctx<'_>) -> Option<String> {
    let policy = ctx.config().sts?;
    Some(if ctx.client().tls.is_some() {
        format!("sts=duration={}", policy.duration.as_secs())
    } else {
        format!("sts=port={}", policy.port)
    })
}

fn set_cap(ctx: &mut Ctx<'_>, cap: Cap) {
    if let Some(client) = ctx.shard.client_mut(ctx.id) {
        client.caps.set(cap, true);
    }
}

/// `SETNAME :new real name` (IRCv3 `setname`): members with the capability see it.
pub fn setname(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let realname = message.param(0).unwrap_or_default();
    if realname.is_empty() || realname.len() > NAMELEN {
        let reply = ctx
            .from_server("FAIL")
            .arg("SETNAME")
            .arg("INVALID_REALNAME")
            .trailing("Real name is empty or too long");
        ctx.reply(reply);
        return;
    }
    let realname = String::from_utf8_lossy(realname);
    ctx.shard.propose(Event::SetRealname {
        client: ctx.id,
        realname: realname.as_ref().into(),
    });
}

/// `PASS password`: must match `--password` before registration completes; on a
/// server without one, `PASS account:password` logs in to the account.
pub fn pass(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    if ctx.client().is_registered() {
        already_registered(ctx);
        return;
    }
    let Some(expected) = ctx.config().password.clone() else {
        return pass_login(ctx, message.param(0).unwrap_or_default());
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

/// `PASS account:password` on a server without a connection password: logs in to
/// the account, for clients without SASL (as Ergo and Solanum accept it). Anything
/// else in PASS is ignored, as before.
fn pass_login(ctx: &mut Ctx<'_>, given: &[u8]) {
    let Some((account, password)) = std::str::from_utf8(given)
        .ok()
        .and_then(|given| given.split_once(':'))
    else {
        return;
    };
    if super::accounts::logged_in(ctx).is_some() {
        return;
    }
    let (account, password) = (account.to_owned(), password.as_bytes().to_vec());
    if let Err(why) = super::accounts::start_login(
        ctx,
        crate::state::offload::LoginVia::Pass,
        &account,
        password,
    ) {
        let reply = ctx
            .from_server("NOTICE")
            .arg(ctx.client().nick())
            .trailing(format!("PASS: {why}"));
        ctx.reply(reply);
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
    if wanted.eq_ignore_ascii_case(crate::accounts::NICKSERV) {
        // The services pseudo-client answers to it on every shard and node.
        nick_in_use(ctx, wanted);
        return;
    }
    if ctx.client().is_registered() {
        change_nick(ctx, wanted);
        return;
    }
    let claimed = ctx.shard.propose(Event::ClaimNick {
        client: ctx.id,
        nick: wanted.into(),
    });
    match claimed {
        Outcome::NickClaimed => {}
        Outcome::Refused(refusal @ Refusal::ClusterUnavailable) => {
            reply_refusal(ctx, refusal, "", wanted);
            return;
        }
        _ => {
            nick_in_use(ctx, wanted);
            return;
        }
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

/// A registered client renames itself: it and everyone sharing a channel with it
/// see the NICK line once (rendered as the event is applied).
fn change_nick(ctx: &mut Ctx<'_>, wanted: &str) {
    if ctx.client().nick() == wanted {
        return;
    }
    if super::accounts::nick_is_protected(ctx, wanted) {
        nick_in_use(ctx, wanted);
        return;
    }
    let outcome = ctx.shard.propose(Event::ChangeNick {
        client: ctx.id,
        nick: wanted.into(),
    });
    match outcome {
        Outcome::NickChanged { .. } => {
            if let Some(client) = ctx.shard.client_mut(ctx.id) {
                client.rename(wanted);
            }
            super::accounts::check_nick(ctx);
        }
        Outcome::Refused(refusal @ Refusal::ClusterUnavailable) => {
            reply_refusal(ctx, refusal, "", wanted)
        }
        Outcome::Refused(_) => nick_in_use(ctx, wanted),
        _ => {}
    }
}

/// `USER user mode unused :real name`.
pub fn user(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    if ctx.client().is_registered() {
        already_registered(ctx);
        return;
    }
    // Modern IRC: the real name "SHOULD NOT be empty"; an empty one is answered like a
    // missing parameter (as Ergo does), and a long one is cut to NAMELEN.
    let Some(realname) = message.param(3).filter(|r| !r.is_empty()) else {
        let reply = ctx
            .numeric(ERR_NEEDMOREPARAMS)
            .arg("USER")
            .trailing("Not enough parameters");
        ctx.reply(reply);
        return;
    };
    let user = sanitize_user(message.param(0).unwrap_or_default());
    let realname = String::from_utf8_lossy(clip(realname, NAMELEN)).into_owned();
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
    if let Some(why) = server_ban(ctx, &user) {
        ctx.shard.close(ctx.id, CloseReason::Killed(why));
        return;
    }
    let outcome = ctx.shard.propose(Event::Register {
        client: ctx.id,
        user: format!("~{user}").into(),
        host: ctx.client().host.clone(),
        realname: realname.into(),
        activity: ctx.client().activity.clone(),
    });
    match outcome {
        Outcome::Registered => {}
        Outcome::Refused(refusal) => {
            reply_refusal(ctx, refusal, "", &nick);
            return;
        }
        _ => return,
    }
    ctx.shard.mark_registered(ctx.id);
    if let Some(client) = ctx.shard.client_mut(ctx.id) {
        client.registration = None;
        client.set_identity(&nick, &user);
    }
    super::accounts::apply_pending_login(ctx);
    welcome(ctx);
    super::accounts::check_nick(ctx);
}

/// The closing reason if a KLINE (or DLINE) keeps out `~user@ip` of this client.
fn server_ban(ctx: &Ctx<'_>, user: &str) -> Option<String> {
    let host = &ctx.client().host;
    let ip = host.parse::<std::net::IpAddr>().ok()?;
    let now_unix = crate::proto::time::unix_seconds(std::time::SystemTime::now());
    let ban =
        ctx.shard
            .network()
            .server_bans()
            .user_ban(&format!("~{user}@{host}"), ip, now_unix)?;
    Some(format!("{}d ({})", ban.target.kind(), ban.reason))
}

/// 001-005, the LUSERS replies and the MOTD.
fn welcome(ctx: &mut Ctx<'_>) {
    let config = ctx.config();
    let network = config.network.clone();
    let server = config.server_name.clone();
    let created = crate::proto::time::human(ctx.shard.shared.started);
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
            .arg("Biow")
            .arg("beiIklmnostv")
            .arg("beIklov"),
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
    let mut tokens = vec![
        "CASEMAPPING=ascii".to_owned(),
        "CHANTYPES=#".to_owned(),
        format!(
            "CHANLIMIT=#:{}",
            ctx.shard.shared.live.max_channels_per_client()
        ),
        "CHANMODES=beI,k,l,imnst".to_owned(),
        "EXCEPTS=e".to_owned(),
        "BOT=B".to_owned(),
        "STATUSMSG=@+".to_owned(),
        "INVEX=I".to_owned(),
        format!("CHANNELLEN={CHANNELLEN}"),
        format!("NICKLEN={NICKLEN}"),
        "PREFIX=(ov)@+".to_owned(),
        format!("NETWORK={}", config.network),
        "TARGMAX=JOIN:,KICK:4,NAMES:1,PART:,PRIVMSG:4,NOTICE:4,WHOIS:5".to_owned(),
        format!("TOPICLEN={}", super::TOPICLEN),
        format!("AWAYLEN={}", super::AWAYLEN),
        format!("KICKLEN={}", super::KICKLEN),
        format!("NAMELEN={NAMELEN}"),
        format!("USERLEN={USERLEN}"),
        "LINELEN=512".to_owned(),
        "MAXTARGETS=4".to_owned(),
        "MODES=4".to_owned(),
        "ELIST=CMNTU".to_owned(),
        format!("MONITOR={}", crate::shard::monitor::MONITOR_LIMIT),
        "WHOX".to_owned(),
    ];
    if config.utf8_only {
        // Before WHOX, which stays the last token.
        tokens.insert(tokens.len() - 1, "UTF8ONLY".to_owned());
    }
    for chunk in tokens.chunks(13) {
        let reply = chunk
            .iter()
            .fold(ctx.numeric(RPL_ISUPPORT), |line, token| line.arg(token))
            .trailing("are supported by this server");
        ctx.reply(reply);
    }
}
