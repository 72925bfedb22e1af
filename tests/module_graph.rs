//! The top-level modules of src/ import each other without a cycle, so dependencies
//! point one way (proto <- state <- shard <- commands <- io <- server; settings above
//! state, `config` a leaf of plain values). A module's imports are the `crate::NAME`
//! paths in its files' code (`use crate::state::...;`, `use crate::{a, b}`, and paths
//! written inline), comments left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `path` (or `path` itself when it is a file).
fn rust_files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_owned()];
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).expect("read a src/ directory") {
        let entry = entry.expect("a directory entry");
        files.extend(rust_files(&entry.path()));
    }
    files.retain(|file| file.extension().is_some_and(|ext| ext == "rs"));
    files
}

/// The top-level modules of src/ (`state` for src/state/ or src/state.rs), without
/// the crate roots.
fn top_level_modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut modules = BTreeMap::new();
    for entry in std::fs::read_dir(src).expect("read src/") {
        let path = entry.expect("an entry of src/").path();
        let name = path
            .file_stem()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        if path.is_dir() || path.extension().is_some_and(|ext| ext == "rs") {
            modules.insert(name, path);
        }
    }
    modules.remove("lib");
    modules.remove("main");
    modules.remove("bin");
    modules
}

/// The names `NAME` of every `crate::NAME` in `code`, and of every item of a
/// `crate::{a, b::c}` group.
fn crate_paths(code: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let inside = group.split('}').next().unwrap_or("");
            for item in inside.split(',') {
                names.push(identifier(item.trim()));
            }
        } else {
            names.push(identifier(rest));
        }
    }
    names.retain(|name| !name.is_empty());
    names
}

fn identifier(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Each module's imports of other top-level modules.
fn import_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let modules = top_level_modules(src);
    let mut graph = BTreeMap::new();
    for (name, path) in &modules {
        let mut imports = BTreeSet::new();
        for file in rust_files(path) {
            let text = std::fs::read_to_string(&file).expect("read a source file");
            for line in text.lines() {
                let code = line.split("//").next().unwrap_or("");
                for import in crate_paths(code) {
                    if import != *name && modules.contains_key(&import) {
                        imports.insert(import);
                    }
                }
            }
        }
        graph.insert(name.clone(), imports);
    }
    graph
}

/// A cycle of the graph as the modules on it (the first repeated at the end).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|seen| seen == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_top_level_modules_import_each_other_without_a_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = import_graph(&src);
    assert!(graph.contains_key("state") && graph.contains_key("proto"));
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "src/'s top-level modules import each other in a cycle: {}",
            cycle.join(" -> ")
        );
    }
}

#[test]
fn the_state_imports_no_settings_module() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = import_graph(&src);
    let state = &graph["state"];
    for settings in ["settings", "reload", "cli", "config_file"] {
        assert!(
            !state.contains(settings),
            "state imports {settings}: {state:?}"
        );
    }
}

#[test]
fn a_cycle_is_found_and_named() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(name, imports)| {
        (
            name.to_owned(),
            imports.into_iter().map(str::to_owned).collect(),
        )
    })
    .collect();
    assert_eq!(
        find_cycle(&graph).map(|cycle| cycle.join(" -> ")),
        Some("a -> b -> c -> a".to_owned())
    );
    assert_eq!(
        crate_paths("use crate::{proto::x, state}; let y = crate::live::f(); my_crate::z"),
        ["proto", "state", "live"]
    );
}
