//! The configuration file (`--config FILE`, TOML): its keys, reading it, and turning
//! any problem into one line that names the key and its `line:column`. It neither
//! merges with flags (`crate::cli` does) nor applies anything.
//!
//! Every key is a flag's name without the dashes in front (`max-clients = 10000`), so
//! adding a flag's key is one field here and one line in `cli.rs`.
//! `ringchat.example.toml` documents every key; `tests/config_file.rs` checks that it
//! lists exactly these fields with the defaults in code.

use crate::config::IoMode;
use crate::logging::LogFormat;
use anyhow::anyhow;
use serde::Deserialize;
use std::fmt::Display;
use std::path::{Path, PathBuf};

/// The keys of the file, each optional: a missing key falls back to the default.
/// Meanings are the flags' (`ringchat --help`) and `ringchat.example.toml`'s.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileSettings {
    pub listen: Option<Vec<String>>,
    pub tls_listen: Option<Vec<String>>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub sts_port: Option<u16>,
    pub sts_duration: Option<u64>,
    pub server_name: Option<String>,
    pub server_info: Option<String>,
    pub network: Option<String>,
    pub password: Option<String>,
    pub motd: Option<PathBuf>,
    pub max_clients: Option<usize>,
    pub sendq: Option<usize>,
    pub recvq: Option<usize>,
    pub flood_burst: Option<u32>,
    #[serde(default, deserialize_with = "lines_per_second")]
    pub flood_rate: Option<f64>,
    pub ping_interval: Option<u64>,
    pub ping_timeout: Option<u64>,
    pub registration_timeout: Option<u64>,
    pub shutdown_timeout: Option<u64>,
    pub write_timeout: Option<u64>,
    pub max_per_source: Option<u32>,
    pub source_connect_burst: Option<u32>,
    pub source_connect_rate: Option<f64>,
    pub max_unregistered_per_source: Option<u32>,
    pub max_unregistered: Option<usize>,
    pub exempt: Option<Vec<String>>,
    pub ipv6_source_prefix: Option<u8>,
    pub max_channels: Option<usize>,
    pub utf8_only: Option<bool>,
    pub shards: Option<usize>,
    pub io: Option<IoMode>,
    pub log_format: Option<LogFormat>,
    pub log_file: Option<PathBuf>,
    pub metrics: Option<String>,
    pub cluster: Option<Vec<String>>,
    pub node_id: Option<u16>,
    pub cluster_credentials: Option<PathBuf>,
    pub cluster_ca: Option<PathBuf>,
    pub node_timeout: Option<u64>,
    pub snapshot_every: Option<u64>,
    /// Operator accounts, one `[[oper]]` table each.
    pub oper: Option<Vec<OperSettings>>,
}

/// One `[[oper]]` table: an operator account.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OperSettings {
    /// The name given to OPER.
    pub name: String,
    /// An argon2 hash in PHC form (`ringchat --hash-password`), never the password.
    pub password: String,
    /// `user@host` masks matched against `~user@ip`; none: from anywhere.
    pub hosts: Option<Vec<String>>,
}

/// A configuration file as read: its settings, and its text for error positions.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    path: PathBuf,
    text: String,
    /// The keys the file sets.
    pub settings: FileSettings,
}

impl ConfigFile {
    /// Reads and parses `path`. The error is one line: `FILE:LINE:COLUMN: KEY: problem`.
    pub fn load(path: &Path) -> anyhow::Result<ConfigFile> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| anyhow!("cannot read config file {}: {error}", path.display()))?;
        ConfigFile::parse(path, text)
    }

    /// Parses `text` as if read from `path`.
    pub fn parse(path: &Path, text: String) -> anyhow::Result<ConfigFile> {
        match toml::from_str::<FileSettings>(&text) {
            Ok(settings) => Ok(ConfigFile {
                path: path.to_owned(),
                text,
                settings,
            }),
            Err(error) => {
                let message = error.message().lines().next().unwrap_or("invalid").trim();
                let at = error.span().map_or(0, |span| span.start);
                let (line, column) = line_and_column(&text, at);
                let place = format!("{}:{line}:{column}", path.display());
                Err(match unknown_key(message) {
                    Some(key) => anyhow!(
                        "{place}: unknown key `{key}` (ringchat.example.toml lists every key)"
                    ),
                    None => match key_at(&text, at) {
                        Some(key) => anyhow!("{place}: {key}: {message}"),
                        None => anyhow!("{place}: {message}"),
                    },
                })
            }
        }
    }

    /// An error about `key` pointing at where the file sets it.
    pub fn error_at(&self, key: &str, problem: impl Display) -> anyhow::Error {
        let (line, column) =
            key_position(&self.text, key).map_or((1, 1), |at| line_and_column(&self.text, at));
        anyhow!("{}:{line}:{column}: {key}: {problem}", self.path.display())
    }

    /// An error about `field` of the `index`th `[[table]]` block, pointing at where
    /// the file sets that field (else at the block, else at the start).
    pub fn error_in_block(
        &self,
        table: &str,
        index: usize,
        field: &str,
        problem: impl Display,
    ) -> anyhow::Error {
        let at = block_field_position(&self.text, table, index, field);
        let (line, column) = at.map_or((1, 1), |at| line_and_column(&self.text, at));
        anyhow!(
            "{}:{line}:{column}: {table}[{index}].{field}: {problem}",
            self.path.display()
        )
    }

    /// A path the file names, relative to the file's own directory when not absolute.
    pub fn resolve_path(&self, path: &Path) -> PathBuf {
        match self.path.parent() {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.to_owned(),
        }
    }

    /// The file's path as given.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Accepts `flood-rate = 5` as well as `flood-rate = 5.0`: TOML integers are not floats.
fn lines_per_second<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Integer(i64),
        Float(f64),
    }
    Ok(match Option::<Number>::deserialize(de)? {
        Some(Number::Integer(n)) => Some(n as f64),
        Some(Number::Float(x)) => Some(x),
        None => None,
    })
}

/// The key named by serde's "unknown field `x`, expected one of ..." message.
fn unknown_key(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

/// The top-level key whose `key = value` span holds byte `at`.
fn key_at(text: &str, at: usize) -> Option<String> {
    let table = toml::de::DeTable::parse(text).ok()?;
    table.get_ref().iter().find_map(|(key, value)| {
        (key.span().start <= at && at < value.span().end).then(|| key.get_ref().to_string())
    })
}

/// Where the file writes `key` (byte offset of the key).
fn key_position(text: &str, key: &str) -> Option<usize> {
    let table = toml::de::DeTable::parse(text).ok()?;
    table
        .get_ref()
        .keys()
        .find(|k| k.get_ref().as_ref() == key)
        .map(|k| k.span().start)
}

/// Where the `index`th `[[table]]` block sets `field` (byte offset of the value).
fn block_field_position(text: &str, table: &str, index: usize, field: &str) -> Option<usize> {
    let root = toml::de::DeTable::parse(text).ok()?;
    let (_, blocks) = root
        .get_ref()
        .iter()
        .find(|(key, _)| key.get_ref().as_ref() == table)?;
    let toml::de::DeValue::Array(blocks) = blocks.get_ref() else {
        return None;
    };
    let block = blocks.get(index)?;
    let toml::de::DeValue::Table(block) = block.get_ref() else {
        return Some(block.span().start);
    };
    block
        .iter()
        .find(|(key, _)| key.get_ref().as_ref() == field)
        .map(|(_, value)| value.span().start)
}

/// 1-based line and column (in characters) of byte `at`.
fn line_and_column(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(text: &str) -> String {
        ConfigFile::parse(Path::new("ringchat.toml"), text.to_owned())
            .expect_err("the file is refused")
            .to_string()
    }

    #[test]
    fn an_unknown_key_is_named_with_its_position() {
        assert_eq!(
            error_of("sendq = 10\nsendqq = 4\n"),
            "ringchat.toml:2:1: unknown key `sendqq` (ringchat.example.toml lists every key)"
        );
    }

    #[test]
    fn a_bad_value_names_its_key_and_position() {
        let error = error_of("network = \"x\"\n  max-clients = \"many\"\n");
        assert!(
            error.starts_with("ringchat.toml:2:17: max-clients: "),
            "{error}"
        );
        let error = error_of("io = \"kqueue\"\n");
        assert!(error.starts_with("ringchat.toml:1:6: io: "), "{error}");
        assert!(!error.contains('\n'), "{error}");
    }

    #[test]
    fn a_syntax_error_is_one_line_with_a_position() {
        let error = error_of("sendq = = 3\n");
        assert!(error.starts_with("ringchat.toml:1:"), "{error}");
        assert!(!error.contains('\n'), "{error}");
    }

    #[test]
    fn a_flood_rate_may_be_an_integer_or_a_float() {
        let file = ConfigFile::parse(Path::new("f"), "flood-rate = 5".to_owned()).unwrap();
        assert_eq!(file.settings.flood_rate, Some(5.0));
        let file = ConfigFile::parse(Path::new("f"), "flood-rate = 0.5".to_owned()).unwrap();
        assert_eq!(file.settings.flood_rate, Some(0.5));
    }

    #[test]
    fn error_at_points_at_the_key() {
        let file = ConfigFile::parse(Path::new("f.toml"), "\n\nshards = 0\n".to_owned()).unwrap();
        assert_eq!(
            file.error_at("shards", "must be between 1 and 64")
                .to_string(),
            "f.toml:3:1: shards: must be between 1 and 64"
        );
    }
}
