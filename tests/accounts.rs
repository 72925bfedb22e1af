//! Accounts as clients see them: IRCv3 account registration (`REGISTER`), SASL PLAIN
//! and SCRAM-SHA-256 before registration, NickServ's REGISTER, IDENTIFY and DROP, the
//! account shown to others (`account-tag`, `extended-join`, `account-notify`, WHOIS
//! 330, WHOX `%a`), bad SASL input, and accounts surviving a restart (and a SIGKILL)
//! in the data directory's store.

mod common;

use common::tls::TestPki;
use common::{data_dir, has_numeric, join_all, register_with_caps, Client, Setup, TestServer};

/// base64 of a SASL PLAIN message (the test's own encoder: RFC 4648 by hand, so a
/// bug in the server's decoder cannot hide behind the same library).
fn plain(account: &str, password: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = format!("\0{account}\0{password}").into_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Registers `account` (with `password`) over REGISTER from a registered client
/// named after it, which stays logged in.
fn register_account(server: &TestServer, account: &str, password: &str) -> Client {
    let mut client = server.register(account);
    client.send(&format!("REGISTER * * {password}"));
    client.expect(&format!(
        ":ringchat.local REGISTER SUCCESS {account} :Account successfully registered"
    ));
    let logged_in = client.expect_numeric("900");
    assert!(
        logged_in.contains(&format!(" {account} :You are now logged in as {account}")),
        "{logged_in}"
    );
    client
}

/// Connects, logs in with SASL PLAIN while registering, and completes registration
/// as `nick`; returns the client and the lines of the exchange.
fn sasl_login(
    server: &TestServer,
    nick: &str,
    account: &str,
    password: &str,
    caps: &str,
) -> (Client, Vec<String>) {
    let mut client = server.connect();
    client.nick = nick.to_owned();
    client.send("CAP LS 302");
    client.send(&format!("NICK {nick}"));
    client.send(&format!("USER {nick} 0 * :{nick} real"));
    client.skip_until(|line| line.starts_with(":ringchat.local CAP * LS :"));
    client.send(format!("CAP REQ :sasl {caps}").trim_end());
    client.skip_until(|line| line.contains(" ACK :"));
    client.send("AUTHENTICATE PLAIN");
    client.expect("AUTHENTICATE +");
    client.send(&format!("AUTHENTICATE {}", plain(account, password)));
    let exchange = client.skip_until(|line| has_numeric(line, "903") || has_numeric(line, "904"));
    client.send("CAP END");
    client.skip_until(|line| has_numeric(line, "422"));
    (client, exchange)
}

/// The client's side of a SCRAM-SHA-256 exchange (RFC 5802), written from the RFC
/// with `ring`'s primitives, not the server's code.
struct ScramClient {
    account: String,
    password: String,
    nonce: String,
}

/// How a SCRAM exchange ended, and the lines the client read.
#[derive(Debug, PartialEq, Eq)]
enum ScramEnd {
    /// 904 after the client-first message (no server-first).
    RefusedAtFirst,
    /// 904 after the proof (no server-final).
    RefusedAtProof,
    /// The server-final signature was right and 903 followed.
    LoggedIn,
}

impl ScramClient {
    fn new(account: &str, password: &str) -> ScramClient {
        ScramClient {
            account: account.to_owned(),
            password: password.to_owned(),
            nonce: "fyko+d2lbbFgONRv9qkxdawL".to_owned(),
        }
    }

    fn b64(bytes: impl AsRef<[u8]>) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn unb64(text: &str) -> Vec<u8> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap_or_else(|_| panic!("not base64: {text}"))
    }

    /// Sends one client message in 400-byte chunks (`+` after a full last one).
    fn send(client: &mut Client, message: &str) {
        let encoded = Self::b64(message);
        for chunk in encoded.as_bytes().chunks(400) {
            client.send(&format!("AUTHENTICATE {}", String::from_utf8_lossy(chunk)));
        }
        if encoded.len() % 400 == 0 {
            client.send("AUTHENTICATE +");
        }
    }

    /// Reads one server message (its chunks), or `None` on a numeric (904).
    fn receive(client: &mut Client, lines: &mut Vec<String>) -> Option<String> {
        let mut encoded = String::new();
        loop {
            let line = client.line();
            lines.push(line.clone());
            let chunk = line.strip_prefix("AUTHENTICATE ")?.to_owned();
            if chunk != "+" {
                encoded.push_str(&chunk);
            }
            if chunk.len() < 400 {
                let bytes = Self::unb64(&encoded);
                return Some(String::from_utf8(bytes).expect("UTF-8"));
            }
        }
    }

    /// Runs the exchange on `client` (the mechanism not yet chosen).
    fn log_in(&self, client: &mut Client) -> (ScramEnd, Vec<String>) {
        use ring::{digest, hmac, pbkdf2};
        let mut lines = Vec::new();
        client.send("AUTHENTICATE SCRAM-SHA-256");
        client.expect("AUTHENTICATE +");
        let first_bare = format!("n={},r={}", self.account, self.nonce);
        Self::send(client, &format!("n,,{first_bare}"));
        let Some(server_first) = Self::receive(client, &mut lines) else {
            return (ScramEnd::RefusedAtFirst, lines);
        };
        let field = |name: &str| {
            server_first
                .split(',')
                .find_map(|part| part.strip_prefix(name))
                .unwrap_or_else(|| panic!("{name} in {server_first}"))
                .to_owned()
        };
        let (nonce, salt, iterations) = (field("r="), Self::unb64(&field("s=")), field("i="));
        assert!(
            nonce.starts_with(&self.nonce) && nonce.len() > self.nonce.len(),
            "{server_first}"
        );
        let iterations: u32 = iterations.parse().expect("a number of iterations");
        let mut salted = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            std::num::NonZeroU32::new(iterations).expect("at least one"),
            &salt,
            self.password.as_bytes(),
            &mut salted,
        );
        let salted = hmac::Key::new(hmac::HMAC_SHA256, &salted);
        let client_key = hmac::sign(&salted, b"Client Key");
        let stored_key = digest::digest(&digest::SHA256, client_key.as_ref());
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{first_bare},{server_first},{without_proof}");
        let signature = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, stored_key.as_ref()),
            auth_message.as_bytes(),
        );
        let proof: Vec<u8> = client_key
            .as_ref()
            .iter()
            .zip(signature.as_ref())
            .map(|(k, s)| k ^ s)
            .collect();
        Self::send(client, &format!("{without_proof},p={}", Self::b64(proof)));
        let Some(server_final) = Self::receive(client, &mut lines) else {
            return (ScramEnd::RefusedAtProof, lines);
        };
        let server_key = hmac::sign(&salted, b"Server Key");
        let expected = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, server_key.as_ref()),
            auth_message.as_bytes(),
        );
        assert_eq!(server_final, format!("v={}", Self::b64(expected)));
        client.send("AUTHENTICATE +");
        lines
            .extend(client.skip_until(|line| has_numeric(line, "903") || has_numeric(line, "904")));
        assert!(
            lines.last().is_some_and(|line| has_numeric(line, "903")),
            "{lines:?}"
        );
        (ScramEnd::LoggedIn, lines)
    }
}

/// Connects as `nick`, runs `scram` while registering (with `CAP REQ sasl`), and
/// completes registration.
fn scram_login(
    server: &TestServer,
    nick: &str,
    scram: &ScramClient,
) -> (Client, ScramEnd, Vec<String>) {
    let mut client = server.connect();
    client.nick = nick.to_owned();
    client.send("CAP LS 302");
    client.send(&format!("NICK {nick}"));
    client.send(&format!("USER {nick} 0 * :{nick} real"));
    let ls = client.skip_until(|line| line.starts_with(":ringchat.local CAP * LS :"));
    assert!(
        ls.last()
            .is_some_and(|l| l.contains(" sasl=PLAIN,EXTERNAL,SCRAM-SHA-256 ")),
        "{ls:?}"
    );
    client.send("CAP REQ :sasl");
    client.skip_until(|line| line.contains(" ACK :"));
    let (end, lines) = scram.log_in(&mut client);
    client.send("CAP END");
    client.skip_until(|line| has_numeric(line, "422"));
    (client, end, lines)
}

e2e! {
    fn sasl_scram_sha_256_logs_in_and_refuses_a_wrong_password_and_an_unknown_account_at_the_proof(setup) {
        let server = setup.start();
        let _alice = register_account(&server, "alice", "correct-horse");
        let (mut bob, end, lines) = scram_login(&server, "bob", &ScramClient::new("alice", "correct-horse"));
        assert_eq!(end, ScramEnd::LoggedIn, "{lines:?}");
        assert!(lines.iter().any(|l| l == ":ringchat.local 900 bob bob!*@127.0.0.1 alice :You are now logged in as alice"), "{lines:?}");
        bob.send("WHOIS bob");
        let whois = bob.skip_until(|l| has_numeric(l, "318"));
        assert!(whois.iter().any(|l| l == ":ringchat.local 330 bob bob alice :is logged in as"), "{whois:?}");

        let (_carol, end, lines) = scram_login(&server, "carol", &ScramClient::new("alice", "wrong-horse"));
        assert_eq!(end, ScramEnd::RefusedAtProof, "{lines:?}");
        assert_eq!(lines.last().map(String::as_str), Some(":ringchat.local 904 carol :SASL authentication failed"));

        // An unknown account gets a server-first message like a real one (with the
        // same made-up salt each time) and fails only at the proof.
        let (_dave, end, lines) = scram_login(&server, "dave", &ScramClient::new("nobody", "correct-horse"));
        assert_eq!(end, ScramEnd::RefusedAtProof, "{lines:?}");
        let (_erin, _, again) = scram_login(&server, "erin", &ScramClient::new("nobody", "correct-horse"));
        let salt = |lines: &[String]| {
            let first = ScramClient::unb64(lines[0].strip_prefix("AUTHENTICATE ").expect("a server-first"));
            String::from_utf8(first).expect("UTF-8").split(",s=").nth(1).map(str::to_owned)
        };
        assert_eq!(salt(&lines), salt(&again));

        // Channel binding is refused, and so is acting as someone else.
        let mut probe = server.connect();
        probe.send("NICK probe");
        probe.send("AUTHENTICATE SCRAM-SHA-256");
        probe.expect("AUTHENTICATE +");
        ScramClient::send(&mut probe, "p=tls-unique,,n=alice,r=abcdef");
        probe.expect(":ringchat.local 904 probe :SASL authentication failed");
        probe.send("AUTHENTICATE SCRAM-SHA-256");
        probe.expect("AUTHENTICATE +");
        ScramClient::send(&mut probe, "n,a=bob,n=alice,r=abcdef");
        probe.expect(":ringchat.local 904 probe :SASL authentication failed");
        // A nonce long enough that both first messages take two chunks.
        let long = ScramClient {
            nonce: "n".repeat(350),
            ..ScramClient::new("alice", "correct-horse")
        };
        let (end, lines) = long.log_in(&mut probe);
        assert_eq!(end, ScramEnd::LoggedIn, "{lines:?}");
        assert!(lines[0].len() == "AUTHENTICATE ".len() + 400, "{lines:?}");
    }

    fn nickserv_drop_frees_the_name_and_logs_out_every_connection_of_the_account(setup) {
        let server = setup.start();
        let mut alice = register_account(&server, "alice", "correct-horse");
        let mut watcher = register_with_caps(&server, "watcher", "account-notify");
        let (mut second, _) = sasl_login(&server, "second", "alice", "correct-horse", "");
        join_all("#c", &mut [&mut watcher, &mut second]);

        alice.send("NS DROP wrong-horse");
        alice.expect(":NickServ!NickServ@ringchat.local NOTICE alice :Invalid password for alice");
        alice.send("NS DROP");
        alice.expect(":NickServ!NickServ@ringchat.local NOTICE alice :Syntax: DROP <password>");
        alice.send("WHOIS alice");
        let whois = alice.skip_until(|l| has_numeric(l, "318"));
        assert!(whois.iter().any(|l| l == ":ringchat.local 330 alice alice alice :is logged in as"), "{whois:?}");

        alice.send("NS DROP correct-horse");
        let lines = alice.skip_until(|l| l.ends_with(":Account alice has been dropped; its name is free"));
        assert!(lines.iter().any(|l| l == ":ringchat.local 901 alice alice!~alice@127.0.0.1 :You are now logged out"), "{lines:?}");
        second.expect(&format!(":ringchat.local 901 second {} :You are now logged out", second.source()));
        watcher.expect(&format!(":{} ACCOUNT *", second.source()));
        second.send("WHOIS second");
        let whois = second.skip_until(|l| has_numeric(l, "318"));
        assert!(!whois.iter().any(|l| has_numeric(l, "330")), "{whois:?}");
        alice.send("NS DROP correct-horse");
        alice.expect(":NickServ!NickServ@ringchat.local NOTICE alice :Log in to your account first");
        let (_third, exchange) = sasl_login(&server, "third", "alice", "correct-horse", "");
        assert_eq!(exchange, vec![":ringchat.local 904 third :SASL authentication failed".to_owned()]);

        let mut newcomer = server.register("newcomer");
        newcomer.send("REGISTER alice * battery-staple");
        newcomer.expect(":ringchat.local REGISTER SUCCESS alice :Account successfully registered");
    }

    fn register_then_sasl_plain_logs_in_and_a_wrong_password_gets_904(setup) {
        let server = setup.start();
        let _alice = register_account(&server, "alice", "correct-horse");
        let (_bob, exchange) = sasl_login(&server, "bob", "alice", "correct-horse", "");
        assert!(exchange.iter().any(|l| l == ":ringchat.local 900 bob bob!*@127.0.0.1 alice :You are now logged in as alice"), "{exchange:?}");
        assert!(exchange.last().is_some_and(|l| l == ":ringchat.local 903 bob :SASL authentication successful"), "{exchange:?}");
        let (mut carol, exchange) = sasl_login(&server, "carol", "alice", "wrong-horse", "");
        assert_eq!(exchange, vec![":ringchat.local 904 carol :SASL authentication failed".to_owned()]);
        let (_dave, exchange) = sasl_login(&server, "dave", "nobody", "correct-horse", "");
        assert_eq!(exchange, vec![":ringchat.local 904 dave :SASL authentication failed".to_owned()]);
        carol.send("WHOIS carol");
        let whois = carol.skip_until(|l| has_numeric(l, "318"));
        assert!(!whois.iter().any(|l| has_numeric(l, "330")), "{whois:?}");
    }

    fn register_refuses_taken_names_weak_passwords_and_a_second_login(setup) {
        let server = setup.start();
        let mut alice = register_account(&server, "alice", "correct-horse");
        alice.send("REGISTER other * another-password");
        alice.expect(":ringchat.local FAIL REGISTER ALREADY_AUTHENTICATED other :You are already logged in");
        let mut bob = server.register("bob");
        bob.send("REGISTER ALICE * correct-horse");
        bob.expect(":ringchat.local FAIL REGISTER ACCOUNT_EXISTS ALICE :Account already exists");
        bob.send("REGISTER * * short");
        bob.expect(":ringchat.local FAIL REGISTER WEAK_PASSWORD bob :the password must be at least 8 characters long");
        bob.send("REGISTER * * bbbbbbbbbb");
        bob.send("REGISTER b\\d * correct-horse");
        bob.expect(":ringchat.local FAIL REGISTER WEAK_PASSWORD bob :the password is too easy to guess");
        bob.expect(":ringchat.local FAIL REGISTER BAD_ACCOUNT_NAME b\\d :Invalid account name");
        bob.send("NICK NickServ");
        bob.expect(":ringchat.local 433 bob NickServ :Nickname is already in use");
    }

    fn register_before_connect_logs_in_once_registration_completes(setup) {
        let server = setup.start();
        let mut client = server.connect();
        client.nick = "zed".to_owned();
        client.send("CAP LS 302");
        let ls = client.line();
        assert!(ls.contains(" sasl=PLAIN,EXTERNAL,SCRAM-SHA-256 "), "{ls}");
        assert!(ls.contains(" draft/account-registration=before-connect,custom-account-name "), "{ls}");
        client.send("NICK zed");
        client.send("REGISTER * * shivarampassphrase");
        client.expect(":ringchat.local REGISTER SUCCESS zed :Account successfully registered");
        client.expect(":ringchat.local 900 zed zed!*@127.0.0.1 zed :You are now logged in as zed");
        client.send("USER zed 0 * :Zed");
        client.send("CAP END");
        client.skip_until(|line| has_numeric(line, "422"));
        let mut watcher = server.register("watcher");
        watcher.send("WHOIS zed");
        let whois = watcher.skip_until(|l| has_numeric(l, "318"));
        assert!(whois.iter().any(|l| l == ":ringchat.local 330 watcher zed zed :is logged in as"), "{whois:?}");
    }

    fn nickserv_registers_identifies_and_logs_out(setup) {
        let server = setup.start();
        let mut alice = server.register("alice");
        alice.send("PRIVMSG NickServ :REGISTER correct-horse");
        alice.expect(":NickServ!NickServ@ringchat.local NOTICE alice :Account alice registered; you are now logged in to it");
        alice.expect_numeric("900");
        alice.send("NS LOGOUT");
        alice.expect_numeric("901");
        alice.expect(":NickServ!NickServ@ringchat.local NOTICE alice :You are now logged out");
        alice.expect(":NickServ!NickServ@ringchat.local NOTICE alice :This nick is registered: log in to its account (IDENTIFY, or SASL) within 30 seconds, or you will be renamed");
        let mut other = server.register("other");
        other.send("NICKSERV IDENTIFY alice wrong-horse");
        other.expect(":NickServ!NickServ@ringchat.local NOTICE other :Invalid password for alice");
        other.send("PRIVMSG nickserv :IDENTIFY alice correct-horse");
        let line = other.expect_numeric("900");
        assert!(line.ends_with(" alice :You are now logged in as alice"), "{line}");
        other.expect(":NickServ!NickServ@ringchat.local NOTICE other :You are now identified for alice");
        other.send("NS INFO alice");
        let info = other.line();
        assert!(info.starts_with(":NickServ!NickServ@ringchat.local NOTICE other :Account alice: registered "), "{info}");
    }

    fn others_see_the_account_in_tags_joins_notifications_whois_and_whox(setup) {
        let server = setup.start();
        let _owner = register_account(&server, "alice", "correct-horse");
        let mut watcher = register_with_caps(&server, "watcher", "account-tag extended-join account-notify");
        let mut plain_member = server.register("plain");
        join_all("#c", &mut [&mut watcher, &mut plain_member]);
        let (mut alice2, _) = sasl_login(&server, "alice2", "alice", "correct-horse", "");
        alice2.send("JOIN #c");
        watcher.expect(&format!("@account=alice :{} JOIN #c alice :alice2 real", alice2.source()));
        plain_member.expect(&format!(":{} JOIN #c", alice2.source()));
        alice2.skip_until(|l| has_numeric(l, "366"));
        alice2.send("PRIVMSG #c :hello");
        let line = watcher.line();
        assert!(line.starts_with("@account=alice") && line.ends_with(" PRIVMSG #c :hello"), "{line}");
        let line = plain_member.line();
        assert!(line.starts_with(':') && line.ends_with(" PRIVMSG #c :hello"), "{line}");
        watcher.send("WHO #c %na");
        let who = watcher.skip_until(|l| has_numeric(l, "315"));
        assert!(who.iter().any(|l| l == ":ringchat.local 354 watcher alice2 alice"), "{who:?}");
        assert!(who.iter().any(|l| l == ":ringchat.local 354 watcher plain 0"), "{who:?}");
        alice2.send("NS LOGOUT");
        watcher.expect(&format!(":{} ACCOUNT *", alice2.source()));
        plain_member.expect_nothing();
        alice2.send("NS IDENTIFY alice correct-horse");
        watcher.expect(&format!("@account=alice :{} ACCOUNT alice", alice2.source()));
    }

    fn a_registered_nick_is_renamed_after_its_grace_period_and_ghost_frees_it(setup) {
        let server = setup.start_with(|config| config.nick_grace = std::time::Duration::from_secs(1));
        let mut founder = server.register("founder");
        founder.send("REGISTER alice * correct-horse");
        founder.skip_until(|l| has_numeric(l, "900"));
        let mut squatter = server.connect();
        squatter.send("NICK alice");
        squatter.send("USER sq 0 * :Squatter");
        let burst = squatter.skip_until(|l| l.contains("This nick is registered"));
        assert!(burst.iter().any(|l| has_numeric(l, "422")), "{burst:?}");
        // The liveness tick renames it once the second of grace is over.
        let rename = squatter.line();
        assert!(rename.starts_with(":alice!~sq@127.0.0.1 NICK :Guest-"), "{rename}");
        let guest = rename.rsplit(':').next().unwrap_or_default().to_owned();
        squatter.expect(&format!(":NickServ!NickServ@ringchat.local NOTICE {guest} :That nick is registered and you did not log in to its account; you are now known by this one"));
        squatter.nick = guest;

        let mut stale = server.connect();
        stale.send("NICK alice");
        stale.send("USER stale 0 * :Stale");
        stale.skip_until(|l| l.contains("This nick is registered"));
        let (mut owner, _) = sasl_login(&server, "owner", "alice", "correct-horse", "");
        owner.send("NS GHOST alice");
        owner.expect(":NickServ!NickServ@ringchat.local NOTICE owner :alice has been disconnected");
        let closing = stale.expect_closed();
        assert!(closing.iter().any(|l| l.contains("Killed (NickServ (GHOST command used by owner))")), "{closing:?}");
        owner.send("NICK alice");
        owner.expect(":owner!~owner@127.0.0.1 NICK :alice");
        squatter.send("NS GHOST alice");
        squatter.expect(&format!(":NickServ!NickServ@ringchat.local NOTICE {} :You must be logged in to the account alice to free its nick", squatter.nick));
    }

    fn strict_enforcement_refuses_a_registered_nick_and_renames_at_registration(setup) {
        let server = setup.start_with(|config| config.nick_grace = std::time::Duration::ZERO);
        let mut founder = server.register("founder");
        founder.send("REGISTER alice * correct-horse");
        founder.skip_until(|l| has_numeric(l, "900"));
        let mut bob = server.register("bob");
        bob.send("NICK alice");
        bob.expect(":ringchat.local 433 bob alice :Nickname is already in use");
        let mut squatter = server.connect();
        squatter.send("NICK alice");
        squatter.send("USER sq 0 * :Squatter");
        let burst = squatter.skip_until(|l| l.contains(" NICK :Guest-"));
        assert!(burst.iter().any(|l| has_numeric(l, "001")), "{burst:?}");
    }

    fn sasl_external_logs_in_with_a_certificate_the_account_added(setup) {
        let pki = TestPki::new();
        let identity = pki.client_identity();
        let server = setup.start_tls(&pki, |_| {});
        let mut alice = Client::register(server.connect_tls(pki.client_config_with(&identity)), "alice");
        alice.send("REGISTER * * correct-horse");
        alice.skip_until(|l| has_numeric(l, "900"));
        alice.send("NS CERT ADD");
        alice.expect(&format!(":NickServ!NickServ@ringchat.local NOTICE alice :{} now logs in to alice (SASL EXTERNAL)", identity.fingerprint));
        alice.send("NS CERT LIST");
        alice.expect(&format!(":NickServ!NickServ@ringchat.local NOTICE alice :alice: {}", identity.fingerprint));

        let mut again = server.connect_tls(pki.client_config_with(&identity));
        again.send("NICK again");
        again.send("AUTHENTICATE EXTERNAL");
        again.expect("AUTHENTICATE +");
        again.send("AUTHENTICATE +");
        again.expect(":ringchat.local 900 again again!*@127.0.0.1 alice :You are now logged in as alice");
        again.expect(":ringchat.local 903 again :SASL authentication successful");

        let mut stranger = server.connect_tls(pki.client_config());
        stranger.send("NICK stranger");
        stranger.send("AUTHENTICATE EXTERNAL");
        stranger.expect("AUTHENTICATE +");
        stranger.send("AUTHENTICATE +");
        stranger.expect(":ringchat.local 904 stranger :SASL authentication failed");

        alice.send(&format!("NS CERT DEL {}", identity.fingerprint.to_uppercase()));
        alice.expect(&format!(":NickServ!NickServ@ringchat.local NOTICE alice :{} no longer logs in to alice", identity.fingerprint));
        let mut late = server.connect_tls(pki.client_config_with(&identity));
        late.send("NICK late");
        late.send("AUTHENTICATE EXTERNAL");
        late.expect("AUTHENTICATE +");
        late.send("AUTHENTICATE +");
        late.expect(":ringchat.local 904 late :SASL authentication failed");
    }

    fn set_password_replaces_it_and_pass_account_password_logs_in(setup) {
        let server = setup.start();
        let mut alice = register_account(&server, "alice", "correct-horse");
        alice.send("NS SET PASSWORD battery-staple");
        alice.expect(":NickServ!NickServ@ringchat.local NOTICE alice :The password of alice is changed");
        let mut old = server.connect();
        old.send("PASS alice:correct-horse");
        old.send("NICK old");
        old.send("USER old 0 * :Old");
        let lines = old.skip_until(|l| l.contains("PASS: invalid password for alice"));
        assert!(!lines.iter().any(|l| has_numeric(l, "900")), "{lines:?}");
        let mut new = server.connect();
        new.send("PASS alice:battery-staple");
        new.send("NICK new");
        new.send("USER new 0 * :New");
        let lines = new.skip_until(|l| has_numeric(l, "900"));
        assert!(lines.last().is_some_and(|l| l.ends_with(" alice :You are now logged in as alice")), "{lines:?}");
        new.send("WHOIS new");
        let whois = new.skip_until(|l| has_numeric(l, "318"));
        assert!(whois.iter().any(|l| l == ":ringchat.local 330 new new alice :is logged in as"), "{whois:?}");
    }

    fn registrations_per_source_and_failed_logins_per_account_are_throttled(setup) {
        let server = setup.start_with(|config| config.sources.exempt = Vec::new());
        let mut founder = server.register("founder");
        for n in 0..3 {
            founder.send(&format!("REGISTER acct{n} * correct-horse"));
            founder.skip_until(|l| l.contains(" REGISTER SUCCESS "));
            founder.send("NS LOGOUT");
            founder.skip_until(|l| l.starts_with(":NickServ") && l.ends_with(":You are now logged out"));
        }
        founder.send("REGISTER acct3 * correct-horse");
        founder.expect(":ringchat.local FAIL REGISTER TEMPORARILY_UNAVAILABLE acct3 :Too many registrations from your address; try again later");
        // Ten failures for acct0 (two connections: the fifth failure closes one), then
        // even the right password is refused unchecked for a while.
        for round in 0..2 {
            let mut guesser = server.register(&format!("guesser{round}"));
            for _ in 0..5 {
                guesser.send("NS IDENTIFY acct0 wrong-horse");
                guesser.skip_until(|l| l.ends_with(":Invalid password for acct0"));
            }
            guesser.expect_closed();
        }
        let mut owner = server.register("owner");
        owner.send("NS IDENTIFY acct0 correct-horse");
        owner.expect(":NickServ!NickServ@ringchat.local NOTICE owner :Invalid password for acct0");
    }

    fn bad_authenticate_input_gets_numerics_never_a_login(setup) {
        let server = setup.start();
        let _alice = register_account(&server, "alice", "correct-horse");
        let mut client = server.connect();
        client.send("NICK probe");
        client.send("AUTHENTICATE SCRAM-MD5");
        client.expect(":ringchat.local 908 probe PLAIN,EXTERNAL,SCRAM-SHA-256 :are available SASL mechanisms");
        client.expect(":ringchat.local 904 probe :SASL authentication failed");
        client.send("AUTHENTICATE PLAIN");
        client.expect("AUTHENTICATE +");
        client.send("AUTHENTICATE *");
        client.expect(":ringchat.local 906 probe :SASL authentication aborted");
        client.send("AUTHENTICATE PLAIN");
        client.expect("AUTHENTICATE +");
        client.send(&format!("AUTHENTICATE {}", "A".repeat(401)));
        client.expect(":ringchat.local 905 probe :SASL message too long");
        client.send("AUTHENTICATE PLAIN");
        client.expect("AUTHENTICATE +");
        for _ in 0..5 {
            client.send(&format!("AUTHENTICATE {}", "A".repeat(400)));
        }
        client.expect(":ringchat.local 904 probe :SASL authentication failed");
        client.send("AUTHENTICATE PLAIN");
        client.expect("AUTHENTICATE +");
        client.send("AUTHENTICATE not!base64");
        client.expect(":ringchat.local 904 probe :SASL authentication failed");
        let encoded = plain("alice", "correct-horse");
        client.send("AUTHENTICATE PLAIN");
        client.expect("AUTHENTICATE +");
        client.send(&format!("AUTHENTICATE {encoded}"));
        client.expect_numeric("900");
        client.expect_numeric("903");
        client.send("AUTHENTICATE PLAIN");
        client.expect(":ringchat.local 907 probe :You have already authenticated using SASL");
    }
}

/// A SASL message longer than one chunk arrives in 400-byte pieces and an empty `+`.
#[test]
fn a_sasl_message_of_exactly_one_chunk_ends_with_a_plus() {
    let server = Setup {
        io: ringchat::IoMode::Epoll,
        shards: 1,
    }
    .start();
    // 400 base64 characters: 300 bytes of `\0` + account + `\0` + password.
    let password: String = "0123456789"
        .chars()
        .cycle()
        .take(300 - 2 - "alice".len())
        .collect();
    let mut alice = server.register("alice");
    alice.send(&format!("REGISTER * * {password}"));
    alice.skip_until(|line| has_numeric(line, "900"));
    let encoded = plain("alice", &password);
    assert_eq!(encoded.len(), 400);
    let mut client = server.connect();
    client.send("NICK probe");
    client.send("AUTHENTICATE PLAIN");
    client.expect("AUTHENTICATE +");
    client.send(&format!("AUTHENTICATE {encoded}"));
    client.send("PING :barrier");
    client.expect(":ringchat.local PONG ringchat.local :barrier");
    client.send("AUTHENTICATE +");
    client.expect_numeric("900");
    client.expect_numeric("903");
}

/// The accounts are in the data directory's store: a server started again on it
/// knows them (and refuses their names to others), SCRAM keys included, and a
/// dropped one is gone from it.
#[test]
fn accounts_survive_a_restart() {
    let dir = data_dir("restart");
    let setup = Setup {
        io: ringchat::IoMode::Epoll,
        shards: 2,
    };
    {
        let server = setup.start_with(|config| config.data_dir = Some(dir.clone()));
        let _alice = register_account(&server, "alice", "correct-horse");
        let mut gone = register_account(&server, "gone", "correct-horse");
        gone.send("NS DROP correct-horse");
        gone.skip_until(|l| l.ends_with(":Account gone has been dropped; its name is free"));
    }
    let server = setup.start_with(|config| config.data_dir = Some(dir.clone()));
    let (_alice, exchange) = sasl_login(&server, "alice", "alice", "correct-horse", "");
    assert!(
        exchange.last().is_some_and(|l| has_numeric(l, "903")),
        "{exchange:?}"
    );
    // The SCRAM keys were stored with the hash.
    let (_scram, end, lines) = scram_login(
        &server,
        "scram",
        &ScramClient::new("alice", "correct-horse"),
    );
    assert_eq!(end, ScramEnd::LoggedIn, "{lines:?}");
    // The dropped account stayed dropped.
    let mut carol = server.register("carol");
    carol.send("REGISTER gone * another-password");
    carol.expect(":ringchat.local REGISTER SUCCESS gone :Account successfully registered");
    let mut bob = server.register("bob");
    bob.send("REGISTER alice * another-password");
    bob.expect(":ringchat.local FAIL REGISTER ACCOUNT_EXISTS alice :Account already exists");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A ringchat process this test started; killed (SIGKILL) when dropped, so a
/// failing assertion leaves no server behind.
struct Process(std::process::Child);

impl Process {
    /// Starts the binary on `addr` with `dir` as its data directory and waits until
    /// it accepts connections.
    fn start(addr: std::net::SocketAddr, dir: &std::path::Path) -> Process {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_ringchat"))
            .args(["--listen", &addr.to_string(), "--data-dir"])
            .arg(dir)
            .env_remove("STATE_DIRECTORY")
            .stdout(std::process::Stdio::null())
            .env_remove("RUST_LOG")
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn ringchat");
        let process = Process(child);
        let deadline = std::time::Instant::now() + common::HANG;
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "ringchat did not start listening"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        process
    }

    /// SIGKILL, and reaps it. The kernel tears down an io_uring after its process
    /// is gone, so the old listening sockets can accept for a moment longer: wait
    /// until `addr` refuses connections, or the next start's probe may reach them.
    fn kill(&mut self, addr: std::net::SocketAddr) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let deadline = std::time::Instant::now() + common::HANG;
        while std::net::TcpStream::connect(addr).is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "the killed server still accepts"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the server acknowledged (`REGISTER SUCCESS`) is on disk: a SIGKILL right
/// after the reply loses no account.
#[test]
fn an_acknowledged_registration_survives_sigkill() {
    let dir = data_dir("sigkill");
    let addr = common::free_port();
    let mut first = Process::start(addr, &dir);
    let mut names = Vec::new();
    for n in 0..5 {
        let name = format!("user{n}");
        let mut client = Client::register(Client::connect(addr), &name);
        client.send("REGISTER * * correct-horse");
        client.expect(&format!(
            ":ringchat.local REGISTER SUCCESS {name} :Account successfully registered"
        ));
        names.push(name);
    }
    first.kill(addr);
    let _second = Process::start(addr, &dir);
    for name in &names {
        let mut client = Client::register(Client::connect(addr), &format!("{name}x"));
        client.send(&format!("REGISTER {name} * correct-horse"));
        client.expect(&format!(
            ":ringchat.local FAIL REGISTER ACCOUNT_EXISTS {name} :Account already exists"
        ));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

e2e! {
    fn account_extbans_ban_and_except_users_by_their_account(setup) {
        let server = setup.start();
        let mut op = server.register("op");
        op.send("JOIN #c");
        op.skip_until(|l| has_numeric(l, "366"));
        op.send("MODE #c +b $a:troll*");
        op.expect(":op!~op@127.0.0.1 MODE #c +b $a:troll*");
        let mut troll = register_account(&server, "trollish", "correct-horse");
        troll.send("JOIN #c");
        troll.expect_numeric("474");
        // The same nick without the account is not that account.
        let mut anon = server.register("trollanon");
        anon.send("JOIN #c");
        anon.skip_until(|l| has_numeric(l, "366"));
        op.expect(":trollanon!~trollanon@127.0.0.1 JOIN #c");
        // Everyone banned, but anyone logged in excepted.
        op.send("MODE #c +be *!*@* $a");
        op.expect(":op!~op@127.0.0.1 MODE #c +be *!*@* $a");
        troll.send("JOIN #c");
        troll.skip_until(|l| has_numeric(l, "366"));
        op.skip_until(|l| l.contains("JOIN #c"));
        let mut stranger = server.register("stranger");
        stranger.send("JOIN #c");
        stranger.expect_numeric("474");
        // Only the account extban is understood; another is refused, not stored.
        op.send("MODE #c +b $r:bot*");
        op.send("MODE #c +b");
        let list = op.skip_until(|l| has_numeric(l, "368"));
        assert!(list[0].contains(" 696 op #c b $r:bot* :"), "{list:?}");
        assert!(!list.iter().any(|l| has_numeric(l, "367") && l.contains("$r:")), "{list:?}");
    }
}
