//! Finds the outside programs some tests drive (irssi, tmux, openssl, promtool, nats-server) when the tests
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
}
