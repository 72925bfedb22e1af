//! The ordering promises of the network state, as clients see them across shards:
//! a client's own commands take effect in the order sent, a member that has left
//! gets nothing more, and NAMES always agrees with who receives channel messages,
//! even when a KICK and a re-JOIN race from different shards.
//!
//! With 4 shards the kernel spreads connections, so most pairs of clients here live
//! on different shards. Absence is proved without sleeps: a private message sent
//! after the channel message reaches its recipient after it (per-sender order), so
//! reading up to the private message settles whether the channel message came.

mod common;

use common::{has_numeric, join_all, Client};

/// Reads `client`'s lines up to the private message `token` from `from`; returns
/// them (without the token line).
fn read_until_private(client: &mut Client, from: &Client, token: &str) -> Vec<String> {
    let marker = format!(":{} PRIVMSG {} :{token}", from.source(), client.nick);
    let mut lines = client.skip_until(|line| line == marker);
    lines.pop();
    lines
}

/// Whether NAMES of `channel`, asked by `asker`, lists `nick`.
fn names_list(asker: &mut Client, channel: &str, nick: &str) -> bool {
    asker.send(&format!("NAMES {channel}"));
    let lines = asker.skip_until(|line| has_numeric(line, "366"));
    lines
        .iter()
        .filter(|line| has_numeric(line, "353"))
        .any(|line| {
            line.rsplit(" :")
                .next()
                .unwrap_or_default()
                .split(' ')
                .any(|name| name.trim_start_matches(['@', '+']) == nick)
        })
}

e2e! {
    fn a_join_and_a_message_in_one_write_reach_members_in_that_order(setup) {
        let server = setup.start_with(|c| c.flood_rate = 0.0);
        let mut members: Vec<Client> = (0..8).map(|i| server.register(&format!("m{i}"))).collect();
        join_all("#c", &mut members.iter_mut().collect::<Vec<_>>());
        let mut joiner = server.register("joiner");
        joiner.send_raw(b"JOIN #c\r\nPRIVMSG #c :first words\r\n");
        for member in &mut members {
            member.expect(":joiner!~joiner@127.0.0.1 JOIN #c");
            member.expect(":joiner!~joiner@127.0.0.1 PRIVMSG #c :first words");
        }
    }

    fn a_message_then_a_part_reach_members_in_that_order(setup) {
        let server = setup.start_with(|c| c.flood_rate = 0.0);
        let mut members: Vec<Client> = (0..8).map(|i| server.register(&format!("m{i}"))).collect();
        join_all("#c", &mut members.iter_mut().collect::<Vec<_>>());
        let (leaver, rest) = members.split_first_mut().expect("eight members");
        leaver.send_raw(b"PRIVMSG #c :last words\r\nPART #c :gone\r\nJOIN #c\r\n");
        for member in rest {
            member.expect(":m0!~m0@127.0.0.1 PRIVMSG #c :last words");
            member.expect(":m0!~m0@127.0.0.1 PART #c :gone");
            member.expect(":m0!~m0@127.0.0.1 JOIN #c");
        }
    }

    fn a_member_that_was_kicked_gets_no_further_channel_message(setup) {
        let server = setup.start_with(|c| c.flood_rate = 0.0);
        let mut op = server.register("op");
        let mut talkers: Vec<Client> = (0..4).map(|i| server.register(&format!("t{i}"))).collect();
        let mut victim = server.register("victim");
        let mut everyone: Vec<&mut Client> = vec![&mut op];
        everyone.extend(talkers.iter_mut());
        everyone.push(&mut victim);
        join_all("#c", &mut everyone);
        op.send("KICK #c victim :out");
        victim.expect(":op!~op@127.0.0.1 KICK #c victim :out");
        for (i, talker) in talkers.iter_mut().enumerate() {
            talker.skip_until(|line| line.contains(" KICK #c victim"));
            talker.send(&format!("PRIVMSG #c :after the kick {i}"));
            talker.send(&format!("PRIVMSG victim :sync {i}"));
            let seen = read_until_private(&mut victim, talker, &format!("sync {i}"));
            assert!(seen.is_empty(), "the kicked member still got {seen:?}");
        }
    }

    fn a_quit_is_seen_once_by_a_member_of_several_shared_channels(setup) {
        let server = setup.start_with(|c| c.flood_rate = 0.0);
        let mut quitter = server.register("quitter");
        let mut watchers: Vec<Client> = (0..6).map(|i| server.register(&format!("w{i}"))).collect();
        for channel in ["#a", "#b", "#c"] {
            let mut everyone: Vec<&mut Client> = vec![&mut quitter];
            everyone.extend(watchers.iter_mut());
            join_all(channel, &mut everyone);
        }
        quitter.send("QUIT :bye");
        for watcher in &mut watchers {
            watcher.expect(":quitter!~quitter@127.0.0.1 QUIT :Quit: bye");
            watcher.expect_nothing();
        }
    }
}

/// Each pair's operator kicks its victim while the victim re-joins at once, from
/// (mostly) different shards; whatever order the log puts them in, NAMES and
/// delivery must agree, and a member that is not listed must be able to join again.
fn kick_and_rejoin_races(setup: common::Setup) {
    const PAIRS: usize = 4;
    const ROUNDS: usize = 60;
    let server = setup.start_with(|c| c.flood_rate = 0.0);
    let mut pairs: Vec<(Client, Client)> = (0..PAIRS)
        .map(|p| {
            let mut op = server.register(&format!("op{p}"));
            let mut victim = server.register(&format!("v{p}"));
            join_all(&format!("#r{p}"), &mut [&mut op, &mut victim]);
            (op, victim)
        })
        .collect();
    let mut listed_rounds = 0;
    for round in 0..ROUNDS {
        for (p, (op, victim)) in pairs.iter_mut().enumerate() {
            let channel = format!("#r{p}");
            op.send(&format!("KICK {channel} {} :race {round}", victim.nick));
            victim.send(&format!("JOIN {channel}"));
            victim.barrier();
            op.barrier();
            let listed = names_list(op, &channel, &victim.nick);
            let probe = format!("probe {round}");
            op.send(&format!("PRIVMSG {channel} :{probe}"));
            op.send(&format!("PRIVMSG {} :sync {round}", victim.nick));
            let seen = read_until_private(victim, op, &format!("sync {round}"));
            let got_probe = seen
                .iter()
                .any(|line| line.ends_with(&format!(" :{probe}")));
            assert_eq!(
                got_probe, listed,
                "round {round}, pair {p}: NAMES lists the victim: {listed}, it got the message: {got_probe}; it saw {seen:?}"
            );
            if listed {
                listed_rounds += 1;
            } else {
                victim.send(&format!("JOIN {channel}"));
                let joined = victim.skip_until(|line| has_numeric(line, "366"));
                assert!(
                    joined[0].ends_with(&format!(" JOIN {channel}")),
                    "a JOIN after the kick must not be a silent no-op: {joined:?}"
                );
                op.skip_until(|line| line.ends_with(&format!(" JOIN {channel}")));
            }
        }
    }
    println!(
        "{listed_rounds} of {} races ended with the victim back in",
        PAIRS * ROUNDS
    );
}

#[test]
fn kick_and_rejoin_races_agree_with_names_on_io_uring() {
    kick_and_rejoin_races(common::Setup {
        io: ringchat::IoMode::Uring,
        shards: 4,
    });
}

#[test]
fn kick_and_rejoin_races_agree_with_names_on_epoll() {
    kick_and_rejoin_races(common::Setup {
        io: ringchat::IoMode::Epoll,
        shards: 4,
    });
}

#[test]
fn kick_and_rejoin_races_agree_with_names_on_the_ring_driver() {
    kick_and_rejoin_races(common::Setup {
        io: ringchat::IoMode::Ring,
        shards: 4,
    });
}
