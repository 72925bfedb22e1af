//! A short real run against an in-process ringchat server (each I/O driver): loadgen
//! and ringchat agree on every delivery, from one loadgen thread or two; and runs
//! spread over two servers (`--addr a,b`). Bounded: at most 20 clients, about 5 s per
//! run.

use clap::Parser;
use loadgen::cli::{Cli, Command};
use loadgen::report::{AddrClients, Report};
use loadgen::scenario::{self, Scenario};

fn start_ringchat(io: ringchat::IoMode) -> ringchat::Server {
    let mut config = ringchat::Config::loopback();
    config.flood_rate = 0.0;
    config.io = io;
    ringchat::Server::start(config).expect("ringchat starts")
}

fn run_fanout(addr: std::net::SocketAddr, threads: &str) -> loadgen::report::Report {
    run_fanout_with(addr, threads, &[])
}

fn run_fanout_with(
    addr: std::net::SocketAddr,
    threads: &str,
    extra: &[&str],
) -> loadgen::report::Report {
    let addr = addr.to_string();
    let mut argv = vec![
        "loadgen",
        "fanout",
        "--addr",
        &addr,
        "--clients",
        "16",
        "--senders",
        "4",
        "--rate",
        "200,800",
        "--warmup",
        "200ms",
        "--duration",
        "500ms",
        "--grace",
        "3s",
        "--threads",
        threads,
        "--quiet",
    ];
    argv.extend_from_slice(extra);
    let cli = Cli::try_parse_from(argv).expect("valid command line");
    let Command::Fanout {
        common,
        traffic,
        senders,
    } = cli.command
    else {
        unreachable!("parsed as fanout")
    };
    scenario::run(&Scenario::Fanout { traffic, senders }, &common).expect("run completes")
}

fn check(io: ringchat::IoMode, threads: &str) {
    let server = start_ringchat(io);
    let report = run_fanout(server.local_addr(), threads);
    check_report(io, &report);
    server.shutdown();
}

fn check_report(io: ringchat::IoMode, report: &Report) {
    assert!(report.ok, "{io:?}: errors {:?}", report.errors);
    assert!(report
        .server_version
        .as_deref()
        .is_some_and(|v| v.contains("ringchat")));
    for step in &report.steps {
        assert_eq!(step.lost, 0, "{io:?} {}", step.label);
        assert_eq!(step.counts.duplicates, 0);
        assert_eq!(step.counts.reordered, 0, "per-sender order is guaranteed");
        assert_eq!(step.counts.expected, step.counts.sent * 15);
        assert!(step.latency.count > 0);
    }
}

#[test]
fn fanout_over_websocket_against_ringchat() {
    for io in [ringchat::IoMode::Ring, ringchat::IoMode::Epoll] {
        let mut config = ringchat::Config::loopback();
        config.flood_rate = 0.0;
        config.io = io;
        config.websocket_listen = vec![std::net::SocketAddr::from(([127, 0, 0, 1], 0))];
        let server = ringchat::Server::start(config).expect("ringchat starts");
        let report = run_fanout_with(server.websocket_local_addrs()[0], "1", &["--websocket"]);
        check_report(io, &report);
        server.shutdown();
    }
}

#[test]
fn fanout_against_ringchat_epoll() {
    check(ringchat::IoMode::Epoll, "1");
}

#[test]
fn fanout_against_ringchat_auto_driver() {
    // io_uring where the kernel allows it, else epoll.
    check(ringchat::IoMode::Auto, "1");
}

#[test]
fn fanout_against_ringchat_from_two_threads() {
    check(ringchat::IoMode::Auto, "2");
}

/// Runs a scenario command line (`--quiet` added).
fn run_args(args: &[&str]) -> Report {
    let mut argv = vec!["loadgen"];
    argv.extend_from_slice(args);
    argv.push("--quiet");
    let command = Cli::try_parse_from(argv)
        .expect("valid command line")
        .command;
    let (scenario, common) =
        Scenario::from_command(command).unwrap_or_else(|other| panic!("not a scenario: {other:?}"));
    scenario::run(&scenario, &common).expect("run completes")
}

fn per_addr(a: std::net::SocketAddr, b: std::net::SocketAddr, each: u32) -> Vec<AddrClients> {
    [a, b]
        .iter()
        .map(|addr| AddrClients {
            addr: addr.to_string(),
            clients: each,
        })
        .collect()
}

#[test]
fn fanout_spreads_senders_and_members_over_two_servers() {
    // Two standalone servers, not a cluster: a message reaches only the members on its
    // sender's server. With 20 clients alternating over the two and the 2 senders
    // (clients 0 and 1) one on each, every message reaches exactly the 9 other members
    // of its server and misses the 10 on the other: that count shows the split.
    let a = start_ringchat(ringchat::IoMode::Auto);
    let b = start_ringchat(ringchat::IoMode::Auto);
    let addrs = format!("{},{}", a.local_addr(), b.local_addr());
    let report = run_args(&[
        "fanout",
        "--addr",
        &addrs,
        "--clients",
        "20",
        "--senders",
        "2",
        "--rate",
        "100",
        "--warmup",
        "200ms",
        "--duration",
        "500ms",
        "--grace",
        "2s",
    ]);
    assert_eq!(
        report.clients_per_addr,
        per_addr(a.local_addr(), b.local_addr(), 10)
    );
    assert_eq!(report.error_count, 0, "errors {:?}", report.errors);
    assert!(
        !report.ok,
        "the other server's members cannot have received"
    );
    let step = &report.steps[0];
    assert!(step.counts.sent > 0);
    assert_eq!(step.counts.expected, step.counts.sent * 19);
    assert_eq!(step.lost, step.counts.sent * 10, "late: {}", step.late);
    assert_eq!(step.counts.duplicates, 0);
    a.shutdown();
    b.shutdown();
}

#[test]
fn connect_over_two_servers_reports_each_server_process() {
    // Both in-process servers are this process; a second pid (the parent) stands in for
    // the other node's process, to see the sum and the parts reported.
    let a = start_ringchat(ringchat::IoMode::Auto);
    let b = start_ringchat(ringchat::IoMode::Auto);
    let addrs = format!("{},{}", a.local_addr(), b.local_addr());
    let me = std::process::id();
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() } as u32;
    let pids = format!("{me},{parent}");
    let report = run_args(&[
        "connect",
        "--addr",
        &addrs,
        "--clients",
        "6",
        "--server-pid",
        &pids,
    ]);
    assert!(report.ok, "errors {:?}", report.errors);
    assert_eq!(
        report.clients_per_addr,
        per_addr(a.local_addr(), b.local_addr(), 3)
    );
    let step = &report.steps[0];
    let total = step.server.expect("servers sampled");
    let by_pid: Vec<u32> = step.server_by_pid.iter().map(|p| p.pid).collect();
    assert_eq!(by_pid, vec![me, parent]);
    let rss_sum: u64 = step.server_by_pid.iter().map(|p| p.usage.rss_bytes).sum();
    assert_eq!(total.rss_bytes, rss_sum);
    a.shutdown();
    b.shutdown();
}
