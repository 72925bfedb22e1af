//! One thread's open-loop pacer and a step's life on that thread: send on schedule,
//! wait out the grace period (over every thread), hand the figures to the team; the
//! first thread also samples /proc over the measured window and prints progress.
//!
//! Must not: wait for a server (open loop: a late message is sent late and its latency
//! counts from when it was due), or hold the recorder's `RefCell` across an `.await`.

use std::rc::Rc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cli::{CommonArgs, TrafficArgs};
use crate::clock::PreciseTimer;
use crate::conn::{Conn, RunShared};
use crate::irc::{write_privmsg, Payload};
use crate::layout::Layout;
use crate::procstat::{self, ProcUsage, ServerUsage};
use crate::report;
use crate::team::StepShare;

/// One sender: where it sends and its next sequence number (kept across steps).
struct SenderState {
    /// Its position in the run's sender list: message k is sent by sender k mod S.
    order: usize,
    client: usize,
    channel: usize,
    slot: u32,
    next_seq: u64,
}

/// The open-loop pacer of one thread: message k of a step is due at `t0 + k / rate`,
/// from sender `k mod S` of the run's S senders, whatever happened to earlier
/// messages. Each thread sends only its own senders' messages, on the same global
/// schedule, so N threads together send exactly what one would.
pub struct Pacer {
    layout_channels: Vec<(String, u32)>,
    /// This thread's connections by client number (None: another thread's client).
    conns: Vec<Option<Rc<Conn>>>,
    /// The run's number of senders, over every thread.
    all_senders: usize,
    /// This thread's senders, by `order`.
    senders: Vec<SenderState>,
    /// The step flags (durations, grace, size).
    pub traffic: TrafficArgs,
    timer: PreciseTimer,
    /// The step being (or last) run, stamped in every payload.
    pub step: u32,
}

impl Pacer {
    pub fn new(
        layout: &Layout,
        conns: &[Rc<Conn>],
        traffic: &TrafficArgs,
        threads: usize,
        thread: usize,
    ) -> Result<Self> {
        // Interleave channels so consecutive messages go to different channels.
        let mut all = Vec::new();
        let most = layout
            .channels
            .iter()
            .map(|c| c.senders.len())
            .max()
            .unwrap_or(0);
        for slot in 0..most {
            for (k, ch) in layout.channels.iter().enumerate() {
                if let Some(&client) = ch.senders.get(slot) {
                    all.push((client, k, slot as u32));
                }
            }
        }
        if all.is_empty() {
            bail!("no senders");
        }
        let mut by_client: Vec<Option<Rc<Conn>>> = vec![None; layout.clients.len()];
        for conn in conns {
            by_client[conn.index] = Some(conn.clone());
        }
        let all_senders = all.len();
        let senders = all
            .into_iter()
            .enumerate()
            .filter(|(_, (client, _, _))| client % threads == thread)
            .map(|(order, (client, channel, slot))| SenderState {
                order,
                client,
                channel,
                slot,
                next_seq: 0,
            })
            .collect();
        Ok(Self {
            layout_channels: layout
                .channels
                .iter()
                .map(|c| (c.name.clone(), c.members))
                .collect(),
            conns: by_client,
            all_senders,
            senders,
            traffic: traffic.clone(),
            timer: PreciseTimer::new().context("cannot create a timerfd")?,
            step: 0,
        })
    }

    /// Runs this thread's part of step `step` at `rate` messages/s from `t0`: warm-up,
    /// measured window, grace for deliveries in flight (over every thread); hands its
    /// figures to the team. The first thread also samples the server and shows progress.
    pub async fn run_step(
        &mut self,
        shared: &Rc<RunShared>,
        common: &CommonArgs,
        step: u32,
        rate: f64,
        t0: u64,
    ) {
        self.step = step;
        let leader = shared.thread == 0;
        let warmup = self.traffic.warmup.as_nanos() as u64;
        let duration = self.traffic.duration.as_nanos().max(1) as u64;
        let window = (t0 + warmup, t0 + warmup + duration);
        let grace_end = window.1 + self.traffic.grace.as_nanos() as u64;
        let errors_before = shared.error_count.get();
        shared.recorder.borrow_mut().begin_step(step, window);
        shared.publish(&shared.recorder.borrow());

        let sampler = leader.then(|| {
            tokio::task::spawn_local(sample_window(
                shared.clone(),
                window,
                common.server_pid.clone(),
            ))
        });
        let progress = (leader && !common.quiet).then(|| {
            tokio::task::spawn_local(show_progress(shared.clone(), rate, t0, window, grace_end))
        });

        let send_failures = self.send_all(shared, rate, t0, window).await;
        shared.publish(&shared.recorder.borrow());
        shared.team.sync().await; // every thread sent its last message

        // Grace: wait for deliveries in flight on every thread, ending when all are in.
        loop {
            let counts = shared.team.counts();
            if counts.delivered >= counts.expected || shared.now_rel() >= grace_end {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        shared.recorder.borrow_mut().end_step();
        if let Some(progress) = progress {
            progress.abort();
        }
        if let Some(sampler) = sampler {
            match sampler.await {
                Ok(usage) => shared.window_usage.set(Some(usage)),
                Err(e) => shared.error(format!("the /proc sampler failed: {e}")),
            }
        }
        if send_failures > 0 {
            shared.error(format!("step at {rate}/s: {send_failures} messages could not be sent (connection broken or not reading)"));
        }
        let recorder = shared.recorder.borrow();
        shared.team.hand_over(StepShare {
            latency: recorder.latency.clone(),
            send_lag: recorder.send_lag.clone(),
            counts: recorder.counts,
            backlog: recorder.backlog,
            send_backlog: recorder.send_backlog,
            longest_gap_ns: recorder.longest_gap_ns,
            send_failures,
            errors: shared.error_count.get() - errors_before,
        });
    }

    /// Sends this thread's messages of the step on schedule; the number that could
    /// not be sent (broken connections).
    async fn send_all(
        &mut self,
        shared: &RunShared,
        rate: f64,
        t0: u64,
        window: (u64, u64),
    ) -> u64 {
        let interval = 1e9 / rate;
        let due = |k: u64| t0 + (k as f64 * interval) as u64;
        let all = self.all_senders as u64;
        // Message k = round * S + order: this thread's senders in order, round by round.
        let (mut round, mut next) = (0u64, 0usize);
        let k_of = |round: u64, next: usize, senders: &[SenderState]| {
            round * all + senders.get(next).map_or(0, |s| s.order as u64)
        };
        let mut send_failures = 0u64;
        let mut line = Vec::with_capacity(600);
        let mut dirty: Vec<usize> = Vec::new();
        let start_ns = shared.start_ns;
        if self.senders.is_empty() {
            sleep_until_rel(shared, window.1).await;
            return 0;
        }
        while due(k_of(round, next, &self.senders)) < window.1 {
            let now = shared.now_rel();
            let first = due(k_of(round, next, &self.senders));
            if first > now {
                if let Err(e) = self.timer.sleep_until(start_ns + first).await {
                    shared.error(format!("timerfd wait failed, step cut short: {e}"));
                    break;
                }
                continue;
            }
            {
                let mut recorder = shared.recorder.borrow_mut();
                // Everything due now, in one batch (bounded, so receivers get a turn).
                for _ in 0..4096 {
                    let sched = due(k_of(round, next, &self.senders));
                    if sched > now || sched >= window.1 {
                        break;
                    }
                    let own_senders = self.senders.len();
                    let sender = &mut self.senders[next];
                    next += 1;
                    if next == own_senders {
                        next = 0;
                        round += 1;
                    }
                    let (channel, members) = &self.layout_channels[sender.channel];
                    let payload = Payload {
                        step: self.step,
                        slot: sender.slot,
                        seq: sender.next_seq,
                        sched_ns: sched,
                    };
                    line.clear();
                    write_privmsg(&mut line, channel, &payload, self.traffic.size);
                    let Some(conn) = &self.conns[sender.client] else {
                        continue;
                    };
                    if conn.queue(&line) {
                        sender.next_seq += 1;
                        let counts = &mut recorder.counts;
                        counts.sent += 1;
                        counts.expected += (*members as u64).saturating_sub(1);
                        if sched >= window.0 {
                            counts.sent_measured += 1;
                        }
                        let lag = (now - sched).max(1);
                        recorder.send_lag.saturating_record(lag);
                        recorder.send_backlog.record(sched, lag, window);
                        if !conn.dirty.replace(true) {
                            dirty.push(sender.client);
                        }
                    } else {
                        send_failures += 1;
                    }
                }
                shared.publish(&recorder);
            }
            for client in dirty.drain(..) {
                if let Some(conn) = &self.conns[client] {
                    conn.dirty.set(false);
                    conn.flush();
                }
            }
            tokio::task::yield_now().await;
        }
        send_failures
    }
}

/// Samples the server and loadgen at the start and end of the measured window.
/// A server that cannot be read (it exited) is an error in the report, not a stop.
async fn sample_window(
    shared: Rc<RunShared>,
    window: (u64, u64),
    pids: Vec<u32>,
) -> (Option<ServerUsage>, ProcUsage) {
    let sample = |shared: &RunShared| {
        let server = procstat::sample_servers(&pids).unwrap_or_else(|e| {
            shared.error(format!("{e:#}"));
            None
        });
        (server, procstat::sample(None).unwrap_or_default())
    };
    sleep_until_rel(&shared, window.0).await;
    let (server_start, own_start) = sample(&shared);
    let started = shared.now_rel();
    sleep_until_rel(&shared, window.1).await;
    let (server_end, own_end) = sample(&shared);
    let wall_s = (shared.now_rel() - started) as f64 / 1e9;
    let server = match (server_start, server_end) {
        (Some(a), Some(b)) => Some(ServerUsage::between(&a, &b, wall_s)),
        _ => None,
    };
    (server, ProcUsage::between(&own_start, &own_end, wall_s))
}

async fn sleep_until_rel(shared: &RunShared, at_rel_ns: u64) {
    let now = shared.now_rel();
    if at_rel_ns > now {
        tokio::time::sleep(Duration::from_nanos(at_rel_ns - now)).await;
    }
}

/// Prints a progress line every second: sent/s, delivered/s (over every thread), p99
/// so far (of the first thread's receivers), deliveries in flight. The time shown
/// never runs past its phase: warm-up counts up to the measured window, `measure`
/// up to the step's duration, then `grace` up to the grace period.
async fn show_progress(
    shared: Rc<RunShared>,
    rate: f64,
    t0: u64,
    window: (u64, u64),
    grace_end: u64,
) {
    let mut last = shared.team.counts();
    let mut last_at = shared.now_rel();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = shared.now_rel();
        let counts = shared.team.counts();
        let secs = (now - last_at) as f64 / 1e9;
        let (phase, at, of) = if now < window.0 {
            ("warm-up", now.saturating_sub(t0), window.0 - t0)
        } else if now < window.1 {
            ("measure", now - window.0, window.1 - window.0)
        } else {
            ("grace", now.min(grace_end) - window.1, grace_end - window.1)
        };
        let p99 = {
            let recorder = shared.recorder.borrow();
            if recorder.latency.is_empty() {
                "-".to_string()
            } else {
                report::format_us(recorder.latency.value_at_quantile(0.99) as f64 / 1000.0)
            }
        };
        eprintln!(
            "[{rate}/s {phase} {:.1}/{:.1}s] sent {:>9.0}/s  delivered {:>10.0}/s  p99 {p99}  in flight {}  errors {}",
            at as f64 / 1e9,
            of as f64 / 1e9,
            counts.sent.saturating_sub(last.sent) as f64 / secs,
            counts.delivered.saturating_sub(last.delivered) as f64 / secs,
            counts.expected.saturating_sub(counts.delivered),
            shared.error_count.get(),
        );
        last = counts;
        last_at = now;
    }
}
