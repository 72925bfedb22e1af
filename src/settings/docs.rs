//! The documentation of the settings, rendered from their declaration
//! (`super::declared`): `ringchat.example.toml` and the README's flags table.
//! `tests/settings_docs.rs` fails when either file differs from what is rendered here
//! (and rewrites both with `RINGCHAT_BLESS=1`), so neither drifts from the code.

use super::cli::command;
use super::declared::{Reload, DECLARED};
use clap::ValueEnum;
use std::path::PathBuf;

/// Where the README's flags table starts; the table ends at [`TABLE_END`].
pub const TABLE_START: &str =
    "<!-- flags table: rendered from src/settings/declared.rs, checked by tests/settings_docs.rs -->";
/// Where the README's flags table ends.
pub const TABLE_END: &str = "<!-- end of flags table -->";

/// Line width of the example file's comments.
const WIDTH: usize = 88;

/// The example file's opening.
const EXAMPLE_HEAD: &str = "\
# ringchat configuration file: every key, its default and what it means.
# Rendered from src/settings/declared.rs (tests/settings_docs.rs checks it).
#
#   ringchat --config /etc/ringchat/ringchat.toml
#   ringchat --check-config /etc/ringchat/ringchat.toml    # validate, exit 0 or 1
#
# Each key is the name of a flag (`ringchat --help`). A flag or its RINGCHAT_*
# environment variable wins over the file; the file wins over the default. An unknown
# key or a bad value stops the start (or a reload) with one line naming the key and
# its line:column. Relative paths are relative to this file's directory.
#
# SIGHUP (or REHASH) re-reads this file: the keys marked \"a reload applies it\" change
# at once for every client, connected or not; the others need a restart (a reload logs
# each changed one and leaves it as it is).
#
# Values written below are the defaults; commented-out keys have no fixed default.
";

/// The example file's closing: the `[[oper]]` blocks, which are not flags.
const EXAMPLE_OPERS: &str = "\
# --- Operators (a reload applies changes) ---------------------------------------------

# One [[oper]] block per operator account; none by default. `password` is an argon2
# hash, never the password itself: `echo 'the password' | ringchat --hash-password`
# prints one. `hosts` (optional) lists `user@host` masks, with * and ?, matched
# against `~user@ip` (the ident is not checked, so the user part starts with ~);
# without it the account works from anywhere. A user who passes OPER gets +o.
# Operators' KLINEs and DLINEs are kept in bans.toml in data-dir (written by the
# server; a reload re-reads it).
# [[oper]]
#   name = \"admin\"
#   password = \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$hash-printed-by-ringchat\"
#   hosts = [\"~*@127.0.0.1\", \"~*@10.0.0.*\"]
";

/// `ringchat.example.toml`: every declared setting under its group, with its help,
/// whether a reload applies it, and its default (or, commented out, an example).
pub fn example_toml() -> String {
    let defaults = declared_defaults();
    let mut out = String::from(EXAMPLE_HEAD);
    let mut group = "";
    for setting in DECLARED {
        if setting.group != group {
            group = setting.group;
            let title = format!("# --- {group} ");
            out.push_str(&format!("\n{title:-<width$}\n", width = WIDTH - 2));
        }
        let reload = match setting.reload {
            Reload::Live => "A reload applies it.",
            Reload::Restart => "Restart to change.",
        };
        let default = defaults.get(setting.name);
        let mut text = setting.help_text();
        if default.is_none() && !setting.shown.is_empty() {
            text.push_str(&format!(" Default: {}.", setting.shown));
        }
        out.push('\n');
        out.push_str(&wrap(&format!("{text} {reload}"), "# "));
        match default {
            Some(value) => out.push_str(&format!("{} = {value}\n", setting.key())),
            None => out.push_str(&format!("# {} = {}\n", setting.key(), setting.example)),
        }
    }
    out.push('\n');
    out.push_str(EXAMPLE_OPERS);
    out
}

/// The README's flags table, between [`TABLE_START`] and [`TABLE_END`] (included).
pub fn flags_table() -> String {
    let command = command();
    let mut out = format!("{TABLE_START}\n");
    out.push_str("| flag | env | default | reload | meaning |\n|---|---|---|---|---|\n");
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if id == "help" || id == "version" {
            continue;
        }
        let declared = DECLARED.iter().find(|setting| setting.name == id);
        let long = arg.get_long().unwrap_or(id);
        let mut flag = format!("--{long}");
        if arg.get_action().takes_values() {
            let possible: Vec<String> = arg
                .get_possible_values()
                .iter()
                .map(|value| value.get_name().to_owned())
                .collect();
            let value = if possible.is_empty() {
                arg.get_value_names()
                    .and_then(|names| names.first())
                    .map_or_else(|| id.to_uppercase(), ToString::to_string)
            } else {
                possible.join("\\|")
            };
            flag.push_str(&format!(" {value}"));
        }
        let mut flag = format!("`{flag}`");
        if arg.get_value_delimiter().is_some() {
            flag.push_str(" (repeatable, or comma list)");
        }
        let env = arg
            .get_env()
            .map_or(String::new(), |env| format!("`{}`", env.to_string_lossy()));
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|value| value.to_string_lossy().into_owned())
            .collect();
        let (default, reload, help) = match declared {
            Some(setting) => (
                if setting.shown.is_empty() {
                    format!("`{}`", defaults.join(","))
                } else {
                    setting.shown.to_owned()
                },
                match setting.reload {
                    Reload::Live => "live",
                    Reload::Restart => "restart",
                },
                setting.help_text(),
            ),
            None => (
                String::new(),
                "",
                arg.get_help().map(ToString::to_string).unwrap_or_default(),
            ),
        };
        let help = help.replace('|', "\\|");
        out.push_str(&format!(
            "| {flag} | {env} | {default} | {reload} | {help} |\n"
        ));
    }
    out.push_str(TABLE_END);
    out.push('\n');
    out
}

/// Each declared setting's default as a TOML value, by name; absent when it has no
/// fixed default.
fn declared_defaults() -> std::collections::HashMap<&'static str, String> {
    let values = super::Values::defaults();
    let mut defaults = std::collections::HashMap::new();
    macro_rules! collect_defaults {
        ($(
            $(#[doc = $doc:literal])*
            $name:ident: $flag:ty | $file:ty, $reload:ident, $group:literal,
                [$($check:ident),*], $shown:literal, $example:literal, [$($arg:tt)*];
        )*) => {$(
            if let Some(value) = values.$name.toml() {
                defaults.insert(stringify!($name), value);
            }
        )*};
    }
    super::declared::with_settings!(collect_defaults);
    defaults
}

/// `text` as comment lines of at most [`WIDTH`] characters, each starting `prefix`.
fn wrap(text: &str, prefix: &str) -> String {
    let mut out = String::new();
    let mut line = String::from(prefix);
    for word in text.split_whitespace() {
        if line.len() > prefix.len() && line.len() + 1 + word.len() > WIDTH {
            out.push_str(line.trim_end());
            out.push('\n');
            line = String::from(prefix);
        }
        if line.len() > prefix.len() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(line.trim_end());
    out.push('\n');
    out
}

/// A value as TOML; `None` when it is absent (no fixed default, or an empty list).
trait ToToml {
    fn toml(&self) -> Option<String>;
}

/// Numbers and booleans: TOML writes them as Rust displays them.
macro_rules! displayed {
    ($($t:ty),*) => {$(
        impl ToToml for $t {
            fn toml(&self) -> Option<String> {
                Some(self.to_string())
            }
        }
    )*};
}

displayed!(bool, u8, u16, u32, u64, usize);

impl ToToml for f64 {
    /// Always with a fraction (`5.0`), as a TOML float.
    fn toml(&self) -> Option<String> {
        Some(format!("{self:?}"))
    }
}

impl ToToml for String {
    fn toml(&self) -> Option<String> {
        Some(format!("{self:?}"))
    }
}

impl ToToml for PathBuf {
    fn toml(&self) -> Option<String> {
        Some(format!("{:?}", self.display().to_string()))
    }
}

impl ToToml for Vec<String> {
    fn toml(&self) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let items: Vec<String> = self.iter().map(|item| format!("{item:?}")).collect();
        Some(format!("[{}]", items.join(", ")))
    }
}

impl<T: ToToml> ToToml for Option<T> {
    fn toml(&self) -> Option<String> {
        self.as_ref().and_then(ToToml::toml)
    }
}

/// clap's enums (`io`, `log-format`): their name as a TOML string.
macro_rules! value_enum {
    ($($t:ty),*) => {$(
        impl ToToml for $t {
            fn toml(&self) -> Option<String> {
                self.to_possible_value()
                    .map(|value| format!("{:?}", value.get_name()))
            }
        }
    )*};
}

value_enum!(
    crate::config::IoMode,
    crate::config::HistoryCutoff,
    crate::logging::LogFormat
);
