//! Live upgrade, on the real binary: `SIGUSR2` hands every plaintext connection to
//! the binary at the server's path, on every driver with one and two shards; two
//! clients chatting through it get every line once, in order, on the same sockets;
//! a line sent half before and half after arrives whole; an upgrade whose new binary
//! fails, or reads another handover format, leaves the old server serving.

mod common;

use common::{free_port, has_numeric, install_script, own_binary, Client};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// A ringchat started from `binary`; its stderr (and that of the process an upgrade
/// starts, which inherits it) arrives on a channel. Every process it became is
/// killed when dropped.
struct Running {
    child: Child,
    logs: Receiver<String>,
    seen: Vec<String>,
    /// Processes that took over by upgrades (grandchildren: killed by pid).
    successors: Vec<libc::pid_t>,
}

impl Running {
    fn start(binary: &Path, addr: SocketAddr, args: &[&str]) -> Running {
        Running::start_with(binary, addr, args, |_| {})
    }

    /// [`Running::start`], with the command adjusted first (its environment).
    fn start_with(
        binary: &Path,
        addr: SocketAddr,
        args: &[&str],
        adjust: impl FnOnce(&mut Command),
    ) -> Running {
        let data = std::env::temp_dir().join(format!(
            "ringchat-upgrade-data-{}-{}",
            std::process::id(),
            addr.port()
        ));
        let mut command = Command::new(binary);
        adjust(&mut command);
        let mut child = command
            .args(["--listen", &addr.to_string(), "--flood-rate", "0"])
            .args(args)
            .env_remove("RUST_LOG")
            .env("RINGCHAT_DATA_DIR", data)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ringchat");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, logs) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + common::HANG;
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "ringchat never listened on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Running {
            child,
            logs,
            seen: Vec::new(),
            successors: Vec::new(),
        }
    }

    /// Reads log lines until one contains `text`; returns it.
    fn log_containing(&mut self, text: &str) -> String {
        let deadline = Instant::now() + common::HANG;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.logs.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(error) => panic!(
                    "no log line with {text:?} ({error}; first process: {:?}); saw {:#?}",
                    self.child.try_wait(),
                    self.seen
                ),
            }
        }
    }

    /// Sends SIGUSR2 to the process serving now.
    fn upgrade(&mut self) {
        let pid = self
            .successors
            .last()
            .copied()
            .unwrap_or(self.child.id() as libc::pid_t);
        // SAFETY: signalling a process this test started.
        unsafe { libc::kill(pid, libc::SIGUSR2) };
    }

    /// Waits for the upgrade's outcome in the log: the new process's pid.
    fn took_over(&mut self) -> libc::pid_t {
        let line = self.log_containing("the new process took over");
        let pid = line
            .split("pid=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|pid| pid.parse().ok())
            .unwrap_or_else(|| panic!("no pid in {line:?}"));
        self.successors.push(pid);
        self.log_containing("serving every handed-over connection");
        pid
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for &pid in &self.successors {
            // SAFETY: a process this test's server started for it.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn register(addr: SocketAddr, nick: &str) -> Client {
    Client::register(Client::connect(addr), nick)
}

fn join(client: &mut Client, channel: &str) {
    client.send(&format!("JOIN {channel}"));
    client.skip_until(|line| has_numeric(line, "366"));
}

/// Alice sends `count` numbered lines to #up at a steady rate; the server is
/// upgraded after the first half, and bob sends a line split around the signal.
/// Bob must read every numbered line once, in order, and the split line whole, on
/// the sockets they had; afterwards the channel and both users are as before.
fn chat_through_an_upgrade(io: &str, shards: &str) {
    let addr = free_port();
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_ringchat"));
    let mut server = Running::start(&binary, addr, &["--io", io, "--shards", shards]);
    let mut alice = register(addr, "alice");
    let mut bob = register(addr, "bob");
    join(&mut alice, "#up");
    join(&mut bob, "#up");
    alice.skip_until(|line| line.contains("JOIN #up") && line.starts_with(":bob!"));
    let count = 60;
    for n in 0..count {
        if n == count / 2 {
            bob.send_raw(b"PRIVMSG #up :half before, ");
            server.upgrade();
        }
        if n == count / 2 + 5 {
            server.took_over();
            bob.send_raw(b"half after\r\n");
        }
        alice.send(&format!("PRIVMSG #up :line {n}"));
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut seen = Vec::new();
    bob.skip_until(|line| {
        if let Some((_, n)) = line.split_once("PRIVMSG #up :line ") {
            seen.push(n.parse::<usize>().expect("a number"));
        }
        seen.len() == count
    });
    assert_eq!(
        seen,
        (0..count).collect::<Vec<_>>(),
        "{io} {shards}: every line once, in order"
    );
    alice.skip_until(|line| line.ends_with("PRIVMSG #up :half before, half after"));
    alice.send("NAMES #up");
    let names = alice.skip_until(|line| has_numeric(line, "366"));
    let names = names
        .iter()
        .find(|line| has_numeric(line, "353"))
        .expect("353");
    assert!(names.contains("@alice") && names.contains("bob"), "{names}");
    bob.send("WHOIS alice");
    let whois = bob.skip_until(|line| has_numeric(line, "318"));
    assert!(
        whois
            .iter()
            .any(|line| has_numeric(line, "319") && line.contains("@#up")),
        "{whois:#?}"
    );
    // A newcomer is accepted on the handed-over listener and meets both.
    let mut carol = register(addr, "carol");
    join(&mut carol, "#up");
    alice.skip_until(|line| line.starts_with(":carol!") && line.contains("JOIN #up"));
    // A second upgrade, from the process the first one started.
    server.upgrade();
    server.took_over();
    carol.send("PRIVMSG #up :after two upgrades");
    bob.skip_until(|line| line.ends_with("PRIVMSG #up :after two upgrades"));
}

#[test]
fn chatting_through_an_upgrade_on_ring_with_one_shard() {
    chat_through_an_upgrade("ring", "1");
}

#[test]
fn chatting_through_an_upgrade_on_ring_with_two_shards() {
    chat_through_an_upgrade("ring", "2");
}

#[test]
fn chatting_through_an_upgrade_on_epoll_with_one_shard() {
    chat_through_an_upgrade("epoll", "1");
}

#[test]
fn chatting_through_an_upgrade_on_epoll_with_two_shards() {
    chat_through_an_upgrade("epoll", "2");
}

#[test]
fn chatting_through_an_upgrade_on_uring_with_one_shard() {
    chat_through_an_upgrade("uring", "1");
}

#[test]
fn chatting_through_an_upgrade_on_uring_with_two_shards() {
    chat_through_an_upgrade("uring", "2");
}

#[test]
fn a_new_binary_that_exits_at_once_leaves_the_old_server_serving() {
    let addr = free_port();
    let binary = own_binary("exits");
    let mut server = Running::start(&binary, addr, &["--io", "ring", "--shards", "2"]);
    let mut alice = register(addr, "alice");
    let mut bob = register(addr, "bob");
    join(&mut alice, "#up");
    join(&mut bob, "#up");
    install_script(&binary, "#!/bin/sh\nexit 3\n");
    bob.send_raw(b"PRIVMSG #up :sent while ");
    server.upgrade();
    let failure = server.log_containing("upgrade failed, serving on");
    assert!(failure.contains("exited before the handover"), "{failure}");
    bob.send_raw(b"it failed\r\n");
    alice.skip_until(|line| line.ends_with("PRIVMSG #up :sent while it failed"));
    alice.send("PRIVMSG #up :still here");
    bob.skip_until(|line| line.ends_with("PRIVMSG #up :still here"));
    assert_eq!(
        server.child.try_wait().expect("status"),
        None,
        "the old server runs"
    );
}

#[test]
fn a_new_binary_of_another_handover_format_is_refused_before_anything_stops() {
    let addr = free_port();
    let binary = own_binary("format");
    let mut server = Running::start(&binary, addr, &["--io", "epoll", "--shards", "1"]);
    let mut alice = register(addr, "alice");
    // The hello of a binary reading format 999 (a little-endian length, then
    // postcard: varint 999 and the version string), then it waits to be told. perl
    // is in every Debian (perl-base is essential); sh can neither write a NUL with
    // printf nor name a descriptor past 9.
    install_script(
        &binary,
        "#!/usr/bin/perl\nopen(my $pair, '+<&=', $ENV{RINGCHAT_HANDOVER_FD}) or die;\nsyswrite($pair, pack('V', 8) . \"\\xe7\\x07\\x059.9.9\");\nsleep 10;\n",
    );
    server.upgrade();
    let failure = server.log_containing("upgrade failed, serving on");
    assert!(
        failure.contains("reads handover format 999") && failure.contains("9.9.9"),
        "{failure}"
    );
    alice.send("PING :alive");
    alice.skip_until(|line| line.ends_with(":alive"));
}

/// `UPGRADE` from an operator: refused to others; the operator hears from the new
/// process that it took over (and which version it was), on the same connection.
#[test]
fn an_operator_upgrades_with_upgrade_and_hears_how_it_went() {
    let addr = free_port();
    let dir = std::env::temp_dir().join(format!("ringchat-upgrade-{}-oper", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let config = dir.join("ringchat.toml");
    let hash = ringchat::opers::hash_password(b"pw").expect("hashing works");
    std::fs::write(
        &config,
        format!("[[oper]]\nname = \"admin\"\npassword = \"{hash}\"\n"),
    )
    .expect("write the config");
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_ringchat"));
    let mut server = Running::start(
        &binary,
        addr,
        &["--config", config.to_str().unwrap(), "--shards", "2"],
    );
    let mut alice = register(addr, "alice");
    let mut bob = register(addr, "bob");
    bob.send("UPGRADE");
    bob.expect_numeric("481");
    alice.send("OPER admin pw");
    alice.expect_numeric("381");
    alice.send("UPGRADE");
    alice.skip_until(|line| line.contains("UPGRADE: starting the binary"));
    server.took_over();
    let done = alice.skip_until(|line| line.contains("UPGRADE done"));
    assert!(
        done.last().unwrap().contains(&format!(
            "now running ringchat {}",
            env!("CARGO_PKG_VERSION")
        )),
        "{done:#?}"
    );
    // Still an operator, in the new process's network state.
    alice.send("WHOIS alice");
    let whois = alice.skip_until(|line| has_numeric(line, "318"));
    assert!(
        whois.iter().any(|line| has_numeric(line, "313")),
        "{whois:#?}"
    );
}

/// Channel history lives in the store, which the old process commits before the
/// handover and the new one opens after it: what was said before an upgrade is
/// there after it, once each, with the same msgid and time.
#[test]
fn history_said_before_an_upgrade_is_kept_through_it() {
    let addr = free_port();
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_ringchat"));
    let mut server = Running::start(&binary, addr, &["--shards", "2"]);
    let caps = "batch draft/chathistory echo-message message-tags server-time";
    let mut alice = common::register_connected_with_caps(Client::connect(addr), "alice", caps);
    join(&mut alice, "#kept");
    let said = common::send_messages(&mut alice, "#kept", 5);
    server.upgrade();
    server.took_over();
    assert_eq!(
        common::history(&mut alice, "CHATHISTORY LATEST #kept * 10", "#kept"),
        said
    );
}

/// Under a service manager the old process says `RELOADING=1`, then names the new
/// one with `MAINPID=`, which says `READY=1` once it serves and keeps the watchdog
/// fed (sd_notify(3), sd_watchdog_enabled(3)).
#[test]
fn under_systemd_the_main_pid_passes_to_the_new_process() {
    let dir = std::env::temp_dir().join(format!("ringchat-upgrade-{}-notify", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join("notify.sock");
    let manager = std::os::unix::net::UnixDatagram::bind(&path).expect("bind the notify socket");
    manager
        .set_read_timeout(Some(common::HANG))
        .expect("timeout");
    let mut received = Vec::new();
    // Each wait has its own deadline: STATUS= updates keep arriving meanwhile.
    let mut expect = |assignment: &str| -> String {
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + common::HANG;
        loop {
            assert!(
                Instant::now() < deadline,
                "no {assignment:?} (got {received:?})"
            );
            let n = manager
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("no {assignment:?} (got {received:?}): {e}"));
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            received.push(message.clone());
            if message.lines().any(|line| line.starts_with(assignment)) {
                return message;
            }
        }
    };
    // As systemd starts it: the watchdog's period, and the process it is meant for
    // (a shell that sets it to its own pid, then becomes ringchat).
    let wrapper = dir.join("ringchat-under-systemd");
    install_script(
        &wrapper,
        &format!(
            "#!/bin/sh\nWATCHDOG_PID=$$ exec {:?} \"$@\"\n",
            env!("CARGO_BIN_EXE_ringchat")
        ),
    );
    let addr = free_port();
    let mut server = Running::start_with(&wrapper, addr, &["--shards", "2"], |command| {
        command
            .env("NOTIFY_SOCKET", &path)
            .env("WATCHDOG_USEC", "400000");
    });
    expect("READY=1");
    expect("WATCHDOG=1");
    let mut alice = register(addr, "alice");
    server.upgrade();
    expect("RELOADING=1");
    let main_pid = expect("MAINPID=");
    let new_pid = server.took_over();
    assert_eq!(main_pid.trim(), format!("MAINPID={new_pid}"));
    let ready = expect("READY=1");
    assert!(
        ready.contains("STATUS=1 connections (per shard: 1 0)")
            || ready.contains("STATUS=1 connections (per shard: 0 1)"),
        "the new process counts alice from its start: {ready:?}"
    );
    // The old process exited before the new one said READY=1: this is the new one's.
    expect("WATCHDOG=1");
    alice.send("PING :still");
    alice.skip_until(|line| line.ends_with(":still"));
}

/// TLS sessions cannot cross (their keys live in the old process, and these
/// kernels have no kernel TLS): a TLS client is told in a NOTICE and closed, its
/// channel sees it quit with the reason, and it reconnects to the new process on
/// the handed-over TLS listener.
#[test]
fn tls_clients_are_told_closed_and_served_again_by_the_new_process() {
    let pki = common::tls::TestPki::new();
    let files = pki.server_files();
    let (addr, tls_addr) = (free_port(), free_port());
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_ringchat"));
    let mut server = Running::start(
        &binary,
        addr,
        &[
            "--shards",
            "2",
            "--tls-listen",
            &tls_addr.to_string(),
            "--tls-cert",
            files.cert.to_str().unwrap(),
            "--tls-key",
            files.key.to_str().unwrap(),
        ],
    );
    let mut plain = register(addr, "plain");
    join(&mut plain, "#up");
    let mut secure = Client::register(Client::connect_tls(tls_addr, pki.client_config()), "secure");
    join(&mut secure, "#up");
    plain.skip_until(|line| line.starts_with(":secure!") && line.contains("JOIN #up"));
    server.upgrade();
    server.took_over();
    let last = secure.expect_closed();
    assert!(
        last.iter()
            .any(|line| line.contains("NOTICE secure :Server upgrading")),
        "{last:#?}"
    );
    assert!(
        last.last().is_some_and(|line| line.starts_with("ERROR")),
        "{last:#?}"
    );
    plain.skip_until(|line| {
        line.starts_with(":secure!") && line.ends_with("QUIT :Server upgrade (reconnect)")
    });
    let mut again = Client::register(Client::connect_tls(tls_addr, pki.client_config()), "secure");
    join(&mut again, "#up");
    plain.skip_until(|line| line.starts_with(":secure!") && line.contains("JOIN #up"));
}
