//! Chatting as clients see it: channel broadcast, private messages, who sees JOIN,
//! PART, QUIT and NICK, and per-sender order.

mod common;

use common::{has_numeric, join_all};

e2e! {
    fn a_channel_message_reaches_every_other_member_but_not_the_sender(setup) {
        let server = setup.start();
        let mut members: Vec<_> = ["alice", "bob", "carol", "dave"]
            .iter()
            .map(|nick| server.register(nick))
            .collect();
        join_all("#rust", &mut members.iter_mut().collect::<Vec<_>>());
        members[0].send("PRIVMSG #rust :hello, crab people");
        members[0].expect_nothing();
        for member in &mut members[1..] {
            member.expect(":alice!~alice@127.0.0.1 PRIVMSG #rust :hello, crab people");
        }
    }

    fn joining_shows_the_join_to_all_then_names_to_the_joiner(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        alice.send("JOIN #Rust");
        alice.expect(":alice!~alice@127.0.0.1 JOIN #Rust");
        alice.expect(":ringchat.local 353 alice = #Rust :@alice");
        alice.expect(":ringchat.local 366 alice #Rust :End of /NAMES list.");
        let mut bob = server.register("bob");
        bob.send("JOIN #rust");
        bob.expect(":bob!~bob@127.0.0.1 JOIN #Rust");
        let names = bob.expect_numeric("353");
        let mut listed: Vec<&str> = names.rsplit(':').next().unwrap_or("").split(' ').collect();
        listed.sort_unstable();
        assert_eq!(listed, ["@alice", "bob"]);
        bob.expect_numeric("366");
        alice.expect(":bob!~bob@127.0.0.1 JOIN #Rust");
    }

    fn join_several_channels_and_join_zero_leaves_them_all(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        alice.send("JOIN #a,#b key1,key2");
        alice.expect(":alice!~alice@127.0.0.1 JOIN #a");
        alice.skip_until(|line| has_numeric(line, "366"));
        alice.expect(":alice!~alice@127.0.0.1 JOIN #b");
        alice.skip_until(|line| has_numeric(line, "366"));
        alice.send("JOIN 0");
        alice.expect(":alice!~alice@127.0.0.1 PART #a");
        alice.expect(":alice!~alice@127.0.0.1 PART #b");
        alice.send("NAMES #a");
        alice.expect(":ringchat.local 366 alice #a :End of /NAMES list.");
    }

    fn invisible_members_are_named_only_to_fellow_members(setup) {
        let server = setup.start();
        let mut ghost = server.register("ghost");
        ghost.send("MODE ghost +i");
        ghost.line();
        ghost.send("JOIN #haunt");
        ghost.skip_until(|line| has_numeric(line, "366"));
        let mut outsider = server.register("outsider");
        outsider.send("NAMES #haunt");
        outsider.expect(":ringchat.local 366 outsider #haunt :End of /NAMES list.");
        outsider.send("JOIN #haunt");
        outsider.expect(":outsider!~outsider@127.0.0.1 JOIN #haunt");
        let names = outsider.expect_numeric("353");
        assert!(names.contains("@ghost"), "{names}");
    }

    fn a_bad_channel_name_gets_476(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        alice.send("JOIN nohash");
        alice.expect(":ringchat.local 476 alice nohash :Bad Channel Mask");
    }

    fn part_is_seen_by_every_member_including_the_leaver(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let mut bob = server.register("bob");
        join_all("#c", &mut [&mut alice, &mut bob]);
        bob.send("PART #c :see you");
        bob.expect(":bob!~bob@127.0.0.1 PART #c :see you");
        alice.expect(":bob!~bob@127.0.0.1 PART #c :see you");
        bob.send("PART #c");
        bob.expect(":ringchat.local 442 bob #c :You're not on that channel");
        bob.send("PART #nowhere");
        bob.expect(":ringchat.local 403 bob #nowhere :No such channel");
    }

    fn an_empty_channel_is_gone(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        alice.send("JOIN #temp");
        alice.skip_until(|line| has_numeric(line, "366"));
        alice.send("PART #temp");
        alice.line();
        let mut bob = server.register("bob");
        bob.send("JOIN #temp");
        bob.expect(":bob!~bob@127.0.0.1 JOIN #temp");
        bob.expect(":ringchat.local 353 bob = #temp :@bob");
    }

    fn outsiders_cannot_send_to_a_channel(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let mut bob = server.register("bob");
        alice.send("JOIN #quiet");
        alice.skip_until(|line| has_numeric(line, "366"));
        bob.send("PRIVMSG #quiet :let me in");
        bob.expect(":ringchat.local 404 bob #quiet :Cannot send to channel");
        bob.send("PRIVMSG #void :anyone?");
        bob.expect(":ringchat.local 403 bob #void :No such channel");
        bob.send("NOTICE #quiet :notices get no errors");
        bob.expect_nothing();
        alice.expect_nothing();
    }

    fn private_messages_reach_the_nick_and_only_it(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let mut bob = server.register("bob");
        let mut carol = server.register("carol");
        alice.send("PRIVMSG Bob :psst");
        bob.expect(":alice!~alice@127.0.0.1 PRIVMSG bob :psst");
        alice.send("NOTICE bob,carol :both of you");
        bob.expect(":alice!~alice@127.0.0.1 NOTICE bob :both of you");
        carol.expect(":alice!~alice@127.0.0.1 NOTICE carol :both of you");
        alice.send("PRIVMSG nobody :hello?");
        alice.expect(":ringchat.local 401 alice nobody :No such nick/channel");
        alice.send("PRIVMSG bob :");
        alice.expect_numeric("412");
        carol.expect_nothing();
    }

    fn message_text_is_passed_through_as_bytes(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let mut bob = server.register("bob");
        alice.send_raw(b"PRIVMSG bob :caf\xe9 \xff\r\n");
        let raw = bob.read_line_bytes();
        assert_eq!(raw, b":alice!~alice@127.0.0.1 PRIVMSG bob :caf\xe9 \xff\r\n");
    }

    fn quit_is_seen_once_by_each_client_sharing_any_channel(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let mut bob = server.register("bob");
        let mut loner = server.register("loner");
        for channel in ["#one", "#two", "#three"] {
            join_all(channel, &mut [&mut alice, &mut bob]);
        }
        bob.send("QUIT :gone fishing");
        let closing = bob.expect_closed();
        assert!(closing.iter().any(|l| l.starts_with("ERROR :Closing Link: 127.0.0.1 (Quit: gone fishing)")), "{closing:?}");
        alice.expect(":bob!~bob@127.0.0.1 QUIT :Quit: gone fishing");
        alice.expect_nothing();
        loner.expect_nothing();
    }

    fn nick_change_is_seen_once_by_each_client_sharing_a_channel_and_by_the_user(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let mut bob = server.register("bob");
        let mut loner = server.register("loner");
        for channel in ["#one", "#two"] {
            join_all(channel, &mut [&mut alice, &mut bob]);
        }
        bob.send("NICK robert");
        bob.expect(":bob!~bob@127.0.0.1 NICK :robert");
        alice.expect(":bob!~bob@127.0.0.1 NICK :robert");
        alice.expect_nothing();
        loner.expect_nothing();
        alice.send("PRIVMSG robert :new name?");
        bob.expect(":alice!~alice@127.0.0.1 PRIVMSG robert :new name?");
        alice.send("NICK Robert");
        alice.expect(":ringchat.local 433 alice Robert :Nickname is already in use");
    }

    fn a_peer_that_vanishes_without_quit_is_seen_to_quit(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let mut bob = server.register("bob");
        join_all("#c", &mut [&mut alice, &mut bob]);
        bob.vanish();
        alice.expect(":bob!~bob@127.0.0.1 QUIT :Connection closed");
        let mut again = server.connect();
        again.send("NICK bob");
        again.send("USER bob 0 * :B");
        again.expect_numeric("001");
    }

    fn a_thousand_messages_reach_fifty_members_in_order(setup) {
        let server = setup.start_with(|c| c.flood_rate = 0.0);
        let mut members: Vec<_> = (0..50).map(|i| server.register(&format!("m{i}"))).collect();
        let mut sender = server.register("sender");
        let mut everyone: Vec<_> = members.iter_mut().collect();
        everyone.push(&mut sender);
        join_all("#order", &mut everyone);
        let burst: String = (0..1000).map(|i| format!("PRIVMSG #order :{i}\r\n")).collect();
        sender.send_raw(burst.as_bytes());
        for member in members.iter_mut() {
            for i in 0..1000 {
                member.expect(&format!(":sender!~sender@127.0.0.1 PRIVMSG #order :{i}"));
            }
        }
    }
}
