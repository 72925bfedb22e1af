//! The checks a start runs on the settings, and so `--check-config` too: the checks
//! a declared setting names (`super::declared`: one value, its message names the
//! value and what is allowed), the checks across settings ([`check_config`], which
//! the server also runs on a `Config` built in code), and whether the files the
//! start opens can be used ([`files_of`]; a reload skips these: they are read once, at
//! start, and a reload re-reads the TLS files on its own). Each error names the
//! setting by its key; `super::Settings::load` turns it into a flag or a file
//! position.

use crate::config::{Config, InvalidSetting};
use crate::state::network::Layout;
use crate::state::ShardSet;
use crate::tls::TlsAcceptor;
use std::fs::OpenOptions;
use std::path::Path;

/// A count that must not be 0 (`max-clients`).
pub fn at_least_one(value: &Option<usize>) -> Result<(), String> {
    match value {
        Some(0) => Err("must be at least 1, not 0".to_owned()),
        _ => Ok(()),
    }
}

/// A rate where 0 means off (`flood-rate`).
pub fn not_negative_rate(rate: &f64) -> Result<(), String> {
    if *rate < 0.0 || !rate.is_finite() {
        return Err(format!(
            "must be 0 (off) or a positive number of lines per second, not {rate}"
        ));
    }
    Ok(())
}

/// A share of something, 0 to 100 (`max-ban-share`).
pub fn percent(value: &u8) -> Result<(), String> {
    if *value > 100 {
        return Err(format!("must be a percentage, 0 to 100, not {value}"));
    }
    Ok(())
}

/// A file the server reads after the start has begun: it must be readable now.
fn readable_file(path: &Path) -> Result<(), String> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))
}

/// The log file: its directory must exist, and the file, if it exists, must be
/// writable (the start opens it for appending, creating it if needed).
fn log_file_can_be_opened(path: &Path) -> Result<(), String> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(format!(
            "{}: the directory {} does not exist",
            path.display(),
            dir.display()
        ));
    }
    if path.exists() {
        OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
    }
    Ok(())
}

/// The data directory: an existing directory the server may write, or, when missing,
/// one the start can create (its nearest existing ancestor is writable).
pub fn data_dir_can_be_used(dir: &Path) -> Result<(), String> {
    let mut existing = dir;
    while !existing.exists() {
        match existing.parent() {
            Some(parent) => existing = parent,
            None => break,
        }
    }
    if !existing.is_dir() {
        return Err(format!(
            "{}: {} is not a directory",
            dir.display(),
            existing.display()
        ));
    }
    writable(existing).map_err(|error| {
        if existing == dir {
            format!("cannot write in {}: {error}", dir.display())
        } else {
            format!(
                "cannot create {}: {} is not writable: {error}",
                dir.display(),
                existing.display()
            )
        }
    })
}

/// Whether this process may create files in `dir` (access(2), which also reports a
/// read-only file system to root).
fn writable(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))?;
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    if unsafe { libc::access(path.as_ptr(), libc::W_OK | libc::X_OK) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Checks the values no type and no single-setting check can rule out.
pub fn check_config(config: &Config) -> Result<(), InvalidSetting> {
    let invalid = |key, problem: String| Err(InvalidSetting { key, problem });
    if config.shards == 0 || config.shards > ShardSet::MAX_SHARDS {
        return invalid(
            "shards",
            format!("must be between 1 and {}", ShardSet::MAX_SHARDS),
        );
    }
    if let Some(cluster) = &config.cluster {
        // Layout::place: the node's shards are places 0..shards, every other node one
        // place after them, so shards + node id must stay below MAX_PLACES.
        if config.shards + cluster.node as usize >= Layout::MAX_PLACES {
            return invalid(
                "node-id",
                format!(
                    "{} with {} shards must be below {} (shards plus node numbers share {} places)",
                    cluster.node,
                    config.shards,
                    Layout::MAX_PLACES - config.shards,
                    Layout::MAX_PLACES
                ),
            );
        }
    }
    if config.listen.is_empty() {
        return invalid("listen", "needs at least one address".to_owned());
    }
    if let Err(problem) = at_least_one(&Some(config.max_clients)) {
        return invalid("max-clients", problem);
    }
    if let Err(problem) = not_negative_rate(&config.flood_rate) {
        return invalid("flood-rate", problem);
    }
    if !config.tls_listen.is_empty() && config.tls.is_none() {
        return invalid("tls-listen", "needs --tls-cert and --tls-key".to_owned());
    }
    if !config.websocket_tls_listen.is_empty() && config.tls.is_none() {
        return invalid(
            "websocket-tls-listen",
            "needs --tls-cert and --tls-key".to_owned(),
        );
    }
    if config.sts.is_some() && config.tls_listen.is_empty() {
        return invalid(
            "sts-port",
            "needs a --tls-listen address to send clients to".to_owned(),
        );
    }
    Ok(())
}

/// Whether the files the start opens can be used: the TLS certificate and key (read
/// and matched as the start does), the cluster's credentials and CA on a cluster
/// node, and the log file.
pub fn files_of(config: &Config, log_file: Option<&Path>) -> Result<(), InvalidSetting> {
    let invalid = |key, problem| InvalidSetting { key, problem };
    if let Some(files) = config
        .tls
        .as_ref()
        .filter(|_| !config.tls_listen.is_empty() || !config.websocket_tls_listen.is_empty())
    {
        TlsAcceptor::load(files.clone())
            .map_err(|error| invalid("tls-cert", format!("{error:#}")))?;
    }
    if let Some(cluster) = &config.cluster {
        if let Some(credentials) = &cluster.credentials {
            readable_file(credentials)
                .map_err(|problem| invalid("cluster-credentials", problem))?;
        }
        if let Some(ca) = &cluster.ca {
            readable_file(ca).map_err(|problem| invalid("cluster-ca", problem))?;
        }
    }
    if let Some(path) = log_file {
        log_file_can_be_opened(path).map_err(|problem| invalid("log-file", problem))?;
    }
    Ok(())
}
