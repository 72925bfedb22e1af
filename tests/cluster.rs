//! Several ringchat nodes as one network on a real NATS JetStream server (the
//! Debian `nats-server`, started here on a loopback port with a scratch store): the
//! promises of `ringchat::cluster` as a user on either node sees them.

mod common;

use common::{
    has_numeric, history, http_get, register_with_caps, send_messages, Client, Setup, TestServer,
    HANG,
};
use ringchat::config::{ClusterConfig, IoMode};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A JetStream-enabled nats-server on a free loopback port; killed when dropped.
struct Nats {
    child: Child,
    port: u16,
    store: PathBuf,
}

impl Nats {
    fn start() -> Nats {
        Nats::start_on_a_free_port(scratch_dir("nats"), &[])
    }

    /// Restarts on `port` (where it ran before) with the store at `store`.
    fn start_on(port: u16, store: PathBuf) -> Nats {
        Nats::start_with(port, store, &[]).unwrap_or_else(|why| panic!("{why}"))
    }

    /// A server that requires TLS with `pki`'s `localhost` certificate.
    fn start_tls(pki: &common::tls::TestPki) -> Nats {
        let files = pki.server_files();
        let (cert, key) = (
            files.cert.display().to_string(),
            files.key.display().to_string(),
        );
        let tls = ["--tls", "--tlscert", &cert, "--tlskey", &key];
        Nats::start_on_a_free_port(scratch_dir("nats-tls"), &tls)
    }

    /// A port found free can be taken by a parallel test (a ringchat node binding
    /// port 0) before nats-server binds it; then this server exits and a connect to
    /// the port reaches the other listener. So a server that exits is started again
    /// on another port.
    fn start_on_a_free_port(store: PathBuf, extra: &[&str]) -> Nats {
        let mut why = String::new();
        for _ in 0..5 {
            match Nats::start_with(free_port(), store.clone(), extra) {
                Ok(nats) => return nats,
                Err(failed) => why = failed,
            }
        }
        panic!("nats-server never started: {why}")
    }

    /// Runs nats-server on `port` and waits until it listens there; an error if it
    /// exits first (its port was taken).
    fn start_with(port: u16, store: PathBuf, extra: &[&str]) -> Result<Nats, String> {
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(&store)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts (apt-get install nats-server)");
        let mut nats = Nats { child, port, store };
        let deadline = Instant::now() + HANG;
        loop {
            if let Ok(Some(status)) = nats.child.try_wait() {
                return Err(format!("nats-server on port {port} exited: {status}"));
            }
            if listening(port) {
                // Its own listener, unless it exits now for want of the port.
                std::thread::sleep(Duration::from_millis(50));
                if let Ok(Some(status)) = nats.child.try_wait() {
                    return Err(format!("nats-server on port {port} exited: {status}"));
                }
                return Ok(nats);
            }
            assert!(Instant::now() < deadline, "port {port} never opened");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

fn scratch_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ringchat-cluster-{what}-{}-{}",
        std::process::id(),
        free_port()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn free_port() -> u16 {
    common::free_port().port()
}

/// Whether something listens on `port`. A connect to a closed port in the
/// ephemeral range can meet itself (TCP simultaneous open), which is not a listener.
fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port))
        .is_ok_and(|stream| stream.local_addr().ok() != stream.peer_addr().ok())
}

fn cluster(nats: &Nats, node: u16) -> ClusterConfig {
    ClusterConfig {
        servers: vec![nats.url()],
        node,
        pick_node_id: false,
        credentials: None,
        ca: None,
        node_timeout: Duration::from_secs(1),
        snapshot_every: 10_000,
    }
}

/// Node `node` of the cluster on `nats`, in this process, with two shards.
fn node(nats: &Nats, node: u16) -> TestServer {
    node_with(nats, node, |_| {})
}

fn node_with(
    nats: &Nats,
    number: u16,
    adjust: impl FnOnce(&mut ringchat::config::Config),
) -> TestServer {
    node_on(IoMode::Epoll, nats, number, adjust)
}

fn node_on(
    io: IoMode,
    nats: &Nats,
    number: u16,
    adjust: impl FnOnce(&mut ringchat::config::Config),
) -> TestServer {
    Setup { io, shards: 2 }.start_with(|config| {
        config.cluster = Some(cluster(nats, number));
        adjust(config);
    })
}

/// Node `id` as a ringchat process (one shard, node timeout 1 s) on a free port,
/// with `extra` flags: the child, its address, and its stderr lines as they come
/// (read to the end by a thread, so the node never writes into a closed pipe).
fn spawn_node(
    nats: &Nats,
    id: u16,
    extra: &[&str],
) -> (Child, SocketAddr, std::sync::mpsc::Receiver<String>) {
    spawn_node_from(env!("CARGO_BIN_EXE_ringchat").as_ref(), nats, id, extra)
}

/// [`spawn_node`], running the program at `binary` (a live upgrade runs what is at
/// that path then).
fn spawn_node_from(
    binary: &std::path::Path,
    nats: &Nats,
    id: u16,
    extra: &[&str],
) -> (Child, SocketAddr, std::sync::mpsc::Receiver<String>) {
    let port = free_port();
    let mut child = Command::new(binary)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--shards", "1"])
        .args(["--cluster", &nats.url(), "--node-id", &id.to_string()])
        .args(
            ["--node-timeout", "1"]
                .iter()
                .filter(|_| !extra.contains(&"--node-timeout")),
        )
        .args(extra)
        .env_remove("RUST_LOG")
        // Its own data directory: the store in one is locked by the node using it.
        .env(
            "RINGCHAT_DATA_DIR",
            scratch_dir(&format!("data-{id}-{port}")),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn a ringchat node");
    let stderr = child.stderr.take().expect("piped");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    (child, addr, lines_rx)
}

/// Waits for a stderr line of a spawned node that contains `needle`.
fn wait_for_line(lines: &std::sync::mpsc::Receiver<String>, needle: &str) -> String {
    loop {
        let line = lines
            .recv_timeout(HANG)
            .unwrap_or_else(|_| panic!("the node never logged {needle:?}"));
        if line.contains(needle) {
            return line;
        }
    }
}

/// Reads until a line contains `needle`, returning it.
fn line_containing(client: &mut Client, needle: &str) -> String {
    client
        .skip_until(|line| line.contains(needle))
        .pop()
        .expect("skip_until returns the matching line")
}

#[test]
#[cfg_attr(
    not(has_nats_server),
    ignore = "nats-server is not installed (apt-get install nats-server)"
)]
fn clients_on_two_nodes_chat_in_a_channel_and_privately() {
    chat_across_nodes(IoMode::Epoll, IoMode::Epoll);
}

#[test]
#[cfg_attr(
    not(has_nats_server),
    ignore = "nats-server is not installed (apt-get install nats-server)"
)]
fn nodes_on_the_io_uring_drivers_chat_with_each_other() {
    chat_across_nodes(IoMode::Ring, IoMode::Uring);
}

/// Two nodes on drivers `a` and `b`: a channel and private messages both ways, and
/// each node's replica answering queries alike.
fn chat_across_nodes(a: IoMode, b: IoMode) {
    let nats = Nats::start();
    let zero = node_on(a, &nats, 0, |_| {});
    let one = node_on(b, &nats, 1, |_| {});
    let mut alice = zero.register("alice");
    let mut bob = one.register("bob");
    alice.send("JOIN #c");
    line_containing(&mut alice, " 366 ");
    bob.send("JOIN #c");
    line_containing(&mut bob, " 366 ");
    assert!(line_containing(&mut alice, "JOIN").starts_with(":bob!"));

    alice.send("PRIVMSG #c :hello from node 0");
    assert!(line_containing(&mut bob, "PRIVMSG #c").ends_with(":hello from node 0"));
    bob.send("PRIVMSG #c :and back from node 1");
    assert!(line_containing(&mut alice, "PRIVMSG #c").ends_with(":and back from node 1"));
    bob.send("PRIVMSG alice :psst");
    assert!(line_containing(&mut alice, "PRIVMSG alice").ends_with(":psst"));
    alice.send("PRIVMSG bob :yes?");
    assert!(line_containing(&mut bob, "PRIVMSG bob").ends_with(":yes?"));

    // Queries are answered from each node's own replica, and both agree.
    for client in [&mut alice, &mut bob] {
        client.send("NAMES #c");
        let names = line_containing(client, " 353 ");
        assert!(names.contains("@alice") && names.contains("bob"), "{names}");
        client.send("WHOIS bob");
        line_containing(client, " 311 ");
    }
    // The figures refresh about four times per node timeout (1 s here).
    let deadline = Instant::now() + HANG;
    let stats = loop {
        bob.send("STATS C");
        let stats = line_containing(&mut bob, "cluster node=1");
        if stats.contains("nodes_alive=2") || Instant::now() > deadline {
            break stats;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(stats.contains("connected=true nodes_alive=2"), "{stats}");
    assert!(
        !stats.contains("messages_in=0 "),
        "alice's messages crossed: {stats}"
    );
}

#[test]
#[cfg_attr(
    not(has_nats_server),
    ignore = "nats-server is not installed (apt-get install nats-server)"
)]
fn a_channel_spread_over_three_nodes_reaches_every_member_once() {
    let nats = Nats::start();
    let nodes = [node(&nats, 0), node(&nats, 1), node(&nats, 2)];
    let mut members: Vec<Client> = (0..6)
        .map(|i| nodes[i % 3].register(&format!("m{i}")))
        .collect();
    for (i, member) in members.iter_mut().enumerate() {
        member.send("JOIN #three");
        let names = line_containing(member, " 353 ");
        let count = names.rsplit(':').next().map(|n| n.split(' ').count());
        assert_eq!(count, Some(i + 1), "{names}");
    }
    for sender in 0..6 {
        members[sender].send(&format!("PRIVMSG #three :from m{sender}"));
        for (i, member) in members.iter_mut().enumerate() {
            if i != sender {
                let got = line_containing(member, "PRIVMSG #three");
                assert!(got.ends_with(&format!(":from m{sender}")), "m{i}: {got}");
            }
        }
    }
    for member in &mut members {
        member.expect_nothing();
    }
}

#[test]
#[cfg_attr(
    not(has_nats_server),
    ignore = "nats-server is not installed (apt-get install nats-server)"
)]
fn per_sender_order_holds_across_nodes_join_then_message_then_part() {
    let nats = Nats::start();
    let (zero, one) = (node(&nats, 0), node(&nats, 1));
    let mut watcher = one.register("watcher");
    watcher.send("JOIN #order");
    line_containing(&mut watcher, " 366 ");
    let mut talker = zero.register("talker");
    for round in 0..20 {
        talker.send("JOIN #order");
        talker.send(&format!("PRIVMSG #order :round {round}"));
        talker.send("PART #order");
        let join = line_containing(&mut watcher, "#order");
        assert!(join.contains(" JOIN "), "round {round}: {join}");
        let message = line_containing(&mut watcher, "#order");
        assert!(
            message.ends_with(&format!(":round {round}")),
            "round {round}: {message}"
        );
        let part = line_containing(&mut watcher, "#order");
        assert!(part.contains(" PART "), "round {round}: {part}");
    }
}

#[test]
#[cfg_attr(
    not(has_nats_server),
    ignore = "nats-server is not installed (apt-get install nats-server)"
)]
fn racing_nick_claims_on_two_nodes_let_exactly_one_win() {
    let nats = Nats::start();
    let (zero, one) = (node(&nats, 0), node(&nats, 1));
    for round in 0..10 {
        let nick = format!("racer{round}");
        let mut a = zero.connect();
        let mut b = one.connect();
        a.send(&format!("NICK {nick}\r\nUSER a 0 * :a"));
        b.send(&format!("NICK {nick}\r\nUSER b 0 * :b"));
        let outcome = |client: &mut Client| {
            let last = client
                .skip_until(|line| has_numeric(line, "001") || has_numeric(line, "433"))
                .pop()
                .expect("a reply");
            has_numeric(&last, "001")
        };
        let (a_won, b_won) = (outcome(&mut a), outcome(&mut b));
        assert!(
            a_won != b_won,
            "round {round}: exactly one wins ({a_won}, {b_won})"
        );
    }
}

#[test]
#[cfg_attr(
    not(has_nats_server),
    ignore = "nats-server is not installed (apt-get install nats-server)"
)]
fn channel_modes_and_kick_apply_across_nodes() {
    let nats = Nats::start();
    let (zero, one) = (node(&nats, 0), node(&nats, 1));
    let mut op = zero.register("op");
    op.send("JOIN #ops");
    line_containing(&mut op, " 366 ");
    let mut guest = one.register("guest");
    guest.send("JOIN #ops");
    line_containing(&mut guest, " 366 ");
    line_containing(&mut op, "JOIN");

    op.send("MODE #ops +m");
    assert!(line_containing(&mut guest, "MODE #ops").ends_with("+m"));
    guest.send("PRIVMSG #ops :can anyone hear me");
    line_containing(&mut guest, " 404 ");

    op.send("KICK #ops guest :bye");
    assert!(line_containing(&mut guest, "KICK #ops guest").ends_with(":bye"));
    op.send("MODE #ops +k sesame");
    line_containing(&mut op, "MODE #ops +k");
    guest.send("JOIN #ops");
    line_containing(&mut guest, " 475 ");
    guest.send("JOIN #ops sesame");
    line_containing(&mut guest, " 366 ");
    assert!(line_containing(&mut op, "JOIN").starts_with(":guest!"));
}

#[test]
#[cfg_attr(
    not(has_nats_server),
    ignore = "nats-server is not installed (apt-get install nats-server)"
)]
fn a_node_killed_with_sigkill_quits_its_users_on_the_others() {
    let nats = Nats::start();
    let zero = node_keeping_history(&nats, 0, "node-lost");
    let metrics_port = free_port();
    let metrics = format!("127.0.0.1:{metrics_port}");
    let (mut child, addr, stderr) = spawn_node(&nats, 1, &["--metrics", &metrics]);
    wait_for_line(&stderr, "ringchat started");
    let mut doomed = Client::register(Client::connect(addr), "doomed");
    doomed.send("JOIN #c");
    line_containing(&mut doomed, " 366 ");
    let mut survivor = common::register_with_caps(
        &zero,
        "survivor",
        "batch draft/chathistory draft/event-playback message-tags server-time",
    );
    survivor.send("JOIN #c");
    line_containing(&mut survivor, " 366 ");

    let (status, metrics) = http_get(SocketAddr::from(([127, 0, 0, 1], metrics_port)), "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        metrics.contains("ringchat_cluster_connected{node=\"1\"} 1"),
        "{metrics}"
    );
    let parsed = prometheus_parse::Scrape::parse(metrics.lines().map(|l| Ok(l.to_owned())));
    assert!(parsed.is_ok(), "valid Prometheus text");

    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let quit = line_containing(&mut survivor, "QUIT");
    let untagged = quit.split_once(" :").map_or("", |(_, rest)| rest);
    assert!(untagged.starts_with("doomed!"), "{quit}");
    assert!(quit.contains("Node lost"), "{quit}");
    // The lost node's QUIT is in #c's history as the survivor saw it.
    let kept = history(&mut survivor, "CHATHISTORY LATEST #c * 10", "#c");
    assert_eq!(kept.last(), Some(&quit), "{kept:?}");
    survivor.send("NAMES #c");
    let names = line_containing(&mut survivor, " 353 ");
    assert!(!names.contains("doomed"), "{names}");
    survivor.send("NICK doomed");
    assert!(
        line_containing(&mut survivor, "NICK").ends_with(":doomed"),
        "the nick is free again"
    );
}

#[test]
#[cfg_attr(
    not(has_nats_server),
    ignore = "nats-server is not installed (apt-get install nats-server)"
)]
fn a_restarted_node_rejoins_and_serves_the_same_state() {
    let nats = Nats::start();
    let zero = node(&nats, 0);
    let mut one = node(&nats, 1);
    let mut alice = zero.register("alice");
    alice.send("JOIN #keep");
    line_containing(&mut alice, " 366 ");
    alice.send("TOPIC #keep :still here");
    line_containing(&mut alice, "TOPIC #keep");
    let mut bob = one.register("bob");
    bob.send("JOIN #keep");
    line_containing(&mut bob, " 366 ");
    line_containing(&mut alice, "JOIN");

    bob.send("PRIVMSG #keep :before the restart");
    assert!(line_containing(&mut alice, "PRIVMSG #keep").ends_with(":before the restart"));
    one.shutdown();
    let quit = line_containing(&mut alice, "QUIT");
    assert!(
        quit.starts_with(":bob!") && quit.contains("Node shutting down"),
        "{quit}"
    );

    let one = node(&nats, 1);
    let mut carol = one.register("carol");
    carol.send("JOIN #keep");
    let topic = line_containing(&mut carol, " 332 ");
    assert!(topic.ends_with(":still here"), "{topic}");
    let names = line_containing(&mut carol, " 353 ");
    assert!(
        names.contains("@alice") && !names.contains("bob"),
        "{names}"
    );
    // The restarted node numbers its messages afresh; the others take them.
    carol.send("PRIVMSG #keep :hello again");
    assert!(line_containing(&mut alice, "PRIVMSG #keep").ends_with(":hello again"));
    alice.send("PRIVMSG carol :welcome back");
    assert!(line_containing(&mut carol, "PRIVMSG carol").ends_with(":welcome back"));
    carol.send("NICK bob");
    assert!(
        line_containing(&mut carol, "NICK").ends_with(":bob"),
        "bob's nick was released"
    );
}

#[test]
#[cfg_attr(
    not(has_nats_server),
    ignore = "nats-server is not installed (apt-get install nats-server)"
)]
fn a_node_started_later_loads_the_snapshot_and_replays_only_what_follows() {
    let nats = Nats::start();
    let snapshot_often = |config: &mut ringchat::config::Config| {
        if let Some(cluster) = config.cluster.as_mut() {
            cluster.snapshot_every = 5;
        }
    };
    let zero = node_with(&nats, 0, snapshot_often);
    let mut alice = zero.register("alice");
    for i in 0..12 {
        alice.send(&format!("JOIN #room{i}"));
        line_containing(&mut alice, " 366 ");
    }
    alice.send("TOPIC #room3 :from before the snapshot");
    line_containing(&mut alice, "TOPIC #room3");
    // A snapshot is written in the background; give it a moment to land.
    std::thread::sleep(Duration::from_millis(500));

    let late = node_with(&nats, 1, snapshot_often);
    let mut bob = late.register("bob");
    bob.send("JOIN #room3");
    assert!(line_containing(&mut bob, " 332 ").ends_with(":from before the snapshot"));
    let names = line_containing(&mut bob, " 353 ");
    assert!(names.contains("@alice"), "{names}");
    bob.send("STATS C");
    let stats = line_containing(&mut bob, "cluster node=1");
    let field = |name: &str| -> u64 {
        stats
            .split_whitespace()
            .find_map(|word| word.strip_prefix(&format!("{name}=")))
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {stats}"))
    };
    assert!(
        field("events_in") < field("applied"),
        "the late node replayed fewer events than the log holds: {stats}"
    );
}

#[test]
#[cfg_attr(
    not(has_nats_server),
    ignore = "nats-server is not installed (apt-get install nats-server)"
)]
fn a_node_that_loses_nats_refuses_changes_and_catches_up_when_it_is_back() {
    let mut nats = Nats::start();
    let zero = node(&nats, 0);
    let mut alice = zero.register("alice");
    alice.send("JOIN #before");
    line_containing(&mut alice, " 366 ");

    let (port, store) = (nats.port, nats.store.clone());
    nats.stop();
    // Sent as NATS goes, before the node has said anything: refused, never stuck
    // waiting for an acknowledgement that cannot come (or, if it left just before
    // the connection, joined). Either way the loss is announced.
    alice.send("JOIN #meanwhile");
    let lines = alice.skip_until(|l| l.contains("lost its cluster connection"));
    let settled = |lines: &[String]| {
        lines
            .iter()
            .any(|l| l.contains("Cannot do that now") || l.contains(" 366 "))
    };
    if !settled(&lines) {
        let more = alice.skip_until(|l| l.contains("Cannot do that now") || l.contains(" 366 "));
        assert!(settled(&more));
    }
    alice.send("JOIN #during");
    line_containing(&mut alice, "Cannot do that now");

    let _nats = Nats::start_on(port, store);
    line_containing(&mut alice, "cluster connection is back");
    alice.send("JOIN #after");
    line_containing(&mut alice, " 366 ");
    alice.send("PRIVMSG #before :still a member");
    alice.expect_nothing();
}

#[test]
#[cfg_attr(
    not(has_nats_server),
    ignore = "nats-server is not installed (apt-get install nats-server)"
)]
fn nodes_reach_nats_over_tls_and_refuse_a_server_they_cannot_verify() {
    let pki = common::tls::TestPki::new();
    let nats = Nats::start_tls(&pki);
    let ca = pki.dir().join("nats-ca.pem");
    std::fs::write(&ca, pki.authority_pem()).expect("write the CA");
    let over_tls = |node: u16, ca: PathBuf| {
        move |config: &mut ringchat::config::Config| {
            if let Some(cluster) = config.cluster.as_mut() {
                cluster.servers = vec![format!("tls://localhost:{}", nats.port)];
                cluster.ca = Some(ca);
                cluster.node = node;
            }
        }
    };
    let zero = node_with(&nats, 0, over_tls(0, ca.clone()));
    let one = node_with(&nats, 1, over_tls(1, ca.clone()));
    let mut alice = zero.register("alice");
    let mut bob = one.register("bob");
    bob.send("PRIVMSG alice :over TLS");
    assert!(line_containing(&mut alice, "PRIVMSG alice").ends_with(":over TLS"));

    let stranger = common::tls::TestPki::new();
    let wrong_ca = stranger.dir().join("other-ca.pem");
    std::fs::write(&wrong_ca, stranger.authority_pem()).expect("write the other CA");
    let mut config = Setup {
        io: IoMode::Epoll,
        shards: 1,
    }
    .config();
    config.cluster = Some(cluster(&nats, 2));
    over_tls(2, wrong_ca)(&mut config);
    let refused = ringchat::Server::start(config)
        .err()
        .expect("an unverifiable NATS server is refused");
    assert!(
        refused.to_string().contains("cannot reach the cluster"),
        "{refused:#}"
    );
}

#[test]
fn a_node_whose_nats_server_is_unreachable_refuses_to_start_with_one_line() {
    let unreachable = format!("nats://127.0.0.1:{}", free_port());
    let mut config = Setup {
        io: IoMode::Epoll,
        shards: 1,
    }
    .config();
    config.cluster = Some(ClusterConfig {
        servers: vec![unreachable.clone()],
        node: 0,
        pick_node_id: false,
        credentials: None,
        ca: None,
        node_timeout: Duration::from_secs(1),
        snapshot_every: 10,
    });
    let refused = ringchat::Server::start(config)
        .err()
        .expect("no NATS server, no node");
    let message = refused.to_string();
    assert!(
        message.contains("cannot reach the cluster") && message.contains(&unreachable),
        "{message}"
    );
    assert!(!message.contains('\n'), "one line: {message}");
}

#[test]
#[cfg_attr(
    not(has_nats_server),
    ignore = "nats-server is not installed (apt-get install nats-server)"
)]
fn a_second_node_with_a_live_nodes_id_exits_at_start_and_the_first_keeps_serving() {
    let nats = Nats::start();
    let zero = node(&nats, 0);
    let mut alice = zero.register("alice");
    alice.send("JOIN #c");
    line_containing(&mut alice, " 366 ");

    let (mut twin, _, stderr) = spawn_node(&nats, 0, &[]);
    // The refusal comes within one renewal of the holder's lease (a quarter of its
    // node timeout); 15 s bounds the wait, as the promise says.
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = twin.try_wait().expect("wait for the twin") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "a node with a live node's id still runs after 15 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "{status}");
    let refusal = wait_for_line(&stderr, "--node-id 0");
    assert!(
        refusal.contains("in use by a running node")
            && refusal.contains(&format!("pid {}", std::process::id())),
        "names the id and the other node: {refusal}"
    );

    let mut bob = zero.register("bob");
    bob.send("JOIN #c");
    line_containing(&mut bob, " 366 ");
    line_containing(&mut alice, ":bob!");
    bob.send("PRIVMSG #c :still one network");
    assert!(line_containing(&mut alice, "PRIVMSG #c").ends_with(":still one network"));
}

#[test]
#[cfg_attr(
    not(has_nats_server),
    ignore = "nats-server is not installed (apt-get install nats-server)"
)]
fn an_id_freed_by_a_killed_node_is_taken_over_after_the_node_timeout() {
    let nats = Nats::start();
    let zero = node(&nats, 0);
    let (mut killed, addr, stderr) = spawn_node(&nats, 1, &[]);
    wait_for_line(&stderr, "ringchat started");
    let mut doomed = Client::register(Client::connect(addr), "doomed");
    doomed.send("PING :barrier");
    line_containing(&mut doomed, "barrier");
    killed.kill().expect("SIGKILL");
    let _ = killed.wait();

    // Its lease is never given back: the new node waits one node timeout without a
    // renewal, then takes it over.
    let one = node(&nats, 1);
    let mut carol = one.register("carol");
    carol.send("JOIN #c");
    line_containing(&mut carol, " 366 ");
    let mut alice = zero.register("alice");
    alice.send("JOIN #c");
    line_containing(&mut alice, " 366 ");
    line_containing(&mut carol, ":alice!");
    carol.send("PRIVMSG #c :id 1 again");
    assert!(line_containing(&mut alice, "PRIVMSG #c").ends_with(":id 1 again"));
}

#[test]
#[cfg_attr(
    not(has_nats_server),
    ignore = "nats-server is not installed (apt-get install nats-server)"
)]
fn nodes_started_without_an_id_take_the_lowest_free_ones_and_chat() {
    let nats = Nats::start();
    let without_id = |config: &mut ringchat::config::Config| {
        if let Some(cluster) = config.cluster.as_mut() {
            cluster.pick_node_id = true;
        }
    };
    let first = node_with(&nats, 0, without_id);
    let second = node_with(&nats, 0, without_id);
    let mut alice = first.register("alice");
    let mut bob = second.register("bob");
    alice.send("STATS C");
    assert!(line_containing(&mut alice, " 249 ").contains("cluster node=0 "));
    bob.send("STATS C");
    assert!(line_containing(&mut bob, " 249 ").contains("cluster node=1 "));
    alice.send("JOIN #c");
    line_containing(&mut alice, " 366 ");
    bob.send("JOIN #c");
    line_containing(&mut bob, " 366 ");
    line_containing(&mut alice, ":bob!");
    bob.send("PRIVMSG #c :two nodes, two ids");
    assert!(line_containing(&mut alice, "PRIVMSG #c").ends_with(":two nodes, two ids"));
}

#[test]
#[cfg_attr(
    not(has_nats_server),
    ignore = "nats-server is not installed (apt-get install nats-server)"
)]
fn each_node_has_its_own_name_and_lusers_tells_local_from_global() {
    let nats = Nats::start();
    let zero = node(&nats, 0);
    let one = node(&nats, 1);
    let mut alice = zero.register("alice");
    let _bob = one.register("bob");
    alice.send("PING :names");
    assert_eq!(
        line_containing(&mut alice, "PONG"),
        ":node0.ringchat.local PONG node0.ringchat.local :names"
    );
    // Node 1's name arrives with its heartbeats, a few a second.
    let deadline = Instant::now() + HANG;
    let whois = loop {
        alice.send("WHOIS bob");
        let whois = line_containing(&mut alice, " 312 ");
        line_containing(&mut alice, " 318 ");
        if whois.contains("node1.") || Instant::now() > deadline {
            break whois;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        whois.starts_with(":node0.ringchat.local 312 alice bob node1.ringchat.local :"),
        "{whois}"
    );
    // The count of live nodes refreshes about four times per node timeout.
    let lusers = loop {
        alice.send("LUSERS");
        let lusers = alice.skip_until(|l| l.contains(" 266 "));
        if lusers.iter().any(|l| l.ends_with("on 2 servers")) || Instant::now() > deadline {
            break lusers;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let numeric = |code: &str| {
        lusers
            .iter()
            .find(|l| l.contains(&format!(" {code} ")))
            .cloned()
            .unwrap_or_default()
    };
    assert!(
        numeric("251").ends_with("There are 2 users and 0 invisible on 2 servers"),
        "{lusers:?}"
    );
    assert!(
        numeric("255").ends_with("I have 1 clients and 1 servers"),
        "{lusers:?}"
    );
    assert!(numeric("265").contains(" 265 alice 1 1 :"), "{lusers:?}");
    assert!(numeric("266").contains(" 266 alice 2 2 :"), "{lusers:?}");
}

#[test]
#[cfg_attr(
    not(has_nats_server),
    ignore = "nats-server is not installed (apt-get install nats-server)"
)]
fn a_clean_restart_logs_no_warning() {
    let nats = Nats::start();
    let zero = node(&nats, 0);
    let mut alice = zero.register("alice");
    alice.send("JOIN #c");
    line_containing(&mut alice, " 366 ");
    let (mut one, addr, lines) = spawn_node(&nats, 1, &[]);
    wait_for_line(&lines, "ringchat started");
    let mut bob = Client::register(Client::connect(addr), "bob");
    bob.send("JOIN #c");
    line_containing(&mut bob, " 366 ");
    line_containing(&mut alice, "JOIN");
    // Messages to node 1, then an event that counts them: what a restarted node 1
    // replays, and must not wait for (they went to its previous run).
    alice.send("PRIVMSG #c :to node one");
    line_containing(&mut bob, "PRIVMSG #c");
    alice.send("TOPIC #c :counted");
    line_containing(&mut bob, "TOPIC #c");
    // SAFETY: signalling our own child process.
    unsafe {
        libc::kill(one.id() as libc::pid_t, libc::SIGTERM);
    }
    assert!(one.wait().expect("node 1 exits").success());
    line_containing(&mut alice, "QUIT");
    drop(lines);

    let (mut again, _, lines) = spawn_node(&nats, 1, &[]);
    let mut before_start = Vec::new();
    loop {
        let line = lines.recv_timeout(HANG).expect("node 1 restarts");
        if line.contains("ringchat started") {
            break;
        }
        before_start.push(line);
    }
    let warnings: Vec<&String> = before_start
        .iter()
        .filter(|l| (l.contains(" WARN ") || l.contains(" ERROR ")) && !l.contains("as root"))
        .collect();
    assert!(warnings.is_empty(), "{warnings:?}");
    let _ = again.kill();
    let _ = again.wait();
}

#[test]
#[cfg_attr(
    not(has_nats_server),
    ignore = "nats-server is not installed (apt-get install nats-server)"
)]
fn an_account_is_claimed_once_for_the_whole_cluster_and_logs_in_on_any_node() {
    let nats = Nats::start();
    let (zero, one) = (node(&nats, 0), node(&nats, 1));
    for round in 0..3 {
        let account = format!("acct{round}");
        let mut a = zero.register(&format!("a{round}"));
        let mut b = one.register(&format!("b{round}"));
        a.send(&format!("REGISTER {account} * correct-horse"));
        b.send(&format!("REGISTER {account} * correct-horse"));
        let outcome = |client: &mut Client| {
            let last = client
                .skip_until(|line| {
                    line.contains(" REGISTER SUCCESS ") || line.contains("FAIL REGISTER")
                })
                .pop()
                .expect("a reply");
            last.contains(" REGISTER SUCCESS ")
        };
        let (a_won, b_won) = (outcome(&mut a), outcome(&mut b));
        assert!(
            a_won != b_won,
            "round {round}: exactly one registers ({a_won}, {b_won})"
        );
    }
    // acct0 was registered on one node; it logs in on the other with IDENTIFY, and a
    // user on the first sees the account in WHOIS.
    let mut traveller = one.register("traveller");
    traveller.send("NS IDENTIFY acct0 correct-horse");
    line_containing(&mut traveller, " 900 ");
    let mut observer = zero.register("observer");
    observer.send("WHOIS traveller");
    let whois = observer.skip_until(|line| has_numeric(line, "318"));
    assert!(
        whois
            .iter()
            .any(|line| line.ends_with(" 330 observer traveller acct0 :is logged in as")),
        "{whois:?}"
    );
}

/// Node `number` keeping history in a data directory of its own.
fn node_keeping_history(nats: &Nats, number: u16, test: &str) -> TestServer {
    let dir = common::data_dir(&format!("{test}-node{number}"));
    node_with(nats, number, |config| config.data_dir = Some(dir))
}

#[test]
#[cfg_attr(
    not(has_nats_server),
    ignore = "nats-server is not installed (apt-get install nats-server)"
)]
fn every_node_keeps_every_channel_message_and_the_direct_messages_to_its_users() {
    const CAPS: &str = "batch draft/chathistory echo-message message-tags server-time";
    let nats = Nats::start();
    let zero = node_keeping_history(&nats, 0, "cluster-history");
    let one = node_keeping_history(&nats, 1, "cluster-history");
    let mut alice = register_with_caps(&zero, "alice", CAPS);
    let mut bob = register_with_caps(&one, "bob", CAPS);
    for client in [&mut alice, &mut bob] {
        client.send("REGISTER * * correct-horse-battery");
        client.skip_until(|line| has_numeric(line, "900"));
    }
    // Node 0 has heard from node 1 once it knows bob's account.
    let deadline = Instant::now() + HANG;
    loop {
        alice.send("WHOIS bob");
        let whois = alice.skip_until(|line| has_numeric(line, "318"));
        if whois.iter().any(|line| has_numeric(line, "330")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 0 never learned bob's account"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // Only alice is in #c: node 1 has no member, and keeps what she says anyway.
    alice.send("JOIN #c");
    line_containing(&mut alice, " 366 ");
    alice.send("@+typing=active TAGMSG #c");
    let typing = line_containing(&mut alice, "TAGMSG #c");
    let mut said = send_messages(&mut alice, "#c", 3);
    alice.send("PRIVMSG bob :psst");
    line_containing(&mut alice, "PRIVMSG bob");
    let whispered = line_containing(&mut bob, "PRIVMSG bob");
    // The cost: one cross-node message per channel message for a node without
    // members (and one for the direct message, as always).
    alice.send("STATS C");
    let stats = line_containing(&mut alice, "cluster node=0");
    assert!(
        stats.contains(" messages_out=5 "),
        "four to #c, one to bob: {stats}"
    );

    bob.send("JOIN #c");
    line_containing(&mut bob, " 366 ");
    line_containing(&mut alice, "JOIN #c");
    assert_eq!(
        history(&mut bob, "CHATHISTORY LATEST #c * 10", "#c"),
        said,
        "node 1 has node 0's messages, same msgid and time"
    );
    assert_eq!(
        history(&mut bob, "CHATHISTORY LATEST alice * 10", "alice"),
        [whispered],
        "the recipient's node keeps the conversation"
    );
    // The TAGMSG is there too, kept as one: replayed only with event-playback.
    let mut carol = register_with_caps(&one, "carol", &format!("{CAPS} draft/event-playback"));
    carol.send("JOIN #c");
    line_containing(&mut carol, " 366 ");
    assert!(line_containing(&mut bob, "JOIN #c").contains(":carol!"));
    let replayed = history(&mut carol, "CHATHISTORY LATEST #c * 10", "#c");
    let talk: Vec<&String> = replayed
        .iter()
        .filter(|l| !l.contains(" JOIN #c"))
        .collect();
    assert_eq!(talk, [&typing, &said[0], &said[1], &said[2]]);

    // Now both nodes have members: each keeps each message once.
    said.extend(send_messages(&mut bob, "#c", 1));
    let from_bob = line_containing(&mut alice, "PRIVMSG #c");
    assert_eq!(from_bob, said[3], "both see one message alike");
    for client in [&mut alice, &mut bob] {
        assert_eq!(history(client, "CHATHISTORY LATEST #c * 10", "#c"), said);
    }
}

/// alice on the node at `addr` and bob on `one`, both in `channel`, alice having
/// seen bob join.
fn alice_and_bob_in(addr: SocketAddr, one: &TestServer, channel: &str) -> (Client, Client) {
    let mut alice = Client::register(Client::connect(addr), "alice");
    alice.send(&format!("JOIN {channel}"));
    line_containing(&mut alice, " 366 ");
    let mut bob = one.register("bob");
    bob.send(&format!("JOIN {channel}"));
    line_containing(&mut bob, " 366 ");
    line_containing(&mut alice, ":bob!");
    (alice, bob)
}

/// The pid in the old process's log line saying the new one took over.
fn successor_pid(line: &str) -> libc::pid_t {
    line.split("pid=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"))
}

#[test]
#[cfg_attr(
    not(has_nats_server),
    ignore = "nats-server is not installed (apt-get install nats-server)"
)]
fn a_node_upgrades_live_and_the_other_node_sees_nothing_change() {
    let nats = Nats::start();
    // A node declares another lost after its timeout without a heartbeat; 5 s
    // keeps a slow machine's upgrade from passing for a death.
    let one = node_with(&nats, 1, |config| {
        config.flood_rate = 0.0;
        if let Some(cluster) = config.cluster.as_mut() {
            cluster.node_timeout = Duration::from_secs(5);
        }
    });
    let (mut zero, addr, logs) =
        spawn_node(&nats, 0, &["--flood-rate", "0", "--node-timeout", "5"]);
    wait_for_line(&logs, "ringchat started");
    let (mut alice, mut bob) = alice_and_bob_in(addr, &one, "#up");

    // Both talk at a steady rate, each way across the nodes, while node 0 upgrades,
    // and on for a while after the new process has taken over: every few
    // milliseconds, so lines cross at each step of the handover.
    let mut successor = None;
    let mut sent = 0;
    let mut after_takeover = 0;
    while after_takeover < 40 {
        alice.send(&format!("PRIVMSG #up :from alice {sent}"));
        bob.send(&format!("PRIVMSG alice :from bob {sent}"));
        sent += 1;
        if sent == 20 {
            // SAFETY: signalling the node this test started.
            unsafe { libc::kill(zero.id() as libc::pid_t, libc::SIGUSR2) };
        }
        if successor.is_none() {
            while let Ok(line) = logs.try_recv() {
                if line.contains("the new process took over") {
                    successor = Some(successor_pid(&line));
                }
            }
        } else {
            after_takeover += 1;
        }
        assert!(sent < 5_000, "node 0 never upgraded");
        std::thread::sleep(Duration::from_millis(4));
    }
    let successor = successor.expect("the upgrade's outcome was read");
    let numbers = |client: &mut Client, prefix: &str| -> Vec<u32> {
        let mut seen = Vec::new();
        while seen.len() < sent as usize {
            let line = client.line();
            assert!(!line.contains(" QUIT "), "{prefix}: {line}");
            if let Some(number) = line.split(prefix).nth(1) {
                seen.push(number.trim().parse().expect("a number"));
            }
        }
        seen
    };
    assert_eq!(
        numbers(&mut bob, ":from alice "),
        (0..sent).collect::<Vec<_>>()
    );
    assert_eq!(
        numbers(&mut alice, ":from bob "),
        (0..sent).collect::<Vec<_>>()
    );

    // Still one network, with node 0 under the same id and run: a newcomer there
    // sees bob, and a change ordered through the stream reaches both nodes.
    let mut carol = Client::register(Client::connect(addr), "carol");
    carol.send("JOIN #up");
    line_containing(&mut carol, " 366 ");
    line_containing(&mut bob, ":carol!");
    bob.send("NICK robert");
    line_containing(&mut bob, "NICK");
    assert!(line_containing(&mut alice, ":bob!").ends_with("NICK :robert"));
    alice.send("PRIVMSG robert :found you");
    assert!(line_containing(&mut bob, "PRIVMSG robert").ends_with(":found you"));
    alice.expect_nothing();
    bob.expect_nothing();
    // SAFETY: the upgraded node, started by the one this test started.
    unsafe { libc::kill(successor, libc::SIGKILL) };
    let _ = zero.kill();
    let _ = zero.wait();
}

#[test]
#[cfg_attr(
    not(has_nats_server),
    ignore = "nats-server is not installed (apt-get install nats-server)"
)]
fn a_node_whose_upgrade_is_refused_after_the_freeze_serves_on_in_the_cluster() {
    let nats = Nats::start();
    let one = node(&nats, 1);
    let binary = common::own_binary("cluster-refused");
    let (mut zero, addr, logs) = spawn_node_from(&binary, &nats, 0, &[]);
    wait_for_line(&logs, "ringchat started");
    let (mut alice, mut bob) = alice_and_bob_in(addr, &one, "#c");

    // The new build comes up as another node id: it says hello, the old process
    // freezes (its link sealed), and the new one refuses what it is handed.
    common::install_script(
        &binary,
        &format!(
            "#!/bin/sh\nexec {} $(echo \"$@\" | sed 's/--node-id 0/--node-id 7/')\n",
            env!("CARGO_BIN_EXE_ringchat")
        ),
    );
    // SAFETY: signalling the node this test started.
    unsafe { libc::kill(zero.id() as libc::pid_t, libc::SIGUSR2) };
    let failed = wait_for_line(&logs, "upgrade failed, serving on");
    assert!(failed.contains("ran as node 0"), "{failed}");

    // The old process thawed, its link too: messages and ordered changes flow
    // both ways again.
    alice.send("PRIVMSG #c :still here");
    assert!(line_containing(&mut bob, "PRIVMSG #c").ends_with(":still here"));
    bob.send("NICK robert");
    assert!(line_containing(&mut alice, ":bob!").ends_with("NICK :robert"));
    bob.send("PRIVMSG alice :welcome back");
    assert!(line_containing(&mut alice, "PRIVMSG alice").ends_with(":welcome back"));
    alice.send("NICK alicia");
    assert!(line_containing(&mut bob, ":alice!").ends_with("NICK :alicia"));
    let _ = zero.kill();
    let _ = zero.wait();
}
