//! Prometheus metrics on `--metrics ADDR`: a small HTTP/1.1 responder on a thread of
//! its own (never a shard) that renders, per scrape, the counters the shards already
//! publish about once a second. It adds nothing to the message path: shards count
//! locally as they always did, and a scrape only reads the published atomics (the
//! user, channel and operator counts too: the shards publish their replica's figures
//! the same way, `Shared::population`).

use crate::config::IoMode;
use crate::state::shared::CounterSnapshot;
use crate::state::Shared;
use anyhow::Context;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};
use tracing::{debug, info};

/// Longest a scraper may take to send its request or read the answer; one slow
/// scraper delays the next by at most this.
const SCRAPE_IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest request head read; a longer one is answered 431 and closed.
const MAX_REQUEST_HEAD: usize = 8 << 10;

/// A per-shard metric: name, type, help, and the counter it reads.
type ShardMetric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&CounterSnapshot) -> u64,
);

/// The per-shard counters: one table, so a counter added to `CounterSnapshot` is one
/// line here.
const SHARD_METRICS: &[ShardMetric] = &[
    (
        "ringchat_connections",
        "gauge",
        "Connections open on the shard.",
        |c| c.connections,
    ),
    (
        "ringchat_accepted_total",
        "counter",
        "Connections accepted since start.",
        |c| c.accepted,
    ),
    (
        "ringchat_lines_in_total",
        "counter",
        "Lines read from clients.",
        |c| c.lines_in,
    ),
    (
        "ringchat_deliveries_total",
        "counter",
        "Lines queued for delivery to clients.",
        |c| c.deliveries,
    ),
    (
        "ringchat_bytes_out_total",
        "counter",
        "Bytes the kernel accepted for sending.",
        |c| c.bytes_out,
    ),
    (
        "ringchat_reads_total",
        "counter",
        "Read operations completed by the I/O driver.",
        |c| c.reads,
    ),
    (
        "ringchat_writes_total",
        "counter",
        "Vectored writes completed by the I/O driver.",
        |c| c.writes,
    ),
    (
        "ringchat_enters_total",
        "counter",
        "io_uring_enter calls made by the ring driver (0 on the other drivers).",
        |c| c.enters,
    ),
    (
        "ringchat_receive_buffer_waits_total",
        "counter",
        "Receives the ring driver re-armed because its receive buffers were all in use.",
        |c| c.receive_buffer_waits,
    ),
    (
        "ringchat_sendq_disconnects_total",
        "counter",
        "Clients dropped for exceeding their sendq.",
        |c| c.sendq_disconnects,
    ),
    (
        "ringchat_flood_disconnects_total",
        "counter",
        "Clients dropped for flooding (recvq exceeded).",
        |c| c.flood_disconnects,
    ),
    (
        "ringchat_logins_total",
        "counter",
        "Logins to an account that succeeded (SASL, IDENTIFY, PASS, REGISTER).",
        |c| c.logins,
    ),
    (
        "ringchat_login_failures_total",
        "counter",
        "Logins refused: wrong password, unknown account, unlisted certificate.",
        |c| c.login_failures,
    ),
    (
        "ringchat_sasl_malformed_total",
        "counter",
        "AUTHENTICATE input refused unchecked: malformed, oversize, unknown mechanism.",
        |c| c.sasl_malformed,
    ),
    (
        "ringchat_auth_busy_total",
        "counter",
        "Password checks refused because the authentication workers were busy.",
        |c| c.auth_busy,
    ),
    (
        "ringchat_write_timeouts_total",
        "counter",
        "Connections closed or reset because their output made no progress.",
        |c| c.write_timeouts,
    ),
    (
        "ringchat_refused_full_total",
        "counter",
        "Connections refused: max-clients reached.",
        |c| c.refused_full,
    ),
    (
        "ringchat_refused_per_source_total",
        "counter",
        "Connections refused: the source held max-per-source connections.",
        |c| c.refused_per_source,
    ),
    (
        "ringchat_refused_too_fast_total",
        "counter",
        "Connections refused: the source connected faster than its rate.",
        |c| c.refused_too_fast,
    ),
    (
        "ringchat_refused_unregistered_total",
        "counter",
        "Connections refused: too many unregistered connections.",
        |c| c.refused_unregistered,
    ),
    (
        "ringchat_refused_banned_total",
        "counter",
        "Connections refused: a DLINE covers the address (KLINEs close at registration).",
        |c| c.refused_banned,
    ),
    (
        "ringchat_events_proposed_total",
        "counter",
        "Network-state events this shard appended to the event log.",
        |c| c.events_proposed,
    ),
    (
        "ringchat_events_applied_total",
        "counter",
        "Network-state events this shard took in from the event log.",
        |c| c.events_applied,
    ),
    (
        "ringchat_handoff_batches_total",
        "counter",
        "Hand-off batches sent to other shards.",
        |c| c.handoff_batches,
    ),
];

/// Binds `addr` and serves `/metrics` on a thread of its own for the life of the
/// process; returns the bound address (the real port when 0 was asked for).
pub fn serve(addr: SocketAddr, shared: Arc<Shared>, driver: IoMode) -> anyhow::Result<SocketAddr> {
    let listener =
        TcpListener::bind(addr).with_context(|| format!("cannot serve metrics on {addr}"))?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("metrics".to_owned())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => {
                        if let Err(error) = answer(stream, &shared, driver) {
                            debug!(%error, "metrics request failed");
                        }
                    }
                    Err(error) => {
                        debug!(%error, "metrics accept failed");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })
        .context("cannot start the metrics thread")?;
    info!("metrics on http://{bound}/metrics");
    Ok(bound)
}

/// Reads one request head and answers it, then closes (`Connection: close`).
fn answer(mut stream: TcpStream, shared: &Shared, driver: IoMode) -> std::io::Result<()> {
    stream.set_read_timeout(Some(SCRAPE_IO_TIMEOUT))?;
    stream.set_write_timeout(Some(SCRAPE_IO_TIMEOUT))?;
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() >= MAX_REQUEST_HEAD {
            return respond(&mut stream, "431 Request Header Fields Too Large", "");
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let request_line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = request_line.split(|&b| b == b' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    match (method, path) {
        (b"GET", b"/metrics") => respond(&mut stream, "200 OK", &render(shared, driver)),
        (b"GET", _) => respond(&mut stream, "404 Not Found", "try /metrics\n"),
        _ => respond(&mut stream, "405 Method Not Allowed", ""),
    }
}

fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

/// The whole exposition, Prometheus text format 0.0.4.
pub fn render(shared: &Shared, driver: IoMode) -> String {
    let mut out = String::with_capacity(4096);
    let driver = match driver {
        IoMode::Uring | IoMode::Auto => "uring",
        IoMode::Epoll => "epoll",
        IoMode::Ring => "ring",
    };
    family(
        &mut out,
        "ringchat_build_info",
        "gauge",
        "Version and I/O driver; always 1.",
    );
    let _ = writeln!(
        out,
        "ringchat_build_info{{version=\"{}\",driver=\"{driver}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    let shards: Vec<CounterSnapshot> = shared.counters.iter().map(|c| c.snapshot()).collect();
    for (name, kind, help, field) in SHARD_METRICS {
        family(&mut out, name, kind, help);
        for (shard, counts) in shards.iter().enumerate() {
            let _ = writeln!(out, "{name}{{shard=\"{shard}\"}} {}", field(counts));
        }
    }
    let (users, channels, opers) = shared.population();
    let started = shared
        .started
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let gauges = [
        (
            "ringchat_users",
            "Registered users on the server.",
            users as u64,
        ),
        ("ringchat_channels", "Channels that exist.", channels as u64),
        (
            "ringchat_opers",
            "Users who are server operators (+o).",
            opers as u64,
        ),
        (
            "ringchat_open_connections",
            "Connections open on all shards, counted as they open and close.",
            shared.connections.load(Ordering::Relaxed) as u64,
        ),
        (
            "ringchat_max_clients",
            "Most simultaneous connections (--max-clients).",
            shared.live.max_clients() as u64,
        ),
        (
            "ringchat_start_time_seconds",
            "Start time, seconds since the Unix epoch.",
            started,
        ),
    ];
    for (name, help, value) in gauges {
        family(&mut out, name, "gauge", help);
        let _ = writeln!(out, "{name} {value}");
    }
    if let Some(cluster) = &shared.cluster {
        render_cluster(&mut out, cluster);
    }
    out
}

/// A cluster node's figures (the same as `STATS C`), labelled with its node number.
fn render_cluster(out: &mut String, cluster: &crate::state::cluster::ClusterState) {
    let c = &cluster.counters;
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    let (applied, last) = (load(&c.stream_applied), load(&c.stream_last));
    let node = cluster.node;
    let metrics = [
        (
            "ringchat_cluster_connected",
            "gauge",
            "1 while the node reaches NATS.",
            u64::from(cluster.is_connected()),
        ),
        (
            "ringchat_cluster_nodes_alive",
            "gauge",
            "Nodes this node hears from, itself included.",
            load(&c.nodes_alive),
        ),
        (
            "ringchat_cluster_applied",
            "gauge",
            "Last cluster log entry applied on this node.",
            applied,
        ),
        (
            "ringchat_cluster_log_lag",
            "gauge",
            "Cluster log entries published but not yet applied here.",
            last.saturating_sub(applied),
        ),
        (
            "ringchat_cluster_events_in_total",
            "counter",
            "Cluster log entries applied on this node.",
            load(&c.events_in),
        ),
        (
            "ringchat_cluster_events_out_total",
            "counter",
            "Events this node published to the cluster log.",
            load(&c.events_out),
        ),
        (
            "ringchat_cluster_messages_in_total",
            "counter",
            "Cross-node messages received.",
            load(&c.messages_in),
        ),
        (
            "ringchat_cluster_messages_out_total",
            "counter",
            "Cross-node messages published (one per destination node).",
            load(&c.messages_out),
        ),
        (
            "ringchat_cluster_apply_lag_p50_microseconds",
            "gauge",
            "Median time from another node's publication of an event to its append here.",
            load(&c.lag_p50_micros),
        ),
        (
            "ringchat_cluster_apply_lag_p99_microseconds",
            "gauge",
            "99th percentile of the same.",
            load(&c.lag_p99_micros),
        ),
        (
            "ringchat_cluster_nodes_lost_total",
            "counter",
            "Nodes this node declared lost.",
            load(&c.nodes_lost),
        ),
        (
            "ringchat_cluster_snapshots_total",
            "counter",
            "Snapshots this node wrote.",
            load(&c.snapshots),
        ),
    ];
    for (name, kind, help, value) in metrics {
        family(out, name, kind, help);
        let _ = writeln!(out, "{name}{{node=\"{node}\"}} {value}");
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}
