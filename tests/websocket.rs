//! IRC over WebSocket as browsers see it, on every driver and with 1 and 4 shards:
//! the web client's files over plain HTTP, the opening handshake and the IRCv3
//! subprotocols, chat between WebSocket and raw TCP clients in one channel, ping and
//! close frames, hostile frames that get a close with a reason, 512-byte relayed lines, the
//! sendq cut-off, `Origin` checks, trusted proxies' forwarded addresses (and the
//! per-source limits on them) and WebSocket over TLS. The client side
//! is `tungstenite` (tests/common/websocket.rs), or raw bytes where a library would
//! refuse to send them.

mod common;

use common::tls::TestPki;
use common::websocket::{http_request, RawWs, WsClient};
use common::{join_all, Client};
use tungstenite::Message;

e2e! {
    fn a_plain_get_serves_the_web_client(setup) {
        let server = setup.start_websocket(|_| {});
        let ws = server.ws_addr.expect("a WebSocket listener");
        let page = http_request(ws, "GET / HTTP/1.1\r\nHost: test\r\n\r\n");
        assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
        assert!(page.contains("Content-Type: text/html"));
        assert!(page.contains("<script src=\"app.js\""), "the page loads the client");
        let script = http_request(ws, "GET /app.js HTTP/1.1\r\n\r\n");
        assert!(script.contains("Content-Type: text/javascript"));
        let missing = http_request(ws, "GET /secret HTTP/1.1\r\n\r\n");
        assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");
        let garbage = http_request(ws, "NICK alice\r\nUSER a 0 * :a\r\n\r\n");
        assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage}");
        // The IRC port is unchanged.
        let mut plain = server.register("alice");
        plain.barrier();
    }

    fn websocket_and_tcp_clients_chat_in_one_channel(setup) {
        let server = setup.start_websocket(|_| {});
        let ws = server.ws_addr.expect("a WebSocket listener");
        let mut web = WsClient::register(ws, "webby");
        let mut tcp = server.register("tcpy");
        web.send("JOIN #lobby");
        web.expect(&format!(":{} JOIN #lobby", web.source()));
        web.skip_until(|line| line.contains(" 366 "));
        tcp.send("JOIN #lobby");
        tcp.skip_until(|line| line.contains(" 366 "));
        web.expect(&format!(":{} JOIN #lobby", tcp.source()));
        web.send("PRIVMSG #lobby :hello from the browser");
        tcp.expect(&format!(":{} PRIVMSG #lobby :hello from the browser", web.source()));
        tcp.send("PRIVMSG #lobby :hello from the terminal");
        web.expect(&format!(":{} PRIVMSG #lobby :hello from the terminal", tcp.source()));
        tcp.send("PRIVMSG webby :a private word");
        web.expect(&format!(":{} PRIVMSG webby :a private word", tcp.source()));
        assert!(web.barrier().is_empty());
    }

    fn the_clients_order_picks_the_subprotocol(setup) {
        let server = setup.start_websocket(|_| {});
        let ws = server.ws_addr.expect("a WebSocket listener");
        let text = WsClient::connect(ws, &["text.ircv3.net", "binary.ircv3.net"]);
        assert_eq!(text.protocol.as_deref(), Some("text.ircv3.net"));
        let mut binary = WsClient::connect(ws, &["x-unknown", "binary.ircv3.net", "text.ircv3.net"]);
        assert_eq!(binary.protocol.as_deref(), Some("binary.ircv3.net"));
        binary.send_binary(b"PING :bin\r\n");
        match binary.message() {
            Ok(Message::Binary(line)) => assert!(line.ends_with(b"PONG ringchat.local :bin")),
            other => panic!("expected a binary PONG, got {other:?}"),
        }
        let none = WsClient::connect(ws, &[]);
        assert_eq!(none.protocol, None);
    }

    fn text_frames_never_carry_invalid_utf8(setup) {
        let server = setup.start_websocket(|_| {});
        let ws = server.ws_addr.expect("a WebSocket listener");
        let mut web = WsClient::register(ws, "webby");
        let mut tcp = server.register("tcpy");
        tcp.send_raw(b"PRIVMSG webby :caf\xe9 \xff\r\n");
        match web.message() {
            Ok(Message::Text(line)) => assert!(
                line.ends_with("PRIVMSG webby :caf\u{fffd} \u{fffd}"),
                "{line}"
            ),
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    fn relayed_lines_never_pass_512_bytes(setup) {
        let server = setup.start_websocket(|_| {});
        let ws = server.ws_addr.expect("a WebSocket listener");
        let mut web = WsClient::register(ws, "webby");
        let mut tcp = server.register("tcpy");
        // What fits 512 bytes as relayed arrives whole; one byte more is 417 to the
        // sender (irctest's testSendTruncation accepts either) and never arrives.
        let overhead = format!(":{} PRIVMSG webby :", tcp.source());
        let fits = "x".repeat(510 - overhead.len());
        tcp.send(&format!("PRIVMSG webby :{fits}"));
        assert_eq!(web.line(), format!("{overhead}{fits}"));
        tcp.send(&format!("PRIVMSG webby :{fits}y"));
        tcp.expect(":ringchat.local 417 tcpy :Input line was too long");
        tcp.send("PRIVMSG webby :after");
        assert_eq!(web.line(), format!(":{} PRIVMSG webby :after", tcp.source()));
    }

    fn websocket_pings_are_answered_and_a_close_is_echoed(setup) {
        let server = setup.start_websocket(|_| {});
        let ws = server.ws_addr.expect("a WebSocket listener");
        let mut web = WsClient::register(ws, "webby");
        assert_eq!(web.ping(b"are you there"), b"are you there");
        web.close();
        let (_, closed) = web.expect_closed();
        assert_eq!(closed.map(|(code, _)| code), Some(1000));
    }

    fn quit_ends_with_error_then_a_close_frame(setup) {
        let server = setup.start_websocket(|_| {});
        let ws = server.ws_addr.expect("a WebSocket listener");
        let mut web = WsClient::register(ws, "webby");
        web.send("QUIT :done");
        let (lines, closed) = web.expect_closed();
        assert!(lines.last().is_some_and(|line| line.starts_with("ERROR :")), "{lines:?}");
        assert_eq!(closed.map(|(code, _)| code), Some(1000));
    }

    fn hostile_frames_get_a_close_with_a_reason(setup) {
        let server = setup.start_websocket(|_| {});
        let ws = server.ws_addr.expect("a WebSocket listener");
        let cases: [(&str, Vec<u8>, u16, &str); 6] = [
            ("unmasked", b"\x81\x04PING".to_vec(), 1002, "masked"),
            (
                "a frame past the line limit",
                common::websocket::masked_frame(0x81, &[b'a'; 9000]),
                1009,
                "too large",
            ),
            (
                "two lines in one message",
                common::websocket::masked_frame(0x81, b"NICK a\r\nUSER a 0 * :a"),
                1008,
                "one IRC line",
            ),
            (
                "invalid UTF-8 in a text message",
                common::websocket::masked_frame(0x81, b"NICK \xff"),
                1007,
                "UTF-8",
            ),
            (
                "a continuation with no message",
                common::websocket::masked_frame(0x80, b"NICK a"),
                1002,
                "continuation",
            ),
            (
                "too many fragments",
                (0..40)
                    .map(|turn| common::websocket::masked_frame(if turn == 0 { 0x01 } else { 0x00 }, b"a"))
                    .collect::<Vec<_>>()
                    .concat(),
                1008,
                "fragments",
            ),
        ];
        for (what, bytes, code, reason) in cases {
            let mut raw = RawWs::connect(ws);
            raw.send_raw(&bytes);
            let closed = raw.expect_close_frame();
            assert!(
                closed.as_ref().is_some_and(|(got, why)| *got == code && why.contains(reason)),
                "{what}: expected close {code} ({reason}), got {closed:?}"
            );
        }
        // A message split into a few fragments is one line.
        let mut raw = RawWs::connect(ws);
        raw.send_frame(0x01, b"PI");
        raw.send_frame(0x00, b"NG :frag");
        raw.send_frame(0x80, b"ments");
        let (opcode, pong) = raw.frame().expect("a PONG");
        assert_eq!(opcode, 0x1);
        assert!(pong.ends_with(b"PONG ringchat.local :fragments"), "{}", String::from_utf8_lossy(&pong));
    }

    fn a_foreign_origin_is_refused(setup) {
        let server = setup.start_websocket(|config| {
            config.websocket_origins = vec!["https://chat.example".to_owned()];
        });
        let ws = server.ws_addr.expect("a WebSocket listener");
        let refused = WsClient::try_connect_with(ws, &[("Origin", "https://evil.example")]);
        assert!(refused.as_ref().err().is_some_and(|status| status.starts_with("403")), "{:?}", refused.err());
        let mut ours = WsClient::try_connect_with(ws, &[("Origin", "https://chat.example")])
            .expect("the listed origin is let in");
        ours.send("PING :ok");
        assert!(ours.line().ends_with("PONG ringchat.local :ok"));
    }

    fn a_trusted_proxy_names_the_real_address(setup) {
        let server = setup.start_websocket(|config| {
            config.websocket_proxies = vec!["127.0.0.1/32".parse().expect("a network")];
        });
        let ws = server.ws_addr.expect("a WebSocket listener");
        let mut web = WsClient::try_connect_with(ws, &[("X-Forwarded-For", "198.51.100.1, 203.0.113.9")])
            .expect("upgraded")
            .register_as("proxied");
        web.send("JOIN #lobby");
        web.expect(":proxied!~proxied@203.0.113.9 JOIN #lobby");
        let mut forwarded = WsClient::try_connect_with(ws, &[("Forwarded", "for=\"[2001:db8::7]:443\"")])
            .expect("upgraded")
            .register_as("six");
        forwarded.send("JOIN #lobby");
        forwarded.expect(":six!~six@2001:db8::7 JOIN #lobby");
    }

    fn an_untrusted_peers_forwarded_header_is_ignored(setup) {
        let server = setup.start_websocket(|_| {});
        let ws = server.ws_addr.expect("a WebSocket listener");
        let mut web = WsClient::try_connect_with(ws, &[("X-Forwarded-For", "203.0.113.9")])
            .expect("upgraded")
            .register_as("direct");
        web.send("JOIN #lobby");
        web.expect(":direct!~direct@127.0.0.1 JOIN #lobby");
    }

    fn per_source_limits_apply_to_the_forwarded_address(setup) {
        let server = setup.start_websocket(|config| {
            config.websocket_proxies = vec!["127.0.0.1/32".parse().expect("a network")];
            config.sources.exempt = Vec::new();
            config.sources.max_connections = 2;
        });
        let ws = server.ws_addr.expect("a WebSocket listener");
        let from = |ip: &str| WsClient::try_connect_with(ws, &[("X-Forwarded-For", ip)]);
        let first = from("203.0.113.9").expect("a first connection").register_as("first");
        let second = from("203.0.113.9").expect("a second connection").register_as("second");
        let third = from("203.0.113.9");
        assert!(
            third.as_ref().err().is_some_and(|status| status.starts_with("403")),
            "a third connection from 203.0.113.9 is over the limit: {:?}",
            third.err()
        );
        // The proxy's own address holds no slot for the clients it forwarded (at most
        // the refused one, until it is closed): another client is let in.
        let mut other = from("203.0.113.10").expect("a connection from another address").register_as("other");
        other.barrier();
        drop((first, second));
    }

    fn a_websocket_client_that_never_reads_is_dropped_at_its_sendq(setup) {
        let server = setup.start_websocket(|config| {
            config.flood_rate = 0.0;
            config.sendq = 64 * 1024;
        });
        let ws = server.ws_addr.expect("a WebSocket listener");
        let mut bob = server.register("bob");
        let mut sender = server.register("sender");
        join_all("#c", &mut [&mut bob, &mut sender]);
        let mut slow = WsClient::register(ws, "slow");
        slow.send("JOIN #c");
        slow.skip_until(|line| line.contains(" 366 "));
        bob.expect(":slow!~slow@127.0.0.1 JOIN #c");
        sender.expect(":slow!~slow@127.0.0.1 JOIN #c");
        // `slow` is never read again; its socket buffers fill, then its sendq.
        common::flood_until_cut_off(&mut sender, &mut bob, "slow");
        bob.expect_nothing();
        drop(slow);
    }

    fn websocket_over_tls_chats_with_tcp(setup) {
        let pki = TestPki::new();
        let server = setup.start_tls(&pki, |config| {
            config.websocket_tls_listen = vec![std::net::SocketAddr::from(([127, 0, 0, 1], 0))];
        });
        let wss = server.wss_addr.expect("a WebSocket TLS listener");
        let mut web = WsClient::connect_tls(wss, pki.client_config());
        web.nick = "secure".to_owned();
        web.send("NICK secure");
        web.send("USER secure 0 * :secure");
        web.skip_until(|line| common::has_numeric(line, "422"));
        let mut tcp = server.register("tcpy");
        join_all("#vault", &mut [&mut tcp]);
        web.send("JOIN #vault");
        web.skip_until(|line| line.contains(" 366 "));
        tcp.expect(&format!(":{} JOIN #vault", web.source()));
        web.send("PRIVMSG #vault :sealed");
        tcp.expect(&format!(":{} PRIVMSG #vault :sealed", web.source()));
        tcp.send("PRIVMSG #vault :received");
        web.expect(&format!(":{} PRIVMSG #vault :received", tcp.source()));
        let page = {
            let mut client = Client::connect_tls(wss, pki.client_config());
            client.send_raw(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
            String::from_utf8_lossy(&client.read_to_end()).into_owned()
        };
        assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    }
}
