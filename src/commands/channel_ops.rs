//! Running a channel: TOPIC, KICK, INVITE and channel MODE (user MODE is in `user.rs`).
//!
//! A change is proposed as an event; applying it tells the members (every shard for
//! its own), and the handler answers its client from the outcome. Queries read the
//! replica version this shard is at.

use super::errors::reply_refusal;
use super::{clip, targets, Ctx, KICKLEN, TOPICLEN};
use crate::proto::mask::canonical_ban_mask;
use crate::proto::numeric::*;
use crate::proto::texts;
use crate::proto::Message;
use crate::state::network::{
    ChannelModes, Event, MaskList, ModeChange, ModeRefusal, Outcome, Refusal, Topic,
};

/// Most mode changes with a parameter applied from one MODE line (ISUPPORT `MODES`).
pub const MAX_PARAM_MODES: usize = 4;
/// Longest channel key (`+k`).
pub const KEYLEN: usize = 32;

/// 332 and 333 for `channel` (on TOPIC queries and after JOIN).
pub(super) fn send_topic(ctx: &mut Ctx<'_>, channel: &str, topic: &Topic) {
    let text = ctx.numeric(RPL_TOPIC).arg(channel).trailing(&topic.text);
    ctx.reply(text);
    let who = ctx
        .numeric(RPL_TOPICWHOTIME)
        .arg(channel)
        .arg(&*topic.set_by)
        .arg(topic.set_at.to_string());
    ctx.reply(who);
}

/// `TOPIC #c` asks for the topic (331, or 332 and 333); `TOPIC #c :text` sets it
/// (`TOPIC #c :` clears it), and every member, the setter included, sees the change.
pub fn topic(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let name = String::from_utf8_lossy(message.param(0).unwrap_or_default()).into_owned();
    let Some(text) = message.param(1) else {
        let found = ctx
            .network()
            .channel(&name)
            .map(|c| (c.name.clone(), c.topic.clone()));
        match found {
            None => reply_refusal(ctx, Refusal::NoSuchChannel, &name, ""),
            Some((channel, Some(topic))) => send_topic(ctx, channel.as_str(), &topic),
            Some((channel, None)) => {
                let reply = ctx
                    .numeric(RPL_NOTOPIC)
                    .arg(channel.as_str())
                    .trailing(texts::NO_TOPIC_IS_SET);
                ctx.reply(reply);
            }
        }
        return;
    };
    let outcome = ctx.propose(Event::SetTopic {
        client: ctx.id,
        channel: name.as_str().into(),
        text: clip(text, TOPICLEN).into(),
    });
    if let Outcome::Refused(refusal) = outcome {
        reply_refusal(ctx, refusal, &name, "");
    }
}

/// Most users one KICK removes (ISUPPORT `TARGMAX=KICK:4`); further ones are
/// dropped silently, as Modern IRC ("KICK message") allows. Each is one event.
pub const MAX_KICK_TARGETS: usize = 4;

/// `KICK #c nick[,nick] [:reason]`, or `KICK #a,#b nick,nick` (as many channels as
/// users, paired in order; RFC 2812 §3.2.8): an operator removes members. Every
/// member, the kicked one included, sees one KICK per user (Modern IRC: "The server
/// MUST NOT send KICK messages with multiple channels or users to clients").
pub fn kick(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let channels: Vec<String> = targets(message.param(0).unwrap_or_default())
        .map(|name| String::from_utf8_lossy(name).into_owned())
        .collect();
    let nicks: Vec<String> = targets(message.param(1).unwrap_or_default())
        .take(MAX_KICK_TARGETS)
        .map(|nick| String::from_utf8_lossy(nick).into_owned())
        .collect();
    let paired = channels.len() == 1 || channels.len() == nicks.len().max(1);
    if channels.is_empty() || nicks.is_empty() || !paired {
        let reply = ctx
            .numeric(ERR_NEEDMOREPARAMS)
            .arg("KICK")
            .trailing(texts::NOT_ENOUGH_PARAMETERS);
        return ctx.reply(reply);
    }
    let reason: Box<[u8]> = match message.param(2).filter(|r| !r.is_empty()) {
        Some(reason) => clip(reason, KICKLEN).into(),
        None => ctx.client().nick().as_bytes().into(),
    };
    for (index, nick) in nicks.iter().enumerate() {
        let name = &channels[if channels.len() == 1 { 0 } else { index }];
        let outcome = ctx.propose(Event::Kick {
            client: ctx.id,
            channel: name.as_str().into(),
            target: nick.as_str().into(),
            reason: reason.clone(),
        });
        match outcome {
            Outcome::Refused(refusal @ (Refusal::NoSuchNick | Refusal::UserNotInChannel)) => {
                reply_refusal(ctx, refusal, name, nick);
            }
            Outcome::Refused(refusal) if channels.len() == 1 => {
                reply_refusal(ctx, refusal, name, nick);
                return;
            }
            Outcome::Refused(refusal) => reply_refusal(ctx, refusal, name, nick),
            _ => {}
        }
    }
}

/// `INVITE nick #c`: 341 to the inviter, an INVITE line to the invitee (and 301 to the
/// inviter if the invitee is away), and to members with `invite-notify`. The
/// invitation lets the invitee join once past `+i` and bans. `INVITE` alone lists
/// the client's pending invitations.
pub fn invite(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    match message.params().len() {
        0 => return send_invite_list(ctx),
        1 => {
            let reply = ctx
                .numeric(ERR_NEEDMOREPARAMS)
                .arg("INVITE")
                .trailing(texts::NOT_ENOUGH_PARAMETERS);
            return ctx.reply(reply);
        }
        _ => {}
    }
    let nick = String::from_utf8_lossy(message.param(0).unwrap_or_default()).into_owned();
    let name = String::from_utf8_lossy(message.param(1).unwrap_or_default()).into_owned();
    let outcome = ctx.propose(Event::Invite {
        client: ctx.id,
        target: nick.as_str().into(),
        channel: name.as_str().into(),
    });
    let (invitee, channel, away) = match outcome {
        Outcome::Invited {
            nick,
            channel,
            away,
            ..
        } => (nick, channel, away),
        Outcome::Refused(refusal) => {
            reply_refusal(ctx, refusal, &name, &nick);
            return;
        }
        _ => return,
    };
    let inviting = ctx
        .numeric(RPL_INVITING)
        .arg(invitee.as_str())
        .arg(channel.as_str());
    ctx.reply(inviting);
    if let Some(away) = &away {
        let reply = ctx.numeric(RPL_AWAY).arg(invitee.as_str()).trailing(away);
        ctx.reply(reply);
    }
}

/// 336 for each channel the client is invited to and has not joined, then 337
/// (Modern IRC, INVITE without parameters). Reads every channel of this shard's
/// replica, as LIST does.
fn send_invite_list(ctx: &mut Ctx<'_>) {
    let mut channels: Vec<String> = ctx
        .network()
        .channels()
        .filter(|channel| channel.has_invited(ctx.id))
        .map(|channel| channel.name.to_string())
        .collect();
    channels.sort_by_key(|name| name.to_ascii_lowercase());
    for channel in channels {
        let reply = ctx.numeric(RPL_INVITELIST).arg(&channel);
        ctx.reply(reply);
    }
    let end = ctx
        .numeric(RPL_ENDOFINVITELIST)
        .trailing(texts::END_OF_INVITE_LIST);
    ctx.reply(end);
}

/// `MODE target [modes [params]]`: channel modes here, user modes in `user.rs`.
pub fn mode(ctx: &mut Ctx<'_>, message: &Message<'_>) {
    let target = String::from_utf8_lossy(message.param(0).unwrap_or_default()).into_owned();
    if target.starts_with('#') {
        channel_mode(ctx, message, &target);
    } else {
        super::user::user_mode(ctx, message, &target);
    }
}

/// What one channel MODE line asks for.
#[derive(Debug, Default, PartialEq, Eq)]
struct ModeRequest {
    /// Changes to apply, in order.
    changes: Vec<ModeChange>,
    /// `b`, `e` or `I` without a mask: send that list.
    lists: Vec<MaskList>,
    /// Letters this server does not know (472 each).
    unknown: Vec<char>,
    /// A parameter that cannot be used (696 each): the letter and the parameter.
    invalid: Vec<(char, String)>,
}

/// Parses `+ov-b nick nick mask` style mode strings. At most [`MAX_PARAM_MODES`]
/// changes that take a parameter are kept; `b`, `e` or `I` without a mask is a list
/// request.
fn parse_channel_modes(modes: &[u8], mut params: impl Iterator<Item = String>) -> ModeRequest {
    let mut request = ModeRequest::default();
    let mut add = true;
    let mut param_modes = 0;
    for &byte in modes {
        let letter = char::from(byte);
        let mask_list = MaskList::from_letter(letter);
        let takes_param = matches!(letter, 'o' | 'v' | 'k') || (letter == 'l' && add);
        if takes_param && param_modes >= MAX_PARAM_MODES {
            continue;
        }
        match letter {
            '+' => add = true,
            '-' => add = false,
            'i' | 'm' | 'n' | 's' | 't' => {
                request.changes.push(ModeChange::Flag { add, mode: letter })
            }
            'b' | 'e' | 'I' => match (params.next(), mask_list) {
                (None, Some(list)) => request.lists.push(list),
                (Some(_), _) if param_modes >= MAX_PARAM_MODES => {}
                (Some(mask), Some(list)) => {
                    param_modes += 1;
                    match canonical_ban_mask(&mask) {
                        Some(mask) => request.changes.push(ModeChange::Mask { list, add, mask }),
                        None => request.invalid.push((letter, mask)),
                    }
                }
                (_, None) => {}
            },
            'o' | 'v' => {
                if let Some(nick) = params.next() {
                    param_modes += 1;
                    request.changes.push(ModeChange::Member {
                        add,
                        mode: letter,
                        nick,
                    });
                }
            }
            'k' if add => {
                if let Some(key) = params.next() {
                    param_modes += 1;
                    if is_valid_key(&key) {
                        request.changes.push(ModeChange::Key { add, key });
                    } else {
                        request.invalid.push(('k', key));
                    }
                }
            }
            'k' => {
                // `-k` may or may not repeat the key (clients do both); it is ignored.
                params.next();
                param_modes += 1;
                request.changes.push(ModeChange::Key {
                    add,
                    key: String::new(),
                });
            }
            'l' if add => {
                if let Some(limit) = params.next() {
                    param_modes += 1;
                    match limit.parse::<usize>() {
                        Ok(n) if n > 0 => request.changes.push(ModeChange::Limit(Some(n))),
                        _ => request.invalid.push(('l', limit)),
                    }
                }
            }
            'l' => request.changes.push(ModeChange::Limit(None)),
            _ => request.unknown.push(letter),
        }
    }
    request
}

/// A key must fit in one middle parameter and in a JOIN key list.
fn is_valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= KEYLEN
        && !key.starts_with(':')
        && !key
            .bytes()
            .any(|b| b == b' ' || b == b',' || b.is_ascii_control())
}

fn channel_mode(ctx: &mut Ctx<'_>, message: &Message<'_>, name: &str) {
    let Some(modes) = message.param(1) else {
        send_channel_modes(ctx, name);
        return;
    };
    let params = message.params()[2..]
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let request = parse_channel_modes(modes, params);
    let Some(channel) = ctx.network().channel(name).map(|c| c.name.clone()) else {
        reply_refusal(ctx, Refusal::NoSuchChannel, name, "");
        return;
    };
    let channel = channel.as_str();
    for letter in &request.unknown {
        let reply = ctx
            .numeric(ERR_UNKNOWNMODE)
            .arg(letter.to_string())
            .trailing(texts::IS_UNKNOWN_MODE_CHAR_TO_ME);
        ctx.reply(reply);
    }
    for list in request.lists {
        send_mask_list(ctx, channel, list);
    }
    for (letter, param) in &request.invalid {
        // A refused key is a password: it is shown as `*`, never repeated (Modern IRC,
        // "Key Channel Mode": a server SHOULD answer an invalid key with 696
        // ERR_INVALIDMODEPARAM; Ergo and irctest's `testKeyValidation` expect `*`).
        let shown = if *letter == 'k' { "*" } else { param.as_str() };
        let reply = ctx
            .numeric(ERR_INVALIDMODEPARAM)
            .arg(channel)
            .arg(letter.to_string())
            .arg(shown)
            .trailing(texts::INVALID_MODE_PARAMETER);
        ctx.reply(reply);
    }
    if request.changes.is_empty() {
        return;
    }
    let outcome = ctx.propose(Event::ChangeModes {
        client: ctx.id,
        channel: channel.into(),
        changes: request.changes,
    });
    let refused = match outcome {
        Outcome::ModesChanged { refused, .. } => refused,
        Outcome::Refused(refusal) => {
            reply_refusal(ctx, refusal, channel, "");
            return;
        }
        _ => return,
    };
    for refusal in refused {
        match refusal {
            ModeRefusal::NoSuchNick(nick) => {
                reply_refusal(ctx, Refusal::NoSuchNick, channel, &nick)
            }
            ModeRefusal::UserNotInChannel(nick) => {
                reply_refusal(ctx, Refusal::UserNotInChannel, channel, &nick)
            }
            ModeRefusal::ListFull(list) => {
                // Modern IRC: `478 <client> <channel> <char> :Channel list is full`.
                let reply = ctx
                    .numeric(ERR_BANLISTFULL)
                    .arg(channel)
                    .arg(list.letter().to_string())
                    .trailing(texts::CHANNEL_LIST_IS_FULL);
                ctx.reply(reply);
            }
        }
    }
}

/// The `+...` string shown by MODE queries, letters in alphabetical order, and the
/// parameters that follow it in `324`: the key (or `<key>` for non-members, as
/// InspIRCd) and the limit.
fn mode_flags(modes: &ChannelModes, show_key: bool) -> (String, Vec<String>) {
    let mut flags = String::from("+");
    for (on, letter) in [
        (modes.invite_only, 'i'),
        (modes.key.is_some(), 'k'),
        (modes.limit.is_some(), 'l'),
        (modes.moderated, 'm'),
        (modes.no_external, 'n'),
        (modes.secret, 's'),
        (modes.topic_lock, 't'),
    ] {
        if on {
            flags.push(letter);
        }
    }
    let mut params = Vec::new();
    if let Some(key) = &modes.key {
        params.push(match show_key {
            true => key.to_string(),
            false => "<key>".to_owned(),
        });
    }
    if let Some(limit) = modes.limit {
        params.push(limit.to_string());
    }
    (flags, params)
}

/// 324 and 329; the key is shown to members only.
fn send_channel_modes(ctx: &mut Ctx<'_>, name: &str) {
    let found = ctx.network().channel(name).map(|c| {
        let (flags, params) = mode_flags(&c.modes, c.members.contains(ctx.id));
        (c.name.clone(), flags, params, c.created)
    });
    let Some((channel, flags, params, created)) = found else {
        reply_refusal(ctx, Refusal::NoSuchChannel, name, "");
        return;
    };
    let modes = params.iter().fold(
        ctx.numeric(RPL_CHANNELMODEIS)
            .arg(channel.as_str())
            .arg(&flags),
        |line, param| line.arg(param),
    );
    ctx.reply(modes);
    let created = ctx
        .numeric(RPL_CREATIONTIME)
        .arg(channel.as_str())
        .arg(created.to_string());
    ctx.reply(created);
}

/// One entry per line, then the end: 367/368 for bans, 348/349 for ban exceptions,
/// 346/347 for invite exceptions. Anyone may ask, as for bans (the masks say no more
/// than the bans already do).
fn send_mask_list(ctx: &mut Ctx<'_>, channel: &str, list: MaskList) {
    let (entry_code, end_code, end_text) = match list {
        MaskList::Ban => (RPL_BANLIST, RPL_ENDOFBANLIST, "End of channel ban list"),
        MaskList::Except => (
            RPL_EXCEPTLIST,
            RPL_ENDOFEXCEPTLIST,
            "End of channel exception list",
        ),
        MaskList::InviteException => (
            RPL_INVEXLIST,
            RPL_ENDOFINVEXLIST,
            "End of channel invite exception list",
        ),
    };
    let entries = ctx
        .network()
        .channel(channel)
        .map(|c| c.list(list).to_vec())
        .unwrap_or_default();
    for entry in entries {
        let reply = ctx
            .numeric(entry_code)
            .arg(channel)
            .arg(&*entry.mask)
            .arg(&*entry.set_by)
            .arg(entry.set_at.to_string());
        ctx.reply(reply);
    }
    let end = ctx.numeric(end_code).arg(channel).trailing(end_text);
    ctx.reply(end);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(modes: &str, params: &[&str]) -> ModeRequest {
        parse_channel_modes(modes.as_bytes(), params.iter().map(|p| p.to_string()))
    }

    #[test]
    fn signs_carry_over_and_parameters_are_taken_in_order() {
        let request = parse("+ov-b+l", &["bob", "carol", "bad", "10"]);
        assert_eq!(
            request.changes,
            vec![
                ModeChange::Member {
                    add: true,
                    mode: 'o',
                    nick: "bob".into()
                },
                ModeChange::Member {
                    add: true,
                    mode: 'v',
                    nick: "carol".into()
                },
                ModeChange::Mask {
                    list: MaskList::Ban,
                    add: false,
                    mask: "bad!*@*".into()
                },
                ModeChange::Limit(Some(10)),
            ]
        );
    }

    #[test]
    fn b_without_a_mask_lists_and_unknown_letters_are_reported() {
        let request = parse("b", &[]);
        assert!(request.lists == [MaskList::Ban] && request.changes.is_empty());
        let request = parse("eI", &[]);
        assert_eq!(request.lists, [MaskList::Except, MaskList::InviteException]);
        let request = parse("+tXz", &[]);
        assert_eq!(request.unknown, vec!['X', 'z']);
        assert_eq!(
            request.changes,
            vec![ModeChange::Flag {
                add: true,
                mode: 't'
            }]
        );
    }

    #[test]
    fn at_most_four_parameter_modes_per_line() {
        let request = parse("+vvvvv", &["a", "b", "c", "d", "e"]);
        assert_eq!(request.changes.len(), MAX_PARAM_MODES);
    }

    #[test]
    fn mode_queries_list_flags_alphabetically_and_hide_the_key_from_outsiders() {
        let modes = ChannelModes {
            key: Some("sesame".into()),
            limit: Some(10),
            ..ChannelModes::new_channel()
        };
        assert_eq!(
            mode_flags(&modes, true),
            (
                "+klnt".to_owned(),
                vec!["sesame".to_owned(), "10".to_owned()]
            )
        );
        assert_eq!(mode_flags(&modes, false).1[0], "<key>");
    }

    #[test]
    fn bad_keys_and_limits_are_refused() {
        let request = parse("+kl", &[":x", "zero"]);
        assert!(request.changes.is_empty());
        assert_eq!(
            request.invalid,
            vec![('k', ":x".to_owned()), ('l', "zero".to_owned())]
        );
        assert_eq!(parse("-k", &[]).changes.len(), 1, "-k needs no key");
    }
}
