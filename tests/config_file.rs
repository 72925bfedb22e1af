//! The configuration file against the code: `ringchat.example.toml` documents exactly
//! the keys `FileSettings` has, its values are the defaults in code (no drift), and a
//! flag wins over the file, which wins over the default.

use clap::{CommandFactory, FromArgMatches};
use ringchat::cli::Cli;
use ringchat::config_file::{ConfigFile, FileSettings};
use ringchat::settings::Settings;
use ringchat::Config;
use serde::de::{self, Deserialize, Visitor};
use std::path::{Path, PathBuf};

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("ringchat.example.toml")
}

fn example_text() -> String {
    std::fs::read_to_string(example_path()).expect("ringchat.example.toml is readable")
}

/// Settings from these command-line arguments (no environment: the test binary's
/// environment has no RINGCHAT_* variables) and the config file `file`.
fn load(args: &[&str], file: Option<&Path>) -> anyhow::Result<Settings> {
    let matches = Cli::command()
        .try_get_matches_from(std::iter::once("ringchat").chain(args.iter().copied()))
        .expect("the arguments parse");
    let cli = Cli::from_arg_matches(&matches).expect("the arguments fit Cli");
    Settings::load(&cli, &matches, file)
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringchat-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write temp file");
    path
}

/// The field names serde knows for `FileSettings`, captured from its derive.
fn file_settings_keys() -> Vec<&'static str> {
    struct Capture<'a>(&'a mut Vec<&'static str>);
    impl<'de> de::Deserializer<'de> for Capture<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("only structs"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0.extend(fields);
            Err(de::Error::custom("fields captured"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
            enum identifier ignored_any
        }
    }
    let mut keys = Vec::new();
    let _ = FileSettings::deserialize(Capture(&mut keys));
    keys
}

#[test]
fn the_example_file_sets_exactly_the_defaults_in_code() {
    let from_example = load(&[], Some(&example_path())).expect("the example loads");
    // A start adds the data directory (`data` in the working directory by default,
    // never the config file's) and its ban file, which the defaults in code leave out.
    let data_dir = std::env::current_dir().expect("cwd").join("data");
    assert_eq!(
        from_example.config.data_dir.as_deref(),
        Some(data_dir.as_path())
    );
    assert_eq!(
        from_example.config.ban_file,
        Some(data_dir.join("bans.toml"))
    );
    let from_example = Settings {
        config: Config {
            ban_file: None,
            data_dir: None,
            ..from_example.config
        },
        ..from_example
    };
    assert_eq!(from_example.config, Config::default());
    let without_file = load(&[], None).expect("defaults load");
    assert_eq!(
        Settings {
            config_file: None,
            ..from_example
        },
        Settings {
            config: Config {
                ban_file: None,
                data_dir: None,
                ..without_file.config
            },
            ..without_file
        }
    );
}

#[test]
fn the_example_file_documents_every_key_and_no_other() {
    // Uncommenting `# key = value` lines shows the keys without a fixed default too.
    let uncommented: String = example_text()
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if rest.split_once(" = ").is_some_and(|(key, _)| is_key(key)) => rest,
            _ => line,
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let file = ConfigFile::parse(Path::new("example"), uncommented.clone())
        .expect("every documented key is a real key");
    // Tables of blocks (`[[oper]]`) are shown commented out, their fields indented.
    let documented: Vec<&str> = uncommented
        .lines()
        .filter_map(|line| {
            line.split_once(" = ").map(|(key, _)| key).or_else(|| {
                line.strip_prefix("# [[")
                    .and_then(|rest| rest.strip_suffix("]]"))
            })
        })
        .filter(|key| is_key(key))
        .collect();
    let mut expected = file_settings_keys();
    assert!(!expected.is_empty());
    let mut documented_sorted = documented.clone();
    documented_sorted.sort_unstable();
    expected.sort_unstable();
    assert_eq!(documented_sorted, expected, "ringchat.example.toml drifted");
    assert_eq!(file.settings.shards, Some(4));
}

fn is_key(word: &str) -> bool {
    !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[test]
fn a_flag_wins_over_the_file_which_wins_over_the_default() {
    let file = temp_file(
        "precedence.toml",
        "sendq = 4096\nmax-channels = 7\nflood-rate = 0\nserver-name = \"file.example\"\n",
    );
    let settings = load(&["--sendq", "8192"], Some(&file)).expect("loads");
    assert_eq!(settings.config.sendq, 8192, "the flag wins");
    assert_eq!(settings.config.max_channels_per_client, 7, "the file wins");
    assert_eq!(settings.config.flood_rate, 0.0);
    assert_eq!(settings.config.server_name, "file.example");
    assert_eq!(
        settings.config.recvq,
        Config::default().recvq,
        "the default"
    );
}

#[test]
fn a_path_in_the_file_is_relative_to_the_file() {
    let motd = temp_file("relative-motd.txt", "line one\nline two\n");
    let file = temp_file("relative.toml", "motd = \"relative-motd.txt\"\n");
    let settings = load(&[], Some(&file)).expect("loads");
    assert_eq!(
        settings.config.motd,
        Some(vec!["line one".to_owned(), "line two".to_owned()])
    );
    drop(motd);
}

#[test]
fn a_bad_value_from_the_file_names_the_key_and_its_position() {
    let file = temp_file("bad-shards.toml", "network = \"n\"\nshards = 0\n");
    let error = load(&[], Some(&file)).expect_err("refused").to_string();
    assert_eq!(
        error,
        format!("{}:2:1: shards: must be between 1 and 64", file.display())
    );
    let file = temp_file("bad-listen.toml", "listen = [\"no-port-here\"]\n");
    let error = load(&[], Some(&file)).expect_err("refused").to_string();
    assert!(
        error.starts_with(&format!("{}:1:1: listen: cannot resolve", file.display())),
        "{error}"
    );
    // The same value from a flag names the flag.
    let error = load(&["--shards", "0"], None).expect_err("refused");
    assert_eq!(error.to_string(), "--shards must be between 1 and 64");
}

#[test]
fn a_host_name_listens_on_what_it_resolves_to() {
    let settings = load(&["--listen", "localhost:6667"], None).expect("localhost resolves");
    assert!(!settings.config.listen.is_empty());
    assert!(settings
        .config
        .listen
        .iter()
        .all(|addr| addr.ip().is_loopback() && addr.port() == 6667));
}

#[test]
fn oper_blocks_load_and_a_plain_password_is_refused_at_its_position() {
    let hash = ringchat::opers::hash_password(b"hunter2").expect("hashing works");
    let text = format!(
        "network = \"n\"\n\n[[oper]]\nname = \"admin\"\npassword = \"{hash}\"\nhosts = [\"~*@127.0.0.1\"]\n\n[[oper]]\nname = \"anywhere\"\npassword = \"{hash}\"\n"
    );
    let file = temp_file("opers.toml", &text);
    let settings = load(&[], Some(&file)).expect("loads");
    let opers = &settings.config.opers;
    assert_eq!(opers.len(), 2);
    assert_eq!(opers[0].name, "admin");
    assert_eq!(opers[0].hosts, ["~*@127.0.0.1"]);
    assert!(opers[1].hosts.is_empty());

    let text = "[[oper]]\nname = \"admin\"\npassword = \"hunter2\"\n";
    let file = temp_file("plain-oper.toml", text);
    let error = load(&[], Some(&file)).expect_err("refused").to_string();
    assert!(
        error.starts_with(&format!(
            "{}:3:12: oper[0].password: is not an argon2 hash",
            file.display()
        )),
        "{error}"
    );
    assert!(!error.contains('\n'), "{error}");
    let text = "[[oper]]\nname = \"admin\"\npasword = \"x\"\n";
    let file = temp_file("typo-oper.toml", text);
    let error = load(&[], Some(&file)).expect_err("refused").to_string();
    assert!(error.contains("pasword"), "{error}");
    assert!(!error.contains('\n'), "{error}");
}
