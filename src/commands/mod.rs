//! Command handling: one table says, for every command, how many parameters it needs
//! and whether it is allowed before registration, so `421`, `451` and `461` are
//! answered here once (as Ergo's `commands.go`). Handlers, one family per file, are
//! about behaviour: they read the parsed message and push lines into outboxes through
//! [`Ctx`]; they never see a socket.

mod accounts;
mod channel;
mod channel_ops;
mod chathistory;
mod connection;
mod context;
mod errors;
mod help;
mod info;
mod knock;
mod labels;
mod messaging;
mod monitor;
mod nickserv;
mod oper;
mod query;
mod read_marker;
mod registration;
mod sasl;
mod server_bans;
mod user;
mod webirc;
mod whowas;

pub use context::Ctx;

use crate::proto::numeric::*;
use crate::proto::texts;
use crate::proto::{LineBuilder, Message};
use crate::shard::{Input, Shard};
use crate::state::ClientId;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

type Handler = fn(&mut Ctx<'_>, &Message<'_>);

/// One command's metadata and handler.
struct Command {
    name: &'static str,
    /// Parameters required, else `461`.
    min_params: usize,
    /// Usable before registration completes, else `451`.
    before_registration: bool,
    /// Counts as activity for WHOIS idle time (everything but PING/PONG).
    is_activity: bool,
    handler: Handler,
}

const fn command(name: &'static str, min_params: usize, handler: Handler) -> Command {
    Command {
        name,
        min_params,
        before_registration: false,
        is_activity: true,
        handler,
    }
}

const fn early(name: &'static str, min_params: usize, handler: Handler) -> Command {
    Command {
        before_registration: true,
        ..command(name, min_params, handler)
    }
}

const fn keepalive(name: &'static str, handler: Handler) -> Command {
    Command {
        is_activity: false,
        ..early(name, 0, handler)
    }
}

/// Every command the server understands.
static COMMANDS: &[Command] = &[
    early("WEBIRC", 4, webirc::webirc),
    early("CAP", 1, registration::cap),
    early("PASS", 1, registration::pass),
    early("NICK", 0, registration::nick),
    early("USER", 4, registration::user),
    keepalive("PING", connection::ping),
    keepalive("PONG", connection::pong),
    early("QUIT", 0, connection::quit),
    early("AUTHENTICATE", 1, sasl::authenticate),
    early("REGISTER", 3, accounts::register),
    command("NICKSERV", 0, nickserv::command),
    command("NS", 0, nickserv::command),
    command("JOIN", 1, channel::join),
    command("PART", 1, channel::part),
    command("NAMES", 0, channel::names),
    command("PRIVMSG", 2, messaging::privmsg),
    command("NOTICE", 2, messaging::notice),
    command("TAGMSG", 1, messaging::tagmsg),
    command("SETNAME", 1, registration::setname),
    command("MOTD", 0, info::motd),
    command("LUSERS", 0, info::lusers),
    command("TOPIC", 1, channel_ops::topic),
    command("KICK", 2, channel_ops::kick),
    command("INVITE", 0, channel_ops::invite),
    command("MODE", 1, channel_ops::mode),
    command("WHO", 1, query::who),
    command("WHOIS", 1, query::whois),
    command("LIST", 0, query::list),
    command("USERHOST", 1, query::userhost),
    command("ISON", 1, query::ison),
    command("VERSION", 0, query::version),
    command("TIME", 0, query::time),
    command("ADMIN", 0, query::admin),
    command("KNOCK", 1, knock::knock),
    command("AWAY", 0, user::away),
    command("STATS", 0, info::stats),
    command("MONITOR", 1, monitor::monitor),
    command("CHATHISTORY", 1, chathistory::chathistory),
    command("MARKREAD", 0, read_marker::markread),
    command("WHOWAS", 0, whowas::whowas),
    command("HELP", 0, help::help),
    command("HELPOP", 0, help::help),
    command("INFO", 0, info::info),
    command("LINKS", 0, info::links),
    command("OPER", 2, oper::oper),
    command("KILL", 1, oper::kill),
    command("WALLOPS", 1, oper::wallops),
    command("REHASH", 0, oper::rehash),
    command("UPGRADE", 0, oper::upgrade),
    command("DIE", 0, oper::die),
    command("BACKUP", 0, oper::backup),
    command("KLINE", 1, server_bans::kline),
    command("DLINE", 1, server_bans::dline),
    command("UNKLINE", 1, server_bans::unkline),
    command("UNDLINE", 1, server_bans::undline),
];

/// The name of every command in the table (HELP covers each).
#[cfg(test)]
fn command_names() -> impl Iterator<Item = &'static str> {
    COMMANDS.iter().map(|command| command.name)
}

/// Handles one framed unit of input from client `id`: the shard's
/// [`LineHandler`](crate::shard::LineHandler).
pub fn handle(shard: &mut Shard, id: ClientId, input: Input<'_>, now: Instant) {
    match input {
        Input::Line(line) => match Message::parse(line) {
            Ok(message) => dispatch(shard, id, &message, now),
            Err(error) => tracing::debug!(client = %id, %error, "unparsable line ignored"),
        },
        Input::TooLong => input_too_long(shard, id, now),
        Input::Finished(finished) => accounts::finished(shard, id, finished, now),
    }
}

/// Handles one parsed line from client `id`. A line with `@label=` from a client with
/// `labeled-response` gets its replies labeled (see [`labels`]).
fn dispatch(shard: &mut Shard, id: ClientId, message: &Message<'_>, now: Instant) {
    // Lines other shards' events owe this client go out before the mark, so they
    // are not taken for replies to a labeled command.
    shard.catch_up();
    let label = labels::requested(shard, id, message);
    let mark = label.map(|_| labels::mark(shard, id));
    let before = Work::measure(shard, id);
    let mut ctx = Ctx::new(shard, id, now);
    run_command(&mut ctx, message);
    let after = ctx.finish();
    if let (Some(label), Some(mark), false) = (label, mark, after.reply_deferred) {
        labels::label_replies(shard, id, label, mark);
    }
    for mut message in after.side_effects {
        shard.send_message(id, &mut message);
    }
    charge_for_work(shard, id, before, now);
}

/// What a command has cost so far: its client's queued reply bytes, and the events
/// its shard proposed.
#[derive(Clone, Copy)]
struct Work {
    reply_bytes: usize,
    events: u64,
}

impl Work {
    fn measure(shard: &Shard, id: ClientId) -> Work {
        Work {
            reply_bytes: shard.client(id).map_or(0, |c| c.outbox.unwritten()),
            events: shard.events_proposed(),
        }
    }
}

/// Fake lag, as Ergo's and InspIRCd's penalties: a line costs one flood token when it
/// is read; a command that changed the network state or queued a large reply costs
/// more, one token per event and one per [`REPLY_BYTES_PER_TOKEN`] of reply, so a
/// client that asks for huge answers (NAMES of a big channel, LIST, WHO *) or floods
/// state changes slows only itself.
fn charge_for_work(shard: &mut Shard, id: ClientId, before: Work, now: Instant) {
    let after = Work::measure(shard, id);
    let events = after.events.saturating_sub(before.events).saturating_sub(1);
    let replies = after.reply_bytes.saturating_sub(before.reply_bytes) / REPLY_BYTES_PER_TOKEN;
    let cost = events as usize + replies;
    if cost == 0 {
        return;
    }
    let policy = shard.shared.live.flood_policy();
    if let Some(client) = shard.client_mut(id) {
        client.flood.charge(policy, cost as f32, now);
    }
}

fn run_command(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let now = ctx.now;
    let registered = ctx.client().is_registered();
    let Some(command) = COMMANDS
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case(message.command))
    else {
        if registered {
            let reply = ctx
                .numeric(ERR_UNKNOWNCOMMAND)
                .arg(message.command)
                .trailing(texts::UNKNOWN_COMMAND);
            ctx.reply(reply);
        } else {
            not_registered(ctx);
        }
        return;
    };
    if !registered && !command.before_registration {
        not_registered(ctx);
        return;
    }
    if message.params().len() < command.min_params {
        let reply = ctx
            .numeric(ERR_NEEDMOREPARAMS)
            .arg(command.name)
            .trailing(texts::NOT_ENOUGH_PARAMETERS);
        ctx.reply(reply);
        return;
    }
    if ctx.config().utf8_only && !is_utf8(message) {
        let text = texts::MESSAGE_REJECTED_IT_IS_NOT_VALID_UTF;
        return ctx.fail(command.name, "INVALID_UTF8", &[], text);
    }
    if command.is_activity {
        ctx.client_mut().activity.touch(now);
    }
    (command.handler)(ctx, message);
}

/// Whether every part of `message` is UTF-8 (`--utf8-only`, ISUPPORT `UTF8ONLY`: the
/// server then relays no other text). The command is text already.
fn is_utf8(message: &Message<'_>) -> bool {
    message
        .tags
        .into_iter()
        .chain(message.params().iter().copied())
        .all(|part| std::str::from_utf8(part).is_ok())
}

fn not_registered(ctx: &mut Ctx<'_>) {
    let reply = ctx
        .numeric(ERR_NOTREGISTERED)
        .trailing(texts::YOU_HAVE_NOT_REGISTERED);
    ctx.reply(reply);
}

/// Answers a line that was over the length limits (it was discarded).
fn input_too_long(shard: &mut Shard, id: ClientId, now: Instant) {
    too_long(&mut Ctx::new(shard, id, now));
}

/// `417 ERR_INPUTTOOLONG`: a line was too long as it came, or would be once relayed.
fn too_long(ctx: &mut Ctx<'_>) {
    let reply = ctx
        .numeric(ERR_INPUTTOOLONG)
        .trailing(texts::INPUT_LINE_WAS_TOO_LONG);
    ctx.reply(reply);
}

/// Seconds since the Unix epoch, for creation and topic times.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The longest line the server sends, CR LF included (LINELEN).
pub const LINELEN: usize = 512;

/// Sends `items`, space-separated, as the trailing parameter of as many lines as it
/// takes to keep each within [`LINELEN`] (353 NAMES, 319 WHOIS channels). `header`
/// builds a line up to its trailing parameter.
fn reply_in_lines<I: AsRef<str>>(
    ctx: &mut Ctx<'_>,
    header: impl Fn(&Ctx<'_>) -> LineBuilder,
    items: impl IntoIterator<Item = I>,
) {
    write_in_lines(ctx, header, items, |item, line| {
        line.push_str(item.as_ref())
    });
}

/// [`reply_in_lines`] for items that `write` puts straight into the line being
/// built: no `String` per item (a big channel's NAMES writes one name per member,
/// for every JOIN). An item that does not fit is moved to the next line (a copy of
/// that one item, once per line).
fn write_in_lines<T>(
    ctx: &mut Ctx<'_>,
    header: impl Fn(&Ctx<'_>) -> LineBuilder,
    items: impl IntoIterator<Item = T>,
    write: impl Fn(&T, &mut String),
) {
    let room = LINELEN.saturating_sub(header(ctx).len() + 4);
    let mut batch = String::new();
    for item in items {
        let before = batch.len();
        if before > 0 {
            batch.push(' ');
        }
        write(&item, &mut batch);
        if before > 0 && batch.len() > room {
            let line = header(ctx).trailing(&batch[..before]);
            ctx.reply(line);
            batch.drain(..=before);
        }
    }
    if !batch.is_empty() {
        let line = header(ctx).trailing(&batch);
        ctx.reply(line);
    }
}

/// [`write_in_lines`] for items already written out, space-separated, in `text`: each
/// line takes as many whole items as fit (one `rfind` per line, nothing per item).
fn write_text_in_lines(ctx: &mut Ctx<'_>, header: impl Fn(&Ctx<'_>) -> LineBuilder, text: &str) {
    let room = LINELEN.saturating_sub(header(ctx).len() + 4);
    let mut rest = text;
    while !rest.is_empty() {
        let cut = match rest.len() <= room {
            true => rest.len(),
            // The last space that leaves a line within room; an item longer than a
            // line (never: a nick is at most 30 bytes) goes whole on its own line.
            false => match rest.get(..=room).and_then(|fits| fits.rfind(' ')) {
                Some(space) if space > 0 => space,
                _ => rest.find(' ').unwrap_or(rest.len()),
            },
        };
        let line = header(ctx).trailing(&rest[..cut]);
        ctx.reply(line);
        rest = rest.get(cut + 1..).unwrap_or("");
    }
}

/// `407 ERR_TOOMANYTARGETS` for the first target past a command's TARGMAX.
fn too_many_targets(ctx: &mut Ctx<'_>, target: &[u8]) {
    let reply = ctx
        .numeric(ERR_TOOMANYTARGETS)
        .arg(target)
        .trailing(texts::TOO_MANY_TARGETS);
    ctx.reply(reply);
}

/// Splits a comma-separated target list, skipping empty entries.
fn targets(list: &[u8]) -> impl Iterator<Item = &[u8]> + Clone {
    list.split(|&b| b == b',').filter(|t| !t.is_empty())
}

/// Longest topic kept (ISUPPORT `TOPICLEN`); a longer one is cut.
pub const TOPICLEN: usize = 390;
/// Longest KICK reason kept (ISUPPORT `KICKLEN`); PART and QUIT reasons too.
pub const KICKLEN: usize = 255;
/// Longest AWAY message kept (ISUPPORT `AWAYLEN`).
pub const AWAYLEN: usize = 200;
/// Longest real name (USER, SETNAME; ISUPPORT `NAMELEN`, as InspIRCd names it); a
/// longer one is cut at USER and refused by SETNAME.
pub const NAMELEN: usize = 200;
/// Most targets of a WHOIS (ISUPPORT `TARGMAX=WHOIS:5`) and of a USERHOST.
pub const MAX_QUERY_TARGETS: usize = 5;
/// Most masks in one LIST, and the longest: matching costs masks x channels x mask
/// length, so both are bounded.
pub const MAX_LIST_MASKS: usize = 8;
/// Longest LIST mask (a channel name is at most CHANNELLEN).
pub const MAX_LIST_MASK_LEN: usize = 64;
/// Longest WHO mask: longer than any `nick!user@host` a user can have.
pub const MAX_WHO_MASK_LEN: usize = 128;
/// Reply bytes a command may queue for its own client before each further
/// [`REPLY_BYTES_PER_TOKEN`] cost it one more flood token.
pub const REPLY_BYTES_PER_TOKEN: usize = 4096;

/// `text` cut to at most `max` bytes, backing off to a character boundary when the
/// text is UTF-8 (text need not be UTF-8; then the cut is at `max` bytes).
fn clip(text: &[u8], max: usize) -> &[u8] {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    if std::str::from_utf8(text).is_ok() {
        while end > 0 && (text[end] & 0xC0) == 0x80 {
            end -= 1;
        }
    }
    &text[..end]
}
