//! The `ringchat` binary: parse flags, start the server, reload the TLS certificate
//! on SIGHUP, stop on SIGINT/SIGTERM. A start-up failure is one line on stderr and
//! exit status 1.

use anyhow::Context;
use clap::Parser;
use ringchat::cli::{Cli, LogFormat};
use ringchat::Server;
use std::process::ExitCode;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ringchat: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    raise_open_file_limit();
    let config = cli.into_config()?;
    // Watch the signals before the first client can connect, so a SIGTERM is never
    // the default (abrupt) exit.
    let signals = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the signal runtime")?;
    let (mut terminate, mut interrupt, mut hangup) = {
        let _runtime = signals.enter();
        (
            signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
            signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
            signal(SignalKind::hangup()).context("cannot watch SIGHUP")?,
        )
    };
    let mut server = Server::start(config)?;
    let outcome = signals.block_on(async {
        loop {
            tokio::select! {
                _ = terminate.recv() => info!("SIGTERM: shutting down"),
                _ = interrupt.recv() => info!("SIGINT: shutting down"),
                _ = hangup.recv() => {
                    reload_tls(&server);
                    continue;
                }
                stopped = server.stopped() => return stopped,
            }
            return Ok(());
        }
    });
    server.shutdown();
    outcome
}

/// SIGHUP: re-read the TLS certificate and key. New handshakes use them; existing
/// connections continue; a bad file keeps the old certificate, and the log says why.
fn reload_tls(server: &Server) {
    match server.reload_tls() {
        Ok(true) => info!("SIGHUP: TLS certificate reloaded"),
        Ok(false) => info!("SIGHUP: no TLS listener, nothing to reload"),
        Err(error) => warn!("SIGHUP: keeping the old TLS certificate: {error:#}"),
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Lets the soft open-file limit rise to the hard limit: each client is a descriptor.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
