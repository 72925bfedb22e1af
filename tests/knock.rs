//! KNOCK as Solanum and InspIRCd answer it: a `+i`, `+k` or full channel's operators
//! hear who asks for an invitation (wherever they are), the knocker gets 711, and
//! the refusals are 713 (open), 714 (already in), 712 (too soon), 404 (banned) and
//! 403 (no such channel, or a secret one).

mod common;

use common::join_all;

/// The server's own prefix in replies.
const S: &str = ":ringchat.local";

e2e! {
    fn a_knock_reaches_the_operators_of_a_closed_channel_only(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let mut bob = server.register("bob");
        let mut knocker = server.register("knocker");
        join_all("#c", &mut [&mut alice, &mut bob]);
        knocker.send("KNOCK #c :let me in");
        knocker.expect(&format!("{S} 713 knocker #c :Channel is open"));

        alice.send("MODE #c +i");
        alice.expect(":alice!~alice@127.0.0.1 MODE #c +i");
        bob.expect(":alice!~alice@127.0.0.1 MODE #c +i");
        knocker.send("KNOCK #c :let me in");
        knocker.expect(&format!("{S} 711 knocker #c :Your KNOCK has been delivered"));
        alice.expect(&format!(
            "{S} NOTICE @#c :KNOCK: #c (knocker!~knocker@127.0.0.1 has asked for an invite: let me in)"
        ));
        // bob is not an operator of #c.
        bob.expect_nothing();
        knocker.send("KNOCK #c");
        knocker.expect(&format!("{S} 712 knocker #c :Too many KNOCKs (connection)"));
        alice.expect_nothing();

        bob.send("KNOCK #c");
        bob.expect(&format!("{S} 714 bob #c :You are already on that channel"));
        bob.send("KNOCK #nowhere");
        bob.expect(&format!("{S} 403 bob #nowhere :No such channel"));
    }

    fn a_key_or_a_full_limit_closes_a_channel_and_a_banned_user_may_not_knock(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let mut keyed = server.register("keyed");
        let mut banned = server.register("banned");
        alice.send("JOIN #k");
        alice.skip_until(|l| common::has_numeric(l, "366"));
        alice.send("MODE #k +kb secret banned!*@*");
        alice.expect(":alice!~alice@127.0.0.1 MODE #k +kb secret banned!*@*");
        keyed.send("KNOCK #k");
        keyed.expect(&format!("{S} 711 keyed #k :Your KNOCK has been delivered"));
        alice.expect(&format!(
            "{S} NOTICE @#k :KNOCK: #k (keyed!~keyed@127.0.0.1 has asked for an invite)"
        ));
        banned.send("KNOCK #k");
        banned.expect(&format!("{S} 404 banned #k :Cannot knock: you are banned"));

        alice.send("JOIN #full");
        alice.skip_until(|l| common::has_numeric(l, "366"));
        alice.send("MODE #full +l 1");
        alice.expect(":alice!~alice@127.0.0.1 MODE #full +l 1");
        let mut late = server.register("late");
        late.send("KNOCK #full");
        late.expect(&format!("{S} 711 late #full :Your KNOCK has been delivered"));
        alice.expect(&format!(
            "{S} NOTICE @#full :KNOCK: #full (late!~late@127.0.0.1 has asked for an invite)"
        ));

        alice.send("MODE #k +s");
        alice.expect(":alice!~alice@127.0.0.1 MODE #k +s");
        let mut outsider = server.register("outsider");
        outsider.send("KNOCK #k");
        outsider.expect(&format!("{S} 403 outsider #k :No such channel"));
    }
}
