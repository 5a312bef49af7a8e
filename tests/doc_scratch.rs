//! The documented commands write their files where a reader following them
//! from a fresh clone leaves the repository clean: a file an example writes is
//! in a directory (a scratch directory, `data/`, `models/`...), or one the
//! root `.gitignore` names, never a bare name in the repository root; and an
//! `mlflow server` example puts its store and artifacts outside the checkout
//! (its defaults, `mlruns`/`mlflow.db` and `mlartifacts/`, land in the current
//! directory).
//!
//! Read from the Markdown text: the commands of `sh` blocks (lines joined at a
//! trailing `\`) and the inline code spans of prose that start with
//! `nbserve `. Table rows are synopses (`--out M.json`), not examples.

use std::path::{Path, PathBuf};

/// The options whose value is a file the command writes.
const WRITES: &[&str] = &["--out", "--train-out", "--test-out", "--report"];

/// The kinds of file the commands write.
const FILE_KINDS: &[&str] = &[".csv", ".json", ".jsonl", ".db", ".txt"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            markdown_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
}

/// The commands a Markdown text shows: each with its line number.
fn commands(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fenced = false;
    let mut pending: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") {
            fenced = !fenced;
            out.extend(pending.take());
            continue;
        }
        if fenced {
            let (n, mut joined) = pending.take().unwrap_or((i + 1, String::new()));
            match line.trim_end().strip_suffix('\\') {
                Some(head) => {
                    joined.push_str(head);
                    pending = Some((n, joined));
                }
                None => {
                    joined.push_str(line);
                    out.push((n, joined));
                }
            }
        } else if !trimmed.starts_with('|') {
            let spans = line.split('`').skip(1).step_by(2);
            out.extend(
                spans
                    .filter(|s| s.starts_with("nbserve "))
                    .map(|s| (i + 1, s.to_owned())),
            );
        }
    }
    out
}

/// Whether a backend store URI names no file in the current directory: a
/// SQLite path is absolute after `sqlite:///` (four slashes) or a variable
/// (a `mktemp -d` directory), other stores are servers.
fn outside_checkout(store: &str) -> bool {
    store
        .trim_matches(|c| c == '"' || c == '\'')
        .strip_prefix("sqlite:///")
        .is_none_or(|path| path.starts_with('/') || path.starts_with('$'))
}

/// What is wrong with where `command` writes, if anything.
fn offences(command: &str, ignored: &[&str]) -> Vec<String> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let mut found = Vec::new();
    for pair in words.windows(2) {
        let value = pair[1].trim_matches(|c| c == '"' || c == '\'');
        // `--out model.path` in prose names a setting, not a file.
        let a_file = FILE_KINDS.iter().any(|kind| value.ends_with(kind));
        let in_root = a_file && !value.contains('/') && !value.starts_with('$');
        if WRITES.contains(&pair[0]) && in_root && !ignored.contains(&value) {
            found.push(format!(
                "{} {value} writes into the repository root",
                pair[0]
            ));
        }
    }
    let mlflow_server = words
        .windows(2)
        .any(|w| w[0].trim_matches('"').ends_with("mlflow") && w[1] == "server");
    if mlflow_server {
        let absolute_store = words
            .windows(2)
            .any(|w| w[0] == "--backend-store-uri" && outside_checkout(w[1]));
        let artifacts = words
            .iter()
            .any(|w| *w == "--artifacts-destination" || *w == "--default-artifact-root");
        if !absolute_store || !artifacts {
            found.push(
                "mlflow server needs --backend-store-uri with an absolute path and \
                 --artifacts-destination outside the checkout"
                    .to_owned(),
            );
        }
    }
    found
}

#[test]
fn documented_commands_leave_the_repository_root_clean() {
    let gitignore = std::fs::read_to_string(root().join(".gitignore")).unwrap();
    let ignored: Vec<&str> = gitignore
        .lines()
        .filter_map(|l| l.strip_prefix('/'))
        .collect();
    let mut files = vec![root().join("README.md")];
    markdown_files(&root().join("docs"), &mut files);
    let mut seen = 0;
    let mut wrong = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (line, command) in commands(&text) {
            seen += 1;
            for offence in offences(&command, &ignored) {
                let name = file.strip_prefix(root()).unwrap().display();
                wrong.push(format!("{name}:{line}: {offence}"));
            }
        }
    }
    assert!(
        seen > 20,
        "only {seen} commands found: the parser lost them"
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_check_sees_what_it_looks_for() {
    let text = "Run `nbserve split --data d.csv --train-out A.csv --test-out /tmp/x/B.csv`.\n\
                | `nbserve train --out M.json` | a synopsis |\n\
                ```sh\n\
                nbserve retrain --data data/a.csv \\\n  --report report.json\n\
                mlflow server --backend-store-uri sqlite:///mlruns.db --port 5000\n\
                \"$BIN/mlflow\" server --backend-store-uri sqlite:////tmp/m/mlruns.db \\\n  \
                --artifacts-destination /tmp/m/artifacts\n\
                ```\n";
    let found: Vec<(usize, Vec<String>)> = commands(text)
        .into_iter()
        .map(|(line, c)| (line, offences(&c, &["report.json"])))
        .collect();
    assert_eq!(found.len(), 4, "{found:?}");
    assert_eq!(
        found[0],
        (
            1,
            vec!["--train-out A.csv writes into the repository root".to_owned()]
        )
    );
    assert_eq!(found[1], (4, vec![]), "an ignored name is fine");
    assert_eq!(found[2].0, 6);
    assert!(
        found[2].1[0].starts_with("mlflow server needs"),
        "{found:?}"
    );
    assert_eq!(found[3], (7, vec![]));
}
