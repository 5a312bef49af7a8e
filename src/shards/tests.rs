use std::path::{Path, PathBuf};

use super::*;
use crate::classifier::{stratified_split, DfBound, Grid, ModelKind};
use crate::dataset::Dataset;
use crate::training::counts::{train_counts, tune_counts};
use crate::training::{train, tune, RunOptions, TrainOptions, TuneOptions};
use crate::tuning::FoldRule;

fn sample() -> Dataset {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sample.csv");
    Dataset::from_csv(Path::new(path), "text", "label").unwrap()
}

fn columns() -> ShardColumns {
    ShardColumns {
        text: "text".into(),
        label: "label".into(),
    }
}

fn run() -> RunOptions {
    RunOptions {
        test_size: 0.25,
        seed: 7,
        name: "t".into(),
        version: Some("1".into()),
        created_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
    }
}

/// A test CSV and `n` shard CSVs of the rest of the sample (the last one
/// empty), each with a `fold` column holding `row % 3`.
fn shards(dir: &Path, n: usize) -> (PathBuf, Vec<PathBuf>) {
    let data = sample();
    let classes = data.classes();
    let labels = data.label_indices(&classes).unwrap();
    let split = stratified_split(&labels, &classes, 0.25, 3).unwrap();
    let test = dir.join("test.csv");
    data.subset(&split.test).write_csv(&test).unwrap();
    let train = data.subset(&split.train);
    let per = train.len().div_ceil(n - 1);
    let paths = (0..n)
        .map(|i| {
            let path = dir.join(format!("shard{i}.csv"));
            let mut w = csv::Writer::from_path(&path).unwrap();
            w.write_record(["label", "fold", "text"]).unwrap();
            for r in (i * per).min(train.len())..((i + 1) * per).min(train.len()) {
                let fold = (r % 3).to_string();
                w.write_record([train.labels[r].as_str(), &fold, &train.texts[r]])
                    .unwrap();
            }
            w.flush().unwrap();
            path
        })
        .collect();
    (test, paths)
}

/// Every model on term counts, and every kind of pruning.
fn grid() -> Grid {
    Grid {
        models: vec![ModelKind::Multinomial, ModelKind::Bernoulli],
        binary: false,
        alphas: vec![0.3],
        min_dfs: vec![DfBound::Count(2), DfBound::Proportion(0.01)],
        max_dfs: vec![DfBound::Proportion(0.8)],
        max_features: vec![0, 300],
    }
}

/// Counts every shard on its own, merges them in a tree and writes the total.
fn count_and_merge(dir: &Path, paths: &[PathBuf], settings: &CountSettings) -> PathBuf {
    let mut files: Vec<PathBuf> = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        let counts = count_files(std::slice::from_ref(p), &columns(), settings.clone()).unwrap();
        let out = dir.join(format!("shard{i}.counts"));
        write_counts(&out, &counts).unwrap();
        files.push(out);
    }
    // ((3 2) (0 1)): an order and grouping of its own.
    let left = dir.join("left.counts");
    write_counts(
        &left,
        &merge_counts(&[files[3].clone(), files[2].clone()]).unwrap(),
    )
    .unwrap();
    let right = dir.join("right.counts");
    write_counts(
        &right,
        &merge_counts(&[files[0].clone(), files[1].clone()]).unwrap(),
    )
    .unwrap();
    let total = dir.join("total.counts");
    write_counts(&total, &merge_counts(&[right, left]).unwrap()).unwrap();
    let flat = merge_counts(&files).unwrap();
    assert_eq!(read_counts(&total).unwrap().0.to_bytes(), flat.to_bytes());
    total
}

#[test]
fn merged_shards_train_what_train_trains_on_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let (test_path, paths) = shards(dir.path(), 4);
    let test = Dataset::holdout(&test_path).unwrap();
    let total_path = count_and_merge(dir.path(), &paths, &CountSettings::new(false, None));
    let (total, _) = read_counts(&total_path).unwrap();
    let options = TrainOptions {
        model: ModelKind::Multinomial,
        vectorizer: crate::classifier::VectorizerOptions {
            min_df: DfBound::Count(2),
            max_df: DfBound::Proportion(0.9),
            max_features: 300,
            binary: false,
        },
        calibrate_folds: None,
        alpha: 0.5,
        run: run(),
    };
    let data = Dataset::from_csvs(&paths, "text", "label").unwrap();
    let trained = train(&data, Some(&test), &options, |_, _| {}).unwrap();
    let merged = train_counts(&total, &test, &options).unwrap();
    assert_eq!(trained.file_bytes(), merged.file_bytes());
    assert_eq!(merged.dataset.documents, data.len() as u64);
}

#[test]
fn tune_from_counts_is_tune_on_the_rows_with_the_same_folds() {
    let dir = tempfile::tempdir().unwrap();
    let (test_path, paths) = shards(dir.path(), 4);
    let test = Dataset::holdout(&test_path).unwrap();
    let data = Dataset::from_csvs(&paths, "text", "label").unwrap();
    let points = grid().points();
    let rules = [
        (FoldBy::Hash { seed: 7 }, FoldRule::Hash),
        (
            FoldBy::Column {
                column: "fold".into(),
            },
            FoldRule::Given(read_fold_column(&paths, &columns(), "fold", 3).unwrap()),
        ),
    ];
    for (by, rule) in rules {
        let settings = CountSettings::new(false, Some(FoldSpec { k: 3, by }));
        let total_path = count_and_merge(dir.path(), &paths, &settings);
        // The held-out pass shard by shard, added up in row order.
        let mut score_files_ = Vec::new();
        for (i, p) in paths.iter().enumerate() {
            let s = score_files(&total_path, &points, std::slice::from_ref(p), &columns()).unwrap();
            let out = dir.path().join(format!("shard{i}.scores"));
            write_scores(&out, &s).unwrap();
            score_files_.push(out);
        }
        let scores = read_scores(&score_files_).unwrap();
        assert_eq!(
            scores,
            score_files(&total_path, &points, &paths, &columns()).unwrap()
        );
        let options = TuneOptions {
            grid: grid(),
            folds: 3,
            fold_rule: rule,
            run: run(),
        };
        let (total, _) = read_counts(&total_path).unwrap();
        let from_counts = tune_counts(&total, &scores, &test, &options).unwrap();
        let on_rows = tune(&data, Some(&test), &options, |_, _| {}, &|_, _| {}).unwrap();
        assert_eq!(from_counts.tuning, on_rows.tuning);
        assert_eq!(from_counts.file_bytes(), on_rows.file_bytes());
    }
}

#[test]
fn a_shard_not_counted_into_the_total_is_not_scored() {
    let dir = tempfile::tempdir().unwrap();
    let (_, paths) = shards(dir.path(), 4);
    let settings = CountSettings::new(
        false,
        Some(FoldSpec {
            k: 2,
            by: FoldBy::Hash { seed: 1 },
        }),
    );
    let counts = count_files(&paths[1..3], &columns(), settings).unwrap();
    let total = dir.path().join("one.counts");
    write_counts(&total, &counts).unwrap();
    let points = grid().points();
    let e = score_files(&total, &points, &paths[..2], &columns()).unwrap_err();
    assert!(matches!(e, ShardError::NotCounted { .. }), "{e}");
    assert!(
        e.to_string().contains("shard0.csv was not counted into"),
        "{e}"
    );
    assert!(score_files(&total, &points, &paths[1..3], &columns()).is_ok());
}

#[test]
fn a_bad_fold_column_value_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.csv");
    std::fs::write(&path, "text,label,fold\nhello,ham,0\nbye,spam,3\n").unwrap();
    let settings = CountSettings::new(
        false,
        Some(FoldSpec {
            k: 3,
            by: FoldBy::Column {
                column: "fold".into(),
            },
        }),
    );
    let e = count_files(&[path], &columns(), settings)
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with("f.csv, line 3: column \"fold\" holds \"3\", not a fold number from 0 to 2"),
        "{e}"
    );
}

/// Writes `rows` as a `text,label` CSV.
fn write_rows(path: &Path, rows: &[(String, String)]) {
    let mut w = csv::Writer::from_path(path).unwrap();
    w.write_record(["text", "label"]).unwrap();
    for (t, l) in rows {
        w.write_record([t, l]).unwrap();
    }
    w.flush().unwrap();
}

mod properties {
    use proptest::prelude::*;

    use super::*;
    use crate::classifier::VectorizerOptions;

    /// Rows over a small vocabulary and three labels, so that shards often
    /// hold disjoint class sets, and some hold nothing.
    fn rows() -> impl Strategy<Value = Vec<(String, String)>> {
        let word = prop::sample::select(vec![
            "free", "money", "meeting", "lunch", "cheap", "pills", "agenda", "now", "Free", "the",
        ]);
        let text = prop::collection::vec(word, 0..6).prop_map(|w| w.join(" "));
        let label = prop::sample::select(vec!["ham", "spam", "eggs"]).prop_map(String::from);
        prop::collection::vec((text, label), 0..30)
    }

    fn options() -> impl Strategy<Value = TrainOptions> {
        (
            prop::sample::select(vec![
                ModelKind::Multinomial,
                ModelKind::Bernoulli,
                ModelKind::Complement,
            ]),
            any::<bool>(),
            prop::sample::select(vec![DfBound::Count(1), DfBound::Count(2)]),
            prop::sample::select(vec![DfBound::Proportion(1.0), DfBound::Proportion(0.7)]),
            prop::sample::select(vec![0u64, 4]),
        )
            .prop_map(
                |(model, binary, min_df, max_df, max_features)| TrainOptions {
                    model,
                    vectorizer: VectorizerOptions {
                        min_df,
                        max_df,
                        max_features,
                        binary: binary || model == ModelKind::Bernoulli,
                    },
                    calibrate_folds: None,
                    alpha: 0.5,
                    run: run(),
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Any cut of any rows into shard files, counted one by one and
        /// merged in any tree through files, writes the artifact `train`
        /// writes on the files (or fails where it fails).
        #[test]
        fn count_and_merge_in_any_tree_is_train_on_the_union(
            rows in rows(),
            cuts in prop::collection::vec(0usize..30, 0..5),
            order in any::<u64>(),
            options in options(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let test_path = dir.path().join("test.csv");
            let test_rows = [("free money now", "spam"), ("lunch agenda", "ham"), ("cheap eggs", "eggs")];
            let test_rows: Vec<(String, String)> =
                test_rows.iter().map(|(t, l)| (t.to_string(), l.to_string())).collect();
            write_rows(&test_path, &test_rows);
            let test = Dataset::holdout(&test_path).unwrap();
            let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(rows.len())).collect();
            bounds.extend([0, rows.len()]);
            bounds.sort_unstable();
            let paths: Vec<PathBuf> = bounds
                .windows(2)
                .enumerate()
                .map(|(i, w)| {
                    let p = dir.path().join(format!("s{i}.csv"));
                    write_rows(&p, &rows[w[0]..w[1]]);
                    p
                })
                .collect();
            // Binary features are a counting setting (`count --binary`),
            // as they are a training one (`train --binary`).
            let binary_counts = options.vectorizer.binary && options.model != ModelKind::Bernoulli;
            let settings = CountSettings::new(binary_counts, None);
            let mut files: Vec<PathBuf> = paths
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let c = count_files(std::slice::from_ref(p), &columns(), settings.clone()).unwrap();
                    let out = dir.path().join(format!("s{i}.counts"));
                    write_counts(&out, &c).unwrap();
                    out
                })
                .collect();
            // Any tree: merge two or three files picked by `order`, as a
            // scheduler would, until one is left.
            let mut state = order;
            let mut n = 0;
            while files.len() > 1 {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let take = 2 + (state & 1) as usize;
                let mut group = Vec::new();
                for _ in 0..take.min(files.len()) {
                    let i = (state >> 33) as usize % files.len();
                    group.push(files.swap_remove(i));
                    state = state.rotate_left(7);
                }
                let out = dir.path().join(format!("m{n}.counts"));
                n += 1;
                write_counts(&out, &merge_counts(&group).unwrap()).unwrap();
                files.push(out);
            }
            let (total, _) = read_counts(&files[0]).unwrap();
            // No rows at all is an error to the reader, as to the fit.
            let trained = Dataset::from_csvs(&paths, "text", "label")
                .map_err(|e| e.to_string())
                .and_then(|data| {
                    train(&data, Some(&test), &options, |_, _| {}).map_err(|e| e.to_string())
                })
                .map(|a| a.file_bytes());
            let merged = train_counts(&total, &test, &options).map(|a| a.file_bytes());
            prop_assert_eq!(trained.as_ref().ok(), merged.as_ref().ok());
            prop_assert_eq!(trained.is_ok(), merged.is_ok(), "{:?} vs {:?}",
                trained.as_ref().err(), merged.as_ref().err().map(|e| e.to_string()));
        }
    }
}
