//! The command line: the flags that are not settings (`--config`, `--check-config`,
//! `--hash-password`, and the hidden `--man` and `--completions` that print the man
//! page and shell completions generated from it) and one flag per declared setting (`super::declared`), each with
//! its `RINGCHAT_*` variable, default and help. Parsing only: merging with the file is
//! `super::Settings::load`'s.

use super::declared::{with_settings, DECLARED};
use clap::{CommandFactory, Parser};
use std::path::PathBuf;

/// Builds [`Cli`] from the declared settings.
macro_rules! cli_struct {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident: $flag:ty | $file:ty, $reload:ident, $group:literal,
            [$($check:ident),*], $shown:literal, $example:literal, [$($arg:tt)*];
    )*) => {
        /// ringchat: a multi-client IRC chat server on io_uring.
        #[derive(Debug, Parser)]
        #[command(version, about, long_about = None)]
        pub struct Cli {
            /// Read settings from this TOML file; flags and environment override it.
            #[arg(long, env = "RINGCHAT_CONFIG", value_name = "FILE")]
            pub config: Option<PathBuf>,
            /// Check a configuration file as a start would (every file it names, every
            /// range), say whether it is valid, and exit.
            #[arg(long, value_name = "FILE")]
            pub check_config: Option<PathBuf>,
            /// Read a password (at a terminal: asked twice, not shown; else one line of
            /// stdin), print its argon2 hash for an `[[oper]]` block's `password`, and
            /// exit.
            #[arg(long)]
            pub hash_password: bool,
            /// Print the man page (roff, from this declaration) and exit.
            #[arg(long, hide = true)]
            pub man: bool,
            /// Print completions for SHELL (bash, zsh, fish, elvish, powershell) and
            /// exit.
            #[arg(long, hide = true, value_name = "SHELL")]
            pub completions: Option<clap_complete::Shell>,
            $(
                $(#[doc = $doc])*
                #[arg(long, help_heading = $group, $($arg)*)]
                pub $name: $flag,
            )*
        }
    };
}

with_settings!(cli_struct);

/// The command line as `--help` shows it: [`Cli`]'s, with the computed defaults of
/// the settings that have no fixed one (`[default: open-file limit less 64]`).
pub fn command() -> clap::Command {
    Cli::command().mut_args(|arg| {
        let shown = DECLARED
            .iter()
            .find(|setting| setting.name == arg.get_id().as_str())
            .map_or("", |setting| setting.shown);
        if shown.is_empty() {
            return arg;
        }
        let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
        arg.help(format!("{help} [default: {shown}]"))
    })
}
