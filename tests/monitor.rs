//! MONITOR and extended-monitor (IRCv3), as the exchanges in the specification:
//! watchers hear of a nick coming online or going offline wherever either lives.

mod common;

use common::{has_numeric, join_all, register_with_caps, Client};

/// The server's own prefix in replies.
const S: &str = ":ringchat.local";

e2e! {
    fn monitor_is_advertised(setup) {
        let server = setup.start();
        let mut alice = server.connect();
        alice.send("CAP LS 302");
        let ls = alice.line();
        assert!(ls.split([' ', ':']).any(|cap| cap == "extended-monitor"), "{ls}");
        alice.send("NICK alice");
        alice.send("USER alice 0 * :alice");
        alice.send("CAP END");
        let burst = alice.skip_until(|line| has_numeric(line, "422"));
        assert!(burst.iter().any(|line| has_numeric(line, "005") && line.contains(" MONITOR=100 ")), "{burst:?}");
    }

    fn watchers_hear_of_nicks_coming_and_going(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let mut bob = server.register("bob");
        alice.send("MONITOR + bob,carol");
        alice.expect(&format!("{S} 730 alice :bob!~bob@127.0.0.1"));
        alice.expect(&format!("{S} 731 alice :carol"));

        let mut carol = server.register("carol");
        alice.expect(&format!("{S} 730 alice :carol!~carol@127.0.0.1"));
        carol.send("NICK carla");
        carol.expect(":carol!~carol@127.0.0.1 NICK :carla");
        alice.expect(&format!("{S} 731 alice :carol"));
        carol.send("NICK Carol");
        carol.expect(":carla!~carol@127.0.0.1 NICK :Carol");
        alice.expect(&format!("{S} 730 alice :Carol!~carol@127.0.0.1"));
        carol.send("NICK CAROL");
        carol.expect(":Carol!~carol@127.0.0.1 NICK :CAROL");
        alice.expect_nothing();
        bob.send("QUIT :gone");
        bob.expect_closed();
        alice.expect(&format!("{S} 731 alice :bob"));
        alice.expect_nothing();
    }

    fn the_list_can_be_shown_queried_edited_and_cleared(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let _bob = server.register("bob");
        alice.send("MONITOR + bob,dave");
        alice.expect_numeric("730");
        alice.expect_numeric("731");
        alice.send("MONITOR L");
        alice.expect(&format!("{S} 732 alice :bob,dave"));
        alice.expect(&format!("{S} 733 alice :End of MONITOR list"));
        alice.send("MONITOR S");
        alice.expect(&format!("{S} 730 alice :bob!~bob@127.0.0.1"));
        alice.expect(&format!("{S} 731 alice :dave"));
        alice.send("MONITOR - BOB");
        alice.send("MONITOR L");
        alice.expect(&format!("{S} 732 alice :dave"));
        alice.expect_numeric("733");
        alice.send("MONITOR C");
        alice.send("MONITOR L");
        alice.expect(&format!("{S} 733 alice :End of MONITOR list"));
        alice.send("MONITOR +");
        alice.expect(&format!("{S} 461 alice MONITOR :Not enough parameters"));
        alice.send("MONITOR X");
        alice.expect(&format!("{S} NOTICE alice :MONITOR: MONITOR takes +, -, C, L or S"));
        let _dave = server.register("dave");
        alice.expect_nothing();
    }

    fn a_full_list_refuses_the_rest_with_734(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let nicks: Vec<String> = (0..100).map(|i| format!("n{i}")).collect();
        alice.send(&format!("MONITOR + {}", nicks[..50].join(",")));
        alice.send(&format!("MONITOR + {}", nicks[50..].join(",")));
        let offline = alice.skip_until(|line| line.ends_with(",n99"));
        let listed: usize = offline.iter().map(|line| line.rsplit(':').next().unwrap_or("").split(',').count()).sum();
        assert_eq!(listed, 100, "{offline:?}");
        alice.send("MONITOR + n0,extra1,extra2");
        alice.expect(&format!("{S} 731 alice :n0"));
        alice.expect(&format!("{S} 734 alice 100 extra1,extra2 :Monitor list is full."));
    }

    fn extended_monitor_relays_away_and_setname_of_watched_nicks_once(setup) {
        let server = setup.start();
        let mut watcher = register_with_caps(&server, "watcher", "extended-monitor away-notify setname");
        let mut plain = register_with_caps(&server, "plain", "away-notify");
        let mut bob = server.register("bob");
        watcher.send("MONITOR + bob");
        watcher.expect_numeric("730");
        plain.send("MONITOR + bob");
        plain.expect_numeric("730");
        bob.send("AWAY :lunch");
        bob.expect_numeric("306");
        watcher.expect(":bob!~bob@127.0.0.1 AWAY :lunch");
        bob.send("SETNAME :Bob B");
        watcher.expect(":bob!~bob@127.0.0.1 SETNAME :Bob B");
        plain.expect_nothing();

        join_all("#both", &mut [&mut bob, &mut watcher]);
        bob.send("AWAY");
        bob.expect_numeric("305");
        watcher.expect(":bob!~bob@127.0.0.1 AWAY");
        watcher.expect_nothing();
    }

    fn watchers_on_every_shard_hear_the_same(setup) {
        let server = setup.start();
        // Sixteen watchers spread over the shards (with 4, every shard all but surely
        // holds some), and the watched nick lives on whichever shard it lands on.
        let mut watchers: Vec<Client> = (0..16).map(|i| server.register(&format!("w{i}"))).collect();
        for watcher in &mut watchers {
            watcher.send("MONITOR + target");
            watcher.expect(&format!("{S} 731 {} :target", watcher.nick));
        }
        let mut target = server.register("target");
        for watcher in &mut watchers {
            watcher.expect(&format!("{S} 730 {} :target!~target@127.0.0.1", watcher.nick));
        }
        target.send("QUIT");
        target.expect_closed();
        for watcher in &mut watchers {
            watcher.expect(&format!("{S} 731 {} :target", watcher.nick));
            watcher.expect_nothing();
        }
    }
}
