//! Registration and identity: CAP, PASS, NICK, USER, and the welcome burst.

use super::errors::reply_refusal;
use super::{clip, info, Ctx, NAMELEN};
use crate::proto::caps::{apply_request, Cap};
use crate::proto::names::{is_valid_nick, sanitize_user, CHANNELLEN, NICKLEN, USERLEN};
use crate::proto::numeric::*;
use crate::proto::snomask::NoticeKind;
use crate::proto::texts;
use crate::proto::Message;
use crate::state::client::CloseReason;
use crate::state::network::{Event, Outcome, Refusal};
use tracing::info;

/// The server's version string, as shown in 002, 004 and VERSION.
pub const VERSION: &str = concat!("ringchat-", env!("CARGO_PKG_VERSION"));

/// Longest capability list in one `CAP LS` line before it continues on the next.
const CAP_LS_CHUNK: usize = 400;

/// `CAP LS|REQ|LIST|END`: capability negotiation (IRCv3 version 302). LS and REQ
/// before registration hold it until END.
pub fn cap(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let subcommand = message.param_str(0).unwrap_or("").to_ascii_uppercase();
    let negotiating = |ctx: &mut Ctx<'_>| {
        if let Some(registration) = ctx.client_mut().registration.as_mut() {
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
                .filter(|&&cap| offered(ctx, cap))
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
            let offered_only = |caps: crate::proto::caps::Caps| {
                Cap::ALL
                    .into_iter()
                    .all(|cap| !caps.has(cap) || offered(ctx, cap))
            };
            match apply_request(ctx.client().caps, &requested).filter(|&caps| offered_only(caps)) {
                Some(caps) => {
                    ctx.client_mut().caps = caps;
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
            if let Some(registration) = ctx.client_mut().registration.as_mut() {
                registration.negotiating_caps = false;
            }
            try_complete_registration(ctx);
        }
        _ => {
            let reply = ctx
                .numeric(ERR_INVALIDCAPCMD)
                .arg(message.param(0).unwrap_or_default())
                .trailing(texts::INVALID_CAP_COMMAND);
            ctx.reply(reply);
        }
    }
}

/// Whether this server offers `cap`: the history capabilities only when it keeps
/// history (a store, and `history-max-messages` above 0).
fn offered(ctx: &Ctx<'_>, cap: Cap) -> bool {
    !matches!(cap, Cap::Chathistory | Cap::EventPlayback) || ctx.shared().keeps_history()
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
    ctx.client_mut().caps.set(cap, true);
}

/// `SETNAME :new real name` (IRCv3 `setname`): members with the capability see it.
pub fn setname(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let realname = message.param(0).unwrap_or_default();
    if realname.is_empty() || realname.len() > NAMELEN {
        let text = texts::REAL_NAME_IS_EMPTY_OR_TOO_LONG;
        return ctx.fail("SETNAME", "INVALID_REALNAME", &[], text);
    }
    let realname = String::from_utf8_lossy(realname);
    ctx.propose(Event::SetRealname {
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
        if let Some(registration) = ctx.client_mut().registration.as_mut() {
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
        .trailing(texts::PASSWORD_INCORRECT);
    ctx.reply(reply);
    ctx.close(ctx.id, CloseReason::Server("Password incorrect"));
}

/// `NICK new`: choose a nickname (registering) or change it (registered).
pub fn nick(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let Some(wanted) = message.param(0).filter(|n| !n.is_empty()) else {
        let reply = ctx
            .numeric(ERR_NONICKNAMEGIVEN)
            .trailing(texts::NO_NICKNAME_GIVEN);
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
            .trailing(texts::ERRONEOUS_NICKNAME);
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
    let claimed = ctx.propose(Event::ClaimNick {
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
    if let Some(registration) = ctx.client_mut().registration.as_mut() {
        registration.nick = Some(wanted.to_owned());
    }
    try_complete_registration(ctx);
}

fn nick_in_use(ctx: &mut Ctx<'_>, wanted: &str) {
    let reply = ctx
        .numeric(ERR_NICKNAMEINUSE)
        .arg(wanted)
        .trailing(texts::NICKNAME_IS_ALREADY_IN_USE);
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
    let outcome = ctx.propose(Event::ChangeNick {
        client: ctx.id,
        nick: wanted.into(),
    });
    match outcome {
        Outcome::NickChanged { .. } => {
            info!(client = %ctx.id, old = %ctx.client().nick(), new = %wanted, "nick change");
            ctx.client_mut().rename(wanted);
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
            .trailing(texts::NOT_ENOUGH_PARAMETERS);
        ctx.reply(reply);
        return;
    };
    let user = sanitize_user(message.param(0).unwrap_or_default());
    let realname = String::from_utf8_lossy(clip(realname, NAMELEN)).into_owned();
    if let Some(registration) = ctx.client_mut().registration.as_mut() {
        registration.user = Some((user, realname));
    }
    try_complete_registration(ctx);
}

pub(super) fn already_registered(ctx: &mut Ctx<'_>) {
    let reply = ctx
        .numeric(ERR_ALREADYREGISTERED)
        .trailing(texts::YOU_MAY_NOT_REREGISTER);
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
    // Through a WEBIRC gateway, what it said of its user: the TLS of the user's own
    // link counts, and its host name shows where addresses are not cloaked.
    let (tls, hostname) = match registration.gateway.as_ref() {
        Some(gateway) => (gateway.secure, gateway.hostname.clone()),
        None => (ctx.client().tls.is_some(), None),
    };
    let address = ctx.client().host.clone();
    let ip = address.parse::<std::net::IpAddr>().ok();
    let shown_host: Box<str> = match (&ctx.shared().cloak, ip) {
        (Some(cloak), Some(ip)) => cloak.host_for(ip).into(),
        _ => hostname.unwrap_or_else(|| address.clone()),
    };
    if let Some(why) = server_ban(ctx, &user, &shown_host) {
        info!(client = %ctx.id, %nick, user = %format!("~{user}"), %address, reason = %why, "ban hit: registration refused");
        let text = format!("Ban hit: {nick} (~{user}@{address}) refused at registration: {why}");
        ctx.server_notice(NoticeKind::Bans, &text);
        ctx.close(ctx.id, CloseReason::Killed(why));
        return;
    }
    let outcome = ctx.propose(Event::Register {
        client: ctx.id,
        user: format!("~{user}").into(),
        host: shown_host.clone(),
        address: address.clone(),
        tls,
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
    info!(
        client = %ctx.id,
        %nick,
        user = %format!("~{user}"),
        %address,
        cloak = %if shown_host == address { "none" } else { &*shown_host },
        tls,
        "register"
    );
    ctx.mark_registered();
    let client = ctx.client_mut();
    client.registration = None;
    client.set_identity(&nick, &user, &shown_host);
    super::accounts::apply_pending_login(ctx);
    welcome(ctx, (shown_host != address).then_some(&*shown_host));
    super::accounts::check_nick(ctx);
}

/// The closing reason if a KLINE (or DLINE) keeps out this client, as `~user@ip` or
/// as `~user@cloak`.
fn server_ban(ctx: &Ctx<'_>, user: &str, shown_host: &str) -> Option<String> {
    let host = &ctx.client().host;
    let ip = host.parse::<std::net::IpAddr>().ok()?;
    let now_unix = crate::proto::time::unix_seconds(std::time::SystemTime::now());
    let by_address = format!("~{user}@{host}");
    let by_cloak = format!("~{user}@{shown_host}");
    let ban = ctx
        .network()
        .server_bans()
        .user_ban(&[&by_address, &by_cloak], ip, now_unix)?;
    Some(format!("{}d ({})", ban.target.kind(), ban.reason))
}

/// 001-005, 396 for a cloaked user, the LUSERS replies and the MOTD.
fn welcome(ctx: &mut Ctx<'_>, cloak: Option<&str>) {
    let config = ctx.config();
    let network = config.network.clone();
    let server = config.server_name.clone();
    let created = crate::proto::time::human(ctx.shared().started);
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
            .arg("Biosw")
            .arg("beiIklmnostv")
            .arg("beIklov"),
    ];
    for reply in replies {
        ctx.reply(reply);
    }
    send_isupport(ctx);
    // Modern IRC, RPL_HOSTHIDDEN (396): `<client> <hostname> :is now your displayed
    // host`, sent where InspIRCd sends it, after ISUPPORT.
    if let Some(cloak) = cloak {
        let reply = ctx
            .numeric(RPL_HOSTHIDDEN)
            .arg(cloak)
            .trailing(texts::IS_NOW_YOUR_DISPLAYED_HOST);
        ctx.reply(reply);
    }
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
            ctx.shared().live.max_channels_per_client()
        ),
        "CHANMODES=beI,k,l,imnst".to_owned(),
        "EXCEPTS=e".to_owned(),
        "EXTBAN=$,a".to_owned(),
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
    if ctx.shared().keeps_history() {
        // IRCv3 chathistory, "Server support": the most messages one request returns
        // and the reference types it understands.
        let at = tokens.len() - 1;
        tokens.insert(at, format!("CHATHISTORY={}", super::chathistory::MAX_LIMIT));
        tokens.insert(at + 1, "MSGREFTYPES=msgid,timestamp".to_owned());
    }
    for chunk in tokens.chunks(13) {
        let reply = chunk
            .iter()
            .fold(ctx.numeric(RPL_ISUPPORT), |line, token| line.arg(token))
            .trailing(texts::ARE_SUPPORTED_BY_THIS_SERVER);
        ctx.reply(reply);
    }
}
