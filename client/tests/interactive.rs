//! The client in a real terminal (a tmux pane): typing sends lines, a message that
//! arrives mid-typing is printed above the prompt without garbling the half-typed
//! line, the arrow keys recall history, Tab completes nicks, /whois and /list answer
//! on screen, mIRC colours reach the terminal as colours, a server restart is
//! survived (reconnect and rejoin), the full-screen mode keeps a window per channel and
//! query with a member list and scroll-back, and /quit exits 0. Needs the Debian package
//! `tmux`; without it the tests fail under CI (CI set) and are skipped elsewhere.

mod common;

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{RawPeer, TestServer, CLIENT, WAIT};

/// Printed by the pane's shell before the client's exit status.
const EXIT_MARK: &str = "[client exited with ";

/// A private tmux server (its own socket) holding one session that runs the client.
/// Dropping it kills the tmux server and everything in it.
struct Pane {
    socket: String,
}

impl Pane {
    /// Starts the client with `args` in a 100x30 pane; when it exits, the shell prints
    /// its exit status after [`EXIT_MARK`], and the pane stays so that it can be read.
    fn start_client(args: &str) -> Pane {
        static STARTED: AtomicU32 = AtomicU32::new(0);
        // The shell lingers after the mark: when a pane dies right after a program
        // left the alternate screen (the full-screen mode), tmux shows it blank.
        let command = format!("'{CLIENT}' {args}; echo \"{EXIT_MARK}$?]\"; sleep 30");
        // One tmux server per pane: tests run in parallel.
        let pane = Pane {
            socket: format!(
                "ringchat-client-test-{}-{}",
                std::process::id(),
                STARTED.fetch_add(1, Ordering::Relaxed)
            ),
        };
        let started = pane.tmux(&[
            "new-session",
            "-d",
            "-s",
            "chat",
            "-x",
            "100",
            "-y",
            "30",
            &command,
            ";",
            "set-option",
            "-t",
            "chat",
            "remain-on-exit",
            "on",
        ]);
        assert!(started.status.success(), "tmux new-session: {started:?}");
        pane
    }

    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("run tmux")
    }

    /// Types `text` literally, without pressing Enter.
    fn type_text(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "chat", "-l", text]);
    }

    /// Presses a named key (`Enter`, `Up`, ...).
    fn press(&self, key: &str) {
        self.tmux(&["send-keys", "-t", "chat", key]);
    }

    /// The visible screen, trailing blank lines removed.
    fn screen(&self) -> Vec<String> {
        let output = self.tmux(&["capture-pane", "-p", "-t", "chat"]);
        let text = String::from_utf8_lossy(&output.stdout);
        let mut lines: Vec<String> = text.lines().map(|l| l.trim_end().to_string()).collect();
        while lines.last().is_some_and(String::is_empty) {
            lines.pop();
        }
        lines
    }

    /// The visible screen with its colours and attributes as escape sequences.
    fn screen_with_escapes(&self) -> String {
        let output = self.tmux(&["capture-pane", "-p", "-e", "-t", "chat"]);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Waits until `ready` holds for the screen; returns that screen.
    fn wait_for(&self, what: &str, ready: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "screen never showed {what}:\n{}",
                screen.join("\n")
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the bottom line (the prompt) reads exactly `line`.
    fn wait_for_prompt(&self, line: &str) -> Vec<String> {
        self.wait_for(&format!("prompt {line:?}"), |screen| {
            screen.last().is_some_and(|last| last == line)
        })
    }

    /// Waits for the shell line after the client to print the client's exit status
    /// (see [`Pane::start_client`]); returns it. tmux's own `pane_dead_status` is not
    /// used: it is sometimes never filled in when the process exits quickly.
    fn wait_exit(&self) -> i32 {
        let screen = self.wait_for("the client's exit status", |screen| {
            screen.iter().any(|l| l.starts_with(EXIT_MARK))
        });
        screen
            .iter()
            .find_map(|l| l.strip_prefix(EXIT_MARK))
            .and_then(|code| code.trim_end_matches(']').parse().ok())
            .expect("exit status is a number")
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        self.tmux(&["kill-server"]);
    }
}

fn tmux_available() -> bool {
    match Command::new("tmux").arg("-V").output() {
        Ok(output) if output.status.success() => true,
        _ if std::env::var_os("CI").is_some() => {
            panic!("tmux is required for the interactive test: apt-get install tmux")
        }
        _ => {
            eprintln!("SKIPPED: tmux is not installed (apt-get install tmux)");
            false
        }
    }
}

#[test]
#[cfg_attr(
    not(has_tmux),
    ignore = "needs tmux on PATH: apt-get install -y tmux (.ci/run installs it)"
)]
fn typing_history_and_incoming_lines_in_a_terminal() {
    if !tmux_available() {
        return;
    }
    let server = TestServer::start();
    let mut bob = RawPeer::register(&server.addr(), "bob");
    bob.send("JOIN #lobby");
    bob.expect("366");

    let pane = Pane::start_client(&format!("{} --nick alice", server.addr()));
    bob.expect(":alice!");
    pane.wait_for_prompt("#lobby>");
    pane.wait_for("the join", |screen| {
        screen.iter().any(|l| l == "-- alice joined #lobby")
    });

    pane.type_text("hello from a terminal");
    pane.press("Enter");
    bob.expect("PRIVMSG #lobby :hello from a terminal");
    pane.wait_for("our own line", |screen| {
        screen
            .iter()
            .any(|l| l.ends_with("] <alice> hello from a terminal"))
    });

    // A message arriving while a line is half typed goes above the prompt; the prompt
    // and the half-typed text are drawn again intact below it.
    pane.type_text("half typed");
    pane.wait_for_prompt("#lobby> half typed");
    bob.send("PRIVMSG #lobby :interrupting you");
    let screen = pane.wait_for("bob's message", |screen| {
        screen.iter().any(|l| l.ends_with("<bob> interrupting you"))
    });
    let incoming = screen
        .iter()
        .find(|l| l.ends_with("<bob> interrupting you"))
        .expect("line is on screen");
    assert!(incoming.starts_with('['), "garbled: {incoming:?}");
    pane.wait_for_prompt("#lobby> half typed");
    pane.type_text(" and finished");
    pane.press("Enter");
    bob.expect("PRIVMSG #lobby :half typed and finished");

    // Up twice recalls the first line.
    pane.press("Up");
    pane.wait_for_prompt("#lobby> half typed and finished");
    pane.press("Up");
    pane.wait_for_prompt("#lobby> hello from a terminal");
    pane.press("Enter");
    bob.expect("PRIVMSG #lobby :hello from a terminal");

    // Lines typed (or pasted) faster than they are handled are all sent, in order.
    pane.tmux(&[
        "send-keys",
        "-t",
        "chat",
        "-l",
        "pasted one\rpasted two\rpasted three\r",
    ]);
    bob.expect("PRIVMSG #lobby :pasted one");
    bob.expect("PRIVMSG #lobby :pasted two");
    bob.expect("PRIVMSG #lobby :pasted three");

    pane.type_text("/quit bye from tmux");
    pane.press("Enter");
    bob.expect("bye from tmux");
    assert_eq!(pane.wait_exit(), 0, "{}", pane.screen().join("\n"));
}

/// Waits until some line of the screen satisfies `line`; returns it.
fn wait_for_line(pane: &Pane, what: &str, line: impl Fn(&str) -> bool) -> String {
    let screen = pane.wait_for(what, |screen| screen.iter().any(|l| line(l)));
    screen
        .into_iter()
        .find(|l| line(l))
        .expect("the line is on screen")
}

/// alice in a pane, bob (raw) with her in #lobby and alone in #rust with a topic.
fn alice_in_a_pane_with_bob(server: &TestServer, extra: &str) -> (Pane, RawPeer) {
    let mut bob = RawPeer::register(&server.addr(), "bob");
    bob.send("JOIN #lobby,#rust");
    bob.expect("366 bob #rust");
    bob.send("TOPIC #rust :all about Rust");
    bob.expect("TOPIC #rust");
    let pane = Pane::start_client(&format!("{} --nick alice {extra}", server.addr()));
    bob.expect(":alice!");
    pane.wait_for_prompt("#lobby>");
    wait_for_line(&pane, "alice's join", |l| l == "-- alice joined #lobby");
    (pane, bob)
}

#[test]
#[cfg_attr(
    not(has_tmux),
    ignore = "needs tmux on PATH: apt-get install -y tmux (.ci/run installs it)"
)]
fn whois_list_and_nick_completion_in_a_terminal() {
    if !tmux_available() {
        return;
    }
    let server = TestServer::start();
    let (pane, mut bob) = alice_in_a_pane_with_bob(&server, "");

    pane.type_text("/whois bob");
    pane.press("Enter");
    let user = wait_for_line(&pane, "the WHOIS user line", |l| {
        l.starts_with("-- bob is ~")
    });
    assert!(user.ends_with("@127.0.0.1 (raw peer)"), "{user:?}");
    let channels = wait_for_line(&pane, "bob's channels", |l| l.starts_with("-- bob is in "));
    assert!(
        channels.contains("#lobby") && channels.contains("#rust"),
        "{channels:?}"
    );

    pane.type_text("/list rust");
    pane.press("Enter");
    let screen = pane.wait_for("the end of the list", |screen| {
        screen.iter().any(|l| l == "-- end of the channel list")
    });
    assert!(
        screen
            .iter()
            .any(|l| l == "-- #rust (1 users): all about Rust"),
        "{}",
        screen.join("\n")
    );
    assert!(
        !screen.iter().any(|l| l.starts_with("-- #lobby (")),
        "filtered out: {}",
        screen.join("\n")
    );

    // bob is known from the NAMES reply: Tab completes him.
    pane.type_text("bo");
    pane.press("Tab");
    pane.wait_for_prompt("#lobby> bob:");
    pane.type_text("hi");
    pane.press("Enter");
    bob.expect("PRIVMSG #lobby :bob: hi");
}

#[test]
#[cfg_attr(
    not(has_tmux),
    ignore = "needs tmux on PATH: apt-get install -y tmux (.ci/run installs it)"
)]
fn mirc_colours_and_bold_reach_the_terminal() {
    if !tmux_available() {
        return;
    }
    let server = TestServer::start();
    let (pane, mut bob) = alice_in_a_pane_with_bob(&server, "");
    bob.send("PRIVMSG #lobby :\x02loud\x02 and \x0304red\x03 text");
    wait_for_line(&pane, "bob's message", |l| {
        l.ends_with("<bob> loud and red text")
    });
    let screen = pane.screen_with_escapes();
    let line = screen
        .lines()
        .find(|l| l.contains("<bob>"))
        .expect("bob's line");
    // tmux redraws attributes its own way: bold is SGR 1, mIRC red (4) bright red 91.
    assert!(line.contains("\x1b[1mloud"), "bold: {line:?}");
    assert!(line.contains("\x1b[91mred"), "red: {line:?}");
    assert!(!line.contains("\x1b[91m text"), "colour ends: {line:?}");
}

#[test]
#[cfg_attr(
    not(has_tmux),
    ignore = "needs tmux on PATH: apt-get install -y tmux (.ci/run installs it)"
)]
fn a_server_restart_is_survived_in_a_terminal() {
    if !tmux_available() {
        return;
    }
    let mut server = TestServer::start();
    let (pane, _bob) = alice_in_a_pane_with_bob(&server, "");
    pane.type_text("/join #rust");
    pane.press("Enter");
    pane.wait_for_prompt("#rust>");

    server.restart();
    wait_for_line(&pane, "the reconnection", |l| l == "-- reconnected");
    let screen = pane.wait_for("the rejoins", |screen| {
        let after = screen
            .iter()
            .skip_while(|l| *l != "-- reconnected")
            .collect::<Vec<_>>();
        after.iter().any(|l| *l == "-- alice joined #lobby")
            && after.iter().any(|l| *l == "-- alice joined #rust")
    });
    assert!(
        screen
            .iter()
            .any(|l| l.starts_with("!! server closed the link: ")),
        "{}",
        screen.join("\n")
    );
    pane.wait_for_prompt("#rust>");

    let mut carol = RawPeer::register(&server.addr(), "carol");
    carol.send("JOIN #rust");
    carol.expect("366");
    pane.type_text("back after the restart");
    pane.press("Enter");
    carol.expect("PRIVMSG #rust :back after the restart");
    pane.type_text("/quit");
    pane.press("Enter");
    assert_eq!(pane.wait_exit(), 0, "{}", pane.screen().join("\n"));
}

#[test]
#[cfg_attr(
    not(has_tmux),
    ignore = "needs tmux on PATH: apt-get install -y tmux (.ci/run installs it)"
)]
fn full_screen_windows_members_and_scroll_back() {
    if !tmux_available() {
        return;
    }
    let server = TestServer::start();
    let mut bob = RawPeer::register(&server.addr(), "bob");
    bob.send("JOIN #lobby");
    bob.expect("366");
    let pane = Pane::start_client(&format!("{} --nick alice --full-screen", server.addr()));
    bob.expect(":alice!");
    wait_for_line(&pane, "the window bar", |l| {
        l.contains("alice | 1:status 2:#lobby")
    });
    // The member list beside the channel, operators first.
    let screen = pane.wait_for("the members", |screen| {
        screen.iter().any(|l| l.ends_with("│@bob")) && screen.iter().any(|l| l.ends_with("│alice"))
    });
    let bob_row = screen.iter().position(|l| l.ends_with("│@bob"));
    let alice_row = screen.iter().position(|l| l.ends_with("│alice"));
    assert!(bob_row < alice_row, "{}", screen.join("\n"));

    // A private message opens a query window, marked unread until shown.
    bob.send("PRIVMSG alice :psst");
    wait_for_line(&pane, "the query window", |l| l.contains("3:bob*"));
    pane.press("M-3");
    pane.wait_for_prompt("bob>");
    wait_for_line(&pane, "the private message", |l| l.ends_with("*bob* psst"));
    pane.type_text("hi back");
    pane.press("Enter");
    bob.expect("PRIVMSG bob :hi back");

    // /join opens and shows the channel's window; its lines scroll back with PageUp.
    pane.press("M-2");
    pane.wait_for_prompt("#lobby>");
    pane.type_text("/join #rust");
    pane.press("Enter");
    pane.wait_for_prompt("#rust>");
    bob.send("JOIN #rust");
    bob.expect("366 bob #rust");
    for i in 0..40 {
        bob.send(&format!("PRIVMSG #rust :line {i}"));
    }
    wait_for_line(&pane, "the last line", |l| l.contains("<bob> line 39"));
    pane.press("PageUp");
    let screen = pane.wait_for("older lines", |screen| {
        !screen.iter().any(|l| l.contains("<bob> line 39"))
    });
    assert!(
        screen.iter().any(|l| l.contains("<bob> line 29 ")),
        "{}",
        screen.join("\n")
    );
    pane.press("PageDown");
    wait_for_line(&pane, "the newest line again", |l| {
        l.contains("<bob> line 39")
    });

    // Up recalls the last line typed.
    pane.press("Up");
    pane.wait_for_prompt("#rust> /join #rust");
    pane.press("C-u");
    pane.type_text("/quit bye from full screen");
    pane.press("Enter");
    bob.expect("bye from full screen");
    assert_eq!(pane.wait_exit(), 0, "{}", pane.screen().join("\n"));
}
