//! Asking the server as clients do: WHO (and WHOX), WHOIS, LIST, AWAY, VERSION, TIME, ADMIN,
//! USERHOST and ISON, with their replies and error numerics.

mod common;

use common::{has_numeric, join_all};

/// The server's own prefix in replies.
const S: &str = ":ringchat.local";

/// The trailing parameter of a line.
fn trailing(line: &str) -> &str {
    line.split_once(" :").map_or("", |(_, text)| text)
}

/// `from` messages `to` privately and `to` must read that next: per-sender order
/// means nothing else `from` caused is still on its way to `to`.
fn sync_nothing_from(from: &mut common::Client, to: &mut common::Client) {
    from.send(&format!("PRIVMSG {} :sync", to.nick));
    to.expect(&format!(":{} PRIVMSG {} :sync", from.source(), to.nick));
}

e2e! {
    // ---- WHO -----------------------------------------------------------------------

    fn who_channel_lists_members_with_presence_and_status(setup) {
        let server = setup.start();
        let (mut alice, mut bob) = (server.register("alice"), server.register("bob"));
        join_all("#c", &mut [&mut alice, &mut bob]);
        bob.send("AWAY :lunch");
        bob.expect_numeric("306");
        let mut carol = server.register("carol");
        carol.send("WHO #C");
        carol.expect(&format!("{S} 352 carol #c ~alice 127.0.0.1 ringchat.local alice H@ :0 alice test"));
        carol.expect(&format!("{S} 352 carol #c ~bob 127.0.0.1 ringchat.local bob G :0 bob test"));
        carol.expect(&format!("{S} 315 carol #C :End of WHO list"));
    }

    fn who_mask_matches_nicks_and_hides_invisible_strangers(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let mut bob = server.register("bob");
        let mut carol = server.register("carol");
        carol.send("WHO bob");
        carol.expect(&format!("{S} 352 carol * ~bob 127.0.0.1 ringchat.local bob H :0 bob test"));
        carol.expect(&format!("{S} 315 carol bob :End of WHO list"));

        bob.send("MODE bob +i");
        bob.expect(":bob!~bob@127.0.0.1 MODE bob +i");
        carol.send("WHO b*");
        carol.expect(&format!("{S} 315 carol b* :End of WHO list"));
        carol.send("WHO bob");
        carol.expect_numeric("352");
        carol.expect_numeric("315");

        join_all("#c", &mut [&mut alice, &mut bob]);
        alice.send("WHO b*");
        alice.expect(&format!("{S} 352 alice * ~bob 127.0.0.1 ringchat.local bob H :0 bob test"));
        alice.expect(&format!("{S} 315 alice b* :End of WHO list"));
        carol.send("WHO #c");
        carol.expect(&format!("{S} 352 carol #c ~alice 127.0.0.1 ringchat.local alice H@ :0 alice test"));
        carol.expect(&format!("{S} 315 carol #c :End of WHO list"));
    }

    fn whox_returns_the_requested_fields_in_fixed_order(setup) {
        let server = setup.start();
        let (mut alice, mut bob) = (server.register("alice"), server.register("bob"));
        join_all("#c", &mut [&mut alice]);
        bob.send("WHO #c %tcuhnfar,123");
        bob.expect(&format!("{S} 354 bob 123 #c ~alice 127.0.0.1 alice H@ 0 :alice test"));
        bob.expect(&format!("{S} 315 bob #c :End of WHO list"));

        bob.send("WHO alice %ldsi");
        let reply = bob.expect_numeric("354");
        let fields: Vec<&str> = reply.split(' ').skip(3).collect();
        assert_eq!(fields[..3], ["0", "ringchat.local", "0"], "{reply}");
        assert!(fields[3].parse::<u64>().is_ok(), "idle seconds in {reply}");
        bob.expect_numeric("315");
    }

    fn multi_prefix_shows_every_status_in_who_and_whois(setup) {
        let server = setup.start();
        let (mut alice, mut bob) = (server.register("alice"), server.register("bob"));
        join_all("#c", &mut [&mut alice]);
        alice.send("MODE #c +v alice");
        alice.expect(":alice!~alice@127.0.0.1 MODE #c +v alice");
        bob.send("WHO #c");
        bob.expect(&format!("{S} 352 bob #c ~alice 127.0.0.1 ringchat.local alice H@ :0 alice test"));
        bob.expect_numeric("315");

        bob.send("CAP REQ :multi-prefix");
        bob.expect(&format!("{S} CAP bob ACK :multi-prefix"));
        bob.send("WHO #c");
        bob.expect(&format!("{S} 352 bob #c ~alice 127.0.0.1 ringchat.local alice H@+ :0 alice test"));
        bob.expect_numeric("315");
        bob.send("WHOIS alice");
        bob.expect_numeric("311");
        bob.expect(&format!("{S} 319 bob alice :@+#c"));
        bob.skip_until(|line| has_numeric(line, "318"));
    }

    fn who_needs_a_mask_and_an_unknown_channel_is_just_the_end(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        alice.send("WHO");
        alice.expect(&format!("{S} 461 alice WHO :Not enough parameters"));
        alice.send("WHO #nowhere");
        alice.expect(&format!("{S} 315 alice #nowhere :End of WHO list"));
    }

    // ---- WHOIS ---------------------------------------------------------------------

    fn whois_shows_user_channels_server_idle_and_end(setup) {
        let server = setup.start();
        let (mut alice, mut bob) = (server.register("alice"), server.register("bob"));
        join_all("#c", &mut [&mut bob, &mut alice]);
        join_all("#d", &mut [&mut alice, &mut bob]);
        alice.send("WHOIS BOB");
        alice.expect(&format!("{S} 311 alice bob ~bob 127.0.0.1 * :bob test"));
        alice.expect(&format!("{S} 319 alice bob :@#c #d"));
        alice.expect(&format!("{S} 312 alice bob ringchat.local :ringchat IRC server"));
        let idle = alice.expect_numeric("317");
        let fields: Vec<&str> = idle.split(' ').collect();
        assert_eq!(fields[2..4], ["alice", "bob"], "{idle}");
        assert!(fields[4].parse::<u64>().is_ok() && fields[5].parse::<u64>().is_ok(), "{idle}");
        assert_eq!(trailing(&idle), "seconds idle, signon time");
        alice.expect(&format!("{S} 318 alice bob :End of /WHOIS list"));
    }

    fn whois_shows_away_and_accepts_a_server_parameter(setup) {
        let server = setup.start();
        let (mut alice, mut bob) = (server.register("alice"), server.register("bob"));
        bob.send("AWAY :gone fishing");
        bob.expect_numeric("306");
        alice.send("WHOIS ringchat.local bob");
        alice.expect_numeric("311");
        alice.expect_numeric("312");
        alice.expect(&format!("{S} 301 alice bob :gone fishing"));
        alice.expect_numeric("317");
        alice.expect_numeric("318");
    }

    fn whois_of_an_unknown_nick_is_401_then_318(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        alice.send("WHOIS nobody");
        alice.expect(&format!("{S} 401 alice nobody :No such nick/channel"));
        alice.expect(&format!("{S} 318 alice nobody :End of /WHOIS list"));
        alice.send("WHOIS");
        alice.expect(&format!("{S} 461 alice WHOIS :Not enough parameters"));
    }

    fn who_mask_matches_user_names_and_hosts_but_hides_invisible_strangers(setup) {
        let server = setup.start();
        let mut zed = server.connect();
        zed.nick = "zed".into();
        zed.send("NICK zed");
        zed.send("USER ident 0 * :Zed Real");
        zed.skip_until(|line| has_numeric(line, "422"));
        let mut asker = server.register("asker");
        let zed_row = format!("{S} 352 asker * ~ident 127.0.0.1 ringchat.local zed H :0 Zed Real");
        asker.send("WHO *ident");
        asker.expect(&zed_row);
        asker.expect(&format!("{S} 315 asker *ident :End of WHO list"));
        asker.send("WHO 127.0.0.1");
        asker.expect(&format!("{S} 352 asker * ~asker 127.0.0.1 ringchat.local asker H :0 asker test"));
        asker.expect(&zed_row);
        asker.expect(&format!("{S} 315 asker 127.0.0.1 :End of WHO list"));

        zed.send("MODE zed +i");
        zed.expect(":zed!~ident@127.0.0.1 MODE zed +i");
        asker.send("WHO 127.0.0.1");
        asker.expect_numeric("352");
        asker.expect(&format!("{S} 315 asker 127.0.0.1 :End of WHO list"));
        asker.send("WHO zed");
        asker.expect(&zed_row);
        asker.expect(&format!("{S} 315 asker zed :End of WHO list"));
    }

    // ---- LIST ----------------------------------------------------------------------

    fn list_shows_channels_with_counts_and_topics_and_filters_them(setup) {
        let server = setup.start();
        let (mut alice, mut bob) = (server.register("alice"), server.register("bob"));
        join_all("#alpha", &mut [&mut alice]);
        alice.send("TOPIC #alpha :first letter");
        alice.expect(":alice!~alice@127.0.0.1 TOPIC #alpha :first letter");
        join_all("#beta", &mut [&mut alice, &mut bob]);

        bob.send("LIST");
        bob.expect(&format!("{S} 321 bob Channel :Users  Name"));
        bob.expect(&format!("{S} 322 bob #alpha 1 :first letter"));
        bob.expect(&format!("{S} 322 bob #beta 2 :"));
        bob.expect(&format!("{S} 323 bob :End of /LIST"));

        for (query, shown) in [
            ("LIST >1", "#beta"),
            ("LIST <2", "#alpha"),
            ("LIST #BETA", "#beta"),
            ("LIST #a*", "#alpha"),
            ("LIST !#a*", "#beta"),
        ] {
            bob.send(query);
            bob.expect_numeric("321");
            let reply = bob.expect_numeric("322");
            assert!(reply.starts_with(&format!("{S} 322 bob {shown} ")), "{query}: {reply}");
            bob.expect_numeric("323");
        }
    }

    fn list_filters_on_channel_and_topic_age(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        join_all("#fresh", &mut [&mut alice]);
        join_all("#topical", &mut [&mut alice]);
        alice.send("TOPIC #topical :said");
        alice.expect(":alice!~alice@127.0.0.1 TOPIC #topical :said");
        for (query, shown) in [
            ("LIST C<60", &["#fresh", "#topical"][..]),
            ("LIST C>60", &[][..]),
            ("LIST T<60", &["#topical"][..]),
            ("LIST T>60", &[][..]),
        ] {
            alice.send(query);
            alice.expect_numeric("321");
            for name in shown {
                let reply = alice.expect_numeric("322");
                assert!(reply.starts_with(&format!("{S} 322 alice {name} ")), "{query}: {reply}");
            }
            alice.expect_numeric("323");
        }
    }

    fn a_refused_list_still_ends_with_323(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let too_many = ["#a*"; 9].join(",");
        let too_long = format!("#{}", "a".repeat(65));
        for query in [format!("LIST {too_many}"), format!("LIST {too_long}")] {
            alice.send(&query);
            alice.expect(&format!("{S} NOTICE alice :LIST: At most 8 masks of at most 64 bytes"));
            alice.expect(&format!("{S} 323 alice :End of /LIST"));
        }
    }

    // ---- AWAY ----------------------------------------------------------------------

    fn away_is_told_to_private_message_senders_until_cleared(setup) {
        let server = setup.start();
        let (mut alice, mut bob) = (server.register("alice"), server.register("bob"));
        bob.send("AWAY :back in 5");
        bob.expect(&format!("{S} 306 bob :You have been marked as being away"));
        alice.send("PRIVMSG bob :are you there?");
        alice.expect(&format!("{S} 301 alice bob :back in 5"));
        bob.expect(":alice!~alice@127.0.0.1 PRIVMSG bob :are you there?");
        alice.send("NOTICE bob :no reply to notices");
        alice.expect_nothing();
        bob.expect(":alice!~alice@127.0.0.1 NOTICE bob :no reply to notices");

        bob.send("AWAY");
        bob.expect(&format!("{S} 305 bob :You are no longer marked as being away"));
        alice.send("PRIVMSG bob :welcome back");
        alice.expect_nothing();
        bob.expect(":alice!~alice@127.0.0.1 PRIVMSG bob :welcome back");
        bob.send("AWAY :");
        bob.expect_numeric("305");
    }

    fn away_notify_tells_channel_peers_that_asked_for_it(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let mut bob = server.register("bob");
        let mut carol = server.register("carol");
        alice.send("CAP REQ :away-notify");
        alice.expect(&format!("{S} CAP alice ACK :away-notify"));
        join_all("#a", &mut [&mut alice, &mut bob, &mut carol]);
        join_all("#b", &mut [&mut alice, &mut bob]);
        bob.send("AWAY :brb");
        bob.expect_numeric("306");
        alice.expect(":bob!~bob@127.0.0.1 AWAY :brb");
        bob.send("AWAY");
        bob.expect_numeric("305");
        alice.expect(":bob!~bob@127.0.0.1 AWAY");
        alice.expect_nothing();
        sync_nothing_from(&mut bob, &mut carol);
    }

    fn an_away_user_joining_is_shown_away_to_away_notify_members(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let mut carol = server.register("carol");
        alice.send("CAP REQ :away-notify");
        alice.expect(&format!("{S} CAP alice ACK :away-notify"));
        join_all("#c", &mut [&mut alice, &mut carol]);
        let mut bob = server.register("bob");
        bob.send("AWAY :gone fishing");
        bob.expect_numeric("306");
        bob.send("JOIN #c");
        bob.expect(":bob!~bob@127.0.0.1 JOIN #c");
        bob.skip_until(|line| has_numeric(line, "366"));
        alice.expect(":bob!~bob@127.0.0.1 JOIN #c");
        alice.expect(":bob!~bob@127.0.0.1 AWAY :gone fishing");
        carol.expect(":bob!~bob@127.0.0.1 JOIN #c");
        bob.expect_nothing();
        sync_nothing_from(&mut bob, &mut carol);
    }

    // ---- server info ---------------------------------------------------------------

    fn version_then_isupport(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        alice.send("VERSION");
        let version = format!("ringchat-{}", env!("CARGO_PKG_VERSION"));
        let reply = alice.expect_numeric("351");
        assert!(reply.starts_with(&format!("{S} 351 alice {version} ringchat.local :")), "{reply}");
        let isupport = alice.skip_until(|line| !line.contains(" 005 ") || line.contains("WHOX"));
        let tokens = isupport.join(" ");
        for token in ["CHANMODES=beI,k,l,imnst", "PREFIX=(ov)@+", "MODES=4", "WHOX"] {
            assert!(tokens.contains(&format!(" {token} ")), "{token} in {tokens}");
        }
        alice.send("VERSION elsewhere.example");
        alice.expect(&format!("{S} 402 alice elsewhere.example :No such server"));
    }

    fn welcome_advertises_the_channel_modes(setup) {
        let server = setup.start();
        let mut alice = server.connect();
        alice.send("NICK alice");
        alice.send("USER alice 0 * :alice test");
        let burst = alice.skip_until(|line| has_numeric(line, "376") || has_numeric(line, "422"));
        let myinfo = burst.iter().find(|line| has_numeric(line, "004")).expect("004");
        let version = format!("ringchat-{}", env!("CARGO_PKG_VERSION"));
        assert_eq!(myinfo, &format!("{S} 004 alice ringchat.local {version} Biosw beiIklmnostv beIklov"));
    }

    fn time_is_the_servers_utc_time(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        alice.send("TIME");
        let reply = alice.expect_numeric("391");
        assert!(reply.starts_with(&format!("{S} 391 alice ringchat.local :")), "{reply}");
        assert!(trailing(&reply).ends_with(" UTC"), "{reply}");
    }

    fn admin_lists_the_configured_contacts_and_is_423_without_any(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        alice.send("ADMIN");
        alice.expect(&format!("{S} 423 alice ringchat.local :No administrative info available"));
        let server = setup.start_with(|config| {
            config.admin = ringchat::config::AdminInfo {
                location: Some("Amsterdam, NL".to_owned()),
                name: None,
                email: Some("irc-admin@example.org".to_owned()),
            };
        });
        let mut bob = server.register("bob");
        bob.send("ADMIN ringchat.local");
        bob.expect(&format!("{S} 256 bob ringchat.local :Administrative info"));
        bob.expect(&format!("{S} 257 bob :Amsterdam, NL"));
        bob.expect(&format!("{S} 259 bob :irc-admin@example.org"));
        bob.send("ADMIN elsewhere.example");
        bob.expect(&format!("{S} 402 bob elsewhere.example :No such server"));
    }

    // ---- USERHOST and ISON ---------------------------------------------------------

    fn userhost_describes_known_nicks(setup) {
        let server = setup.start();
        let (mut alice, mut bob) = (server.register("alice"), server.register("bob"));
        bob.send("AWAY :away");
        bob.expect_numeric("306");
        alice.send("USERHOST alice BOB nobody");
        alice.expect(&format!("{S} 302 alice :alice=+~alice@127.0.0.1 bob=-~bob@127.0.0.1"));
        alice.send("USERHOST nobody");
        alice.expect(&format!("{S} 302 alice :"));
        alice.send("USERHOST");
        alice.expect(&format!("{S} 461 alice USERHOST :Not enough parameters"));
    }

    fn ison_lists_the_nicks_that_are_online(setup) {
        let server = setup.start();
        let (mut alice, _bob) = (server.register("alice"), server.register("bob"));
        alice.send("ISON alice BOB nobody");
        alice.expect(&format!("{S} 303 alice :alice bob"));
        alice.send("ISON :nobody Bob");
        alice.expect(&format!("{S} 303 alice :bob"));
        alice.send("ISON");
        alice.expect(&format!("{S} 461 alice ISON :Not enough parameters"));
    }
}
