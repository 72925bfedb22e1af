//! Keeping the server healthy, as clients see it: line limits, garbage, flood control,
//! slow consumers, timeouts, the client limit and graceful shutdown.

mod common;

use common::{has_numeric, join_all, Client};
use std::time::{Duration, Instant};

e2e! {
    fn an_overlong_line_gets_417_and_the_connection_stays(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let mut bob = server.register("bob");
        alice.send(&format!("PRIVMSG bob :{}", "x".repeat(600)));
        alice.expect(":ringchat.local 417 alice :Input line was too long");
        alice.send(&format!("PRIVMSG bob :{}", "y".repeat(20_000)));
        alice.expect_numeric("417");
        alice.send("PRIVMSG bob :still here");
        bob.expect(":alice!~alice@127.0.0.1 PRIVMSG bob :still here");
    }

    fn a_message_that_fits_512_bytes_for_recipients_is_relayed_whole(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let mut bob = server.register("bob");
        join_all("#c", &mut [&mut alice, &mut bob]);
        for (command, target) in [("PRIVMSG", "bob"), ("NOTICE", "bob"), ("PRIVMSG", "#c"), ("NOTICE", "#c")] {
            let relayed = format!(":{} {command} {target} :", alice.source());
            let text = "x".repeat(512 - 2 - relayed.len());
            alice.send(&format!("{command} {target} :{text}"));
            let line = bob.line();
            assert_eq!(line, format!("{relayed}{text}"));
            assert_eq!(line.len() + 2, 512);
        }
        alice.expect_nothing();
    }

    fn a_message_one_byte_over_512_for_recipients_is_417_and_not_relayed(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let mut bob = server.register("bob");
        join_all("#c", &mut [&mut alice, &mut bob]);
        // Two targets: the longer one decides, and nothing reaches either.
        for (command, targets, longest) in [
            ("PRIVMSG", "bob", "bob"),
            ("NOTICE", "bob", "bob"),
            ("PRIVMSG", "#c", "#c"),
            ("NOTICE", "#c,bob", "bob"),
        ] {
            let relayed = format!(":{} {command} {longest} :", alice.source());
            let text = "x".repeat(512 - 2 - relayed.len() + 1);
            alice.send(&format!("{command} {targets} :{text}"));
            alice.expect(":ringchat.local 417 alice :Input line was too long");
            // alice's next message arrives next: the long one never will.
            alice.send("PRIVMSG bob :after");
            bob.expect(&format!(":{} PRIVMSG bob :after", alice.source()));
        }
    }

    fn a_line_with_nul_is_discarded_and_the_next_one_handled(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let mut bob = server.register("bob");
        alice.send_raw(b"PRIVMSG bob :evil\0byte\r\nPRIVMSG bob :fine\r\n");
        bob.expect(":alice!~alice@127.0.0.1 PRIVMSG bob :fine");
    }

    fn random_garbage_harms_no_other_client(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let mut bob = server.register("bob");
        join_all("#c", &mut [&mut alice, &mut bob]);
        let mut vandal = server.connect();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let garbage: Vec<u8> = (0..64 * 1024)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        vandal.send_raw(&garbage);
        vandal.send_raw(b"\r\nNICK vandal\r\nUSER v 0 * :v\r\n:prefix-only\r\n@tags-only\r\n   \r\n");
        alice.send("PRIVMSG #c :business as usual");
        bob.expect(":alice!~alice@127.0.0.1 PRIVMSG #c :business as usual");
        let mut carol = server.register("carol");
        carol.send("PRIVMSG bob :hi");
        bob.expect(":carol!~carol@127.0.0.1 PRIVMSG bob :hi");
    }

    fn flood_control_delays_lines_but_loses_none(setup) {
        let server = setup.start_with(|c| {
            c.flood_burst = 5;
            c.flood_rate = 50.0;
        });
        let mut alice = server.register("alice");
        let mut bob = server.register("bob");
        let burst: String = (0..60).map(|i| format!("PRIVMSG bob :{i}\r\n")).collect();
        alice.send_raw(burst.as_bytes());
        for i in 0..60 {
            bob.expect(&format!(":alice!~alice@127.0.0.1 PRIVMSG bob :{i}"));
        }
    }

    fn waiting_input_past_the_recvq_is_excess_flood(setup) {
        let server = setup.start_with(|c| {
            c.flood_burst = 1;
            c.flood_rate = 0.5;
            c.recvq = 1024;
        });
        let mut alice = server.register("alice");
        let flood: String = (0..200).map(|i| format!("PRIVMSG alice :{i}\r\n")).collect();
        alice.send_raw(flood.as_bytes());
        let lines = alice.expect_closed();
        assert!(
            lines.iter().any(|l| l.starts_with("ERROR :Closing Link") && l.contains("Excess Flood")),
            "{lines:?}"
        );
    }

    fn a_client_that_never_reads_is_dropped_and_others_get_everything(setup) {
        let server = setup.start_with(|c| {
            c.flood_rate = 0.0;
            c.sendq = 64 * 1024;
        });
        let mut bob = server.register("bob");
        let mut sender = server.register("sender");
        let mut slow = server.register("slow");
        join_all("#c", &mut [&mut bob, &mut sender, &mut slow]);
        let _never_read = slow.into_raw();

        common::flood_until_cut_off(&mut sender, &mut bob, "slow");
        sender.send("PRIVMSG #c :after");
        bob.expect(":sender!~sender@127.0.0.1 PRIVMSG #c :after");
    }

    fn a_silent_client_is_pinged_then_dropped(setup) {
        let server = setup.start_with(|c| {
            c.ping_interval = Duration::from_secs(1);
            c.ping_timeout = Duration::from_secs(1);
        });
        let mut silent = server.register("silent");
        silent.expect("PING :ringchat.local");
        let rest = silent.expect_closed();
        assert!(rest.iter().any(|l| l.contains("Ping timeout")), "{rest:?}");
    }

    fn a_client_that_answers_pings_stays(setup) {
        let server = setup.start_with(|c| {
            c.ping_interval = Duration::from_secs(1);
            c.ping_timeout = Duration::from_secs(1);
        });
        let mut lively = server.register("lively");
        for _ in 0..3 {
            lively.expect("PING :ringchat.local");
            lively.send("PONG :ringchat.local");
        }
        lively.send("PING :alive");
        lively.expect(":ringchat.local PONG ringchat.local :alive");
    }

    fn an_unregistered_connection_times_out(setup) {
        let server = setup.start_with(|c| c.registration_timeout = Duration::from_secs(1));
        let mut lurker = server.connect();
        lurker.send("NICK lurker");
        let lines = lurker.expect_closed();
        assert!(lines.iter().any(|l| l.contains("Registration timed out")), "{lines:?}");
        let mut next = server.connect();
        next.send("NICK lurker");
        next.send("USER l 0 * :L");
        next.expect_numeric("001");
    }

    fn connections_past_max_clients_are_refused(setup) {
        let server = setup.start_with(|c| c.max_clients = 3);
        let alice = server.register("alice");
        let _bob = server.register("bob");
        let _carol = server.register("carol");
        let mut extra = server.connect();
        assert_eq!(
            extra.expect_closed(),
            ["ERROR :Closing Link: 127.0.0.1 (Server is full)"]
        );
        alice.vanish();
        // The slot frees once the server has seen alice go; until then a newcomer is
        // still refused (and may find its socket closed before it can register).
        let deadline = Instant::now() + common::HANG;
        loop {
            let mut again = server.connect();
            if again.try_send_raw(b"NICK dave\r\nUSER d 0 * :D\r\n")
                && again.try_line().is_some_and(|l| has_numeric(&l, "001"))
            {
                break;
            }
            assert!(Instant::now() < deadline, "a freed slot was never reused");
        }
    }

    fn graceful_shutdown_tells_every_client(setup) {
        let mut server = setup.start();
        let mut clients: Vec<Client> = (0..6).map(|i| server.register(&format!("c{i}"))).collect();
        let mut raw = server.connect();
        raw.send("PING :accepted");
        raw.expect(":ringchat.local PONG ringchat.local :accepted");
        server.shutdown();
        for client in clients.iter_mut() {
            let lines = client.expect_closed();
            assert_eq!(lines, ["ERROR :Closing Link: 127.0.0.1 (Server shutting down)"]);
        }
        assert_eq!(raw.expect_closed(), ["ERROR :Closing Link: 127.0.0.1 (Server shutting down)"]);
    }
}
