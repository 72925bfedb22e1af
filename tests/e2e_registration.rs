//! Registration as a client sees it: the welcome burst, nickname rules, the password,
//! commands before registration, CAP negotiation.

mod common;

use common::has_numeric;

e2e! {
    fn welcome_burst_is_001_to_005_then_lusers_then_motd(setup) {
        let server = setup.start();
        let mut alice = server.connect();
        alice.send("NICK alice");
        alice.send("USER alice 0 * :Alice Liddell");
        let welcome = alice.expect_numeric("001");
        assert!(welcome.ends_with("alice!~alice@127.0.0.1"), "{welcome}");
        for code in ["002", "003", "004"] {
            alice.expect_numeric(code);
        }
        let isupport = alice.skip_until(|line| !has_numeric(line, "005"));
        let tokens: Vec<&str> = isupport[..isupport.len() - 1]
            .iter()
            .flat_map(|line| line.split(' ').skip(3))
            .collect();
        for token in ["CASEMAPPING=ascii", "CHANTYPES=#", "NICKLEN=30", "CHANNELLEN=64", "LINELEN=512"] {
            assert!(tokens.contains(&token), "ISUPPORT lacks {token}: {tokens:?}");
        }
        for prefix in ["CHANLIMIT=", "CHANMODES=", "PREFIX=", "NETWORK=", "TARGMAX=", "TOPICLEN=", "AWAYLEN=", "KICKLEN="] {
            assert!(tokens.iter().any(|t| t.starts_with(prefix)), "ISUPPORT lacks {prefix}");
        }
        assert!(isupport[..isupport.len() - 1].iter().all(|l| l.split(' ').count() <= 3 + 13 + 5));
        assert!(has_numeric(&isupport[isupport.len() - 1], "251"));
        for code in ["252", "253", "254", "255", "265", "266", "422"] {
            alice.expect_numeric(code);
        }
        alice.expect_nothing();
    }

    fn motd_file_lines_are_sent_between_375_and_376(setup) {
        let server = setup.start_with(|c| c.motd = Some(vec!["Be kind.".into(), "Have fun.".into()]));
        let mut alice = server.connect();
        alice.send("NICK alice");
        alice.send("USER alice 0 * :Alice");
        alice.skip_until(|line| has_numeric(line, "375"));
        alice.expect(":ringchat.local 372 alice :- Be kind.");
        alice.expect(":ringchat.local 372 alice :- Have fun.");
        alice.expect_numeric("376");
    }

    fn a_taken_nick_gets_433_ignoring_case(setup) {
        let server = setup.start();
        let _alice = server.register("alice");
        let mut other = server.connect();
        other.send("NICK ALICE");
        other.expect(":ringchat.local 433 * ALICE :Nickname is already in use");
        other.send("NICK alice2");
        other.send("USER a 0 * :A");
        other.expect_numeric("001");
    }

    fn a_bad_nick_gets_432(setup) {
        let server = setup.start();
        let mut client = server.connect();
        for bad in ["1abc", "-dash", "with.dot", &"n".repeat(31)] {
            client.send(&format!("NICK {bad}"));
            client.expect(&format!(":ringchat.local 432 * {bad} :Erroneous nickname"));
        }
        client.send("NICK");
        client.expect_numeric("431");
    }

    fn commands_before_registration_get_451(setup) {
        let server = setup.start();
        let mut client = server.connect();
        client.send("JOIN #rust");
        client.expect(":ringchat.local 451 * :You have not registered");
        client.send("PRIVMSG #rust :hi");
        client.expect_numeric("451");
        client.send("FOO");
        client.expect_numeric("451");
        client.send("PING :still-allowed");
        client.expect(":ringchat.local PONG ringchat.local :still-allowed");
    }

    fn missing_parameters_get_461_and_unknown_commands_421(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        alice.send("JOIN");
        alice.expect(":ringchat.local 461 alice JOIN :Not enough parameters");
        alice.send("PRIVMSG alice");
        alice.expect_numeric("461");
        alice.send("FROBNICATE x");
        alice.expect(":ringchat.local 421 alice FROBNICATE :Unknown command");
        alice.send("USER again 0 * :x");
        alice.expect_numeric("462");
    }

    fn the_right_password_registers(setup) {
        let server = setup.start_with(|c| c.password = Some("sesame".into()));
        let mut client = server.connect();
        client.send("PASS sesame");
        client.send("NICK alice");
        client.send("USER alice 0 * :A");
        client.expect_numeric("001");
    }

    fn a_wrong_password_gets_464_and_the_link_is_closed(setup) {
        let server = setup.start_with(|c| c.password = Some("sesame".into()));
        let mut client = server.connect();
        client.send("PASS wrong");
        client.expect(":ringchat.local 464 * :Password incorrect");
        let rest = client.expect_closed();
        assert!(rest.iter().any(|l| l.starts_with("ERROR :Closing Link")), "{rest:?}");
    }

    fn a_missing_password_gets_464(setup) {
        let server = setup.start_with(|c| c.password = Some("sesame".into()));
        let mut client = server.connect();
        client.send("NICK alice");
        client.send("USER alice 0 * :A");
        client.expect_numeric("464");
        client.expect_closed();
    }

    fn cap_ls_holds_registration_until_cap_end(setup) {
        let server = setup.start();
        let mut client = server.connect();
        client.send("CAP LS 302");
        client.send("NICK alice");
        client.send("USER alice 0 * :A");
        let ls = client.line();
        assert!(ls.starts_with(":ringchat.local CAP * LS"), "{ls}");
        client.expect_nothing();
        client.send("CAP END");
        client.expect_numeric("001");
    }

    fn a_nick_freed_by_a_quit_can_be_taken(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        alice.send("QUIT");
        alice.expect_closed();
        let mut again = server.connect();
        again.send("NICK alice");
        again.send("USER alice 0 * :A");
        again.expect_numeric("001");
    }
}

e2e! {
    fn ipv6_clients_get_a_host_that_cannot_break_the_line_format(setup) {
        let server = setup.start_with(|c| c.listen = vec!["[::1]:0".parse().expect("an IPv6 address")]);
        let mut alice = server.connect();
        alice.send("NICK alice");
        alice.send("USER alice 0 * :A");
        let welcome = alice.expect_numeric("001");
        assert!(welcome.ends_with("alice!~alice@0::1"), "{welcome}");
    }
}
