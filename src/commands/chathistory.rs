//! CHATHISTORY (IRCv3 `draft/chathistory`): parse the request, check that the asker
//! may read the target, and queue the read for the store's readers; the answer (a
//! `chathistory` batch) comes back to this shard as a deferred reply.
//!
//! Why a query sees every message its client could have seen: every shard hands
//! its messages to the store ([`crate::store::history::keep`]) before it sends them anywhere (and
//! this shard before it queues the query), and a reader reads what the store was
//! handed, committed or not ([`crate::store::history::Snapshot`]). It reads on a thread of its
//! own ([`crate::store::Store::read_history`]), so it waits neither for the writer's
//! fsync nor makes the shard wait for a disk. The shard spends only the parse and
//! the access check; reading and formatting happen off it.

use super::{labels, Ctx};
use crate::config::HistoryCutoff;
use crate::proto::caps::{Cap, Caps};
use crate::proto::outgoing::add_tags;
use crate::proto::texts;
use crate::proto::time::{parse_server_time, server_time};
use crate::proto::CaselessKey;
use crate::proto::{LineBuilder, Message};
use crate::state::deferred::{DeferredReply, ReplySender};
use crate::state::network::User;
use crate::state::ClientId;
use crate::store::history::{self, Conversation, Party, Reference, Replayed, Selection, Target};
use bytes::Bytes;
use std::time::{Duration, UNIX_EPOCH};

/// Most messages one CHATHISTORY returns (ISUPPORT `CHATHISTORY=`); a larger limit
/// is cut to it.
pub const MAX_LIMIT: usize = 1000;

/// Messages of reply that cost the asker one more flood token, as any other reply
/// of about 4 KiB does (`REPLY_BYTES_PER_TOKEN`).
const MESSAGES_PER_TOKEN: usize = 16;

/// `CHATHISTORY <subcommand> <target> <reference>... <limit>`.
pub fn chathistory(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let subcommand = message.param_str(0).unwrap_or("").to_ascii_uppercase();
    if !ctx.shared().keeps_history() {
        fail(
            ctx,
            "MESSAGE_ERROR",
            &[&subcommand],
            "History is not kept on this server",
        );
        return;
    }
    let request = match parse(&subcommand, message) {
        Ok(request) => request,
        Err((code, text)) => {
            fail(ctx, code, &[&subcommand], text);
            return;
        }
    };
    let label = ctx.requested_label(message).map(<[u8]>::to_vec);
    let now_ms = crate::shard::unix_millis();
    let oldest_ms = now_ms.saturating_sub(ctx.config().history_max_age.as_millis() as u64);
    let asker = Asker {
        to: ctx.id,
        caps: ctx.client().caps,
        label,
        server: ctx.config().server_name.clone(),
    };
    let job: crate::store::readers::HistoryRead = match request {
        Request::Messages {
            target,
            selection,
            limit,
        } => {
            let Some(readable) = readable(ctx, &target, now_ms) else {
                fail(
                    ctx,
                    "INVALID_TARGET",
                    &[&subcommand, &target],
                    "Messages could not be retrieved",
                );
                return;
            };
            let Some(reply) = reply_sender(ctx) else {
                return;
            };
            charge(ctx, limit);
            let event_playback = asker.caps.has(Cap::EventPlayback);
            let subcommand = subcommand.clone();
            let oldest_ms = oldest_ms.max(readable.since_ms);
            Box::new(move |snapshot| {
                let Readable { key, shown, .. } = readable;
                let found = match snapshot {
                    Ok(snapshot) => {
                        history::query(snapshot, &key, &selection, limit, oldest_ms, event_playback)
                            .map_err(|why| why.to_string())
                    }
                    Err(why) => Err(why.to_string()),
                };
                let lines = match found {
                    Ok(found) => asker.messages_batch(&shown, found),
                    Err(why) => {
                        tracing::warn!(%why, target = shown, "a CHATHISTORY read failed");
                        asker.message_error(&subcommand, &shown)
                    }
                };
                reply.send(DeferredReply {
                    to: asker.to,
                    lines,
                });
            })
        }
        Request::Targets { from, to, limit } => {
            // Each channel the asker is in, as (storage key, name, read cutoff).
            let channels: Vec<(String, String, u64)> = ctx
                .network()
                .user(ctx.id)
                .map(|user| user.channels.clone())
                .unwrap_or_default()
                .iter()
                .filter_map(|channel| {
                    let readable = readable(ctx, channel.as_str(), now_ms)?;
                    Some((readable.key, readable.shown, readable.since_ms))
                })
                .collect();
            let account = ctx
                .network()
                .user(ctx.id)
                .filter(|user| user.account.is_some())
                .map(User::history_party);
            let Some(reply) = reply_sender(ctx) else {
                return;
            };
            charge(ctx, limit);
            Box::new(move |snapshot| {
                let snapshot = match snapshot {
                    Ok(snapshot) => snapshot,
                    Err(why) => {
                        tracing::warn!(%why, "a CHATHISTORY TARGETS read failed");
                        reply.send(DeferredReply {
                            to: asker.to,
                            lines: asker.message_error("TARGETS", "*"),
                        });
                        return;
                    }
                };
                let mut candidates = channels;
                if let Some(account) = &account {
                    match history::conversations_of(snapshot, account) {
                        Ok(conversations) => candidates.extend(
                            conversations
                                .into_iter()
                                .map(|(key, shown)| (key, shown, 0)),
                        ),
                        Err(why) => {
                            tracing::warn!(%why, "a CHATHISTORY TARGETS read of conversations failed");
                        }
                    }
                }
                let mut latest = Vec::new();
                for (key, shown, since_ms) in candidates {
                    let oldest_ms = oldest_ms.max(since_ms);
                    match history::latest_time(snapshot, &key, from, to, oldest_ms) {
                        Ok(Some(millis)) => latest.push((millis, shown)),
                        Ok(None) => {}
                        Err(why) => {
                            tracing::warn!(%why, target = shown, "a CHATHISTORY TARGETS read failed");
                        }
                    }
                }
                latest.sort();
                latest.truncate(limit);
                reply.send(DeferredReply {
                    to: asker.to,
                    lines: asker.targets_batch(&latest),
                });
            })
        }
    };
    // The store must hold this shard's messages before the query (module comment).
    ctx.flush_history();
    let queued = ctx
        .shared()
        .store
        .as_ref()
        .map(|store| store.read_history(job));
    match queued {
        Some(Ok(())) => ctx.defer_reply(),
        _ => fail(
            ctx,
            "MESSAGE_ERROR",
            &[&subcommand],
            "History is busy, try again later",
        ),
    }
}

/// What was asked.
enum Request {
    /// Messages of one target.
    Messages {
        target: String,
        selection: Selection,
        limit: usize,
    },
    /// TARGETS: the asker's channels with messages between two times.
    Targets { from: u64, to: u64, limit: usize },
}

type Refusal = (&'static str, &'static str);

/// Reads the parameters after the subcommand (IRCv3 chathistory, "Subcommands").
fn parse(subcommand: &str, message: &Message<'_>) -> Result<Request, Refusal> {
    let param = |index: usize| message.param_str(index).filter(|p| !p.is_empty());
    let missing = ("INVALID_PARAMS", "Missing parameters");
    let (target, rest_at) = match subcommand {
        "TARGETS" => ("", 1),
        "LATEST" | "BEFORE" | "AFTER" | "AROUND" | "BETWEEN" => (param(1).ok_or(missing)?, 2),
        _ => return Err(("INVALID_PARAMS", "Unknown subcommand")),
    };
    let references = if subcommand == "BETWEEN" || subcommand == "TARGETS" {
        2
    } else {
        1
    };
    let limit = param(rest_at + references).ok_or(missing)?;
    let limit = match limit.parse::<usize>() {
        Ok(0) | Err(_) => return Err(("INVALID_PARAMS", "The limit must be a positive number")),
        Ok(limit) => limit.min(MAX_LIMIT),
    };
    let reference = |index: usize| -> Result<Reference, Refusal> {
        parse_reference(param(index).ok_or(missing)?)
    };
    let selection = match subcommand {
        "LATEST" => match param(rest_at).ok_or(missing)? {
            "*" => Selection::Latest(None),
            _ => Selection::Latest(Some(reference(rest_at)?)),
        },
        "BEFORE" => Selection::Before(reference(rest_at)?),
        "AFTER" => Selection::After(reference(rest_at)?),
        "AROUND" => Selection::Around(reference(rest_at)?),
        "BETWEEN" => Selection::Between(reference(rest_at)?, reference(rest_at + 1)?),
        _ => {
            let times = (reference(rest_at)?, reference(rest_at + 1)?);
            let (Reference::Time(a), Reference::Time(b)) = times else {
                return Err(("INVALID_PARAMS", "TARGETS takes two timestamps"));
            };
            return Ok(Request::Targets {
                from: a.min(b),
                to: a.max(b),
                limit,
            });
        }
    };
    Ok(Request::Messages {
        target: target.to_owned(),
        selection,
        limit,
    })
}

/// `msgid=...` or `timestamp=...`.
fn parse_reference(text: &str) -> Result<Reference, Refusal> {
    match text.split_once('=') {
        Some(("msgid", id)) if !id.is_empty() => Ok(Reference::MsgId(id.as_bytes().to_vec())),
        Some(("timestamp", time)) => parse_server_time(time)
            .map(Reference::Time)
            .ok_or(("INVALID_PARAMS", "The timestamp is not a server-time value")),
        _ => Err((
            "INVALID_MSGREFTYPE",
            "Only msgid= and timestamp= are understood",
        )),
    }
}

/// A history the asker may read: where it is stored, the name its batch shows,
/// and the oldest time (Unix ms) the asker may see of it.
struct Readable {
    key: String,
    shown: String,
    since_ms: u64,
}

/// What the asker may read of `target` at `now_ms`, if anything:
/// - a channel: a current member reads it (a user that PARTed or was kicked reads
///   nothing, whatever the channel's modes); of a secret (`+s`) or invite-only
///   (`+i`) channel only what was said since the member joined or signed on
///   (`--history-private-cutoff`);
/// - a nick: an asker logged in reads its conversation with that user (the
///   account the user is logged in to; an account of that name when no one has
///   the nick; else the nick itself).
fn readable(ctx: &Ctx<'_>, target: &str, now_ms: u64) -> Option<Readable> {
    let network = ctx.network();
    if target.starts_with('#') {
        let channel = network.channel(target)?;
        if !channel.members.contains(ctx.id) {
            return None;
        }
        let private = channel.modes.secret || channel.modes.invite_only;
        let since_ms = match ctx.config().history_private_cutoff {
            _ if !private => 0,
            HistoryCutoff::None => 0,
            HistoryCutoff::Join => joined_at(ctx.client(), &channel.name)?,
            HistoryCutoff::Registration => {
                let signed_on = ctx.now.saturating_duration_since(ctx.client().connected_at);
                now_ms.saturating_sub(signed_on.as_millis() as u64)
            }
        };
        return Some(Readable {
            key: Target::Channel(channel.name.clone()).key(),
            shown: channel.name.as_str().to_owned(),
            since_ms,
        });
    }
    let asker = network.user(ctx.id).filter(|user| user.account.is_some())?;
    if !crate::proto::names::is_valid_nick(target.as_bytes()) {
        return None;
    }
    let other = match network.user_by_nick(target) {
        Some((_, user)) => user.history_party(),
        None if network.account(target).is_some() => Party::account(target, target),
        None => Party::nick(target),
    };
    let conversation = Conversation::between(asker.history_party(), other)?;
    Some(Readable {
        key: Target::Direct(conversation).key(),
        shown: target.to_owned(),
        since_ms: 0,
    })
}

/// When `client` last joined `channel` (Unix ms), as its shard noted it.
fn joined_at(client: &crate::state::Client, channel: &CaselessKey) -> Option<u64> {
    let times = client.joined_at.as_deref()?;
    times
        .iter()
        .find(|(known, _)| known == channel)
        .map(|&(_, millis)| millis)
}

fn reply_sender(ctx: &mut Ctx<'_>) -> Option<ReplySender> {
    ctx.shared().deferred.to_shard(ctx.id.shard)
}

/// Fake lag for the reply's size, charged up front (the reply is built elsewhere).
fn charge(ctx: &mut Ctx<'_>, messages: usize) {
    let cost = (messages / MESSAGES_PER_TOKEN) as f32;
    if cost > 0.0 {
        let policy = ctx.shared().live.flood_policy();
        let now = ctx.now;
        ctx.client_mut().flood.charge(policy, cost, now);
    }
}

/// `FAIL CHATHISTORY <code> <context...> :<text>` (IRCv3 chathistory, "Errors").
fn fail(ctx: &mut Ctx<'_>, code: &str, context: &[&str], text: &str) {
    ctx.fail("CHATHISTORY", code, context, text);
}

/// Who asked, and how its reply must look; carried to a store reader.
struct Asker {
    to: ClientId,
    caps: Caps,
    label: Option<Vec<u8>>,
    server: String,
}

impl Asker {
    /// The messages in a `chathistory` batch for `channel`.
    fn messages_batch(&self, channel: &str, found: Vec<Replayed>) -> Vec<Bytes> {
        let lines = found
            .into_iter()
            .filter_map(|mut replayed| replayed.message.for_recipient(self.caps))
            .collect();
        self.batch("chathistory", channel, lines)
    }

    /// `CHATHISTORY TARGETS <channel> <time>` lines in a `draft/chathistory-targets`
    /// batch.
    fn targets_batch(&self, latest: &[(u64, String)]) -> Vec<Bytes> {
        let lines = latest
            .iter()
            .map(|(millis, channel)| {
                let time = server_time(UNIX_EPOCH + Duration::from_millis(*millis));
                LineBuilder::from_source(&self.server, "CHATHISTORY")
                    .arg("TARGETS")
                    .arg(channel.as_str())
                    .arg(time)
                    .finish()
            })
            .collect();
        self.batch("draft/chathistory-targets", "", lines)
    }

    /// `FAIL CHATHISTORY MESSAGE_ERROR`, labeled if asked.
    fn message_error(&self, subcommand: &str, target: &str) -> Vec<Bytes> {
        let line = LineBuilder::from_source(&self.server, "FAIL")
            .arg("CHATHISTORY")
            .arg("MESSAGE_ERROR")
            .arg(subcommand)
            .arg(super::context::middle_param(target))
            .trailing(texts::MESSAGES_COULD_NOT_BE_RETRIEVED)
            .finish();
        vec![self.labeled(line)]
    }

    /// `lines` in a batch of `kind` (with its parameter, if any), the label on its
    /// start (IRCv3 labeled-response: a response that is one batch carries the label
    /// on the batch). A client without `batch` gets the lines alone, the label on a
    /// single one, or an ACK for none.
    fn batch(&self, kind: &str, parameter: &str, lines: Vec<Bytes>) -> Vec<Bytes> {
        if !self.caps.has(Cap::Batch) {
            return match (lines.len(), &self.label) {
                (0, Some(_)) => {
                    vec![self.labeled(LineBuilder::from_source(&self.server, "ACK").finish())]
                }
                (1, Some(_)) => lines.into_iter().map(|line| self.labeled(line)).collect(),
                _ => lines,
            };
        }
        let reference = labels::next_batch_reference();
        let start = LineBuilder::from_source(&self.server, "BATCH")
            .arg(format!("+{reference}"))
            .arg(kind);
        let start = if parameter.is_empty() {
            start
        } else {
            start.arg(parameter)
        };
        let tag = format!("batch={reference}");
        let mut out = Vec::with_capacity(lines.len() + 2);
        out.push(self.labeled(start.finish()));
        out.extend(lines.iter().map(|line| add_tags(line, tag.as_bytes())));
        out.push(
            LineBuilder::from_source(&self.server, "BATCH")
                .arg(format!("-{reference}"))
                .finish(),
        );
        out
    }

    fn labeled(&self, line: Bytes) -> Bytes {
        match &self.label {
            Some(label) => {
                let mut tag = b"label=".to_vec();
                tag.extend_from_slice(label);
                add_tags(&line, &tag)
            }
            None => line,
        }
    }
}
