//! What a reload (SIGHUP) does to the settings: load them again exactly as at start
//! (flags and environment over the config file over defaults, MOTD file re-read),
//! apply those that can change live (a changed ban file too), and log each changed
//! one that needs a restart (the declaration says which: `crate::settings::declared`).
//! A file that does not load changes nothing. The outcome is returned for the
//! operators who asked (REHASH, `crate::state::rehash`). Signals and notifications
//! are `main`'s.

use crate::settings::cli::Cli;
use crate::settings::Settings;
use crate::state::rehash::RehashOutcome;
use crate::state::Shared;
use clap::ArgMatches;
use std::time::Instant;
use tracing::{info, warn};

/// Re-reads the settings and applies the live ones. `running` are the settings the
/// process started with: the keys that need a restart are compared against them (as
/// given, before host names are resolved), so a pending restart is reported on every
/// reload until it happens.
pub fn reload(
    cli: &Cli,
    matches: &ArgMatches,
    running: &Settings,
    shared: &Shared,
) -> RehashOutcome {
    let began = Instant::now();
    let fresh = match Settings::reload(cli, matches, running.config_file.as_deref()) {
        Ok(fresh) => fresh,
        Err(error) => {
            let error = format!("{error:#}");
            warn!("reload failed, nothing changed: {error}");
            return RehashOutcome::Failed { error };
        }
    };
    let need_restart = fresh.values.needing_restart(&running.values);
    for key in &need_restart {
        warn!(
            key = key.as_str(),
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
    let mut notes = Vec::new();
    if !need_restart.is_empty() {
        notes.push(format!(
            "changed, but takes effect only after a restart: {}",
            need_restart.join(", ")
        ));
    }
    RehashOutcome::Applied {
        file: running
            .config_file
            .as_deref()
            .map_or("*".to_owned(), |file| file.display().to_string()),
        notes,
    }
}
