//! The fuzz targets' smoke run: every committed input of `fuzz/corpus/`
//! (the seeds and each input a fuzzing run found and that was fixed)
//! replayed through the same target functions `cargo fuzz` runs
//! (`fuzz/src/lib.rs`), so a regression fails the ordinary `cargo test`.
//! The fuzzing itself (a sanitizer build and minutes per target) is
//! `bench/fuzz.sh`.

#[path = "../fuzz/src/lib.rs"]
mod targets;

use std::path::PathBuf;

/// The committed inputs of one target's corpus, sorted by name.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut inputs: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    inputs.sort();
    assert!(
        inputs.len() >= 3,
        "{}: a corpus of {} inputs",
        dir.display(),
        inputs.len()
    );
    inputs
}

/// Runs `target` on every input of its corpus; a panic names the input.
/// Returns each input's name and outcome.
fn replay<T>(name: &str, target: fn(&[u8]) -> T) -> Vec<(String, T)> {
    corpus(name)
        .into_iter()
        .map(
            |(file, data)| match std::panic::catch_unwind(|| target(&data)) {
                Ok(outcome) => (file, outcome),
                Err(_) => panic!("fuzz target {name} failed on fuzz/corpus/{name}/{file}"),
            },
        )
        .collect()
}

#[test]
fn artifact_corpus_replays_with_models_that_load_and_bytes_that_do_not() {
    let outcomes = replay("artifact", targets::artifact);
    // The seeds are real artifacts, so the checks on a loaded model run;
    // the others are refused without a panic.
    assert!(outcomes.iter().any(|(_, loaded)| *loaded), "{outcomes:?}");
    assert!(outcomes.iter().any(|(_, loaded)| !*loaded), "{outcomes:?}");
}

#[test]
fn requests_corpus_replays_with_answers_and_refusals() {
    let outcomes = replay("requests", targets::requests);
    let statuses: Vec<u16> = outcomes
        .iter()
        .filter_map(|(_, s)| s.map(|s| s.as_u16()))
        .collect();
    // Real requests reach the handlers (200), others their refusals (4xx).
    assert!(statuses.contains(&200), "{outcomes:?}");
    assert!(
        statuses.iter().any(|s| (400..500).contains(s)),
        "{outcomes:?}"
    );
}

#[test]
fn tokenizer_corpus_replays_with_tokens() {
    let outcomes = replay("tokenizer", targets::tokenizer);
    assert!(
        outcomes.iter().any(|(_, n)| n.is_some_and(|n| n > 0)),
        "{outcomes:?}"
    );
}

#[test]
fn the_reference_scanner_is_pythons_word_class_not_the_regex_crates() {
    // U+0301 (a combining mark) is in the regex crate's `\w` but not in
    // Python's: "cafe\u{301}s" is the tokens "cafe" and nothing for "s".
    assert_eq!(
        targets::tokenizer("CAFE\u{301}S ab_1 x".as_bytes()),
        Some(2)
    );
    assert_eq!(targets::tokenizer(b"\xff\xfe"), None);
}
