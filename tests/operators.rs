//! Server operators as clients see them: OPER (381 and `+o`, 464, 491, the failure
//! limit), opers in WHO, WHOIS and LUSERS, `MODE -o`, KILL across shards, WALLOPS to
//! `+w` users only, REHASH, DIE and BACKUP; every test on both drivers, 1 and 4
//! shards.

mod common;

use common::{has_numeric, join_all, Client, Setup, TestServer};
use ringchat::opers::{hash_password, OperBlock};
use std::sync::OnceLock;

/// The one oper account of these tests: `admin` / `hunter2`, from loopback only.
fn admin_block() -> OperBlock {
    static HASH: OnceLock<String> = OnceLock::new();
    OperBlock {
        name: "admin".to_owned(),
        password_hash: HASH
            .get_or_init(|| hash_password(b"hunter2").expect("hashing works"))
            .clone(),
        hosts: vec!["~*@127.0.0.1".to_owned()],
    }
}

/// A server with the `admin` account and a second one, `remote`, that only
/// 192.0.2.0/24 may use.
fn start(setup: Setup) -> TestServer {
    setup.start_with(|config| {
        let mut remote = admin_block();
        remote.name = "remote".to_owned();
        remote.hosts = vec!["*@192.0.2.*".to_owned()];
        config.opers = vec![admin_block(), remote];
    })
}

/// Registers `nick` and makes it an operator.
fn oper(server: &TestServer, nick: &str) -> Client {
    let mut client = server.register(nick);
    client.send("OPER admin hunter2");
    client.expect_numeric("381");
    client.expect(&format!(":{0}!~{0}@127.0.0.1 MODE {0} +o", nick));
    client
}

e2e! {
    fn oper_with_the_right_password_gets_381_and_plus_o(setup) {
        let server = start(setup);
        let mut alice = oper(&server, "alice");
        alice.send("MODE alice");
        assert!(alice.expect_numeric("221").ends_with(" +o"));
    }

    fn a_bad_password_is_464_and_an_unknown_name_or_host_491(setup) {
        let server = start(setup);
        let mut bob = server.register("bob");
        bob.send("OPER admin wrong");
        bob.expect_numeric("464");
        bob.send("OPER nobody hunter2");
        bob.expect_numeric("491");
        // `remote` exists, but not for 127.0.0.1.
        bob.send("OPER remote hunter2");
        bob.expect_closed();
    }

    fn a_third_failure_disconnects(setup) {
        let server = start(setup);
        let mut bob = server.register("bob");
        bob.send("OPER admin a");
        bob.expect_numeric("464");
        bob.send("OPER admin b");
        bob.expect_numeric("464");
        bob.send("OPER admin c");
        bob.expect_numeric("464");
        let last = bob.expect_closed();
        assert!(
            last.iter().any(|l| l.starts_with("ERROR") && l.contains("Too many failed OPER attempts")),
            "{last:?}"
        );
    }

    fn who_whois_and_lusers_show_the_oper_and_minus_o_drops_it(setup) {
        let server = start(setup);
        let mut alice = oper(&server, "alice");
        let mut bob = server.register("bob");
        join_all("#ops", &mut [&mut alice, &mut bob]);
        bob.send("WHO #ops");
        let rows = bob.skip_until(|l| has_numeric(l, "315"));
        // 352 fields: server, code, asker, channel, user, host, server, nick, flags.
        let flags_of = |nick: &str| {
            rows.iter()
                .map(|l| l.split(' ').collect::<Vec<_>>())
                .find(|f| f.get(7) == Some(&nick))
                .and_then(|f| f.get(8).map(|s| s.to_string()))
                .unwrap_or_else(|| panic!("{nick} listed in {rows:?}"))
        };
        assert_eq!(flags_of("alice"), "H*@");
        assert_eq!(flags_of("bob"), "H");
        bob.send("WHOIS alice");
        let whois = bob.skip_until(|l| has_numeric(l, "318"));
        assert!(whois.iter().any(|l| has_numeric(l, "313")), "{whois:?}");
        bob.send("LUSERS");
        let lusers = bob.skip_until(|l| has_numeric(l, "266"));
        let count = lusers.iter().find(|l| has_numeric(l, "252")).expect("252");
        assert!(count.contains(" 1 :"), "{count}");

        alice.send("MODE alice -o");
        alice.expect(":alice!~alice@127.0.0.1 MODE alice -o");
        bob.send("LUSERS");
        let lusers = bob.skip_until(|l| has_numeric(l, "266"));
        let count = lusers.iter().find(|l| has_numeric(l, "252")).expect("252");
        assert!(count.contains(" 0 :"), "{count}");
        bob.send("WHOIS alice");
        let whois = bob.skip_until(|l| has_numeric(l, "318"));
        assert!(!whois.iter().any(|l| has_numeric(l, "313")), "{whois:?}");
        // +o comes from OPER only.
        alice.send("MODE alice +o");
        alice.expect_nothing();
        alice.send("KILL bob :no");
        alice.expect_numeric("481");
    }

    fn kill_closes_the_victim_wherever_it_is_and_others_see_one_quit(setup) {
        let server = start(setup);
        let mut alice = oper(&server, "alice");
        let mut watchers: Vec<Client> = (0..4).map(|i| server.register(&format!("w{i}"))).collect();
        let mut victim = server.register("victim");
        {
            let mut members: Vec<&mut Client> = watchers.iter_mut().collect();
            members.push(&mut victim);
            join_all("#a", &mut members);
        }
        {
            let mut members: Vec<&mut Client> = watchers.iter_mut().collect();
            members.push(&mut victim);
            join_all("#b", &mut members);
        }
        alice.send("KILL victim :spamming");
        let last = victim.expect_closed();
        assert!(
            last.iter().any(|l| l == "ERROR :Closing Link: 127.0.0.1 (Killed (alice (spamming)))"),
            "{last:?}"
        );
        for watcher in &mut watchers {
            watcher.expect(":victim!~victim@127.0.0.1 QUIT :Killed (alice (spamming))");
            watcher.expect_nothing();
        }
        alice.send("KILL victim :again");
        alice.expect_numeric("401");
    }

    fn only_opers_kill(setup) {
        let server = start(setup);
        let mut bob = server.register("bob");
        let mut carol = server.register("carol");
        bob.send("KILL carol :no");
        bob.expect_numeric("481");
        carol.expect_nothing();
        bob.send("WALLOPS :hi");
        bob.expect_numeric("481");
        bob.send("REHASH");
        bob.expect_numeric("481");
        bob.send("DIE");
        bob.expect_numeric("481");
        carol.send("PING :still here");
        carol.expect(&format!(":{} PONG {} :still here", "ringchat.local", "ringchat.local"));
    }

    fn wallops_reaches_plus_w_users_on_every_shard_only(setup) {
        let server = start(setup);
        let mut alice = oper(&server, "alice");
        let mut readers: Vec<Client> = (0..4).map(|i| server.register(&format!("r{i}"))).collect();
        for reader in &mut readers {
            reader.send(&format!("MODE {} +w", reader.nick));
            reader.expect(&format!("{} MODE {} +w", format_args!(":{}", reader.source()), reader.nick));
        }
        let mut others: Vec<Client> = (0..4).map(|i| server.register(&format!("o{i}"))).collect();
        alice.send("WALLOPS :maintenance at noon");
        for reader in &mut readers {
            reader.expect(":alice!~alice@127.0.0.1 WALLOPS :maintenance at noon");
        }
        for other in &mut others {
            other.expect_nothing();
        }
        alice.expect_nothing();
    }

    fn plus_s_brings_server_notices_from_every_shard_to_the_operator(setup) {
        let server = start(setup);
        let mut alice = oper(&server, "alice");
        alice.send("MODE alice +s +ckb");
        alice.expect(":ringchat.local 008 alice +bck :Server notice mask");
        alice.expect(":alice!~alice@127.0.0.1 MODE alice +s");
        // Eight users on four shards: all eight on the operator's own is a 1 in 4^8
        // chance, so the notices come from the other shards too.
        let mut users: Vec<Client> = (0..8).map(|i| server.register(&format!("u{i}"))).collect();
        for i in 0..8 {
            alice.expect(&format!(
                ":ringchat.local NOTICE alice :*** Client connecting: u{i} (~u{i}@127.0.0.1) [127.0.0.1] {{u{i} test}}"
            ));
        }
        alice.send("KILL u3 :bye");
        alice.expect(":ringchat.local NOTICE alice :*** Received KILL message for u3. From alice (bye)");
        alice.expect(":ringchat.local NOTICE alice :*** Client exiting: u3 (~u3@127.0.0.1) [Killed (alice (bye))]");
        users[3].expect_closed();
        alice.send("KLINE ~u5@127.0.0.1 :enough");
        let lines = alice.skip_until(|l| l.contains("Ban hit: u5"));
        assert!(
            lines.contains(&":ringchat.local NOTICE alice :*** alice added permanent K-Line for [~u5@127.0.0.1]: enough".to_owned()),
            "{lines:?}"
        );
        users[5].expect_closed();

        let mut bob = server.register("bob");
        alice.skip_until(|l| l.contains("Client connecting: bob"));
        bob.send("MODE bob +s");
        bob.expect_numeric("481");
        alice.send("MODE alice -s");
        alice.expect(":alice!~alice@127.0.0.1 MODE alice -s");
        let _carol = server.register("carol");
        alice.expect_nothing();
    }

    fn rehash_without_settings_to_reload_says_so(setup) {
        // A server built in code has no main loop to reload it (tests/operations.rs
        // covers REHASH of the binary: 382 on success, the error on failure).
        let server = start(setup);
        let mut alice = oper(&server, "alice");
        alice.send("REHASH");
        alice.expect(":ringchat.local NOTICE alice :REHASH: this server was started without settings to reload");
    }

    fn die_stops_the_server(setup) {
        let server = start(setup);
        let mut alice = oper(&server, "alice");
        let mut bob = server.register("bob");
        alice.send("DIE");
        for client in [&mut alice, &mut bob] {
            let last = client.expect_closed();
            assert!(
                last.iter().any(|l| l.starts_with("ERROR") && l.contains("Server shutting down")),
                "{last:?}"
            );
        }
        assert!(std::net::TcpStream::connect(server.addr).is_err() || {
            // A connection the kernel queued before the listeners closed is never served.
            let mut late = server.connect();
            late.send("NICK late");
            late.expect_closed();
            true
        });
    }
}

/// The second loopback address: a source other than the operator's.
fn elsewhere() -> std::net::IpAddr {
    std::net::IpAddr::from([127, 0, 0, 2])
}

/// Connects from 127.0.0.2 and registers `nick`.
fn register_elsewhere(server: &TestServer, nick: &str) -> Client {
    Client::register(Client::connect_from(elsewhere(), server.addr), nick)
}

e2e! {
    fn kline_closes_connected_matches_refuses_new_ones_and_unkline_lets_them_back(setup) {
        let server = start(setup);
        let mut alice = oper(&server, "alice");
        let mut bob = server.register("bob");
        let mut spammer = server.register("spammer");
        join_all("#c", &mut [&mut bob, &mut spammer]);
        alice.send("KLINE ~spam*@127.0.0.1 :no spam");
        let confirmation = alice.line();
        assert!(
            confirmation.contains("NOTICE alice :Added permanent K-Line for [~spam*@127.0.0.1]"),
            "{confirmation}"
        );
        let last = spammer.expect_closed();
        assert!(
            last.iter().any(|l| l == "ERROR :Closing Link: 127.0.0.1 (K-Lined (no spam))"),
            "{last:?}"
        );
        bob.expect(":spammer!~spammer@127.0.0.1 QUIT :K-Lined (no spam)");
        bob.expect_nothing();

        let mut again = server.connect();
        again.send("NICK spammer2");
        again.send("USER spammer2 0 * :x");
        let last = again.expect_closed();
        assert!(
            last.iter().any(|l| l.contains("(K-Lined (no spam))")),
            "{last:?}"
        );

        alice.send("UNKLINE ~spam*@127.0.0.1");
        let confirmation = alice.line();
        assert!(confirmation.contains("Removed K-Line for [~spam*@127.0.0.1]"), "{confirmation}");
        let mut back = server.register("spammer3");
        back.expect_nothing();
        alice.send("UNKLINE ~spam*@127.0.0.1");
        assert!(alice.line().contains("No such ban"));
    }

    fn dline_refuses_at_accept_and_closes_connected_and_unregistered_matches(setup) {
        let server = start(setup);
        let mut alice = oper(&server, "alice");
        let mut bob = server.register("bob");
        let mut far = register_elsewhere(&server, "far");
        let mut lurker = Client::connect_from(elsewhere(), server.addr);
        lurker.send("NICK lurker");
        lurker.barrier();
        for client in [&mut bob, &mut far] {
            client.send("JOIN #c");
            client.skip_until(|l| has_numeric(l, "366"));
        }
        bob.expect(":far!~far@127.0.0.2 JOIN #c");
        alice.send("DLINE 10 127.0.0.2 :go away");
        assert!(alice.line().contains("Added for 600 s D-Line for [127.0.0.2/32]"));
        let last = far.expect_closed();
        assert!(
            last.iter().any(|l| l == "ERROR :Closing Link: 127.0.0.2 (D-Lined (go away))"),
            "{last:?}"
        );
        lurker.expect_closed();
        bob.expect(":far!~far@127.0.0.2 QUIT :D-Lined (go away)");
        bob.expect_nothing();

        let mut refused = Client::connect_from(elsewhere(), server.addr);
        assert_eq!(refused.expect_closed(), ["ERROR :Closing Link: 127.0.0.2 (D-Lined)"]);

        alice.send("UNDLINE 127.0.0.2");
        assert!(alice.line().contains("Removed D-Line for [127.0.0.2/32]"));
        let mut back = register_elsewhere(&server, "back");
        back.expect_nothing();
    }

    fn bans_need_an_oper_and_a_valid_mask(setup) {
        let server = start(setup);
        let mut bob = server.register("bob");
        bob.send("KLINE *@127.0.0.1 :everyone");
        bob.expect_numeric("481");
        bob.send("DLINE 127.0.0.0/8 :everyone");
        bob.expect_numeric("481");
        bob.expect_nothing();
        let mut alice = oper(&server, "alice");
        alice.send("DLINE example.org :x");
        assert!(alice.line().contains("not an address or CIDR network"));
        alice.send("KLINE a@b@c :x");
        assert!(alice.line().contains("not a user@host mask"));
    }

    fn stats_k_and_d_list_every_ban_with_setter_times_and_reason(setup) {
        let server = start(setup);
        let mut alice = oper(&server, "alice");
        alice.send("KLINE ~evil@192.0.2.* :spam");
        alice.send("KLINE 2h ~worse@198.51.100.7 :more spam");
        alice.send("DLINE 10 203.0.113.0/24 :flood");
        alice.send("DLINE 0::2 :loopback6");
        alice.barrier();
        alice.send("STATS K");
        let listed = alice.skip_until(|l| has_numeric(l, "219"));
        let fields = |line: &str| -> Vec<String> {
            line.split(' ').skip(3).map(str::to_owned).collect()
        };
        assert_eq!(listed.len(), 3, "{listed:?}");
        assert!(listed[2].ends_with(" K :End of /STATS report"), "{listed:?}");
        let permanent = fields(&listed[0]);
        assert!(has_numeric(&listed[0], "216"), "{listed:?}");
        assert_eq!(permanent[0], "~evil@192.0.2.*");
        assert!(permanent[1].parse::<u64>().unwrap() > 1_700_000_000, "{permanent:?}");
        assert_eq!(permanent[2..], ["0", "alice", ":spam"]);
        let temporary = fields(&listed[1]);
        assert_eq!(temporary[0], "~worse@198.51.100.7");
        assert_eq!(temporary[2..4], ["7200", "alice"]);
        assert_eq!(temporary[4..].join(" "), ":more spam");
        // `k` lists the same: temporary and permanent bans are kept together.
        alice.send("STATS k");
        assert_eq!(alice.skip_until(|l| has_numeric(l, "219")).len(), 3);

        alice.send("STATS D");
        let listed = alice.skip_until(|l| has_numeric(l, "219"));
        assert_eq!(listed.len(), 3, "{listed:?}");
        assert!(listed[..2].iter().all(|l| has_numeric(l, "225")), "{listed:?}");
        assert_eq!(fields(&listed[0])[0], "203.0.113.0/24");
        assert_eq!(fields(&listed[0])[2..], ["600", "alice", ":flood"]);
        assert_eq!(fields(&listed[1])[0], "0::2/128");

        let mut bob = server.register("bob");
        bob.send("STATS K");
        bob.expect_numeric("481");
        bob.expect_numeric("219");
    }

    fn a_ban_on_the_operator_or_too_many_users_needs_force(setup) {
        let server = start(setup);
        let mut alice = oper(&server, "alice");
        let mut others: Vec<Client> = ["bob1", "bob2", "carol", "dave"]
            .iter()
            .map(|nick| server.register(nick))
            .collect();
        alice.send("KLINE 1m *@* :oops");
        let refused = alice.line();
        assert!(
            refused.contains("NOTICE alice :KLINE [*@*] not set: it matches you, and 5 of the 5 connected users in all")
                && refused.contains("KLINE FORCE"),
            "{refused}"
        );
        alice.send("DLINE 127.0.0.0/8 :oops");
        assert!(alice.line().contains("DLINE [127.0.0.0/8] not set: it matches you"));
        // Two of five is 40%, past the default share of 10%.
        alice.send("KLINE ~bob*@127.0.0.1 :bobs");
        let refused = alice.line();
        assert!(
            refused.contains("it would hit 2 of the 5 connected users, more than max-ban-share (10%)"),
            "{refused}"
        );
        for other in &mut others {
            other.expect_nothing();
        }
        alice.send("KLINE FORCE ~bob*@127.0.0.1 :bobs");
        assert!(alice.line().contains("Added permanent K-Line for [~bob*@127.0.0.1]: bobs"));
        for bob in &mut others[..2] {
            let last = bob.expect_closed();
            assert!(last.iter().any(|l| l.contains("K-Lined (bobs)")), "{last:?}");
        }
        // One user is never too many.
        alice.send("KLINE ~carol@127.0.0.1 :just carol");
        assert!(alice.line().contains("Added permanent K-Line for [~carol@127.0.0.1]"));
        others[2].expect_closed();
        others[3].expect_nothing();
    }

    fn bans_are_kept_in_the_ban_file_across_restarts(setup) {
        let dir = std::env::temp_dir().join(format!(
            "ringchat-operators-{}-{:?}-{}",
            std::process::id(),
            setup.io,
            setup.shards
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("bans.toml");
        let _ = std::fs::remove_file(&path);
        {
            let server = setup.start_with(|config| {
                config.opers = vec![admin_block()];
                config.ban_file = Some(path.clone());
            });
            let mut alice = oper(&server, "alice");
            alice.send("KLINE ~evil@127.0.0.1 :kept");
            alice.line();
            alice.send("DLINE 2h 192.0.2.0/24 :kept too");
            alice.line();
        }
        let bans = ringchat::ban_file::load(&path, 0).expect("the ban file reads");
        assert_eq!(bans.len(), 2, "{bans:?}");
        let server = setup.start_with(|config| config.server_bans = bans);
        let mut evil = server.connect();
        evil.send("NICK evil");
        evil.send("USER evil 0 * :x");
        let last = evil.expect_closed();
        assert!(last.iter().any(|l| l.contains("(K-Lined (kept))")), "{last:?}");
        server.register("good").expect_nothing();
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    fn backup_copies_the_store_while_the_server_runs(setup) {
        let dir = std::env::temp_dir().join(format!(
            "ringchat-backup-{}-{:?}-{}",
            std::process::id(),
            setup.io,
            setup.shards
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let server = setup.start_with(|config| {
            config.opers = vec![admin_block()];
            config.data_dir = Some(dir.clone());
        });
        let mut bob = server.register("bob");
        bob.send("REGISTER bob * correct-horse-battery");
        bob.skip_until(|line| line.contains(" 900 "));
        let mut alice = oper(&server, "alice");
        alice.send("BACKUP");
        let copying = alice.line();
        assert!(copying.contains("NOTICE alice :BACKUP: copying the store to "), "{copying}");
        let written = alice.line();
        assert!(written.contains(" written ("), "{written}");
        let file = written
            .split("BACKUP: ")
            .nth(1)
            .and_then(|rest| rest.split(" written").next())
            .expect("the NOTICE names the file");
        assert!(file.starts_with(&dir.join("backups").display().to_string()), "{file}");
        // The copy is a store of its own: it opens, and holds the account.
        let restored = dir.join("restored");
        std::fs::create_dir_all(&restored).expect("temp dir");
        std::fs::copy(file, restored.join(ringchat::store::STORE_FILE)).expect("copy the backup");
        let store = ringchat::store::Store::open(&restored).expect("the backup opens");
        let accounts = ringchat::store::accounts::load(&store).expect("its accounts read");
        assert!(accounts.iter().any(|a| &*a.name == "bob"), "{accounts:?}");
        drop(store);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    fn backup_is_for_operators(setup) {
        let server = start(setup);
        let mut carol = server.register("carol");
        carol.send("BACKUP");
        carol.expect_numeric("481");
    }
}
