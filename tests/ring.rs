//! The ring driver's own hazards, end to end over real sockets: an exhausted
//! provided-buffer ring (`ENOBUFS`) loses nothing, a peer that resets while a write to
//! it is in flight costs only its own connection, a shutdown with receives and
//! blocked writes in flight completes and closes every socket, and a SIGHUP to the
//! real binary renews the TLS certificate while a TLS connection carries on. (The
//! TLS matrix itself runs on ring in `e2e_tls.rs`.)

mod common;

use common::tls::{sighup_until_renewed, TestPki};
use common::{free_port, join_all, Client, Setup, HANG};
use ringchat::IoMode;
use std::io::Read;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RING: Setup = Setup {
    io: IoMode::Ring,
    shards: 1,
};

/// The server's summed counters, made current by a `STATS S` round trip (with one
/// shard, the shard answering publishes its own).
fn counters(
    server: &common::TestServer,
    asker: &mut Client,
) -> ringchat::state::shared::CounterSnapshot {
    asker.send("STATS S");
    asker.skip_until(|line| common::has_numeric(line, "219"));
    server.server().shard_counters().into_iter().fold(
        Default::default(),
        ringchat::state::shared::CounterSnapshot::plus,
    )
}

#[test]
fn an_exhausted_receive_buffer_ring_loses_no_input() {
    const SENDERS: usize = 8;
    const LINES: usize = 400;
    // One 4 KiB buffer for the whole shard: concurrent senders must run it dry.
    let server = RING.start_with(|c| {
        c.flood_rate = 0.0;
        c.ring_buffers = 1;
    });
    let mut listener = server.register("listener");
    let mut senders: Vec<Client> = (0..SENDERS)
        .map(|i| server.register(&format!("s{i}")))
        .collect();
    let mut everyone: Vec<&mut Client> = senders.iter_mut().collect();
    everyone.push(&mut listener);
    join_all("#flood", &mut everyone);
    // Each sender writes its whole burst (about 40 KB) at once, all at the same time.
    let bursts: Vec<Vec<u8>> = (0..SENDERS)
        .map(|s| {
            (0..LINES)
                .map(|i| format!("PRIVMSG #flood :s{s} line {i} {}\r\n", "x".repeat(64)))
                .collect::<String>()
                .into_bytes()
        })
        .collect();
    std::thread::scope(|scope| {
        for (sender, burst) in senders.iter_mut().zip(&bursts) {
            scope.spawn(move || sender.send_raw(burst));
        }
    });
    // Every line arrives once, and each sender's lines in order.
    let mut next = [0usize; SENDERS];
    for _ in 0..SENDERS * LINES {
        let line = listener.line();
        let text = line
            .split(" PRIVMSG #flood :")
            .nth(1)
            .unwrap_or_else(|| panic!("unexpected line {line:?}"));
        let mut words = text.split(' ');
        let sender: usize = words.next().unwrap()[1..].parse().unwrap();
        assert_eq!(words.next(), Some("line"));
        let index: usize = words.next().unwrap().parse().unwrap();
        assert_eq!(index, next[sender], "sender {sender} out of order");
        next[sender] += 1;
    }
    listener.expect_nothing();
    let counts = counters(&server, &mut listener);
    println!("receive buffer waits: {}", counts.receive_buffer_waits);
    assert!(
        counts.receive_buffer_waits > 0,
        "the one-buffer ring never ran dry"
    );
}

#[test]
fn a_peer_that_resets_mid_write_costs_only_its_own_connection() {
    let server = RING.start_with(|c| {
        c.flood_rate = 0.0;
        c.sendq = 64 << 20;
    });
    let mut alice = server.register("alice");
    let mut bob = server.register("bob");
    let mut victim = Client::connect_with_tiny_receive_buffer(server.addr);
    victim.nick = "victim".into();
    victim.send("NICK victim");
    victim.send("USER victim 0 * :victim");
    victim.skip_until(|line| common::has_numeric(line, "376") || common::has_numeric(line, "422"));
    join_all("#c", &mut [&mut alice, &mut bob, &mut victim]);
    // Far more output than the victim's socket holds: its write stays in flight.
    let line = format!("PRIVMSG #c :{}\r\n", "y".repeat(400));
    let burst = line.repeat(10_000);
    alice.send_raw(burst.as_bytes());
    for _ in 0..10_000 {
        bob.line();
    }
    // The victim resets the connection (SO_LINGER 0) without reading.
    let raw = victim.into_raw();
    socket2::SockRef::from(&raw)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER");
    drop(raw);
    bob.skip_until(|line| line.starts_with(":victim!~victim@127.0.0.1 QUIT"));
    // Everyone else carries on, and the victim's slot is freed.
    alice.send("PRIVMSG #c :after");
    bob.skip_until(|line| line.ends_with("PRIVMSG #c :after"));
    let deadline = Instant::now() + HANG;
    while counters(&server, &mut bob).connections != 2 {
        assert!(
            Instant::now() < deadline,
            "the reset connection was never released"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn shutdown_with_receives_and_blocked_writes_in_flight_completes_and_closes_every_socket() {
    let mut server = RING.start_with(|c| {
        c.flood_rate = 0.0;
        c.sendq = 64 << 20;
        c.shutdown_timeout = Duration::from_secs(1);
    });
    let mut alice = server.register("alice");
    let mut idle: Vec<Client> = (0..20)
        .map(|i| server.register(&format!("idle{i}")))
        .collect();
    let mut stalled = Client::connect_with_tiny_receive_buffer(server.addr);
    stalled.nick = "stalled".into();
    stalled.send("NICK stalled");
    stalled.send("USER stalled 0 * :stalled");
    stalled.skip_until(|line| common::has_numeric(line, "376") || common::has_numeric(line, "422"));
    join_all("#c", &mut [&mut alice, &mut stalled]);
    let line = format!("PRIVMSG #c :{}\r\n", "z".repeat(400));
    alice.send_raw(line.repeat(10_000).as_bytes());
    alice.barrier();
    // Idle clients have a receive in flight; the stalled one a blocked write too.
    let stopper = std::thread::spawn(move || server.shutdown());
    for client in &mut idle {
        assert_eq!(
            client.expect_closed(),
            ["ERROR :Closing Link: 127.0.0.1 (Server shutting down)"]
        );
    }
    // The stalled client's socket is closed too: reading drains it to the end.
    let mut raw = stalled.into_raw();
    let mut sink = vec![0u8; 1 << 16];
    loop {
        match raw.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(error) => panic!("the stalled socket was never closed: {error}"),
        }
    }
    stopper.join().expect("shutdown completes");
}

#[test]
fn sighup_renews_the_certificate_and_a_ring_tls_connection_carries_on() {
    let pki = TestPki::new();
    let files = pki.server_files();
    let (addr, tls_addr) = (free_port(), free_port());
    let mut server = Command::new(env!("CARGO_BIN_EXE_ringchat"))
        .env_remove("RUST_LOG")
        .args([
            "--io",
            "ring",
            "--shards",
            "2",
            "--listen",
            &addr.to_string(),
        ])
        .args(["--tls-listen", &tls_addr.to_string()])
        .args(["--tls-cert", &files.cert.to_string_lossy()])
        .args(["--tls-key", &files.key.to_string_lossy()])
        .arg("--show-addresses")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ringchat");
    let deadline = Instant::now() + HANG;
    while TcpStream::connect(tls_addr).is_err() {
        assert!(Instant::now() < deadline, "ringchat never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut early = Client::connect_tls(tls_addr, pki.client_config());
    let first = early.server_certificates().remove(0);
    let mut early = Client::register(early, "early");
    let mut plain = Client::register(Client::connect(addr), "plain");
    join_all("#renewal", &mut [&mut early, &mut plain]);

    let renewed = pki.issue_server_certificate();
    sighup_until_renewed(&server, tls_addr, pki.client_config(), &first, &renewed);
    // The session that began with the old certificate is still the same connection.
    early.send("PRIVMSG #renewal :after the reload");
    plain.expect(":early!~early@127.0.0.1 PRIVMSG #renewal :after the reload");
    plain.send("PRIVMSG #renewal :and back");
    early.expect(":plain!~plain@127.0.0.1 PRIVMSG #renewal :and back");
    early.expect_nothing();

    // SAFETY: as above.
    unsafe {
        libc::kill(server.id() as libc::pid_t, libc::SIGTERM);
    }
    let status = server.wait().expect("wait for ringchat");
    assert!(status.success(), "{status:?}");
}
