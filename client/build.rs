//! Finds tmux when the tests are built, so the interactive test shows as ignored with
//! its reason where tmux is missing instead of passing. `.ci/run` installs it before
//! building. After installing it by hand, `touch client/build.rs` to look again.

use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rustc-check-cfg=cfg(has_tmux)");
    let found = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|output| output.status.success());
    if found {
        println!("cargo::rustc-cfg=has_tmux");
    }
}
