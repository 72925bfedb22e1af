//! Hostile and random input against the sans-IO core: thousands of generated lines,
//! valid-looking and not, from many clients on two shards. Nothing may panic, and
//! every client still connected must still be served afterwards.

use ringchat::state::ClientId;
use ringchat::testing::ShardFixture;
use ringchat::Config;
use std::time::Duration;

/// A small deterministic generator (xorshift64*), so a failure is reproducible.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const COMMANDS: &[&str] = &[
    "JOIN", "PART", "PRIVMSG", "NOTICE", "TAGMSG", "NICK", "MODE", "TOPIC", "KICK", "INVITE",
    "WHO", "WHOIS", "LIST", "NAMES", "AWAY", "USERHOST", "ISON", "SETNAME", "CAP", "PING", "PONG",
    "MOTD", "LUSERS", "VERSION", "TIME", "STATS", "USER", "PASS", "QUIT", "BOGUS",
];
const WORDS: &[&str] = &[
    "#a",
    "#b",
    "#a,#b",
    "0",
    "c0",
    "c1",
    "c2,c3",
    "*",
    "+o",
    "-o",
    "+b",
    "+k",
    "key",
    "+l",
    "5",
    "+imnt",
    "-imnt",
    "+v",
    "+ovb",
    "*!*@*",
    "%tcuhnfar,42",
    ">1",
    "<3",
    "LS",
    "REQ",
    ":multi-prefix echo-message",
    "END",
    "",
    ":",
    "::",
    ":hello world",
    "é",
    "\u{1f980}",
    "#\u{e9}t\u{e9}",
    "a\u{301}",
    "@",
    "!",
    "\x01ACTION waves\x01",
];

fn random_line(random: &mut Random) -> Vec<u8> {
    match random.below(10) {
        0 => (0..random.below(600))
            .map(|_| random.next() as u8)
            .collect(),
        1 => {
            let mut line = b"@".to_vec();
            for _ in 0..random.below(5) {
                line.extend_from_slice(
                    random
                        .pick(&["+a=b", "label=x", "+c", "=;", "\\s"])
                        .as_bytes(),
                );
                line.push(b';');
            }
            line.extend_from_slice(b" PRIVMSG #a :tagged");
            line
        }
        _ => {
            let mut line = random.pick(COMMANDS).as_bytes().to_vec();
            for _ in 0..random.below(5) {
                line.push(b' ');
                line.extend_from_slice(random.pick(WORDS).as_bytes());
            }
            line
        }
    }
}

#[test]
fn thousands_of_random_lines_panic_nothing_and_leave_the_server_serving() {
    for seed in [
        0x5eed_cafe_f00d_d00d,
        0x0123_4567_89ab_cdef,
        0xdead_beef_0bad_f00d,
    ] {
        random_session(seed);
    }
}

fn random_session(seed: u64) {
    let mut fixture = ShardFixture::new(Config {
        shards: 2,
        flood_rate: 0.0,
        sendq: 64 * 1024,
        ..Config::loopback()
    });
    let mut clients: Vec<ClientId> = (0..12)
        .map(|i| fixture.register((i % 2) as u16, &format!("c{i}")))
        .collect();
    let mut random = Random(seed);
    let mut replaced = 0;
    for round in 0..50_000 {
        let slot = random.below(clients.len());
        let client = clients[slot];
        let gone = fixture.shards[client.shard as usize]
            .client(client)
            .is_none_or(|c| c.closing);
        if gone {
            // QUIT, a flood of garbage or a full sendq ended it: a newcomer takes over.
            replaced += 1;
            clients[slot] = fixture.register(client.shard, &format!("n{replaced}"));
            continue;
        }
        let mut line = random_line(&mut random);
        line.extend_from_slice(if random.below(2) == 0 { b"\r\n" } else { b"\n" });
        fixture.send_bytes(client, &line);
        if round % 50 == 0 {
            for &id in &clients {
                fixture.drain_quietly(id);
            }
            fixture.advance(Duration::from_millis(100));
        }
    }
    println!("{replaced} clients replaced after QUIT, flood or sendq");
    assert!(
        replaced < 10_000,
        "clients should mostly survive: {replaced} replaced"
    );
    for &id in &clients {
        fixture.drain(id);
        fixture.send(id, "PING :still-there\r\n");
        let replies = fixture.drain_text(id);
        let connected = fixture.shards[id.shard as usize]
            .client(id)
            .is_some_and(|c| !c.closing);
        if connected {
            assert!(
                replies
                    .iter()
                    .any(|l| l.ends_with("PONG ringchat.local :still-there")),
                "{id:?} is connected but unserved: {replies:?}"
            );
        }
    }
}
