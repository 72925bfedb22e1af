//! Channel modes as data, and the pure function that applies one change to a channel.
//! How modes are shown on the wire (`+ntk key`) is the commands' business.

use super::channel::{Ban, Channel, MAX_BANS};
use crate::state::ClientId;
use serde::{Deserialize, Serialize};

/// Channel modes that gate who may join, speak or set the topic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelModes {
    /// `+n`: only members may send to the channel (set on every new channel).
    pub no_external: bool,
    /// `+t`: only operators may set the topic (set on every new channel).
    pub topic_lock: bool,
    /// `+m`: only voiced members and operators may speak.
    pub moderated: bool,
    /// `+i`: JOIN needs an INVITE.
    pub invite_only: bool,
    /// `+s`: hidden from LIST, NAMES, WHO and WHOIS for non-members (Modern IRC
    /// "Secret Channel Mode").
    pub secret: bool,
    /// `+k`: JOIN needs this key.
    pub key: Option<Box<str>>,
    /// `+l`: JOIN is refused once the channel has this many members.
    pub limit: Option<usize>,
}

impl ChannelModes {
    /// The modes of a new channel, `+nt` (as Ergo and InspIRCd).
    pub fn new_channel() -> ChannelModes {
        ChannelModes {
            no_external: true,
            topic_lock: true,
            ..ChannelModes::default()
        }
    }
}

/// A channel's lists of `nick!user@host` masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MaskList {
    /// `+b`: matching users may not join, nor speak unless voiced.
    Ban,
    /// `+e` (ISUPPORT `EXCEPTS`): matching users are exempt from bans.
    Except,
    /// `+I` (ISUPPORT `INVEX`): matching users may join a `+i` channel uninvited.
    InviteException,
}

impl MaskList {
    /// Every list, in the order of ISUPPORT `CHANMODES`.
    pub const ALL: [MaskList; 3] = [MaskList::Ban, MaskList::Except, MaskList::InviteException];

    /// The mode letter.
    pub fn letter(self) -> char {
        match self {
            MaskList::Ban => 'b',
            MaskList::Except => 'e',
            MaskList::InviteException => 'I',
        }
    }

    /// The list with mode letter `letter`.
    pub fn from_letter(letter: char) -> Option<MaskList> {
        MaskList::ALL
            .into_iter()
            .find(|list| list.letter() == letter)
    }
}

/// One requested channel mode change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModeChange {
    /// `+i`, `-m`, ... (no parameter).
    Flag {
        /// Set (`+`) or unset (`-`).
        add: bool,
        /// One of `imnst`.
        mode: char,
    },
    /// `+k key` or `-k`.
    Key {
        /// Set or unset.
        add: bool,
        /// The key (ignored when unsetting).
        key: String,
    },
    /// `+l n` (`Some`) or `-l` (`None`).
    Limit(Option<usize>),
    /// `+b mask`, `-e mask`, `+I mask`, ...: a change to one of the mask lists.
    Mask {
        /// Which list.
        list: MaskList,
        /// Add or remove.
        add: bool,
        /// The canonical `nick!user@host` mask.
        mask: String,
    },
    /// `+o nick`, `-v nick`, ...
    Member {
        /// Give or take.
        add: bool,
        /// `o` or `v`.
        mode: char,
        /// The member's nickname (as registered, once applied).
        nick: String,
    },
}

impl ModeChange {
    /// Whether the change sets (`+`) rather than unsets.
    pub fn is_add(&self) -> bool {
        match self {
            ModeChange::Flag { add, .. }
            | ModeChange::Key { add, .. }
            | ModeChange::Mask { add, .. }
            | ModeChange::Member { add, .. } => *add,
            ModeChange::Limit(limit) => limit.is_some(),
        }
    }

    /// The mode letter.
    pub fn letter(&self) -> char {
        match self {
            ModeChange::Flag { mode, .. } | ModeChange::Member { mode, .. } => *mode,
            ModeChange::Key { .. } => 'k',
            ModeChange::Limit(_) => 'l',
            ModeChange::Mask { list, .. } => list.letter(),
        }
    }

    /// The parameter shown in the MODE line, if the change has one.
    pub fn param(&self) -> Option<String> {
        match self {
            ModeChange::Flag { .. } | ModeChange::Limit(None) => None,
            ModeChange::Key { add: true, key } => Some(key.clone()),
            ModeChange::Key { add: false, .. } => Some("*".to_owned()),
            ModeChange::Limit(Some(limit)) => Some(limit.to_string()),
            ModeChange::Mask { mask, .. } => Some(mask.clone()),
            ModeChange::Member { nick, .. } => Some(nick.clone()),
        }
    }
}

/// A mode change refused for its target, answered with a numeric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModeRefusal {
    /// `+o`/`+v` for a nickname nobody has (401).
    NoSuchNick(String),
    /// `+o`/`+v` for someone not on the channel (441).
    UserNotInChannel(String),
    /// `+b`, `+e` or `+I` past [`MAX_BANS`] entries (478).
    ListFull(MaskList),
}

/// Applies one change to `channel`: `Ok(Some(change))` as it should be announced,
/// `Ok(None)` when it changed nothing (as Ergo, such changes are not announced).
/// `member` is the resolved target of a `+o`/`+v` change with its registered nick.
pub fn apply_mode(
    channel: &mut Channel,
    change: &ModeChange,
    member: Option<(ClientId, &str)>,
    set_by: &str,
    now_unix: u64,
) -> Result<Option<ModeChange>, ModeRefusal> {
    let modes = &mut channel.modes;
    let changed = match change {
        ModeChange::Flag { add, mode } => {
            let flag = match mode {
                'i' => &mut modes.invite_only,
                'm' => &mut modes.moderated,
                'n' => &mut modes.no_external,
                's' => &mut modes.secret,
                't' => &mut modes.topic_lock,
                _ => return Ok(None),
            };
            std::mem::replace(flag, *add) != *add
        }
        ModeChange::Key { add: true, key } => {
            let key: Box<str> = key.as_str().into();
            modes.key.replace(key.clone()) != Some(key)
        }
        ModeChange::Key { add: false, .. } => modes.key.take().is_some(),
        ModeChange::Limit(limit) => std::mem::replace(&mut modes.limit, *limit) != *limit,
        ModeChange::Mask {
            list,
            add: true,
            mask,
        } => {
            let entries = channel.list_mut(*list);
            if entries
                .iter()
                .any(|entry| entry.mask.eq_ignore_ascii_case(mask))
            {
                false
            } else if entries.len() >= MAX_BANS {
                return Err(ModeRefusal::ListFull(*list));
            } else {
                entries.push(Ban {
                    mask: mask.as_str().into(),
                    set_by: set_by.into(),
                    set_at: now_unix,
                });
                true
            }
        }
        ModeChange::Mask {
            list,
            add: false,
            mask,
        } => {
            let entries = channel.list_mut(*list);
            let Some(index) = entries
                .iter()
                .position(|entry| entry.mask.eq_ignore_ascii_case(mask))
            else {
                return Ok(None);
            };
            let removed = entries.remove(index);
            return Ok(Some(ModeChange::Mask {
                list: *list,
                add: false,
                mask: removed.mask.into(),
            }));
        }
        ModeChange::Member { add, mode, nick } => {
            let Some((member, registered)) = member else {
                return Err(ModeRefusal::NoSuchNick(nick.clone()));
            };
            let Some(membership) = channel.members.get_mut(member) else {
                return Err(ModeRefusal::UserNotInChannel(registered.to_owned()));
            };
            let status = if *mode == 'o' {
                &mut membership.op
            } else {
                &mut membership.voice
            };
            if std::mem::replace(status, *add) == *add {
                return Ok(None);
            }
            return Ok(Some(ModeChange::Member {
                add: *add,
                mode: *mode,
                nick: registered.to_owned(),
            }));
        }
    };
    Ok(changed.then(|| change.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::network::channel::Membership;
    use crate::state::slab::SlotKey;

    fn member() -> ClientId {
        ClientId {
            node: 0,
            shard: 0,
            slot: SlotKey {
                index: 1,
                generation: 0,
            },
        }
    }

    fn channel() -> Channel {
        let mut channel = Channel::new("#c", 0, super::super::Layout::standalone(1));
        channel
            .members
            .insert(member(), Membership::default(), "bob");
        channel
    }

    fn flag(add: bool, mode: char) -> ModeChange {
        ModeChange::Flag { add, mode }
    }

    fn ban(add: bool, mask: &str) -> ModeChange {
        ModeChange::Mask {
            list: MaskList::Ban,
            add,
            mask: mask.into(),
        }
    }

    fn voice(nick: &str) -> ModeChange {
        ModeChange::Member {
            add: true,
            mode: 'v',
            nick: nick.into(),
        }
    }

    /// Each row: a change applied to a fresh `+nt` channel with one plain member
    /// `bob`, after `setup`; what is announced, or why it is refused.
    #[test]
    fn each_change_is_announced_only_when_it_changes_something() {
        type Expected = Result<Option<ModeChange>, ModeRefusal>;
        type Row<'a> = (
            Vec<ModeChange>,
            ModeChange,
            Option<(ClientId, &'a str)>,
            Expected,
        );
        let bob = Some((member(), "bob"));
        let rows: Vec<Row> = vec![
            (vec![], flag(true, 'n'), None, Ok(None)),
            (vec![], flag(true, 'm'), None, Ok(Some(flag(true, 'm')))),
            (vec![], flag(false, 't'), None, Ok(Some(flag(false, 't')))),
            (vec![], flag(true, 'z'), None, Ok(None)),
            (
                vec![],
                ModeChange::Key {
                    add: false,
                    key: String::new(),
                },
                None,
                Ok(None),
            ),
            (
                vec![],
                ModeChange::Limit(Some(5)),
                None,
                Ok(Some(ModeChange::Limit(Some(5)))),
            ),
            (vec![], ModeChange::Limit(None), None, Ok(None)),
            (
                vec![],
                ban(true, "x!*@*"),
                None,
                Ok(Some(ban(true, "x!*@*"))),
            ),
            (vec![ban(true, "x!*@*")], ban(true, "X!*@*"), None, Ok(None)),
            (
                vec![ban(true, "Bob!*@*")],
                ban(false, "bob!*@*"),
                None,
                Ok(Some(ban(false, "Bob!*@*"))),
            ),
            (vec![], ban(false, "nobody!*@*"), None, Ok(None)),
            (vec![], voice("BOB"), bob, Ok(Some(voice("bob")))),
            (vec![voice("bob")], voice("bob"), bob, Ok(None)),
            (
                vec![],
                voice("carol"),
                None,
                Err(ModeRefusal::NoSuchNick("carol".into())),
            ),
            (
                vec![],
                voice("dave"),
                Some((
                    ClientId {
                        node: 0,
                        shard: 0,
                        slot: SlotKey {
                            index: 9,
                            generation: 0,
                        },
                    },
                    "dave",
                )),
                Err(ModeRefusal::UserNotInChannel("dave".into())),
            ),
        ];
        for (setup, change, target, expected) in rows {
            let mut channel = channel();
            for earlier in &setup {
                let target =
                    matches!(earlier, ModeChange::Member { .. }).then_some((member(), "bob"));
                apply_mode(&mut channel, earlier, target, "op", 0).expect("setup applies");
            }
            assert_eq!(
                apply_mode(&mut channel, &change, target, "op", 0),
                expected,
                "{change:?} after {setup:?}"
            );
        }
    }

    #[test]
    fn the_ban_list_is_bounded() {
        let mut channel = channel();
        for i in 0..MAX_BANS {
            apply_mode(
                &mut channel,
                &ban(true, &format!("n{i}!*@*")),
                None,
                "op",
                0,
            )
            .expect("room");
        }
        assert_eq!(
            apply_mode(&mut channel, &ban(true, "full!*@*"), None, "op", 0),
            Err(ModeRefusal::ListFull(MaskList::Ban))
        );
    }
}
