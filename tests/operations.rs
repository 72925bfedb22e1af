//! Running the real `ringchat` binary as an operator does: a config file, SIGHUP
//! reloads under connected clients, `/metrics` parsed by a Prometheus parser, the
//! systemd notify protocol on a socket the test owns, socket activation with a
//! listening descriptor the test passes, the log file and the start line.

mod common;

use common::{free_port, http_get, Client};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// A fresh directory for one test's files.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringchat-ops-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The binary, with a data directory of its own (not `./data`, which the tests
/// running at once would share).
fn ringchat() -> Command {
    static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let start = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let data =
        std::env::temp_dir().join(format!("ringchat-ops-data-{}-{start}", std::process::id()));
    let mut command = Command::new(env!("CARGO_BIN_EXE_ringchat"));
    command
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .env_remove("STATE_DIRECTORY")
        .env("RINGCHAT_DATA_DIR", data);
    command
}

/// A running ringchat whose stderr lines arrive on a channel; killed if dropped.
struct Running {
    child: Child,
    logs: Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn spawn(mut command: Command) -> Running {
        let mut child = command
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
        Running {
            child,
            logs,
            seen: Vec::new(),
        }
    }

    /// Starts with `args` and waits until `addr` accepts connections.
    fn start(addr: SocketAddr, args: &[&str]) -> Running {
        let mut command = ringchat();
        command.args(args);
        let running = Running::spawn(command);
        wait_listening(addr);
        running
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
                Err(_) => panic!("no log line with {text:?}; saw {:#?}", self.seen),
            }
        }
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, signal);
        }
    }

    /// SIGTERM, then the exit status must be success.
    fn stop(mut self) {
        self.signal(libc::SIGTERM);
        let status = self.child.wait().expect("wait for ringchat");
        assert!(status.success(), "{status:?}");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + common::HANG;
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "ringchat never listened on {addr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Registers `nick` and returns the client with every line of its welcome burst.
fn register(addr: SocketAddr, nick: &str) -> (Client, Vec<String>) {
    let mut client = Client::connect(addr);
    client.nick = nick.to_owned();
    client.send(&format!("NICK {nick}"));
    client.send(&format!("USER {nick} 0 * :{nick}"));
    let burst =
        client.skip_until(|l| common::has_numeric(l, "376") || common::has_numeric(l, "422"));
    (client, burst)
}

fn motd_of(burst: &[String]) -> Vec<String> {
    burst
        .iter()
        .filter(|l| common::has_numeric(l, "372"))
        .map(|l| {
            l.rsplit_once(":- ")
                .map_or(String::new(), |(_, text)| text.to_owned())
        })
        .collect()
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write a test file");
}

fn stderr_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

// ---- configuration file and reload ---------------------------------------------------

#[test]
fn sighup_rereads_the_config_file_and_keeps_everyone_connected() {
    let dir = scratch("reload");
    let addr = free_port();
    let (config, motd) = (dir.join("ringchat.toml"), dir.join("motd.txt"));
    write(&motd, "first motd\n");
    write(
        &config,
        &format!("listen = [\"{addr}\"]\nshards = 2\nmotd = \"motd.txt\"\nmax-channels = 10\n"),
    );
    let mut server = Running::start(addr, &["--config", config.to_str().unwrap()]);
    let (mut alice, burst) = register(addr, "alice");
    assert_eq!(motd_of(&burst), ["first motd"]);
    assert!(burst.iter().any(|l| l.contains("CHANLIMIT=#:10")));

    write(&motd, "second motd\nwith two lines\n");
    write(
        &config,
        &format!("listen = [\"{addr}\"]\nshards = 2\nmotd = \"motd.txt\"\nmax-channels = 3\nserver-name = \"renamed.example\"\n"),
    );
    server.signal(libc::SIGHUP);
    let restart = server.log_containing("takes effect only after a restart");
    assert!(restart.contains("server-name"), "{restart}");
    let reloaded = server.log_containing("reloaded");
    assert!(
        reloaded.contains("motd") && reloaded.contains("max-channels"),
        "{reloaded}"
    );

    let (mut bob, burst) = register(addr, "bob");
    assert_eq!(motd_of(&burst), ["second motd", "with two lines"]);
    assert!(burst.iter().any(|l| l.contains("CHANLIMIT=#:3")));
    assert!(
        burst[0].starts_with(":ringchat.local 001"),
        "a restart-only key is left: {burst:?}"
    );
    bob.send("JOIN #a,#b,#c,#d");
    let lines = bob.skip_until(|l| common::has_numeric(l, "405"));
    assert!(lines.last().unwrap().contains("#d"));
    // The client connected before the reload is still served.
    alice.send("PING :still here");
    alice.expect(":ringchat.local PONG ringchat.local :still here");
    server.stop();
}

#[test]
fn a_limit_lowered_by_a_reload_applies_to_the_next_connection_only() {
    let dir = scratch("reload-limit");
    let addr = free_port();
    let config = dir.join("ringchat.toml");
    write(
        &config,
        &format!("listen = [\"{addr}\"]\nshards = 2\nmax-clients = 10\n"),
    );
    let mut server = Running::start(addr, &["--config", config.to_str().unwrap()]);
    let (mut alice, _) = register(addr, "alice");
    let (mut bob, _) = register(addr, "bob");
    write(
        &config,
        &format!("listen = [\"{addr}\"]\nshards = 2\nmax-clients = 1\n"),
    );
    server.signal(libc::SIGHUP);
    let reloaded = server.log_containing("reloaded");
    assert!(reloaded.contains("max-clients"), "{reloaded}");
    // Two are connected, more than the new limit: nobody is dropped, nobody new is let in.
    let mut carol = Client::connect(addr);
    assert_eq!(
        carol.expect_closed(),
        ["ERROR :Closing Link: 127.0.0.1 (Server is full)"]
    );
    for client in [&mut alice, &mut bob] {
        client.send("PING :kept");
        client.expect(":ringchat.local PONG ringchat.local :kept");
    }
    server.stop();
}

#[test]
fn sighup_without_a_config_file_rereads_the_motd_file() {
    let dir = scratch("motd-flag");
    let addr = free_port();
    let motd = dir.join("motd.txt");
    write(&motd, "before\n");
    let mut server = Running::start(
        addr,
        &[
            "--listen",
            &addr.to_string(),
            "--motd",
            motd.to_str().unwrap(),
        ],
    );
    write(&motd, "after\n");
    server.signal(libc::SIGHUP);
    server.log_containing("reloaded");
    let (_carol, burst) = register(addr, "carol");
    assert_eq!(motd_of(&burst), ["after"]);
    server.stop();
}

#[test]
fn a_bad_file_on_reload_changes_nothing_and_says_why() {
    let dir = scratch("bad-reload");
    let addr = free_port();
    let (config, motd) = (dir.join("ringchat.toml"), dir.join("motd.txt"));
    write(&motd, "kept\n");
    write(
        &config,
        &format!("listen = [\"{addr}\"]\nmotd = \"motd.txt\"\n"),
    );
    let mut server = Running::start(addr, &["--config", config.to_str().unwrap()]);
    write(&motd, "not applied\n");
    write(
        &config,
        &format!("listen = [\"{addr}\"]\nmotd = \"motd.txt\"\nsendqq = 5\n"),
    );
    server.signal(libc::SIGHUP);
    let failure = server.log_containing("reload failed, nothing changed");
    assert!(
        failure.contains("ringchat.toml:3:1: unknown key `sendqq`"),
        "{failure}"
    );
    let (_dave, burst) = register(addr, "dave");
    assert_eq!(motd_of(&burst), ["kept"]);
    server.stop();
}

#[test]
fn a_bad_config_file_at_start_is_one_line_and_exit_status_1() {
    let dir = scratch("bad-start");
    let config = dir.join("ringchat.toml");
    write(&config, "sendq = 10\nio = \"kqueue\"\n");
    let output = ringchat()
        .args(["--config", config.to_str().unwrap()])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!("ringchat: {}:2:6: io: ", config.display())),
        "{lines:?}"
    );
}

#[test]
fn check_config_accepts_the_example_and_refuses_a_bad_file() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("ringchat.example.toml");
    let output = ringchat()
        .args(["--check-config", example.to_str().unwrap()])
        .output()
        .expect("run");
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("is valid"));

    let bad = scratch("check").join("bad.toml");
    write(&bad, "\n\nshards = 100\n");
    let output = ringchat()
        .args(["--check-config", bad.to_str().unwrap()])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr_lines(&output),
        [format!(
            "ringchat: {}:3:1: shards: must be between 1 and 64",
            bad.display()
        )]
    );
}

#[test]
fn a_bad_flag_is_one_line_and_exit_status_1() {
    for args in [
        &["--no-such-flag"][..],
        &["--sendq", "lots"],
        &["--io", "kqueue"],
    ] {
        let output = ringchat().args(args).output().expect("run");
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let lines = stderr_lines(&output);
        assert_eq!(lines.len(), 1, "{args:?}: {lines:?}");
        assert!(lines[0].starts_with("ringchat: "), "{lines:?}");
        assert!(lines[0].contains(args[0]), "{lines:?}");
    }
}

#[test]
fn a_host_name_is_accepted_for_listen() {
    let port = free_port().port();
    let server = Running::start(
        SocketAddr::from(([127, 0, 0, 1], port)),
        &["--listen", &format!("localhost:{port}"), "--shards", "1"],
    );
    server.stop();
}

// ---- logs ------------------------------------------------------------------------------

#[test]
fn the_start_line_says_what_runs_without_colour_codes() {
    let addr = free_port();
    let metrics = free_port();
    let mut server = Running::start(
        addr,
        &[
            "--listen",
            &addr.to_string(),
            "--shards",
            "2",
            "--metrics",
            &metrics.to_string(),
        ],
    );
    let start = server.log_containing("ringchat started");
    for field in [
        "version=",
        "shards=2",
        &format!("listeners=plain {addr}, metrics {metrics}"),
        "cloaking=on",
        "open_files=",
        "max_clients=",
    ] {
        assert!(start.contains(field), "{field} missing: {start}");
    }
    assert!(
        ["driver=ring ", "driver=uring ", "driver=epoll "]
            .iter()
            .any(|d| start.contains(d)),
        "the driver as --io names it: {start}"
    );
    assert!(!start.contains('\u{1b}'), "ANSI codes on a pipe: {start:?}");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        server.log_containing("running as root");
    }
    server.stop();
}

/// One client's life as the INFO log tells it, one readable line per step (no Rust
/// `Debug` dumps), with the address, the cloak and the reasons.
#[test]
fn the_audit_trail_tells_one_clients_life() {
    let dir = scratch("audit");
    let addr = free_port();
    let config = dir.join("ringchat.toml");
    let hash = ringchat::opers::hash_password(b"pw").expect("hashing works");
    write(
        &config,
        &format!("listen = [\"{addr}\"]\nshards = 1\n\n[[oper]]\nname = \"admin\"\npassword = \"{hash}\"\n"),
    );
    let mut server = Running::start(addr, &["--config", config.to_str().unwrap()]);
    let (mut alice, _) = register(addr, "alice");
    let connect = server.log_containing(" connect ");
    assert!(connect.contains("address=127.0.0.1 tls=false"), "{connect}");
    let registered = server.log_containing(" register ");
    assert!(
        registered.contains("nick=alice user=~alice address=127.0.0.1 cloak=")
            && registered.contains(".ip"),
        "{registered}"
    );
    alice.send("NICK alicia");
    alice.skip_until(|l| l.contains(" NICK "));
    assert!(server
        .log_containing("nick change")
        .contains("old=alice new=alicia"));
    alice.send("OPER admin pw");
    alice.expect_numeric("381");
    assert!(server
        .log_containing("OPER succeeded")
        .contains("from=~alice@127.0.0.1 oper=admin"));
    alice.send("KLINE ~evil@192.0.2.1 :spam");
    alice.line();
    assert!(server
        .log_containing("ban added")
        .contains("mask=~evil@192.0.2.1 reason=spam"));
    alice.send("UNKLINE ~evil@192.0.2.1");
    alice.line();
    assert!(server
        .log_containing("ban removed")
        .contains("mask=~evil@192.0.2.1"));
    alice.send("QUIT :done for today");
    alice.expect_closed();
    let quit = server.log_containing(" quit ");
    assert!(
        quit.contains("nick=alicia address=127.0.0.1 reason=Quit: done for today"),
        "{quit}"
    );
    for line in &server.seen {
        assert!(
            !line.contains("ClientId {") && !line.contains("SlotKey"),
            "a Debug dump: {line}"
        );
    }
    server.stop();
}

#[test]
fn under_the_journal_lines_leave_the_timestamp_to_it() {
    use std::os::unix::fs::MetadataExt;
    let dir = scratch("journal");
    let addr = free_port();
    let journal = dir.join("journal");
    let stderr = std::fs::File::create(&journal).expect("journal file");
    let meta = stderr.metadata().expect("stat");
    let mut server = ringchat()
        .args(["--listen", &addr.to_string(), "--shards", "1"])
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn ringchat");
    wait_listening(addr);
    wait_for_text(&journal, "ringchat started");
    // SAFETY: signalling our own child process.
    unsafe {
        libc::kill(server.id() as libc::pid_t, libc::SIGTERM);
    }
    assert!(server.wait().expect("wait").success());
    let text = std::fs::read_to_string(&journal).expect("read journal");
    let start = text
        .lines()
        .find(|l| l.contains("ringchat started"))
        .expect("start line");
    assert!(start.trim_start().starts_with("INFO "), "{start}");
}

#[test]
fn an_open_file_limit_too_low_for_max_clients_is_a_warning() {
    use std::os::unix::process::CommandExt;
    let addr = free_port();
    let mut command = ringchat();
    command.args([
        "--listen",
        &addr.to_string(),
        "--shards",
        "1",
        "--max-clients",
        "5000",
    ]);
    // SAFETY: setrlimit is async-signal-safe; it runs in the child before exec.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 256,
                rlim_max: 256,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut server = Running::spawn(command);
    wait_listening(addr);
    let warning = server.log_containing("open-file limit is too low");
    assert!(
        warning.contains("open_files=256") && warning.contains("max_clients=5000"),
        "{warning}"
    );
    server.stop();
}

#[test]
fn the_log_file_is_reopened_on_sighup_for_logrotate() {
    let dir = scratch("log-file");
    let addr = free_port();
    let log = dir.join("ringchat.log");
    let mut command = ringchat();
    command.args([
        "--listen",
        &addr.to_string(),
        "--shards",
        "1",
        "--log-file",
        log.to_str().unwrap(),
    ]);
    let server = Running::spawn(command);
    wait_listening(addr);
    wait_for_text(&log, "ringchat started");
    // logrotate moves the file away, then sends SIGHUP.
    let rotated = dir.join("ringchat.log.1");
    std::fs::rename(&log, &rotated).expect("rotate");
    server.signal(libc::SIGHUP);
    wait_for_text(&log, "reloaded");
    let old = std::fs::read_to_string(&rotated).expect("rotated log");
    assert!(
        old.contains("ringchat started") && !old.contains("reloaded"),
        "{old}"
    );
    assert!(!old.contains('\u{1b}'), "ANSI codes in a log file");
    server.stop();
}

fn wait_for_text(path: &Path, text: &str) {
    let deadline = Instant::now() + common::HANG;
    loop {
        if std::fs::read_to_string(path).is_ok_and(|t| t.contains(text)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} never said {text:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---- metrics ---------------------------------------------------------------------------

/// GET `path` over plain HTTP/1.1; returns the status line and the body.
fn scrape(addr: SocketAddr) -> prometheus_parse::Scrape {
    let (status, body) = http_get(addr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text format")
}

fn sample_sum(scrape: &prometheus_parse::Scrape, metric: &str) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => panic!("{metric} is not a plain value"),
        })
        .sum()
}

/// Whether `promtool` (Debian package `prometheus`) is on PATH. Under CI, where
/// `.ci/run` installs it, a missing promtool fails the test; elsewhere the test says
/// so and skips.
fn promtool_available() -> bool {
    let found = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        let advice = "checking /metrics with the reference linter needs `promtool`; \
                      install it with `apt-get install -y prometheus`";
        assert!(std::env::var_os("CI").is_none(), "{advice}");
        eprintln!("SKIPPED: {advice}");
    }
    found
}

/// A 2-shard server with `/metrics` on a port of its own, once it serves them:
/// (client address, metrics address, server).
fn start_with_metrics() -> (SocketAddr, SocketAddr, Running) {
    let (addr, metrics) = (free_port(), free_port());
    let mut server = Running::start(
        addr,
        &[
            "--listen",
            &addr.to_string(),
            "--shards",
            "2",
            "--metrics",
            &metrics.to_string(),
        ],
    );
    server.log_containing("metrics on http://");
    (addr, metrics, server)
}

#[test]
#[cfg_attr(
    not(has_promtool),
    ignore = "needs promtool on PATH: apt-get install -y prometheus (.ci/run installs it)"
)]
fn promtool_finds_nothing_to_fix_in_the_metrics() {
    if !promtool_available() {
        return;
    }
    let (_, metrics, server) = start_with_metrics();
    let (status, body) = http_get(metrics, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("feed promtool");
    let verdict = check.wait_with_output().expect("promtool ends");
    assert!(
        verdict.status.success() && verdict.stdout.is_empty() && verdict.stderr.is_empty(),
        "promtool: {}{}",
        String::from_utf8_lossy(&verdict.stdout),
        String::from_utf8_lossy(&verdict.stderr)
    );
    server.stop();
}

#[test]
fn metrics_are_served_in_prometheus_text_format() {
    let (addr, metrics, server) = start_with_metrics();
    let (mut erin, _) = register(addr, "erin");
    let (mut frank, _) = register(addr, "frank");
    erin.send("JOIN #metrics");
    erin.skip_until(|l| common::has_numeric(l, "366"));
    frank.send("JOIN #metrics");
    frank.skip_until(|l| common::has_numeric(l, "366"));

    // Shards publish about once a second: poll until both connections are counted
    // (the start-up probe's connection has closed by then).
    let deadline = Instant::now() + common::HANG;
    let scrape = loop {
        let scrape = scrape(metrics);
        if sample_sum(&scrape, "ringchat_connections") == 2.0 {
            break scrape;
        }
        assert!(Instant::now() < deadline, "connections never published");
        std::thread::sleep(Duration::from_millis(100));
    };
    let shards: Vec<&str> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "ringchat_lines_in_total")
        .map(|s| s.labels.get("shard").expect("a shard label"))
        .collect();
    assert_eq!(shards, ["0", "1"]);
    assert_eq!(sample_sum(&scrape, "ringchat_users"), 2.0);
    assert_eq!(sample_sum(&scrape, "ringchat_channels"), 1.0);
    assert_eq!(sample_sum(&scrape, "ringchat_opers"), 0.0);
    assert_eq!(sample_sum(&scrape, "ringchat_build_info"), 1.0);
    let build = scrape
        .samples
        .iter()
        .find(|s| s.metric == "ringchat_build_info")
        .unwrap();
    assert_eq!(build.labels.get("version"), Some(env!("CARGO_PKG_VERSION")));
    for family in [
        "ringchat_connections",
        "ringchat_deliveries_total",
        "ringchat_bytes_out_total",
        "ringchat_reads_total",
        "ringchat_writes_total",
        "ringchat_sendq_disconnects_total",
        "ringchat_flood_disconnects_total",
    ] {
        assert!(scrape.docs.contains_key(family), "no HELP for {family}");
    }
    assert_eq!(http_get(metrics, "/other").0, "HTTP/1.1 404 Not Found");
    server.stop();
}

// ---- systemd ---------------------------------------------------------------------------

/// A fake service manager: the datagram socket NOTIFY_SOCKET names.
struct FakeManager {
    socket: UnixDatagram,
    path: PathBuf,
    received: Vec<String>,
}

impl FakeManager {
    fn bind(test: &str) -> FakeManager {
        let path = scratch(test).join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        socket
            .set_read_timeout(Some(common::HANG))
            .expect("timeout");
        FakeManager {
            socket,
            path,
            received: Vec::new(),
        }
    }

    /// Receives notifications until one has the line `assignment`; returns it.
    fn expect(&mut self, assignment: &str) -> String {
        let mut buf = [0u8; 4096];
        loop {
            let n = self
                .socket
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("no {assignment:?} (got {:?}): {e}", self.received));
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            self.received.push(message.clone());
            if message.lines().any(|line| line == assignment) {
                return message;
            }
        }
    }
}

#[test]
fn the_service_manager_hears_ready_reloading_status_watchdog_and_stopping() {
    let mut manager = FakeManager::bind("notify");
    let addr = free_port();
    let mut command = ringchat();
    command
        .args(["--listen", &addr.to_string(), "--shards", "2"])
        .env("NOTIFY_SOCKET", &manager.path)
        .env("WATCHDOG_USEC", "200000");
    let server = Running::spawn(command);
    let ready = manager.expect("READY=1");
    assert!(ready.contains("STATUS=0 connections"), "{ready}");
    // READY=1 means every shard listens: a client is served at once.
    let (_gina, _) = register(addr, "gina");
    manager.expect("WATCHDOG=1");
    server.signal(libc::SIGHUP);
    let reloading = manager.expect("RELOADING=1");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    manager.expect("READY=1");
    let status = manager.expect("WATCHDOG=1");
    assert!(status.contains("STATUS=1 connections"), "{status}");
    server.signal(libc::SIGTERM);
    manager.expect("STOPPING=1");
    server.stop();
}

#[test]
fn socket_activation_serves_on_the_passed_descriptor_with_io_uring() {
    serve_on_a_passed_descriptor("uring");
}

#[test]
fn socket_activation_serves_on_the_passed_descriptor_with_epoll() {
    serve_on_a_passed_descriptor("epoll");
}

#[test]
fn socket_activation_serves_on_the_passed_descriptor_with_the_ring_driver() {
    serve_on_a_passed_descriptor("ring");
}

/// Passes a listening socket as fd 3 with LISTEN_FDS/LISTEN_PID, as systemd does.
fn serve_on_a_passed_descriptor(io: &str) {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let fd = listener.as_raw_fd();
    // `sh` learns its pid as $$ and keeps it through exec, as systemd sets LISTEN_PID.
    let mut command = Command::new("sh");
    command
        .args([
            "-c",
            "LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" --listen 127.0.0.1:1 --shards 2 --io \"$1\"",
            env!("CARGO_BIN_EXE_ringchat"),
            io,
        ])
        .env_remove("RUST_LOG");
    // SAFETY: dup2 and fcntl are async-signal-safe; they run in the child before exec.
    // dup2 to 3 clears close-on-exec; if the listener already is 3, clear it by hand.
    unsafe {
        command.pre_exec(move || {
            let passed = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0) == 0
            } else {
                libc::dup2(fd, 3) == 3
            };
            if passed {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut server = Running::spawn(command);
    let start = server.log_containing("ringchat started");
    assert!(start.contains("socket_activated=true"), "{start}");
    assert!(start.contains(&addr.to_string()), "{start}");
    // Several clients, so both shards' duplicates of the socket get to accept.
    let mut clients: Vec<Client> = (0..4)
        .map(|i| register(addr, &format!("user{i}")).0)
        .collect();
    for client in &mut clients {
        client.send("PING :activated");
        client.expect(":ringchat.local PONG ringchat.local :activated");
    }
    server.stop();
}

#[test]
fn operators_from_the_config_file_rehash_kline_to_the_data_dir_and_die() {
    let dir = scratch("opers");
    let addr = free_port();
    let config = dir.join("ringchat.toml");
    let oper_block = |name: &str, password: &[u8]| {
        let hash = ringchat::opers::hash_password(password).expect("hashing works");
        format!("[[oper]]\nname = \"{name}\"\npassword = \"{hash}\"\nhosts = [\"~*@127.0.0.1\"]\n")
    };
    let head = format!("listen = [\"{addr}\"]\nshards = 2\n\n");
    write(&config, &format!("{head}{}", oper_block("admin", b"first")));
    let data = dir.join("data");
    let args = ["--config", config.to_str().unwrap(), "--data-dir"];
    let mut server = Running::start(addr, &[&args[..], &[data.to_str().unwrap()]].concat());
    let (mut alice, _) = register(addr, "alice");
    // Cloaked by default, with the key the first start made in the data directory.
    let key = std::fs::read_to_string(data.join("cloak.key")).expect("cloak.key is made");
    let cloak = ringchat::cloak::Cloak::new(key.trim().as_bytes()).host_for([127, 0, 0, 1].into());
    alice.send("OPER admin first");
    alice.expect_numeric("381");
    alice.expect(&format!(":alice!~alice@{cloak} MODE alice +o"));
    server.log_containing("OPER succeeded");

    write(
        &config,
        &format!(
            "{head}{}\n{}",
            oper_block("admin", b"second"),
            oper_block("other", b"x")
        ),
    );
    alice.send("REHASH");
    alice.expect_numeric("382");
    let reloaded = server.log_containing("reloaded");
    assert!(reloaded.contains("oper"), "{reloaded}");
    let (mut bob, _) = register(addr, "bob");
    bob.send("OPER admin first");
    bob.expect_numeric("464");
    server.log_containing("OPER failed");
    bob.send("OPER admin second");
    bob.expect_numeric("381");
    bob.expect(&format!(":bob!~bob@{cloak} MODE bob +o"));

    alice.send("KLINE ~evil@127.0.0.1 :kept on disk");
    assert!(alice.line().contains("Added permanent K-Line"));
    let bans = std::fs::read_to_string(data.join("bans.toml")).expect("bans.toml is written");
    assert!(
        bans.contains("~evil@127.0.0.1") && bans.contains("kept on disk"),
        "{bans}"
    );

    // An edited ban file is applied by a reload, to connected clients too.
    let (mut carol, _) = register(addr, "carol");
    write(
        &data.join("bans.toml"),
        &format!("{bans}\n[[ban]]\nkind = \"kline\"\nmask = \"~carol@*\"\nreason = \"edited in\"\nset-by = \"root\"\n"),
    );
    server.signal(libc::SIGHUP);
    let reloaded = server.log_containing("reloaded");
    assert!(reloaded.contains("bans"), "{reloaded}");
    let last = carol.expect_closed();
    assert!(
        last.iter().any(|l| l.contains("K-Lined (edited in)")),
        "{last:?}"
    );

    alice.send("DIE");
    let last = bob.expect_closed();
    assert!(
        last.iter().any(|l| l.contains("Server shutting down")),
        "{last:?}"
    );
    let status = server.child.wait().expect("wait for ringchat");
    assert!(status.success(), "{status:?}");
}

/// The config directory made read-only for the test's length: a read-only bind mount
/// of it onto itself when the test may mount (root, as in CI containers, where mode
/// bits stop no write), else its mode bits. Undone when dropped.
struct ReadOnlyDir {
    path: PathBuf,
    mounted: bool,
}

impl ReadOnlyDir {
    fn new(path: &Path) -> ReadOnlyDir {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o555)).expect("chmod");
        let target = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("no NUL");
        // SAFETY: plain mount(2) calls on a NUL-terminated path we own; a failure
        // (no privilege) is an answer, not a fault.
        let mounted = unsafe {
            libc::mount(
                target.as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ) == 0
                && (libc::mount(
                    std::ptr::null(),
                    target.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                    std::ptr::null(),
                ) == 0
                    || {
                        libc::umount2(target.as_ptr(), libc::MNT_DETACH);
                        false
                    })
        };
        ReadOnlyDir {
            path: path.to_owned(),
            mounted,
        }
    }

    /// Whether a write there fails now (false only for root without mount rights).
    fn refuses_writes(&self) -> bool {
        let probe = self.path.join("probe");
        let refused = std::fs::write(&probe, "x").is_err();
        let _ = std::fs::remove_file(probe);
        refused
    }
}

impl Drop for ReadOnlyDir {
    fn drop(&mut self) {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::PermissionsExt;
        if self.mounted {
            let target = std::ffi::CString::new(self.path.as_os_str().as_bytes()).expect("path");
            // SAFETY: unmounting the bind mount `new` made, by its NUL-terminated path.
            unsafe {
                libc::umount2(target.as_ptr(), libc::MNT_DETACH);
            }
        }
        let _ = std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o755));
    }
}

#[test]
fn bans_live_in_the_data_dir_and_survive_a_restart_under_a_read_only_config_dir() {
    let dir = scratch("data-dir");
    let (etc, state) = (dir.join("etc"), dir.join("var/lib/ringchat"));
    std::fs::create_dir_all(&etc).expect("config dir");
    let addr = free_port();
    let config = etc.join("ringchat.toml");
    let hash = ringchat::opers::hash_password(b"pw").expect("hashing works");
    write(
        &config,
        &format!("listen = [\"{addr}\"]\nshards = 2\n\n[[oper]]\nname = \"admin\"\npassword = \"{hash}\"\n"),
    );
    // Where bans were kept before the data directory: read once, then moved.
    write(
        &etc.join("bans.toml"),
        "[[ban]]\nkind = \"kline\"\nmask = \"~old@*\"\nreason = \"from before\"\nset-by = \"root\"\n",
    );
    let read_only = ReadOnlyDir::new(&etc);
    let config_dir_before = listing(&etc);
    let args = [
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        state.to_str().unwrap(),
    ];

    let mut server = Running::start(addr, &args);
    let moved = server.log_containing("bans moved to the data directory");
    assert!(moved.contains(state.to_str().unwrap()), "{moved}");
    let (mut alice, _) = register(addr, "alice");
    alice.send("OPER admin pw");
    alice.expect_numeric("381");
    alice.send("KLINE ~evil@127.0.0.1 :kept in the data dir");
    // Saving happens before the answer; a failure would be a NOTICE before this PONG.
    let answers = alice.barrier();
    assert!(
        answers.iter().any(|l| l.contains("Added permanent K-Line"))
            && !answers.iter().any(|l| l.contains("not saved")),
        "{answers:?}"
    );
    let bans = std::fs::read_to_string(state.join("bans.toml")).expect("bans.toml is written");
    assert!(
        bans.contains("~evil@127.0.0.1") && bans.contains("~old@*"),
        "{bans}"
    );
    server.stop();

    let mut server = Running::start(addr, &args);
    server.log_containing("ringchat started");
    for banned in ["evil", "old"] {
        let mut client = Client::connect(addr);
        client.send(&format!("NICK {banned}"));
        client.send(&format!("USER {banned} 0 * :{banned}"));
        let last = client.expect_closed();
        assert!(last.iter().any(|l| l.contains("K-Lined")), "{last:?}");
    }
    server.stop();
    assert_eq!(
        listing(&etc),
        config_dir_before,
        "nothing is written beside the config"
    );
    if !read_only.refuses_writes() {
        eprintln!("note: root without mount rights: the config directory was writable, so this test showed only that nothing was written there");
    }
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

#[test]
fn a_rehash_that_fails_names_the_file_line_and_key_and_keeps_the_running_settings() {
    let dir = scratch("rehash-fail");
    let addr = free_port();
    let config = dir.join("ringchat.toml");
    let hash = ringchat::opers::hash_password(b"pw").expect("hashing works");
    let text = |extra: &str| {
        format!("listen = [\"{addr}\"]\nshards = 2\n{extra}\n[[oper]]\nname = \"admin\"\npassword = \"{hash}\"\n")
    };
    write(&config, &text("max-channels = 2\n"));
    let mut server = Running::start(addr, &["--config", config.to_str().unwrap()]);
    let (mut alice, _) = register(addr, "alice");
    alice.send("OPER admin pw");
    alice.expect_numeric("381");

    write(&config, &text("max-channels = 3\nsendqq = 5\n"));
    alice.send("REHASH");
    let before = alice.skip_until(|l| l.contains("REHASH failed"));
    let failure = before.last().expect("the answer");
    let expected = format!(
        ":ringchat.local NOTICE alice :REHASH failed, nothing changed: {}:4:1: unknown key `sendqq`",
        config.display()
    );
    assert!(failure.starts_with(&expected), "{failure}");
    assert!(
        !before.iter().any(|l| common::has_numeric(l, "382")),
        "{before:?}"
    );
    server.log_containing("reload failed, nothing changed");
    // The running settings stay: still two channels at most.
    alice.send("JOIN #a,#b,#c");
    let joined = alice.skip_until(|l| common::has_numeric(l, "405"));
    assert!(joined.last().unwrap().contains("#c"), "{joined:?}");

    write(
        &config,
        &text("max-channels = 3\nserver-name = \"renamed.example\"\n"),
    );
    alice.send("REHASH");
    alice.expect(&format!(
        ":ringchat.local 382 alice {} :Rehashing",
        config.display()
    ));
    alice.expect(
        ":ringchat.local NOTICE alice :REHASH: changed, but takes effect only after a restart: server-name",
    );
    alice.send("JOIN #c");
    alice.skip_until(|l| common::has_numeric(l, "366"));
    server.stop();
}
