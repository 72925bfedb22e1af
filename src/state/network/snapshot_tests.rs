//! Tests of [`Network::snapshot`] and [`Network::from_snapshot`]: a replica loaded from
//! a snapshot, on a node with another layout (another shard count, another node),
//! then applying the rest of the log, must reach what a replica that applied the
//! whole log reaches, outcome by outcome and in every observable detail; and corrupt
//! snapshots are errors, never panics.

use super::channel::MAX_BANS;
use super::whowas::WHOWAS_LIMIT;
use super::wire::corruptions;
use super::*;
use crate::scram::ScramKeys;
use crate::state::slab::SlotKey;
use std::sync::Arc;
use std::time::Instant;

fn client(node: u16, shard: u16, index: u32) -> ClientId {
    ClientId {
        node,
        shard,
        slot: SlotKey {
            index,
            generation: index % 3,
        },
    }
}

/// Named clients as (node, shard, slot index): nodes 0, 1 and 2 of a cluster.
const ALICE: (u16, u16, u32) = (0, 0, 1);
const BOB: (u16, u16, u32) = (0, 1, 1);
const CAROL: (u16, u16, u32) = (1, 0, 2);
const DAVE: (u16, u16, u32) = (0, 0, 2);
const ERIN: (u16, u16, u32) = (1, 1, 3);
const FRANK: (u16, u16, u32) = (1, 1, 4);
const GRACE: (u16, u16, u32) = (0, 0, 4);
const HEIDI: (u16, u16, u32) = (2, 1, 4);
const IVAN: (u16, u16, u32) = (0, 0, 5);
const MALLORY: (u16, u16, u32) = (2, 0, 5);

fn id((node, shard, index): (u16, u16, u32)) -> ClientId {
    client(node, shard, index)
}

/// Every client the tests use, with the lobby crowd.
fn everyone() -> Vec<ClientId> {
    let named = [
        ALICE, BOB, CAROL, DAVE, ERIN, FRANK, GRACE, HEIDI, IVAN, MALLORY,
    ];
    named
        .into_iter()
        .map(id)
        .chain((0..CROWD).map(crowd))
        .collect()
}

/// Every nickname the tests use.
fn nicks() -> Vec<String> {
    let named = [
        "alice", "bob", "Bobby", "carol", "dave", "erin", "frank", "grace", "Heidi", "ivan",
        "mallory", "nobody",
    ];
    named
        .into_iter()
        .map(String::from)
        .chain((0..CROWD).map(|i| format!("crowd{i}")))
        .chain((0..3).map(|i| format!("alice{i}")))
        .collect()
}

const CROWD: u32 = 12;

/// The lobby crowd, spread over every node and shard.
fn crowd(i: u32) -> ClientId {
    client((i % 3) as u16, (i / 3 % 2) as u16, 100 + i)
}

fn claim(who: ClientId, nick: &str) -> Event {
    Event::ClaimNick {
        client: who,
        nick: nick.into(),
    }
}

fn register(who: ClientId, host: &str, signon: u64) -> Event {
    Event::Register {
        client: who,
        user: "~u".into(),
        host: host.into(),
        address: host.into(),
        tls: false,
        realname: "Real Name".into(),
        activity: Arc::new(Activity::new(Instant::now(), signon)),
    }
}

fn join(who: ClientId, channel: &str, key: Option<&str>) -> Event {
    Event::Join {
        client: who,
        channel: channel.into(),
        key: key.map(|key| key.as_bytes().into()),
        channel_limit: 20,
    }
}

fn part(who: ClientId, channel: &str) -> Event {
    Event::Part {
        client: who,
        channel: channel.into(),
        reason: Some(b"later".as_slice().into()),
    }
}

fn modes(who: ClientId, channel: &str, changes: Vec<ModeChange>) -> Event {
    Event::ChangeModes {
        client: who,
        channel: channel.into(),
        changes,
    }
}

fn flag(add: bool, mode: char) -> ModeChange {
    ModeChange::Flag { add, mode }
}

fn mask(list: MaskList, add: bool, mask: &str) -> ModeChange {
    ModeChange::Mask {
        list,
        add,
        mask: mask.into(),
    }
}

fn member(add: bool, mode: char, nick: &str) -> ModeChange {
    ModeChange::Member {
        add,
        mode,
        nick: nick.into(),
    }
}

fn change_nick(who: ClientId, nick: &str) -> Event {
    Event::ChangeNick {
        client: who,
        nick: nick.into(),
    }
}

fn quit(who: ClientId) -> Event {
    Event::Quit {
        client: who,
        reason: "Quit: bye".into(),
    }
}

fn server_ban(target: BanTarget) -> ServerBan {
    ServerBan {
        target,
        reason: "abuse".into(),
        set_by: "grace".into(),
        set_at: 1_000,
        expires_at: Some(5_000),
    }
}

/// The log up to the snapshot: every kind of state a replica holds, including a
/// pending claim, used-up and pending invitations, members reordered by removals,
/// nick histories past the per-nick bound, and server bans.
fn history() -> Vec<Event> {
    let (alice, bob, carol, dave) = (id(ALICE), id(BOB), id(CAROL), id(DAVE));
    let (erin, frank, grace) = (id(ERIN), id(FRANK), id(GRACE));
    let mut log = Vec::new();
    for (who, nick, host) in [
        (alice, "alice", "192.0.2.1"),
        (bob, "bob", "192.0.2.2"),
        (carol, "carol", "192.0.2.3"),
        (dave, "dave", "192.0.2.4"),
        (erin, "erin", "192.0.2.5"),
        (frank, "frank", "192.0.2.6"),
        (grace, "grace", "192.0.2.7"),
        (id(MALLORY), "mallory", "bad.example"),
    ] {
        log.push(claim(who, nick));
        log.push(register(who, host, 1_000));
    }
    for i in 0..CROWD {
        log.push(claim(crowd(i), &format!("crowd{i}")));
        log.push(register(crowd(i), "198.51.100.1", 2_000 + u64::from(i)));
        log.push(join(crowd(i), "#lobby", None));
    }
    for i in (0..CROWD).step_by(3) {
        log.push(part(crowd(i), "#LOBBY"));
    }
    log.push(join(crowd(0), "#lobby", None));
    log.push(claim(id(HEIDI), "Heidi"));
    log.push(claim(id(IVAN), "ivan"));
    log.push(Event::ReleaseNick { client: id(IVAN) });
    log.push(join(alice, "#Rust", None));
    for who in [bob, carol, dave, erin] {
        log.push(join(who, "#rust", None));
    }
    log.push(modes(
        alice,
        "#rust",
        vec![
            ModeChange::Key {
                add: true,
                key: "sesame".into(),
            },
            ModeChange::Limit(Some(7)),
            mask(MaskList::Ban, true, "*!*@bad.*"),
            mask(MaskList::Ban, true, "*!*@192.0.2.66"),
            mask(MaskList::Except, true, "carol!*@*"),
            mask(MaskList::InviteException, true, "crowd1!*@*"),
            member(true, 'v', "bob"),
            member(true, 'o', "CAROL"),
            flag(true, 'm'),
            flag(true, 'i'),
            flag(true, 's'),
        ],
    ));
    log.push(Event::SetTopic {
        client: alice,
        channel: "#rust".into(),
        text: b"Rust \xff talk".as_slice().into(),
    });
    log.push(Event::Invite {
        client: alice,
        target: "frank".into(),
        channel: "#rust".into(),
    });
    log.push(Event::Invite {
        client: carol,
        target: "crowd2".into(),
        channel: "#rust".into(),
    });
    log.push(join(crowd(2), "#rust", Some("sesame")));
    log.push(Event::Invite {
        client: carol,
        target: "crowd6".into(),
        channel: "#rust".into(),
    });
    log.push(Event::SetAway {
        client: bob,
        message: Some(b"lunch".as_slice().into()),
    });
    log.push(Event::SetInvisible {
        client: carol,
        invisible: true,
    });
    log.push(Event::SetInvisible {
        client: crowd(3),
        invisible: true,
    });
    log.push(Event::SetBot {
        client: dave,
        bot: true,
    });
    log.push(Event::SetRealname {
        client: erin,
        realname: "Erin E.".into(),
    });
    log.push(Event::SetWallops {
        client: frank,
        wallops: true,
    });
    log.push(Event::SetOper {
        client: grace,
        oper: Some("admin".into()),
    });
    log.push(Event::AddBan {
        client: grace,
        ban: server_ban(BanTarget::User("~evil@*".into())),
    });
    log.push(Event::AddBan {
        client: grace,
        ban: server_ban(BanTarget::Address("203.0.113.0/24".parse().expect("net"))),
    });
    log.push(Event::Kill {
        client: grace,
        target: "dave".into(),
        reason: "spam".into(),
    });
    log.push(quit(dave));
    for round in 0..20 {
        let nick = if round % 2 == 0 { "Bobby" } else { "bob" };
        log.push(change_nick(bob, nick));
    }
    log.push(quit(erin));
    log.push(join(alice, "#quiet", None));
    log.push(join(bob, "#quiet", None));
    log.push(join(grace, "#quiet", None));
    log.push(Event::SetTopic {
        client: alice,
        channel: "#quiet".into(),
        text: b"shh".as_slice().into(),
    });
    log.push(Event::RegisterAccount {
        client: alice,
        account: "Alice".into(),
        password: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        scram: ScramKeys::derive(b"pencil", b"salt", 1),
    });
    log.push(Event::SetAccount {
        client: alice,
        account: Some("alice".into()),
    });
    log.push(Event::SetCertificate {
        client: alice,
        certfp: CERTFP.into(),
        add: true,
    });
    log.push(read_marker(alice, "#Rust", 2_000));
    log.push(read_marker(alice, "bob", 1_500));
    log
}

fn read_marker(client: ClientId, target: &str, millis: u64) -> Event {
    Event::SetReadMarker {
        client,
        target: target.into(),
        millis,
    }
}

/// A client certificate fingerprint the accounts in the log use.
const CERTFP: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// The log after the snapshot: events whose outcome depends on what the snapshot
/// carried (the claim, keys, limits, invitations, bans, exceptions, operators, member
/// order, WHOWAS order), then enough renames to push WHOWAS past its bound.
fn rest_of_log() -> Vec<Event> {
    let (alice, bob, carol, frank, grace) = (id(ALICE), id(BOB), id(CAROL), id(FRANK), id(GRACE));
    let mut log = vec![
        register(id(HEIDI), "192.0.2.8", 3_000),
        claim(id(IVAN), "heidi"),
        claim(id(IVAN), "ivan"),
        register(id(IVAN), "192.0.2.9", 3_001),
        join(frank, "#rust", None),
        join(frank, "#rust", Some("sesame")),
        join(id(MALLORY), "#rust", Some("sesame")),
        join(crowd(1), "#rust", Some("sesame")),
        join(crowd(4), "#rust", Some("sesame")),
        join(crowd(6), "#rust", Some("sesame")),
        join(id(IVAN), "#rust", Some("sesame")),
        Event::SetTopic {
            client: bob,
            channel: "#rust".into(),
            text: b"not an op".as_slice().into(),
        },
        modes(
            carol,
            "#rust",
            vec![
                member(false, 'v', "bob"),
                member(true, 'v', "nobody"),
                member(true, 'o', "frank"),
                ModeChange::Limit(None),
                flag(false, 'i'),
            ],
        ),
        join(id(MALLORY), "#rust", Some("sesame")),
        modes(
            carol,
            "#rust",
            vec![mask(MaskList::Ban, false, "*!*@BAD.*")],
        ),
        join(id(MALLORY), "#rust", Some("sesame")),
        join(crowd(4), "#rust", Some("sesame")),
        Event::Invite {
            client: bob,
            target: "grace".into(),
            channel: "#rust".into(),
        },
        Event::Kick {
            client: carol,
            channel: "#rust".into(),
            target: "alice".into(),
            reason: b"bye".as_slice().into(),
        },
        part(carol, "#rust"),
        quit(bob),
        part(crowd(5), "#lobby"),
        join(crowd(5), "#lobby", None),
        join(id(HEIDI), "#lobby", None),
        part(crowd(0), "#lobby"),
        Event::RemoveBan {
            client: grace,
            target: BanTarget::User("~evil@*".into()),
        },
        Event::RemoveBan {
            client: grace,
            target: BanTarget::User("~evil@*".into()),
        },
        Event::ReplaceBans {
            bans: vec![server_ban(BanTarget::User("~new@*".into()))],
        },
        Event::Wallops {
            client: grace,
            text: b"hello".as_slice().into(),
        },
        Event::SetOper {
            client: grace,
            oper: None,
        },
        Event::Wallops {
            client: grace,
            text: b"again".as_slice().into(),
        },
        Event::SetInvisible {
            client: carol,
            invisible: false,
        },
        quit(carol),
        quit(crowd(3)),
        part(alice, "#quiet"),
        change_nick(id(IVAN), "Bobby"),
        Event::node_lost(2, "node 2 went away"),
        Event::node_lost(2, "node 2 went away"),
        Event::node_lost(5, "never there"),
    ];
    // Outcomes that depend on the accounts the snapshot carried.
    log.extend([
        read_marker(alice, "#RUST", 1_000),
        read_marker(alice, "BOB", 1_500),
        read_marker(alice, "#lobby", 3_000),
        Event::RegisterAccount {
            client: bob,
            account: "ALICE".into(),
            password: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            scram: ScramKeys::derive(b"pencil", b"salt", 1),
        },
        Event::SetCertificate {
            client: bob,
            certfp: CERTFP.into(),
            add: true,
        },
        Event::SetAccount {
            client: bob,
            account: Some("ALICE".into()),
        },
        Event::SetCertificate {
            client: bob,
            certfp: CERTFP.into(),
            add: true,
        },
        Event::SetAccount {
            client: grace,
            account: Some("nobody".into()),
        },
        Event::Ghost {
            client: bob,
            target: "alice".into(),
        },
        Event::SetCertificate {
            client: alice,
            certfp: CERTFP.into(),
            add: false,
        },
        Event::SetAccount {
            client: alice,
            account: None,
        },
        // Refused (not logged in), then the owner's drop frees the name and the
        // certificate the snapshot carried.
        Event::DropAccount {
            client: alice,
            account: "alice".into(),
        },
        Event::DropAccount {
            client: bob,
            account: "alice".into(),
        },
        Event::RegisterAccount {
            client: alice,
            account: "alice".into(),
            password: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            scram: ScramKeys::derive(b"pencil", b"salt", 1),
        },
        Event::SetAccount {
            client: alice,
            account: Some("alice".into()),
        },
        Event::SetCertificate {
            client: alice,
            certfp: CERTFP.into(),
            add: true,
        },
    ]);
    for round in 0..WHOWAS_LIMIT + 100 {
        log.push(change_nick(alice, &format!("alice{}", round % 3)));
    }
    log.push(change_nick(alice, "alice"));
    log
}

/// A replica and the log position it has reached.
struct Replica {
    network: Network,
    seq: u64,
}

impl Replica {
    /// Applies `event` as the next log entry.
    fn apply(&mut self, event: Event) -> Outcome {
        self.seq += 1;
        self.network.apply(&Sequenced {
            seq: self.seq,
            origin: 0,
            proposal: 0,
            at_unix: 10_000 + self.seq,
            event,
        })
    }
}

/// Node 0 of the cluster, with 2 shards: where the snapshots are written.
const WRITER: Layout = Layout {
    node: 0,
    shard_count: 2,
};

fn replica_after_history(layout: Layout) -> Replica {
    let mut replica = Replica {
        network: Network::laid_out(layout),
        seq: 0,
    };
    for event in history() {
        replica.apply(event);
    }
    let alice = replica.network.user(id(ALICE)).expect("alice is a user");
    assert_eq!(
        alice.account.as_ref().map(CaselessKey::as_str),
        Some("Alice")
    );
    assert!(replica.network.account_by_certfp(CERTFP).is_some());
    replica
}

/// Users are the same but for where their activity clock lives: only its signon time
/// travels between nodes.
fn same_user(a: &User, b: &User) -> bool {
    a.nick.as_str() == b.nick.as_str()
        && a.user == b.user
        && a.host == b.host
        && a.realname == b.realname
        && a.channels
            .iter()
            .map(CaselessKey::as_str)
            .eq(b.channels.iter().map(CaselessKey::as_str))
        && a.away == b.away
        && a.invisible == b.invisible
        && a.bot == b.bot
        && a.oper == b.oper
        && a.wallops == b.wallops
        && a.account.as_ref().map(CaselessKey::as_str)
            == b.account.as_ref().map(CaselessKey::as_str)
        && a.activity.signon() == b.activity.signon()
}

fn same_outcome(a: &Outcome, b: &Outcome) -> bool {
    match (a, b) {
        (Outcome::Quit { user: a }, Outcome::Quit { user: b }) => same_user(a, b),
        (Outcome::NodeLost { users: a }, Outcome::NodeLost { users: b }) => {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|((a_id, a), (b_id, b))| a_id == b_id && same_user(a, b))
        }
        _ => a == b,
    }
}

/// A place as the layout means it, so replicas with different layouts compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Place {
    Shard(u16),
    Node(u16),
}

/// A channel's members place by place, each in NAMES order.
fn partitions(network: &Network, channel: &Channel) -> Vec<(Place, Vec<(ClientId, Membership)>)> {
    let layout = network.layout();
    (0..Layout::MAX_PLACES as u16)
        .filter_map(|place| {
            let members: Vec<_> = channel
                .members
                .iter()
                .filter(|(member, _)| layout.place(*member) == place)
                .collect();
            let place = match layout.remote_node(place) {
                Some(node) => Place::Node(node),
                None => Place::Shard(place),
            };
            (!members.is_empty()).then_some((place, members))
        })
        .collect()
}

/// How strictly members must agree.
#[derive(Clone, Copy, PartialEq)]
enum MemberOrder {
    /// In the same order in every place.
    Same,
    /// The same in every place, in any order (places that one replica merged from
    /// several of the writer's).
    AnyWithinPlace,
}

/// Everything a client could observe through either replica: nicks, users, channels
/// with their members place by place, LUSERS counts, WHOWAS, bans.
fn assert_same_state(a: &Network, b: &Network, order: MemberOrder) {
    assert_eq!(a.applied(), b.applied());
    let counts = |n: &Network| {
        (
            n.user_count(),
            n.invisible_count(),
            n.oper_count(),
            n.peak_user_count(),
            n.channel_count(),
            n.whowas().len(),
        )
    };
    assert_eq!(counts(a), counts(b), "LUSERS counts and sizes");
    for nick in nicks() {
        assert_eq!(a.nick_owner(&nick), b.nick_owner(&nick), "owner of {nick}");
        assert_eq!(
            a.whowas().lookup(&nick).collect::<Vec<_>>(),
            b.whowas().lookup(&nick).collect::<Vec<_>>(),
            "WHOWAS {nick}"
        );
    }
    for (who, user) in a.users() {
        let theirs = b.user(who).expect("the same users");
        assert!(same_user(user, theirs), "{user:?} vs {theirs:?}");
    }
    for channel in a.channels() {
        let theirs = b.channel(channel.name.as_str()).expect("the same channels");
        assert_eq!(channel.name.as_str(), theirs.name.as_str());
        assert_eq!(channel.created, theirs.created);
        assert_eq!(channel.modes, theirs.modes);
        assert_eq!(channel.topic, theirs.topic);
        assert_eq!(channel.bans, theirs.bans);
        assert_eq!(channel.excepts, theirs.excepts);
        assert_eq!(channel.invite_exceptions, theirs.invite_exceptions);
        assert_eq!(channel.members.len(), theirs.members.len());
        let (mut ours, mut their) = (partitions(a, channel), partitions(b, theirs));
        if order == MemberOrder::AnyWithinPlace {
            for (_, members) in ours.iter_mut().chain(their.iter_mut()) {
                members.sort_unstable_by_key(|&(id, _)| id);
            }
        }
        assert_eq!(ours, their, "members of {} place by place", channel.name);
        for who in everyone() {
            assert_eq!(channel.has_invited(who), theirs.has_invited(who));
        }
    }
    assert_eq!(
        a.server_bans().iter().collect::<Vec<_>>(),
        b.server_bans().iter().collect::<Vec<_>>()
    );
    assert_eq!(
        a.accounts().collect::<Vec<_>>(),
        b.accounts().collect::<Vec<_>>()
    );
    for account in a.accounts().chain(b.accounts()) {
        let name = account.name.as_str();
        assert_eq!(
            a.read_markers(name),
            b.read_markers(name),
            "read markers of {name}"
        );
    }
    assert_eq!(
        a.account_by_certfp(CERTFP)
            .map(|account| account.name.as_str()),
        b.account_by_certfp(CERTFP)
            .map(|account| account.name.as_str())
    );
}

/// Applies the rest of the log to both replicas, comparing after every event (a
/// difference, in WHOWAS say, could otherwise heal before the end); the outcomes.
fn follow_the_log(
    original: &mut Replica,
    loaded: &mut Replica,
    order: MemberOrder,
) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for event in rest_of_log() {
        let theirs = loaded.apply(event.clone());
        let ours = original.apply(event.clone());
        assert!(
            same_outcome(&ours, &theirs),
            "{event:?}: {ours:?} vs {theirs:?}"
        );
        assert_same_state(&original.network, &loaded.network, order);
        outcomes.push(ours);
    }
    outcomes
}

#[test]
fn a_snapshot_loaded_with_another_shard_count_follows_the_log_like_the_original() {
    let mut original = replica_after_history(WRITER);
    let bytes = original.network.snapshot();
    let more_shards = Layout {
        node: 0,
        shard_count: 3,
    };
    let mut loaded = Replica {
        network: Network::from_snapshot(&bytes, more_shards).expect("loads"),
        seq: original.seq,
    };
    assert_eq!(loaded.network.applied(), original.seq);
    assert_same_state(&original.network, &loaded.network, MemberOrder::Same);
    let rewritten = loaded.network.snapshot();
    assert_eq!(loaded.network.whowas().lookup("erin").count(), 1);

    let outcomes = follow_the_log(&mut original, &mut loaded, MemberOrder::Same);
    assert!(rewritten == bytes, "the same state, the same snapshot");
    assert!(loaded.network.snapshot() == original.network.snapshot());

    // The rest of the log did depend on the snapshot: a sample of what it decided.
    let refusals: Vec<Refusal> = outcomes
        .iter()
        .filter_map(|outcome| match outcome {
            Outcome::Refused(refusal) => Some(*refusal),
            _ => None,
        })
        .collect();
    for expected in [
        Refusal::NickInUse,
        Refusal::BadKey,
        Refusal::Banned,
        Refusal::ChannelFull,
        Refusal::NotOperator,
        Refusal::NoSuchServerBan,
        Refusal::NoPrivileges,
        Refusal::InviteOnly,
    ] {
        assert!(refusals.contains(&expected), "{expected:?} in {refusals:?}");
    }
    assert_eq!(outcomes[0], Outcome::Registered, "the claim travelled");
    let lost: Vec<ClientId> = outcomes
        .iter()
        .flat_map(|outcome| match outcome {
            Outcome::NodeLost { users } => users.iter().map(|&(id, _)| id).collect(),
            _ => Vec::new(),
        })
        .collect();
    let expected: Vec<ClientId> = [HEIDI, MALLORY]
        .map(id)
        .into_iter()
        .chain([2, 5, 8, 11].map(crowd))
        .collect();
    assert_eq!(
        lost.len(),
        expected.len(),
        "node 2's users quit once: {lost:?}"
    );
    assert!(expected.iter().all(|who| lost.contains(who)), "{lost:?}");
    assert_eq!(
        original.network.whowas().lookup("erin").count(),
        0,
        "WHOWAS went past its bound and forgot the oldest"
    );
}

/// Node 1 loads node 0's snapshot; it must agree with a node 1 that applied the
/// whole log, though node 0's two shards are one place on node 1 (so the members
/// there may stand in another order).
#[test]
fn a_snapshot_loaded_on_another_node_follows_the_log_like_that_node() {
    let node_one = Layout {
        node: 1,
        shard_count: 2,
    };
    let bytes = replica_after_history(WRITER).network.snapshot();
    let mut whole_log = replica_after_history(node_one);
    let mut loaded = Replica {
        network: Network::from_snapshot(&bytes, node_one).expect("loads"),
        seq: whole_log.seq,
    };
    assert_same_state(
        &whole_log.network,
        &loaded.network,
        MemberOrder::AnyWithinPlace,
    );
    follow_the_log(&mut whole_log, &mut loaded, MemberOrder::AnyWithinPlace);
}

#[test]
fn a_snapshot_whose_members_a_node_cannot_place_is_refused() {
    let bytes = replica_after_history(WRITER).network.snapshot();
    let crowded = Layout {
        node: 0,
        shard_count: 63,
    };
    let error = Network::from_snapshot(&bytes, crowded).expect_err("node 1 would be place 64");
    assert!(
        error
            .to_string()
            .contains("at place 64, past the 64 a node has"),
        "{error}"
    );
}

#[test]
fn an_empty_network_round_trips_in_a_few_bytes() {
    let empty = Network::new(4);
    let bytes = empty.snapshot();
    assert!(bytes.len() < 16, "{bytes:?}");
    let loaded = Network::from_snapshot(&bytes, Layout::standalone(1)).expect("loads");
    assert_eq!(loaded.user_count(), 0);
    assert_eq!(loaded.applied(), 0);
}

/// Each row breaks one invariant of a real replica before it is written; loading
/// must refuse it with a message naming the problem.
#[test]
fn snapshots_that_break_an_invariant_are_refused() {
    type Tamper = fn(&mut Network);
    let rows: Vec<(&str, Tamper)> = vec![
        ("lacks it", |n| {
            let rust = n.channels.get_mut(Caseless::new("#rust")).expect("#rust");
            rust.members.remove(id(ALICE));
        }),
        ("channels have", |n| {
            n.users.remove(&id(ALICE));
            n.nicks.remove(Caseless::new("alice"));
        }),
        ("lists channel 2 of 2", |n| {
            n.channels.remove(Caseless::new("#quiet"));
        }),
        ("twice", |n| {
            let user = n.users.get_mut(&id(ALICE)).expect("alice");
            user.channels.push(CaselessKey::new("#quiet"));
        }),
        ("held twice", |n| {
            n.users.get_mut(&id(BOB)).expect("bob").nick = CaselessKey::new("ALICE");
        }),
        ("claims", |n| {
            n.claims.insert(id(ALICE), CaselessKey::new("spare"));
        }),
        ("has no members", |n| {
            let quiet = n.channels.get_mut(Caseless::new("#quiet")).expect("#quiet");
            for who in [ALICE, BOB, GRACE].map(id) {
                quiet.members.remove(who);
                let user = n.users.get_mut(&who).expect("a member");
                user.channels.retain(|c| c.as_str() != "#quiet");
            }
        }),
        ("more than", |n| {
            let quiet = n.channels.get_mut(Caseless::new("#quiet")).expect("#quiet");
            for i in 0..=MAX_BANS {
                std::sync::Arc::make_mut(&mut quiet.bans).push(Ban {
                    mask: format!("n{i}!*@*").into(),
                    set_by: "alice".into(),
                    set_at: 0,
                });
            }
        }),
    ];
    for (expected, tamper) in rows {
        let mut network = replica_after_history(WRITER).network;
        tamper(&mut network);
        let error = Network::from_snapshot(&network.snapshot(), WRITER).expect_err(expected);
        assert!(
            matches!(error, WireError::Inconsistent(_)) && error.to_string().contains(expected),
            "{expected}: {error}"
        );
    }
}

/// Truncated and corrupted snapshots decode to an error or to a replica that keeps
/// working: it applies joins, claims, renames, quits and node losses without
/// panicking.
#[test]
fn corrupt_snapshots_are_errors_or_working_replicas_never_panics() {
    let bytes = replica_after_history(WRITER).network.snapshot();
    let (mut refused, mut accepted) = (0, 0);
    for corrupt in corruptions(&bytes) {
        let Ok(network) = Network::from_snapshot(&corrupt, WRITER) else {
            refused += 1;
            continue;
        };
        accepted += 1;
        let mut replica = Replica {
            seq: network.applied(),
            network,
        };
        let mut ids: Vec<ClientId> = replica.network.users().map(|(who, _)| who).collect();
        ids.extend(everyone());
        for who in ids {
            replica.apply(join(who, "#rust", Some("sesame")));
            replica.apply(claim(who, "alice"));
            replica.apply(change_nick(who, "zed"));
            replica.apply(quit(who));
            replica.apply(Event::ReleaseNick { client: who });
        }
        for node in 0..3 {
            replica.apply(Event::node_lost(node, "gone"));
        }
        replica.apply(Event::ReplaceBans { bans: Vec::new() });
    }
    assert!(
        refused > 0 && accepted > 0,
        "{refused} refused, {accepted} accepted"
    );
}
