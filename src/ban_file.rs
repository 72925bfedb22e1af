//! The ban file: KLINEs and DLINEs kept across restarts, as TOML (`[[ban]]` tables),
//! `bans.toml` in the data directory (`--data-dir`; never beside the configuration
//! file, which a service keeps read-only: one found there is moved once, by
//! [`migrate`]). Read at start (and for `--check-config`); written
//! after every KLINE, DLINE, UNKLINE and UNDLINE, atomically (a temporary file, then a
//! rename), so a crash leaves the old list or the new one, never half of one.
//!
//! Several shards may write: each writes the whole list as of the log entry it took
//! in, with that entry's position, and a write older than the last one is skipped, so the file
//! always ends at the newest list.
//!
//! A reload reads the file again; if it differs from the list the server last read or
//! wrote (someone edited it), the new list waits in [`BanStore`] until shard 0's next
//! housekeeping tick proposes it as one event, so every replica switches at the same
//! point of the log.

use crate::bans::{BanTarget, ServerBan};
use anyhow::{anyhow, Context};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// The file's layout.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BanFile {
    #[serde(default)]
    ban: Vec<BanRecord>,
}

/// One `[[ban]]` table.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct BanRecord {
    /// `kline` or `dline`.
    kind: String,
    /// `user@host` mask (kline) or address or CIDR network (dline).
    mask: String,
    reason: String,
    set_by: String,
    /// Unix seconds; absent: unknown (written before the time was kept).
    #[serde(default, skip_serializing_if = "is_zero")]
    set_at: u64,
    /// Unix seconds; absent: permanent.
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<u64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The bans in `path`; none when the file does not exist yet. Expired bans are left
/// out. The error is one line naming the file and the ban.
pub fn load(path: &Path, now_unix: u64) -> anyhow::Result<Vec<ServerBan>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(anyhow!("cannot read ban file {}: {error}", path.display())),
    };
    let file: BanFile = toml::from_str(&text).map_err(|error| {
        let message = error.message().lines().next().unwrap_or("invalid").trim();
        anyhow!("ban file {}: {message}", path.display())
    })?;
    file.ban
        .into_iter()
        .enumerate()
        .map(|(index, record)| {
            let target = match record.kind.as_str() {
                "kline" => BanTarget::User(record.mask.into()),
                "dline" => BanTarget::Address(record.mask.parse().map_err(|_| {
                    anyhow!(
                        "ban file {}: ban[{index}]: `{}` is not a network",
                        path.display(),
                        record.mask
                    )
                })?),
                other => {
                    return Err(anyhow!(
                        "ban file {}: ban[{index}]: kind `{other}` is neither kline nor dline",
                        path.display()
                    ))
                }
            };
            Ok(ServerBan {
                target,
                reason: record.reason.into(),
                set_by: record.set_by.into(),
                set_at: record.set_at,
                expires_at: record.expires_at,
            })
        })
        .filter(|ban| ban.as_ref().map_or(true, |ban| ban.is_active(now_unix)))
        .collect()
}

/// Copies the ban file `legacy` (beside the config, where bans were kept before the
/// data directory) to `to`, atomically, as the start does once when the data
/// directory has none. The old file is left: its directory may be read-only.
pub fn migrate(legacy: &Path, to: &Path) -> anyhow::Result<()> {
    let temporary = to.with_extension("toml.tmp");
    std::fs::copy(legacy, &temporary).with_context(|| {
        format!(
            "cannot copy the ban file {} to {}",
            legacy.display(),
            temporary.display()
        )
    })?;
    std::fs::rename(&temporary, to).with_context(|| format!("cannot replace {}", to.display()))
}

/// Where the bans are written, what the file holds, and a reloaded list waiting to
/// be applied.
#[derive(Debug)]
pub struct BanStore {
    /// The file; `None`: bans live only as long as the process (a server built in
    /// code without one).
    path: Option<PathBuf>,
    /// What the file holds as far as this process knows; held while writing.
    on_disk: Mutex<OnDisk>,
    /// A list read by a reload that differs from `on_disk`, for shard 0 to propose.
    reloaded: Mutex<Option<Vec<ServerBan>>>,
    /// Whether `reloaded` holds a list: one relaxed load per housekeeping tick.
    has_reloaded: AtomicBool,
}

/// The list the file holds and the log position it reflects (0: read at start or by
/// a reload).
#[derive(Debug)]
struct OnDisk {
    seq: u64,
    bans: Vec<ServerBan>,
}

impl BanStore {
    /// A store writing to `path`, if any, which holds `bans` (read at start).
    pub fn new(path: Option<PathBuf>, bans: Vec<ServerBan>) -> BanStore {
        BanStore {
            path,
            on_disk: Mutex::new(OnDisk { seq: 0, bans }),
            reloaded: Mutex::new(None),
            has_reloaded: AtomicBool::new(false),
        }
    }

    /// A reload read `bans` from the file: if they differ from what the file held,
    /// they wait for shard 0 to propose them; returns whether they differ.
    pub fn offer_reloaded(&self, bans: Vec<ServerBan>) -> bool {
        let mut on_disk = self.on_disk.lock().unwrap_or_else(|p| p.into_inner());
        if on_disk.bans == bans {
            return false;
        }
        on_disk.bans = bans.clone();
        *self.reloaded.lock().unwrap_or_else(|p| p.into_inner()) = Some(bans);
        self.has_reloaded.store(true, Ordering::Release);
        true
    }

    /// The reloaded list waiting to be proposed, if any (shard 0's housekeeping).
    pub fn take_reloaded(&self) -> Option<Vec<ServerBan>> {
        if !self.has_reloaded.swap(false, Ordering::AcqRel) {
            return None;
        }
        self.reloaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Whether bans are kept across restarts.
    pub fn is_persistent(&self) -> bool {
        self.path.is_some()
    }

    /// Writes the active bans of a replica that has applied the log through `seq`,
    /// unless a newer list was written already.
    pub fn save<'a>(
        &self,
        seq: u64,
        bans: impl IntoIterator<Item = &'a ServerBan>,
        now_unix: u64,
    ) -> anyhow::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut on_disk = self.on_disk.lock().unwrap_or_else(|p| p.into_inner());
        if seq <= on_disk.seq {
            return Ok(());
        }
        let active: Vec<ServerBan> = bans
            .into_iter()
            .filter(|ban| ban.is_active(now_unix))
            .cloned()
            .collect();
        let file = BanFile {
            ban: active
                .iter()
                .map(|ban| BanRecord {
                    kind: match ban.target {
                        BanTarget::User(_) => "kline",
                        BanTarget::Address(_) => "dline",
                    }
                    .to_owned(),
                    mask: ban.target.mask(),
                    reason: ban.reason.to_string(),
                    set_by: ban.set_by.to_string(),
                    set_at: ban.set_at,
                    expires_at: ban.expires_at,
                })
                .collect(),
        };
        let text = format!(
            "# KLINEs and DLINEs, written by ringchat; edit while it is stopped.\n{}",
            toml::to_string(&file).context("cannot render the ban file")?
        );
        let temporary = path.with_extension("toml.tmp");
        std::fs::write(&temporary, text)
            .with_context(|| format!("cannot write {}", temporary.display()))?;
        std::fs::rename(&temporary, path)
            .with_context(|| format!("cannot replace {}", path.display()))?;
        *on_disk = OnDisk { seq, bans: active };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bans_survive_a_write_and_a_read_and_expired_ones_are_dropped() {
        let dir = std::env::temp_dir().join(format!("ringchat-bans-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bans.toml");
        let _ = std::fs::remove_file(&path);
        assert!(load(&path, 0).unwrap().is_empty());
        let kline = ServerBan {
            target: BanTarget::User("~*@192.0.2.*".into()),
            reason: "spam".into(),
            set_by: "alice".into(),
            set_at: 50,
            expires_at: None,
        };
        let dline = ServerBan {
            target: BanTarget::Address("198.51.100.0/24".parse().unwrap()),
            reason: "flood".into(),
            set_by: "alice".into(),
            set_at: 0,
            expires_at: Some(500),
        };
        let store = BanStore::new(Some(path.clone()), Vec::new());
        store.save(2, &[kline.clone(), dline.clone()], 100).unwrap();
        assert_eq!(load(&path, 100).unwrap(), [kline.clone(), dline]);
        assert_eq!(load(&path, 500).unwrap(), std::slice::from_ref(&kline));
        // An older list does not overwrite a newer one.
        store.save(1, &[], 100).unwrap();
        assert_eq!(load(&path, 100).unwrap().len(), 2);
        // A reload offers only a list that differs from the file's.
        assert!(!store.offer_reloaded(load(&path, 100).unwrap()));
        assert_eq!(store.take_reloaded(), None);
        assert!(store.offer_reloaded(vec![kline.clone()]));
        assert_eq!(store.take_reloaded(), Some(vec![kline.clone()]));
        assert_eq!(store.take_reloaded(), None);
        std::fs::write(
            &path,
            "[[ban]]\nkind = \"gline\"\nmask = \"x\"\nreason = \"r\"\nset-by = \"a\"\n",
        )
        .unwrap();
        let error = load(&path, 0).unwrap_err().to_string();
        assert!(error.contains("ban[0]") && !error.contains('\n'), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
