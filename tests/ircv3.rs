//! IRCv3 capabilities as a client sees them: negotiation, server-time, message-tags
//! and TAGMSG, echo-message, multi-prefix, userhost-in-names, setname, and
//! labeled-response with batch.

mod common;

use common::{has_numeric, join_all, Client, TestServer};

/// Registers `nick` after requesting `caps` (space-separated).
fn register_with_caps(server: &TestServer, nick: &str, caps: &str) -> Client {
    let mut client = server.connect();
    client.nick = nick.to_owned();
    client.send("CAP LS 302");
    client.send(&format!("NICK {nick}"));
    client.send(&format!("USER {nick} 0 * :{nick}"));
    let ls = client.line();
    assert!(ls.starts_with(":ringchat.local CAP * LS :"), "{ls}");
    client.send(&format!("CAP REQ :{caps}"));
    client.expect(&format!(":ringchat.local CAP {nick} ACK :{caps}"));
    client.send("CAP END");
    client.skip_until(|line| has_numeric(line, "422"));
    client
}

/// `line` without its leading `msgid=` tag (every relayed message has one; its
/// value is checked in tests/conformance.rs).
fn without_msgid(line: &str) -> String {
    let rest = line.strip_prefix("@msgid=").expect("a msgid tag first");
    let (_, rest) = rest.split_once([';', ' ']).expect("more after the msgid");
    match rest.starts_with(':') {
        true => rest.to_owned(),
        false => format!("@{rest}"),
    }
}

e2e! {
    fn cap_ls_lists_every_capability_and_req_is_all_or_nothing(setup) {
        let server = setup.start();
        let mut client = server.connect();
        client.send("CAP LS 302");
        let ls = client.line();
        for cap in ["away-notify", "batch", "cap-notify", "echo-message", "labeled-response",
                    "message-tags", "multi-prefix", "server-time", "setname", "userhost-in-names"] {
            assert!(ls.split(' ').any(|word| word.trim_start_matches(':') == cap), "LS lacks {cap}: {ls}");
        }
        client.send("CAP REQ :server-time bogus-cap");
        client.expect(":ringchat.local CAP * NAK :server-time bogus-cap");
        client.send("CAP REQ :server-time echo-message");
        client.expect(":ringchat.local CAP * ACK :server-time echo-message");
        client.send("CAP LIST");
        client.expect(":ringchat.local CAP * LIST :cap-notify echo-message server-time");
        client.send("CAP REQ :-echo-message");
        client.expect(":ringchat.local CAP * ACK :-echo-message");
        client.send("CAP FROB");
        client.expect_numeric("410");
    }

    fn server_time_tags_relayed_messages_for_clients_that_asked(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let mut timed = register_with_caps(&server, "timed", "server-time");
        alice.send("PRIVMSG timed :what time is it");
        let line = timed.line();
        let (tags, rest) = line.split_once(' ').expect("tags then line");
        assert!(tags.starts_with("@time=") && tags.ends_with('Z') && tags.len() == "@time=2026-11-25T09:00:00.000Z".len(), "{tags}");
        assert_eq!(rest, ":alice!~alice@127.0.0.1 PRIVMSG timed :what time is it");
        timed.send("PRIVMSG alice :plain for you");
        alice.expect(":timed!~timed@127.0.0.1 PRIVMSG alice :plain for you");
    }

    fn client_tags_and_tagmsg_reach_only_message_tags_clients(setup) {
        let server = setup.start();
        let mut sender = register_with_caps(&server, "sender", "message-tags");
        let mut tagged = register_with_caps(&server, "tagged", "message-tags");
        let mut plain = server.register("plain");
        join_all("#tags", &mut [&mut sender, &mut tagged, &mut plain]);
        sender.send("@+draft/react=1;label=nope;+typing=active PRIVMSG #tags :hi");
        assert_eq!(
            without_msgid(&tagged.line()),
            "@+draft/react=1;+typing=active :sender!~sender@127.0.0.1 PRIVMSG #tags :hi"
        );
        plain.expect(":sender!~sender@127.0.0.1 PRIVMSG #tags :hi");
        sender.send("@+typing=paused TAGMSG #tags");
        assert_eq!(
            without_msgid(&tagged.line()),
            "@+typing=paused :sender!~sender@127.0.0.1 TAGMSG #tags"
        );
        plain.expect_nothing();
    }

    fn echo_message_returns_the_senders_own_message(setup) {
        let server = setup.start();
        let mut echoer = register_with_caps(&server, "echoer", "echo-message");
        let mut bob = server.register("bob");
        join_all("#echo", &mut [&mut echoer, &mut bob]);
        echoer.send("PRIVMSG #echo :hear myself");
        echoer.expect(":echoer!~echoer@127.0.0.1 PRIVMSG #echo :hear myself");
        bob.expect(":echoer!~echoer@127.0.0.1 PRIVMSG #echo :hear myself");
        echoer.send("NOTICE bob :direct");
        echoer.expect(":echoer!~echoer@127.0.0.1 NOTICE bob :direct");
        bob.expect(":echoer!~echoer@127.0.0.1 NOTICE bob :direct");
    }

    fn multi_prefix_and_userhost_in_names_change_names_replies(setup) {
        let server = setup.start();
        let mut op = server.register("op");
        op.send("JOIN #names");
        op.skip_until(|line| has_numeric(line, "366"));
        op.send("MODE #names +v op");
        op.line();
        let mut viewer = register_with_caps(&server, "viewer", "multi-prefix userhost-in-names");
        viewer.send("NAMES #names");
        viewer.expect(":ringchat.local 353 viewer = #names :@+op!~op@127.0.0.1");
        viewer.expect_numeric("366");
        let mut plain = server.register("plain");
        plain.send("NAMES #names");
        plain.expect(":ringchat.local 353 plain = #names :@op");
    }

    fn setname_changes_the_real_name_for_setname_clients(setup) {
        let server = setup.start();
        let mut renamer = register_with_caps(&server, "renamer", "setname");
        let mut watcher = register_with_caps(&server, "watcher", "setname");
        let mut plain = server.register("plain");
        join_all("#set", &mut [&mut renamer, &mut watcher, &mut plain]);
        renamer.send("SETNAME :A New Name");
        renamer.expect(":renamer!~renamer@127.0.0.1 SETNAME :A New Name");
        watcher.expect(":renamer!~renamer@127.0.0.1 SETNAME :A New Name");
        plain.expect_nothing();
        plain.send("WHOIS renamer");
        let whois = plain.expect_numeric("311");
        assert!(whois.ends_with(":A New Name"), "{whois}");
    }

    fn a_labeled_message_to_oneself_labels_only_the_echo(setup) {
        let server = setup.start();
        let mut alice = register_with_caps(&server, "alice", "labeled-response batch echo-message");
        for command in ["PRIVMSG", "NOTICE"] {
            alice.send(&format!("@label=self {command} alice :me"));
            alice.expect(&format!("@label=self :alice!~alice@127.0.0.1 {command} alice :me"));
            alice.expect(&format!(":alice!~alice@127.0.0.1 {command} alice :me"));
        }
        let mut tagger = register_with_caps(&server, "tagger", "labeled-response batch echo-message message-tags");
        tagger.send("@label=tag;+typing=active TAGMSG tagger");
        let (echo, delivered) = (tagger.line(), tagger.line());
        assert!(echo.contains("label=tag") && echo.ends_with(" TAGMSG tagger"), "{echo}");
        assert!(!delivered.contains("label=") && delivered.ends_with(" TAGMSG tagger"), "{delivered}");
        let mut plain = register_with_caps(&server, "plain", "labeled-response batch");
        plain.send("@label=quiet PRIVMSG plain :me");
        plain.expect("@label=quiet :ringchat.local ACK");
        plain.expect(":plain!~plain@127.0.0.1 PRIVMSG plain :me");
    }

    fn an_unknown_command_of_any_printable_word_gets_a_labeled_421(setup) {
        let server = setup.start();
        let mut alice = register_with_caps(&server, "alice", "labeled-response batch");
        alice.send("@label=what NONEXISTENT_COMMAND");
        alice.expect("@label=what :ringchat.local 421 alice NONEXISTENT_COMMAND :Unknown command");
        alice.send("NO-SUCH.THING x");
        alice.expect(":ringchat.local 421 alice NO-SUCH.THING :Unknown command");
    }

    fn labeled_responses_are_labeled_acked_or_batched(setup) {
        let server = setup.start();
        let mut alice = register_with_caps(&server, "alice", "labeled-response batch");
        let mut bob = server.register("bob");
        alice.send("@label=one PING :x");
        alice.expect("@label=one :ringchat.local PONG ringchat.local :x");
        alice.send("@label=two PRIVMSG bob :hello");
        alice.expect("@label=two :ringchat.local ACK");
        bob.expect(":alice!~alice@127.0.0.1 PRIVMSG bob :hello");
        alice.send("@label=three JOIN #lab");
        let start = alice.line();
        let reference = start
            .strip_prefix("@label=three :ringchat.local BATCH +")
            .and_then(|rest| rest.strip_suffix(" labeled-response"))
            .unwrap_or_else(|| panic!("not a labeled batch start: {start}"))
            .to_owned();
        alice.expect(&format!("@batch={reference} :alice!~alice@127.0.0.1 JOIN #lab"));
        alice.expect(&format!("@batch={reference} :ringchat.local 353 alice = #lab :@alice"));
        alice.expect(&format!("@batch={reference} :ringchat.local 366 alice #lab :End of /NAMES list."));
        alice.expect(&format!(":ringchat.local BATCH -{reference}"));
    }
}
