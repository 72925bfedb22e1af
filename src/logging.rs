//! Where the logs go and how they look: stderr, or `--log-file` (reopened on SIGHUP so
//! logrotate can move it away); text or JSON; ANSI colour only when stderr is a
//! terminal and `NO_COLOR` is unset; no timestamp of our own when stderr is the
//! systemd journal, which stamps lines itself. Filtering is `RUST_LOG`'s (default
//! `info`).

use anyhow::Context;
use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The log file, shared by every thread that logs; [`LogFile::reopen`] swaps the
/// descriptor so lines after a logrotate go to the new file.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: Mutex<File>,
}

impl LogFile {
    fn open(path: &Path) -> anyhow::Result<LogFile> {
        Ok(LogFile {
            path: path.to_owned(),
            file: Mutex::new(open_for_append(path)?),
        })
    }

    /// Opens the path again (after logrotate renamed the old file) and writes there.
    pub fn reopen(&self) -> anyhow::Result<()> {
        let fresh = open_for_append(&self.path)?;
        *self.file.lock().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }
}

/// One event is formatted into a buffer and written with one `write_all`, so lines
/// from different threads never interleave.
impl Write for &LogFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn open_for_append(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open log file {}", path.display()))
}

/// Installs the global subscriber; returns the log file when logging to one.
pub fn init(format: LogFormat, log_file: Option<&Path>) -> anyhow::Result<Option<Arc<LogFile>>> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let file = log_file.map(LogFile::open).transpose()?.map(Arc::new);
    let (writer, ansi) = match &file {
        Some(file) => (BoxMakeWriter::new(file.clone()), false),
        None => (BoxMakeWriter::new(std::io::stderr), colour_on_stderr()),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    let journal_stamps_lines = file.is_none() && stderr_is_the_journal();
    match format {
        LogFormat::Text if journal_stamps_lines => builder.without_time().init(),
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(file)
}

/// Whether stderr is systemd's journal stream (`JOURNAL_STREAM` names its device and
/// inode, sd_journal_stream_fd(3)): the journal timestamps every line itself, so text
/// lines leave their own timestamp out.
fn stderr_is_the_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((device, inode)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    // SAFETY: fstat writes into the struct we own.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(libc::STDERR_FILENO, &mut stat) } != 0 {
        return false;
    }
    device.parse() == Ok(stat.st_dev) && inode.parse() == Ok(stat.st_ino)
}

/// Colour only for a person watching a terminal who has not asked for none
/// (<https://no-color.org>: any non-empty `NO_COLOR` turns it off).
fn colour_on_stderr() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    std::io::stderr().is_terminal() && !no_color
}
