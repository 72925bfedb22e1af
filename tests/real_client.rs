//! A real IRC client against ringchat: irssi, driven in a private tmux server, joins a
//! channel, chats both ways with a scripted harness client, sees a TOPIC and a MODE,
//! changes nick and parts. What irssi sends is checked on the harness side; what irssi
//! shows is read with `tmux capture-pane`. Every wait is bounded by a deadline.
//!
//! Needs `irssi` and `tmux` on PATH (Debian/Ubuntu: `apt-get install -y irssi tmux`);
//! without them the test fails with a message saying so.
//!
//! Over TLS, `openssl s_client` (Debian package openssl) verifies ringchat's
//! certificate against a test authority, registers and chats.

mod common;

use common::tls::TestPki;
use common::{has_numeric, Setup};
use ringchat::IoMode;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long irssi may take to show something before the test is declared failed.
const DEADLINE: Duration = Duration::from_secs(20);

/// irssi running in its own tmux server (`tmux -L`), with a throwaway home directory.
/// Dropping it kills that tmux server (and irssi with it) and removes the directory.
struct Irssi {
    socket: String,
    home: PathBuf,
}

impl Irssi {
    /// Starts irssi connecting to `127.0.0.1:port` as `nick`.
    fn start(port: u16, nick: &str) -> Irssi {
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let socket = format!("ringchat-test-{}-{n}", std::process::id());
        let home = std::env::temp_dir().join(&socket);
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir_all(&home).expect("create irssi home");
        // No networks, no autoconnects, no scripts: only the connection below.
        std::fs::write(
            home.join("config"),
            "settings = {\n  core = { real_name = \"irssi tester\"; user_name = \"tester\"; };\n};\n",
        )
        .expect("write irssi config");
        let irssi = Irssi { socket, home };
        let command = format!(
            "irssi --home={} --connect=127.0.0.1 --port={port} --nick={nick}",
            irssi.home.display()
        );
        irssi.tmux(&[
            "new-session",
            "-d",
            "-s",
            "irc",
            "-x",
            "160",
            "-y",
            "50",
            &command,
        ]);
        irssi
    }

    fn tmux(&self, args: &[&str]) -> Output {
        let output = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .env("TERM", "xterm")
            .output()
            .expect("run tmux");
        assert!(
            output.status.success(),
            "tmux {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Types `text` into irssi and presses Enter.
    fn type_line(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "irc", "-l", text]);
        self.tmux(&["send-keys", "-t", "irc", "Enter"]);
    }

    /// What irssi's active window shows, scrollback included.
    fn screen(&self) -> String {
        let output = self.tmux(&["capture-pane", "-p", "-J", "-S", "-500", "-t", "irc"]);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Polls the screen until it shows `text`; fails with the screen after DEADLINE.
    fn wait_for(&self, text: &str) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "irssi did not show {text:?} within {DEADLINE:?}; screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Irssi {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// Whether irssi and tmux are on PATH. The build script already marks these tests
/// ignored where they were missing at build time; this catches one removed since.
/// Under CI (`CI` set, where `.ci/run` installs them) a missing tool fails the test.
fn tools_available() -> bool {
    [("irssi", "--version"), ("tmux", "-V")]
        .into_iter()
        .all(|(tool, flag)| tool_available(tool, flag))
}

/// Whether `tool` runs; see [`tools_available`] for what happens when it does not.
fn tool_available(tool: &str, flag: &str) -> bool {
    let found = Command::new(tool)
        .arg(flag)
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        let advice = format!(
            "the real-client test needs `{tool}` on PATH; install it with \
             `apt-get install -y {tool}` (the Debian/Ubuntu package of that name)"
        );
        assert!(std::env::var_os("CI").is_none(), "{advice}");
        eprintln!("SKIPPED: {advice}");
    }
    found
}

/// The conversation, from the harness client `bob`'s side and from irssi's screen.
fn irssi_chats_joins_renames_and_parts(setup: Setup) {
    if !tools_available() {
        return;
    }
    let server = setup.start();
    let mut bob = server.register("bob");
    bob.send("JOIN #ringchat");
    bob.skip_until(|line| has_numeric(line, "366"));

    let irssi = Irssi::start(server.addr.port(), "ircfan");
    irssi.wait_for("Welcome to the ringchat IRC Network ircfan!~tester@127.0.0.1");
    irssi.type_line("/join #ringchat");
    bob.expect(":ircfan!~tester@127.0.0.1 JOIN #ringchat");
    irssi.wait_for("Total of 2 nicks [1 ops, 0 halfops, 0 voices, 1 normal]");

    irssi.type_line("hello from irssi");
    bob.expect(":ircfan!~tester@127.0.0.1 PRIVMSG #ringchat :hello from irssi");
    bob.send("PRIVMSG #ringchat :hello from the harness");
    irssi.wait_for("<@bob> hello from the harness");

    bob.send("TOPIC #ringchat :tested with a real client");
    bob.expect(":bob!~bob@127.0.0.1 TOPIC #ringchat :tested with a real client");
    irssi.wait_for("bob changed the topic of #ringchat to: tested with a real client");
    bob.send("MODE #ringchat +v ircfan");
    bob.expect(":bob!~bob@127.0.0.1 MODE #ringchat +v ircfan");
    irssi.wait_for("mode/#ringchat [+v ircfan] by bob");

    irssi.type_line("/nick ircfan2");
    bob.expect(":ircfan!~tester@127.0.0.1 NICK :ircfan2");
    irssi.wait_for("You're now known as ircfan2");
    irssi.type_line("still me");
    bob.expect(":ircfan2!~tester@127.0.0.1 PRIVMSG #ringchat :still me");

    irssi.type_line("/part #ringchat see you");
    bob.expect(":ircfan2!~tester@127.0.0.1 PART #ringchat :see you");
    bob.expect_nothing();
}

#[test]
#[cfg_attr(
    not(has_irssi_and_tmux),
    ignore = "needs irssi and tmux on PATH: apt-get install -y irssi tmux (.ci/run installs them)"
)]
fn irssi_over_io_uring_with_4_shards() {
    irssi_chats_joins_renames_and_parts(Setup {
        io: IoMode::Uring,
        shards: 4,
    });
}

#[test]
#[cfg_attr(
    not(has_irssi_and_tmux),
    ignore = "needs irssi and tmux on PATH: apt-get install -y irssi tmux (.ci/run installs them)"
)]
fn irssi_over_epoll_with_1_shard() {
    irssi_chats_joins_renames_and_parts(Setup {
        io: IoMode::Epoll,
        shards: 1,
    });
}

/// `openssl s_client` verifies the server certificate against the test authority,
/// registers, joins a channel and chats with a harness client both ways.
fn openssl_registers_and_chats_over_tls(setup: Setup) {
    if !tool_available("openssl", "version") {
        return;
    }
    let pki = TestPki::new();
    let authority = pki.dir().join("ca.pem");
    std::fs::write(&authority, pki.authority_pem()).expect("write the CA certificate");
    let server = setup.start_tls(&pki, |_| {});
    let mut bob = server.register("bob");
    bob.send("JOIN #ringchat");
    bob.skip_until(|line| has_numeric(line, "366"));

    let port = server.tls_addr.expect("a TLS listener").port();
    let mut openssl = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", "localhost", "-verify_hostname", "localhost"])
        .arg("-CAfile")
        .arg(&authority)
        .args(["-verify_return_error", "-quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start openssl s_client");
    let mut input = openssl.stdin.take().expect("openssl stdin");
    let output = BufReader::new(openssl.stdout.take().expect("openssl stdout"));
    let (lines_tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in output.lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let wait_for = |wanted: &str| {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) if line.trim_end() == wanted => return,
                Ok(_) => {}
                Err(_) => panic!("openssl s_client did not show {wanted:?} within {DEADLINE:?}"),
            }
        }
    };
    let mut say = |line: &str| {
        input
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("write to openssl s_client");
    };

    say("NICK tlsfan");
    say("USER tester 0 * :openssl tester");
    wait_for(":ringchat.local 422 tlsfan :MOTD File is missing");
    say("JOIN #ringchat");
    bob.expect(":tlsfan!~tester@127.0.0.1 JOIN #ringchat");
    say("PRIVMSG #ringchat :hello through openssl");
    bob.expect(":tlsfan!~tester@127.0.0.1 PRIVMSG #ringchat :hello through openssl");
    bob.send("PRIVMSG #ringchat :hello back");
    wait_for(":bob!~bob@127.0.0.1 PRIVMSG #ringchat :hello back");
    say("QUIT :bye");
    bob.expect(":tlsfan!~tester@127.0.0.1 QUIT :Quit: bye");
    wait_for("ERROR :Closing Link: 127.0.0.1 (Quit: bye)");
    drop(input);
    let _ = openssl.kill();
    let _ = openssl.wait();
    reader.join().expect("the openssl reader thread");
}

#[test]
#[cfg_attr(
    not(has_openssl),
    ignore = "needs openssl on PATH: apt-get install -y openssl (.ci/run installs it)"
)]
fn openssl_s_client_over_io_uring_with_4_shards() {
    openssl_registers_and_chats_over_tls(Setup {
        io: IoMode::Uring,
        shards: 4,
    });
}

#[test]
#[cfg_attr(
    not(has_openssl),
    ignore = "needs openssl on PATH: apt-get install -y openssl (.ci/run installs it)"
)]
fn openssl_s_client_over_epoll_with_1_shard() {
    openssl_registers_and_chats_over_tls(Setup {
        io: IoMode::Epoll,
        shards: 1,
    });
}

#[test]
#[cfg_attr(
    not(has_irssi_and_tmux),
    ignore = "needs irssi and tmux on PATH: apt-get install -y irssi tmux (.ci/run installs them)"
)]
fn irssi_over_the_ring_driver_with_4_shards() {
    irssi_chats_joins_renames_and_parts(Setup {
        io: IoMode::Ring,
        shards: 4,
    });
}

#[test]
#[cfg_attr(
    not(has_openssl),
    ignore = "needs openssl on PATH: apt-get install -y openssl (.ci/run installs it)"
)]
fn openssl_s_client_over_the_ring_driver_with_4_shards() {
    openssl_registers_and_chats_over_tls(Setup {
        io: IoMode::Ring,
        shards: 4,
    });
}
