//! Read markers (IRCv3 `draft/read-marker`) as clients see them: MARKREAD get and
//! set, a marker that never moves back, every connection of the account told of a
//! move (across shards), the marker after a JOIN, the errors, a client without an
//! account, and markers surviving a restart in the data directory's store.

mod common;

use common::{data_dir, has_numeric, register_with_caps, Client, Setup, TestServer};

const CAP: &str = "draft/read-marker";
const NOON: &str = "timestamp=2026-01-02T12:00:00.250Z";
const MORNING: &str = "timestamp=2026-01-02T08:30:00.000Z";
const EVENING: &str = "timestamp=2026-01-02T20:00:00.999Z";

/// Registers `nick` with `caps`, then registers the account `nick` (password `pw`)
/// from it; the client stays logged in.
fn with_account(server: &TestServer, nick: &str, caps: &str) -> Client {
    let mut client = register_with_caps(server, nick, caps);
    client.send("REGISTER * * correct-horse");
    client.skip_until(|line| has_numeric(line, "900"));
    client
}

/// Registers `nick` with `caps` and logs it in to `account` with NickServ.
fn logged_in(server: &TestServer, nick: &str, account: &str, caps: &str) -> Client {
    let mut client = register_with_caps(server, nick, caps);
    client.send(&format!("NS IDENTIFY {account} correct-horse"));
    client.skip_until(|line| line.contains(" NOTICE ") && line.contains("You are now identified"));
    client
}

fn markread(target: &str, timestamp: &str) -> String {
    format!(":ringchat.local MARKREAD {target} {timestamp}")
}

/// Each body on every I/O driver with 4 shards: the connections of one account land
/// on different shards.
macro_rules! on_four_shards {
    ($(fn $name:ident($setup:ident) $body:block)*) => {
        $(
            e2e_on! {
                [uring_4_shards Uring 4, epoll_4_shards Epoll 4, ring_4_shards Ring 4]
                fn $name($setup) $body
            }
        )*
    };
}

on_four_shards! {
    fn get_set_and_a_marker_that_never_moves_back(setup) {
        let server = setup.start();
        let mut alice = with_account(&server, "alice", CAP);
        alice.send("MARKREAD #c");
        alice.expect(&markread("#c", "*"));
        alice.send(&format!("MARKREAD #c {NOON}"));
        alice.expect(&markread("#c", NOON));
        // Targets are compared without case; the answer names the target as asked.
        alice.send("MARKREAD #C");
        alice.expect(&markread("#C", NOON));
        // An older time (or the same) leaves the marker and answers it.
        alice.send(&format!("MARKREAD #c {MORNING}"));
        alice.expect(&markread("#c", NOON));
        alice.send(&format!("MARKREAD #c {NOON}"));
        alice.expect(&markread("#c", NOON));
        alice.send(&format!("MARKREAD #c {EVENING}"));
        alice.expect(&markread("#c", EVENING));
        // A nick is a target too, with its own marker.
        alice.send("MARKREAD Bob");
        alice.expect(&markread("Bob", "*"));
        // A time past the server's clock is taken as now.
        alice.send("MARKREAD bob timestamp=2999-01-01T00:00:00.000Z");
        let line = alice.line();
        assert!(line.starts_with(":ringchat.local MARKREAD bob timestamp=20"), "{line}");
        assert!(!line.contains("2999"), "{line}");
    }

    fn errors_are_standard_replies(setup) {
        let server = setup.start();
        let mut alice = with_account(&server, "alice", CAP);
        alice.send("MARKREAD");
        alice.expect(":ringchat.local FAIL MARKREAD NEED_MORE_PARAMS :Missing parameters");
        alice.send("MARKREAD #c timestamp=yesterday");
        alice.expect(":ringchat.local FAIL MARKREAD INVALID_PARAMS timestamp=yesterday :Invalid timestamp");
        alice.send("MARKREAD #c 2026-01-02T12:00:00.250Z");
        alice.expect(":ringchat.local FAIL MARKREAD INVALID_PARAMS 2026-01-02T12:00:00.250Z :Invalid timestamp");
        alice.send("MARKREAD #c *");
        alice.expect(":ringchat.local FAIL MARKREAD INVALID_PARAMS * :Invalid timestamp");
        alice.send(&format!("MARKREAD ,bad {NOON}"));
        alice.expect(":ringchat.local FAIL MARKREAD INVALID_PARAMS ,bad :Invalid target");
        // Nothing was stored by the refused ones.
        alice.send("MARKREAD #c");
        alice.expect(&markread("#c", "*"));
    }

    fn a_client_without_an_account_keeps_markers_for_its_connection_only(setup) {
        let server = setup.start();
        let mut guest = register_with_caps(&server, "guest", CAP);
        guest.send("MARKREAD #c");
        guest.expect(&markread("#c", "*"));
        guest.send(&format!("MARKREAD #c {NOON}"));
        guest.expect(&markread("#c", NOON));
        guest.send(&format!("MARKREAD #C {MORNING}"));
        guest.expect(&markread("#C", NOON));
        guest.send("JOIN #c");
        let lines = guest.skip_until(|line| has_numeric(line, "366"));
        assert_eq!(lines[1], markread("#c", NOON), "{lines:?}");
        // Another connection, without an account, has its own (none).
        let mut other = register_with_caps(&server, "other", CAP);
        other.send("MARKREAD #c");
        other.expect(&markread("#c", "*"));
    }

    fn every_connection_of_the_account_with_the_cap_is_told(setup) {
        let server = setup.start();
        let mut alice = with_account(&server, "alice", CAP);
        let mut phone = logged_in(&server, "phone", "alice", CAP);
        let mut laptop = logged_in(&server, "laptop", "alice", CAP);
        let mut old_client = logged_in(&server, "old", "alice", "server-time");
        let mut bob = with_account(&server, "bob", CAP);
        let mut devices: Vec<Client> = (0..8)
            .map(|n| logged_in(&server, &format!("device{n}"), "alice", CAP))
            .collect();
        // The account's connections are spread over the shards.
        let per_shard = server.connections_per_shard(13);
        let busy_shards = per_shard.iter().filter(|&&n| n > 0).count();
        assert!(busy_shards > 1, "every connection on one shard: {per_shard:?}");
        phone.send(&format!("MARKREAD #Chan {NOON}"));
        phone.expect(&markread("#Chan", NOON));
        alice.expect(&markread("#Chan", NOON));
        laptop.expect(&markread("#Chan", NOON));
        for device in &mut devices {
            device.expect(&markread("#Chan", NOON));
        }
        old_client.expect_nothing();
        bob.expect_nothing();
        // A set that does not move the marker is answered to its sender only.
        laptop.send(&format!("MARKREAD #chan {MORNING}"));
        laptop.expect(&markread("#chan", NOON));
        alice.expect_nothing();
        phone.expect_nothing();
        // The client without the cap may still ask and set.
        old_client.send(&format!("MARKREAD #chan {EVENING}"));
        old_client.expect(&markread("#chan", EVENING));
        for client in [&mut alice, &mut phone, &mut laptop] {
            client.expect(&markread("#chan", EVENING));
        }
        bob.send("MARKREAD #chan");
        bob.expect(&markread("#chan", "*"));
    }

    fn a_join_is_followed_by_the_channel_marker(setup) {
        let server = setup.start();
        let mut alice = with_account(&server, "alice", CAP);
        let mut plain = logged_in(&server, "plain", "alice", "");
        alice.send(&format!("MARKREAD #c {NOON}"));
        alice.expect(&markread("#c", NOON));
        alice.send("JOIN #C");
        let lines = alice.skip_until(|line| has_numeric(line, "366"));
        assert!(lines[0].ends_with(" JOIN #C"), "{lines:?}");
        assert_eq!(lines[1], markread("#C", NOON), "{lines:?}");
        alice.send("JOIN #d");
        let lines = alice.skip_until(|line| has_numeric(line, "366"));
        assert_eq!(lines[1], markread("#d", "*"), "{lines:?}");
        // Without the cap, no MARKREAD.
        plain.send("JOIN #c");
        let lines = plain.skip_until(|line| has_numeric(line, "366"));
        assert!(lines.iter().all(|line| !line.contains("MARKREAD")), "{lines:?}");
    }
}

/// The markers are in the data directory's store: a server started again on it
/// answers them, and a dropped account's markers are gone with it.
#[test]
fn markers_survive_a_restart() {
    let dir = data_dir("restart");
    let setup = Setup {
        io: ringchat::IoMode::Epoll,
        shards: 4,
    };
    {
        let server = setup.start_with(|config| config.data_dir = Some(dir.clone()));
        let mut gone = with_account(&server, "gone", CAP);
        gone.send(&format!("MARKREAD #c {EVENING}"));
        gone.expect(&markread("#c", EVENING));
        gone.send("NS DROP correct-horse");
        gone.skip_until(|l| l.ends_with(":Account gone has been dropped; its name is free"));
        // Round trips after the last password work: a password worker lets go of
        // the server's state (and its store) just after it answers.
        let mut alice = with_account(&server, "alice", CAP);
        alice.send(&format!("MARKREAD #c {NOON}"));
        alice.expect(&markread("#c", NOON));
        alice.send(&format!("MARKREAD bob {MORNING}"));
        alice.expect(&markread("bob", MORNING));
        alice.expect_nothing();
    }
    let server = setup.start_with(|config| config.data_dir = Some(dir.clone()));
    let mut alice = logged_in(&server, "alice", "alice", CAP);
    alice.send("MARKREAD #C");
    alice.expect(&markread("#C", NOON));
    alice.send("MARKREAD BOB");
    alice.expect(&markread("BOB", MORNING));
    alice.send(&format!("MARKREAD #c {MORNING}"));
    alice.expect(&markread("#c", NOON));
    let mut gone = with_account(&server, "gone", CAP);
    gone.send("MARKREAD #c");
    gone.expect(&markread("#c", "*"));
    let _ = std::fs::remove_dir_all(&dir);
}
