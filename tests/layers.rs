//! The host's module dependencies point one way (see `host/src/lib.rs`).
//!
//! A small stand-in for `cargo modules dependencies --acyclic`, which needs
//! a rust-analyzer build: every `use` and every `crate::`/`super::`/child
//! path in `host/src` (comments aside) is an edge from the file's module to
//! the module the path names, and the graph must have no cycle. Declaring a
//! child (`mod x;`) is not an edge; re-exporting from it (`pub use x::Y`) is.
//! On top of that, the layer rules: the plugin layer uses nothing of the
//! host, the core (`hub`) nothing of HTTP, and only `http` knows axum, but
//! for one type: the outbox holds frames as the socket's text type
//! (`axum::extract::ws::Utf8Bytes`), so that a frame encoded once is sent
//! to every subscriber without its UTF-8 being checked again each time.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// Module path (`""` is the crate root, `hub::session` ...) -> its source.
fn modules() -> BTreeMap<String, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = BTreeMap::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("host/src is readable") {
            let path: PathBuf = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&src).expect("under src");
            let mut parts: Vec<String> = rel
                .iter()
                .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
                .collect();
            match parts.last().map(String::as_str) {
                // The binary is its own crate.
                Some("main") if parts.len() == 1 => continue,
                Some("lib") if parts.len() == 1 => parts.clear(),
                Some("mod") => {
                    parts.pop();
                }
                _ => {}
            }
            let text = std::fs::read_to_string(&path).expect("readable source");
            // Unit tests (an inline `mod tests` at the end) are not part of
            // the module graph, and their `super` is the file's module.
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            found.insert(parts.join("::"), strip_comments(code));
        }
    }
    found
}

fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn parent(module: &str) -> String {
    module
        .rsplit_once("::")
        .map_or(String::new(), |(p, _)| p.to_owned())
}

fn join(base: &str, child: &str) -> String {
    if base.is_empty() {
        child.to_owned()
    } else {
        format!("{base}::{child}")
    }
}

/// Flatten a use tree (`super::{a::{B, C}, D}`) into paths.
fn flatten(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or(tree).trim();
        return vec![path.to_owned()];
    };
    let prefix = tree[..open].trim_end_matches("::").trim();
    let close = tree.rfind('}').filter(|&c| c > open).unwrap_or(tree.len());
    let inner = &tree[open + 1..close];
    let mut items = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    items
        .into_iter()
        .filter(|item| !item.trim().is_empty())
        .flat_map(flatten)
        .map(|rest| match rest.as_str() {
            "self" => prefix.to_owned(),
            _ if prefix.is_empty() => rest,
            _ => format!("{prefix}::{rest}"),
        })
        .collect()
}

/// The module `path`, seen from `from`, names (if it names one of ours).
fn resolve(from: &str, path: &str, all: &BTreeMap<String, String>) -> Option<String> {
    let mut segments = path.split("::").map(str::trim).filter(|s| !s.is_empty());
    let first = segments.next()?;
    let mut at = match first {
        "crate" => String::new(),
        "self" => from.to_owned(),
        "super" => parent(from),
        child if all.contains_key(&join(from, child)) => join(from, child),
        _ => return None,
    };
    for segment in segments {
        match segment {
            "super" => at = parent(&at),
            "self" => {}
            _ if all.contains_key(&join(&at, segment)) => at = join(&at, segment),
            _ => break,
        }
    }
    Some(at)
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every module `source` (of module `from`) uses.
fn uses(from: &str, source: &str, all: &BTreeMap<String, String>) -> BTreeSet<String> {
    uses_by(from, source, all).into_keys().collect()
}

/// Every module `source` (of module `from`) uses, with a path that uses it.
fn uses_by(from: &str, source: &str, all: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut paths = Vec::new();
    // `use` items (which may span lines), found where an item starts.
    let mut lines = source.lines();
    while let Some(line) = lines.next() {
        let item = line.trim_start();
        let item = ["pub(crate) ", "pub(super) ", "pub "]
            .iter()
            .find_map(|vis| item.strip_prefix(vis))
            .unwrap_or(item);
        let Some(tree) = item.strip_prefix("use ") else {
            continue;
        };
        let mut tree = tree.to_owned();
        while !tree.contains(';') {
            match lines.next() {
                Some(more) => tree.push_str(more),
                None => break,
            }
        }
        let end = tree.find(';').unwrap_or(tree.len());
        paths.extend(flatten(&tree[..end]));
    }
    // Paths in code: `crate::x`, `super::x`, `child::x`.
    let chars: Vec<(usize, char)> = source.char_indices().collect();
    for (i, &(at, c)) in chars.iter().enumerate() {
        let starts_word = i == 0 || {
            let prev = chars[i - 1].1;
            !is_ident(prev) && prev != ':'
        };
        if !starts_word || !is_ident(c) {
            continue;
        }
        let len = source[at..]
            .find(|c: char| !(is_ident(c) || c == ':'))
            .unwrap_or(source.len() - at);
        let path = &source[at..at + len];
        // A path ending in `::` opens a use tree, read above.
        if path.contains("::") && !path.ends_with("::") {
            paths.push(path.to_owned());
        }
    }
    paths
        .iter()
        .filter_map(|p| Some((resolve(from, p, all)?, p.clone())))
        .filter(|(target, _)| target != from)
        .collect()
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let all = modules();
    all.iter()
        .map(|(module, source)| (module.clone(), uses(module, source, &all)))
        .collect()
}

/// A cycle in `graph`, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[pos..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

fn name(module: &str) -> &str {
    if module.is_empty() { "crate" } else { module }
}

#[test]
fn host_modules_have_no_import_cycle() {
    let graph = graph();
    assert!(graph.len() > 20, "found only {:?}", graph.keys());
    if let Some(cycle) = find_cycle(&graph) {
        let all = modules();
        let steps: Vec<String> = cycle
            .windows(2)
            .map(|w| {
                let by = uses_by(&w[0], &all[&w[0]], &all);
                format!("{} -> {} (`{}`)", name(&w[0]), name(&w[1]), by[&w[1]])
            })
            .collect();
        panic!("module import cycle:\n  {}", steps.join("\n  "));
    }
}

#[test]
fn layers_point_down() {
    let within =
        |module: &str, layer: &str| module == layer || module.starts_with(&format!("{layer}::"));
    let all = modules();
    for (module, source) in &all {
        for (target, path) in uses_by(module, source, &all) {
            let target = &target;
            let bad = (within(module, "plugin") && !within(target, "plugin"))
                || (within(module, "hub")
                    && ["http", "asyncapi", "demo"]
                        .iter()
                        .any(|l| within(target, l)))
                || (within(module, "protocol") && !within(target, "plugin"));
            assert!(
                !bad,
                "{} must not use {} (`{path}`)",
                name(module),
                name(target)
            );
        }
    }
    for (module, source) in all {
        let source = match module.as_str() {
            "hub::outbox" => source.replace("use axum::extract::ws::Utf8Bytes;", ""),
            _ => source,
        };
        if !within(&module, "http") {
            assert!(
                !source.contains("axum"),
                "{} uses axum; only the http layer may",
                name(&module)
            );
        }
    }
}

#[test]
fn the_checker_sees_edges_and_cycles() {
    let all: BTreeMap<String, String> = ["", "a", "a::b", "c"]
        .into_iter()
        .map(|m| (m.to_owned(), String::new()))
        .collect();
    assert_eq!(
        flatten("super::{b::{X, Y}, Z, self}"),
        ["super::b::X", "super::b::Y", "super::Z", "super"]
    );
    let edges = uses(
        "a::b",
        "use super::{X, super::c::Y};\nfn f() { crate::c::z(); }",
        &all,
    );
    assert_eq!(edges, BTreeSet::from(["a".to_owned(), "c".to_owned()]));
    assert_eq!(
        uses("a", "pub use b::Thing;", &all),
        BTreeSet::from(["a::b".to_owned()])
    );
    let cyclic = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["a::b".to_owned()])),
        ("a::b".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]);
    assert!(find_cycle(&cyclic).is_some());
}
