//! The scenarios and the run: the threads, setting every client up, the steps one
//! after another (their order in [`crate::schedule`], each thread's sending in
//! [`crate::pacer`]), merging each step's figures, the late tail and closing.
//!
//! Each of `--threads` threads runs a current-thread tokio runtime (optionally pinned
//! to a core) with its share of the clients: one task per client reads, one pacer per
//! thread sends for that thread's senders; the threads meet at a barrier before and
//! after each step ([`crate::team`]). Must not: let a pacer wait for a server (open
//! loop: a late message is sent late and its latency counts from when it was due),
//! or start a step before every client of every thread is in.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::sync::mpsc;

use crate::cli::{ChurnArgs, CommonArgs, TrafficArgs};
use crate::conn::{run_client, ClientPlan, Conn, Ready, RunShared, SetupConfig};
use crate::layout::Layout;
use crate::pacer::Pacer;
use crate::procstat::{self, ProcUsage, ServerSample, ServerUsage};
use crate::report::{self, AddrClients, ChurnResult, IdleResult, Report, StepResult};
use crate::saturation;
use crate::schedule::StepSchedule;
use crate::stats::{new_histogram, Recorder};
use crate::team::{StepPlan, StepShare, Team, ThreadEnd};
use crate::tls::TlsClient;

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
    /// Registered idle clients held for `hold`, some of them churning or silent.
    Idle {
        hold: Duration,
        channels: u32,
        churn: ChurnArgs,
    },
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
            Command::Idle {
                common,
                hold,
                channels,
                churn,
            } => (
                Scenario::Idle {
                    hold,
                    channels,
                    churn,
                },
                common,
            ),
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
    // A wrong --server-pid stops the run here, before any thread or connection.
    procstat::sample_servers(&common.server_pid)?;
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

    // A failure goes to the team: returning here would strand the other threads.
    let server_before = if leader {
        procstat::sample_servers(&common.server_pid).unwrap_or_else(|e| {
            team.fail(format!("{e:#}"));
            None
        })
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
        report.clients_per_addr = layout
            .clients_per_addr(common)
            .into_iter()
            .map(|(addr, clients)| AddrClients {
                addr: addr.to_string(),
                clients,
            })
            .collect();
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
                report.steps.push(setup.connect_step(&server_before));
            }
            Scenario::Idle { hold, churn, .. } => {
                let loaded = procstat::sample_servers(&common.server_pid)?;
                let own_before = procstat::sample(None)?;
                let churned =
                    hold_with_churn(&setup.conns, layout, churn, *hold, &common.server_pid).await?;
                let held = procstat::sample_servers(&common.server_pid)?;
                let own_after = procstat::sample(None)?;
                let hold_usage = match (&loaded, &held) {
                    (Some(l), Some(h)) => Some(ServerUsage::between(l, h, hold.as_secs_f64())),
                    _ => None,
                };
                report.idle = Some(IdleResult::new(
                    common.clients,
                    hold.as_secs_f64(),
                    server_before.as_ref().map(ServerSample::total).as_ref(),
                    loaded.as_ref().map(ServerSample::total).as_ref(),
                    held.as_ref().map(ServerSample::total).as_ref(),
                    hold_usage.as_ref(),
                    ProcUsage::between(&own_before, &own_after, hold.as_secs_f64()),
                ));
                if let Some(idle) = report.idle.as_mut() {
                    idle.churn = churned;
                }
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
        merged.send_backlog.add(&share.send_backlog);
        // Each thread's receivers see every message, so a thread's silence bounds the
        // run's from above (equal with one thread).
        merged.longest_gap_ns = merged.longest_gap_ns.max(share.longest_gap_ns);
        send_failures += share.send_failures;
        errors += share.errors;
    }
    let (server, own) = shared.window_usage.take().unwrap_or_default();
    let mut step = StepResult::messages(
        rate,
        traffic.duration.as_nanos().max(1) as f64 / 1e9,
        &merged,
        server,
        own,
        send_failures,
        errors,
    );
    // loadgen's CPU is the whole process's: N threads saturate at N cores.
    step.set_saturation(saturation::judge(
        own.cores,
        shared.team.threads as u32,
        &merged.send_backlog,
    ));
    step
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

/// Every client, set up.
struct Setup {
    conns: Vec<Rc<Conn>>,
    readies: Vec<Ready>,
    /// When the first client started to connect and the last one was ready.
    span: (u64, u64),
    /// Server usage over the setup (for the connect storm).
    server_after: Option<ServerSample>,
    own_usage: ProcUsage,
}

impl Setup {
    /// The connect storm's figures as a step: connections/s and time to 001.
    fn connect_step(&self, server_before: &Option<ServerSample>) -> StepResult {
        let mut welcome = new_histogram();
        for r in &self.readies {
            welcome.saturating_record(r.welcome_ns.max(1));
        }
        let wall_s = (self.span.1.saturating_sub(self.span.0)) as f64 / 1e9;
        let clients = self.readies.len() as f64;
        let server = match (server_before, &self.server_after) {
            (Some(a), Some(b)) => Some(ServerUsage::between(a, b, wall_s)),
            _ => None,
        };
        StepResult::connect(clients, wall_s, &welcome, server, self.own_usage)
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
        password: common.password.clone(),
        tls: tls.cloned(),
        websocket: common.websocket,
        sasl: common.sasl.as_deref().map(sasl_plain_lines).transpose()?,
        pace: (common.connect_rate > 0.0 && common.connect_rate.is_finite())
            .then(|| Duration::from_secs_f64(1.0 / common.connect_rate)),
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
            let whose = if shared.team.threads > 1 {
                " (thread 0)"
            } else {
                ""
            };
            eprintln!("connected {done}/{total}{whose}");
            last_print = now;
        }
    }
    let server_after = procstat::sample_servers(&common.server_pid)?;
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

/// The AUTHENTICATE lines carrying a SASL PLAIN message for `account:password`
/// (RFC 4616, no authorization identity): base64 in chunks of 400 bytes, with a
/// final `+` when the last chunk is full (IRCv3 SASL 3.1).
fn sasl_plain_lines(credentials: &str) -> Result<String> {
    use base64::Engine;
    let Some((account, password)) = credentials.split_once(':') else {
        bail!("--sasl wants ACCOUNT:PASSWORD");
    };
    let message = format!("\0{account}\0{password}");
    let encoded = base64::engine::general_purpose::STANDARD.encode(message);
    let mut lines = String::new();
    for chunk in encoded.as_bytes().chunks(400) {
        lines.push_str("AUTHENTICATE ");
        lines.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        lines.push_str("\r\n");
    }
    if encoded.len() % 400 == 0 {
        lines.push_str("AUTHENTICATE +\r\n");
    }
    Ok(lines)
}

/// How often the servers' RSS is sampled while members churn (its peak is reported).
const CHURN_SAMPLE: Duration = Duration::from_millis(250);

/// Holds the clients for `hold`. With churners, one of them in turn sends `PART` and
/// `JOIN` for its channel at `--churn-rate` cycles per second meanwhile (their lines
/// reach every member: the load a busy big channel puts on a server), and the
/// servers' RSS is sampled every [`CHURN_SAMPLE`]. Returns what was sent and the
/// highest RSS seen, or None without churners.
async fn hold_with_churn(
    conns: &[Rc<Conn>],
    layout: &Layout,
    churn: &ChurnArgs,
    hold: Duration,
    server_pids: &[u32],
) -> Result<Option<ChurnResult>> {
    let churners = (churn.churners as usize).min(conns.len());
    if churners == 0 {
        tokio::time::sleep(hold).await;
        return Ok(None);
    }
    if !(churn.churn_rate > 0.0 && churn.churn_rate.is_finite()) {
        bail!("--churn-rate must be a positive number of cycles per second");
    }
    let lines: Vec<Vec<u8>> = layout.clients[..churners]
        .iter()
        .map(|plan| match &plan.channel {
            Some(channel) => format!("PART {channel}\r\nJOIN {channel}\r\n").into_bytes(),
            None => Vec::new(),
        })
        .collect();
    if lines.iter().any(Vec::is_empty) {
        bail!("--churners needs channels to churn in: add -k 1 (or more)");
    }
    let end = tokio::time::Instant::now() + hold;
    let mut cycles = tokio::time::interval(Duration::from_secs_f64(1.0 / churn.churn_rate));
    let mut sampling = tokio::time::interval(CHURN_SAMPLE);
    let mut result = ChurnResult::default();
    let mut next = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(end) => break,
            _ = cycles.tick() => {
                if conns[next].send(&lines[next]) {
                    result.cycles += 1;
                } else {
                    result.failed_sends += 1;
                }
                next = (next + 1) % churners;
            }
            _ = sampling.tick() => {
                if let Some(sample) = procstat::sample_servers(server_pids)? {
                    let rss = sample.total().rss_bytes;
                    result.server_rss_peak = Some(result.server_rss_peak.unwrap_or(0).max(rss));
                }
            }
        }
    }
    Ok(Some(result))
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
