//! The layers written in `src/lib.rs` ("Layout") hold: no module uses one from a higher layer,
//! and no two modules use each other, directly or through others.
//!
//! The layers are read from the numbered list in `src/lib.rs`: every `` `module` — `` on a layer's
//! line names a top-level module of that layer. Imports are every `crate::…` path in `src/`
//! (`use` declarations and paths written in place, in tests too), and `super::…` paths that
//! climb out of a top-level module; comments and string literals are skipped. A failure names
//! the file, the line and the import.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One use of another top-level module.
#[derive(Debug, Clone)]
struct Import {
    from: String,
    to: String,
    file: String,
    line: usize,
    text: String,
}

/// Layer number (1 = top) of each module, and the layer names, from the Layout section.
struct Layers {
    of: BTreeMap<String, usize>,
    names: BTreeMap<usize, String>,
}

/// Reads the numbered layer list of a `//!` Layout section.
fn parse_layers(lib: &str) -> Result<Layers, String> {
    let mut of = BTreeMap::new();
    let mut names = BTreeMap::new();
    let mut current: Option<usize> = None;
    let mut in_layout = false;
    for line in lib.lines() {
        let Some(doc) = line.trim_start().strip_prefix("//!") else {
            continue;
        };
        let doc = doc.trim();
        if doc.starts_with('#') {
            in_layout = doc == "# Layout";
            current = None;
            continue;
        }
        if !in_layout {
            continue;
        }
        if let Some((number, rest)) = doc.split_once(". **") {
            if let Ok(n) = number.parse::<usize>() {
                current = Some(n);
                let name = rest.split("**").next().unwrap_or_default();
                names.insert(n, name.to_string());
            }
        } else if doc.is_empty() {
            current = None;
        }
        let Some(layer) = current else { continue };
        let mut rest = doc;
        while let Some(start) = rest.find('`') {
            let after = &rest[start + 1..];
            let Some(end) = after.find('`') else { break };
            let name = &after[..end];
            rest = &after[end + 1..];
            if rest.starts_with(" —") && is_ident(name) {
                if let Some(previous) = of.insert(name.to_string(), layer) {
                    return Err(format!(
                        "`{name}` is listed in layer {previous} and again in layer {layer}"
                    ));
                }
            }
        }
    }
    if of.is_empty() {
        return Err("src/lib.rs has no numbered layer list in its Layout section".into());
    }
    Ok(Layers { of, names })
}

fn is_ident(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c == '_')
}

/// Names of the modules `lib.rs` declares (`mod x;`, `pub mod x;`, `pub(crate) mod x;`).
fn declared_modules(lib: &str) -> BTreeSet<String> {
    lib.lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = line
                .strip_prefix("pub(crate) mod ")
                .or_else(|| line.strip_prefix("pub mod "))
                .or_else(|| line.strip_prefix("mod "))?;
            rest.strip_suffix(';').map(str::to_string)
        })
        .collect()
}

/// The source with comments and the contents of string and char literals replaced by spaces
/// (newlines kept, so line numbers still match).
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && matches!(next, Some('"') | Some('#'))
            && !chars[..i]
                .last()
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            // A raw string: r"…", r#"…"#, …
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let closing: String = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let body_start = j + 1;
            let rest: String = chars[body_start..].iter().collect();
            let body_len = rest
                .find(&closing)
                .map_or(rest.chars().count(), |b| rest[..b].chars().count());
            let end = (body_start + body_len + closing.chars().count()).min(chars.len());
            out.extend(chars[i..end].iter().map(|&ch| blank(ch)));
            i = end;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                let end = (i + if chars[i] == '\\' { 2 } else { 1 }).min(chars.len());
                out.extend(chars[i..end].iter().map(|&ch| blank(ch)));
                i = end;
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && next == Some('\\') {
            // An escaped char literal: '\n', '\'', '\u{…}'.
            out.push(' ');
            i += 2;
            out.push(' ');
            while i < chars.len() && chars[i] != '\'' {
                out.push(' ');
                i += 1;
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            out.push_str("   ");
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The top-level module a file of `src/` belongs to, and how deep the file's own module is
/// (`src/kafka.rs` and `src/kafka/mod.rs` are 1, `src/kafka/producer.rs` is 2). `None` for the
/// crate root.
fn module_of(relative: &Path) -> Option<(String, usize)> {
    let parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let top = parts.first()?.trim_end_matches(".rs").to_string();
    if parts.len() == 1 && (top == "lib" || top == "main") {
        return None;
    }
    let depth = if parts.last().is_some_and(|p| p == "mod.rs") {
        parts.len() - 1
    } else {
        parts.len()
    };
    Some((top, depth))
}

fn ident_at(code: &[char], mut i: usize) -> (String, usize) {
    let mut ident = String::new();
    while let Some(&c) = code.get(i) {
        if c.is_alphanumeric() || c == '_' {
            ident.push(c);
            i += 1;
        } else {
            break;
        }
    }
    (ident, i)
}

fn skip_space(code: &[char], mut i: usize) -> usize {
    while code.get(i).is_some_and(|c| c.is_whitespace()) {
        i += 1;
    }
    i
}

/// The first segment of each path of a `{…}` group starting at `i` (just after `{`).
fn group_heads(code: &[char], mut i: usize) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 1;
    let mut expect_head = true;
    while i < code.len() && depth > 0 {
        i = skip_space(code, i);
        let Some(&c) = code.get(i) else { break };
        match c {
            '{' => {
                depth += 1;
                i += 1;
            }
            '}' => {
                depth -= 1;
                i += 1;
            }
            ',' => {
                if depth == 1 {
                    expect_head = true;
                }
                i += 1;
            }
            _ if c.is_alphanumeric() || c == '_' => {
                let (ident, next) = ident_at(code, i);
                if expect_head && depth == 1 {
                    heads.push(ident);
                    expect_head = false;
                }
                i = next;
            }
            _ => i += 1,
        }
    }
    heads
}

/// Every use of another top-level module in one file of `src/`.
fn imports_of(file: &str, module: &str, file_depth: usize, source: &str) -> Vec<Import> {
    let code: Vec<char> = code_only(source).chars().collect();
    let original: Vec<&str> = source.lines().collect();
    let mut imports = Vec::new();
    let mut line = 1;
    // Inline `mod x {` blocks: the brace depth at which each was opened.
    let mut inline_mods: Vec<usize> = Vec::new();
    let mut braces = 0usize;
    let mut pending_mod = false;
    let mut i = 0;
    let record = |to: String, line: usize, imports: &mut Vec<Import>| {
        if to != module && !to.is_empty() && to != "self" && to != "super" {
            imports.push(Import {
                from: module.to_string(),
                to,
                file: file.to_string(),
                line,
                text: original
                    .get(line - 1)
                    .map(|l| l.trim().to_string())
                    .unwrap_or_default(),
            });
        }
    };
    while i < code.len() {
        let c = code[i];
        let starts_word = i == 0 || !(code[i - 1].is_alphanumeric() || code[i - 1] == '_');
        match c {
            '\n' => {
                line += 1;
                i += 1;
            }
            '{' => {
                if pending_mod {
                    inline_mods.push(braces);
                    pending_mod = false;
                }
                braces += 1;
                i += 1;
            }
            '}' => {
                braces = braces.saturating_sub(1);
                if inline_mods.last() == Some(&braces) {
                    inline_mods.pop();
                }
                i += 1;
            }
            ';' => {
                pending_mod = false;
                i += 1;
            }
            _ if starts_word && (c.is_alphanumeric() || c == '_') => {
                let (word, next) = ident_at(&code, i);
                let preceded_by_dollar = i > 0 && code[i - 1] == '$';
                if word == "mod" {
                    pending_mod = true;
                    i = next;
                } else if word == "crate" && !preceded_by_dollar && code.get(next) == Some(&':') {
                    let after = skip_space(&code, next + 2);
                    if code.get(after) == Some(&'{') {
                        for head in group_heads(&code, after + 1) {
                            record(head, line, &mut imports);
                        }
                    } else {
                        let (head, _) = ident_at(&code, after);
                        record(head, line, &mut imports);
                    }
                    i = next;
                } else if word == "super" && code.get(next) == Some(&':') {
                    // `super::super::x`: climbing out of the top-level module reaches the root.
                    let mut climbs = 1;
                    let mut j = next + 2;
                    loop {
                        let (segment, after) = ident_at(&code, j);
                        if segment == "super" && code.get(after) == Some(&':') {
                            climbs += 1;
                            j = after + 2;
                        } else {
                            break;
                        }
                    }
                    if climbs >= file_depth + inline_mods.len() {
                        if code.get(j) == Some(&'{') {
                            for head in group_heads(&code, j + 1) {
                                record(head, line, &mut imports);
                            }
                        } else {
                            let (head, _) = ident_at(&code, j);
                            record(head, line, &mut imports);
                        }
                    }
                    i = j;
                } else {
                    i = next;
                }
            }
            _ => i += 1,
        }
    }
    imports
}

/// The problems with `imports` given `layers` and the modules `declared`.
fn check(layers: &Layers, declared: &BTreeSet<String>, imports: &[Import]) -> Vec<String> {
    let mut problems = Vec::new();
    for module in declared {
        if !layers.of.contains_key(module) {
            problems.push(format!(
                "module `{module}` is in no layer: add it to the Layout section of src/lib.rs"
            ));
        }
    }
    for module in layers.of.keys() {
        if !declared.contains(module) {
            problems.push(format!(
                "the Layout section of src/lib.rs names `{module}`, which lib.rs does not declare"
            ));
        }
    }
    let layer = |m: &str| layers.of.get(m).copied();
    let name = |n: usize| layers.names.get(&n).cloned().unwrap_or_default();
    for import in imports {
        if let (Some(from), Some(to)) = (layer(&import.from), layer(&import.to)) {
            if to < from {
                problems.push(format!(
                    "upward import at {}:{}: `{}` — {} (layer {from}, {}) uses {} (layer {to}, {})",
                    import.file,
                    import.line,
                    import.text,
                    import.from,
                    name(from),
                    import.to,
                    name(to)
                ));
            }
        }
    }
    problems.extend(cycles(imports));
    problems
}

/// Every group of modules that use one another, with one cycle spelled out import by import.
fn cycles(imports: &[Import]) -> Vec<String> {
    let mut edges: BTreeMap<&str, BTreeMap<&str, &Import>> = BTreeMap::new();
    for import in imports {
        edges
            .entry(import.from.as_str())
            .or_default()
            .entry(import.to.as_str())
            .or_insert(import);
    }
    let reaches = |from: &str, to: &str| -> Option<Vec<&Import>> {
        // Breadth-first: the shortest chain of imports from `from` to `to`.
        let mut seen = BTreeSet::from([from]);
        let mut queue = std::collections::VecDeque::from([(from, Vec::<&Import>::new())]);
        while let Some((at, path)) = queue.pop_front() {
            for (next, import) in edges.get(at).into_iter().flatten() {
                let mut longer = path.clone();
                longer.push(import);
                if *next == to {
                    return Some(longer);
                }
                if seen.insert(next) {
                    queue.push_back((next, longer));
                }
            }
        }
        None
    };
    let mut reported: BTreeSet<BTreeSet<String>> = BTreeSet::new();
    let mut problems = Vec::new();
    for module in edges.keys() {
        let Some(cycle) = reaches(module, module) else {
            continue;
        };
        let members: BTreeSet<String> = cycle.iter().map(|i| i.from.clone()).collect();
        if !reported.insert(members) {
            continue;
        }
        let chain: Vec<String> = cycle
            .iter()
            .map(|i| {
                format!(
                    "{} uses {} ({}:{}: `{}`)",
                    i.from, i.to, i.file, i.line, i.text
                )
            })
            .collect();
        problems.push(format!("import cycle: {}", chain.join("; ")));
    }
    problems
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Checks a source tree given as (path relative to `src/`, contents).
fn analyze(files: &[(PathBuf, String)]) -> Vec<String> {
    let Some((_, lib)) = files.iter().find(|(p, _)| p == Path::new("lib.rs")) else {
        return vec!["no src/lib.rs".into()];
    };
    let layers = match parse_layers(lib) {
        Ok(layers) => layers,
        Err(e) => return vec![e],
    };
    let declared = declared_modules(lib);
    let mut imports = Vec::new();
    for (path, source) in files {
        if let Some((module, depth)) = module_of(path) {
            let shown = format!("src/{}", path.display());
            imports.extend(imports_of(&shown, &module, depth, source));
        }
    }
    check(&layers, &declared, &imports)
}

#[test]
fn the_crate_follows_the_layers_written_in_lib_rs() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    let files: Vec<(PathBuf, String)> = paths
        .iter()
        .map(|p| {
            let text =
                std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.strip_prefix(&src).unwrap_or(p).to_path_buf(), text)
        })
        .collect();
    assert!(files.len() > 20, "only {} files under src/", files.len());
    let problems = analyze(&files);
    assert!(
        problems.is_empty(),
        "the layers of src/lib.rs are broken:\n- {}",
        problems.join("\n- ")
    );
}

// The checker itself, on small made-up crates.

const LIB: &str = "//! # Layout
//!
//! 1. **Top**: `server` — serves; `tool` — a tool.
//! 2. **Middle**: `kafka` — writes, uses `other` things; `avro` — encodes.
//! 3. **Bottom**: `codes` — codes.

pub mod server;
pub mod tool;
pub(crate) mod kafka;
mod avro;
mod codes;
";

fn tree(files: &[(&str, &str)]) -> Vec<(PathBuf, String)> {
    std::iter::once(("lib.rs", LIB))
        .chain(files.iter().copied())
        .map(|(p, s)| (PathBuf::from(p), s.to_string()))
        .collect()
}

#[test]
fn layers_are_read_from_the_numbered_list() {
    let layers = parse_layers(LIB).expect("layers");
    assert_eq!(layers.of["server"], 1);
    assert_eq!(layers.of["tool"], 1);
    assert_eq!(layers.of["kafka"], 2);
    assert_eq!(layers.of["codes"], 3);
    assert!(
        !layers.of.contains_key("other"),
        "a name in backticks without a dash is prose"
    );
    assert_eq!(layers.names[&2], "Middle");
}

#[test]
fn downward_imports_pass() {
    let problems = analyze(&tree(&[
        (
            "server.rs",
            "use crate::kafka::Sink;\nuse crate::{avro, codes::Code};",
        ),
        ("kafka/mod.rs", "mod producer;\nuse crate::codes::Code;"),
        (
            "kafka/producer.rs",
            "use super::Sink; use super::super::codes::Code;",
        ),
    ]));
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn an_upward_import_is_named_with_its_file_and_line() {
    let problems = analyze(&tree(&[(
        "kafka/producer.rs",
        "use std::sync::Arc;\n\nuse crate::server::ApiError;\n",
    )]));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("src/kafka/producer.rs:3")
            && problems[0].contains("`use crate::server::ApiError;`")
            && problems[0].contains("kafka (layer 2, Middle) uses server (layer 1, Top)"),
        "{}",
        problems[0]
    );
}

#[test]
fn grouped_paths_and_paths_in_place_count_too() {
    let grouped = analyze(&tree(&[(
        "codes.rs",
        "use crate::{\n    kafka::{Sink, Other},\n};",
    )]));
    assert!(
        grouped
            .iter()
            .any(|p| p.contains("codes (layer 3, Bottom) uses kafka")),
        "{grouped:?}"
    );
    let in_place = analyze(&tree(&[("avro.rs", "fn f() { crate::tool::run(); }")]));
    assert!(
        in_place
            .iter()
            .any(|p| p.contains("avro (layer 2, Middle) uses tool")),
        "{in_place:?}"
    );
    let climbing = analyze(&tree(&[(
        "avro.rs",
        "mod t { use super::super::server::X; }",
    )]));
    assert!(
        climbing.iter().any(|p| p.contains("uses server")),
        "{climbing:?}"
    );
}

#[test]
fn paths_in_comments_and_strings_are_not_imports() {
    let problems = analyze(&tree(&[(
        "codes.rs",
        "//! See [`crate::server`].\n/* crate::server */\nconst S: &str = \"crate::server\";\nconst R: &str = r#\"crate::tool\"#;\nconst C: char = '\"'; // crate::server\nfn f<'a>(x: &'a str) {}\nmod tests { use super::*; }",
    )]));
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn two_modules_of_one_layer_that_use_each_other_are_a_cycle() {
    let problems = analyze(&tree(&[
        ("kafka/mod.rs", "use crate::avro::Encoder;"),
        ("avro/mod.rs", "mod registry;"),
        ("avro/registry.rs", "pub fn f() { crate::kafka::sink(); }"),
    ]));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("import cycle:")
            && problems[0].contains("avro uses kafka (src/avro/registry.rs:1")
            && problems[0].contains("kafka uses avro (src/kafka/mod.rs:1"),
        "{}",
        problems[0]
    );
}

#[test]
fn a_module_missing_from_the_layers_is_named() {
    let lib = format!("{LIB}mod extra;\n");
    let files = vec![(PathBuf::from("lib.rs"), lib)];
    let problems = analyze(&files);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("module `extra` is in no layer")),
        "{problems:?}"
    );
}
