//! The `ringchat` binary: settings, logging, the server, metrics and systemd
//! notifications; SIGHUP reloads (settings, TLS certificate, log file), SIGINT/SIGTERM
//! stop. A start-up failure (a bad flag or config file included) is one line on stderr
//! and exit status 1.

use anyhow::Context;
use clap::FromArgMatches;
use ringchat::cli::{self, Cli};
use ringchat::config::{open_file_limit, RESERVED_FDS};
use ringchat::logging::{self, LogFile};
use ringchat::server::Resumption;
use ringchat::settings::Settings;
use ringchat::state::rehash::RehashOutcome;
use ringchat::systemd::{self, Notifier};
use ringchat::upgrade::{self, Incoming, Starting};
use ringchat::{metrics, reload, Server};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};

/// How often the service manager's `STATUS=` line is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let (cli, matches) = match parse_command_line() {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    if cli.man || cli.completions.is_some() {
        return match print_docs(&cli) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => fail(error),
        };
    }
    if cli.hash_password {
        return match hash_password_read() {
            Ok(hash) => {
                println!("{hash}");
                ExitCode::SUCCESS
            }
            Err(error) => fail(error),
        };
    }
    ringchat::server::raise_open_file_limit();
    if let Some(path) = &cli.check_config {
        return match Settings::load(&cli, &matches, Some(path)) {
            Ok(_) => {
                println!("ringchat: {} is valid", path.display());
                ExitCode::SUCCESS
            }
            Err(error) => fail(error),
        };
    }
    let settings = match Settings::load(&cli, &matches, cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(error) => return fail(error),
    };
    let log_file = match logging::init(settings.log_format, settings.log_file.as_deref()) {
        Ok(log_file) => log_file,
        Err(error) => return fail(error),
    };
    if let Err(error) = prepare_data_dir(&settings) {
        return fail(error);
    }
    match run(&cli, &matches, &settings, log_file) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(error),
    }
}

/// `--man` and `--completions SHELL`: the man page or a shell's completions,
/// generated from the command line's declaration (so they list every flag `--help`
/// does), on stdout.
fn print_docs(cli: &Cli) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    if let Some(shell) = cli.completions {
        clap_complete::generate(shell, &mut cli::command(), "ringchat", &mut stdout);
        return Ok(());
    }
    clap_mangen::Man::new(cli::command())
        .render(&mut stdout)
        .context("cannot write the man page")
}

/// `--hash-password`: at a terminal, the password asked twice without echo; else
/// (a script) the first line of stdin without its line ending. Hashed.
fn hash_password_read() -> anyhow::Result<String> {
    use std::io::IsTerminal;
    let password = if std::io::stdin().is_terminal() {
        let password =
            rpassword::prompt_password("Password: ").context("cannot read the password")?;
        let again = rpassword::prompt_password("Again: ").context("cannot read the password")?;
        anyhow::ensure!(password == again, "the two passwords differ");
        password
    } else {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    anyhow::ensure!(!password.is_empty(), "no password given");
    ringchat::opers::hash_password(password.as_bytes())
}

/// Creates the data directory if it is missing, and moves a ban file found beside
/// the config into it (read once: from then on only the data directory's is read).
fn prepare_data_dir(settings: &Settings) -> anyhow::Result<()> {
    let Some(dir) = &settings.config.data_dir else {
        return Ok(());
    };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    if let (Some(legacy), Some(ban_file)) = (&settings.legacy_bans, &settings.config.ban_file) {
        ringchat::ban_file::migrate(legacy, ban_file)?;
        info!(
            from = %legacy.display(),
            to = %ban_file.display(),
            "bans moved to the data directory; the old file is no longer read and can be deleted"
        );
    }
    Ok(())
}

fn fail(error: anyhow::Error) -> ExitCode {
    eprintln!("ringchat: {error:#}");
    ExitCode::FAILURE
}

/// Parses flags and environment. `--help` and `--version` print and exit 0; any
/// other problem is clap's first line (the one that says what is wrong) and exit 1.
fn parse_command_line() -> Result<(Cli, clap::ArgMatches), ExitCode> {
    let parsed = cli::command()
        .try_get_matches()
        .and_then(|matches| Ok((Cli::from_arg_matches(&matches)?, matches)));
    parsed.map_err(|error| {
        if matches!(
            error.kind(),
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
        ) {
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        let text = error.render().to_string();
        let first = text.lines().next().unwrap_or("invalid command line");
        eprintln!(
            "ringchat: {} (see --help)",
            first.trim_start_matches("error: ")
        );
        ExitCode::FAILURE
    })
}

fn run(
    cli: &Cli,
    matches: &clap::ArgMatches,
    settings: &Settings,
    log_file: Option<Arc<LogFile>>,
) -> anyhow::Result<()> {
    // Watch the signals before the first client can connect, so a SIGTERM is never
    // the default (abrupt) exit and a SIGHUP never kills the server.
    let signals = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the signal runtime")?;
    let (mut terminate, mut interrupt, mut hangup, mut user2) = {
        let _runtime = signals.enter();
        (
            signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
            signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
            signal(SignalKind::hangup()).context("cannot watch SIGHUP")?,
            signal(SignalKind::user_defined2()).context("cannot watch SIGUSR2")?,
        )
    };
    let notifier = Notifier::from_env()?;
    upgrade::remember_binary();
    let (mut server, socket_activated, upgraded) = match Starting::from_env()? {
        Some(starting) => {
            let (server, upgraded) = resume(settings, starting)?;
            (server, false, Some(upgraded))
        }
        None => {
            let inherited = systemd::listen_fds()?;
            let socket_activated = !inherited.is_empty();
            let server = Server::start_on(settings.config.clone(), inherited)?;
            (server, socket_activated, None)
        }
    };
    let metrics_addr = settings
        .metrics
        .map(|addr| metrics::serve(addr, server.shared().clone(), server.driver()))
        .transpose()?;
    log_start(&server, settings, socket_activated, metrics_addr);
    let notify = |state: &str| {
        if let Some(notifier) = &notifier {
            notifier.notify(state);
        }
    };
    notify(&format!("READY=1\n{}", status_line(&server)));
    let watchdog = systemd::watchdog_interval();
    let shared = server.shared().clone();
    shared.rehash.serve();
    shared.upgrade_requests.serve();
    if let Some((Some(operator), from)) = upgraded {
        let outcome = RehashOutcome::Upgraded {
            from,
            to: env!("CARGO_PKG_VERSION").to_owned(),
        };
        shared.upgrade_requests.answer(vec![operator], &outcome);
    }
    let outcome = signals.block_on(async {
        let mut tick =
            tokio::time::interval(watchdog.map_or(STATUS_EVERY, |w| w.min(STATUS_EVERY)));
        loop {
            tokio::select! {
                _ = terminate.recv() => {
                    info!("SIGTERM: shutting down");
                    return Ok(());
                }
                _ = interrupt.recv() => {
                    info!("SIGINT: shutting down");
                    return Ok(());
                }
                _ = hangup.recv() => {}
                _ = shared.rehash.requested() => info!("REHASH from an operator"),
                _ = user2.recv() => {
                    info!("SIGUSR2: upgrading");
                    upgrade_or_serve_on(&server, &notify);
                    continue;
                }
                _ = shared.upgrade_requests.requested() => {
                    info!("UPGRADE from an operator");
                    upgrade_or_serve_on(&server, &notify);
                    continue;
                }
                _ = tick.tick() => {
                    let watchdog_ping = if watchdog.is_some() { "WATCHDOG=1\n" } else { "" };
                    notify(&format!("{watchdog_ping}{}", status_line(&server)));
                    continue;
                }
                stopped = server.stopped() => return stopped,
            }
            // SIGHUP or REHASH; the reload answers every operator waiting for one.
            notify(&systemd::reloading_message());
            let waiting = shared.rehash.take_waiting();
            let outcome = on_hangup(cli, matches, settings, &server, log_file.as_deref());
            shared.rehash.answer(waiting, &outcome);
            notify(&format!("READY=1\n{}", status_line(&server)));
        }
    });
    notify("STOPPING=1");
    server.shutdown();
    outcome
}

/// The new side of a live upgrade: checks the handover, tells the old process to go
/// (or why not, and it serves on), and starts from it once the old one is gone.
/// Returns the server and the operator who asked, with the old version.
///
/// A cluster node first connects to NATS and subscribes as the old process's node,
/// before it says hello: messages the old one no longer takes in wait for it there.
fn resume(
    settings: &Settings,
    starting: Starting,
) -> anyhow::Result<(Server, (Option<ringchat::state::ClientId>, String))> {
    let continuing = match (&settings.config.cluster, starting.node) {
        (Some(_), Some(node)) => Some(
            ringchat::cluster::Continuing::connect(&settings.config, node)
                .context("the upgrade's new process cannot reach the cluster")?,
        ),
        _ => None,
    };
    let Incoming {
        answer,
        handover,
        descriptors,
    } = starting.receive()?;
    let from = handover.from_version.clone();
    let resumption = match Resumption::check(&settings.config, handover, descriptors, continuing) {
        Ok(resumption) => resumption,
        Err(error) => {
            answer.refuse(&format!("{error:#}"));
            return Err(error.context("the handover cannot be used; the old process serves on"));
        }
    };
    let verdict_at = std::time::Instant::now();
    answer.accept()?;
    let old_gone_ms = verdict_at.elapsed().as_millis() as u64;
    let (asked_by, clients) = (resumption.asked_by, resumption.clients);
    let server = Server::resume(settings.config.clone(), resumption)
        .context("the upgrade's new process cannot start (the old one is gone)")?;
    info!(
        clients,
        from_version = %from,
        old_gone_ms,
        started_ms = verdict_at.elapsed().as_millis() as u64,
        "upgrade: serving every handed-over connection"
    );
    Ok((server, (asked_by, from)))
}

/// SIGUSR2 or UPGRADE: hands everything to the binary at the server's path and exits,
/// or, if that fails, serves on and says why (the log, and the operators who asked).
fn upgrade_or_serve_on(server: &Server, notify: &dyn Fn(&str)) {
    let shared = server.shared();
    let waiting = shared.upgrade_requests.take_waiting();
    notify(&systemd::reloading_message());
    match upgrade::hand_over(server, waiting.first().copied()) {
        Ok(pid) => {
            // The new process is the service now; it says READY=1 once serving.
            notify(&format!("MAINPID={pid}"));
            std::process::exit(0);
        }
        Err(error) => {
            warn!("upgrade failed, serving on: {error:#}");
            let outcome = RehashOutcome::UpgradeFailed {
                error: format!("{error:#}"),
            };
            shared.upgrade_requests.answer(waiting, &outcome);
            notify(&format!("READY=1\n{}", status_line(server)));
        }
    }
}

/// SIGHUP or REHASH: reload the settings (the config file, or the files flags name) and reopen
/// the log file for logrotate. Failures are logged and returned for the operators who
/// asked; the server keeps running.
fn on_hangup(
    cli: &Cli,
    matches: &clap::ArgMatches,
    settings: &Settings,
    server: &Server,
    log_file: Option<&LogFile>,
) -> RehashOutcome {
    info!("reloading (SIGHUP or REHASH)");
    let mut problems = Vec::new();
    if let Some(log_file) = log_file {
        if let Err(error) = log_file.reopen() {
            warn!("{error:#}; still writing to the old file");
            problems.push(format!("{error:#}; still writing to the old log file"));
        }
    }
    let mut outcome = reload::reload(cli, matches, settings, server.shared());
    if let Err(error) = reload_tls(server) {
        problems.push(format!("keeping the old TLS certificate: {error:#}"));
    }
    if let RehashOutcome::Applied { notes, .. } = &mut outcome {
        notes.extend(problems);
    }
    outcome
}

/// Re-reads the TLS certificate and key. New handshakes use them; existing
/// connections continue; a bad file keeps the old certificate, and the log says why.
fn reload_tls(server: &Server) -> anyhow::Result<()> {
    match server.reload_tls() {
        Ok(true) => info!("SIGHUP: TLS certificate reloaded"),
        Ok(false) => {}
        Err(error) => {
            warn!("SIGHUP: keeping the old TLS certificate: {error:#}");
            return Err(error);
        }
    }
    Ok(())
}

/// Every address the process listens on, with its kind: `plain 0.0.0.0:6667, tls
/// 0.0.0.0:6697, metrics 127.0.0.1:9100`.
fn listeners(server: &Server, metrics: Option<std::net::SocketAddr>) -> String {
    let plain = server.local_addrs().iter().map(|addr| ("plain", *addr));
    let tls = server.tls_local_addrs().iter().map(|addr| ("tls", *addr));
    let metrics = metrics.into_iter().map(|addr| ("metrics", addr));
    plain
        .chain(tls)
        .chain(metrics)
        .map(|(kind, addr)| format!("{kind} {addr}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `STATUS=` for the service manager: open connections, in all and per shard.
fn status_line(server: &Server) -> String {
    let per_shard: Vec<String> = server
        .shard_counters()
        .iter()
        .map(|c| c.connections.to_string())
        .collect();
    format!(
        "STATUS={} connections (per shard: {})",
        server.shared().connections.load(Ordering::Relaxed),
        per_shard.join(" ")
    )
}

/// The start line an operator looks for, and warnings about limits and privileges.
fn log_start(
    server: &Server,
    settings: &Settings,
    socket_activated: bool,
    metrics: Option<std::net::SocketAddr>,
) {
    let open_files = open_file_limit();
    let max_clients = settings.config.max_clients;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        driver = %server.driver(),
        shards = settings.config.shards,
        listeners = %listeners(server, metrics),
        cloaking = %if server.shared().cloak.is_some() { "on" } else { "off" },
        data_dir = %settings.config.data_dir.as_deref().unwrap_or(std::path::Path::new("none")).display(),
        socket_activated,
        open_files,
        max_clients,
        "ringchat started"
    );
    if open_files < max_clients as u64 + RESERVED_FDS {
        warn!(
            open_files,
            max_clients,
            "the open-file limit is too low for max-clients: connections past {} fail to be accepted; raise it (ulimit -n, LimitNOFILE=)",
            open_files.saturating_sub(RESERVED_FDS)
        );
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let binds_privileged_port =
        !socket_activated && server.local_addrs().iter().any(|a| a.port() < 1024);
    if root && !binds_privileged_port {
        warn!("running as root, which ringchat does not need: run it as an unprivileged user");
    } else if root {
        warn!("running as root to bind a port below 1024: CAP_NET_BIND_SERVICE or socket activation (contrib/ringchat.socket) does it without root");
    }
}
