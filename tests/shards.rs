//! `nbserve count`, `merge`, `cv-score` and `tune --counts` as a scheduler
//! calls them: byte-identical models, refusals that name the file.

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::{nbserve_env, stderr};

/// A fixed creation time, as reproducible runs set it.
const EPOCH: (&str, &str) = ("SOURCE_DATE_EPOCH", "1700000000");

fn nbserve(args: &[&str]) -> Output {
    nbserve_env(args, &[EPOCH])
}

fn ok(args: &[&str]) -> String {
    let o = nbserve(args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `head`, the files, then each of `tails`: one command line.
fn line<'a, P: AsRef<Path>>(
    head: &[&'a str],
    files: &'a [P],
    tails: &[&[&'a str]],
) -> Vec<&'a str> {
    let mut args = head.to_vec();
    args.extend(files.iter().map(|f| s(f.as_ref())));
    for tail in tails {
        args.extend_from_slice(tail);
    }
    args
}

/// Where `tune` writes and what it is evaluated on.
fn tune_tail<'a>(out: &'a str, test: &'a str) -> [&'a str; 6] {
    ["--out", out, "--test-data", test, "--name", "t"]
}

fn sha256(p: &Path) -> String {
    nbserve::fsio::sha256_hex(&std::fs::read(p).unwrap())
}

/// tests/data/sample.csv as a test file and four shards of the rest, dealt
/// round-robin (the fourth empty; with `eggs`, the third holds a label of
/// its own), written as CSVs.
fn shards_with(dir: &Path, eggs: bool) -> (PathBuf, Vec<PathBuf>) {
    let data =
        nbserve::Dataset::from_csv(Path::new("tests/data/sample.csv"), "text", "label").unwrap();
    let write = |name: &str, rows: &mut dyn Iterator<Item = (&str, &str)>| {
        let path = dir.join(name);
        let mut w = csv::Writer::from_path(&path).unwrap();
        w.write_record(["text", "label"]).unwrap();
        for (t, l) in rows {
            w.write_record([t, l]).unwrap();
        }
        w.flush().unwrap();
        path
    };
    let rows: Vec<(&str, &str)> = data
        .texts
        .iter()
        .zip(&data.labels)
        .map(|(t, l)| (t.as_str(), l.as_str()))
        .collect();
    // Every fifth row is held out; the rest is cut in three.
    let test = write("test.csv", &mut rows.iter().copied().step_by(5));
    let train: Vec<(&str, &str)> = rows
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 5 != 0)
        .map(|(_, r)| *r)
        .collect();
    let dealt = |k: usize| train.iter().copied().skip(k).step_by(3);
    let extra: &[(&str, &str)] = if eggs {
        &[
            ("spam and eggs for breakfast", "eggs"),
            ("green eggs", "eggs"),
        ]
    } else {
        &[]
    };
    let paths = vec![
        write("a.csv", &mut dealt(0)),
        write("b.csv", &mut dealt(1)),
        write("c.csv", &mut dealt(2).chain(extra.iter().copied())),
        write("d.csv", &mut std::iter::empty()),
    ];
    (test, paths)
}

fn shards(dir: &Path) -> (PathBuf, Vec<PathBuf>) {
    shards_with(dir, true)
}

fn count(dir: &Path, csv: &Path, extra: &[&str]) -> PathBuf {
    let out = dir.join(csv.file_stem().unwrap()).with_extension("counts");
    let mut args = vec!["count", "--data", s(csv), "--out", s(&out)];
    args.extend_from_slice(extra);
    ok(&args);
    out
}

const FLAGS: [&str; 14] = [
    "--name",
    "spam-x",
    "--model-version",
    "7",
    "--model",
    "complement",
    "--alpha",
    "0.3",
    "--min-df",
    "2",
    "--max-df",
    "0.95",
    "--max-features",
    "2000",
];

#[test]
fn counts_merged_in_two_trees_write_the_bytes_train_writes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (test, csvs) = shards(d);
    let counts: Vec<PathBuf> = csvs.iter().map(|c| count(d, c, &[])).collect();
    let out = ok(&[
        "count",
        "--data",
        s(&csvs[3]),
        "--out",
        s(&d.join("e.counts")),
    ]);
    assert!(
        out.contains("counted 0 documents (no classes), 0 terms"),
        "{out}"
    );

    // Tree 1: ((a b) (c d)); tree 2: (d (c (b a))), another order.
    let ab = d.join("ab.counts");
    let cd = d.join("cd.counts");
    ok(&[
        "merge",
        s(&counts[0]),
        s(&counts[1]),
        "--out-counts",
        s(&ab),
    ]);
    ok(&[
        "merge",
        s(&counts[2]),
        s(&counts[3]),
        "--out-counts",
        s(&cd),
    ]);
    let ba = d.join("ba.counts");
    let cba = d.join("cba.counts");
    ok(&[
        "merge",
        s(&counts[1]),
        s(&counts[0]),
        "--out-counts",
        s(&ba),
    ]);
    ok(&["merge", s(&counts[2]), s(&ba), "--out-counts", s(&cba)]);
    assert_eq!(sha256(&ab), sha256(&ba), "merging commutes, to the byte");

    let one = d.join("one");
    let two = d.join("two");
    let three = d.join("three");
    for p in [&one, &two, &three] {
        std::fs::create_dir(p).unwrap();
    }
    let m1 = one.join("model.json");
    let m2 = two.join("model.json");
    let t = three.join("model.json");
    let merge = |parts: &[&Path], out: &Path| {
        ok(&line(
            &["merge"],
            parts,
            &[&["--out", s(out), "--test-data", s(&test)], &FLAGS],
        ))
    };
    let printed = merge(&[&ab, &cd], &m1);
    merge(&[&counts[3], &cba], &m2);
    let trained = ok(&line(
        &["train", "--data"],
        &csvs,
        &[&["--out", s(&t), "--test-data", s(&test)], &FLAGS],
    ));
    assert_eq!(sha256(&m1), sha256(&t));
    assert_eq!(sha256(&m2), sha256(&t));
    // The same report as train's, line for line.
    assert_eq!(printed, trained.replace(s(&t), s(&m1)));
    let a: serde_json::Value = serde_json::from_slice(&std::fs::read(&m1).unwrap()).unwrap();
    assert_eq!(a["classes"], serde_json::json!(["eggs", "ham", "spam"]));
    assert_eq!(a["created_at"], "2023-11-14T22:13:20Z");

    // Defaults too: the name is the output's stem, the model Bernoulli NB.
    let (m3, t3) = (one.join("plain.json"), three.join("plain.json"));
    ok(&[
        "merge",
        s(&ab),
        s(&cd),
        "--out",
        s(&m3),
        "--test-data",
        s(&test),
    ]);
    let reversed: Vec<&PathBuf> = csvs.iter().rev().collect();
    let tail = ["--out", s(&t3), "--test-data", s(&test)];
    ok(&line(&["train", "--data"], &reversed, &[&tail]));
    assert_eq!(sha256(&m3), sha256(&t3), "any order of --data, too");
}

#[test]
fn binary_counts_stand_for_train_binary() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (test, csvs) = shards(d);
    let counts: Vec<PathBuf> = csvs[..3]
        .iter()
        .map(|c| count(d, c, &["--binary"]))
        .collect();
    let (m, t) = (d.join("m.json"), d.join("t.json"));
    let model = ["--model", "multinomial"];
    ok(&line(
        &["merge"],
        &counts,
        &[&["--out", s(&m), "--test-data", s(&test)], &model],
    ));
    let tail = [
        "--out",
        s(&t),
        "--test-data",
        s(&test),
        "--binary",
        "--name",
        "m",
    ];
    ok(&line(&["train", "--data"], &csvs[..3], &[&tail, &model]));
    assert_eq!(sha256(&m), sha256(&t));
}

#[test]
fn counts_that_cannot_be_merged_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (test, csvs) = shards(d);
    let plain = count(d, &csvs[0], &[]);
    let binary_dir = d.join("binary");
    std::fs::create_dir(&binary_dir).unwrap();
    let binary = count(&binary_dir, &csvs[1], &["--binary"]);
    let folded_dir = d.join("folded");
    std::fs::create_dir(&folded_dir).unwrap();
    let folded = count(&folded_dir, &csvs[1], &["--folds", "3"]);
    let out = d.join("m.json");
    let merge = |files: &[&Path]| {
        nbserve(&line(
            &["merge"],
            files,
            &[&["--out", s(&out), "--test-data", s(&test)]],
        ))
    };

    let o = merge(&[&plain, &binary]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert_eq!(
        stderr(&o).trim(),
        format!(
            "nbserve: {}: cannot be merged with {}: counted with different settings: binary: false vs true",
            binary.display(),
            plain.display()
        )
    );
    let o = merge(&[&plain, &folded]);
    assert_eq!(o.status.code(), Some(4));
    assert!(
        stderr(&o).contains("folds: no folds vs 3 folds by text hash, seed 42"),
        "{}",
        stderr(&o)
    );

    // Damage: one flipped byte, a cut, a file that is no counts at all.
    let bytes = std::fs::read(&plain).unwrap();
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x20;
    let cases: [(&str, Vec<u8>, &str); 3] = [
        (
            "flipped.counts",
            flipped,
            "checksum mismatch: the file is truncated or corrupt",
        ),
        (
            "cut.counts",
            bytes[..bytes.len() - 100].to_vec(),
            "checksum mismatch: the file is truncated or corrupt",
        ),
        (
            "csv.counts",
            b"text,label\nhi,ham\n".to_vec(),
            "not a counts file (it does not start with \"NBCOUNTS\")",
        ),
    ];
    for (name, content, why) in cases {
        let bad = d.join(name);
        std::fs::write(&bad, content).unwrap();
        let o = merge(&[&plain, &bad]);
        assert_eq!(o.status.code(), Some(4), "{name}: {}", stderr(&o));
        assert_eq!(
            stderr(&o).trim(),
            format!("nbserve: {}: {why}", bad.display()),
            "{name}"
        );
    }
    assert!(!out.exists(), "nothing written");

    // Nothing to train on; one class only; no test file.
    let empty = count(d, &csvs[3], &[]);
    let o = merge(&[&empty]);
    assert_eq!(o.status.code(), Some(4));
    assert!(stderr(&o).contains("0 class(es)"), "{}", stderr(&o));
    let ham = d.join("ham.csv");
    std::fs::write(&ham, "text,label\nhello there,ham\nlunch today,ham\n").unwrap();
    let o = merge(&[&count(d, &ham, &[])]);
    assert_eq!(o.status.code(), Some(4));
    assert!(
        stderr(&o).contains("every training document has the label \"ham\""),
        "{}",
        stderr(&o)
    );
    let o = nbserve(&["merge", s(&plain), "--out", s(&out)]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--test-data"), "{}", stderr(&o));
}

#[test]
fn a_bad_row_is_named_by_count_as_by_train() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bad = d.join("bad.csv");
    std::fs::write(&bad, "text,label\nfine,ham\nragged,spam,extra\n").unwrap();
    let o = nbserve(&["count", "--data", s(&bad), "--out", s(&d.join("x.counts"))]);
    assert_eq!(o.status.code(), Some(4));
    let t = nbserve(&["train", "--data", s(&bad), "--out", s(&d.join("x.json"))]);
    assert_eq!(t.status.code(), Some(4));
    assert_eq!(stderr(&o), stderr(&t));
    assert!(stderr(&o).contains("bad.csv, line 3: expected 2 fields, found 3"));
    assert!(!d.join("x.counts").exists());
}

#[test]
fn tune_from_counts_chooses_what_tune_on_the_rows_chooses() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (test, csvs) = shards_with(d, false);
    let csvs = &csvs[..3];
    let grid = [
        "--alpha",
        "0.1,1",
        "--min-df",
        "1,2",
        "--max-features",
        "0,500",
        "--folds",
        "3",
    ];
    let counts: Vec<PathBuf> = csvs
        .iter()
        .map(|c| count(d, c, &["--folds", "3"]))
        .collect();
    let total = d.join("total.counts");
    ok(&line(&["merge"], &counts, &[&["--out-counts", s(&total)]]));
    // The held-out pass, shard by shard.
    let mut scores = Vec::new();
    for c in csvs {
        let out = d.join(c.file_stem().unwrap()).with_extension("scores");
        let head = ["cv-score", "--counts", s(&total), "--data", s(c), "--out"];
        ok(&line(&head, &[&out], &[&grid]));
        scores.push(out);
    }
    let (from_scores, here, on_rows) = (d.join("s.json"), d.join("h.json"), d.join("r.json"));
    let head = ["tune", "--counts", s(&total), "--scores"];
    let printed = ok(&line(
        &head,
        &scores,
        &[&tune_tail(s(&from_scores), s(&test)), &grid],
    ));
    let head = ["tune", "--counts", s(&total), "--data"];
    ok(&line(&head, csvs, &[&tune_tail(s(&here), s(&test)), &grid]));
    let head = ["tune", "--fold-by", "hash", "--data"];
    let tuned = ok(&line(
        &head,
        csvs,
        &[&tune_tail(s(&on_rows), s(&test)), &grid],
    ));
    assert_eq!(sha256(&from_scores), sha256(&on_rows));
    assert_eq!(sha256(&here), sha256(&on_rows));
    let chosen = |out: &str| {
        out.lines()
            .find(|l| l.starts_with("chosen:"))
            .unwrap()
            .to_owned()
    };
    assert_eq!(chosen(&printed), chosen(&tuned));

    // The folds must be the counts' own.
    let head = [
        "tune",
        "--counts",
        s(&total),
        "--data",
        s(&csvs[0]),
        "--seed",
        "1",
    ];
    let o = nbserve(&line(
        &head,
        &[] as &[PathBuf],
        &[&tune_tail(s(&here), s(&test)), &grid],
    ));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--seed 1, but"), "{}", stderr(&o));
    let o = nbserve(&[
        "cv-score",
        "--counts",
        s(&counts[0]),
        "--data",
        s(&csvs[1]),
        "--out",
        s(&here),
        "--folds",
        "3",
    ]);
    assert_eq!(o.status.code(), Some(4));
    assert!(
        stderr(&o).contains("b.csv was not counted into"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn retrain_on_base_counts_refits_without_a_search() {
    let o = nbserve(&[
        "retrain",
        "--base-counts",
        "b.counts",
        "--holdout",
        "h.csv",
        "--alpha",
        "0.1",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--alpha"), "{}", stderr(&o));
    let o = nbserve(&["retrain", "--holdout", "h.csv"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--data"), "{}", stderr(&o));
    // A damaged base is named before anything is fitted.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bad = d.join("b.counts");
    std::fs::write(&bad, b"NBCOUNTS\x01\x00\x00\x00junk").unwrap();
    let config = d.join("c.toml");
    let model = d.join("m.json");
    std::fs::write(
        &config,
        format!("[model]\npath = {:?}\ndir = {:?}\n", s(&model), s(d)),
    )
    .unwrap();
    let o = nbserve(&[
        "retrain",
        "--config",
        s(&config),
        "--base-counts",
        s(&bad),
        "--holdout",
        "tests/data/sample.csv",
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("b.counts: checksum mismatch"),
        "{}",
        stderr(&o)
    );
}
