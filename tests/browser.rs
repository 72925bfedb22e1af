//! The web client in a real browser: headless Chromium (Debian's `chromium`, driven
//! by `tests/browser/web_client.mjs` through playwright-core) loads the page from a
//! running server, registers two users in two pages, and exchanges messages both ways
//! with a raw TCP client in the same channel; the script checks what each page shows.
//! Ignored, with the reason, when node, chromium or `tests/browser/node_modules` is
//! missing (`.ci/run` installs them; after `npm ci` by hand, `touch build.rs`).
//!
//! `RINGCHAT_SCREENSHOTS=DIR` makes the script save the README's screenshots there.

mod common;

use common::Setup;
use ringchat::IoMode;
use std::path::Path;
use std::process::Command;

/// Runs the browser script against a server on `setup`; returns its measurements.
fn web_client_in_chromium(setup: Setup) -> String {
    let server = setup.start_websocket(|_| {});
    let ws = server.ws_addr.expect("a WebSocket listener");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let mut node = Command::new("node");
    node.current_dir(&dir)
        .arg("web_client.mjs")
        .arg(format!("http://{ws}/"))
        .arg(server.addr.to_string());
    if let Some(screenshots) = std::env::var_os("RINGCHAT_SCREENSHOTS") {
        node.arg(screenshots);
    }
    let output = node.output().expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "the browser test failed ({}):\n{stdout}\n{}",
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
    let measured = web_client_in_chromium(Setup {
        io: IoMode::Ring,
        shards: 1,
    });
    println!("page load: {measured}");
}

#[test]
#[cfg_attr(
    not(has_browser),
    ignore = "needs node, chromium and tests/browser/node_modules: apt-get install -y chromium nodejs npm; (cd tests/browser && npm ci) (.ci/run does both)"
)]
fn two_pages_and_a_tcp_client_chat_on_epoll_with_4_shards() {
    web_client_in_chromium(Setup {
        io: IoMode::Epoll,
        shards: 4,
    });
}
