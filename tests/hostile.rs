//! A public server that no single client can hurt: what hostile clients try, and what
//! they get. Every test runs on both drivers with 1 and 4 shards; bounds are checked
//! by counts (connections, refusals, lines), never by timings.

mod common;

use common::{has_numeric, join_all, Client, TestServer};
use std::time::{Duration, Instant};

const S: &str = ":ringchat.local";

/// Waits (bounded by the hang timeout) until the published counters show exactly
/// `open` connections.
fn wait_for_connections(server: &TestServer, open: u64) {
    let deadline = Instant::now() + common::HANG;
    loop {
        let now_open: u64 = server
            .server()
            .shard_counters()
            .iter()
            .map(|c| c.connections)
            .sum();
        if now_open == open {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{now_open} connections open, expected {open}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether every middle parameter of `line` (all but a `:` trailing one) is non-empty
/// and free of `:` at its start: a line split on single spaces has no empty field.
fn middle_params_are_valid(line: &str) -> bool {
    let body = line.split_once(" :").map_or(line, |(middle, _)| middle);
    body.split(' ').all(|field| !field.is_empty())
        && body.split(' ').skip(1).all(|field| !field.starts_with(':'))
}

/// Per-source limits apply to loopback only when the exemption list is emptied.
fn without_exemptions(config: &mut ringchat::Config) {
    config.sources.exempt.clear();
}

e2e! {
    fn clients_that_never_read_are_released_after_the_write_timeout(setup) {
        let server = setup.start_with(|c| {
            c.flood_rate = 0.0;
            c.sendq = 16 << 10;
            c.write_timeout = Duration::from_secs(1);
        });
        let mut sender = server.register("sender");
        let mut zombies: Vec<Client> = (0..10)
            .map(|i| {
                let mut zombie = Client::connect_with_tiny_receive_buffer(server.addr);
                zombie.send(&format!("NICK z{i}"));
                zombie.send(&format!("USER z{i} 0 * :Z"));
                zombie.skip_until(|line| has_numeric(line, "422"));
                zombie.nick = format!("z{i}");
                zombie
            })
            .collect();
        let mut everyone: Vec<&mut Client> = vec![&mut sender];
        everyone.extend(zombies.iter_mut());
        join_all("#flood", &mut everyone);
        // The zombies stop reading. Send in bursts smaller than the sendq, so their
        // writers fill the kernel's buffers before the sendq cuts them off; then their
        // final ERROR cannot be written (bounded: at most 20,000 lines of 400 bytes).
        let text = "x".repeat(400);
        let burst: String = (0..10).map(|_| format!("PRIVMSG #flood :{text}\r\n")).collect();
        let deadline = Instant::now() + common::HANG;
        for _ in 0..2_000 {
            sender.send_raw(burst.as_bytes());
            sender.barrier();
            let totals = server.server().shard_counters();
            if totals.iter().map(|c| c.sendq_disconnects).sum::<u64>() == 10 {
                break;
            }
            assert!(Instant::now() < deadline, "the zombies were never cut off");
        }
        // Their sockets are full, so their final ERROR cannot be written; the write
        // timeout resets them and frees every slot but the sender's.
        wait_for_connections(&server, 1);
        let resets: u64 = server.server().shard_counters().iter().map(|c| c.write_timeouts).sum();
        assert!(resets >= 1, "at least one zombie needed the reset");
        sender.send("PING :still here");
        sender.skip_until(|line| line.ends_with(":still here"));
    }

    fn one_source_cannot_open_every_slot(setup) {
        let server = setup.start_with(|c| {
            without_exemptions(c);
            c.sources.max_connections = 3;
        });
        let _held: Vec<Client> = (0..3).map(|i| server.register(&format!("h{i}"))).collect();
        let mut extra = server.connect();
        assert_eq!(
            extra.expect_closed(),
            ["ERROR :Closing Link: 127.0.0.1 (Too many connections from your host)"]
        );
    }

    fn one_source_cannot_hold_many_unregistered_connections(setup) {
        let server = setup.start_with(|c| {
            without_exemptions(c);
            c.sources.max_unregistered = 2;
        });
        let mut first = server.connect();
        let mut second = server.connect();
        for client in [&mut first, &mut second] {
            client.send("PING :admitted");
            client.skip_until(|line| line.ends_with(":admitted"));
        }
        let mut third = server.connect();
        assert_eq!(
            third.expect_closed(),
            ["ERROR :Closing Link: 127.0.0.1 (Too many unregistered connections from your host)"]
        );
        first.send("NICK first");
        first.send("USER f 0 * :F");
        first.expect_numeric("001");
        let mut fourth = server.connect();
        fourth.send("NICK fourth");
        fourth.send("USER f 0 * :F");
        fourth.expect_numeric("001");
    }

    fn a_connection_flood_from_one_source_is_refused_past_its_rate(setup) {
        let server = setup.start_with(|c| {
            without_exemptions(c);
            c.sources.connect_burst = 3;
            c.sources.connect_rate = 0.001;
        });
        for _ in 0..3 {
            let mut admitted = server.connect();
            admitted.send("QUIT");
            admitted.expect_closed();
        }
        let mut refused = server.connect();
        assert_eq!(
            refused.expect_closed(),
            ["ERROR :Closing Link: 127.0.0.1 (Connecting too fast; try again later)"]
        );
    }

    fn names_answers_one_channel_and_refuses_the_rest(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        alice.send("JOIN #big");
        alice.skip_until(|line| has_numeric(line, "366"));
        let many = ["#big"; 90].join(",");
        alice.send(&format!("NAMES {many}"));
        alice.expect(&format!("{S} 407 alice #big :Too many targets"));
        alice.expect(&format!("{S} 353 alice = #big :@alice"));
        alice.expect(&format!("{S} 366 alice #big :End of /NAMES list."));
        alice.expect_nothing();
    }

    fn list_and_whois_are_bounded(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let masks = ["#a*"; 9].join(",");
        alice.send(&format!("LIST {masks}"));
        alice.expect(&format!("{S} NOTICE alice :LIST: At most 8 masks of at most 64 bytes"));
        alice.expect(&format!("{S} 323 alice :End of /LIST"));
        alice.send("WHOIS a,b,c,d,e,f,g");
        let replies = alice.skip_until(|line| line.contains(" 407 "));
        assert_eq!(replies.iter().filter(|l| has_numeric(l, "401")).count(), 5);
        assert_eq!(replies.last().map(String::as_str), Some(&*format!("{S} 407 alice f :Too many targets")));
    }

    fn long_real_names_are_cut_so_replies_fit_a_line(setup) {
        let server = setup.start();
        let mut long = server.connect();
        long.send("NICK long");
        long.send(&format!("USER long 0 * :{}", "r".repeat(400)));
        long.skip_until(|line| has_numeric(line, "422"));
        long.nick = "long".into();
        let mut asker = server.register("asker");
        asker.send("WHOIS long");
        let whois = asker.skip_until(|line| has_numeric(line, "318"));
        let user = whois.iter().find(|l| has_numeric(l, "311")).expect("311");
        assert!(user.ends_with(&format!(":{}", "r".repeat(200))), "{user}");
        asker.send("WHO *");
        for line in asker.skip_until(|line| has_numeric(line, "315")) {
            assert!(line.len() + 2 <= 512, "{} bytes: {line}", line.len() + 2);
        }
        let mut empty = server.connect();
        empty.send("NICK empty");
        empty.send("USER empty 0 * :");
        empty.expect(&format!("{S} 461 empty USER :Not enough parameters"));
    }

    fn a_bare_cr_cannot_forge_a_line_for_other_members(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let mut bob = server.register("bob");
        join_all("#c", &mut [&mut alice, &mut bob]);
        alice.send_raw(b"PRIVMSG #c :hi\r:admin!a@b PRIVMSG #c :forged\r\n");
        bob.expect(":alice!~alice@127.0.0.1 PRIVMSG #c :hi");
        bob.expect(":alice!~alice@127.0.0.1 PRIVMSG #c :forged");
        alice.send_raw(b"TOPIC #c :calm\r:admin!a@b NOTICE #c :forged\r\n");
        bob.expect(":alice!~alice@127.0.0.1 TOPIC #c :calm");
        bob.expect(":alice!~alice@127.0.0.1 NOTICE #c :forged");
        alice.send_raw(&b"\r\n".repeat(6_000));
        alice.send("PING :not flooded");
        alice.skip_until(|line| line.ends_with(":not flooded"));
    }

    fn every_echoed_parameter_is_valid_in_its_position(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        alice.send("JOIN #c");
        alice.skip_until(|line| has_numeric(line, "366"));
        // Each row: what alice sends, and the exact reply that echoes it.
        let rows = [
            ("WHOIS :x y", format!("{S} 401 alice * :No such nick/channel")),
            ("MODE #c +k :x y", format!("{S} 696 alice #c k * :Invalid mode parameter")),
            ("MODE #c +l :", format!("{S} 696 alice #c l * :Invalid mode parameter")),
            ("PART :#a b", format!("{S} 403 alice * :No such channel")),
            ("NAMES :#x y", format!("{S} 366 alice * :End of /NAMES list.")),
            ("JOIN :#a b", format!("{S} 476 alice * :Bad Channel Mask")),
            ("NICK :a b", format!("{S} 432 alice * :Erroneous nickname")),
            ("PRIVMSG nobody,:y :hi", format!("{S} 401 alice * :No such nick/channel")),
            ("TOPIC :#q r", format!("{S} 403 alice * :No such channel")),
            ("KICK #c :x y", format!("{S} 401 alice * :No such nick/channel")),
        ];
        for (input, reply) in rows {
            alice.send(input);
            let replies = alice.barrier();
            assert!(replies.contains(&reply), "after {input:?}: {replies:?}");
            for line in &replies {
                assert!(middle_params_are_valid(line), "after {input:?}: {line:?}");
            }
        }
    }

    fn messages_accepted_before_shutdown_reach_every_shard(setup) {
        let mut server = setup.start_with(|c| c.flood_rate = 0.0);
        let mut members: Vec<Client> = (0..8).map(|i| server.register(&format!("m{i}"))).collect();
        join_all("#last", &mut members.iter_mut().collect::<Vec<_>>());
        let burst: String = (0..200).map(|i| format!("PRIVMSG #last :{i}\r\n")).collect();
        members[0].send_raw(burst.as_bytes());
        members[0].send("PING :accepted");
        members[0].skip_until(|line| line.ends_with(":accepted"));
        server.shutdown();
        for member in members.iter_mut().skip(1) {
            let lines = member.expect_closed();
            let received = lines.iter().filter(|l| l.contains(" PRIVMSG #last :")).count();
            assert_eq!(received, 200, "{}: {:?}", member.nick, lines.last());
            assert!(lines.last().is_some_and(|l| l.starts_with("ERROR :")));
        }
    }
}

#[test]
fn exempt_networks_must_parse() {
    let outcome = std::process::Command::new(env!("CARGO_BIN_EXE_ringchat"))
        .args(["--exempt", "10.0.0.0/33", "--listen", "127.0.0.1:0"])
        .output()
        .expect("run ringchat");
    assert_eq!(outcome.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&outcome.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--exempt"), "{stderr}");
}
