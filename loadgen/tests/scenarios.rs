//! End-to-end runs of every scenario against the mock IRC server in `common/`, over
//! real loopback TCP: short, bounded in clients and time.

mod common;

use std::sync::atomic::Ordering;

use clap::Parser;
use loadgen::cli::{Cli, CommonArgs};
use loadgen::report::Report;
use loadgen::scenario::{self, Scenario};

/// Parses a loadgen command line into what `scenario::run` takes.
fn parse(args: &[&str]) -> (Scenario, CommonArgs) {
    let mut argv = vec!["loadgen"];
    argv.extend_from_slice(args);
    let command = Cli::try_parse_from(argv)
        .expect("valid command line")
        .command;
    Scenario::from_command(command).unwrap_or_else(|other| panic!("not a scenario: {other:?}"))
}

fn run(args: &[&str]) -> Report {
    let (scenario, common) = parse(args);
    scenario::run(&scenario, &common).expect("run completes")
}

const SHORT: &[&str] = &[
    "--warmup",
    "200ms",
    "--duration",
    "500ms",
    "--grace",
    "2s",
    "--quiet",
];

fn with(addr: &str, base: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = base.iter().map(|s| s.to_string()).collect();
    v.extend(["--addr".to_string(), addr.to_string()]);
    if matches!(base.first(), Some(&"fanout") | Some(&"rooms")) {
        v.extend(SHORT.iter().map(|s| s.to_string()));
    } else {
        v.push("--quiet".to_string());
    }
    v
}

fn run_with(addr: std::net::SocketAddr, base: &[&str]) -> Report {
    let args = with(&addr.to_string(), base);
    let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    run(&refs)
}

#[test]
fn fanout_steps_verify_every_delivery() {
    let (addr, mock) = common::start(common::Faults::default());
    let report = run_with(
        addr,
        &[
            "fanout",
            "--clients",
            "12",
            "--senders",
            "3",
            "--rate",
            "100,300",
        ],
    );
    assert!(report.ok, "errors: {:?}", report.errors);
    assert_eq!(report.steps.len(), 2);
    assert_eq!(report.server_version.as_deref(), Some("mock-1.0"));
    for (step, rate) in report.steps.iter().zip([100.0, 300.0]) {
        assert_eq!(step.target_rate, rate);
        assert!(step.passed);
        assert_eq!(step.lost, 0);
        assert_eq!(step.counts.duplicates, 0);
        // 11 receivers per message; every sent message accounted for.
        assert_eq!(step.counts.expected, step.counts.sent * 11);
        assert_eq!(step.counts.delivered, step.counts.expected);
        // Measured messages: rate x duration (the pacer is exact in count).
        assert_eq!(step.counts.sent_measured, (rate * 0.5) as u64);
        assert_eq!(step.latency.count, step.counts.delivered_measured);
        assert!(step.latency.p99_us > 0.0);
        assert!(step.latency.spectrum.len() > 10);
        assert!(!step.hgrm.is_empty());
    }
    // Every client answered the mock's PING.
    assert_eq!(mock.pongs.load(Ordering::Relaxed), 12);
}

#[test]
fn dropped_deliveries_are_counted_exactly_and_fail_the_run() {
    let faults = common::Faults {
        drop_every: 97,
        ..Default::default()
    };
    let (addr, mock) = common::start(faults);
    let report = run_with(
        addr,
        &[
            "fanout",
            "--clients",
            "8",
            "--senders",
            "2",
            "--rate",
            "200",
        ],
    );
    assert!(!report.ok);
    let step = &report.steps[0];
    assert!(!step.passed);
    let dropped = mock.dropped.load(Ordering::Relaxed);
    assert!(dropped > 0);
    assert_eq!(step.lost, dropped);
    assert_eq!(
        step.counts.delivered,
        mock.deliveries.load(Ordering::Relaxed)
    );
}

#[test]
fn duplicated_deliveries_are_counted() {
    let faults = common::Faults {
        duplicate_every: 50,
        ..Default::default()
    };
    let (addr, mock) = common::start(faults);
    let report = run_with(
        addr,
        &[
            "rooms",
            "--clients",
            "9",
            "--channels",
            "3",
            "--rate",
            "150",
        ],
    );
    let step = &report.steps[0];
    assert_eq!(
        step.counts.duplicates,
        mock.duplicated.load(Ordering::Relaxed)
    );
    assert!(step.counts.duplicates > 0);
    assert_eq!(step.lost, 0);
    assert!(!report.ok);
}

#[test]
fn rooms_with_senders_per_channel() {
    let (addr, _mock) = common::start(common::Faults::default());
    let report = run_with(
        addr,
        &[
            "rooms",
            "--clients",
            "12",
            "--channels",
            "4",
            "--senders",
            "1",
            "--rate",
            "100",
        ],
    );
    assert!(report.ok, "errors: {:?}", report.errors);
    let step = &report.steps[0];
    // 3 members per channel: each message reaches 2.
    assert_eq!(step.counts.expected, step.counts.sent * 2);
    assert_eq!(step.lost, 0);
}

#[test]
fn connect_storm_reports_rate_and_time_to_welcome() {
    let (addr, _mock) = common::start(common::Faults::default());
    let report = run_with(
        addr,
        &["connect", "--clients", "40", "--connect-concurrency", "4"],
    );
    assert!(report.ok, "errors: {:?}", report.errors);
    assert_eq!(report.steps.len(), 1);
    let step = &report.steps[0];
    assert_eq!(step.label, "connect");
    assert_eq!(step.latency.count, 40);
    assert!(step.throughput_per_s > 0.0);
}

#[test]
fn idle_holds_clients_and_samples_the_server() {
    let (addr, _mock) = common::start(common::Faults::default());
    let pid = std::process::id().to_string();
    let report = run_with(
        addr,
        &[
            "idle",
            "--clients",
            "20",
            "--hold",
            "300ms",
            "--server-pid",
            &pid,
        ],
    );
    assert!(report.ok, "errors: {:?}", report.errors);
    let idle = report.idle.expect("idle figures");
    assert_eq!(idle.clients, 20);
    assert!(idle.server_rss_before.is_some() && idle.server_bytes_per_client.is_some());
}

#[test]
fn refused_connection_is_one_clear_error() {
    // Bind then drop a listener: its port now refuses connections.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let (scenario, common) = parse(&[
        "fanout",
        "--clients",
        "3",
        "--addr",
        &format!("127.0.0.1:{port}"),
        "--quiet",
    ]);
    let error = scenario::run(&scenario, &common).expect_err("must fail");
    let text = format!("{error:#}");
    assert!(
        text.contains("cannot connect to 127.0.0.1") && text.contains("refused"),
        "{text}"
    );
}

#[test]
fn saturation_search_finds_a_passing_rate() {
    let (addr, _mock) = common::start(common::Faults::default());
    let report = run_with(
        addr,
        &[
            "fanout",
            "--clients",
            "4",
            "--senders",
            "2",
            "--rate",
            "100",
            "--find-max",
            "--max-probes",
            "3",
            "--p99-max",
            "1s",
        ],
    );
    assert_eq!(report.steps.len(), 3);
    assert_eq!(report.max_rate, Some(400.0));
    assert!(report.ok);
}

#[test]
fn two_threads_send_the_same_schedule_and_merge_every_figure() {
    let (addr, mock) = common::start(common::Faults::default());
    let report = run_with(
        addr,
        &[
            "fanout",
            "--clients",
            "12",
            "--senders",
            "3",
            "--rate",
            "300",
            "--threads",
            "2",
        ],
    );
    assert!(report.ok, "errors: {:?}", report.errors);
    let step = &report.steps[0];
    // One thread or two, the schedule is the same: rate x measured duration.
    assert_eq!(step.counts.sent_measured, 150);
    assert_eq!(step.counts.expected, step.counts.sent * 11);
    assert_eq!(step.counts.delivered, step.counts.expected);
    assert_eq!(
        step.counts.delivered,
        mock.deliveries.load(Ordering::Relaxed)
    );
    assert_eq!(step.latency.count, step.counts.delivered_measured);
    assert_eq!(step.lost, 0);
    assert_eq!(mock.pongs.load(Ordering::Relaxed), 12);
}

#[test]
fn repeat_runs_the_rate_list_round_robin() {
    let (addr, _mock) = common::start(common::Faults::default());
    let report = run_with(
        addr,
        &[
            "fanout",
            "--clients",
            "4",
            "--senders",
            "2",
            "--rate",
            "100,200",
            "--repeat",
            "3",
        ],
    );
    assert!(report.ok, "errors: {:?}", report.errors);
    let order: Vec<(String, u32)> = report
        .steps
        .iter()
        .map(|s| (s.label.clone(), s.repeat))
        .collect();
    let expected: Vec<(String, u32)> = (1..=3)
        .flat_map(|run| [("rate=100".to_string(), run), ("rate=200".to_string(), run)])
        .collect();
    assert_eq!(order, expected);
    assert!(report.steps.iter().all(|s| s.passed && s.lost == 0));
}

#[test]
fn repeat_with_find_max_or_threads_with_connect_is_refused() {
    let (scenario, common) = parse(&[
        "fanout",
        "--find-max",
        "--repeat",
        "3",
        "--addr",
        "127.0.0.1:1",
    ]);
    let e = scenario::run(&scenario, &common).expect_err("refused");
    assert!(e.to_string().contains("--repeat"), "{e}");
    let (scenario, common) = parse(&["connect", "--threads", "2", "--addr", "127.0.0.1:1"]);
    let e = scenario::run(&scenario, &common).expect_err("refused");
    assert!(e.to_string().contains("--threads"), "{e}");
}

#[test]
fn throttled_deliveries_are_late_not_lost_and_the_backlog_is_recognised() {
    // 2 senders at 50 messages/s each against a server that takes 25/s from each:
    // every sender falls 25 messages/s further behind, as under flood control.
    let faults = common::Faults {
        throttle: std::time::Duration::from_millis(40),
        ..Default::default()
    };
    let (addr, _mock) = common::start(faults);
    let report = run(&[
        "fanout",
        "--addr",
        &addr.to_string(),
        "--clients",
        "4",
        "--senders",
        "2",
        "--rate",
        "100",
        "--warmup",
        "200ms",
        "--duration",
        "1s",
        "--grace",
        "400ms",
        "--quiet",
    ]);
    assert!(!report.ok, "delayed deliveries fail the run");
    let step = &report.steps[0];
    assert!(step.fell_behind_steadily, "{step:?}");
    assert!(step.late > 0, "the backlog drains after the grace period");
    assert_eq!(
        step.counts.delivered + step.late + step.lost,
        step.counts.expected,
        "every expected delivery is on time, late or lost"
    );
}

#[test]
fn a_refused_connection_with_two_threads_is_one_error_not_a_hang() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    drop(listener);
    let (scenario, common) = parse(&[
        "fanout",
        "--addr",
        &addr,
        "--clients",
        "4",
        "--threads",
        "2",
        "--quiet",
    ]);
    let e = scenario::run(&scenario, &common).expect_err("refused");
    assert!(e.to_string().contains("could not be set up"), "{e}");
}
