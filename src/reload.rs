//! What a reload (SIGHUP) does to the settings: load them again exactly as at start
//! (flags and environment over the config file over defaults, MOTD file re-read),
//! apply those that can change live (a changed ban file too), and log each changed
//! one that needs a restart.
//! A file that does not load changes nothing. Signals and notifications are `main`'s.

use crate::cli::Cli;
use crate::settings::Settings;
use crate::state::Shared;
use clap::ArgMatches;
use std::time::Instant;
use tracing::{info, warn};

/// Re-reads the settings and applies the live ones. `running` are the settings the
/// process started with: the keys that need a restart are compared against them, so
/// a pending restart is reported on every reload until it happens.
pub fn reload(
    cli: &Cli,
    matches: &ArgMatches,
    running: &Settings,
    shared: &Shared,
) -> anyhow::Result<()> {
    let began = Instant::now();
    let fresh = Settings::load(cli, matches, running.config_file.as_deref())
        .inspect_err(|error| warn!("reload failed, nothing changed: {error:#}"))?;
    for key in needing_restart(running, &fresh) {
        warn!(
            key,
            "changed, but takes effect only after a restart; unchanged"
        );
    }
    let mut changed = shared.live.apply(&fresh.config);
    if shared
        .ban_store
        .offer_reloaded(fresh.config.server_bans.clone())
    {
        changed.push("bans");
    }
    info!(
        changed = ?changed,
        micros = began.elapsed().as_micros() as u64,
        "reloaded"
    );
    Ok(())
}

/// The keys that differ between `running` and `fresh` but cannot change live: sockets,
/// threads and the driver are made at start, and so are the names clients have seen.
fn needing_restart(running: &Settings, fresh: &Settings) -> Vec<&'static str> {
    let (old, new) = (&running.config, &fresh.config);
    [
        ("listen", old.listen != new.listen),
        ("tls-listen", old.tls_listen != new.tls_listen),
        ("tls-cert", old.tls != new.tls),
        ("sts-port", old.sts != new.sts),
        ("server-name", old.server_name != new.server_name),
        ("server-info", old.server_info != new.server_info),
        ("network", old.network != new.network),
        ("password", old.password != new.password),
        ("utf8-only", old.utf8_only != new.utf8_only),
        (
            "shutdown-timeout",
            old.shutdown_timeout != new.shutdown_timeout,
        ),
        ("write-timeout", old.write_timeout != new.write_timeout),
        (
            "max-per-source",
            old.sources.max_connections != new.sources.max_connections,
        ),
        (
            "source-connect-burst",
            old.sources.connect_burst != new.sources.connect_burst,
        ),
        (
            "source-connect-rate",
            old.sources.connect_rate != new.sources.connect_rate,
        ),
        (
            "max-unregistered-per-source",
            old.sources.max_unregistered != new.sources.max_unregistered,
        ),
        (
            "max-unregistered",
            old.sources.max_unregistered_total != new.sources.max_unregistered_total,
        ),
        ("exempt", old.sources.exempt != new.sources.exempt),
        (
            "ipv6-source-prefix",
            old.sources.ipv6_prefix != new.sources.ipv6_prefix,
        ),
        ("shards", old.shards != new.shards),
        ("io", old.io != new.io),
        ("cluster", old.cluster != new.cluster),
        ("metrics", running.metrics != fresh.metrics),
        ("log-format", running.log_format != fresh.log_format),
        ("log-file", running.log_file != fresh.log_file),
    ]
    .into_iter()
    .filter_map(|(key, differs)| differs.then_some(key))
    .collect()
}
