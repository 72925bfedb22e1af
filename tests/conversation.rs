//! Sans-IO conversations: the shard core driven directly with an injected clock, for
//! behaviour that depends on time (flood control, liveness) without sleeping.

use ringchat::testing::ShardFixture;
use ringchat::Config;
use std::time::Duration;

fn fixture(adjust: impl FnOnce(&mut Config)) -> ShardFixture {
    let mut config = Config::loopback();
    adjust(&mut config);
    ShardFixture::new(config)
}

fn privmsgs(lines: &[String]) -> usize {
    lines.iter().filter(|l| l.contains(" PRIVMSG ")).count()
}

#[test]
fn flood_control_lets_the_burst_through_then_one_line_per_token() {
    let mut chat = fixture(|c| {
        c.flood_burst = 5;
        c.flood_rate = 2.0;
    });
    let alice = chat.register(0, "alice");
    let bob = chat.register(0, "bob");
    chat.advance(Duration::from_secs(10));
    chat.drain(bob);
    let burst: String = (0..9).map(|i| format!("PRIVMSG bob :{i}\r\n")).collect();
    chat.send(alice, &burst);
    assert_eq!(
        privmsgs(&chat.drain_text(bob)),
        5,
        "the burst passes at once"
    );
    chat.advance(Duration::from_millis(500));
    assert_eq!(
        privmsgs(&chat.drain_text(bob)),
        1,
        "one token per half second"
    );
    chat.advance(Duration::from_millis(1500));
    let rest = chat.drain_text(bob);
    assert_eq!(privmsgs(&rest), 3, "the waiting lines arrive, none lost");
    assert!(rest.last().is_some_and(|l| l.ends_with(" :8")), "{rest:?}");
}

#[test]
fn a_quiet_client_is_pinged_then_dropped_on_the_injected_clock() {
    let mut chat = fixture(|c| {
        c.ping_interval = Duration::from_secs(120);
        c.ping_timeout = Duration::from_secs(60);
    });
    let alice = chat.register(0, "alice");
    chat.advance(Duration::from_secs(119));
    assert!(chat.drain_text(alice).is_empty());
    chat.advance(Duration::from_secs(2));
    assert_eq!(chat.drain_text(alice), ["PING :ringchat.local"]);
    chat.advance(Duration::from_secs(58));
    assert!(
        chat.drain_text(alice).is_empty(),
        "still inside the timeout"
    );
    chat.advance(Duration::from_secs(2));
    assert_eq!(
        chat.drain_text(alice),
        ["ERROR :Closing Link: 127.0.0.1 (Ping timeout)"]
    );
}

#[test]
fn any_input_counts_as_an_answer_to_the_ping() {
    let mut chat = fixture(|_| {});
    let alice = chat.register(0, "alice");
    chat.advance(Duration::from_secs(121));
    assert_eq!(chat.drain_text(alice), ["PING :ringchat.local"]);
    chat.send(alice, "PONG :ringchat.local\r\n");
    chat.advance(Duration::from_secs(100));
    assert!(
        chat.drain_text(alice).is_empty(),
        "no timeout after answering"
    );
}

#[test]
fn registration_times_out_on_the_injected_clock() {
    let mut chat = fixture(|c| c.registration_timeout = Duration::from_secs(60));
    let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 5555));
    let now = chat.now;
    let lurker = chat.shards[0].accept(peer, now).expect("admitted");
    chat.send(lurker, "NICK lurker\r\n");
    chat.advance(Duration::from_secs(59));
    assert!(chat.drain_text(lurker).is_empty());
    chat.advance(Duration::from_secs(2));
    assert_eq!(
        chat.drain_text(lurker),
        ["ERROR :Closing Link: 127.0.0.1 (Registration timed out)"]
    );
}
