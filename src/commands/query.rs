//! Questions about users, channels and the server: WHO (with WHOX), WHOIS, LIST,
//! USERHOST, ISON, VERSION and TIME. Read-only: each reads this shard's replica of
//! the network state, so however large the answer, no other shard waits for it.

use super::channel::{all_prefixes, highest_prefix};
use super::registration::{send_isupport, VERSION};
use super::{
    targets, unix_now, Ctx, MAX_LIST_MASKS, MAX_LIST_MASK_LEN, MAX_QUERY_TARGETS, MAX_WHO_MASK_LEN,
};
use crate::proto::caps::Cap;
use crate::proto::mask::{has_wildcards, wildcard_match};
use crate::proto::numeric::*;
use crate::proto::texts;
use crate::proto::time::human;
use crate::proto::{Caseless, Message};
use crate::state::network::{Membership, Network, User};
use crate::state::ClientId;
use std::time::{Instant, SystemTime};

/// One user as a WHO reply shows it.
struct WhoRow {
    /// The channel column: the channel asked about, or `*` for a mask query.
    channel: String,
    user: String,
    host: String,
    nick: String,
    /// `H` or `G`, then `*` for a server operator, then the channel status prefix
    /// (every prefix with `multi-prefix`), then `B` for a bot (IRCv3 bot mode).
    flags: String,
    idle: u64,
    realname: String,
    /// The account the user is logged in to, `0` for none (WHOX `a`, as Ergo).
    account: String,
}

impl WhoRow {
    fn new(
        channel: &str,
        user: &User,
        membership: Option<Membership>,
        status: fn(Membership) -> &'static str,
        now: Instant,
    ) -> WhoRow {
        let presence = if user.away.is_some() { "G" } else { "H" };
        let bot = if user.bot { "B" } else { "" };
        let oper = if user.oper.is_some() { "*" } else { "" };
        WhoRow {
            channel: channel.to_owned(),
            user: user.user.to_string(),
            host: user.host.to_string(),
            nick: user.nick.to_string(),
            flags: format!("{presence}{oper}{}{bot}", membership.map_or("", status)),
            idle: user.activity.idle_secs(now),
            realname: user.realname.to_string(),
            account: user
                .account
                .as_ref()
                .map_or_else(|| "0".to_owned(), |account| account.to_string()),
        }
    }
}

/// WHOX fields in their fixed reply order (ircu, Ergo): a field appears in 354 in this
/// order whatever the order in the request.
const WHOX_ORDER: &str = "tcuihsnfdlaor";

/// `WHO #channel` or `WHO mask`, optionally `WHO target %fields[,token]` (WHOX):
/// 352 (or 354) per user, then 315. Invisible (`+i`) users are listed only to users
/// sharing a channel with them; a channel's members are listed to non-members minus
/// the invisible ones.
pub fn who(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let mask = String::from_utf8_lossy(message.param(0).unwrap_or_default()).into_owned();
    let whox = message
        .param_str(1)
        .and_then(|options| options.split_once('%'))
        .map(|(_, fields)| match fields.split_once(',') {
            Some((fields, token)) => (fields.to_owned(), token.to_owned()),
            None => (fields.to_owned(), String::new()),
        });
    // A longer mask could only be a costly way to match everyone or no one.
    let rows = if mask.len() > MAX_WHO_MASK_LEN {
        Vec::new()
    } else {
        who_rows(ctx.network(), ctx.id, &mask, status_prefix(ctx), ctx.now)
    };
    let server = ctx.config().server_name.clone();
    for row in rows {
        let reply = match &whox {
            None => ctx
                .numeric(RPL_WHOREPLY)
                .arg(&row.channel)
                .arg(&row.user)
                .arg(&row.host)
                .arg(&server)
                .arg(&row.nick)
                .arg(&row.flags)
                .trailing(format!("0 {}", row.realname)),
            Some((fields, token)) => {
                let mut reply = ctx.numeric(RPL_WHOSPCRPL);
                for field in WHOX_ORDER.chars().filter(|&f| fields.contains(f)) {
                    reply = match field {
                        't' if token.is_empty() => reply.arg("0"),
                        't' => reply.arg(token),
                        'c' => reply.arg(&row.channel),
                        'u' => reply.arg(&row.user),
                        'i' => reply.arg("0"),
                        'h' => reply.arg(&row.host),
                        's' => reply.arg(&server),
                        'n' => reply.arg(&row.nick),
                        'f' => reply.arg(&row.flags),
                        'd' => reply.arg("0"),
                        'a' => reply.arg(&row.account),
                        'l' => reply.arg(row.idle.to_string()),
                        'o' => reply.arg("*"),
                        _ => reply.trailing(&row.realname),
                    };
                }
                reply
            }
        };
        ctx.reply(reply);
    }
    let end = ctx
        .numeric(RPL_ENDOFWHO)
        .arg(&mask)
        .trailing(texts::END_OF_WHO_LIST);
    ctx.reply(end);
}

/// The users `me` may see for a WHO query, sorted by nickname.
fn who_rows(
    network: &Network,
    me: ClientId,
    mask: &str,
    status: fn(Membership) -> &'static str,
    now: Instant,
) -> Vec<WhoRow> {
    let mut rows: Vec<WhoRow> = if mask.starts_with('#') {
        let Some(channel) = network.channel(mask).filter(|c| c.is_visible_to(me)) else {
            return Vec::new();
        };
        let is_member = channel.members.contains(me);
        network
            .users_of(&channel.members)
            .filter(|(user, _)| is_member || !user.invisible)
            .map(|(user, membership)| {
                WhoRow::new(channel.name.as_str(), user, Some(membership), status, now)
            })
            .collect()
    } else {
        // Modern IRC ("WHO message"): a mask that is not a channel matches users
        // whose nickname, username, host or real name it matches (with or without
        // wildcards). An exact nickname finds an invisible user too, as WHOIS
        // does; every other match shows only the users the asker may see.
        let everyone = mask.is_empty() || mask == "0" || mask == "*";
        let wild = has_wildcards(mask.as_bytes());
        let pattern = mask.as_bytes();
        let matches = |field: &str| {
            if wild {
                wildcard_match(pattern, field.as_bytes())
            } else {
                field.eq_ignore_ascii_case(mask)
            }
        };
        network
            .users()
            .filter(|&(id, user)| {
                let exact_nick = !wild && user.nick == *Caseless::new(mask);
                let found = everyone
                    || exact_nick
                    || [user.nick.as_str(), &user.user, &user.host, &user.realname]
                        .into_iter()
                        .any(matches)
                    || (wild && matches(&user.source()));
                found
                    && (exact_nick
                        || !user.invisible
                        || id == me
                        || network.share_a_channel(me, id))
            })
            .map(|(_, user)| WhoRow::new("*", user, None, status, now))
            .collect()
    };
    rows.sort_by_key(|row| row.nick.to_ascii_lowercase());
    rows
}

/// How a member's status is shown to this client: every prefix with `multi-prefix`,
/// else the highest.
fn status_prefix(ctx: &Ctx<'_>) -> fn(Membership) -> &'static str {
    if ctx.client().caps.has(Cap::MultiPrefix) {
        all_prefixes
    } else {
        highest_prefix
    }
}

/// What WHOIS shows about one user.
struct WhoisInfo {
    /// The asker asked about themself (and may see their certificate fingerprint).
    is_self: bool,
    /// The cluster node the user is on (0 alone), whose server name 312 shows.
    node: u16,
    nick: String,
    user: String,
    host: String,
    /// `~user@address address`, shown (378) to the user itself and to operators.
    connecting_from: Option<String>,
    /// Connected through TLS (671).
    tls: bool,
    realname: String,
    /// `@#a`, `+#b`, `#c`: the user's channels with its status prefix in each.
    channels: Vec<String>,
    away: Option<Box<[u8]>>,
    bot: bool,
    oper: bool,
    account: Option<String>,
    idle: u64,
    signon: u64,
}

/// `WHOIS [server] nick[,nick]`: 311, 319, 312, 301 (if away), 313 (if a server
/// operator), 378 (the real address, to the user itself and to operators), 330 (if
/// logged in to an account), 671 (if connected with TLS), 335 (if a bot), 276
/// (one's own TLS client certificate), 317 and 318 for each nick; an unknown nick gets
/// 401 and 318.
pub fn whois(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let list = message.param(1).or(message.param(0)).unwrap_or_default();
    for (index, nick) in targets(list).enumerate() {
        if index == MAX_QUERY_TARGETS {
            super::too_many_targets(ctx, nick);
            break;
        }
        let nick = String::from_utf8_lossy(nick).into_owned();
        whois_one(ctx, &nick);
    }
}

fn whois_one(ctx: &mut Ctx<'_>, nick: &str) {
    let status = status_prefix(ctx);
    let info = {
        let network = ctx.network();
        let asker_is_oper = network
            .user(ctx.id)
            .is_some_and(|asker| asker.oper.is_some());
        network.user_by_nick(nick).map(|(id, user)| {
            let channels = user
                .channels
                .iter()
                .filter_map(|name| {
                    let channel = network
                        .channel(name.as_str())
                        .filter(|c| id == ctx.id || c.is_visible_to(ctx.id))?;
                    let prefix = status(channel.members.get(id)?);
                    Some(format!("{prefix}{}", channel.name))
                })
                .collect();
            WhoisInfo {
                is_self: id == ctx.id,
                node: id.node,
                nick: user.nick.to_string(),
                user: user.user.to_string(),
                host: user.host.to_string(),
                connecting_from: (id == ctx.id || asker_is_oper)
                    .then(|| format!("{} {}", user.user_at_address(), user.address)),
                tls: user.tls,
                realname: user.realname.to_string(),
                channels,
                away: user.away.clone(),
                bot: user.bot,
                account: user.account.as_ref().map(ToString::to_string),
                oper: user.oper.is_some(),
                idle: user.activity.idle_secs(ctx.now),
                signon: user.activity.signon(),
            }
        })
    };
    let Some(info) = info else {
        let reply = ctx
            .numeric(ERR_NOSUCHNICK)
            .arg(nick)
            .trailing(texts::NO_SUCH_NICK_CHANNEL);
        ctx.reply(reply);
        let end = ctx
            .numeric(RPL_ENDOFWHOIS)
            .arg(nick)
            .trailing(texts::END_OF_WHOIS_LIST);
        ctx.reply(end);
        return;
    };
    let server = server_of_node(ctx, info.node);
    let server_info = ctx.config().server_info.clone();
    let network = ctx.config().network.clone();
    let mut replies = vec![ctx
        .numeric(RPL_WHOISUSER)
        .arg(&info.nick)
        .arg(&info.user)
        .arg(&info.host)
        .arg("*")
        .trailing(&info.realname)];
    ctx.reply(replies.remove(0));
    super::reply_in_lines(
        ctx,
        |ctx| ctx.numeric(RPL_WHOISCHANNELS).arg(&info.nick),
        &info.channels,
    );
    replies.push(
        ctx.numeric(RPL_WHOISSERVER)
            .arg(&info.nick)
            .arg(&server)
            .trailing(&server_info),
    );
    if let Some(away) = &info.away {
        replies.push(ctx.numeric(RPL_AWAY).arg(&info.nick).trailing(away));
    }
    if info.oper {
        replies.push(
            ctx.numeric(RPL_WHOISOPERATOR)
                .arg(&info.nick)
                .trailing(texts::IS_AN_IRC_OPERATOR),
        );
    }
    // RPL_WHOISHOST as InspIRCd and Ergo send it: the real address behind a cloak,
    // for the user and operators only (Modern IRC lists 378 among WHOIS replies).
    if let Some(connecting_from) = &info.connecting_from {
        replies.push(
            ctx.numeric(RPL_WHOISHOST)
                .arg(&info.nick)
                .trailing(format!("is connecting from {connecting_from}")),
        );
    }
    // Modern IRC, RPL_WHOISSECURE (671): "is using a secure connection".
    if info.tls {
        replies.push(
            ctx.numeric(RPL_WHOISSECURE)
                .arg(&info.nick)
                .trailing(texts::IS_USING_A_SECURE_CONNECTION),
        );
    }
    if let Some(account) = &info.account {
        // 330 RPL_WHOISACCOUNT, as Ergo, Solanum and InspIRCd send it.
        replies.push(
            ctx.numeric(RPL_WHOISACCOUNT)
                .arg(&info.nick)
                .arg(account)
                .trailing(texts::IS_LOGGED_IN_AS),
        );
    }
    if info.bot {
        replies.push(
            ctx.numeric(RPL_WHOISBOT)
                .arg(&info.nick)
                .trailing(format!("is a bot on {network}")),
        );
    }
    // Only the user sees their own fingerprint: there are no opers yet, and the
    // fingerprint lives on the shard-local client, not in the shared user record.
    let own_certfp = ctx.client().tls.as_ref().and_then(|tls| tls.certfp.clone());
    if let Some(certfp) = own_certfp.filter(|_| info.is_self) {
        replies.push(
            ctx.numeric(RPL_WHOISCERTFP)
                .arg(&info.nick)
                .trailing(format!("has client certificate fingerprint {certfp}")),
        );
    }
    replies.push(
        ctx.numeric(RPL_WHOISIDLE)
            .arg(&info.nick)
            .arg(info.idle.to_string())
            .arg(info.signon.to_string())
            .trailing(texts::SECONDS_IDLE_SIGNON_TIME),
    );
    replies.push(
        ctx.numeric(RPL_ENDOFWHOIS)
            .arg(&info.nick)
            .trailing(texts::END_OF_WHOIS_LIST),
    );
    for reply in replies {
        ctx.reply(reply);
    }
}

/// The server name of cluster node `node`: this one's, or what the node's heartbeats
/// say (this one's until the first arrives, a fraction of a second after it starts).
fn server_of_node(ctx: &Ctx<'_>, node: u16) -> String {
    let own = &ctx.config().server_name;
    match &ctx.shared().cluster {
        Some(cluster) if node != cluster.node => cluster
            .server_name(node)
            .map_or_else(|| own.clone(), |name| name.to_string()),
        _ => own.clone(),
    }
}

/// What LIST filters on (ELIST `C`, `M`, `N`, `T` and `U`): names or masks, negated
/// masks, member counts, and the ages of channels and of their topics.
#[derive(Debug, Default, PartialEq, Eq)]
struct ListFilter {
    masks: Vec<String>,
    excluded: Vec<String>,
    more_than: Option<usize>,
    fewer_than: Option<usize>,
    /// `C<n` and `C>n`: created less / more than n minutes ago.
    created: AgeBounds,
    /// `T<n` and `T>n`: topic set less / more than n minutes ago; a channel without
    /// a topic has no topic age and matches neither.
    topic_set: AgeBounds,
}

/// `X<n` and `X>n` of one ELIST age filter, in minutes. Modern IRC ("ELIST
/// parameter", `C` and `T`): "less than `val` minutes ago, or more than `val`
/// minutes ago, respectively", as InspIRCd and Solanum read it.
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
struct AgeBounds {
    less_than_minutes: Option<u64>,
    more_than_minutes: Option<u64>,
}

impl AgeBounds {
    fn is_set(self) -> bool {
        self.less_than_minutes.is_some() || self.more_than_minutes.is_some()
    }

    fn accepts(self, age_seconds: u64) -> bool {
        self.less_than_minutes
            .is_none_or(|n| age_seconds < n.saturating_mul(60))
            && self
                .more_than_minutes
                .is_none_or(|n| age_seconds > n.saturating_mul(60))
    }
}

/// One channel as LIST's filter sees it.
struct Listed<'c> {
    name: &'c str,
    members: usize,
    /// Seconds since the channel was created.
    age: u64,
    /// Seconds since its topic was set, if it has one.
    topic_age: Option<u64>,
}

impl ListFilter {
    /// The filter, or `None` when it has more than [`MAX_LIST_MASKS`] items or a
    /// mask longer than [`MAX_LIST_MASK_LEN`].
    fn parse(list: &[u8]) -> Option<ListFilter> {
        let mut filter = ListFilter::default();
        if targets(list).count() > MAX_LIST_MASKS
            || targets(list).any(|item| item.len() > MAX_LIST_MASK_LEN + 1)
        {
            return None;
        }
        for item in targets(list) {
            let item = String::from_utf8_lossy(item);
            let minutes = |n: &str| n.parse::<u64>().ok();
            if let Some(n) = item.strip_prefix('>') {
                filter.more_than = n.parse().ok().or(filter.more_than);
            } else if let Some(n) = item.strip_prefix('<') {
                filter.fewer_than = n.parse().ok().or(filter.fewer_than);
            } else if let Some(n) = item.strip_prefix("C<") {
                filter.created.less_than_minutes = minutes(n).or(filter.created.less_than_minutes);
            } else if let Some(n) = item.strip_prefix("C>") {
                filter.created.more_than_minutes = minutes(n).or(filter.created.more_than_minutes);
            } else if let Some(n) = item.strip_prefix("T<") {
                filter.topic_set.less_than_minutes =
                    minutes(n).or(filter.topic_set.less_than_minutes);
            } else if let Some(n) = item.strip_prefix("T>") {
                filter.topic_set.more_than_minutes =
                    minutes(n).or(filter.topic_set.more_than_minutes);
            } else if let Some(mask) = item.strip_prefix('!') {
                filter.excluded.push(mask.to_owned());
            } else {
                filter.masks.push(item.into_owned());
            }
        }
        Some(filter)
    }

    fn accepts(&self, channel: &Listed<'_>) -> bool {
        let matches = |mask: &String| wildcard_match(mask.as_bytes(), channel.name.as_bytes());
        let topic_matches = match channel.topic_age {
            Some(age) => self.topic_set.accepts(age),
            None => !self.topic_set.is_set(),
        };
        (self.masks.is_empty() || self.masks.iter().any(matches))
            && !self.excluded.iter().any(matches)
            && self.more_than.is_none_or(|n| channel.members > n)
            && self.fewer_than.is_none_or(|n| channel.members < n)
            && self.created.accepts(channel.age)
            && topic_matches
    }
}

/// `LIST [#a,#b|mask|!mask|>n|<n]`: 321, a 322 per channel (by name), 323.
///
/// Every answer ends with 323, a refused one too (Modern IRC, RPL_LISTEND: it
/// "indicates the end of a LIST response"): clients open a list window on 321 or on
/// the LIST they sent and close it on 323, so one that never comes leaves them
/// waiting.
pub fn list(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let Some(filter) = ListFilter::parse(message.param(0).unwrap_or_default()) else {
        let description =
            format!("At most {MAX_LIST_MASKS} masks of at most {MAX_LIST_MASK_LEN} bytes");
        ctx.fail_nonstandard("LIST", "INVALID_PARAMS", &description);
        end_of_list(ctx);
        return;
    };
    let now = unix_now();
    let mut channels: Vec<(String, usize, Box<[u8]>)> = {
        ctx.network()
            .channels()
            .filter(|c| c.is_visible_to(ctx.id))
            .filter(|c| {
                filter.accepts(&Listed {
                    name: c.name.as_str(),
                    members: c.members.len(),
                    age: now.saturating_sub(c.created),
                    topic_age: c.topic.as_ref().map(|t| now.saturating_sub(t.set_at)),
                })
            })
            .map(|c| {
                let topic = c.topic.as_ref().map(|t| t.text.clone()).unwrap_or_default();
                (c.name.to_string(), c.members.len(), topic)
            })
            .collect()
    };
    channels.sort_by_key(|channel| channel.0.to_ascii_lowercase());
    let start = ctx
        .numeric(RPL_LISTSTART)
        .arg("Channel")
        .trailing(texts::USERS_NAME);
    ctx.reply(start);
    for (name, members, topic) in channels {
        let reply = ctx
            .numeric(RPL_LIST)
            .arg(&name)
            .arg(members.to_string())
            .trailing(&topic);
        ctx.reply(reply);
    }
    end_of_list(ctx);
}

/// 323 RPL_LISTEND, the last line of every answer to LIST.
fn end_of_list(ctx: &mut Ctx<'_>) {
    let end = ctx.numeric(RPL_LISTEND).trailing(texts::END_OF_LIST);
    ctx.reply(end);
}

/// `USERHOST nick [nick...]` (at most 5): 302 with `nick=+~user@host` for each known
/// nick (`-` when away).
pub fn userhost(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let replies: Vec<String> = {
        let network = ctx.network();
        message
            .params()
            .iter()
            .take(MAX_QUERY_TARGETS)
            .filter_map(|nick| {
                let (_, user) = network.user_by_nick(&String::from_utf8_lossy(nick))?;
                let presence = if user.away.is_some() { '-' } else { '+' };
                Some(format!(
                    "{}={presence}{}@{}",
                    user.nick, user.user, user.host
                ))
            })
            .collect()
    };
    let reply = ctx.numeric(RPL_USERHOST).trailing(replies.join(" "));
    ctx.reply(reply);
}

/// `ISON nick [nick...]` (or one parameter of space-separated nicks): 303 with those
/// that are online, spelled as registered.
pub fn ison(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let online: Vec<String> = {
        let network = ctx.network();
        message
            .params()
            .iter()
            .flat_map(|param| param.split(|&b| b == b' '))
            .filter(|nick| !nick.is_empty())
            .filter_map(|nick| {
                let (_, user) = network.user_by_nick(&String::from_utf8_lossy(nick))?;
                Some(user.nick.to_string())
            })
            .collect()
    };
    // One 303 line, as clients expect: nicks that would not fit are left out (the
    // request itself was one line, so only a long nickname of ours can overflow it).
    let header = ctx.numeric(RPL_ISON);
    let room = super::LINELEN.saturating_sub(header.len() + 4);
    let mut fitting = String::new();
    for nick in online {
        if fitting.len() + usize::from(!fitting.is_empty()) + nick.len() > room {
            break;
        }
        if !fitting.is_empty() {
            fitting.push(' ');
        }
        fitting.push_str(&nick);
    }
    ctx.reply(header.trailing(fitting));
}

/// Whether a VERSION, TIME or INFO target names this server (or is absent); else 402.
pub(super) fn is_this_server(ctx: &mut Ctx<'_>, message: &Message<'_>) -> bool {
    let Some(target) = message.param(0) else {
        return true;
    };
    let server = ctx.config().server_name.clone();
    if target.eq_ignore_ascii_case(server.as_bytes()) {
        return true;
    }
    let reply = ctx
        .numeric(ERR_NOSUCHSERVER)
        .arg(target)
        .trailing(texts::NO_SUCH_SERVER);
    ctx.reply(reply);
    false
}

/// `VERSION`: 351, then the ISUPPORT tokens (as Ergo and InspIRCd).
pub fn version(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    if !is_this_server(ctx, message) {
        return;
    }
    let server = ctx.config().server_name.clone();
    let reply = ctx
        .numeric(RPL_VERSION)
        .arg(VERSION)
        .arg(&server)
        .trailing(texts::RINGCHAT_IRC_SERVER_ON_IO_URING);
    ctx.reply(reply);
    send_isupport(ctx);
}

/// `ADMIN [server]`: 256 RPL_ADMINME, then 257 (location), 258 (who runs it) and 259
/// (contact) for each `admin-*` setting given (Modern IRC, "ADMIN message"); 423
/// ERR_NOADMININFO (RFC 1459) when none is.
pub fn admin(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    if !is_this_server(ctx, message) {
        return;
    }
    let server = ctx.config().server_name.clone();
    let info = ctx.config().admin.clone();
    let lines = [
        (RPL_ADMINLOC1, info.location),
        (RPL_ADMINLOC2, info.name),
        (RPL_ADMINEMAIL, info.email),
    ];
    if lines.iter().all(|(_, text)| text.is_none()) {
        let reply = ctx
            .numeric(ERR_NOADMININFO)
            .arg(&server)
            .trailing(texts::NO_ADMINISTRATIVE_INFO_AVAILABLE);
        return ctx.reply(reply);
    }
    let me = ctx
        .numeric(RPL_ADMINME)
        .arg(&server)
        .trailing(texts::ADMINISTRATIVE_INFO);
    ctx.reply(me);
    for (numeric, text) in lines {
        if let Some(text) = text {
            let reply = ctx.numeric(numeric).trailing(text);
            ctx.reply(reply);
        }
    }
}

/// `TIME`: 391 with the server's UTC time.
pub fn time(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    if !is_this_server(ctx, message) {
        return;
    }
    let server = ctx.config().server_name.clone();
    let reply = ctx
        .numeric(RPL_TIME)
        .arg(&server)
        .trailing(human(SystemTime::now()));
    ctx.reply(reply);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_filters_combine_masks_and_counts() {
        let filter = ListFilter::parse(b">1,<4,#r*,!#rusty").expect("valid");
        assert!(filter.accepts(&listed("#rust", 2)));
        assert!(!filter.accepts(&listed("#rust", 1)));
        assert!(!filter.accepts(&listed("#rust", 4)));
        assert!(!filter.accepts(&listed("#rusty", 2)));
        assert!(!filter.accepts(&listed("#go", 2)));
        assert!(ListFilter::parse(b"")
            .expect("valid")
            .accepts(&listed("#any", 0)));
        assert!(
            ListFilter::parse(b"#RUST")
                .expect("valid")
                .accepts(&listed("#rust", 0)),
            "names ignore case"
        );
    }

    /// A channel created an hour ago, without a topic.
    fn listed(name: &str, members: usize) -> Listed<'_> {
        Listed {
            name,
            members,
            age: 3600,
            topic_age: None,
        }
    }

    #[test]
    fn list_filters_on_channel_and_topic_age_in_minutes() {
        let old = listed("#old", 1);
        let young = Listed {
            age: 59,
            ..listed("#young", 1)
        };
        let accepts = |query: &[u8], channel: &Listed<'_>| {
            ListFilter::parse(query).expect("valid").accepts(channel)
        };
        assert!(accepts(b"C>2", &old) && !accepts(b"C>2", &young));
        assert!(!accepts(b"C<2", &old) && accepts(b"C<2", &young));
        assert!(!accepts(b"C<0", &young));
        assert!(accepts(b"C>0", &young) && accepts(b"C<61", &old));

        let topical = Listed {
            topic_age: Some(120),
            ..listed("#t", 1)
        };
        assert!(accepts(b"T>1", &topical) && !accepts(b"T<2", &topical));
        assert!(!accepts(b"T>0", &old), "no topic, no topic age");
        assert!(
            accepts(b"C>0", &old),
            "the topic filters alone need a topic"
        );
    }

    #[test]
    fn list_filters_are_bounded_in_count_and_length() {
        let nine = ["#a"; MAX_LIST_MASKS + 1].join(",");
        assert_eq!(ListFilter::parse(nine.as_bytes()), None);
        let long = format!("#{}", "*".repeat(MAX_LIST_MASK_LEN + 1));
        assert_eq!(ListFilter::parse(long.as_bytes()), None);
    }
}
