//! The settings' documentation against their declaration: `ringchat.example.toml` and
//! the README's flags table are what `ringchat::settings::docs` renders from
//! `src/settings/declared.rs`. Run with `RINGCHAT_BLESS=1` to rewrite both after
//! changing a setting.

use ringchat::settings::docs::{example_toml, flags_table, TABLE_END, TABLE_START};
use std::path::{Path, PathBuf};

fn repository_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

fn bless() -> bool {
    std::env::var_os("RINGCHAT_BLESS").is_some_and(|value| value == "1")
}

#[test]
fn the_example_file_is_rendered_from_the_declaration() {
    let path = repository_file("ringchat.example.toml");
    let rendered = example_toml();
    if bless() {
        std::fs::write(&path, &rendered).expect("write ringchat.example.toml");
    }
    let on_disk = std::fs::read_to_string(&path).expect("ringchat.example.toml is readable");
    assert!(
        on_disk == rendered,
        "ringchat.example.toml drifted from src/settings/declared.rs; \
         run `RINGCHAT_BLESS=1 cargo test --test settings_docs` and review the diff"
    );
}

#[test]
fn the_readme_flags_table_is_rendered_from_the_declaration() {
    let path = repository_file("README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md is readable");
    let start = readme
        .find(TABLE_START)
        .expect("README.md has the flags table marker");
    let end = readme[start..]
        .find(TABLE_END)
        .map(|at| start + at + TABLE_END.len() + 1)
        .expect("README.md has the end-of-table marker");
    let rendered = flags_table();
    if bless() {
        let updated = format!("{}{rendered}{}", &readme[..start], &readme[end..]);
        std::fs::write(&path, updated).expect("write README.md");
        return;
    }
    assert!(
        readme[start..end] == rendered,
        "the README's flags table drifted from src/settings/declared.rs; \
         run `RINGCHAT_BLESS=1 cargo test --test settings_docs` and review the diff"
    );
}
