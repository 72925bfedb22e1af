//! Modern IRC and IRCv3 details a modern client relies on: LUSERS counts, secret
//! channels, message ids, bot mode, STATUSMSG, UTF8ONLY, WHOWAS, HELP, INFO and
//! LINKS, each as the exchange in the specification.

mod common;

use common::{has_numeric, join_all, register_with_caps, Client};

/// The server's own prefix in replies.
const S: &str = ":ringchat.local";

/// The value of tag `name` in `line`'s tag section.
fn tag<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let tags = line.strip_prefix('@')?.split(' ').next()?;
    tags.split(';').find_map(|tag| match tag.split_once('=') {
        Some((key, value)) if key == name => Some(value),
        None if tag == name => Some(""),
        _ => None,
    })
}

/// `line` without its tag section.
fn untagged(line: &str) -> &str {
    match line.strip_prefix('@') {
        Some(rest) => rest.split_once(' ').map_or("", |(_, line)| line),
        None => line,
    }
}

e2e! {
    // ---- LUSERS ----------------------------------------------------------------------

    fn lusers_counts_invisible_users_and_the_peak(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let _bob = server.register("bob");
        let mut carol = server.register("carol");
        carol.send("QUIT :bye");
        carol.expect_closed();
        alice.send("MODE alice +i");
        alice.expect(":alice!~alice@127.0.0.1 MODE alice +i");
        alice.send("LUSERS");
        alice.expect(&format!("{S} 251 alice :There are 1 users and 1 invisible on 1 servers"));
        alice.expect_numeric("252");
        alice.expect_numeric("253");
        alice.expect_numeric("254");
        alice.expect(&format!("{S} 255 alice :I have 2 clients and 0 servers"));
        alice.expect(&format!("{S} 265 alice 2 3 :Current local users 2, max 3"));
        alice.expect(&format!("{S} 266 alice 2 3 :Current global users 2, max 3"));
    }

    // ---- secret channels -------------------------------------------------------------

    fn a_secret_channel_is_hidden_from_non_members(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let mut bob = server.register("bob");
        alice.send("JOIN #hidden");
        alice.skip_until(|line| has_numeric(line, "366"));
        alice.send("MODE #hidden +s");
        alice.expect(":alice!~alice@127.0.0.1 MODE #hidden +s");
        alice.send("NAMES #hidden");
        alice.expect(&format!("{S} 353 alice @ #hidden :@alice"));
        alice.expect(&format!("{S} 366 alice #hidden :End of /NAMES list."));
        alice.send("MODE #hidden");
        alice.expect(&format!("{S} 324 alice #hidden +nst"));
        alice.expect_numeric("329");

        bob.send("LIST");
        bob.expect(&format!("{S} 321 bob Channel :Users  Name"));
        bob.expect(&format!("{S} 323 bob :End of /LIST"));
        bob.send("NAMES #hidden");
        bob.expect(&format!("{S} 366 bob #hidden :End of /NAMES list."));
        bob.send("WHO #hidden");
        bob.expect(&format!("{S} 315 bob #hidden :End of WHO list"));
        bob.send("WHOIS alice");
        bob.expect_numeric("311");
        bob.expect_numeric("312");
        bob.expect_numeric("317");
        bob.expect_numeric("318");
        alice.send("WHOIS alice");
        alice.expect_numeric("311");
        alice.expect(&format!("{S} 319 alice alice :@#hidden"));
        alice.skip_until(|line| has_numeric(line, "318"));

        alice.send("INVITE bob #hidden");
        alice.expect_numeric("341");
        bob.expect(":alice!~alice@127.0.0.1 INVITE bob #hidden");
        bob.send("JOIN #hidden");
        bob.skip_until(|line| has_numeric(line, "366"));
        alice.expect(":bob!~bob@127.0.0.1 JOIN #hidden");
        bob.send("LIST");
        bob.expect_numeric("321");
        bob.expect(&format!("{S} 322 bob #hidden 2 :"));
        bob.expect_numeric("323");
    }

    // ---- message ids -----------------------------------------------------------------

    fn every_relayed_message_carries_one_msgid_shared_by_echo_and_recipients(setup) {
        let server = setup.start();
        let mut alice = register_with_caps(&server, "alice", "message-tags echo-message");
        let mut bob = register_with_caps(&server, "bob", "message-tags");
        let mut carol = register_with_caps(&server, "carol", "message-tags server-time");
        let mut dave = server.register("dave");
        // carol (server-time) joins last: join_all reads the others' JOINs untagged.
        join_all("#ids", &mut [&mut alice, &mut bob, &mut dave, &mut carol]);

        alice.send("PRIVMSG #ids :first");
        let echo = alice.line();
        let (to_bob, to_carol) = (bob.line(), carol.line());
        dave.expect(":alice!~alice@127.0.0.1 PRIVMSG #ids :first");
        let id = tag(&echo, "msgid").expect("the echo has a msgid").to_owned();
        assert!(!id.is_empty(), "{echo}");
        assert_eq!(untagged(&echo), ":alice!~alice@127.0.0.1 PRIVMSG #ids :first");
        assert_eq!(tag(&to_bob, "msgid"), Some(id.as_str()), "{to_bob}");
        assert_eq!(tag(&to_carol, "msgid"), Some(id.as_str()), "{to_carol}");
        assert!(tag(&to_carol, "time").is_some(), "{to_carol}");

        alice.send("NOTICE bob :second");
        let echo = alice.line();
        let to_bob = bob.line();
        assert_eq!(untagged(&to_bob), ":alice!~alice@127.0.0.1 NOTICE bob :second");
        let second = tag(&echo, "msgid").expect("a msgid");
        assert_eq!(tag(&to_bob, "msgid"), Some(second));
        assert_ne!(second, id, "each message has its own id");

        alice.send("@+typing=active TAGMSG #ids");
        let echo = alice.line();
        let to_bob = bob.line();
        assert!(tag(&echo, "msgid").is_some_and(|third| third != id && third != second), "{echo}");
        assert_eq!(tag(&to_bob, "msgid"), tag(&echo, "msgid"));
        assert_eq!(tag(&to_bob, "+typing"), Some("active"));
        dave.expect_nothing();
    }

    // ---- bot mode --------------------------------------------------------------------

    fn bot_mode_marks_whois_who_and_messages(setup) {
        let server = setup.start();
        let mut robot = server.connect();
        robot.nick = "robot".to_owned();
        robot.send("NICK robot");
        robot.send("USER robot 0 * :robot test");
        let burst = robot.skip_until(|line| has_numeric(line, "422"));
        assert!(burst.iter().any(|line| line.contains(" BOT=B ")), "{burst:?}");
        let mut bob = register_with_caps(&server, "bob", "message-tags");
        robot.send("MODE robot +B");
        robot.expect(":robot!~robot@127.0.0.1 MODE robot +B");
        robot.send("MODE robot +iB");
        robot.expect(":robot!~robot@127.0.0.1 MODE robot +i");
        robot.send("MODE robot");
        robot.expect(&format!("{S} 221 robot +Bi"));

        robot.send("PRIVMSG bob :beep");
        let line = bob.line();
        assert_eq!(tag(&line, "bot"), Some(""), "{line}");
        assert!(tag(&line, "msgid").is_some(), "{line}");
        assert_eq!(untagged(&line), ":robot!~robot@127.0.0.1 PRIVMSG bob :beep");

        bob.send("WHOIS robot");
        let whois = bob.skip_until(|line| has_numeric(line, "318"));
        assert!(whois.contains(&format!("{S} 335 bob robot :is a bot on ringchat")), "{whois:?}");
        bob.send("WHO robot");
        bob.expect(&format!("{S} 352 bob * ~robot 127.0.0.1 ringchat.local robot HB :0 robot test"));
        bob.expect_numeric("315");

        bob.send("JOIN #b");
        bob.skip_until(|line| has_numeric(line, "366"));
        robot.send("JOIN #b");
        bob.expect("@bot :robot!~robot@127.0.0.1 JOIN #b");
        robot.skip_until(|line| has_numeric(line, "366"));

        robot.send("MODE robot -B");
        robot.expect(":robot!~robot@127.0.0.1 MODE robot -B");
        robot.send("PRIVMSG bob :human now");
        let line = bob.line();
        assert_eq!(tag(&line, "bot"), None, "{line}");
    }

    // ---- STATUSMSG -------------------------------------------------------------------

    fn statusmsg_reaches_only_members_with_that_status(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        let mut bob = server.register("bob");
        let mut carol = server.register("carol");
        let mut dave = server.register("dave");
        join_all("#c", &mut [&mut alice, &mut bob, &mut carol]);
        alice.send("MODE #c +v bob");
        let voice = ":alice!~alice@127.0.0.1 MODE #c +v bob";
        alice.expect(voice);
        bob.expect(voice);
        carol.expect(voice);

        carol.send("PRIVMSG @#c :ops only");
        alice.expect(":carol!~carol@127.0.0.1 PRIVMSG @#c :ops only");
        carol.send("NOTICE +#c :voiced and up");
        alice.expect(":carol!~carol@127.0.0.1 NOTICE +#c :voiced and up");
        bob.expect(":carol!~carol@127.0.0.1 NOTICE +#c :voiced and up");
        bob.expect_nothing();
        carol.expect_nothing();

        dave.send("PRIVMSG @#c :from outside");
        dave.expect(&format!("{S} 404 dave @#c :Cannot send to channel"));
        dave.send("PRIVMSG @#nowhere :hello");
        dave.expect(&format!("{S} 403 dave @#nowhere :No such channel"));
        alice.expect_nothing();
    }

    // ---- UTF8ONLY --------------------------------------------------------------------

    fn utf8only_refuses_invalid_text_when_enabled(setup) {
        let server = setup.start_with(|config| config.utf8_only = true);
        let mut alice = server.connect();
        alice.nick = "alice".to_owned();
        alice.send("NICK alice");
        alice.send("USER alice 0 * :alice test");
        let burst = alice.skip_until(|line| has_numeric(line, "422"));
        assert!(burst.iter().any(|line| line.contains(" UTF8ONLY ")), "{burst:?}");
        let mut bob = server.register("bob");
        alice.send_raw(b"PRIVMSG bob :caf\xe9\r\n");
        alice.expect(&format!("{S} FAIL PRIVMSG INVALID_UTF8 :Message rejected, it is not valid UTF-8"));
        alice.send_raw(b"JOIN #caf\xe9\r\n");
        alice.expect(&format!("{S} FAIL JOIN INVALID_UTF8 :Message rejected, it is not valid UTF-8"));
        alice.send("PRIVMSG bob :caf\u{e9}");
        bob.expect(":alice!~alice@127.0.0.1 PRIVMSG bob :caf\u{e9}");
        bob.expect_nothing();
    }

    fn without_utf8only_text_is_relayed_as_sent(setup) {
        let server = setup.start();
        let mut alice = server.connect();
        alice.send("NICK alice");
        alice.send("USER alice 0 * :alice test");
        let burst = alice.skip_until(|line| has_numeric(line, "422"));
        assert!(!burst.iter().any(|line| line.contains("UTF8ONLY")), "{burst:?}");
        let mut bob = server.register("bob");
        alice.send_raw(b"PRIVMSG bob :caf\xe9\r\n");
        assert_eq!(bob.read_line_bytes(), b":alice!~alice@127.0.0.1 PRIVMSG bob :caf\xe9\r\n");
    }

    // ---- WHOWAS ----------------------------------------------------------------------

    fn whowas_remembers_former_holders_of_a_nick_newest_first(setup) {
        let server = setup.start();
        let mut bob = server.register("bob");
        let mut alice = server.register("alice");
        alice.send("NICK alicia");
        alice.expect(":alice!~alice@127.0.0.1 NICK :alicia");
        alice.send("QUIT :bye");
        alice.expect_closed();
        let mut again = server.connect();
        again.send("NICK Alice");
        again.send("USER second 0 * :Second Alice");
        again.skip_until(|line| has_numeric(line, "422"));
        again.send("QUIT");
        again.expect_closed();

        bob.send("WHOWAS alice");
        bob.expect(&format!("{S} 314 bob Alice ~second 127.0.0.1 * :Second Alice"));
        let server_line = bob.expect_numeric("312");
        assert!(server_line.starts_with(&format!("{S} 312 bob Alice ringchat.local :")), "{server_line}");
        assert!(server_line.ends_with(" UTC"), "{server_line}");
        bob.expect(&format!("{S} 314 bob alice ~alice 127.0.0.1 * :alice test"));
        bob.expect_numeric("312");
        bob.expect(&format!("{S} 369 bob alice :End of WHOWAS"));

        bob.send("WHOWAS ALICE 1");
        bob.expect(&format!("{S} 314 bob Alice ~second 127.0.0.1 * :Second Alice"));
        bob.expect_numeric("312");
        bob.expect(&format!("{S} 369 bob ALICE :End of WHOWAS"));

        bob.send("WHOWAS alicia");
        bob.expect(&format!("{S} 314 bob alicia ~alice 127.0.0.1 * :alice test"));
        bob.expect_numeric("312");
        bob.expect_numeric("369");

        bob.send("WHOWAS nobody");
        bob.expect(&format!("{S} 406 bob nobody :There was no such nickname"));
        bob.expect(&format!("{S} 369 bob nobody :End of WHOWAS"));
        bob.send("WHOWAS");
        bob.expect(&format!("{S} 431 bob :No nickname given"));
    }

    // ---- HELP, INFO, LINKS -----------------------------------------------------------

    fn help_answers_with_the_help_numerics(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        alice.send("HELP");
        alice.expect(&format!("{S} 704 alice * :ringchat help"));
        let rest = alice.skip_until(|line| has_numeric(line, "706"));
        assert!(rest[..rest.len() - 1].iter().all(|line| has_numeric(line, "705")), "{rest:?}");
        assert!(rest.iter().any(|line| line.contains("MONITOR MOTD")), "{rest:?}");
        alice.send("HELPOP privmsg");
        alice.expect(&format!("{S} 704 alice privmsg :PRIVMSG <target>[,target] :text"));
        alice.expect_numeric("705");
        alice.expect(&format!("{S} 706 alice privmsg :+#channel its voiced members and operators."));
        alice.send("HELP FROBNICATE");
        alice.expect(&format!("{S} 524 alice FROBNICATE :No help available on this topic"));
    }

    fn info_and_links_describe_this_one_server(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        alice.send("INFO");
        let info = alice.skip_until(|line| has_numeric(line, "374"));
        assert!(info.len() > 1 && info[..info.len() - 1].iter().all(|line| has_numeric(line, "371")), "{info:?}");
        assert_eq!(info[info.len() - 1], format!("{S} 374 alice :End of INFO list"));
        alice.send("INFO elsewhere.example");
        alice.expect(&format!("{S} 402 alice elsewhere.example :No such server"));
        alice.send("LINKS");
        alice.expect(&format!("{S} 364 alice ringchat.local ringchat.local :0 ringchat IRC server"));
        alice.expect(&format!("{S} 365 alice * :End of /LINKS list"));
    }

    // ---- what is advertised ----------------------------------------------------------

    fn isupport_and_cap_ls_advertise_what_is_implemented(setup) {
        let server = setup.start();
        let mut alice = server.connect();
        alice.send("CAP LS 302");
        let ls = alice.line();
        let caps: Vec<&str> = ls.rsplit(" :").next().unwrap_or("").split(' ').collect();
        assert_eq!(caps, ["account-notify", "account-tag", "away-notify", "batch", "cap-notify",
            "draft/account-registration=before-connect,custom-account-name", "draft/read-marker",
            "echo-message",
            "extended-join", "extended-monitor", "invite-notify", "labeled-response",
            "message-tags", "multi-prefix", "sasl=PLAIN,EXTERNAL,SCRAM-SHA-256", "server-time", "setname",
            "standard-replies", "userhost-in-names"]);
        alice.send("NICK alice");
        alice.send("USER alice 0 * :alice");
        alice.send("CAP END");
        let burst = alice.skip_until(|line| has_numeric(line, "422"));
        let tokens: Vec<&str> = burst
            .iter()
            .filter(|line| has_numeric(line, "005"))
            .flat_map(|line| line.split(" :").next().unwrap_or("").split(' ').skip(3))
            .collect();
        for token in ["CHANMODES=beI,k,l,imnst", "EXCEPTS=e", "INVEX=I", "BOT=B", "STATUSMSG=@+", "MONITOR=100"] {
            assert!(tokens.contains(&token), "{token} in {tokens:?}");
        }
        assert!(!tokens.contains(&"UTF8ONLY"), "UTF8ONLY is off by default");
    }

    // ---- standard replies ------------------------------------------------------------

    fn failures_without_a_numeric_are_fail_lines_for_standard_replies_clients(setup) {
        let server = setup.start();
        let mut modern = register_with_caps(&server, "modern", "standard-replies");
        let mut plain = server.register("plain");
        let masks = ["#a*"; 9].join(",");
        modern.send(&format!("LIST {masks}"));
        modern.expect(&format!("{S} FAIL LIST INVALID_PARAMS :At most 8 masks of at most 64 bytes"));
        modern.expect(&format!("{S} 323 modern :End of /LIST"));
        plain.send(&format!("LIST {masks}"));
        plain.expect(&format!("{S} NOTICE plain :LIST: At most 8 masks of at most 64 bytes"));
        plain.expect(&format!("{S} 323 plain :End of /LIST"));
        modern.send("MONITOR ?");
        modern.expect(&format!("{S} FAIL MONITOR INVALID_PARAMS :MONITOR takes +, -, C, L or S"));
        plain.send("SETNAME :");
        plain.expect(&format!("{S} FAIL SETNAME INVALID_REALNAME :Real name is empty or too long"));
    }

    fn whowas_answers_the_same_on_every_shard(setup) {
        let server = setup.start();
        let mut askers: Vec<Client> = (0..12).map(|i| server.register(&format!("a{i}"))).collect();
        let mut gone = server.register("gone");
        gone.send("QUIT");
        gone.expect_closed();
        for asker in &mut askers {
            asker.send("WHOWAS gone");
            asker.expect(&format!("{S} 314 {} gone ~gone 127.0.0.1 * :gone test", asker.nick));
            asker.expect_numeric("312");
            asker.expect(&format!("{S} 369 {} gone :End of WHOWAS", asker.nick));
        }
    }
}
