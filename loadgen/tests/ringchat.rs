//! A short real run against an in-process ringchat server (each I/O driver): loadgen
//! and ringchat agree on every delivery, from one loadgen thread or two. Bounded: 16
//! clients, about 2 s per run.

use clap::Parser;
use loadgen::cli::{Cli, Command};
use loadgen::scenario::{self, Scenario};

fn start_ringchat(io: ringchat::IoMode) -> ringchat::Server {
    let mut config = ringchat::Config::loopback();
    config.flood_rate = 0.0;
    config.io = io;
    ringchat::Server::start(config).expect("ringchat starts")
}

fn run_fanout(addr: std::net::SocketAddr, threads: &str) -> loadgen::report::Report {
    let addr = addr.to_string();
    let cli = Cli::try_parse_from([
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
    ])
    .expect("valid command line");
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
    server.shutdown();
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
