//! The README's Layout section names every file under src/, so a newcomer finds each
//! one by its folder. An entry is a line of the section's code block that starts with
//! a path (`src/state/`), with the indented lines after it: a file is named when an
//! entry is its path, or is its folder and mentions the file's name.

use std::path::{Path, PathBuf};

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir`, as a path relative to the repository (`src/state/log.rs`).
fn files_under(dir: &Path, root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read a src/ directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files.extend(files_under(&path, root));
        } else {
            let relative = path.strip_prefix(root).expect("under the repository");
            files.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
    files.sort();
    files
}

/// The Layout section's entries: (path, everything its lines say).
fn layout_entries(readme: &str) -> Vec<(String, String)> {
    let section = readme
        .split("\n## Layout\n")
        .nth(1)
        .expect("README.md has a Layout section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let block = section
        .split("```")
        .nth(1)
        .expect("the Layout section has a code block");
    let mut entries: Vec<(String, String)> = Vec::new();
    for line in block.lines() {
        if line.starts_with(char::is_whitespace) {
            if let Some((_, text)) = entries.last_mut() {
                text.push(' ');
                text.push_str(line.trim());
            }
        } else if let Some(path) = line.split_whitespace().next() {
            entries.push((path.to_owned(), line.to_owned()));
        }
    }
    entries
}

/// Whether `text` mentions `name` as a whole word (`log.rs`, not `catalog.rs`).
fn mentions(text: &str, name: &str) -> bool {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.' || c == '/'))
        .any(|word| word.trim_end_matches('.') == name || word == name)
}

fn is_named(file: &str, entries: &[(String, String)]) -> bool {
    let (folder, name) = file.rsplit_once('/').expect("a file under src/");
    entries
        .iter()
        .any(|(path, text)| path == file || (*path == format!("{folder}/") && mentions(text, name)))
}

#[test]
fn the_readme_layout_names_every_file_under_src() {
    let root = repository();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let entries = layout_entries(&readme);
    let missing: Vec<String> = files_under(&root.join("src"), &root)
        .into_iter()
        .filter(|file| !is_named(file, &entries))
        .collect();
    assert!(
        missing.is_empty(),
        "the README's Layout section does not name: {}",
        missing.join(", ")
    );
}

#[test]
fn a_file_is_named_by_its_path_or_in_its_folder_entry() {
    let entries = layout_entries(
        "x\n## Layout\n\n```\nsrc/lib.rs   the map\nsrc/state/   log.rs (order),\n             bus.rs\n```\n## Next\n",
    );
    assert!(is_named("src/lib.rs", &entries));
    assert!(is_named("src/state/bus.rs", &entries));
    assert!(is_named("src/state/log.rs", &entries));
    assert!(!is_named("src/state/catalog.rs", &entries));
    assert!(!is_named("src/state/network/log.rs", &entries));
}
