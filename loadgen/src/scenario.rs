//! The scenarios: who connects, who joins what, who sends at what rate, and what is
//! measured. Also the open-loop pacer, step mode and the saturation search.
//!
//! Each of `--threads` threads runs a current-thread tokio runtime (optionally pinned
//! to a core) with its share of the clients: one task per client reads, one pacer per
//! thread sends for that thread's senders; the threads meet at a barrier before and
//! after each step ([`crate::team`]). Must not: let a pacer wait for a server (open
//! loop: a late message is sent late and its latency counts from when it was due),
//! or start a step before every client of every thread is in.

use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::sync::mpsc;

use crate::cli::{CommonArgs, TrafficArgs};
use crate::clock::PreciseTimer;
use crate::conn::{run_client, ClientPlan, Conn, Ready, RunShared, SetupConfig};
use crate::irc::{write_privmsg, Payload};
use crate::procstat::{self, ProcSample, ProcUsage};
use crate::report::{self, IdleResult, Report, StepResult};
use crate::stats::{new_histogram, Recorder};
use crate::team::{StepPlan, StepShare, Team, ThreadEnd};
use crate::tls::TlsClient;

/// Loopback clients per source address: below the ~28,000 ephemeral ports of one.
const CLIENTS_PER_SOURCE_IP: u32 = 25_000;

/// Loadgen's own CPU use (cores) above which its figures may measure loadgen itself.
pub const SATURATION_CORES: f64 = 0.85;

/// Pacer lateness (p99) above which loadgen is not keeping its schedule.
pub const SATURATION_SEND_LAG_US: f64 = 1000.0;

/// What to run.
#[derive(Debug, Clone)]
pub enum Scenario {
    /// One channel, every client a member, `senders` of them send.
    Fanout { traffic: TrafficArgs, senders: u32 },
    /// `channels` channels, clients spread round robin, `senders` per channel (all if None).
    Rooms {
        traffic: TrafficArgs,
        channels: u32,
        senders: Option<u32>,
    },
    /// Connection and registration storm.
    Connect,
    /// Registered idle clients held for `hold`.
    Idle { hold: Duration },
}

impl Scenario {
    /// The scenario a command line asks for, with its common arguments; the command
    /// itself back for those that only read result files (`compare`, `plot`, `summary`).
    pub fn from_command(
        command: crate::cli::Command,
    ) -> std::result::Result<(Scenario, CommonArgs), Box<crate::cli::Command>> {
        use crate::cli::Command;
        Ok(match command {
            Command::Fanout {
                common,
                traffic,
                senders,
            } => (Scenario::Fanout { traffic, senders }, common),
            Command::Rooms {
                common,
                traffic,
                channels,
                senders,
            } => (
                Scenario::Rooms {
                    traffic,
                    channels,
                    senders,
                },
                common,
            ),
            Command::Connect { common } => (Scenario::Connect, common),
            Command::Idle { common, hold } => (Scenario::Idle { hold }, common),
            other => return Err(Box::new(other)),
        })
    }
}

impl Scenario {
    /// The traffic flags of a message scenario (fanout, rooms).
    pub fn traffic(&self) -> Option<&TrafficArgs> {
        match self {
            Scenario::Fanout { traffic, .. } | Scenario::Rooms { traffic, .. } => Some(traffic),
            Scenario::Connect | Scenario::Idle { .. } => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Fanout { .. } => "fanout",
            Scenario::Rooms { .. } => "rooms",
            Scenario::Connect => "connect",
            Scenario::Idle { .. } => "idle",
        }
    }
}

/// Runs a scenario to completion: one thread per `--threads` (the calling thread is
/// the first), each with its own current-thread runtime and its share of the clients.
/// Err only when the run could not be carried out (refused connection, setup failure,
/// bad flags); failed checks (loss, disconnects) are in the report with `ok == false`.
pub fn run(scenario: &Scenario, common: &CommonArgs) -> Result<Report> {
    let layout = Layout::new(scenario, common);
    let threads = (common.threads.max(1) as usize).min(layout.clients.len().max(1));
    match scenario.traffic() {
        Some(traffic) if traffic.find_max && traffic.repeat > 1 => {
            bail!("--repeat cannot be combined with --find-max (a search decides its own steps)")
        }
        None if threads > 1 => {
            bail!("--threads applies to fanout and rooms; connect and idle run on one thread")
        }
        _ => {}
    }
    if let Some(cpu) = common.cpu {
        for thread in 0..threads {
            if !core_available(cpu + thread) {
                bail!(
                    "--cpu {cpu}: core {} (for thread {thread} of --threads {threads}) is not available",
                    cpu + thread
                );
            }
        }
    }
    raise_fd_limit(common.clients as u64 + 64);
    let tls = TlsClient::from_args(common)?;
    // Every runtime is built before any thread starts: a thread that failed before
    // reaching the team's first barrier would leave the others waiting at it.
    let mut runtimes = (0..threads)
        .map(|_| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start a tokio runtime")
        })
        .collect::<Result<Vec<_>>>()?
        .into_iter();
    let first_runtime = runtimes.next().context("no runtime")?;
    let tls = tls.as_ref();
    let team = Team::new(
        threads,
        crate::clock::now_ns(),
        common.connect_concurrency as usize,
    );
    std::thread::scope(|scope| {
        // Every thread waits for a go before it joins the team, so a thread that
        // cannot be started leaves none waiting at the team's barrier.
        let mut others = Vec::new();
        let mut go = Vec::new();
        for (thread, runtime) in (1..threads).zip(runtimes) {
            let team = team.clone();
            let layout = &layout;
            let (start, wait_for_start) = std::sync::mpsc::channel::<()>();
            let spawned = std::thread::Builder::new()
                .name(format!("loadgen-{thread}"))
                .spawn_scoped(scope, move || {
                    if wait_for_start.recv().is_err() {
                        return Ok(None);
                    }
                    run_thread(scenario, common, layout, tls, runtime, team, thread)
                });
            match spawned {
                Ok(handle) => {
                    others.push(handle);
                    go.push(start);
                }
                Err(e) => {
                    drop(go);
                    bail!("cannot start loadgen thread {thread}: {e}");
                }
            }
        }
        for start in go {
            let _ = start.send(());
        }
        let report = run_thread(
            scenario,
            common,
            &layout,
            tls,
            first_runtime,
            team.clone(),
            0,
        );
        for other in others {
            match other.join() {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => bail!("a loadgen thread panicked"),
            }
        }
        report?.context("internal error: the first thread made no report")
    })
}

/// One thread's part of the run on its own runtime; the first thread (0) returns the
/// report, the others None.
fn run_thread(
    scenario: &Scenario,
    common: &CommonArgs,
    layout: &Layout,
    tls: Option<&TlsClient>,
    runtime: tokio::runtime::Runtime,
    team: Arc<Team>,
    thread: usize,
) -> Result<Option<Report>> {
    if let Some(cpu) = common.cpu {
        // A failure goes to the team: returning here would strand the other threads.
        if let Err(e) = pin_to_cpu(cpu + thread) {
            team.fail(format!("{e:#}"));
        }
    }
    let local = tokio::task::LocalSet::new();
    local.block_on(
        &runtime,
        run_async(scenario, common, layout, tls, team, thread),
    )
}

async fn run_async(
    scenario: &Scenario,
    common: &CommonArgs,
    layout: &Layout,
    tls: Option<&TlsClient>,
    team: Arc<Team>,
    thread: usize,
) -> Result<Option<Report>> {
    let shared = Rc::new(RunShared::new(team.clone(), thread));
    let leader = thread == 0;
    let plans: Vec<&ClientPlan> = layout
        .clients
        .iter()
        .filter(|plan| plan.index % team.threads == thread)
        .collect();

    let server_before = if leader {
        sample_server(common.server_pid)?
    } else {
        None
    };
    let mut pacer = None;
    let setup = match connect_all(&shared, common, layout, tls, &plans).await {
        Ok(setup) => {
            if let Some(traffic) = scenario.traffic() {
                match Pacer::new(layout, &setup.conns, traffic, team.threads, thread) {
                    Ok(p) => pacer = Some(p),
                    Err(e) => team.fail(format!("{e:#}")),
                }
            }
            Some(setup)
        }
        Err(e) => {
            team.fail(format!("{e:#}"));
            None
        }
    };
    team.note_server_version(shared.server_version.borrow().clone());
    team.sync().await; // every thread set up, or one failed
    if leader && !common.quiet && team.failure().is_none() {
        eprintln!(
            "{} clients registered{} in {:.2}s{}",
            layout.clients.len(),
            if layout.channels.is_empty() {
                ""
            } else {
                " and joined"
            },
            shared.now_rel() as f64 / 1e9,
            if team.threads > 1 {
                format!(" over {} threads", team.threads)
            } else {
                String::new()
            }
        );
    }
    if let Some(reason) = team.failure() {
        if let Some(setup) = &setup {
            close_all(&shared, &setup.conns).await;
        }
        shared.stopping.set(true);
        return if leader {
            Err(anyhow!(reason))
        } else {
            Ok(None)
        };
    }
    let Some(setup) = setup else {
        bail!("internal error: no setup and no failure");
    };

    let mut report = leader.then(|| {
        let mut report = Report::new(scenario, common);
        report.server_version = team.server_version();
        report
    });
    if let Some(mut pacer) = pacer {
        let traffic = &pacer.traffic.clone();
        let mut schedule = StepSchedule::new(traffic);
        loop {
            if leader {
                let plan = match schedule.next_rate() {
                    Some(rate) => StepPlan::Run {
                        step: pacer.step + 1,
                        rate,
                        t0: shared.now_rel() + STEP_START_DELAY_NS,
                    },
                    None => StepPlan::Stop,
                };
                team.set_plan(plan);
            }
            team.sync().await;
            let StepPlan::Run { step, rate, t0 } = team.plan() else {
                break;
            };
            pacer.run_step(&shared, common, step, rate, t0).await;
            team.sync().await; // every share handed over
            if let Some(report) = report.as_mut() {
                let step = merge_step(&shared, &pacer.traffic, rate, &team.take_shares());
                let passed = schedule.judge(&step);
                report.push_step(step);
                if let Some(step) = report.steps.last() {
                    report::print_step_line(step, passed);
                }
            }
        }
        if let Some(report) = report.as_mut() {
            report.max_rate = schedule.max_rate();
            wait_for_late(&shared, report, traffic.grace).await;
        }
    } else if let Some(report) = report.as_mut() {
        match scenario {
            Scenario::Connect => {
                report
                    .steps
                    .push(setup.connect_step(&server_before, common.server_pid)?);
            }
            Scenario::Idle { hold } => {
                let loaded = sample_server(common.server_pid)?;
                let own_before = procstat::sample(None)?;
                tokio::time::sleep(*hold).await;
                let held = sample_server(common.server_pid)?;
                let own_after = procstat::sample(None)?;
                report.idle = Some(IdleResult::new(
                    common.clients,
                    hold.as_secs_f64(),
                    server_before.as_ref(),
                    loaded.as_ref(),
                    held.as_ref(),
                    ProcUsage::between(&own_before, &own_after, hold.as_secs_f64()),
                ));
            }
            Scenario::Fanout { .. } | Scenario::Rooms { .. } => {}
        }
    }

    team.sync().await; // the late tail is over: close
    close_all(&shared, &setup.conns).await;
    team.finish(ThreadEnd {
        errors: shared.errors.borrow().clone(),
        error_count: shared.error_count.get(),
        late_by_step: shared.recorder.borrow().late_by_step.clone(),
    });
    team.sync().await; // every thread's end handed over
    if let Some(report) = report.as_mut() {
        report.finish(&team.take_ends());
    }
    Ok(report)
}

/// Time between deciding a step and its first message: every thread wakes from the
/// barrier and arms its pacer before it.
const STEP_START_DELAY_NS: u64 = 50_000_000;

/// The steps to run: each rate of `--rate`, the list `--repeat` times over (round
/// robin, so a drift of the machine spreads over every rate), or the saturation search.
struct StepSchedule {
    rates: Vec<f64>,
    next: usize,
    search: Option<(RateSearch, Option<f64>, f64)>,
}

impl StepSchedule {
    fn new(traffic: &TrafficArgs) -> Self {
        let search = traffic.find_max.then(|| {
            (
                RateSearch::new(traffic.rate[0], traffic.max_probes),
                Some(traffic.rate[0]),
                traffic.p99_max.as_secs_f64() * 1e6,
            )
        });
        let repeat = traffic.repeat.max(1) as usize;
        Self {
            rates: traffic.rate.repeat(repeat),
            next: 0,
            search,
        }
    }

    fn next_rate(&mut self) -> Option<f64> {
        match &self.search {
            Some((_, next, _)) => *next,
            None => {
                let rate = self.rates.get(self.next).copied();
                self.next += 1;
                rate
            }
        }
    }

    /// Whether a finished step passed (for the search: also p99 under its bound);
    /// feeds the search its outcome.
    fn judge(&mut self, step: &StepResult) -> bool {
        match &mut self.search {
            Some((search, next, p99_max_us)) => {
                let passed = step.passed && step.latency.p99_us <= *p99_max_us;
                *next = search.next(step.target_rate, passed);
                passed
            }
            None => step.passed,
        }
    }

    fn max_rate(&self) -> Option<f64> {
        self.search.as_ref().map(|(search, _, _)| search.best())
    }
}

/// Merges every thread's share of a step into its figures: histograms added exactly,
/// counters summed. Runs on the first thread after the step's last barrier.
fn merge_step(
    shared: &RunShared,
    traffic: &TrafficArgs,
    rate: f64,
    shares: &[StepShare],
) -> StepResult {
    let mut merged = Recorder::default();
    let mut send_failures = 0;
    let mut errors = 0;
    for share in shares {
        let added = merged
            .latency
            .add(&share.latency)
            .and(merged.send_lag.add(&share.send_lag));
        if let Err(e) = added {
            shared.error(format!("cannot merge a thread's histogram: {e:?}"));
        }
        let c = &mut merged.counts;
        let s = &share.counts;
        c.sent += s.sent;
        c.sent_measured += s.sent_measured;
        c.expected += s.expected;
        c.delivered += s.delivered;
        c.delivered_measured += s.delivered_measured;
        c.duplicates += s.duplicates;
        c.reordered += s.reordered;
        c.stale += s.stale;
        merged.backlog.add(&share.backlog);
        send_failures += share.send_failures;
        errors += share.errors;
    }
    let (server, own) = shared.window_usage.take().unwrap_or_default();
    StepResult::messages(
        rate,
        traffic.duration.as_nanos().max(1) as f64 / 1e9,
        &merged,
        server,
        own,
        send_failures,
        errors,
    )
}

/// After the last step: deliveries still missing may yet arrive late (delayed, not
/// lost). Waits at most `grace` for them, ending as soon as every missing one came.
async fn wait_for_late(shared: &RunShared, report: &Report, grace: Duration) {
    let missing: u64 = report.steps.iter().map(|s| s.lost).sum();
    let end = shared.now_rel() + grace.as_nanos() as u64;
    while shared.team.counts().late_total < missing && shared.now_rel() < end {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Who is where: channels, their members and senders, and each client's plan.
struct Layout {
    channels: Vec<ChannelPlan>,
    clients: Vec<ClientPlan>,
}

struct ChannelPlan {
    name: String,
    /// Number of members (every client joined to it).
    members: u32,
    /// The senders' client numbers; a sender's slot is its position here.
    senders: Vec<usize>,
}

impl Layout {
    fn new(scenario: &Scenario, common: &CommonArgs) -> Self {
        let run_id = run_id();
        let clients = common.clients.max(1) as usize;
        let (channel_count, senders_per_channel) = match scenario {
            Scenario::Fanout { senders, .. } => (1, Some((*senders).clamp(1, clients as u32))),
            Scenario::Rooms {
                channels, senders, ..
            } => ((*channels).clamp(1, clients as u32) as usize, *senders),
            Scenario::Connect | Scenario::Idle { .. } => (0, None),
        };
        let mut channels: Vec<ChannelPlan> = (0..channel_count)
            .map(|k| ChannelPlan {
                name: if channel_count == 1 {
                    format!("#lg{run_id}")
                } else {
                    format!("#lg{run_id}-{k}")
                },
                members: 0,
                senders: Vec::new(),
            })
            .collect();
        let source_ips = source_ips(common);
        let mut plans = Vec::with_capacity(clients);
        for index in 0..clients {
            let channel = (channel_count > 0).then(|| index % channel_count);
            if let Some(k) = channel {
                let member_number = index / channel_count;
                let ch = &mut channels[k];
                ch.members += 1;
                if senders_per_channel.is_none_or(|s| member_number < s as usize) {
                    ch.senders.push(index);
                }
            }
            plans.push(ClientPlan {
                index,
                nick: format!("lg{run_id}{}", base36(index as u64)),
                channel: channel.map(|k| channels[k].name.clone()),
                senders_in_channel: 0,
                source_ip: source_ips
                    .get(index / CLIENTS_PER_SOURCE_IP as usize % source_ips.len().max(1))
                    .copied(),
            });
        }
        for plan in &mut plans {
            if let Some(name) = &plan.channel {
                if let Some(ch) = channels.iter().find(|c| &c.name == name) {
                    plan.senders_in_channel = ch.senders.len() as u32;
                }
            }
        }
        Self {
            channels,
            clients: plans,
        }
    }
}

/// Source addresses for the clients: none (the kernel's choice) unless asked or unless
/// there are more loopback clients than one address has ports.
fn source_ips(common: &CommonArgs) -> Vec<IpAddr> {
    let loopback_v4 = matches!(common.addr.ip(), IpAddr::V4(ip) if ip.is_loopback());
    let wanted = if common.source_ips > 0 {
        common.source_ips
    } else if loopback_v4 && common.clients > CLIENTS_PER_SOURCE_IP {
        common.clients.div_ceil(CLIENTS_PER_SOURCE_IP)
    } else {
        0
    };
    if !loopback_v4 {
        return Vec::new();
    }
    (0..wanted.min(250))
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + i as u8)))
        .collect()
}

/// A short id that makes this run's nicks and channels unique (2 base-36 characters,
/// so nicks fit a NICKLEN of 9 up to 46,656 clients).
fn run_id() -> String {
    let seed =
        (std::process::id() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ crate::clock::now_ns();
    let id = base36(seed % (36 * 36));
    format!("{id:0>2}")
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// Every client, set up.
struct Setup {
    conns: Vec<Rc<Conn>>,
    readies: Vec<Ready>,
    /// When the first client started to connect and the last one was ready.
    span: (u64, u64),
    /// Server usage over the setup (for the connect storm).
    server_after: Option<ProcSample>,
    own_usage: ProcUsage,
}

impl Setup {
    /// The connect storm's figures as a step: connections/s and time to 001.
    fn connect_step(
        &self,
        server_before: &Option<ProcSample>,
        pid: Option<u32>,
    ) -> Result<StepResult> {
        let mut welcome = new_histogram();
        for r in &self.readies {
            welcome.saturating_record(r.welcome_ns.max(1));
        }
        let wall_s = (self.span.1.saturating_sub(self.span.0)) as f64 / 1e9;
        let clients = self.readies.len() as f64;
        let server = match (server_before, &self.server_after) {
            (Some(a), Some(b)) if pid.is_some() => Some(ProcUsage::between(a, b, wall_s)),
            _ => None,
        };
        Ok(StepResult::connect(
            clients,
            wall_s,
            &welcome,
            server,
            self.own_usage,
        ))
    }
}

/// Starts the clients of `plans` (this thread's share) and waits until all are in
/// (or one fails).
async fn connect_all(
    shared: &Rc<RunShared>,
    common: &CommonArgs,
    layout: &Layout,
    tls: Option<&TlsClient>,
    plans: &[&ClientPlan],
) -> Result<Setup> {
    let setup = Rc::new(SetupConfig {
        addr: common.addr,
        password: common.password.clone(),
        tls: tls.cloned(),
        timeout: common.setup_timeout,
    });
    let own_before = procstat::sample(None)?;
    let started = shared.now_rel();
    let (tx, mut rx) = mpsc::unbounded_channel();
    for &plan in plans {
        tokio::task::spawn_local(run_client(
            shared.clone(),
            setup.clone(),
            plan.clone(),
            tx.clone(),
        ));
    }
    drop(tx);
    let total = plans.len();
    let mut readies: Vec<Option<Ready>> = (0..layout.clients.len()).map(|_| None).collect();
    let mut done = 0;
    let mut last_print = started;
    while done < total {
        let Some(outcome) = rx.recv().await else {
            bail!("client tasks ended before reporting");
        };
        match outcome.result {
            Ok(ready) => readies[outcome.index] = Some(ready),
            Err(e) => bail!("client {} could not be set up: {e}", outcome.index),
        }
        done += 1;
        let now = shared.now_rel();
        if !common.quiet && shared.thread == 0 && now - last_print > 1_000_000_000 {
            eprintln!("connected {done}/{total} (thread 0)");
            last_print = now;
        }
    }
    let server_after = sample_server(common.server_pid)?;
    let readies: Vec<Ready> = readies.into_iter().flatten().collect();
    let finished = readies.iter().map(|r| r.done_at).max().unwrap_or(started);
    let own_after = procstat::sample(None)?;
    let own_usage = ProcUsage::between(&own_before, &own_after, (finished - started) as f64 / 1e9);
    Ok(Setup {
        conns: readies.iter().map(|r| r.conn.clone()).collect(),
        readies,
        span: (started, finished),
        server_after,
        own_usage,
    })
}

/// Sends QUIT from every client and waits (bounded) for the server to close them.
async fn close_all(shared: &RunShared, conns: &[Rc<Conn>]) {
    shared.stopping.set(true);
    for conn in conns {
        conn.send(b"QUIT :loadgen done\r\n");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while shared.live_clients.get() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn sample_server(pid: Option<u32>) -> Result<Option<ProcSample>> {
    match pid {
        Some(pid) => Ok(Some(procstat::sample(Some(pid)).with_context(|| {
            format!("cannot read /proc/{pid}/stat (--server-pid)")
        })?)),
        None => Ok(None),
    }
}

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
struct Pacer {
    layout_channels: Vec<(String, u32)>,
    /// This thread's connections by client number (None: another thread's client).
    conns: Vec<Option<Rc<Conn>>>,
    /// The run's number of senders, over every thread.
    all_senders: usize,
    /// This thread's senders, by `order`.
    senders: Vec<SenderState>,
    traffic: TrafficArgs,
    timer: PreciseTimer,
    step: u32,
}

impl Pacer {
    fn new(
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
    async fn run_step(
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
            tokio::task::spawn_local(sample_window(shared.clone(), window, common.server_pid))
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
                        recorder.send_lag.saturating_record((now - sched).max(1));
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
    pid: Option<u32>,
) -> (Option<ProcUsage>, ProcUsage) {
    let sample = |shared: &RunShared| {
        let server = sample_server(pid).unwrap_or_else(|e| {
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
        (Some(a), Some(b)) => Some(ProcUsage::between(&a, &b, wall_s)),
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

/// The saturation search: double from the start rate while steps pass, then bisect
/// between the best pass and the first failure until they are within 5% (or the
/// probe budget runs out).
#[derive(Debug)]
pub struct RateSearch {
    /// Highest passing rate so far.
    best: Option<f64>,
    /// Lowest failing rate so far.
    failed: Option<f64>,
    probes_left: u32,
}

impl RateSearch {
    pub fn new(_start: f64, max_probes: u32) -> Self {
        Self {
            best: None,
            failed: None,
            probes_left: max_probes.max(1),
        }
    }

    /// Given the outcome of a probe at `rate`, the next rate to probe (None: done).
    pub fn next(&mut self, rate: f64, passed: bool) -> Option<f64> {
        self.probes_left = self.probes_left.saturating_sub(1);
        if passed {
            self.best = Some(self.best.map_or(rate, |b| b.max(rate)));
        } else {
            self.failed = Some(self.failed.map_or(rate, |f| f.min(rate)));
        }
        if self.probes_left == 0 {
            return None;
        }
        match (self.best, self.failed) {
            (Some(best), None) => Some(best * 2.0),
            (None, Some(failed)) if failed > 2.0 => Some((failed / 2.0).floor()),
            (None, Some(_)) => None,
            (Some(best), Some(failed)) if (failed - best) / best > 0.05 => {
                Some(((best + failed) / 2.0).round())
            }
            _ => None,
        }
    }

    /// The highest rate that passed (0 if none).
    pub fn best(&self) -> f64 {
        self.best.unwrap_or(0.0)
    }
}

/// True when this process may run on core `cpu` (its affinity mask has it).
fn core_available(cpu: usize) -> bool {
    if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
        return false;
    }
    // SAFETY: cpu_set_t is plain data filled in by sched_getaffinity; CPU_ISSET is
    // bounds-checked above.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0
            && libc::CPU_ISSET(cpu, &set)
    }
}

/// Pins the calling thread to one CPU core.
fn pin_to_cpu(cpu: usize) -> Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_SET bounds-checks against its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
            bail!("--cpu {cpu}: no such core");
        }
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!("--cpu {cpu}: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Raises the open-file limit toward `wanted` (up to the hard limit).
fn raise_fd_limit(wanted: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < wanted {
            limit.rlim_cur = wanted.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn common(args: &[&str]) -> CommonArgs {
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            common: CommonArgs,
        }
        let mut argv = vec!["x"];
        argv.extend_from_slice(args);
        Wrapper::try_parse_from(argv).expect("parses").common
    }

    fn traffic() -> TrafficArgs {
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            traffic: TrafficArgs,
        }
        Wrapper::try_parse_from(["x"]).expect("parses").traffic
    }

    #[test]
    fn fanout_layout_has_one_channel_and_s_senders() {
        let scenario = Scenario::Fanout {
            traffic: traffic(),
            senders: 3,
        };
        let layout = Layout::new(&scenario, &common(&["--clients", "10"]));
        assert_eq!(layout.channels.len(), 1);
        assert_eq!(layout.channels[0].members, 10);
        assert_eq!(layout.channels[0].senders, vec![0, 1, 2]);
        assert!(layout.clients.iter().all(|c| c.senders_in_channel == 3));
        let nicks: std::collections::HashSet<_> =
            layout.clients.iter().map(|c| c.nick.clone()).collect();
        assert_eq!(nicks.len(), 10);
        assert!(layout.clients.iter().all(|c| c.nick.len() <= 9));
    }

    #[test]
    fn rooms_layout_spreads_clients_and_senders() {
        let scenario = Scenario::Rooms {
            traffic: traffic(),
            channels: 3,
            senders: Some(2),
        };
        let layout = Layout::new(&scenario, &common(&["--clients", "10"]));
        let members: Vec<u32> = layout.channels.iter().map(|c| c.members).collect();
        assert_eq!(members, vec![4, 3, 3]);
        assert_eq!(layout.channels[0].senders, vec![0, 3]);
        assert_eq!(layout.channels[2].senders, vec![2, 5]);
        let all = Scenario::Rooms {
            traffic: traffic(),
            channels: 3,
            senders: None,
        };
        let layout = Layout::new(&all, &common(&["--clients", "10"]));
        assert_eq!(layout.channels[0].senders.len(), 4);
    }

    #[test]
    fn many_loopback_clients_get_several_source_addresses() {
        assert!(source_ips(&common(&["--clients", "1000"])).is_empty());
        let ips = source_ips(&common(&["--clients", "60000"]));
        assert_eq!(ips.len(), 3);
        assert_eq!(ips[2], IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)));
    }

    #[test]
    fn search_doubles_then_bisects() {
        let capacity = 5000.0;
        let mut search = RateSearch::new(1000.0, 20);
        let mut rate = Some(1000.0);
        let mut probed = Vec::new();
        while let Some(r) = rate {
            probed.push(r);
            rate = search.next(r, r <= capacity);
        }
        assert_eq!(&probed[..4], &[1000.0, 2000.0, 4000.0, 8000.0]);
        assert!(
            search.best() <= capacity && search.best() >= capacity * 0.95,
            "{}",
            search.best()
        );
        assert!(probed.len() < 12);
    }

    #[test]
    fn search_goes_down_when_the_start_fails_and_respects_budget() {
        let mut search = RateSearch::new(1000.0, 3);
        assert_eq!(search.next(1000.0, false), Some(500.0));
        assert_eq!(search.next(500.0, true), Some(750.0));
        assert_eq!(search.next(750.0, true), None);
        assert_eq!(search.best(), 750.0);
    }
}
