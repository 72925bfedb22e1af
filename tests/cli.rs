//! The `ringchat` binary as an operator meets it: start-up errors are one clear line
//! and a non-zero exit; SIGTERM is a graceful shutdown with exit status 0.

mod common;

use common::tls::{sighup_until_renewed, TestPki};
use common::{free_port, Client};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary, with a data directory of its own: the store in it is locked by the
/// process that opened it, so servers started at once must not share `./data`.
fn ringchat() -> Command {
    static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let start = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let data =
        std::env::temp_dir().join(format!("ringchat-cli-data-{}-{start}", std::process::id()));
    let mut command = Command::new(env!("CARGO_BIN_EXE_ringchat"));
    command
        .env_remove("RUST_LOG")
        .env_remove("STATE_DIRECTORY")
        .env("RINGCHAT_DATA_DIR", data);
    command
}

fn start(addr: SocketAddr, extra: &[&str]) -> Child {
    let child = ringchat()
        .args(["--listen", &addr.to_string(), "--shards", "2"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringchat");
    let deadline = Instant::now() + common::HANG;
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "ringchat never listened on {addr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn run_to_end(args: &[&str]) -> Output {
    ringchat().args(args).output().expect("run ringchat")
}

fn stderr_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_port_in_use_is_one_clear_line_and_a_failure_exit() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let output = run_to_end(&["--listen", &addr]);
    assert!(!output.status.success());
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("address already in use"), "{lines:?}");
    assert!(lines[0].contains(&addr), "{lines:?}");
}

#[test]
fn a_second_ringchat_on_the_same_port_fails_despite_so_reuseport() {
    let addr = free_port();
    let mut first = start(addr, &[]);
    let second = run_to_end(&["--listen", &addr.to_string()]);
    first.kill().expect("kill");
    let _ = first.wait();
    assert!(!second.status.success());
    assert!(stderr_lines(&second)[0].contains("address already in use"));
}

#[test]
fn an_unreadable_motd_file_is_a_start_up_error() {
    let output = run_to_end(&["--listen", "127.0.0.1:0", "--motd", "/nonexistent/motd.txt"]);
    assert!(!output.status.success());
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("cannot read MOTD file /nonexistent/motd.txt"),
        "{lines:?}"
    );
}

#[test]
fn a_bad_address_or_flag_is_rejected() {
    let output = run_to_end(&["--listen", "not-an-address"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--listen"));
    let output = run_to_end(&["--shards", "0", "--listen", "127.0.0.1:0"]);
    assert!(!output.status.success());
    assert!(stderr_lines(&output)[0].contains("--shards must be between 1 and 64"));
}

#[test]
fn help_shows_every_flag_with_its_default() {
    let output = run_to_end(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--listen",
        "--server-name",
        "--network",
        "--password",
        "--motd",
        "--max-clients",
        "--sendq",
        "--recvq",
        "--flood-burst",
        "--flood-rate",
        "--ping-interval",
        "--ping-timeout",
        "--registration-timeout",
        "--log-format",
        "--shards",
        "--io",
        "--tls-listen",
        "--tls-cert",
        "--tls-key",
        "--sts-port",
        "--sts-duration",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    assert!(help.contains("[default: 0.0.0.0:6667]"));
    assert!(help.contains("[env: RINGCHAT_SENDQ=]"));
}

#[test]
fn sigterm_sends_error_to_clients_and_exits_zero() {
    let addr = free_port();
    let mut server = start(addr, &["--io", "uring"]);
    let mut alice = Client::connect(addr);
    alice.nick = "alice".into();
    alice.send("NICK alice");
    alice.send("USER alice 0 * :A");
    alice.skip_until(|line| common::has_numeric(line, "422"));
    // SAFETY: signalling our own child process.
    unsafe {
        libc::kill(server.id() as libc::pid_t, libc::SIGTERM);
    }
    assert_eq!(
        alice.expect_closed(),
        ["ERROR :Closing Link: 127.0.0.1 (Server shutting down)"]
    );
    let status = server.wait().expect("wait for ringchat");
    assert!(status.success(), "{status:?}");
}

#[test]
fn environment_variables_set_flags() {
    let addr = free_port();
    let mut server = ringchat()
        .env("RINGCHAT_LISTEN", addr.to_string())
        .env("RINGCHAT_SERVER_NAME", "env.example")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + common::HANG;
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut client = Client::connect(addr);
    client.send("PING :x");
    client.expect(":env.example PONG env.example :x");
    server.kill().expect("kill");
    let _ = server.wait();
}

/// Runs the binary with 64 descriptors and 100 clients: accepting stops with one
/// warning, and every queued client is served once earlier ones leave.
fn serve_past_the_descriptor_limit(io: &str) {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    let addr = free_port();
    let mut command = ringchat();
    command
        .args([
            "--listen",
            &addr.to_string(),
            "--shards",
            "1",
            "--max-clients",
            "1000",
            "--io",
            io,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; it runs in the child before exec.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 64,
                rlim_max: 64,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut server = command.spawn().expect("spawn ringchat");
    let (log_tx, log_rx) = std::sync::mpsc::channel();
    let stderr = server.stderr.take().expect("piped stderr");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = log_tx.send(line);
        }
    });
    let deadline = Instant::now() + common::HANG;
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    // More connections than descriptors: the kernel queues them, accept fails.
    let mut crowd: std::collections::VecDeque<Client> =
        (0..100).map(|_| Client::connect(addr)).collect();
    let warned = std::iter::from_fn(|| log_rx.recv_timeout(common::HANG).ok())
        .any(|line| line.contains("accept failed: out of resources"));
    assert!(
        warned,
        "no out-of-resources warning within {:?}",
        common::HANG
    );
    // The earliest were accepted; closing them frees descriptors for the ones still
    // queued, in order, and each is served.
    while let Some(mut client) = crowd.pop_front() {
        client.send("PING :hello");
        client.expect(":ringchat.local PONG ringchat.local :hello");
    }
    let mut late = Client::connect(addr);
    late.send("PING :still");
    late.expect(":ringchat.local PONG ringchat.local :still");
    // SAFETY: signalling our own child process.
    unsafe {
        libc::kill(server.id() as libc::pid_t, libc::SIGTERM);
    }
    let status = server.wait().expect("wait for ringchat");
    assert!(status.success(), "{status:?}");
}

#[test]
fn running_out_of_file_descriptors_pauses_accepting_and_recovers_on_epoll() {
    serve_past_the_descriptor_limit("epoll");
}

#[test]
fn running_out_of_file_descriptors_pauses_accepting_and_recovers_on_io_uring() {
    serve_past_the_descriptor_limit("uring");
}

#[test]
fn a_missing_or_mismatched_certificate_or_key_is_one_line_and_exit_1() {
    let pki = TestPki::new();
    let files = pki.server_files();
    let cert = files.cert.to_string_lossy().into_owned();
    let key = files.key.to_string_lossy().into_owned();
    let other = TestPki::new();
    let other_key = other.server_files().key.to_string_lossy().into_owned();
    let missing = pki.dir().join("missing.pem").to_string_lossy().into_owned();
    let cases: [(&[&str], &str); 5] = [
        (
            &["--tls-cert", &missing, "--tls-key", &key],
            "cannot read TLS certificate",
        ),
        (
            &["--tls-cert", &cert, "--tls-key", &missing],
            "cannot read TLS key",
        ),
        (
            &["--tls-cert", &key, "--tls-key", &key],
            "no certificate in it",
        ),
        (
            &["--tls-cert", &cert, "--tls-key", &other_key],
            "do not go together",
        ),
        (
            &["--tls-cert", &cert],
            "--tls-cert and --tls-key go together",
        ),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["--listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0"];
        args.extend_from_slice(flags);
        let output = run_to_end(&args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let lines = stderr_lines(&output);
        assert_eq!(lines.len(), 1, "{args:?}: {lines:?}");
        assert!(lines[0].contains(expected), "{args:?}: {lines:?}");
    }
    let output = run_to_end(&["--listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr_lines(&output),
        ["ringchat: --tls-listen needs --tls-cert and --tls-key"]
    );
}

#[test]
fn sighup_reloads_the_certificate_and_the_server_keeps_serving() {
    let pki = TestPki::new();
    let files = pki.server_files();
    let (addr, tls_addr) = (free_port(), free_port());
    let mut server = start(
        addr,
        &[
            "--tls-listen",
            &tls_addr.to_string(),
            "--tls-cert",
            &files.cert.to_string_lossy(),
            "--tls-key",
            &files.key.to_string_lossy(),
        ],
    );
    let mut early = Client::connect_tls(tls_addr, pki.client_config());
    let first = early.server_certificates().remove(0);
    let mut early = Client::register(early, "early");

    let renewed = pki.issue_server_certificate();
    sighup_until_renewed(&server, tls_addr, pki.client_config(), &first, &renewed);
    early.expect_nothing();
    let mut plain = Client::connect(addr);
    plain.send("PING :alive");
    plain.expect(":ringchat.local PONG ringchat.local :alive");

    // SAFETY: as above.
    unsafe {
        libc::kill(server.id() as libc::pid_t, libc::SIGTERM);
    }
    let status = server.wait().expect("wait for ringchat");
    assert!(status.success(), "{status:?}");
}

#[test]
fn sighup_without_tls_does_not_stop_the_server() {
    let addr = free_port();
    let mut server = start(addr, &[]);
    // SAFETY: signalling our own child process.
    unsafe {
        libc::kill(server.id() as libc::pid_t, libc::SIGHUP);
    }
    let mut client = Client::connect(addr);
    client.send("PING :alive");
    client.expect(":ringchat.local PONG ringchat.local :alive");
    assert!(server.try_wait().expect("poll ringchat").is_none());
    server.kill().expect("kill");
    let _ = server.wait();
}

#[test]
fn a_second_ringchat_on_the_same_tls_port_fails_despite_so_reuseport() {
    let pki = TestPki::new();
    let files = pki.server_files();
    let (cert, key) = (
        files.cert.to_string_lossy().into_owned(),
        files.key.to_string_lossy().into_owned(),
    );
    let tls_addr = free_port().to_string();
    let tls_flags = [
        "--tls-listen",
        &tls_addr,
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ];
    let mut first = start(free_port(), &tls_flags);
    let mut args = vec!["--listen", "127.0.0.1:0"];
    args.extend_from_slice(&tls_flags);
    let second = run_to_end(&args);
    first.kill().expect("kill");
    let _ = first.wait();
    assert_eq!(second.status.code(), Some(1));
    let lines = stderr_lines(&second);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("address already in use"), "{lines:?}");
    assert!(lines[0].contains(&tls_addr), "{lines:?}");
}

#[test]
fn running_out_of_file_descriptors_pauses_accepting_and_recovers_on_the_ring_driver() {
    serve_past_the_descriptor_limit("ring");
}

#[test]
fn hash_password_prints_an_argon2_hash_of_stdin_that_verifies() {
    use std::io::Write;
    let mut child = ringchat()
        .arg("--hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ringchat --hash-password");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"hunter2\n")
        .expect("write the password");
    let output = child.wait_with_output().expect("ringchat exits");
    assert!(output.status.success(), "{output:?}");
    let hash = String::from_utf8(output.stdout).expect("utf-8");
    let hash = hash.trim_end();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains("hunter2"));
    let block = ringchat::opers::OperBlock {
        name: "admin".to_owned(),
        password_hash: hash.to_owned(),
        hosts: Vec::new(),
    };
    let blocks = [block];
    assert!(ringchat::opers::authenticate(&blocks, "admin", b"hunter2", "~a@h").is_ok());
    assert!(ringchat::opers::authenticate(&blocks, "admin", b"hunter3", "~a@h").is_err());
}
