//! loadgen: a latency and throughput benchmark for any IRC server.
//!
//! It drives real IRC clients over TCP in an open loop (messages are scheduled at a
//! fixed rate and latency is measured from each message's *scheduled* send time, as
//! wrk2 does, so a stalled server cannot hide its stalls: coordinated-omission free),
//! verifies every delivery (loss, duplicates, reordering) and reports percentiles,
//! throughput and the server's CPU and memory.
//!
//! Map of the modules, one concern each:
//! - [`cli`]: the command line (clap) and its value parsers (durations, rates, percents).
//! - [`clock`]: the monotonic nanosecond clock and a timerfd timer precise to microseconds.
//! - [`irc`]: loadgen's own small IRC line reader and the benchmark payload format. It is
//!   not ringchat's parser on purpose, so one parser bug cannot hide on both sides.
//! - [`stats`]: per-sender sequence tracking and the step recorder (HdrHistogram, counters).
//! - [`conn`]: one client connection: connect (TCP or TLS), register, join, answer
//!   PING, read in large chunks, write without blocking.
//! - [`tls`]: the rustls client configuration of `--tls` (trust roots, server name).
//! - [`websocket`]: `--websocket`: the upgrade, framing lines, de-framing the server's.
//! - [`layout`]: who is where: channels, members, senders, nicks, which server of
//!   `--addr` each client connects to, source addresses.
//! - [`scenario`]: the scenarios (fanout, rooms, connect, idle) and the run: threads,
//!   setup, steps, merging, closing.
//! - [`schedule`]: which steps a run takes (rates, repeats, the saturation search).
//! - [`pacer`]: one thread's open-loop pacer and a step's life on that thread.
//! - [`team`]: what the threads of one run share (barrier, step plan, published
//!   counters, step figures handed over to be merged).
//! - [`procstat`]: CPU (nanoseconds, from schedstat) and memory of a process from
//!   /proc; the servers of `--server-pid` (a cluster's nodes) summed, each one's part kept.
//! - [`saturation`]: when loadgen itself is the bottleneck (the pacer behind its
//!   schedule, or its CPU near a core per thread).
//! - [`report`]: the result model (JSON), the terminal tables and the `.hgrm` files.
//! - [`plot`]: latency-by-percentile SVG charts of one or several result files.
//! - [`compare`]: `loadgen compare`, the CI regression check: like with like, one
//!   verdict per figure from the repeated runs.
//! - [`significance`]: the statistics `compare` decides with (Mann-Whitney U, bootstrap
//!   confidence interval of the change of medians).

pub mod cli;
pub mod clock;
pub mod compare;
pub mod conn;
pub mod irc;
pub mod layout;
pub mod pacer;
pub mod plot;
pub mod procstat;
pub mod report;
pub mod saturation;
pub mod scenario;
pub mod schedule;
pub mod significance;
pub mod stats;
pub mod team;
pub mod tls;
pub mod websocket;

/// Exit code for a run that completed but failed verification (loss, duplicates,
/// disconnects) or a comparison that found a regression.
pub const EXIT_FAILED_CHECK: u8 = 1;
/// Exit code for a run that could not be carried out (connection refused, bad input).
pub const EXIT_ERROR: u8 = 2;
