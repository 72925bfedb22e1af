//! Talking: PRIVMSG, NOTICE and TAGMSG to channels (also to a channel's operators or
//! voiced members, STATUSMSG `@#c`/`+#c`) and nicknames; a PRIVMSG to NickServ goes
//! to [`super::nickserv`].

use super::{targets, Ctx};
use crate::proto::caps::Cap;
use crate::proto::numeric::*;
use crate::proto::outgoing::{client_only_tags, MsgId, Outgoing, StatusTarget};
use crate::proto::texts;
use crate::proto::{LineBuilder, Message};
use crate::state::bus::KeptDirect;
use crate::state::network::Refusal;
use crate::state::{Client, ClientId};
use crate::store::history;

/// Most targets in one PRIVMSG or NOTICE (TARGMAX).
pub const MAX_TARGETS: usize = 4;

/// `PRIVMSG target[,target] :text`.
pub fn privmsg(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    relay(ctx, message, Kind::Privmsg);
}

/// `NOTICE target[,target] :text`: like PRIVMSG, but never answered with an error.
pub fn notice(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    relay(ctx, message, Kind::Notice);
}

/// `@+tag TAGMSG target`: tags only, for clients with `message-tags`.
pub fn tagmsg(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    relay(ctx, message, Kind::Tagmsg);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Privmsg,
    Notice,
    Tagmsg,
}

impl Kind {
    fn command(self) -> &'static str {
        match self {
            Kind::Privmsg => "PRIVMSG",
            Kind::Notice => "NOTICE",
            Kind::Tagmsg => "TAGMSG",
        }
    }

    /// Who a kept message is replayed to.
    fn in_history(self) -> history::Kind {
        match self {
            Kind::Tagmsg => history::Kind::Tagmsg,
            Kind::Privmsg | Kind::Notice => history::Kind::Message,
        }
    }
}

fn relay(ctx: &mut Ctx<'_>, message: &Message<'_>, kind: Kind) {
    let quiet = kind == Kind::Notice;
    let text = message.param(1).unwrap_or_default();
    if text.is_empty() && kind != Kind::Tagmsg {
        if !quiet {
            let reply = ctx
                .numeric(ERR_NOTEXTTOSEND)
                .trailing(texts::NO_TEXT_TO_SEND);
            ctx.reply(reply);
        }
        return;
    }
    let target_list = message.param(0).unwrap_or_default();
    if kind != Kind::Tagmsg && !fits_when_relayed(ctx.client(), kind, target_list, text) {
        // A size error, not a delivery reply: NOTICE gets it too, and nobody gets
        // a cut text.
        super::too_long(ctx);
        return;
    }
    let client_tags = client_only_tags(message.tags);
    for (index, target) in targets(target_list).enumerate() {
        let target = String::from_utf8_lossy(target);
        let error = if index >= MAX_TARGETS {
            Some((ERR_TOOMANYTARGETS, "Too many targets"))
        } else {
            let route = Route {
                kind,
                text,
                client_tags: client_tags.clone(),
            };
            if target.starts_with('#') {
                to_channel(ctx, &target, route, None)
            } else if super::nickserv::is_nickserv(&target) {
                if kind == Kind::Privmsg {
                    super::nickserv::privmsg(ctx, text);
                }
                None
            } else if let Some((status, channel)) =
                StatusTarget::split(&target).filter(|(_, channel)| channel.starts_with('#'))
            {
                to_channel(ctx, channel, route, Some(status))
            } else {
                to_nick(ctx, &target, route)
            }
        };
        if let Some((code, explanation)) = error.filter(|_| !quiet) {
            let reply = ctx.numeric(code).arg(target.as_ref()).trailing(explanation);
            ctx.reply(reply);
        }
    }
}

/// Whether `:source COMMAND target :text` CR LF, as recipients get it without tags,
/// fits [`LINELEN`](super::LINELEN) for each target it is relayed to. A target is
/// relayed under a name of the length it was given (the casemapping changes case
/// only), so the longest decides; NickServ relays nothing. Cost: one comparison when
/// even the whole target list would fit (nearly every message), else one pass over
/// the list; no allocation.
fn fits_when_relayed(sender: &Client, kind: Kind, target_list: &[u8], text: &[u8]) -> bool {
    let room = |target_len: usize| {
        1 + sender.source().len() + 1 + kind.command().len() + 1 + target_len + 2 + text.len() + 2
            <= super::LINELEN
    };
    if room(target_list.len()) {
        return true;
    }
    let longest_target = targets(target_list)
        .take(MAX_TARGETS)
        .filter(|target| !std::str::from_utf8(target).is_ok_and(super::nickserv::is_nickserv))
        .map(<[u8]>::len)
        .max()
        .unwrap_or(0);
    room(longest_target)
}

/// What is being sent, independent of the target.
struct Route<'m> {
    kind: Kind,
    text: &'m [u8],
    client_tags: Option<bytes::Bytes>,
}

impl Route<'_> {
    /// The message as recipients get it, serialized once for all of them into one
    /// buffer sized from its parts.
    fn outgoing(&self, sender: &Client, target: &str, msgid: MsgId) -> Outgoing {
        let source = sender.source();
        let text_room = match self.kind {
            Kind::Tagmsg => 0,
            _ => 2 + self.text.len(),
        };
        let line = LineBuilder::sized(source, self.kind.command(), 1 + target.len() + text_room)
            .arg(target);
        let line = match self.kind {
            Kind::Tagmsg => line,
            _ => line.trailing(self.text),
        };
        let message = Outgoing::new(line.finish())
            .with_client_tags(self.client_tags.clone())
            .with_msgid(msgid)
            .from_bot(sender.bot)
            .with_account(sender.account.clone());
        match self.kind {
            Kind::Tagmsg => message.requiring(Cap::MessageTags),
            _ => message,
        }
    }
}

/// The hot path: the permission check and routing read the replica version this
/// shard is at (no lock), one serialization, then fan-out by reference.
///
/// With a `status` (STATUSMSG, `PRIVMSG @#c`), the line names the channel with its
/// prefix and reaches only members with that status or higher; whoever may send to
/// the channel may send to its operators.
fn to_channel(
    ctx: &mut Ctx<'_>,
    name: &str,
    route: Route<'_>,
    status: Option<StatusTarget>,
) -> Option<(&'static str, &'static str)> {
    let channel = match ctx.network().can_send(ctx.id, name) {
        Ok(channel) => channel.name.clone(),
        Err(Refusal::CannotSend) => return Some((ERR_CANNOTSENDTOCHAN, "Cannot send to channel")),
        Err(_) => return Some((ERR_NOSUCHCHANNEL, "No such channel")),
    };
    let msgid = ctx.next_msgid();
    let sender = ctx.client();
    let outgoing = match status {
        None => route.outgoing(sender, channel.as_str(), msgid),
        Some(status) => {
            let prefix = match status {
                StatusTarget::Operators => '@',
                StatusTarget::Voiced => '+',
            };
            let target = format!("{prefix}{channel}");
            route.outgoing(sender, &target, msgid).to_status(status)
        }
    };
    echo(ctx, &outgoing);
    // A STATUSMSG is not kept: history has no notion of who may see it. Without a
    // store nothing is built (the record's clones cost a delivery's worth).
    let kept = (status.is_none() && ctx.shared().keeps_history()).then(|| route.kind.in_history());
    if let Some(kind) = kept {
        ctx.keep_in_history(history::Record {
            target: history::Target::Channel(channel.clone()),
            kind,
            message: outgoing.clone(),
        });
    }
    ctx.deliver_to_channel(&channel, outgoing, Some(ctx.id), kept);
    None
}

fn to_nick(
    ctx: &mut Ctx<'_>,
    nick: &str,
    route: Route<'_>,
) -> Option<(&'static str, &'static str)> {
    let recipient = ctx
        .network()
        .user_by_nick(nick)
        .map(|(id, user)| (id, user.nick.clone()));
    let Some((recipient, nick)) = recipient else {
        return Some((ERR_NOSUCHNICK, "No such nick/channel"));
    };
    let msgid = ctx.next_msgid();
    let sender = ctx.client();
    let outgoing = route.outgoing(sender, nick.as_str(), msgid);
    echo(ctx, &outgoing);
    let kept = keep_direct(ctx, recipient, route.kind, &outgoing);
    if recipient == ctx.id {
        // IRCv3 labeled-response, "Labeled responses": when a client sends a message
        // to itself, only the echo-message acknowledgment carries the label; the
        // delivered copy is a side effect, not a response.
        ctx.send_side_effect(outgoing);
    } else {
        ctx.send_anywhere(recipient, outgoing, kept);
    }
    if matches!(route.kind, Kind::Privmsg) {
        tell_away(ctx, recipient);
    }
    None
}

/// Keeps a direct message in its conversation's history when one side is logged in
/// (see [`history::Conversation`]); kept by the sender's shard, which hands it to
/// the store before the recipient can see it. Returns what the recipient's node
/// needs to keep it too, when it is kept.
fn keep_direct(
    ctx: &mut Ctx<'_>,
    recipient: ClientId,
    kind: Kind,
    outgoing: &Outgoing,
) -> Option<KeptDirect> {
    if !ctx.shared().keeps_history() {
        return None;
    }
    let conversation = ctx.network().conversation(ctx.id, recipient)?;
    let kind = kind.in_history();
    ctx.keep_in_history(history::Record {
        target: history::Target::Direct(conversation),
        kind,
        message: outgoing.clone(),
    });
    Some(KeptDirect { from: ctx.id, kind })
}

/// 301 RPL_AWAY to the sender of a PRIVMSG whose recipient is away (never for NOTICE
/// or TAGMSG, which are not answered).
fn tell_away(ctx: &mut Ctx<'_>, recipient: ClientId) {
    let away = ctx
        .network()
        .user(recipient)
        .and_then(|user| Some((user.nick.clone(), user.away.clone()?)));
    if let Some((nick, message)) = away {
        let reply = ctx.numeric(RPL_AWAY).arg(nick.as_str()).trailing(&message);
        ctx.reply(reply);
    }
}

/// With `echo-message`, the sender gets its own message as the recipients see it.
fn echo(ctx: &mut Ctx<'_>, outgoing: &Outgoing) {
    if ctx.client().caps.has(Cap::EchoMessage) {
        ctx.send_message(ctx.id, &mut outgoing.clone());
    }
}
