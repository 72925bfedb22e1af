//! Running a channel as clients see it: TOPIC, KICK, INVITE, channel and user MODE,
//! and the JOIN and message refusals that channel modes cause.
//!
//! Lines caused by two clients on different shards may reach a third in either order,
//! so each step waits until its effect was seen before the next client acts, and
//! [`sync`] proves that nothing from one sender reached another.

mod common;

use common::{has_numeric, join_all, Client};

/// The server's own prefix in replies.
const S: &str = ":ringchat.local";

/// `from` sends `to` a private line and `to` must read it next: per-sender order means
/// nothing `from` caused earlier is still on its way to `to`.
fn sync(from: &mut Client, to: &mut Client) {
    from.send(&format!("PRIVMSG {} :sync", to.nick));
    to.expect(&format!(":{} PRIVMSG {} :sync", from.source(), to.nick));
}

/// The last parameter of a numeric must be a plausible Unix time.
fn assert_timestamp(line: &str) {
    let last = line.rsplit(' ').next().unwrap_or("");
    let secs: u64 = last
        .parse()
        .unwrap_or_else(|_| panic!("timestamp in {line:?}"));
    assert!(secs > 1_600_000_000, "timestamp in {line:?}");
}

e2e! {
    // ---- TOPIC -------------------------------------------------------------------

    fn topic_is_queried_set_for_all_and_shown_to_joiners(setup) {
        let server = setup.start();
        let (mut alice, mut bob) = (server.register("alice"), server.register("bob"));
        join_all("#c", &mut [&mut alice, &mut bob]);
        alice.send("TOPIC #c");
        alice.expect(&format!("{S} 331 alice #c :No topic is set"));

        alice.send("TOPIC #c :Rust talk: no crabs harmed");
        alice.expect(":alice!~alice@127.0.0.1 TOPIC #c :Rust talk: no crabs harmed");
        bob.expect(":alice!~alice@127.0.0.1 TOPIC #c :Rust talk: no crabs harmed");

        bob.send("TOPIC #C");
        bob.expect(&format!("{S} 332 bob #c :Rust talk: no crabs harmed"));
        let who = bob.expect_numeric("333");
        assert!(who.starts_with(&format!("{S} 333 bob #c alice!~alice@127.0.0.1 ")), "{who}");
        assert_timestamp(&who);

        let mut carol = server.register("carol");
        carol.send("JOIN #c");
        carol.expect(":carol!~carol@127.0.0.1 JOIN #c");
        carol.expect(&format!("{S} 332 carol #c :Rust talk: no crabs harmed"));
        carol.expect_numeric("333");
        carol.expect_numeric("353");
        carol.expect_numeric("366");
    }

    fn topic_lock_lets_only_operators_set_the_topic(setup) {
        let server = setup.start();
        let (mut alice, mut bob) = (server.register("alice"), server.register("bob"));
        join_all("#c", &mut [&mut alice, &mut bob]);
        bob.send("TOPIC #c :mine now");
        bob.expect(&format!("{S} 482 bob #c :You're not channel operator"));

        alice.send("MODE #c -t");
        alice.expect(":alice!~alice@127.0.0.1 MODE #c -t");
        bob.expect(":alice!~alice@127.0.0.1 MODE #c -t");
        bob.send("TOPIC #c :mine now");
        bob.expect(":bob!~bob@127.0.0.1 TOPIC #c :mine now");
        alice.expect(":bob!~bob@127.0.0.1 TOPIC #c :mine now");
    }

    fn an_empty_topic_clears_it(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        join_all("#c", &mut [&mut alice]);
        alice.send("TOPIC #c :something");
        alice.expect(":alice!~alice@127.0.0.1 TOPIC #c :something");
        alice.send("TOPIC #c :");
        alice.expect(":alice!~alice@127.0.0.1 TOPIC #c :");
        alice.send("TOPIC #c");
        alice.expect(&format!("{S} 331 alice #c :No topic is set"));
    }

    fn topic_errors(setup) {
        let server = setup.start();
        let (mut alice, mut bob) = (server.register("alice"), server.register("bob"));
        join_all("#c", &mut [&mut alice]);
        bob.send("TOPIC");
        bob.expect(&format!("{S} 461 bob TOPIC :Not enough parameters"));
        bob.send("TOPIC #nowhere");
        bob.expect(&format!("{S} 403 bob #nowhere :No such channel"));
        bob.send("TOPIC #c :from outside");
        bob.expect(&format!("{S} 442 bob #c :You're not on that channel"));
        bob.send("TOPIC #c");
        bob.expect(&format!("{S} 331 bob #c :No topic is set"));
    }

    // ---- KICK --------------------------------------------------------------------

    fn kick_is_seen_by_every_member_and_the_kicked_one_is_out(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let mut bob = server.register("bob");
        let mut carol = server.register("carol");
        join_all("#c", &mut [&mut alice, &mut bob, &mut carol]);
        alice.send("KICK #c bob :behave");
        for member in [&mut alice, &mut bob, &mut carol] {
            member.expect(":alice!~alice@127.0.0.1 KICK #c bob :behave");
        }
        alice.send("PRIVMSG #c :bob is gone");
        carol.expect(":alice!~alice@127.0.0.1 PRIVMSG #c :bob is gone");
        sync(&mut alice, &mut bob);
        bob.send("PRIVMSG #c :let me back");
        bob.expect(&format!("{S} 404 bob #c :Cannot send to channel"));
        alice.send("NAMES #c");
        let names = alice.expect_numeric("353");
        assert!(!names.contains("bob"), "{names}");
    }

    fn kick_several_members_at_once(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let mut bob = server.register("bob");
        let mut carol = server.register("carol");
        join_all("#c", &mut [&mut alice, &mut bob, &mut carol]);
        alice.send("KICK #c bob,carol :bye");
        alice.expect(":alice!~alice@127.0.0.1 KICK #c bob :bye");
        alice.expect(":alice!~alice@127.0.0.1 KICK #c carol :bye");
        bob.expect(":alice!~alice@127.0.0.1 KICK #c bob :bye");
        carol.expect(":alice!~alice@127.0.0.1 KICK #c bob :bye");
        carol.expect(":alice!~alice@127.0.0.1 KICK #c carol :bye");
        sync(&mut alice, &mut bob);
    }

    fn kick_pairs_channels_with_users_and_drops_users_past_targmax(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let mut bob = server.register("bob");
        join_all("#a", &mut [&mut alice, &mut bob]);
        join_all("#b", &mut [&mut alice, &mut bob]);
        alice.send("KICK #a,#b bob,bob :twice");
        alice.expect(":alice!~alice@127.0.0.1 KICK #a bob :twice");
        alice.expect(":alice!~alice@127.0.0.1 KICK #b bob :twice");
        bob.expect(":alice!~alice@127.0.0.1 KICK #a bob :twice");
        bob.expect(":alice!~alice@127.0.0.1 KICK #b bob :twice");
        alice.send("KICK #a,#b bob :unpaired");
        alice.expect(&format!("{S} 461 alice KICK :Not enough parameters"));
        // TARGMAX=KICK:4: the fifth user and later ones are dropped silently.
        alice.send("KICK #a n1,n2,n3,n4,n5");
        for nick in ["n1", "n2", "n3", "n4"] {
            alice.expect(&format!("{S} 401 alice {nick} :No such nick/channel"));
        }
        alice.expect_nothing();
    }

    fn kick_without_a_reason_uses_the_kickers_nick(setup) {
        let server = setup.start();
        let (mut alice, mut bob) = (server.register("alice"), server.register("bob"));
        join_all("#c", &mut [&mut alice, &mut bob]);
        alice.send("KICK #C BOB");
        alice.expect(":alice!~alice@127.0.0.1 KICK #c bob :alice");
        bob.expect(":alice!~alice@127.0.0.1 KICK #c bob :alice");
    }

    fn kick_errors(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let mut bob = server.register("bob");
        let mut dave = server.register("dave");
        join_all("#c", &mut [&mut alice, &mut bob]);
        bob.send("KICK #c alice");
        bob.expect(&format!("{S} 482 bob #c :You're not channel operator"));
        alice.send("KICK #c dave");
        alice.expect(&format!("{S} 441 alice dave #c :They aren't on that channel"));
        alice.send("KICK #c nobody");
        alice.expect(&format!("{S} 401 alice nobody :No such nick/channel"));
        dave.send("KICK #c bob");
        dave.expect(&format!("{S} 442 dave #c :You're not on that channel"));
        dave.send("KICK #nowhere bob");
        dave.expect(&format!("{S} 403 dave #nowhere :No such channel"));
        dave.send("KICK #c");
        dave.expect(&format!("{S} 461 dave KICK :Not enough parameters"));
        bob.expect_nothing();
    }

    // ---- INVITE ------------------------------------------------------------------

    fn invite_lets_a_user_into_an_invite_only_channel(setup) {
        let server = setup.start();
        let (mut alice, mut bob) = (server.register("alice"), server.register("bob"));
        join_all("#c", &mut [&mut alice]);
        alice.send("MODE #c +i");
        alice.expect(":alice!~alice@127.0.0.1 MODE #c +i");
        bob.send("JOIN #c");
        bob.expect(&format!("{S} 473 bob #c :Cannot join channel (+i)"));

        alice.send("INVITE bob #c");
        alice.expect(&format!("{S} 341 alice bob #c"));
        bob.expect(":alice!~alice@127.0.0.1 INVITE bob #c");
        bob.send("JOIN #c");
        bob.expect(":bob!~bob@127.0.0.1 JOIN #c");
        bob.skip_until(|line| has_numeric(line, "366"));
        alice.expect(":bob!~bob@127.0.0.1 JOIN #c");
    }

    fn invite_errors(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let mut bob = server.register("bob");
        let mut dave = server.register("dave");
        join_all("#c", &mut [&mut alice, &mut bob]);
        alice.send("INVITE bob #c");
        alice.expect(&format!("{S} 443 alice bob #c :is already on channel"));
        alice.send("INVITE nobody #c");
        alice.expect(&format!("{S} 401 alice nobody :No such nick/channel"));
        alice.send("INVITE dave #nowhere");
        alice.expect(&format!("{S} 403 alice #nowhere :No such channel"));
        dave.send("INVITE alice #c");
        dave.expect(&format!("{S} 442 dave #c :You're not on that channel"));
        dave.send("INVITE alice");
        dave.expect(&format!("{S} 461 dave INVITE :Not enough parameters"));

        alice.send("MODE #c +i");
        alice.expect(":alice!~alice@127.0.0.1 MODE #c +i");
        bob.expect(":alice!~alice@127.0.0.1 MODE #c +i");
        bob.send("INVITE dave #c");
        bob.expect(&format!("{S} 482 bob #c :You're not channel operator"));
        dave.expect_nothing();
    }

    // ---- channel MODE --------------------------------------------------------------

    fn mode_query_shows_modes_and_creation_time(setup) {
        let server = setup.start();
        let (mut alice, mut bob) = (server.register("alice"), server.register("bob"));
        join_all("#c", &mut [&mut alice]);
        alice.send("MODE #c");
        alice.expect(&format!("{S} 324 alice #c +nt"));
        assert_timestamp(&alice.expect_numeric("329"));

        alice.send("MODE #c +kl sesame 5");
        alice.expect(":alice!~alice@127.0.0.1 MODE #c +kl sesame 5");
        alice.send("MODE #c");
        alice.expect(&format!("{S} 324 alice #c +klnt sesame 5"));
        alice.expect_numeric("329");
        bob.send("MODE #c");
        bob.expect(&format!("{S} 324 bob #c +klnt <key> 5"));
        bob.expect_numeric("329");
    }

    fn op_and_voice_are_broadcast_as_one_mode_line(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let mut bob = server.register("bob");
        let mut carol = server.register("carol");
        join_all("#c", &mut [&mut alice, &mut bob, &mut carol]);
        alice.send("MODE #c +ov BOB carol");
        for member in [&mut alice, &mut bob, &mut carol] {
            member.expect(":alice!~alice@127.0.0.1 MODE #c +ov bob carol");
        }
        alice.send("NAMES #c");
        let names = alice.expect_numeric("353");
        let mut listed: Vec<&str> = names.rsplit(':').next().unwrap_or("").split(' ').collect();
        listed.sort_unstable();
        assert_eq!(listed, ["+carol", "@alice", "@bob"]);
        alice.expect_numeric("366");

        bob.send("MODE #c -o+m-v alice carol");
        for member in [&mut bob, &mut alice, &mut carol] {
            member.expect(":bob!~bob@127.0.0.1 MODE #c -o+m-v alice carol");
        }
    }

    fn a_change_that_changes_nothing_is_not_announced(setup) {
        let server = setup.start();
        let (mut alice, mut bob) = (server.register("alice"), server.register("bob"));
        join_all("#c", &mut [&mut alice, &mut bob]);
        alice.send("MODE #c +nt-m");
        alice.expect_nothing();
        alice.send("MODE #c +tm");
        alice.expect(":alice!~alice@127.0.0.1 MODE #c +m");
        bob.expect(":alice!~alice@127.0.0.1 MODE #c +m");
    }

    fn moderated_channels_let_only_voiced_members_and_operators_speak(setup) {
        let server = setup.start();
        let (mut alice, mut bob) = (server.register("alice"), server.register("bob"));
        join_all("#c", &mut [&mut alice, &mut bob]);
        alice.send("MODE #c +m");
        alice.expect(":alice!~alice@127.0.0.1 MODE #c +m");
        bob.expect(":alice!~alice@127.0.0.1 MODE #c +m");
        bob.send("PRIVMSG #c :can anyone hear me");
        bob.expect(&format!("{S} 404 bob #c :Cannot send to channel"));
        alice.send("PRIVMSG #c :operators can");
        bob.expect(":alice!~alice@127.0.0.1 PRIVMSG #c :operators can");

        alice.send("MODE #c +v bob");
        alice.expect(":alice!~alice@127.0.0.1 MODE #c +v bob");
        bob.expect(":alice!~alice@127.0.0.1 MODE #c +v bob");
        bob.send("PRIVMSG #c :now I can");
        alice.expect(":bob!~bob@127.0.0.1 PRIVMSG #c :now I can");
        bob.expect_nothing();
    }

    fn no_external_messages_can_be_turned_off(setup) {
        let server = setup.start();
        let (mut alice, mut dave) = (server.register("alice"), server.register("dave"));
        join_all("#c", &mut [&mut alice]);
        dave.send("PRIVMSG #c :from outside");
        dave.expect(&format!("{S} 404 dave #c :Cannot send to channel"));
        alice.send("MODE #c -n");
        alice.expect(":alice!~alice@127.0.0.1 MODE #c -n");
        dave.send("PRIVMSG #c :from outside");
        alice.expect(":dave!~dave@127.0.0.1 PRIVMSG #c :from outside");
    }

    fn a_refused_key_is_never_repeated_in_696(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        join_all("#c", &mut [&mut alice]);
        alice.send(&format!("MODE #c +k :{}", "long".repeat(100)));
        alice.expect(&format!("{S} 696 alice #c k * :Invalid mode parameter"));
        alice.expect_nothing();
    }

    fn a_key_is_needed_to_join_a_keyed_channel(setup) {
        let server = setup.start();
        let (mut alice, mut bob) = (server.register("alice"), server.register("bob"));
        join_all("#c", &mut [&mut alice]);
        alice.send("MODE #c +k sesame");
        alice.expect(":alice!~alice@127.0.0.1 MODE #c +k sesame");
        bob.send("JOIN #c");
        bob.expect(&format!("{S} 475 bob #c :Cannot join channel (+k)"));
        bob.send("JOIN #c wrong");
        bob.expect(&format!("{S} 475 bob #c :Cannot join channel (+k)"));
        bob.send("JOIN #other,#c x,sesame");
        bob.expect(":bob!~bob@127.0.0.1 JOIN #other");
        bob.skip_until(|line| has_numeric(line, "366"));
        bob.expect(":bob!~bob@127.0.0.1 JOIN #c");
        bob.skip_until(|line| has_numeric(line, "366"));
        alice.expect(":bob!~bob@127.0.0.1 JOIN #c");

        alice.send("MODE #c -k *");
        alice.expect(":alice!~alice@127.0.0.1 MODE #c -k *");
        bob.expect(":alice!~alice@127.0.0.1 MODE #c -k *");
    }

    fn a_full_channel_refuses_joins(setup) {
        let server = setup.start();
        let (mut alice, mut bob) = (server.register("alice"), server.register("bob"));
        join_all("#c", &mut [&mut alice]);
        alice.send("MODE #c +l 1");
        alice.expect(":alice!~alice@127.0.0.1 MODE #c +l 1");
        bob.send("JOIN #c");
        bob.expect(&format!("{S} 471 bob #c :Cannot join channel (+l)"));
        alice.send("MODE #c -l");
        alice.expect(":alice!~alice@127.0.0.1 MODE #c -l");
        bob.send("JOIN #c");
        bob.expect(":bob!~bob@127.0.0.1 JOIN #c");
    }

    fn bans_are_listed_and_enforced_on_join_and_on_speaking(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let mut bob = server.register("bob");
        let mut dave = server.register("dave");
        join_all("#c", &mut [&mut alice, &mut bob]);
        alice.send("MODE #c +bb BOB d?ve!*@127.0.0.*");
        alice.expect(":alice!~alice@127.0.0.1 MODE #c +bb BOB!*@* d?ve!*@127.0.0.*");
        bob.expect(":alice!~alice@127.0.0.1 MODE #c +bb BOB!*@* d?ve!*@127.0.0.*");

        for query in ["MODE #c +b", "MODE #c b"] {
            bob.send(query);
            let first = bob.expect_numeric("367");
            assert!(first.starts_with(&format!("{S} 367 bob #c BOB!*@* alice ")), "{first}");
            assert_timestamp(&first);
            let second = bob.expect_numeric("367");
            assert!(second.starts_with(&format!("{S} 367 bob #c d?ve!*@127.0.0.* alice ")));
            bob.expect(&format!("{S} 368 bob #c :End of channel ban list"));
        }

        bob.send("PRIVMSG #c :am I banned?");
        bob.expect(&format!("{S} 404 bob #c :Cannot send to channel"));
        dave.send("JOIN #c");
        dave.expect(&format!("{S} 474 dave #c :Cannot join channel (+b)"));

        alice.send("MODE #c -b bob!*@*");
        alice.expect(":alice!~alice@127.0.0.1 MODE #c -b BOB!*@*");
        bob.expect(":alice!~alice@127.0.0.1 MODE #c -b BOB!*@*");
        bob.send("PRIVMSG #c :free again");
        alice.expect(":bob!~bob@127.0.0.1 PRIVMSG #c :free again");
    }

    fn mode_errors(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let mut bob = server.register("bob");
        let mut dave = server.register("dave");
        join_all("#c", &mut [&mut alice, &mut bob]);
        bob.send("MODE #c +m");
        bob.expect(&format!("{S} 482 bob #c :You're not channel operator"));
        dave.send("MODE #c +m");
        dave.expect(&format!("{S} 482 dave #c :You're not channel operator"));
        alice.send("MODE #c +Z");
        alice.expect(&format!("{S} 472 alice Z :is unknown mode char to me"));
        alice.send("MODE #c +o dave");
        alice.expect(&format!("{S} 441 alice dave #c :They aren't on that channel"));
        alice.send("MODE #c +v nobody");
        alice.expect(&format!("{S} 401 alice nobody :No such nick/channel"));
        alice.send("MODE #nowhere +m");
        alice.expect(&format!("{S} 403 alice #nowhere :No such channel"));
        alice.send("MODE");
        alice.expect(&format!("{S} 461 alice MODE :Not enough parameters"));
        bob.expect_nothing();
    }

    fn at_most_four_parameter_modes_are_applied_per_line(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        join_all("#c", &mut [&mut alice]);
        alice.send("MODE #c +bbbbbm a b c d e");
        alice.expect(":alice!~alice@127.0.0.1 MODE #c +bbbbm a!*@* b!*@* c!*@* d!*@*");
    }

    // ---- user MODE -----------------------------------------------------------------

    fn user_mode_invisible(setup) {
        let server = setup.start();
        let (mut alice, _bob) = (server.register("alice"), server.register("bob"));
        alice.send("MODE alice");
        alice.expect(&format!("{S} 221 alice +"));
        alice.send("MODE alice +i");
        alice.expect(":alice!~alice@127.0.0.1 MODE alice +i");
        alice.send("MODE Alice");
        alice.expect(&format!("{S} 221 alice +i"));
        alice.send("MODE alice +i");
        alice.expect_nothing();
        alice.send("MODE alice -i+x");
        alice.expect(&format!("{S} 501 alice :Unknown MODE flag"));
        alice.expect(":alice!~alice@127.0.0.1 MODE alice -i");
        alice.send("MODE bob");
        alice.expect(&format!("{S} 502 alice :Can't change mode for other users"));
        alice.send("MODE bob +i");
        alice.expect(&format!("{S} 502 alice :Can't change mode for other users"));
        alice.send("MODE nobody");
        alice.expect(&format!("{S} 401 alice nobody :No such nick/channel"));
    }
}
