//! The web client in a real browser: headless Chromium (Debian's `chromium`, driven
//! by scripts in `tests/browser/` through playwright-core) loads the page from a
//! running server that keeps accounts and history (a data directory). Two scenarios:
//! `web_client.mjs` registers two users in two pages and exchanges messages both
//! ways with a raw TCP client in the same channel; `accounts_history.mjs` registers an
//! account, logs in with SASL after a reconnect and a reload, and checks the catch-up
//! and "load older" through CHATHISTORY. Each script checks what the pages show.
//! Ignored, with the reason, when node, chromium or `tests/browser/node_modules` is
//! missing (`.ci/run` installs them; after `npm ci` by hand, `touch build.rs`).
//!
//! `RINGCHAT_SCREENSHOTS=DIR` makes `web_client.mjs` save the README's screenshots there.

mod common;

use common::{data_dir, Setup};
use ringchat::IoMode;
use std::path::Path;
use std::process::Command;

/// Runs `script` against a server on `setup` with a fresh data directory named for
/// `test`; returns what the script printed (its measurements).
fn scenario_in_chromium(script: &str, test: &str, setup: Setup) -> String {
    let dir = data_dir(test);
    let server = setup.start_websocket(|config| config.data_dir = Some(dir.clone()));
    let ws = server.ws_addr.expect("a WebSocket listener");
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let mut node = Command::new("node");
    node.current_dir(&scripts)
        .arg(script)
        .arg(format!("http://{ws}/"))
        .arg(server.addr.to_string());
    if let Some(screenshots) = std::env::var_os("RINGCHAT_SCREENSHOTS") {
        // Relative to the crate, where `cargo test` runs, not to the script's folder.
        node.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(screenshots));
    }
    let output = node.output().expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{script} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
#[cfg_attr(
    not(has_browser),
    ignore = "needs node, chromium and tests/browser/node_modules: apt-get install -y chromium nodejs npm; (cd tests/browser && npm ci) (.ci/run does both)"
)]
fn two_pages_and_a_tcp_client_chat_on_the_ring_driver() {
    let measured = scenario_in_chromium(
        "web_client.mjs",
        "chat-ring",
        Setup {
            io: IoMode::Ring,
            shards: 1,
        },
    );
    println!("page load: {measured}");
}

#[test]
#[cfg_attr(
    not(has_browser),
    ignore = "needs node, chromium and tests/browser/node_modules: apt-get install -y chromium nodejs npm; (cd tests/browser && npm ci) (.ci/run does both)"
)]
fn two_pages_and_a_tcp_client_chat_on_epoll_with_4_shards() {
    scenario_in_chromium(
        "web_client.mjs",
        "chat-epoll",
        Setup {
            io: IoMode::Epoll,
            shards: 4,
        },
    );
}

#[test]
#[cfg_attr(
    not(has_browser),
    ignore = "needs node, chromium and tests/browser/node_modules: apt-get install -y chromium nodejs npm; (cd tests/browser && npm ci) (.ci/run does both)"
)]
fn register_log_in_catch_up_and_load_older_on_the_ring_driver_with_4_shards() {
    scenario_in_chromium(
        "accounts_history.mjs",
        "accounts-history",
        Setup {
            io: IoMode::Ring,
            shards: 4,
        },
    );
}
