//! Finds the outside programs some tests drive (irssi, tmux, openssl, promtool, nats-server,
//! node with chromium and the browser test's node_modules) when the tests
//! are built, so that a test whose program is missing shows as ignored with its
//! reason instead of passing. `.ci/run` installs them before building. After
//! installing one by hand, `touch build.rs` (or change PATH) to look again.

use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=PATH");
    for (cfg, tools) in [
        (
            "has_irssi_and_tmux",
            &[("irssi", "--version"), ("tmux", "-V")][..],
        ),
        ("has_promtool", &[("promtool", "--version")][..]),
        ("has_openssl", &[("openssl", "version")][..]),
        ("has_nats_server", &[("nats-server", "--version")][..]),
    ] {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        let found = tools.iter().all(|(tool, flag)| {
            Command::new(tool)
                .arg(flag)
                .output()
                .is_ok_and(|output| output.status.success())
        });
        if found {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
    // The browser test also needs `npm ci` to have run in tests/browser; its lock file
    // changing is the cue to look again (after a first `npm ci`, touch build.rs).
    println!("cargo::rerun-if-changed=tests/browser/package-lock.json");
    println!("cargo::rustc-check-cfg=cfg(has_browser)");
    let has_browser = [("node", "--version"), ("chromium", "--version")]
        .iter()
        .all(|(tool, flag)| {
            Command::new(tool)
                .arg(flag)
                .output()
                .is_ok_and(|output| output.status.success())
        })
        && std::path::Path::new("tests/browser/node_modules/playwright-core/package.json").exists();
    if has_browser {
        println!("cargo::rustc-cfg=has_browser");
    }
}
