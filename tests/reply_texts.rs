//! Every fixed text a reply carries lives in src/proto/texts.rs, by name: a handler
//! that spells one inline (`.trailing("No such channel")`) fails here, with the place.
//! Texts that carry values are built where they are sent; the help pages keep their
//! own table (src/commands/help.rs); unit tests keep their literals.

use std::path::{Path, PathBuf};

/// Files allowed to spell reply texts: the texts themselves, the help table, and the
/// line builder (whose doc examples and tests build lines).
const OWNERS: [&str; 3] = [
    "src/proto/texts.rs",
    "src/commands/help.rs",
    "src/proto/line.rs",
];

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read a src/ directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

/// The file without its unit-test module (`#[cfg(test)]` then `mod`).
fn unit_tests_cut(text: &str) -> &str {
    text.match_indices("#[cfg(test)]")
        .find(|(at, marker)| text[at + marker.len()..].trim_start().starts_with("mod "))
        .map_or(text, |(at, _)| &text[..at])
}

#[test]
fn no_reply_text_is_spelled_outside_the_texts_module() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut inline = Vec::new();
    for path in files {
        let relative = path.strip_prefix(&root).expect("under the repository");
        let relative = relative.to_string_lossy().replace('\\', "/");
        if OWNERS.contains(&relative.as_str()) || relative.ends_with("_tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read a source file");
        let code = unit_tests_cut(&text);
        for (number, line) in code.lines().enumerate() {
            if line.contains(".trailing(\"") {
                inline.push(format!("{relative}:{}: {}", number + 1, line.trim()));
            }
        }
    }
    assert!(
        inline.is_empty(),
        "reply texts spelled inline; name them in src/proto/texts.rs:\n{}",
        inline.join("\n")
    );
}
