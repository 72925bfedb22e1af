//! Invitations and the channel lists around them: IRCv3 `invite-notify`, the invite
//! list (`INVITE` alone, 336/337), invite exceptions (`+I`, INVEX) and ban exceptions
//! (`+e`, EXCEPTS), as the exchanges in Modern IRC and IRCv3.

mod common;

use common::{has_numeric, join_all, register_with_caps, Client};

/// The server's own prefix in replies.
const S: &str = ":ringchat.local";

e2e! {
    fn invite_notify_tells_members_who_could_have_invited(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let mut bob = register_with_caps(&server, "bob", "invite-notify");
        let mut carol = server.register("carol");
        let mut dave = server.register("dave");
        join_all("#c", &mut [&mut alice, &mut bob, &mut carol]);
        alice.send("INVITE dave #c");
        alice.expect(&format!("{S} 341 alice dave #c"));
        dave.expect(":alice!~alice@127.0.0.1 INVITE dave #c");
        bob.expect(":alice!~alice@127.0.0.1 INVITE dave #c");
        carol.expect_nothing();

        alice.send("MODE #c +i");
        let mode = ":alice!~alice@127.0.0.1 MODE #c +i";
        alice.expect(mode);
        bob.expect(mode);
        carol.expect(mode);
        let mut erin = server.register("erin");
        alice.send("INVITE erin #c");
        alice.expect_numeric("341");
        erin.expect(":alice!~alice@127.0.0.1 INVITE erin #c");
        bob.expect_nothing();

        alice.send("MODE #c +o bob");
        alice.expect(":alice!~alice@127.0.0.1 MODE #c +o bob");
        bob.expect(":alice!~alice@127.0.0.1 MODE #c +o bob");
        let _frank = server.register("frank");
        alice.send("INVITE frank #c");
        alice.expect_numeric("341");
        bob.expect(":alice!~alice@127.0.0.1 INVITE frank #c");
    }

    fn invite_alone_lists_pending_invitations(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let mut dave = server.register("dave");
        for channel in ["#b", "#a"] {
            alice.send(&format!("JOIN {channel}"));
            alice.skip_until(|line| has_numeric(line, "366"));
            alice.send(&format!("INVITE dave {channel}"));
            alice.expect_numeric("341");
            dave.expect(&format!(":alice!~alice@127.0.0.1 INVITE dave {channel}"));
        }
        dave.send("INVITE");
        dave.expect(&format!("{S} 336 dave #a"));
        dave.expect(&format!("{S} 336 dave #b"));
        dave.expect(&format!("{S} 337 dave :End of /INVITE list"));
        dave.send("JOIN #a");
        dave.skip_until(|line| has_numeric(line, "366"));
        dave.send("INVITE");
        dave.expect(&format!("{S} 336 dave #b"));
        dave.expect_numeric("337");
        dave.send("INVITE alice");
        dave.expect(&format!("{S} 461 dave INVITE :Not enough parameters"));
    }

    fn an_invite_exception_lets_matching_users_into_an_invite_only_channel(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let mut dave = server.register("dave");
        let mut erin = server.register("erin");
        alice.send("JOIN #c");
        alice.skip_until(|line| has_numeric(line, "366"));
        alice.send("MODE #c +iI dave");
        alice.expect(":alice!~alice@127.0.0.1 MODE #c +iI dave!*@*");
        alice.send("MODE #c I");
        let entry = alice.expect_numeric("346");
        assert!(entry.starts_with(&format!("{S} 346 alice #c dave!*@* alice ")), "{entry}");
        alice.expect(&format!("{S} 347 alice #c :End of channel invite exception list"));
        erin.send("JOIN #c");
        erin.expect(&format!("{S} 473 erin #c :Cannot join channel (+i)"));
        dave.send("JOIN #c");
        dave.expect(":dave!~dave@127.0.0.1 JOIN #c");
        alice.expect(":dave!~dave@127.0.0.1 JOIN #c");
    }

    fn a_ban_exception_lets_matching_users_past_bans(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let mut bob = server.register("bob");
        let mut carol = server.register("carol");
        alice.send("JOIN #c");
        alice.skip_until(|line| has_numeric(line, "366"));
        alice.send("MODE #c +be *!*@127.0.0.1 bob!*@*");
        alice.expect(":alice!~alice@127.0.0.1 MODE #c +be *!*@127.0.0.1 bob!*@*");
        alice.send("MODE #c e");
        alice.expect_numeric("348");
        alice.expect(&format!("{S} 349 alice #c :End of channel exception list"));
        carol.send("JOIN #c");
        carol.expect(&format!("{S} 474 carol #c :Cannot join channel (+b)"));
        bob.send("JOIN #c");
        bob.expect(":bob!~bob@127.0.0.1 JOIN #c");
        bob.skip_until(|line| has_numeric(line, "366"));
        alice.expect(":bob!~bob@127.0.0.1 JOIN #c");
        bob.send("PRIVMSG #c :still heard");
        alice.expect(":bob!~bob@127.0.0.1 PRIVMSG #c :still heard");
        alice.send("MODE #c -e bob!*@*");
        alice.expect(":alice!~alice@127.0.0.1 MODE #c -e bob!*@*");
        bob.expect(":alice!~alice@127.0.0.1 MODE #c -e bob!*@*");
        bob.send("PRIVMSG #c :now banned");
        bob.expect(&format!("{S} 404 bob #c :Cannot send to channel"));
    }

    fn invite_notify_reaches_members_on_every_shard(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let mut members: Vec<Client> = (0..12)
            .map(|i| register_with_caps(&server, &format!("m{i}"), "invite-notify"))
            .collect();
        let mut everyone: Vec<&mut Client> = vec![&mut alice];
        everyone.extend(members.iter_mut());
        join_all("#wide", &mut everyone);
        let mut dave = server.register("dave");
        alice.send("INVITE dave #wide");
        alice.expect_numeric("341");
        dave.expect(":alice!~alice@127.0.0.1 INVITE dave #wide");
        for member in &mut members {
            member.expect(":alice!~alice@127.0.0.1 INVITE dave #wide");
        }
    }

    fn a_full_exception_list_answers_478_with_its_letter(setup) {
        let server = setup.start_with(|config| config.flood_rate = 0.0);
        let mut alice = server.register("alice");
        alice.send("JOIN #c");
        alice.skip_until(|line| has_numeric(line, "366"));
        for batch in 0..25 {
            let masks: Vec<String> = (0..4).map(|i| format!("n{}!*@*", batch * 4 + i)).collect();
            alice.send(&format!("MODE #c +eeee {}", masks.join(" ")));
            alice.expect(&format!(":alice!~alice@127.0.0.1 MODE #c +eeee {}", masks.join(" ")));
        }
        alice.send("MODE #c +e late!*@*");
        alice.expect(&format!("{S} 478 alice #c e :Channel list is full"));
        alice.send("MODE #c +I late!*@*");
        alice.expect(":alice!~alice@127.0.0.1 MODE #c +I late!*@*");
    }
}
