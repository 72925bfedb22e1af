//! Table tests of [`Network::apply`]: each case is a history of events and what the
//! last one must do. No sockets, no shards, no clock: the function is pure.

use super::*;
use crate::state::slab::SlotKey;
use std::sync::Arc;
use std::time::Instant;

fn client(shard: u16, index: u32) -> ClientId {
    ClientId {
        node: 0,
        shard,
        slot: SlotKey {
            index,
            generation: 0,
        },
    }
}

const ALICE: ClientId = ClientId {
    node: 0,
    shard: 0,
    slot: SlotKey {
        index: 1,
        generation: 0,
    },
};
const BOB: ClientId = ClientId {
    node: 0,
    shard: 1,
    slot: SlotKey {
        index: 1,
        generation: 0,
    },
};
const CAROL: ClientId = ClientId {
    node: 0,
    shard: 1,
    slot: SlotKey {
        index: 2,
        generation: 0,
    },
};

/// A replica and the log position it has reached.
struct Replica {
    network: Network,
    seq: u64,
}

impl Replica {
    fn new() -> Replica {
        Replica {
            network: Network::new(2),
            seq: 0,
        }
    }

    /// Applies `event` as the next log entry.
    fn apply(&mut self, event: Event) -> Outcome {
        self.seq += 1;
        self.network.apply(&Sequenced {
            proposal: 0,
            seq: self.seq,
            origin: 0,
            at_unix: 1_000 + self.seq,
            event,
        })
    }

    /// Claims `nick` and registers `id` with it.
    fn register(&mut self, id: ClientId, nick: &str) {
        assert_eq!(
            self.apply(Event::ClaimNick {
                client: id,
                nick: nick.into()
            }),
            Outcome::NickClaimed
        );
        assert_eq!(
            self.apply(Event::Register {
                client: id,
                user: "~u".into(),
                host: "127.0.0.1".into(),
                address: "127.0.0.1".into(),
                tls: false,
                realname: "R".into(),
                activity: Arc::new(Activity::new(Instant::now(), 0)),
            }),
            Outcome::Registered
        );
    }

    /// alice, bob and carol registered; alice created `#c` and is its operator.
    fn with_channel() -> Replica {
        let mut replica = Replica::new();
        replica.register(ALICE, "alice");
        replica.register(BOB, "bob");
        replica.register(CAROL, "carol");
        replica.apply(join(ALICE, "#c"));
        replica
    }

    fn modes(&mut self, by: ClientId, changes: Vec<ModeChange>) -> Outcome {
        self.apply(Event::ChangeModes {
            client: by,
            channel: "#c".into(),
            changes,
        })
    }
}

fn join(client: ClientId, channel: &str) -> Event {
    Event::Join {
        client,
        channel: channel.into(),
        key: None,
        channel_limit: 50,
    }
}

fn join_with_key(client: ClientId, key: &str) -> Event {
    Event::Join {
        client,
        channel: "#c".into(),
        key: Some(key.as_bytes().into()),
        channel_limit: 50,
    }
}

fn part(client: ClientId) -> Event {
    Event::Part {
        client,
        channel: "#c".into(),
        reason: None,
    }
}

fn kick(client: ClientId, target: &str) -> Event {
    Event::Kick {
        client,
        channel: "#c".into(),
        target: target.into(),
        reason: Box::new(*b"bye"),
    }
}

fn flag(add: bool, mode: char) -> ModeChange {
    ModeChange::Flag { add, mode }
}

fn refused(refusal: Refusal) -> Outcome {
    Outcome::Refused(refusal)
}

fn joined() -> Outcome {
    Outcome::Joined {
        channel: crate::proto::CaselessKey::new("#c"),
    }
}

#[test]
fn nicknames_are_unique_ignoring_case_and_claims_are_released() {
    let mut replica = Replica::new();
    replica.register(ALICE, "Alice");
    assert_eq!(
        replica.apply(Event::ClaimNick {
            client: BOB,
            nick: "aLiCe".into()
        }),
        refused(Refusal::NickInUse)
    );
    assert_eq!(
        replica.apply(Event::ClaimNick {
            client: BOB,
            nick: "b1".into()
        }),
        Outcome::NickClaimed
    );
    assert_eq!(
        replica.apply(Event::ClaimNick {
            client: BOB,
            nick: "b2".into()
        }),
        Outcome::NickClaimed,
        "a second claim replaces the first"
    );
    assert_eq!(replica.network.nick_owner("b1"), None);
    assert_eq!(
        replica.apply(Event::ReleaseNick { client: BOB }),
        Outcome::NickReleased
    );
    assert_eq!(replica.network.nick_owner("b2"), None);
    assert_eq!(replica.network.nick_owner("ALICE"), Some(ALICE));
}

#[test]
fn a_nick_change_frees_the_old_nick_and_reports_the_old_source() {
    let mut replica = Replica::new();
    replica.register(ALICE, "alice");
    replica.register(BOB, "bob");
    assert_eq!(
        replica.apply(Event::ChangeNick {
            client: ALICE,
            nick: "BOB".into()
        }),
        refused(Refusal::NickInUse)
    );
    assert_eq!(
        replica.apply(Event::ChangeNick {
            client: ALICE,
            nick: "alicia".into()
        }),
        Outcome::NickChanged {
            old_source: "alice!~u@127.0.0.1".into()
        }
    );
    assert_eq!(replica.network.nick_owner("alice"), None);
    assert_eq!(replica.network.nick_owner("alicia"), Some(ALICE));
}

/// NAMES reads each member's nick from the channel's own entry: a nick change
/// rewrites it in every channel the user is in, and a snapshot loads it.
#[test]
fn a_channel_lists_its_members_by_their_current_nicks() {
    let mut replica = Replica::with_channel();
    replica.apply(join(BOB, "#c"));
    replica.apply(join(BOB, "#d"));
    replica.apply(Event::ChangeNick {
        client: BOB,
        nick: "Robert".into(),
    });
    let listed = |network: &Network, channel: &str| -> Vec<String> {
        let members = &network.channel(channel).expect("exists").members;
        members
            .iter_listed()
            .map(|(_, _, nick)| nick.expect("copied").to_owned())
            .collect()
    };
    assert_eq!(listed(&replica.network, "#c"), ["alice", "Robert"]);
    assert_eq!(listed(&replica.network, "#d"), ["Robert"]);
    let bytes = replica.network.snapshot();
    let loaded = Network::from_snapshot(&bytes, replica.network.layout()).expect("loads");
    assert_eq!(listed(&loaded, "#c"), ["alice", "Robert"]);
}

#[test]
fn first_joiner_is_operator_and_an_empty_channel_is_gone() {
    let mut replica = Replica::new();
    replica.register(ALICE, "alice");
    replica.register(BOB, "bob");
    assert_eq!(
        replica.apply(join(ALICE, "#Rust")),
        Outcome::Joined {
            channel: crate::proto::CaselessKey::new("#Rust")
        }
    );
    assert_eq!(replica.apply(join(ALICE, "#rust")), Outcome::Unchanged);
    replica.apply(join(BOB, "#RUST"));
    let channel = replica.network.channel("#rust").expect("exists");
    assert_eq!(channel.name.as_str(), "#Rust", "spelled as created");
    assert!(channel.members.get(ALICE).expect("member").op);
    assert!(!channel.members.get(BOB).expect("member").op);
    assert_eq!(channel.members.shards().iter().collect::<Vec<_>>(), [0, 1]);
    replica.apply(Event::Part {
        client: ALICE,
        channel: "#rust".into(),
        reason: None,
    });
    assert_eq!(
        replica.network.channel("#rust").map(|c| c.members.len()),
        Some(1)
    );
    let quit = replica.apply(Event::Quit {
        client: BOB,
        reason: "bye".into(),
    });
    let Outcome::Quit { user } = quit else {
        panic!("bob quits: {quit:?}");
    };
    assert_eq!(user.channels.len(), 1, "the QUIT's audience");
    assert!(replica.network.channel("#rust").is_none());
    assert_eq!(replica.network.nick_owner("bob"), None);
}

/// Each row: mode changes by alice, then bob's JOIN (with a key, or invited first).
#[test]
fn join_checks_limit_key_invite_and_bans_in_that_order() {
    let key = |key: &str| ModeChange::Key {
        add: true,
        key: key.into(),
    };
    let ban = ModeChange::Mask {
        list: MaskList::Ban,
        add: true,
        mask: "b*!*@*".into(),
    };
    type Row<'a> = (&'a str, Vec<ModeChange>, Option<&'a str>, bool, Outcome);
    let rows: Vec<Row> = vec![
        ("open", vec![], None, false, joined()),
        (
            "full",
            vec![ModeChange::Limit(Some(1))],
            None,
            false,
            refused(Refusal::ChannelFull),
        ),
        (
            "no key",
            vec![key("sesame")],
            None,
            false,
            refused(Refusal::BadKey),
        ),
        (
            "wrong key",
            vec![key("sesame")],
            Some("wrong"),
            false,
            refused(Refusal::BadKey),
        ),
        (
            "right key",
            vec![key("sesame")],
            Some("sesame"),
            false,
            joined(),
        ),
        (
            "full beats key",
            vec![ModeChange::Limit(Some(1)), key("k")],
            None,
            false,
            refused(Refusal::ChannelFull),
        ),
        (
            "invite only",
            vec![flag(true, 'i')],
            None,
            false,
            refused(Refusal::InviteOnly),
        ),
        (
            "invite beats banned",
            vec![ban.clone(), flag(true, 'i')],
            None,
            false,
            refused(Refusal::InviteOnly),
        ),
        (
            "banned",
            vec![ban.clone()],
            None,
            false,
            refused(Refusal::Banned),
        ),
        (
            "invited past +i and bans",
            vec![ban, flag(true, 'i')],
            None,
            true,
            joined(),
        ),
    ];
    for (name, changes, key, invited, expected) in rows {
        let mut replica = Replica::with_channel();
        replica.modes(ALICE, changes);
        if invited {
            replica.apply(Event::Invite {
                client: ALICE,
                target: "bob".into(),
                channel: "#c".into(),
            });
        }
        let event = match key {
            Some(key) => join_with_key(BOB, key),
            None => join(BOB, "#c"),
        };
        assert_eq!(replica.apply(event), expected, "{name}");
    }
}

#[test]
fn an_invitation_is_used_up_by_the_join() {
    let mut replica = Replica::with_channel();
    replica.modes(ALICE, vec![flag(true, 'i')]);
    replica.apply(Event::Invite {
        client: ALICE,
        target: "BOB".into(),
        channel: "#c".into(),
    });
    assert_eq!(replica.apply(join(BOB, "#c")), joined());
    replica.apply(part(BOB));
    assert_eq!(replica.apply(join(BOB, "#c")), refused(Refusal::InviteOnly));
}

#[test]
fn the_channel_limit_is_enforced_without_leaving_an_empty_channel() {
    let mut replica = Replica::new();
    replica.register(ALICE, "alice");
    let limited = |channel: &str| Event::Join {
        client: ALICE,
        channel: channel.into(),
        key: None,
        channel_limit: 1,
    };
    assert!(matches!(
        replica.apply(limited("#one")),
        Outcome::Joined { .. }
    ));
    assert_eq!(
        replica.apply(limited("#two")),
        refused(Refusal::TooManyChannels)
    );
    assert!(replica.network.channel("#two").is_none());
}

/// Each row: who sends to `#c` after which modes; whether the permission check of
/// the message path lets it through.
#[test]
fn who_may_speak_in_a_channel() {
    let voice_bob = ModeChange::Member {
        add: true,
        mode: 'v',
        nick: "bob".into(),
    };
    let ban_bob = ModeChange::Mask {
        list: MaskList::Ban,
        add: true,
        mask: "*!*@127.0.0.*".into(),
    };
    type Row<'a> = (
        &'a str,
        Vec<ModeChange>,
        bool,
        ClientId,
        Result<(), Refusal>,
    );
    let rows: Vec<Row> = vec![
        ("a member", vec![], true, BOB, Ok(())),
        (
            "an outsider under +n",
            vec![],
            false,
            BOB,
            Err(Refusal::CannotSend),
        ),
        (
            "an outsider under -n",
            vec![flag(false, 'n')],
            false,
            BOB,
            Ok(()),
        ),
        (
            "a member under +m",
            vec![flag(true, 'm')],
            true,
            BOB,
            Err(Refusal::CannotSend),
        ),
        (
            "the operator under +m",
            vec![flag(true, 'm')],
            true,
            ALICE,
            Ok(()),
        ),
        (
            "a voiced member under +m",
            vec![flag(true, 'm'), voice_bob.clone()],
            true,
            BOB,
            Ok(()),
        ),
        (
            "a banned member",
            vec![ban_bob.clone()],
            true,
            BOB,
            Err(Refusal::CannotSend),
        ),
        (
            "a banned, voiced member",
            vec![ban_bob, voice_bob],
            true,
            BOB,
            Ok(()),
        ),
    ];
    for (name, changes, bob_joins, sender, expected) in rows {
        let mut replica = Replica::with_channel();
        if bob_joins {
            replica.apply(join(BOB, "#c"));
        }
        replica.modes(ALICE, changes);
        assert_eq!(
            replica.network.can_send(sender, "#c").map(|_| ()),
            expected,
            "{name}"
        );
    }
    assert_eq!(
        Replica::with_channel()
            .network
            .can_send(BOB, "#none")
            .map(|_| ()),
        Err(Refusal::NoSuchChannel)
    );
}

/// Each row: an operation on `#c` by bob (a plain member unless noted) and its
/// refusal, in Modern IRC's order of checks.
#[test]
fn channel_operations_are_refused_with_the_right_reason() {
    let rows: Vec<(&str, bool, Event, Outcome)> = vec![
        (
            "kick by a non-member",
            false,
            kick(BOB, "alice"),
            refused(Refusal::NotOnChannel),
        ),
        (
            "kick by a non-operator",
            true,
            kick(BOB, "alice"),
            refused(Refusal::NotOperator),
        ),
        (
            "kick of nobody",
            true,
            kick(ALICE, "nobody"),
            refused(Refusal::NoSuchNick),
        ),
        (
            "kick of a non-member",
            true,
            kick(ALICE, "carol"),
            refused(Refusal::UserNotInChannel),
        ),
        (
            "topic by a non-member",
            false,
            Event::SetTopic {
                client: BOB,
                channel: "#c".into(),
                text: Box::new(*b"hi"),
            },
            refused(Refusal::NotOnChannel),
        ),
        (
            "topic by a non-operator under +t",
            true,
            Event::SetTopic {
                client: BOB,
                channel: "#c".into(),
                text: Box::new(*b"hi"),
            },
            refused(Refusal::NotOperator),
        ),
        (
            "invite of nobody",
            true,
            Event::Invite {
                client: ALICE,
                target: "nobody".into(),
                channel: "#c".into(),
            },
            refused(Refusal::NoSuchNick),
        ),
        (
            "invite to no channel",
            true,
            Event::Invite {
                client: ALICE,
                target: "carol".into(),
                channel: "#none".into(),
            },
            refused(Refusal::NoSuchChannel),
        ),
        (
            "invite by a non-member",
            false,
            Event::Invite {
                client: BOB,
                target: "carol".into(),
                channel: "#c".into(),
            },
            refused(Refusal::NotOnChannel),
        ),
        (
            "invite of a member",
            true,
            Event::Invite {
                client: ALICE,
                target: "bob".into(),
                channel: "#c".into(),
            },
            refused(Refusal::UserOnChannel),
        ),
        (
            "modes by a non-member",
            false,
            Event::ChangeModes {
                client: BOB,
                channel: "#c".into(),
                changes: vec![],
            },
            refused(Refusal::NotOperator),
        ),
        (
            "part by a non-member",
            false,
            part(BOB),
            refused(Refusal::NotOnChannel),
        ),
        (
            "part of no channel",
            false,
            Event::Part {
                client: BOB,
                channel: "#none".into(),
                reason: None,
            },
            refused(Refusal::NoSuchChannel),
        ),
    ];
    for (name, bob_joins, event, expected) in rows {
        let mut replica = Replica::with_channel();
        if bob_joins {
            replica.apply(join(BOB, "#c"));
        }
        assert_eq!(replica.apply(event), expected, "{name}");
    }
}

#[test]
fn a_kick_removes_the_member_on_both_sides() {
    let mut replica = Replica::with_channel();
    replica.apply(join(BOB, "#c"));
    assert_eq!(
        replica.apply(kick(ALICE, "BOB")),
        Outcome::Kicked {
            channel: crate::proto::CaselessKey::new("#c"),
            member: BOB,
            nick: crate::proto::CaselessKey::new("bob"),
        }
    );
    assert!(replica
        .network
        .user(BOB)
        .expect("registered")
        .channels
        .is_empty());
    let channel = replica.network.channel("#c").expect("alice stays");
    assert_eq!(channel.members.len(), 1);
    assert_eq!(channel.members.count_in(1), 0, "bob's shard has none");
}

#[test]
fn topics_record_setter_and_time_from_the_event_and_empty_clears() {
    let mut replica = Replica::with_channel();
    replica.apply(Event::SetTopic {
        client: ALICE,
        channel: "#C".into(),
        text: Box::new(*b"hello"),
    });
    let topic = replica
        .network
        .channel("#c")
        .and_then(|c| c.topic.clone())
        .expect("set");
    assert_eq!(
        (&*topic.text, &*topic.set_by, topic.set_at),
        (&b"hello"[..], "alice!~u@127.0.0.1", 1_000 + replica.seq)
    );
    replica.apply(Event::SetTopic {
        client: ALICE,
        channel: "#c".into(),
        text: Box::new([]),
    });
    assert!(replica
        .network
        .channel("#c")
        .expect("exists")
        .topic
        .is_none());
}

#[test]
fn mode_changes_report_what_changed_and_what_was_refused() {
    let mut replica = Replica::with_channel();
    replica.apply(join(BOB, "#c"));
    let voice = |nick: &str| ModeChange::Member {
        add: true,
        mode: 'v',
        nick: nick.into(),
    };
    assert_eq!(
        replica.modes(
            ALICE,
            vec![
                flag(true, 'n'),
                flag(true, 'm'),
                voice("BOB"),
                voice("carol"),
                voice("zed")
            ]
        ),
        Outcome::ModesChanged {
            channel: crate::proto::CaselessKey::new("#c"),
            applied: vec![flag(true, 'm'), voice("bob")],
            refused: vec![
                ModeRefusal::UserNotInChannel("carol".into()),
                ModeRefusal::NoSuchNick("zed".into())
            ],
        }
    );
}

#[test]
fn user_state_changes_and_lusers_counts() {
    let mut replica = Replica::new();
    replica.register(ALICE, "alice");
    let invisible = |on| Event::SetInvisible {
        client: ALICE,
        invisible: on,
    };
    assert_eq!(
        replica.apply(invisible(true)),
        Outcome::InvisibleChanged(true)
    );
    assert_eq!(replica.apply(invisible(true)), Outcome::Unchanged);
    assert_eq!(replica.network.invisible_count(), 1);
    replica.apply(Event::SetAway {
        client: ALICE,
        message: Some(Box::new(*b"lunch")),
    });
    replica.apply(Event::SetRealname {
        client: ALICE,
        realname: "Alice L.".into(),
    });
    let user = replica.network.user(ALICE).expect("registered");
    assert_eq!(
        (user.away.as_deref(), &*user.realname),
        (Some(&b"lunch"[..]), "Alice L.")
    );
    replica.apply(Event::Quit {
        client: ALICE,
        reason: "bye".into(),
    });
    assert_eq!(
        (
            replica.network.user_count(),
            replica.network.invisible_count()
        ),
        (0, 0)
    );
}

#[test]
fn events_about_clients_that_are_gone_change_nothing() {
    let mut replica = Replica::with_channel();
    let ghost = client(0, 99);
    for event in [
        join(ghost, "#c"),
        Event::Quit {
            client: ghost,
            reason: "x".into(),
        },
        Event::ChangeNick {
            client: ghost,
            nick: "g".into(),
        },
        Event::SetAway {
            client: ghost,
            message: None,
        },
        Event::Register {
            client: ghost,
            user: "~g".into(),
            host: "h".into(),
            address: "h".into(),
            tls: false,
            realname: "g".into(),
            activity: Arc::new(Activity::new(Instant::now(), 0)),
        },
    ] {
        assert_eq!(replica.apply(event), Outcome::Unchanged);
    }
    assert_eq!(replica.network.user_count(), 3);
}

/// Two replicas that apply the same log hold the same state: the property the
/// shards (and, later, machines) rely on.
#[test]
fn replicas_applying_the_same_log_agree() {
    let mut first = Replica::with_channel();
    let mut second = Replica::with_channel();
    let history = [
        join(BOB, "#c"),
        join(CAROL, "#d"),
        kick(ALICE, "bob"),
        join(BOB, "#c"),
        Event::ChangeNick {
            client: CAROL,
            nick: "caz".into(),
        },
        part(ALICE),
    ];
    for event in history {
        assert_eq!(first.apply(event.clone()), second.apply(event));
    }
    for replica in [&first, &second] {
        let channel = replica.network.channel("#c").expect("bob stays");
        assert_eq!(channel.members.iter().collect::<Vec<_>>().len(), 1);
        assert!(channel.members.contains(BOB));
    }
}

#[test]
fn the_user_peak_is_the_most_users_at_once() {
    let mut replica = Replica::new();
    replica.register(ALICE, "alice");
    replica.register(BOB, "bob");
    replica.apply(Event::Quit {
        client: BOB,
        reason: "bye".into(),
    });
    assert_eq!(replica.network.user_count(), 1);
    assert_eq!(replica.network.peak_user_count(), 2);
    replica.register(CAROL, "carol");
    assert_eq!(
        replica.network.peak_user_count(),
        2,
        "two again is no new peak"
    );
}

#[test]
fn secret_channels_show_to_members_only() {
    let mut replica = Replica::with_channel();
    assert!(replica
        .network
        .channel("#c")
        .expect("exists")
        .is_visible_to(BOB));
    replica.modes(ALICE, vec![flag(true, 's')]);
    let channel = replica.network.channel("#c").expect("exists");
    assert!(channel.modes.secret);
    assert!(channel.is_visible_to(ALICE) && !channel.is_visible_to(BOB));
}

#[test]
fn exceptions_pass_bans_and_invite_exceptions_pass_invite_only() {
    let mask = |list, mask: &str| ModeChange::Mask {
        list,
        add: true,
        mask: mask.into(),
    };
    type Row<'a> = (&'a str, Vec<ModeChange>, Outcome);
    let rows: Vec<Row> = vec![
        (
            "banned",
            vec![mask(MaskList::Ban, "*!*@127.0.0.1")],
            refused(Refusal::Banned),
        ),
        (
            "banned but excepted",
            vec![
                mask(MaskList::Ban, "*!*@127.0.0.1"),
                mask(MaskList::Except, "bob!*@*"),
            ],
            joined(),
        ),
        (
            "an exception for someone else",
            vec![
                mask(MaskList::Ban, "*!*@127.0.0.1"),
                mask(MaskList::Except, "carol!*@*"),
            ],
            refused(Refusal::Banned),
        ),
        (
            "invite only",
            vec![flag(true, 'i')],
            refused(Refusal::InviteOnly),
        ),
        (
            "invite only with an invite exception",
            vec![flag(true, 'i'), mask(MaskList::InviteException, "b*!*@*")],
            joined(),
        ),
        (
            "an invite exception does not pass a ban",
            vec![
                flag(true, 'i'),
                mask(MaskList::InviteException, "b*!*@*"),
                mask(MaskList::Ban, "bob!*@*"),
            ],
            refused(Refusal::Banned),
        ),
    ];
    for (case, changes, expected) in rows {
        let mut replica = Replica::with_channel();
        replica.modes(ALICE, changes);
        assert_eq!(replica.apply(join(BOB, "#c")), expected, "{case}");
    }
}

#[test]
fn invitations_are_listed_until_used() {
    let mut replica = Replica::with_channel();
    replica.apply(Event::Invite {
        client: ALICE,
        target: "bob".into(),
        channel: "#c".into(),
    });
    assert!(replica
        .network
        .channel("#c")
        .expect("exists")
        .has_invited(BOB));
    replica.apply(join(BOB, "#c"));
    assert!(!replica
        .network
        .channel("#c")
        .expect("exists")
        .has_invited(BOB));
}

#[test]
fn bot_mode_is_set_once_and_cleared() {
    let mut replica = Replica::new();
    replica.register(ALICE, "alice");
    let bot = |on| Event::SetBot {
        client: ALICE,
        bot: on,
    };
    assert_eq!(replica.apply(bot(true)), Outcome::BotChanged(true));
    assert_eq!(replica.apply(bot(true)), Outcome::Unchanged);
    assert!(replica.network.user(ALICE).expect("registered").bot);
    assert_eq!(replica.apply(bot(false)), Outcome::BotChanged(false));
    assert_eq!(
        replica.apply(Event::SetBot {
            client: BOB,
            bot: true
        }),
        Outcome::Unchanged,
        "nobody to change"
    );
}

#[test]
fn quits_and_nick_changes_are_remembered_for_whowas() {
    let mut replica = Replica::new();
    replica.register(ALICE, "alice");
    replica.apply(Event::ChangeNick {
        client: ALICE,
        nick: "alicia".into(),
    });
    replica.apply(Event::Quit {
        client: ALICE,
        reason: "bye".into(),
    });
    let history = replica.network.whowas();
    let alice: Vec<_> = history.lookup("ALICE").collect();
    assert_eq!(alice.len(), 1);
    assert_eq!((alice[0].nick.as_str(), &*alice[0].user), ("alice", "~u"));
    let alicia: Vec<u64> = history.lookup("alicia").map(|e| e.left_at).collect();
    assert_eq!(
        alicia,
        [1_000 + 4],
        "the time comes from the quit's log entry"
    );
}

fn set_oper(client: ClientId, oper: Option<&str>) -> Event {
    Event::SetOper {
        client,
        oper: oper.map(Box::from),
    }
}

#[test]
fn oper_status_is_counted_and_dropped_by_minus_o_and_quit() {
    let mut replica = Replica::new();
    replica.register(ALICE, "alice");
    replica.register(BOB, "bob");
    assert_eq!(
        replica.apply(set_oper(ALICE, Some("admin"))),
        Outcome::OperChanged(true)
    );
    assert_eq!(
        replica.apply(set_oper(ALICE, Some("admin"))),
        Outcome::Unchanged
    );
    assert_eq!(replica.network.oper_count(), 1);
    assert_eq!(
        replica.network.user(ALICE).and_then(|u| u.oper.as_deref()),
        Some("admin")
    );
    assert_eq!(
        replica.apply(set_oper(ALICE, None)),
        Outcome::OperChanged(false)
    );
    assert_eq!(replica.network.oper_count(), 0);
    replica.apply(set_oper(BOB, Some("admin")));
    assert_eq!(replica.network.oper_count(), 1);
    replica.apply(Event::Quit {
        client: BOB,
        reason: "bye".into(),
    });
    assert_eq!(replica.network.oper_count(), 0);
    assert_eq!(
        replica.apply(set_oper(BOB, Some("admin"))),
        Outcome::Unchanged
    );
}

#[test]
fn kill_and_wallops_need_an_oper_and_kill_an_existing_user() {
    let mut replica = Replica::new();
    replica.register(ALICE, "alice");
    replica.register(BOB, "bob");
    let kill = |target: &str| Event::Kill {
        client: ALICE,
        target: target.into(),
        reason: "r".into(),
    };
    let wallops = || Event::Wallops {
        client: ALICE,
        text: b"hi"[..].into(),
    };
    assert_eq!(replica.apply(kill("bob")), refused(Refusal::NoPrivileges));
    assert_eq!(replica.apply(wallops()), refused(Refusal::NoPrivileges));
    replica.apply(set_oper(ALICE, Some("admin")));
    assert_eq!(replica.apply(kill("nobody")), refused(Refusal::NoSuchNick));
    assert_eq!(
        replica.apply(kill("BOB")),
        Outcome::Killed {
            victim: BOB,
            nick: CaselessKey::new("bob"),
            by: CaselessKey::new("alice"),
        }
    );
    // The victim leaves with its own QUIT, proposed by its shard.
    assert!(replica.network.user(BOB).is_some());
    assert_eq!(
        replica.apply(wallops()),
        Outcome::Wallops {
            source: "alice!~u@127.0.0.1".to_owned()
        }
    );
}

#[test]
fn wallops_mode_changes_only_when_it_differs() {
    let mut replica = Replica::new();
    replica.register(ALICE, "alice");
    let set = |wallops| Event::SetWallops {
        client: ALICE,
        wallops,
    };
    assert_eq!(replica.apply(set(true)), Outcome::WallopsChanged(true));
    assert_eq!(replica.apply(set(true)), Outcome::Unchanged);
    assert_eq!(replica.apply(set(false)), Outcome::WallopsChanged(false));
}

#[test]
fn server_bans_need_an_oper_replace_by_target_and_are_removed_once() {
    let mut replica = Replica::new();
    replica.register(ALICE, "alice");
    let kline = |reason: &str| ServerBan {
        target: BanTarget::User("~x@*".into()),
        reason: reason.into(),
        set_by: "alice".into(),
        set_at: 0,
        expires_at: None,
    };
    let add = |ban| Event::AddBan { client: ALICE, ban };
    let remove = || Event::RemoveBan {
        client: ALICE,
        target: BanTarget::User("~x@*".into()),
    };
    assert_eq!(
        replica.apply(add(kline("a"))),
        refused(Refusal::NoPrivileges)
    );
    assert_eq!(replica.apply(remove()), refused(Refusal::NoPrivileges));
    replica.apply(set_oper(ALICE, Some("admin")));
    assert_eq!(replica.apply(add(kline("a"))), Outcome::BanAdded);
    assert_eq!(replica.apply(add(kline("b"))), Outcome::BanAdded);
    let bans: Vec<_> = replica.network.server_bans().iter().cloned().collect();
    assert_eq!(bans, [kline("b")]);
    assert_eq!(replica.apply(remove()), Outcome::BanRemoved);
    assert_eq!(replica.apply(remove()), refused(Refusal::NoSuchServerBan));
    assert_eq!(replica.network.server_bans().iter().count(), 0);
}

#[test]
fn a_reloaded_ban_list_replaces_the_old_and_reports_only_new_bans() {
    let mut replica = Replica::new();
    let ban = |mask: &str| ServerBan {
        target: BanTarget::User(mask.into()),
        reason: "r".into(),
        set_by: "file".into(),
        set_at: 0,
        expires_at: None,
    };
    replica.apply(Event::ReplaceBans {
        bans: vec![ban("~a@*")],
    });
    assert_eq!(
        replica.apply(Event::ReplaceBans {
            bans: vec![ban("~a@*"), ban("~b@*")],
        }),
        Outcome::BansReplaced {
            added: vec![ban("~b@*")]
        }
    );
    assert_eq!(replica.network.server_bans().iter().count(), 2);
}

#[test]
fn dropping_an_account_logs_out_its_users_and_frees_the_name() {
    let mut replica = Replica::new();
    replica.register(ALICE, "alice");
    replica.register(BOB, "bob");
    replica.register(CAROL, "carol");
    let keys = crate::scram::ScramKeys::derive(b"pencil", b"salt", 1);
    let register = |client| Event::RegisterAccount {
        client,
        account: "Alice".into(),
        password: "hash".into(),
        scram: keys.clone(),
    };
    let log_in = |client| Event::SetAccount {
        client,
        account: Some("alice".into()),
    };
    let drop = |client| Event::DropAccount {
        client,
        account: "ALICE".into(),
    };
    assert!(matches!(
        replica.apply(register(ALICE)),
        Outcome::AccountRegistered { .. }
    ));
    assert_eq!(replica.apply(drop(BOB)), refused(Refusal::NotLoggedIn));
    replica.apply(log_in(ALICE));
    replica.apply(log_in(BOB));
    replica.apply(Event::SetCertificate {
        client: ALICE,
        certfp: "ab".into(),
        add: true,
    });
    match replica.apply(drop(BOB)) {
        Outcome::AccountDropped { account, users } => {
            assert_eq!(account.name.as_str(), "Alice");
            assert_eq!(users, [ALICE, BOB]);
        }
        other => panic!("{other:?}"),
    }
    assert!(replica.network.account("alice").is_none());
    assert!(replica.network.account_by_certfp("ab").is_none());
    for id in [ALICE, BOB, CAROL] {
        assert_eq!(
            replica.network.user(id).map(|u| u.account.clone()),
            Some(None)
        );
    }
    assert_eq!(replica.apply(drop(ALICE)), refused(Refusal::NotLoggedIn));
    assert!(matches!(
        replica.apply(register(CAROL)),
        Outcome::AccountRegistered { .. }
    ));
    assert_eq!(
        replica
            .network
            .account("alice")
            .and_then(|a| a.scram.clone()),
        Some(keys)
    );
}

#[test]
fn read_markers_need_an_account_move_only_forward_and_go_with_it() {
    let mut replica = Replica::new();
    replica.register(ALICE, "alice");
    replica.register(BOB, "bob");
    let mark = |client, target: &str, millis| Event::SetReadMarker {
        client,
        target: target.into(),
        millis,
    };
    assert_eq!(
        replica.apply(mark(ALICE, "#rust", 10)),
        refused(Refusal::NotLoggedIn)
    );
    replica.apply(Event::RegisterAccount {
        client: ALICE,
        account: "Alice".into(),
        password: "hash".into(),
        scram: crate::scram::ScramKeys::derive(b"pencil", b"salt", 1),
    });
    for id in [ALICE, BOB] {
        replica.apply(Event::SetAccount {
            client: id,
            account: Some("alice".into()),
        });
    }
    assert_eq!(
        replica.apply(mark(ALICE, "#Rust", 10)),
        Outcome::ReadMarkerMoved {
            account: CaselessKey::new("Alice"),
            target: CaselessKey::new("#Rust"),
            millis: 10,
            dropped: None,
        }
    );
    // Another connection of the same account sees the same marker, and cannot
    // move it back.
    assert_eq!(
        replica.apply(mark(BOB, "#RUST", 9)),
        Outcome::ReadMarkerKept { millis: 10 }
    );
    assert_eq!(
        replica.apply(mark(BOB, "#rust", 10)),
        Outcome::ReadMarkerKept { millis: 10 }
    );
    assert_eq!(replica.network.read_marker("ALICE", "#rust"), Some(10));
    assert!(matches!(
        replica.apply(mark(BOB, "#rust", 11)),
        Outcome::ReadMarkerMoved { millis: 11, .. }
    ));
    assert_eq!(replica.network.read_marker("alice", "#rust"), Some(11));
    replica.apply(Event::DropAccount {
        client: ALICE,
        account: "alice".into(),
    });
    assert_eq!(replica.network.read_markers("alice"), None);
}

#[test]
fn an_account_keeps_a_bounded_number_of_read_markers() {
    use super::read_markers::MAX_READ_MARKERS;
    let mut replica = Replica::new();
    replica.register(ALICE, "alice");
    replica.apply(Event::RegisterAccount {
        client: ALICE,
        account: "alice".into(),
        password: "hash".into(),
        scram: crate::scram::ScramKeys::derive(b"pencil", b"salt", 1),
    });
    replica.apply(Event::SetAccount {
        client: ALICE,
        account: Some("alice".into()),
    });
    for n in 0..=MAX_READ_MARKERS as u64 {
        let outcome = replica.apply(Event::SetReadMarker {
            client: ALICE,
            target: format!("#c{n}").into(),
            millis: 100 + n,
        });
        let Outcome::ReadMarkerMoved { dropped, .. } = outcome else {
            panic!("{outcome:?}");
        };
        let expected = (n == MAX_READ_MARKERS as u64).then(|| CaselessKey::new("#c0"));
        assert_eq!(dropped, expected);
    }
    let markers = replica.network.read_markers("alice").expect("markers");
    assert_eq!(markers.len(), MAX_READ_MARKERS);
    assert_eq!(markers.get("#c0"), None);
    assert_eq!(markers.get("#c1"), Some(101));
}
