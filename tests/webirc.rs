//! WEBIRC (IRCv3 WebIRC) as a web gateway sees it, on every driver and with 1 and 4
//! shards: a trusted gateway names the user behind its connection, and the user's
//! address is the one others, bans, per-source limits and the cloak see; a wrong
//! password, an untrusted source or a second WEBIRC closes the connection with an
//! ERROR; after registration WEBIRC is 462; `secure` counts over TLS only, and a
//! gateway's client certificate is not its users'. The gateway is this test on 127.0.0.1
//! (trusted) or 127.0.0.2 (not).

mod common;

use common::websocket::WsClient;
use common::{has_numeric, Client, Setup, TestServer};
use ringchat::bans::{BanTarget, ServerBan};
use ringchat::cloak::Cloak;
use ringchat::config::WebircGateway;
use std::net::{IpAddr, Ipv4Addr};

const PASSWORD: &str = "gateway-secret";

/// `127.0.0.1/32` trusted with [`PASSWORD`].
fn gateway() -> WebircGateway {
    WebircGateway {
        network: "127.0.0.1/32".parse().expect("a network"),
        password: PASSWORD.to_owned(),
    }
}

fn start(setup: Setup, adjust: impl FnOnce(&mut ringchat::Config)) -> TestServer {
    setup.start_with(|config| {
        config.webirc = vec![gateway()];
        adjust(config);
    })
}

/// Sends WEBIRC from `client` then registers `nick`; returns the welcome burst, or
/// the lines before the server closed the connection.
fn register_through(client: &mut Client, webirc: &str, nick: &str) -> Vec<String> {
    // One write: a refused WEBIRC closes the connection, and a line sent after the
    // close would fail (EPIPE) or reset the connection before its ERROR is read.
    client.send_raw(
        format!("{webirc}\r\nNICK {nick}\r\nUSER {nick} 0 * :{nick} test\r\n").as_bytes(),
    );
    let mut lines = Vec::new();
    while let Some(line) = client.try_line() {
        let done = has_numeric(&line, "376") || has_numeric(&line, "422");
        lines.push(line);
        if done {
            break;
        }
    }
    lines
}

/// The 001 line of a welcome burst ("" if there is none).
fn welcome(lines: &[String]) -> &str {
    lines
        .iter()
        .find(|line| has_numeric(line, "001"))
        .map_or("", String::as_str)
}

fn closed_with(lines: &[String], why: &str) -> bool {
    lines
        .last()
        .is_some_and(|last| last.starts_with("ERROR :Closing Link: ") && last.ends_with(why))
}

const REFUSED: &str =
    "(WEBIRC command is not usable from your address or incorrect password given)";

e2e! {
    fn a_trusted_gateway_names_the_users_address_and_host(setup) {
        let server = start(setup, |_| {});
        let mut web = server.connect();
        let burst = register_through(
            &mut web,
            &format!("WEBIRC {PASSWORD} kiwi user.example-isp.com 203.0.113.9"),
            "webby",
        );
        assert!(
            welcome(&burst).ends_with("Welcome to the ringchat IRC Network webby!~webby@user.example-isp.com"),
            "{burst:?}"
        );
        let mut bob = server.register("bob");
        bob.send("WHOIS webby");
        let whois = bob.skip_until(|line| has_numeric(line, "318"));
        assert!(
            whois.iter().any(|l| has_numeric(l, "311") && l.contains(" webby ~webby user.example-isp.com ")),
            "{whois:?}"
        );
        assert!(!whois.iter().any(|l| has_numeric(l, "671")), "not secure: {whois:?}");
        web.send("WHOIS webby");
        let own = web.skip_until(|line| has_numeric(line, "318"));
        assert!(own.iter().any(|l| has_numeric(l, "378") && l.ends_with(" 203.0.113.9")), "{own:?}");

        // A host name that is no valid name (here an address that is not the user's)
        // is not taken: the user shows as its address.
        let mut spoof = server.connect();
        let burst = register_through(
            &mut spoof,
            &format!("WEBIRC {PASSWORD} kiwi 10.0.0.1 2001:db8::7 :secure=yes local-port=443"),
            "spoof",
        );
        assert!(welcome(&burst).ends_with("spoof!~spoof@2001:db8::7"), "{burst:?}");
    }

    fn a_gateway_over_websocket_behind_a_trusted_proxy_names_its_user(setup) {
        // browser -> gateway (198.51.100.2) -> proxy (this test, 127.0.0.1) -> server:
        // the proxy names the gateway, the gateway names its user.
        let server = setup.start_websocket(|config| {
            config.websocket_proxies = vec!["127.0.0.1/32".parse().expect("a network")];
            config.webirc = vec![WebircGateway {
                network: "198.51.100.2/32".parse().expect("a network"),
                password: PASSWORD.to_owned(),
            }];
        });
        let ws = server.ws_addr.expect("a WebSocket listener");
        let mut web = WsClient::try_connect_with(ws, &[("X-Forwarded-For", "198.51.100.2")])
            .expect("upgraded");
        web.send(&format!("WEBIRC {PASSWORD} kiwi h.example 203.0.113.9"));
        let mut web = web.register_as("webby");
        web.send("JOIN #c");
        web.expect(":webby!~webby@h.example JOIN #c");
    }

    fn the_cloak_is_the_users_address(setup) {
        let server = start(setup, |config| {
            config.cloak_hosts = true;
            config.cloak_secret = Some("webirc cloak secret".to_owned());
        });
        let cloak = Cloak::new(b"webirc cloak secret").host_for("203.0.113.9".parse().expect("an address"));
        let mut web = server.connect();
        let burst = register_through(
            &mut web,
            &format!("WEBIRC {PASSWORD} kiwi user.example-isp.com 203.0.113.9"),
            "webby",
        );
        assert!(welcome(&burst).ends_with(&format!("webby!~webby@{cloak}")), "{burst:?}");
        assert!(burst.iter().any(|l| has_numeric(l, "396") && l.contains(&cloak)), "{burst:?}");
    }

    fn a_wrong_password_or_an_untrusted_source_is_refused(setup) {
        let server = start(setup, |_| {});
        let mut wrong = server.connect();
        let lines = register_through(&mut wrong, "WEBIRC gateway-secreT kiwi h.example 203.0.113.9", "wrong");
        assert!(closed_with(&lines, REFUSED), "{lines:?}");

        let mut untrusted = Client::connect_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), server.addr);
        let lines = register_through(
            &mut untrusted,
            &format!("WEBIRC {PASSWORD} kiwi h.example 203.0.113.9"),
            "untrusted",
        );
        assert!(closed_with(&lines, REFUSED), "{lines:?}");

        // One WEBIRC per connection: the user behind a gateway cannot name itself.
        let mut twice = server.connect();
        twice.send(&format!("WEBIRC {PASSWORD} kiwi h.example 203.0.113.9"));
        let lines = register_through(&mut twice, &format!("WEBIRC {PASSWORD} kiwi h.example 198.51.100.1"), "twice");
        assert!(closed_with(&lines, REFUSED), "{lines:?}");

        let mut no_address = server.connect();
        let lines = register_through(&mut no_address, &format!("WEBIRC {PASSWORD} kiwi h.example nonsense"), "bad");
        assert!(closed_with(&lines, "(proxied IP is not valid)"), "{lines:?}");

        server.register("still").expect_nothing();
    }

    fn webirc_after_registration_is_462(setup) {
        let server = start(setup, |_| {});
        let mut alice = server.register("alice");
        alice.send(&format!("WEBIRC {PASSWORD} kiwi h.example 203.0.113.9"));
        alice.expect(":ringchat.local 462 alice :You may not reregister");
        alice.send("JOIN #c");
        alice.expect(":alice!~alice@127.0.0.1 JOIN #c");
    }

    fn klines_and_dlines_apply_to_the_users_address(setup) {
        let ban = |target: BanTarget| ServerBan {
            target,
            reason: "no".into(),
            set_by: "test".into(),
            set_at: 0,
            expires_at: None,
        };
        let server = start(setup, |config| {
            config.server_bans = vec![
                ban(BanTarget::User("~*@203.0.113.9".into())),
                ban(BanTarget::Address("198.51.100.0/24".parse().expect("a network"))),
            ];
        });
        let mut klined = server.connect();
        let lines = register_through(&mut klined, &format!("WEBIRC {PASSWORD} kiwi h.example 203.0.113.9"), "klined");
        assert!(closed_with(&lines, "(K-Lined (no))"), "{lines:?}");
        let mut dlined = server.connect();
        let lines = register_through(&mut dlined, &format!("WEBIRC {PASSWORD} kiwi h.example 198.51.100.4"), "dlined");
        assert!(closed_with(&lines, "(D-Lined)"), "{lines:?}");
        // The gateway's own address is not banned: another user of it gets in.
        let mut fine = server.connect();
        let burst = register_through(&mut fine, &format!("WEBIRC {PASSWORD} kiwi h.example 192.0.2.1"), "fine");
        assert!(welcome(&burst).ends_with("fine!~fine@h.example"), "{burst:?}");
    }

    fn per_source_limits_count_the_users_address(setup) {
        let server = start(setup, |config| {
            config.sources.exempt = Vec::new();
            config.sources.max_connections = 2;
        });
        let through = |ip: &str, nick: &str| {
            let mut client = server.connect();
            let lines = register_through(&mut client, &format!("WEBIRC {PASSWORD} kiwi {ip} {ip}"), nick);
            (client, lines)
        };
        let (mut first, lines) = through("203.0.113.9", "first");
        assert!(welcome(&lines).contains(" 001 "), "{lines:?}");
        let (_second, lines) = through("203.0.113.9", "second");
        assert!(welcome(&lines).contains(" 001 "), "{lines:?}");
        let (_third, lines) = through("203.0.113.9", "third");
        assert!(closed_with(&lines, "(Too many connections from your host)"), "{lines:?}");
        // The gateway's own address holds no slot for the users it named: others get
        // in, through it and directly.
        let (_other, lines) = through("203.0.113.10", "other");
        assert!(welcome(&lines).contains(" 001 "), "{lines:?}");
        let (_another, lines) = through("203.0.113.11", "another");
        assert!(welcome(&lines).contains(" 001 "), "{lines:?}");
        first.expect_nothing();
    }
}

e2e_on! {
    [ring_1_shard Ring 1, epoll_4_shards Epoll 4]
    fn secure_counts_only_over_tls_from_the_gateway(setup) {
        let pki = common::tls::TestPki::new();
        let server = setup.start_tls(&pki, |config| config.webirc = vec![gateway()]);
        let mut tls = server.connect_tls(pki.client_config());
        let burst = register_through(&mut tls, &format!("WEBIRC {PASSWORD} kiwi h.example 203.0.113.9 :secure"), "sealed");
        assert!(welcome(&burst).contains(" 001 "), "{burst:?}");
        let mut plain = server.connect();
        let burst = register_through(&mut plain, &format!("WEBIRC {PASSWORD} kiwi h.example 203.0.113.8 :secure"), "open");
        assert!(welcome(&burst).contains(" 001 "), "{burst:?}");
        let mut insecure = server.connect_tls(pki.client_config());
        let burst = register_through(&mut insecure, &format!("WEBIRC {PASSWORD} kiwi h.example 203.0.113.7"), "unsealed");
        assert!(welcome(&burst).contains(" 001 "), "{burst:?}");
        for (nick, secure) in [("sealed", true), ("open", false), ("unsealed", false)] {
            plain.send(&format!("WHOIS {nick}"));
            let whois = plain.skip_until(|line| has_numeric(line, "318"));
            assert_eq!(whois.iter().any(|l| has_numeric(l, "671")), secure, "{nick}: {whois:?}");
        }
    }
}

e2e_on! {
    [ring_1_shard Ring 1, epoll_4_shards Epoll 4]
    fn the_gateways_certificate_is_not_its_users(setup) {
        let pki = common::tls::TestPki::new();
        let identity = pki.client_identity();
        let server = setup.start_tls(&pki, |config| config.webirc = vec![gateway()]);
        // The gateway's certificate logs in to the gateway's account...
        let mut owner = Client::register(server.connect_tls(pki.client_config_with(&identity)), "owner");
        owner.send("REGISTER * * correct-horse");
        owner.skip_until(|l| has_numeric(l, "900"));
        owner.send("NS CERT ADD");
        owner.line();
        // ...but not the user a WEBIRC on such a connection names.
        let mut user = server.connect_tls(pki.client_config_with(&identity));
        user.send(&format!("WEBIRC {PASSWORD} kiwi h.example 203.0.113.9 :secure"));
        user.send("NICK user");
        user.send("AUTHENTICATE EXTERNAL");
        user.expect("AUTHENTICATE +");
        user.send("AUTHENTICATE +");
        user.expect(":ringchat.local 904 user :SASL authentication failed");
    }
}
