//! The library's layers, as the comment in `src/lib.rs` draws them: a module
//! imports only modules of lower layers, and nothing in the library imports
//! the command line (which lives in the binary: `src/main.rs`, `src/cli/`).
//!
//! Read from the source text, so a cycle fails here and not only in review.
//! Test code (`#[cfg(test)]` onwards) may reach upward, e.g. to train a model.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Lowest first. Modules in the same layer do not import each other.
const LAYERS: &[&[&str]] = &[
    &["fsio"],
    &["classifier"],
    &["dataset", "mlflow"],
    &["artifact", "settings"],
    &["telemetry", "tuning"],
    &["training"],
    &["gate", "learning", "monitoring", "shards"],
    &["retraining"],
    &["server"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source up to its test module.
fn non_test_code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    match text.find("#[cfg(test)]") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// Top-level modules named after `prefix` (`crate::` or `nbserve::`).
fn modules_used(code: &str, prefix: &str) -> BTreeSet<String> {
    code.match_indices(prefix)
        .filter(|(i, _)| {
            // `nbserve::` only as a path start, not inside `foo_nbserve::`.
            !code[..*i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
        .map(|(i, _)| {
            code[i + prefix.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|m| m.chars().next().is_some_and(|c| c.is_ascii_lowercase()))
        .collect()
}

/// `src/server/routes/mod.rs` → `server`; `None` for the binary and `lib.rs`.
fn library_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?;
    let module = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(module, "main" | "lib" | "cli")).then(|| module.to_owned())
}

#[test]
fn each_layer_imports_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    for file in &files {
        let Some(module) = library_module(&src, file) else {
            continue;
        };
        let Some(own) = layer_of(&module) else {
            violations.push(format!(
                "{}: module {module} is in no layer",
                file.display()
            ));
            continue;
        };
        for used in modules_used(&non_test_code(file), "crate::") {
            let ok = used == module || layer_of(&used).is_some_and(|l| l < own);
            if !ok {
                violations.push(format!(
                    "{}: {module} imports crate::{used}",
                    file.display()
                ));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_library_declares_exactly_the_layered_modules_and_not_the_cli() {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let declared: BTreeSet<&str> = lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    let layered: BTreeSet<&str> = LAYERS.iter().flat_map(|l| l.iter().copied()).collect();
    assert_eq!(declared, layered);
    assert!(
        !lib.contains("mod cli"),
        "the command line belongs to the binary"
    );
}

#[test]
fn the_binary_uses_the_library_through_its_public_modules() {
    // The other direction is allowed and expected; this keeps the scan honest:
    // if it found nothing here, it would find nothing anywhere.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let used: BTreeSet<String> = files
        .iter()
        .filter(|f| library_module(&src, f).is_none() && !f.ends_with("lib.rs"))
        .flat_map(|f| modules_used(&non_test_code(f), "nbserve::"))
        .collect();
    assert!(
        used.contains("server") && used.contains("training"),
        "{used:?}"
    );
    for m in &used {
        assert!(
            layer_of(m).is_some(),
            "the binary uses nbserve::{m}, in no layer"
        );
    }
}
