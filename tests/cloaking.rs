//! Host cloaking as clients see it: others see a keyed hash of a user's address, never
//! the address; the user gets 396 and sees its address in its own WHOIS (378), as
//! operators do; KLINEs and channel bans match the address and the cloak alike. Every
//! test on every driver, 1 and 4 shards.

mod common;

use common::{has_numeric, Client, Setup, TestServer};
use ringchat::cloak::Cloak;
use ringchat::opers::{hash_password, OperBlock};

const SECRET: &str = "the network's cloak secret";

/// What every test client (all on 127.0.0.1) is seen as.
fn cloak() -> String {
    Cloak::new(SECRET.as_bytes()).host_for([127, 0, 0, 1].into())
}

/// A cloaking server with one operator account, `admin` / `hunter2`, whose host
/// mask names the real address.
fn start(setup: Setup) -> TestServer {
    setup.start_with(|config| {
        config.cloak_hosts = true;
        config.cloak_secret = Some(SECRET.to_owned());
        config.opers = vec![OperBlock {
            name: "admin".to_owned(),
            password_hash: hash_password(b"hunter2").expect("hashing works"),
            hosts: vec!["~*@127.0.0.1".to_owned()],
        }];
    })
}

/// Registers `nick` and returns it with its welcome burst.
fn register_with_burst(server: &TestServer, nick: &str) -> (Client, Vec<String>) {
    let mut client = server.connect();
    client.send(&format!("NICK {nick}"));
    client.send(&format!("USER {nick} 0 * :{nick} test"));
    let burst = client.skip_until(|line| has_numeric(line, "376") || has_numeric(line, "422"));
    (client, burst)
}

fn oper(server: &TestServer, nick: &str) -> Client {
    let mut client = server.register(nick);
    client.send("OPER admin hunter2");
    client.expect_numeric("381");
    client.expect(&format!(":{nick}!~{nick}@{} MODE {nick} +o", cloak()));
    client
}

e2e! {
    fn others_see_the_cloak_and_the_user_its_396_and_its_address_in_whois(setup) {
        let server = start(setup);
        let (mut alice, burst) = register_with_burst(&server, "alice");
        let cloak = cloak();
        assert!(
            burst.iter().any(|l| l.ends_with(&format!(" 396 alice {cloak} :is now your displayed host"))),
            "{burst:?}"
        );
        assert!(
            burst.iter().any(|l| has_numeric(l, "001") && l.ends_with(&format!("alice!~alice@{cloak}"))),
            "{burst:?}"
        );
        let mut bob = server.register("bob");
        bob.send("JOIN #c");
        bob.skip_until(|l| has_numeric(l, "366"));
        alice.send("JOIN #c");
        alice.skip_until(|l| has_numeric(l, "366"));
        bob.expect(&format!(":alice!~alice@{cloak} JOIN #c"));
        alice.send("PRIVMSG #c :hi");
        bob.expect(&format!(":alice!~alice@{cloak} PRIVMSG #c :hi"));

        bob.send("WHOIS alice");
        let whois = bob.skip_until(|l| has_numeric(l, "318"));
        assert!(
            whois.iter().any(|l| l.contains(&format!(" 311 bob alice ~alice {cloak} * :"))),
            "{whois:?}"
        );
        assert!(!whois.iter().any(|l| l.contains("127.0.0.1")), "{whois:?}");
        bob.send("WHO #c");
        let who = bob.skip_until(|l| has_numeric(l, "315"));
        assert!(!who.iter().any(|l| l.contains("127.0.0.1")), "{who:?}");

        alice.send("WHOIS alice");
        let own = alice.skip_until(|l| has_numeric(l, "318"));
        assert!(
            own.iter().any(|l| l.ends_with(" 378 alice alice :is connecting from ~alice@127.0.0.1 127.0.0.1")),
            "{own:?}"
        );
    }

    fn operators_see_the_address_in_whois(setup) {
        let server = start(setup);
        let mut admin = oper(&server, "admin");
        let _bob = server.register("bob");
        admin.send("WHOIS bob");
        let whois = admin.skip_until(|l| has_numeric(l, "318"));
        assert!(
            whois.iter().any(|l| l.ends_with(" 378 admin bob :is connecting from ~bob@127.0.0.1 127.0.0.1")),
            "{whois:?}"
        );
    }

    fn a_kline_on_the_address_or_on_the_cloak_closes_the_cloaked_user(setup) {
        let server = start(setup);
        let mut admin = oper(&server, "admin");
        let mut bob = server.register("bob");
        let mut carol = server.register("carol");
        admin.send("KLINE ~bob@127.0.0.1 :by address");
        assert!(admin.line().contains("Added permanent K-Line"));
        let last = bob.expect_closed();
        assert!(last.iter().any(|l| l.contains("(K-Lined (by address))")), "{last:?}");

        let cloak = cloak();
        admin.send(&format!("KLINE ~carol@{cloak} :by cloak"));
        assert!(admin.line().contains("Added permanent K-Line"));
        let last = carol.expect_closed();
        assert!(last.iter().any(|l| l.contains("(K-Lined (by cloak))")), "{last:?}");

        // Both hold at registration too.
        for nick in ["bob", "carol"] {
            let mut again = server.connect();
            again.send(&format!("NICK {nick}"));
            again.send(&format!("USER {nick} 0 * :x"));
            let last = again.expect_closed();
            assert!(last.iter().any(|l| l.contains("K-Lined")), "{last:?}");
        }
    }

    fn a_channel_ban_on_the_address_holds_a_cloaked_user(setup) {
        let server = start(setup);
        let mut alice = server.register("alice");
        alice.send("JOIN #c");
        alice.skip_until(|l| has_numeric(l, "366"));
        alice.send("MODE #c +b *!*@127.0.0.1");
        alice.skip_until(|l| l.contains("MODE #c +b"));
        let mut bob = server.register("bob");
        bob.send("JOIN #c");
        bob.expect_numeric("474");
    }
}
