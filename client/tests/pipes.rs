//! The client binary driven through pipes (non-interactive mode) against a real server
//! on loopback: people talking, slash-commands (WHOIS, LIST, channel operator
//! commands, queries), formatting removed or coloured, end of input, reconnecting
//! after a server restart, and the exit codes of each way a session can fail.

mod common;

use common::{closed_port, Client, RawPeer, ScriptedServer, Step, TestServer, CLIENT};
use std::process::Command;

#[test]
fn two_clients_talk_to_each_other() {
    let server = TestServer::start();
    let mut alice = Client::start(&server.addr(), "alice", &[]);
    alice.expect("-- alice joined #lobby");
    let mut bob = Client::start(&server.addr(), "bob", &[]);
    bob.expect("-- bob joined #lobby");
    alice.expect("-- bob joined #lobby");

    alice.send("hi bob, how are you?");
    assert!(bob
        .expect("<alice>")
        .ends_with("<alice> hi bob, how are you?"));
    // Our own lines are shown too, time-stamped like everyone else's.
    let own = alice.expect("<alice> hi bob");
    assert!(
        own.starts_with('[') && own.as_bytes().get(6) == Some(&b']'),
        "{own}"
    );
    bob.send("fine, thanks");
    alice.expect("<bob> fine, thanks");
}

/// alice (the client) and bob (a raw connection) in #rust; returns once alice has
/// seen bob join.
fn alice_and_bob_in_rust(server: &TestServer) -> (Client, RawPeer) {
    let mut alice = Client::start(&server.addr(), "alice", &["--channel", "#rust"]);
    alice.expect("-- alice joined #rust");
    let mut bob = RawPeer::register(&server.addr(), "bob");
    bob.send("JOIN #rust");
    bob.expect("366");
    alice.expect("-- bob joined #rust");
    (alice, bob)
}

#[test]
fn slash_commands_reach_the_server() {
    let server = TestServer::start();
    let (mut alice, mut bob) = alice_and_bob_in_rust(&server);

    alice.send("/me waves");
    bob.expect("PRIVMSG #rust :\x01ACTION waves\x01");
    alice.expect("* alice waves");

    alice.send("/msg bob psst");
    bob.expect("PRIVMSG bob :psst");
    alice.expect("-> *bob* psst");
    bob.send("PRIVMSG alice :psst yourself");
    alice.expect("*bob* psst yourself");

    alice.send("/names");
    let names = alice.expect("-- names #rust:");
    assert!(names.contains("alice") && names.contains("bob"), "{names}");

    bob.send("JOIN #lobby");
    bob.expect("366");
    alice.send("/join #lobby");
    alice.expect("-- alice joined #lobby");
    alice.send("now in the lobby");
    bob.expect("PRIVMSG #lobby :now in the lobby");

    // After /part, typed text goes to the channel joined before.
    alice.send("/part");
    bob.expect("PART #lobby");
    alice.send("back in rust");
    bob.expect("PRIVMSG #rust :back in rust");

    alice.send("/nick alicia");
    bob.expect("NICK");
    alice.expect("-- alice is now known as alicia");

    alice.send("/raw PRIVMSG bob :raw hello");
    let raw = bob.expect("PRIVMSG bob :raw hello");
    assert!(raw.starts_with(":alicia!"), "{raw}");

    alice.send("/quit see you");
    bob.expect("see you");
    let (code, stderr) = alice.wait_exit();
    assert_eq!(code, 0, "stderr: {stderr}");
    assert_eq!(stderr, "");
}

#[test]
fn topic_who_and_away_commands() {
    let server = TestServer::start();
    let (mut alice, mut bob) = alice_and_bob_in_rust(&server);

    alice.send("/topic Rust talk");
    bob.expect("TOPIC #rust :Rust talk");
    alice.expect("-- alice changed the topic of #rust to: Rust talk");
    alice.send("/topic");
    alice.expect("-- topic of #rust: Rust talk");

    alice.send("/who");
    alice.expect("-- #rust bob (");

    alice.send("/away lunch");
    alice.expect("-- You have been marked as being away");
    bob.send("PRIVMSG alice :are you there?");
    bob.expect("301 bob alice :lunch");
    alice.send("/away");
    alice.expect("-- You are no longer marked as being away");
}

#[test]
fn server_errors_and_usage_mistakes_are_marked() {
    let server = TestServer::start();
    let mut alice = Client::start(&server.addr(), "alice", &[]);
    alice.expect("-- alice joined #lobby");
    alice.send("/msg nobody-here hello?");
    alice.expect("!! nobody-here:");
    alice.send("/frobnicate");
    alice.expect("!! unknown command /frobnicate");
    alice.send("/help");
    alice.expect("/join #chan");
}

#[test]
fn end_of_input_sends_everything_then_quits_cleanly() {
    let server = TestServer::start();
    let mut bob = RawPeer::register(&server.addr(), "bob");
    bob.send("JOIN #lobby");
    bob.expect("366");

    // All input is written before the client has even registered: it must still
    // arrive in order, joined, and only then the QUIT.
    let mut alice = Client::start(&server.addr(), "alice", &[]);
    alice.send("first");
    alice.send("second");
    alice.close_stdin();
    bob.expect("PRIVMSG #lobby :first");
    bob.expect("PRIVMSG #lobby :second");
    bob.expect(" QUIT ");
    let (code, stderr) = alice.wait_exit();
    assert_eq!(code, 0, "stderr: {stderr}");
    assert_eq!(stderr, "");
}

#[test]
fn server_shutdown_closes_the_link_with_exit_code_4_without_reconnecting() {
    let mut server = TestServer::start();
    let mut alice = Client::start(&server.addr(), "alice", &["--no-reconnect"]);
    alice.expect("-- alice joined #lobby");
    server.shutdown();
    let (code, stderr) = alice.wait_exit();
    assert_eq!(code, 4, "stderr: {stderr}");
    assert!(
        stderr.starts_with("!! server closed the link: "),
        "stderr: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
}

#[test]
fn reconnects_and_rejoins_after_a_server_restart() {
    let mut server = TestServer::start();
    let mut alice = Client::start(&server.addr(), "alice", &[]);
    alice.expect("-- alice joined #lobby");
    alice.send("/join #rust");
    alice.expect("-- alice joined #rust");

    server.restart();
    alice.expect("!! server closed the link: ");
    alice.expect("-- reconnecting to ");
    alice.expect("-- reconnected");
    // Rejoined in the order joined, so #rust is still where text goes.
    alice.expect("-- alice joined #lobby");
    alice.expect("-- alice joined #rust");
    let mut bob = RawPeer::register(&server.addr(), "bob");
    bob.send("JOIN #rust");
    bob.expect("366");
    alice.expect("-- bob joined #rust");
    alice.send("still here");
    bob.expect("PRIVMSG #rust :still here");
    alice.send("/quit");
    let (code, stderr) = alice.wait_exit();
    assert_eq!(code, 0, "stderr: {stderr}");
}

#[test]
fn whois_and_list_answer_in_sentences() {
    let server = TestServer::start();
    let (mut alice, mut bob) = alice_and_bob_in_rust(&server);
    bob.send("JOIN #go");
    bob.expect("366");
    bob.send("TOPIC #go :gophers only");
    bob.expect("TOPIC #go");

    alice.send("/whois bob");
    let user = alice.expect("-- bob is ");
    assert!(user.contains("@127.0.0.1 (raw peer)"), "{user}");
    let channels = alice.expect("-- bob is in ");
    assert!(
        channels.contains("#rust") && channels.contains("#go"),
        "{channels}"
    );

    alice.send("/list");
    let all = alice.expect_lines("-- end of the channel list");
    assert!(
        all.iter()
            .any(|l| l.starts_with("-- #go (1 users): gophers only")),
        "{all:?}"
    );
    assert!(
        all.iter().any(|l| l.starts_with("-- #rust (2 users)")),
        "{all:?}"
    );

    alice.send("/list rust");
    let filtered = alice.expect_lines("-- end of the channel list");
    assert!(
        filtered.iter().any(|l| l.starts_with("-- #rust (2 users)")),
        "{filtered:?}"
    );
    assert!(!filtered.iter().any(|l| l.contains("#go")), "{filtered:?}");
    alice.send("/list gopher");
    let by_topic = alice.expect_lines("-- end of the channel list");
    assert!(
        by_topic.iter().any(|l| l.starts_with("-- #go ")),
        "{by_topic:?}"
    );
    assert!(
        !by_topic.iter().any(|l| l.contains("#rust")),
        "{by_topic:?}"
    );
}

#[test]
fn operator_commands_queries_and_notices() {
    let server = TestServer::start();
    // alice created #rust, so she is its operator.
    let (mut alice, mut bob) = alice_and_bob_in_rust(&server);

    alice.send("/mode +s");
    bob.expect("MODE #rust +s");
    alice.expect("-- alice sets mode +s on #rust");
    alice.send("/mode");
    alice.expect("-- modes of #rust: +");

    alice.send("/query bob");
    alice.expect("-- talking to bob");
    alice.send("just between us");
    bob.expect("PRIVMSG bob :just between us");
    alice.expect("-> *bob* just between us");
    alice.send("/query");
    alice.expect("-- query ended");
    alice.send("to everyone");
    bob.expect("PRIVMSG #rust :to everyone");

    alice.send("/notice bob heads up");
    bob.expect("NOTICE bob :heads up");

    alice.send("/kick bob behave");
    bob.expect("KICK #rust bob :behave");
    alice.expect("-- bob was kicked from #rust by alice (behave)");
    alice.send("/ban bob");
    alice.expect("-- alice sets mode +b bob!*@* on #rust");
    bob.send("JOIN #rust");
    bob.expect(" 474 ");
    alice.send("/unban bob!*@*");
    alice.expect("-- alice sets mode -b bob!*@* on #rust");
    alice.send("/invite bob");
    bob.expect("INVITE bob #rust");
    alice.expect("-- invited bob to #rust");
}

#[test]
fn formatting_is_removed_in_a_pipe_and_coloured_on_request() {
    let server = TestServer::start();
    let (mut alice, mut bob) = alice_and_bob_in_rust(&server);
    let mut carol = Client::start(
        &server.addr(),
        "carol",
        &["--channel", "#rust", "--color", "always"],
    );
    carol.expect("-- carol joined #rust");
    alice.expect("-- carol joined #rust");
    bob.send("PRIVMSG #rust :\x02bold\x02 and \x0304,12red on blue\x03 \x1b[2Jdone");
    let plain = alice.expect("<bob>");
    assert!(
        plain.ends_with("<bob> bold and red on blue [2Jdone"),
        "{plain:?}"
    );
    let coloured = carol.expect("<bob>");
    assert!(
        coloured
            .ends_with("<bob> \x1b[0;1mbold\x1b[0m and \x1b[0;91;104mred on blue\x1b[0m [2Jdone"),
        "{coloured:?}"
    );
}

#[test]
fn connection_refused_has_exit_code_3() {
    let addr = format!("127.0.0.1:{}", closed_port());
    let mut client = Client::start(&addr, "alice", &[]);
    let (code, stderr) = client.wait_exit();
    assert_eq!(code, 3);
    assert_eq!(
        stderr.trim_end(),
        format!("!! cannot connect to {addr}: connection refused")
    );
}

#[test]
fn bad_arguments_have_exit_code_2() {
    let output = Command::new(CLIENT)
        .args(["127.0.0.1:notaport"])
        .output()
        .expect("client runs");
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn taken_nick_falls_back_to_a_suffix() {
    let server = TestServer::start();
    let _carol = RawPeer::register(&server.addr(), "carol");
    let _carol_ = RawPeer::register(&server.addr(), "carol_");
    let mut second = Client::start(&server.addr(), "carol", &[]);
    second.expect("nickname carol is taken, trying carol_");
    second.expect("nickname carol_ is taken, trying carol1");
    second.expect("-- carol1 joined #lobby");
}

#[test]
fn password_is_sent_first() {
    let server = TestServer::start_with_password(Some("sesame"));
    let mut alice = Client::start(&server.addr(), "alice", &["--password", "sesame"]);
    alice.expect("-- alice joined #lobby");

    let mut mallory = Client::start(&server.addr(), "mallory", &["--password", "wrong"]);
    let (code, stderr) = mallory.wait_exit();
    assert_eq!(code, 4, "stderr: {stderr}");
    assert!(stderr.starts_with("!! server closed the link"), "{stderr}");
}

#[test]
fn registration_answers_ping_and_joins_after_welcome() {
    let script = ScriptedServer::start(vec![
        Step::Expect("USER "),
        Step::Send("PING :before-welcome"),
        Step::Expect("PONG :before-welcome"),
        Step::Send(":fake 001 {nick} :Welcome to the fake network"),
        Step::Expect("JOIN #lobby"),
        Step::Send(":{nick}!~u@127.0.0.1 JOIN #lobby"),
        Step::Send("PING :after-welcome"),
        Step::Expect("PONG :after-welcome"),
        Step::Send("ERROR :Closing Link: (Killed by the test)"),
        Step::Close,
    ]);
    let mut client = Client::start(&script.addr(), "dave", &["--no-reconnect"]);
    client.expect("-- Welcome to the fake network");
    client.expect("-- dave joined #lobby");
    let (code, stderr) = client.wait_exit();
    let sent = script.finish();
    assert_eq!(sent[0], "NICK dave");
    assert!(sent[1].starts_with("USER "), "{sent:?}");
    assert_eq!(code, 4);
    assert_eq!(
        stderr.trim_end(),
        "!! server closed the link: Closing Link: (Killed by the test)"
    );
}

#[test]
fn every_nick_taken_has_exit_code_5() {
    let mut script = vec![Step::Expect("USER ")];
    script.push(Step::Send(":fake 433 * {nick} :Nickname is already in use"));
    for _ in 1..10 {
        script.push(Step::Expect("NICK "));
        script.push(Step::Send(":fake 433 * {nick} :Nickname is already in use"));
    }
    let script = ScriptedServer::start(script);
    let mut client = Client::start(&script.addr(), "erin", &[]);
    let (code, stderr) = client.wait_exit();
    let sent = script.finish();
    assert_eq!(code, 5, "stderr: {stderr}");
    assert!(
        stderr.starts_with("!! nickname in use: tried erin, erin_, erin1"),
        "{stderr}"
    );
    let nicks: Vec<&String> = sent.iter().filter(|l| l.starts_with("NICK ")).collect();
    assert_eq!(nicks.len(), 10, "{sent:?}");
}
