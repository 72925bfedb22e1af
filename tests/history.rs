//! CHATHISTORY (IRCv3 `draft/chathistory`) end to end: every subcommand by msgid and
//! by timestamp with exact slices (as irctest's `chathistory.py` checks them), the
//! batch and label around the answer, history kept across a restart, retention,
//! who may read a channel's history (and, of a `+i`/`+s` channel, how far back),
//! direct messages kept per conversation of accounts, TAGMSG and channel events
//! only with `draft/event-playback`, TARGETS, and the FAIL replies.

mod common;

use common::{has_numeric, history, register_with_caps, send_messages, Client, Setup, TestServer};
use std::path::PathBuf;

const CAPS: &str = "batch draft/chathistory echo-message message-tags server-time";

/// Has each client join `channel` in turn, each member already there reading the
/// newcomer's JOIN (tagged with `server-time`), so every view is settled.
fn join_all(channel: &str, clients: &mut [&mut Client]) {
    for joiner in 0..clients.len() {
        clients[joiner].send(&format!("JOIN {channel}"));
        clients[joiner].skip_until(|line| has_numeric(line, "366"));
        let join = format!(" :{} JOIN {channel}", clients[joiner].source());
        for member in clients[..joiner].iter_mut() {
            let line = member.line();
            assert!(
                line.ends_with(&join),
                "{}: expected ...{join}, got {line:?}",
                member.nick
            );
        }
    }
}

/// A fresh, empty data directory for one server (or one server and its restart).
fn data_dir() -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    common::data_dir(&format!("history-{}", NEXT.fetch_add(1, Ordering::Relaxed)))
}

/// A server that keeps history in `dir`.
fn start_in(setup: Setup, dir: &std::path::Path) -> TestServer {
    setup.start_with(|config| config.data_dir = Some(dir.to_owned()))
}

/// Registers an account named after `client`'s nick, which stays logged in.
fn log_in(client: &mut Client) {
    client.send("REGISTER * * correct-horse-battery");
    client.skip_until(|line| has_numeric(line, "900"));
}

/// `from` says `text` to `to` (a nick), which reads it; returns `from`'s echo.
fn say(from: &mut Client, to: &mut Client, text: &str) -> String {
    std::thread::sleep(std::time::Duration::from_millis(2));
    from.send(&format!("PRIVMSG {} :{text}", to.nick));
    let echo = from.line();
    assert!(
        echo.ends_with(&format!(" PRIVMSG {} :{text}", to.nick)),
        "{echo}"
    );
    if from.nick != to.nick {
        to.skip_until(|line| line.ends_with(&format!(":{text}")));
    }
    echo
}

/// `line` without its `time=` tag: an event's line is made by each shard that
/// tells it, so members on two shards may see times a millisecond apart; its msgid
/// (from the event's place in the log) is the same everywhere.
fn without_time(line: &str) -> String {
    let (tags, rest) = line
        .split_once(' ')
        .unwrap_or_else(|| panic!("no tags: {line}"));
    let kept: Vec<&str> = tags
        .trim_start_matches('@')
        .split(';')
        .filter(|tag| !tag.starts_with("time="))
        .collect();
    format!("@{} {rest}", kept.join(";"))
}

/// The `time=` and `msgid=` tag values of an echoed line.
fn tag(line: &str, name: &str) -> String {
    let tags = line
        .strip_prefix('@')
        .and_then(|l| l.split(' ').next())
        .unwrap_or("");
    tags.split(';')
        .find_map(|t| t.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} tag in {line}"))
        .to_owned()
}

e2e! {
    fn every_subcommand_returns_the_exact_slice_by_msgid_and_by_timestamp(setup) {
        let dir = data_dir();
        let server = start_in(setup, &dir);
        let mut alice = register_with_caps(&server, "alice", CAPS);
        let mut bob = register_with_caps(&server, "bob", CAPS);
        join_all("#h", &mut [&mut alice, &mut bob]);
        let sent = send_messages(&mut alice, "#h", 10);
        let (id, time) = (|i: usize| tag(&sent[i], "msgid"), |i: usize| tag(&sent[i], "time"));
        // Bob asks at once: another shard's messages are there as soon as he saw them.
        bob.skip_until(|line| line.ends_with(":message 9"));
        let ask = |client: &mut Client, query: String| history(client, &query, "#h");

        assert_eq!(ask(&mut bob, "CHATHISTORY LATEST #h * 20".into()), sent);
        assert_eq!(ask(&mut bob, "CHATHISTORY LATEST #h * 5".into()), sent[5..]);
        assert_eq!(ask(&mut bob, "CHATHISTORY LATEST #h * 1".into()), sent[9..]);
        assert_eq!(ask(&mut bob, format!("CHATHISTORY LATEST #h msgid={} 20", id(4))), sent[5..]);
        assert_eq!(ask(&mut bob, format!("CHATHISTORY LATEST #h timestamp={} 20", time(4))), sent[5..]);

        assert_eq!(ask(&mut bob, format!("CHATHISTORY BEFORE #h msgid={} 20", id(6))), sent[..6]);
        assert_eq!(ask(&mut bob, format!("CHATHISTORY BEFORE #h timestamp={} 20", time(6))), sent[..6]);
        assert_eq!(ask(&mut bob, format!("CHATHISTORY BEFORE #h timestamp={} 2", time(6))), sent[4..6]);

        assert_eq!(ask(&mut bob, format!("CHATHISTORY AFTER #h msgid={} 20", id(3))), sent[4..]);
        assert_eq!(ask(&mut bob, format!("CHATHISTORY AFTER #h timestamp={} 20", time(3))), sent[4..]);
        assert_eq!(ask(&mut bob, format!("CHATHISTORY AFTER #h timestamp={} 3", time(3))), sent[4..7]);

        assert_eq!(ask(&mut bob, format!("CHATHISTORY BETWEEN #h msgid={} msgid={} 20", id(0), id(9))), sent[1..9]);
        assert_eq!(ask(&mut bob, format!("CHATHISTORY BETWEEN #h msgid={} msgid={} 20", id(9), id(0))), sent[1..9]);
        assert_eq!(ask(&mut bob, format!("CHATHISTORY BETWEEN #h msgid={} msgid={} 3", id(0), id(9))), sent[1..4]);
        assert_eq!(ask(&mut bob, format!("CHATHISTORY BETWEEN #h msgid={} msgid={} 3", id(9), id(0))), sent[6..9]);
        assert_eq!(ask(&mut bob, format!("CHATHISTORY BETWEEN #h timestamp={} timestamp={} 20", time(0), time(9))), sent[1..9]);
        assert_eq!(ask(&mut bob, format!("CHATHISTORY BETWEEN #h timestamp={} timestamp={} 3", time(9), time(0))), sent[6..9]);

        assert_eq!(ask(&mut bob, format!("CHATHISTORY AROUND #h msgid={} 1", id(7))), sent[7..8]);
        assert_eq!(ask(&mut bob, format!("CHATHISTORY AROUND #h msgid={} 3", id(7))), sent[6..9]);
        assert_eq!(ask(&mut bob, format!("CHATHISTORY AROUND #h timestamp={} 3", time(7))), sent[6..9]);

        // Case does not matter, and an unknown msgid selects nothing.
        assert_eq!(ask(&mut bob, "CHATHISTORY LATEST #H * 2".into()).len(), 2);
        assert_eq!(ask(&mut bob, "CHATHISTORY AFTER #h msgid=nosuchid 5".into()), Vec::<String>::new());
    }

    fn history_survives_a_restart(setup) {
        let dir = data_dir();
        let sent = {
            let mut server = start_in(setup, &dir);
            let mut alice = register_with_caps(&server, "alice", CAPS);
            alice.send("JOIN #kept");
            alice.skip_until(|line| has_numeric(line, "366"));
            let sent = send_messages(&mut alice, "#kept", 3);
            server.shutdown();
            sent
        };
        let server = start_in(setup, &dir);
        let mut alice = register_with_caps(&server, "alice", CAPS);
        alice.send("JOIN #kept");
        alice.skip_until(|line| has_numeric(line, "366"));
        assert_eq!(history(&mut alice, "CHATHISTORY LATEST #kept * 10", "#kept"), sent);
    }

    fn only_members_read_a_channels_history(setup) {
        let dir = data_dir();
        let server = start_in(setup, &dir);
        let mut alice = register_with_caps(&server, "alice", CAPS);
        let mut bob = register_with_caps(&server, "bob", CAPS);
        alice.send("JOIN #private");
        alice.skip_until(|line| has_numeric(line, "366"));
        send_messages(&mut alice, "#private", 2);
        let refused = |target: &str| {
            format!(":ringchat.local FAIL CHATHISTORY INVALID_TARGET LATEST {target} :Messages could not be retrieved")
        };
        bob.send("CHATHISTORY LATEST #private * 10");
        bob.expect(&refused("#private"));
        bob.send("CHATHISTORY LATEST #nowhere * 10");
        bob.expect(&refused("#nowhere"));
        bob.send("CHATHISTORY LATEST alice * 10");
        bob.expect(&refused("alice"));
        bob.send("JOIN #private");
        bob.skip_until(|line| has_numeric(line, "366"));
        assert_eq!(history(&mut bob, "CHATHISTORY LATEST #private * 10", "#private").len(), 2);
        bob.send("PART #private");
        bob.skip_until(|line| line.contains(" PART #private"));
        bob.send("CHATHISTORY BEFORE #private timestamp=2100-01-01T00:00:00.000Z 10");
        bob.expect(":ringchat.local FAIL CHATHISTORY INVALID_TARGET BEFORE #private :Messages could not be retrieved");
    }

    fn retention_keeps_the_newest_messages_of_each_channel(setup) {
        let dir = data_dir();
        let server = setup.start_with(|config| {
            config.data_dir = Some(dir.clone());
            config.history_max_messages = 3;
        });
        let mut alice = register_with_caps(&server, "alice", CAPS);
        alice.send("JOIN #short");
        alice.skip_until(|line| has_numeric(line, "366"));
        let sent = send_messages(&mut alice, "#short", 5);
        assert_eq!(history(&mut alice, "CHATHISTORY LATEST #short * 10", "#short"), sent[2..]);
        let expired = tag(&sent[0], "msgid");
        let around = format!("CHATHISTORY AROUND #short msgid={expired} 5");
        assert_eq!(history(&mut alice, &around, "#short"), Vec::<String>::new());
    }

    fn tagmsg_is_replayed_only_with_event_playback(setup) {
        let dir = data_dir();
        let server = start_in(setup, &dir);
        let mut alice = register_with_caps(&server, "alice", &format!("{CAPS} draft/event-playback"));
        let mut bob = register_with_caps(&server, "bob", CAPS);
        join_all("#t", &mut [&mut alice, &mut bob]);
        alice.send("@+typing=active TAGMSG #t");
        let tagmsg = alice.line();
        assert!(tagmsg.ends_with(" TAGMSG #t") && tagmsg.contains("+typing=active"), "{tagmsg}");
        let said = send_messages(&mut alice, "#t", 1);
        let replayed = history(&mut alice, "CHATHISTORY LATEST #t * 10", "#t");
        let without_joins: Vec<&String> = replayed.iter().filter(|line| !line.contains(" JOIN #t")).collect();
        assert_eq!(without_joins, [&tagmsg, &said[0]]);
        bob.skip_until(|line| line.ends_with(":message 0"));
        assert_eq!(history(&mut bob, "CHATHISTORY LATEST #t * 10", "#t"), said);
    }

    fn a_direct_conversation_is_one_history_read_by_its_accounts(setup) {
        let dir = data_dir();
        let server = start_in(setup, &dir);
        let mut alice = register_with_caps(&server, "alice", CAPS);
        let mut bob = register_with_caps(&server, "bob", CAPS);
        let mut carol = register_with_caps(&server, "carol", CAPS);
        log_in(&mut alice);
        log_in(&mut bob);
        let mut said = Vec::new();
        for i in 0..4 {
            let echo = if i % 2 == 0 {
                say(&mut alice, &mut bob, &format!("dm {i}"))
            } else {
                say(&mut bob, &mut alice, &format!("dm {i}"))
            };
            said.push(echo);
        }
        // carol is not logged in: her talk with alice is alice's to read, not hers.
        let with_carol = vec![say(&mut carol, &mut alice, "from carol"), say(&mut alice, &mut carol, "to carol")];

        assert_eq!(history(&mut alice, "CHATHISTORY LATEST bob * 10", "bob"), said);
        assert_eq!(history(&mut bob, "CHATHISTORY LATEST ALICE * 10", "ALICE"), said);
        let second = tag(&said[1], "msgid");
        assert_eq!(history(&mut bob, &format!("CHATHISTORY AFTER alice msgid={second} 10"), "alice"), said[2..]);
        assert_eq!(history(&mut alice, "CHATHISTORY LATEST carol * 10", "carol"), with_carol);
        carol.send("CHATHISTORY LATEST alice * 10");
        carol.expect(":ringchat.local FAIL CHATHISTORY INVALID_TARGET LATEST alice :Messages could not be retrieved");

        // An account's notes to itself are a conversation too.
        alice.send("PRIVMSG alice :note to self");
        let note = alice.line();
        assert_eq!(alice.line(), note, "the delivered copy is the echo");
        assert_eq!(history(&mut alice, "CHATHISTORY LATEST alice * 10", "alice"), vec![note]);

        alice.send("CHATHISTORY TARGETS timestamp=2000-01-01T00:00:00.000Z timestamp=2100-01-01T00:00:00.000Z 10");
        let listed = alice.skip_until(|line| line.contains(" BATCH -"));
        let names: Vec<&str> = listed
            .iter()
            .filter_map(|line| line.split(" CHATHISTORY TARGETS ").nth(1))
            .filter_map(|rest| rest.split(' ').next())
            .collect();
        assert_eq!(names, ["bob", "carol", "alice"], "{listed:?}");
    }

    fn channel_events_are_replayed_with_event_playback_only(setup) {
        let dir = data_dir();
        let server = start_in(setup, &dir);
        let playback = format!("{CAPS} draft/event-playback");
        let alice = register_with_caps(&server, "alice", &playback);
        let bob = register_with_caps(&server, "bob", CAPS);
        let carol = register_with_caps(&server, "carol", CAPS);
        let mut people = [alice, bob, carol];
        people[0].send("JOIN #e");
        let mut seen = vec![people[0].line()];
        people[0].skip_until(|line| has_numeric(line, "366"));
        for (actor, line) in [
            (1, "JOIN #e"),
            (0, "TOPIC #e :what we talk about"),
            (0, "MODE #e +v bob"),
            (1, "NICK bobby"),
            (2, "JOIN #e"),
            (0, "KICK #e carol :not today"),
            (1, "PART #e :later"),
        ] {
            people[actor].send(line);
            seen.push(people[0].line());
        }
        let [mut alice, _bob, mut carol] = people;
        let said = send_messages(&mut alice, "#e", 1);
        seen.push(said[0].clone());
        for line in &seen {
            assert!(line.contains("msgid="), "an event's line carries its msgid: {line}");
        }
        let replayed = history(&mut alice, "CHATHISTORY LATEST #e * 20", "#e");
        let replayed: Vec<String> = replayed.iter().map(|line| without_time(line)).collect();
        let seen: Vec<String> = seen.iter().map(|line| without_time(line)).collect();
        assert_eq!(replayed, seen);

        carol.skip_until(|line| line.contains(" KICK #e carol "));
        carol.send("JOIN #e");
        carol.skip_until(|line| has_numeric(line, "366"));
        assert_eq!(history(&mut carol, "CHATHISTORY LATEST #e * 20", "#e"), said);
    }

    fn an_invite_only_channel_shows_a_member_only_what_was_said_since_it_joined(setup) {
        for (cutoff, sees_before) in [(ringchat::HistoryCutoff::Join, false), (ringchat::HistoryCutoff::None, true)] {
            let dir = data_dir();
            let server = setup.start_with(|config| {
                config.data_dir = Some(dir.clone());
                config.history_private_cutoff = cutoff;
            });
            let mut alice = register_with_caps(&server, "alice", CAPS);
            let mut bob = register_with_caps(&server, "bob", CAPS);
            alice.send("JOIN #p");
            alice.skip_until(|line| has_numeric(line, "366"));
            alice.send("MODE #p +i");
            alice.skip_until(|line| line.contains(" MODE #p +i"));
            let before = send_messages(&mut alice, "#p", 2);
            alice.send("INVITE bob #p");
            alice.skip_until(|line| has_numeric(line, "341"));
            bob.skip_until(|line| line.contains(" INVITE bob #p"));
            std::thread::sleep(std::time::Duration::from_millis(2));
            bob.send("JOIN #p");
            bob.skip_until(|line| has_numeric(line, "366"));
            alice.skip_until(|line| line.ends_with(" JOIN #p"));
            let after = send_messages(&mut alice, "#p", 1);
            bob.skip_until(|line| line.ends_with(":message 0"));
            let expected = if sees_before { [before, after].concat() } else { after };
            assert_eq!(history(&mut bob, "CHATHISTORY LATEST #p * 10", "#p"), expected, "{cutoff:?}");
        }
    }

    fn a_secret_channel_with_the_registration_cutoff_shows_what_was_said_since_signon(setup) {
        let dir = data_dir();
        let server = setup.start_with(|config| {
            config.data_dir = Some(dir.clone());
            config.history_private_cutoff = ringchat::HistoryCutoff::Registration;
        });
        let mut alice = register_with_caps(&server, "alice", CAPS);
        alice.send("JOIN #s");
        alice.skip_until(|line| has_numeric(line, "366"));
        alice.send("MODE #s +s");
        alice.skip_until(|line| line.contains(" MODE #s +s"));
        send_messages(&mut alice, "#s", 1);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let mut bob = register_with_caps(&server, "bob", CAPS);
        // Said after bob signed on, before he joined: his to read.
        let after_signon = send_messages(&mut alice, "#s", 1);
        bob.send("JOIN #s");
        bob.skip_until(|line| has_numeric(line, "366"));
        assert_eq!(history(&mut bob, "CHATHISTORY LATEST #s * 10", "#s"), after_signon);
    }

    fn targets_lists_the_askers_channels_by_their_latest_message(setup) {
        let dir = data_dir();
        let server = start_in(setup, &dir);
        let mut alice = register_with_caps(&server, "alice", CAPS);
        for channel in ["#one", "#two", "#quiet"] {
            alice.send(&format!("JOIN {channel}"));
            alice.skip_until(|line| has_numeric(line, "366"));
        }
        let two = send_messages(&mut alice, "#two", 1);
        let one = send_messages(&mut alice, "#one", 1);
        alice.send("CHATHISTORY TARGETS timestamp=2000-01-01T00:00:00.000Z timestamp=2100-01-01T00:00:00.000Z 10");
        let start = alice.line();
        let reference = start
            .strip_prefix(":ringchat.local BATCH +")
            .and_then(|rest| rest.strip_suffix(" draft/chathistory-targets"))
            .unwrap_or_else(|| panic!("{start}"))
            .to_owned();
        for (channel, echo) in [("#two", &two[0]), ("#one", &one[0])] {
            alice.expect(&format!(
                "@batch={reference} :ringchat.local CHATHISTORY TARGETS {channel} {}",
                tag(echo, "time")
            ));
        }
        alice.expect(&format!(":ringchat.local BATCH -{reference}"));
    }

    fn bad_requests_get_a_fail_and_a_label_goes_on_the_batch(setup) {
        let dir = data_dir();
        let server = start_in(setup, &dir);
        let mut alice = register_with_caps(&server, "alice", &format!("{CAPS} labeled-response"));
        alice.send("JOIN #l");
        alice.skip_until(|line| has_numeric(line, "366"));
        alice.send("CHATHISTORY SOMETIME #l * 10");
        alice.expect(":ringchat.local FAIL CHATHISTORY INVALID_PARAMS SOMETIME :Unknown subcommand");
        alice.send("CHATHISTORY LATEST #l * 0");
        alice.expect(":ringchat.local FAIL CHATHISTORY INVALID_PARAMS LATEST :The limit must be a positive number");
        alice.send("CHATHISTORY BEFORE #l when=now 10");
        alice.expect(":ringchat.local FAIL CHATHISTORY INVALID_MSGREFTYPE BEFORE :Only msgid= and timestamp= are understood");
        alice.send("CHATHISTORY BEFORE #l timestamp=yesterday 10");
        alice.expect(":ringchat.local FAIL CHATHISTORY INVALID_PARAMS BEFORE :The timestamp is not a server-time value");
        alice.send("CHATHISTORY AFTER #l");
        alice.expect(":ringchat.local FAIL CHATHISTORY INVALID_PARAMS AFTER :Missing parameters");
        alice.send("@label=q1 CHATHISTORY LATEST #l * 10");
        let start = alice.line();
        let reference = start
            .strip_prefix("@label=q1 :ringchat.local BATCH +")
            .and_then(|rest| rest.strip_suffix(" chathistory #l"))
            .unwrap_or_else(|| panic!("{start}"))
            .to_owned();
        alice.expect(&format!(":ringchat.local BATCH -{reference}"));
        alice.expect_nothing();
    }

    fn without_a_data_directory_or_with_no_room_history_is_not_offered(setup) {
        let dir = data_dir();
        let without_store = setup.start();
        let keeping_nothing = setup.start_with(|config| {
            config.data_dir = Some(dir.clone());
            config.history_max_messages = 0;
        });
        for server in [&without_store, &keeping_nothing] {
            let mut alice = server.connect();
            alice.send("CAP LS 302");
            let ls = alice.line();
            assert!(!ls.contains("chathistory"), "{ls}");
            alice.send("CAP REQ :draft/chathistory");
            alice.expect(":ringchat.local CAP * NAK :draft/chathistory");
            let mut bob = Client::register(server.connect(), "bob");
            bob.send("CHATHISTORY LATEST #x * 10");
            bob.expect(":ringchat.local FAIL CHATHISTORY MESSAGE_ERROR LATEST :History is not kept on this server");
        }
    }
}

/// The server binary on `addr` with history in `dir`; killed if dropped.
struct Process(std::process::Child);

impl Process {
    fn start(addr: std::net::SocketAddr, dir: &std::path::Path) -> Process {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_ringchat"))
            .args([
                "--listen",
                &addr.to_string(),
                "--flood-rate",
                "0",
                "--io",
                "ring",
            ])
            .env_remove("RUST_LOG")
            .env_remove("STATE_DIRECTORY")
            .env("RINGCHAT_DATA_DIR", dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn ringchat");
        let deadline = std::time::Instant::now() + common::HANG;
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "ringchat never listened on {addr}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Process(child)
    }

    /// SIGKILLs the server and waits until its port refuses connections: a killed
    /// ring driver's listener lingers a few milliseconds while the kernel tears its
    /// io_uring down, and a connection made then would go to the dead server.
    fn kill(mut self, addr: std::net::SocketAddr) {
        self.0.kill().expect("SIGKILL ringchat");
        self.0.wait().expect("reap ringchat");
        let deadline = std::time::Instant::now() + common::HANG;
        while std::net::TcpStream::connect(addr).is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "the killed server still accepts"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn register_on(addr: std::net::SocketAddr, nick: &str) -> Client {
    let mut client = Client::connect(addr);
    client.nick = nick.to_owned();
    client.send(&format!("CAP REQ :{CAPS}"));
    client.send(&format!("NICK {nick}"));
    client.send(&format!("USER {nick} 0 * :{nick}"));
    client.send("CAP END");
    client.skip_until(|line| has_numeric(line, "422"));
    client.send("JOIN #durable");
    client.skip_until(|line| has_numeric(line, "366"));
    client
}

/// What a SIGKILL can lose: only what the writer had not committed. A CHATHISTORY
/// answer is built inside the writer's transaction; a second query, sent after that
/// answer arrived, runs in a later transaction, which begins only once the first
/// committed. So once the second answer is in, every message before the first query
/// is on disk, and the restarted server must have all of them. Messages sent after
/// that may be lost, but what survives is a prefix of them, in order.
#[test]
fn sigkill_keeps_what_is_older_than_the_commit_interval_and_a_prefix_of_the_rest() {
    let dir = data_dir();
    let addr = common::free_port();
    let server = Process::start(addr, &dir);
    let mut alice = register_on(addr, "alice");
    let committed = send_messages(&mut alice, "#durable", 20);
    assert_eq!(
        history(&mut alice, "CHATHISTORY LATEST #durable * 100", "#durable"),
        committed
    );
    // Queries read what is not yet committed too; what is older than the writer's
    // commit interval (50 ms) by far has been committed.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let unconfirmed: Vec<String> = (0..200)
        .map(|i| {
            alice.send(&format!("PRIVMSG #durable :late {i}"));
            alice.line()
        })
        .collect();
    server.kill(addr);

    let _server = Process::start(addr, &dir);
    let mut alice = register_on(addr, "alice");
    let kept = history(&mut alice, "CHATHISTORY LATEST #durable * 1000", "#durable");
    assert_eq!(kept[..20], committed[..], "a committed message was lost");
    assert_eq!(
        kept[20..],
        unconfirmed[..kept.len() - 20],
        "what survived is not a prefix"
    );
}
