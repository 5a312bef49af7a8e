//! `nbserve retrain` and `nbserve rollback` as a scheduler calls them: the
//! real binary on small fixtures cut from `tests/data/sample.csv`, checked
//! by exit code, report and the bytes left in the models directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nbserve::Dataset;
use serde_json::Value;

mod common;
use common::{nbserve_env, stderr};

/// A models directory with `current.json` (trained by `nbserve train`, v1),
/// the training part and the holdout of the sample, and a settings file.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sample = Dataset::holdout(Path::new("tests/data/sample.csv")).unwrap();
        let (hold, train): (Vec<usize>, Vec<usize>) = (0..sample.len()).partition(|i| i % 3 == 0);
        sample
            .subset(&train)
            .write_csv(&dir.path().join("train.csv"))
            .unwrap();
        sample
            .subset(&hold)
            .write_csv(&dir.path().join("holdout.csv"))
            .unwrap();
        std::fs::create_dir(dir.path().join("models")).unwrap();
        let s = Self { dir };
        s.train_current("train.csv", "v1");
        std::fs::write(
            s.path("nbserve.toml"),
            format!(
                "[model]\npath = {:?}\ndir = {:?}\n[gate]\nmin_f1_macro = 0.5\n",
                s.path("models/current.json"),
                s.path("models")
            ),
        )
        .unwrap();
        s
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        nbserve_env(args, env)
    }

    /// Trains `models/current.json` (the model in service) on the CSV
    /// `data` in the sandbox, as version `version`.
    fn train_current(&self, data: &str, version: &str) {
        let o = self.run(&[
            "train",
            "--data",
            self.path(data).to_str().unwrap(),
            "--out",
            self.path("models/current.json").to_str().unwrap(),
            "--model-version",
            version,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }

    /// `retrain` with the fixtures, a small grid, and `extra` arguments.
    fn retrain(&self, extra: &[&str]) -> Output {
        let data = self.path("train.csv");
        let holdout = self.path("holdout.csv");
        self.retrain_on(data.to_str().unwrap(), holdout.to_str().unwrap(), extra)
    }

    /// `retrain` on `data` and `holdout`.
    fn retrain_on(&self, data: &str, holdout: &str, extra: &[&str]) -> Output {
        let config = self.path("nbserve.toml");
        let mut args = vec![
            "retrain",
            "--config",
            config.to_str().unwrap(),
            "--data",
            data,
            "--holdout",
            holdout,
            "--alpha",
            "0.1,1",
            "--min-df",
            "1",
            "--max-features",
            "0",
            "--folds",
            "3",
        ];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// `retrain` with `extra` and `--report r.json`, which must be rejected
    /// (exit 5) for `reason` with every byte under `models/` unchanged;
    /// returns the report.
    fn expect_rejected(&self, extra: &[&str], reason: &str) -> Value {
        let before = self.snapshot();
        let report = self.path("r.json");
        let mut args = extra.to_vec();
        args.extend_from_slice(&["--report", report.to_str().unwrap()]);
        let o = self.retrain(&args);
        assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
        assert!(stderr(&o).contains(reason), "{}", stderr(&o));
        assert_eq!(self.snapshot(), before, "a rejection changes nothing");
        let r = self.report("r.json");
        assert_eq!(r["verdict"], "rejected");
        r
    }

    fn report(&self, name: &str) -> Value {
        serde_json::from_slice(&std::fs::read(self.path(name)).unwrap()).unwrap()
    }

    /// Every file under `models/` with its bytes.
    fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, out);
                } else {
                    out.insert(p.clone(), std::fs::read(&p).unwrap());
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.path("models"), &mut out);
        // The lock file is empty and holds no state.
        out.remove(&self.path("models/.nbserve.lock"));
        out
    }

    fn history(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.path("models/versions/history.json")).unwrap())
            .unwrap()
    }
}

fn flipped(label: &str) -> &'static str {
    if label == "spam" {
        "ham"
    } else {
        "spam"
    }
}

#[test]
fn promotes_keeps_the_replaced_model_and_rolls_back() {
    let s = Setup::new();
    let v1 = std::fs::read(s.path("models/current.json")).unwrap();
    let o = s.retrain(&["--report", s.path("r.json").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("PROMOTED: both gates passed"), "{out}");
    let r = s.report("r.json");
    assert_eq!(r["verdict"], "promoted");
    assert_eq!(r["current"]["version"], "v1");
    assert_eq!(r["current_error"], Value::Null);
    let (cand, cur) = (
        r["candidate"]["holdout"]["f1_macro"].as_f64().unwrap(),
        r["current"]["holdout"]["f1_macro"].as_f64().unwrap(),
    );
    assert!(cand >= 0.5 && cand >= cur - 0.005, "{cand} vs {cur}");
    assert_eq!(r["gates"]["no_regression"]["applied"], true);
    assert_eq!(r["data"]["training_documents"], 200);
    assert_eq!(r["data"]["holdout_documents"], 100);
    assert_eq!(r["parameters"]["grid_points"], 2);

    // model.path holds the candidate, byte for byte as kept and reported.
    let served = std::fs::read(s.path("models/current.json")).unwrap();
    let kept = r["promoted"]["file"].as_str().unwrap();
    assert_eq!(served, std::fs::read(s.path("models").join(kept)).unwrap());
    assert_eq!(
        nbserve::fsio::sha256_hex(&served),
        r["candidate"]["sha256"].as_str().unwrap()
    );
    let h = s.history();
    assert_eq!(h["entries"][0]["origin"], "replaced");
    assert_eq!(h["entries"][0]["version"], "v1");
    assert_eq!(
        std::fs::read(
            s.path("models/versions")
                .join(h["entries"][0]["file"].as_str().unwrap())
        )
        .unwrap(),
        v1
    );

    // The gate refuses to roll back to v1 under a minimum it does not reach.
    let config = s.path("nbserve.toml");
    let config = config.to_str().unwrap();
    let before = s.snapshot();
    let strict = [("NBSERVE__GATE__MIN_F1_MACRO", "0.99")];
    let o = s.run_env(&["rollback", "--config", config], &strict);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("below the gate minimum 0.9900"),
        "{}",
        stderr(&o)
    );
    assert_eq!(s.snapshot(), before, "a refused rollback changes nothing");

    let o = s.run(&["rollback", "--config", config]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::read(s.path("models/current.json")).unwrap(), v1);
    // Nothing before v1: a second rollback has nowhere to go.
    let o = s.run(&["rollback", "--config", config]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("no earlier version"), "{}", stderr(&o));
    // --to brings the candidate back.
    let version = r["candidate"]["version"].as_str().unwrap();
    let o = s.run(&["rollback", "--config", config, "--to", version]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(s.path("models/current.json")).unwrap(),
        served
    );
    let o = s.run(&["rollback", "--config", config, "--to", "v9"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn retraining_on_the_same_data_again_leaves_everything_unchanged() {
    let s = Setup::new();
    let o = s.retrain(&["--model-version", "first"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("PROMOTED: "));
    let before = s.snapshot();
    let history = s.history();

    let o = s.retrain(&[
        "--model-version",
        "second",
        "--report",
        s.path("r.json").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("UNCHANGED: the candidate predicts exactly as the model in service first"),
        "{out}"
    );
    assert_eq!(s.snapshot(), before, "an unchanged retrain changes nothing");
    assert_eq!(s.history(), history);
    let r = s.report("r.json");
    assert_eq!(r["verdict"], "unchanged");
    assert_eq!(r["promoted"], Value::Null);
    assert_eq!(r["candidate"]["version"], "second");
    assert_eq!(r["current"]["version"], "first");
    // The gates were still computed, on the same holdout: a tie.
    assert_eq!(r["gates"]["absolute"]["passed"], true);
    assert_eq!(r["gates"]["no_regression"]["applied"], true);
    assert_eq!(r["gates"]["no_regression"]["delta"], 0.0);
    assert_eq!(
        r["candidate"]["holdout"]["f1_macro"],
        r["current"]["holdout"]["f1_macro"]
    );
    assert!(
        r["reason"].as_str().unwrap().contains("both gates passed"),
        "{}",
        r["reason"]
    );

    // One more training document and it is a different model again.
    let mut train = std::fs::read_to_string(s.path("train.csv")).unwrap();
    train.push_str("\"a brand new offer of cheap pills\",spam\n");
    std::fs::write(s.path("more.csv"), train).unwrap();
    let holdout = s.path("holdout.csv");
    let o = s.retrain_on(
        s.path("more.csv").to_str().unwrap(),
        holdout.to_str().unwrap(),
        &["--model-version", "third"],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("PROMOTED: ") || out.contains("REJECTED: "),
        "{out}{}",
        stderr(&o)
    );
}

#[test]
fn rejected_by_the_absolute_gate_changes_nothing() {
    let s = Setup::new();
    let r = s.expect_rejected(&["--min-f1-macro", "0.99"], "rejected by the absolute gate");
    assert!(!s.path("models/versions").exists());
    assert_eq!(r["gates"]["absolute"]["passed"], false);
    assert_eq!(r["gates"]["absolute"]["minimum"], 0.99);
    assert_eq!(r["promoted"], Value::Null);
}

#[test]
fn mislabelled_feedback_is_rejected_by_the_no_regression_gate() {
    let s = Setup::new();
    // Every training text comes back with the other label, plus lines the
    // reader must count and skip.
    let train = Dataset::holdout(&s.path("train.csv")).unwrap();
    let mut log = String::new();
    for (t, l) in train.texts.iter().zip(&train.labels) {
        let line = serde_json::json!({"source": "example", "text": t, "label": flipped(l)});
        log.push_str(&format!("{line}\n"));
    }
    log.push_str("{\"source\":\"feedback\",\"prediction_id\":\"x\",\"label\":\"ham\"}\n");
    log.push_str("not json\n{\"text\":\"cut sh");
    std::fs::write(s.path("feedback.jsonl"), log).unwrap();
    let log = s.path("feedback.jsonl");
    let r = s.expect_rejected(
        &[
            "--feedback-log",
            log.to_str().unwrap(),
            "--min-f1-macro",
            "0",
        ],
        "rejected by the no-regression gate",
    );
    assert_eq!(r["gates"]["absolute"]["passed"], true);
    assert_eq!(r["gates"]["no_regression"]["passed"], false);
    assert!(r["gates"]["no_regression"]["delta"].as_f64().unwrap() < -0.005);
    let d = &r["data"];
    assert_eq!(d["relabelled"], 200);
    assert_eq!(d["feedback_examples"], 200);
    assert_eq!(d["without_text"], 1);
    assert_eq!(d["malformed"], 2);
    assert_eq!(d["feedback_lines"], 203);
    assert_eq!(
        d["skipped"],
        serde_json::json!({"without_text": 1, "malformed": 2, "label_too_long": 0,
                           "too_many_labels": 0, "unknown_label": 0, "over_budget": 0})
    );
}

/// Writes `lines` as a feedback log in the sandbox; returns its path.
fn write_log(s: &Setup, name: &str, lines: &[(String, String)]) -> String {
    let mut log = String::new();
    for (text, label) in lines {
        let line = serde_json::json!({"source": "example", "text": text, "label": label});
        log.push_str(&format!("{line}\n"));
    }
    std::fs::write(s.path(name), log).unwrap();
    s.path(name).to_str().unwrap().to_owned()
}

/// The classes of the model at `models/current.json`.
fn served_classes(s: &Setup) -> Value {
    let model: Value =
        serde_json::from_slice(&std::fs::read(s.path("models/current.json")).unwrap()).unwrap();
    model["classes"].clone()
}

/// `n` distinct texts labelled `label`, with words the sample never uses.
fn field_lines(label: &str, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            let text = format!("cheap {label} pills online pharmacy order {i} now");
            (text, label.to_owned())
        })
        .collect()
}

/// The field scenario: the model in service (v0) trained on a small base
/// set (`base.csv`, 20 ham and 10 spam of the training part), and a
/// feedback log with the rest of the training part, correctly labelled,
/// plus 30 lines labelled `pharma`. Returns the log's path.
fn field_with_pharma(s: &Setup) -> String {
    let train = Dataset::holdout(&s.path("train.csv")).unwrap();
    let (mut base, mut field) = (Vec::new(), Vec::new());
    let (mut ham, mut spam) = (0, 0);
    for (i, l) in train.labels.iter().enumerate() {
        let count = if l == "ham" { &mut ham } else { &mut spam };
        let quota = if l == "ham" { 20 } else { 10 };
        *count += 1;
        if *count <= quota {
            base.push(i);
        } else {
            field.push((train.texts[i].clone(), l.clone()));
        }
    }
    train.subset(&base).write_csv(&s.path("base.csv")).unwrap();
    s.train_current("base.csv", "v0");
    field.extend(field_lines("pharma", 30));
    write_log(s, "field.jsonl", &field)
}

#[test]
fn field_labels_cannot_add_a_class_unless_allowed() {
    let s = Setup::new();
    let log = field_with_pharma(&s);
    let (base, holdout, report) = (s.path("base.csv"), s.path("holdout.csv"), s.path("r.json"));
    let retrain = |extra: &[&str]| {
        let mut args = vec!["--feedback-log", &log, "--report", report.to_str().unwrap()];
        args.extend_from_slice(extra);
        s.retrain_on(base.to_str().unwrap(), holdout.to_str().unwrap(), &args)
    };
    // Before, the candidate trained on pharma beat the weak v0 and was
    // promoted: the servers then answered ham, pharma or spam.
    let o = retrain(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(s.report("r.json")["verdict"], "promoted");
    assert_eq!(served_classes(&s), serde_json::json!(["ham", "spam"]));
    assert!(
        stderr(&o).contains("30 feedback lines have a label that is not a class of the holdout or of the model in service, nor of --data: \"pharma\" (30)"),
        "{}",
        stderr(&o)
    );
    let d = &s.report("r.json")["data"];
    assert_eq!(d["skipped"]["unknown_label"], 30);
    assert_eq!(d["unknown_labels"], serde_json::json!({"pharma": 30}));
    assert_eq!(
        (
            d["feedback_lines"].as_u64(),
            d["feedback_examples"].as_u64()
        ),
        (Some(200), Some(170))
    );
    assert_eq!(d["class_counts"].as_object().unwrap().len(), 2);

    // The operator's explicit choice, from the same v0.
    s.train_current("base.csv", "v0");
    let o = retrain(&["--allow-new-classes"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(s.report("r.json")["data"]["class_counts"]["pharma"], 30);
    assert_eq!(
        served_classes(&s),
        serde_json::json!(["ham", "pharma", "spam"])
    );
}

#[test]
fn labels_no_model_could_serve_are_skipped_as_malformed_not_a_failure() {
    let s = Setup::new();
    // A 1 MB label, then 101 new labels, 3 lines each (so that every fold
    // keeps each label): before, training went through, and the new model
    // failed to load (exit 1) for every nightly run.
    let mut lines = field_lines(&"x".repeat(1_000_000), 3);
    for k in 0..101 {
        lines.extend(field_lines(&format!("c{k:03}"), 3));
    }
    let log = write_log(&s, "labels.jsonl", &lines);
    let report = s.path("r.json");
    let report = report.to_str().unwrap();
    for allow in [false, true] {
        let mut args = vec!["--feedback-log", &log, "--report", report];
        if allow {
            args.push("--allow-new-classes");
        }
        let o = s.retrain(&args);
        let code = o.status.code();
        let err = stderr(&o);
        let tail = &err[err.char_indices().rev().nth(2000).map_or(0, |(i, _)| i)..];
        assert!(code == Some(0) || code == Some(5), "{allow}: {tail}");
        let d = &s.report("r.json")["data"];
        assert_eq!(d["skipped"]["label_too_long"], 3, "{d}");
        assert!(!err.contains(&"x".repeat(300)), "the label is not echoed");
        if allow {
            // ham and spam, then 98 new labels: the last 3 labels' lines go.
            assert_eq!(d["skipped"]["too_many_labels"], 9, "{d}");
            assert_eq!(d["malformed"], 12, "{d}");
            assert_eq!(d["class_counts"].as_object().unwrap().len(), 100);
        } else {
            assert_eq!(d["skipped"]["unknown_label"], 303, "{d}");
            assert_eq!(d["malformed"], 3, "{d}");
            assert_eq!(d["unknown_labels"].as_object().unwrap().len(), 10);
        }
    }
}

#[test]
fn a_byte_budget_skips_the_oldest_feedback_lines() {
    let s = Setup::new();
    // Old lines flip the training labels; the newest are good.
    let train = Dataset::holdout(&s.path("train.csv")).unwrap();
    let flipped_lines: Vec<(String, String)> = train
        .texts
        .iter()
        .zip(&train.labels)
        .map(|(t, l)| (t.clone(), flipped(l).to_owned()))
        .collect();
    let good = field_lines("spam", 5);
    write_log(&s, "old.jsonl", &flipped_lines);
    let new = write_log(&s, "new.jsonl", &good);
    let old = s.path("old.jsonl");
    let budget = std::fs::metadata(&new).unwrap().len().to_string();
    let report = s.path("r.json");
    let o = s.retrain(&[
        "--feedback-log",
        old.to_str().unwrap(),
        "--feedback-log",
        &new,
        "--max-log-bytes",
        &budget,
        "--report",
        report.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let d = &s.report("r.json")["data"];
    assert_eq!(d["skipped"]["over_budget"], 200, "{d}");
    assert_eq!(
        (d["feedback_examples"].as_u64(), d["relabelled"].as_u64()),
        (Some(5), Some(0))
    );
    assert_eq!(d["max_log_bytes"].to_string(), budget);
    assert!(
        stderr(&o).contains("200 over --max-log-bytes"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn an_unloadable_current_model_leaves_only_the_absolute_gate() {
    let s = Setup::new();
    std::fs::write(s.path("models/current.json"), b"not a model").unwrap();
    let o = s.retrain(&["--report", s.path("r.json").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r = s.report("r.json");
    assert_eq!(r["current"], Value::Null);
    assert!(
        r["current_error"]
            .as_str()
            .unwrap()
            .contains("not valid JSON"),
        "{}",
        r["current_error"]
    );
    assert_eq!(r["gates"]["no_regression"]["applied"], false);
    assert!(r["reason"].as_str().unwrap().contains("not applied"));
    // The broken file is not kept for rollback.
    assert_eq!(s.history()["entries"].as_array().unwrap().len(), 1);
}

#[test]
fn a_current_model_lacking_a_holdout_label_is_compared_and_kept() {
    let s = Setup::new();
    // A valid model whose classes are not the holdout's (ham is "eggs").
    let mut other = Dataset::holdout(&s.path("train.csv")).unwrap();
    for l in &mut other.labels {
        if l == "ham" {
            *l = "eggs".into();
        }
    }
    other.write_csv(&s.path("eggs.csv")).unwrap();
    s.train_current("eggs.csv", "eggs1");
    let eggs = std::fs::read(s.path("models/current.json")).unwrap();
    let o = s.retrain(&["--report", s.path("r.json").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r = s.report("r.json");
    // Scored as it serves: the ham documents it can never get right count
    // as errors, and the no-regression gate applies.
    assert_eq!(r["current_error"], Value::Null);
    assert_eq!(r["current"]["missing_labels"], serde_json::json!(["ham"]));
    assert_eq!(r["gates"]["no_regression"]["applied"], true);
    let current = r["current"]["holdout"]["accuracy"].as_f64().unwrap();
    let hold = Dataset::holdout(&s.path("holdout.csv")).unwrap();
    let spam = hold.labels.iter().filter(|l| *l == "spam").count() as f64;
    assert!(current <= spam / hold.len() as f64, "{current}");
    assert_eq!(r["promoted"]["replaced_version"], "eggs1");
    // The loadable model it replaced is kept, so rollback can restore it.
    let h = s.history();
    assert_eq!(h["entries"][0]["version"], "eggs1");
    assert_eq!(h["entries"][0]["origin"], "replaced");
    let o = s.run(&[
        "rollback",
        "--config",
        s.path("nbserve.toml").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::read(s.path("models/current.json")).unwrap(), eggs);
}

#[test]
fn rollback_refuses_a_kept_file_changed_since_it_was_kept() {
    let s = Setup::new();
    let o = s.retrain(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let h = s.history();
    let v1 = s
        .path("models/versions")
        .join(h["entries"][0]["file"].as_str().unwrap());
    // Someone copies the promoted model over the kept v1: valid, gated fine,
    // but not v1.
    let served = std::fs::read(s.path("models/current.json")).unwrap();
    std::fs::write(&v1, &served).unwrap();
    let mut other = served.clone();
    other.extend_from_slice(b"\n");
    std::fs::write(s.path("models/current.json"), &other).unwrap();
    let before = s.snapshot();
    let config = s.path("nbserve.toml");
    let o = s.run(&[
        "rollback",
        "--config",
        config.to_str().unwrap(),
        "--to",
        "v1",
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("has changed since it was kept"),
        "{}",
        stderr(&o)
    );
    assert_eq!(s.snapshot(), before);
}

#[test]
fn a_candidate_the_servers_would_refuse_is_never_promoted() {
    let s = Setup::new();
    // The servers' gate (gate.min_f1_macro 0.99) is stricter than the
    // retrain's --min-f1-macro: model.path would hold a model no server
    // loads, and a restarted one would not start.
    let config = std::fs::read_to_string(s.path("nbserve.toml")).unwrap();
    std::fs::write(
        s.path("nbserve.toml"),
        config.replace("min_f1_macro = 0.5", "min_f1_macro = 0.99"),
    )
    .unwrap();
    let r = s.expect_rejected(&["--min-f1-macro", "0.5"], "rejected by the serving gate");
    assert_eq!(r["gates"]["absolute"]["passed"], true);
    assert_eq!(r["gates"]["serving"]["passed"], false);
    assert!(
        r["gates"]["serving"]["refusal"]
            .as_str()
            .unwrap()
            .contains("0.99"),
        "{}",
        r["gates"]["serving"]
    );
}

#[test]
fn an_unwritable_report_path_fails_before_anything_changes() {
    let s = Setup::new();
    let before = s.snapshot();
    // Its directory would be a regular file: discovered only after the
    // promotion, the run would exit 1 with model.path already replaced.
    let report = s.path("train.csv/r.json");
    let o = s.retrain(&["--report", report.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot write there"), "{}", stderr(&o));
    assert_eq!(s.snapshot(), before);
}

#[test]
fn two_retrains_at_once_leave_a_consistent_store() {
    let s = Setup::new();
    let spawn = |version: &str| {
        let config = s.path("nbserve.toml");
        Command::new(env!("CARGO_BIN_EXE_nbserve"))
            .args([
                "retrain",
                "--config",
                config.to_str().unwrap(),
                "--data",
                s.path("train.csv").to_str().unwrap(),
                "--holdout",
                s.path("holdout.csv").to_str().unwrap(),
                "--alpha",
                "0.1,1",
                "--min-df",
                "1",
                "--max-features",
                "0",
                "--folds",
                "3",
                "--model-version",
                version,
                "--keep",
                "3",
            ])
            .env_remove("MLFLOW_TRACKING_URI")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("a"), spawn("b"));
    let mut verdicts = Vec::new();
    for (version, child) in [("a", a), ("b", b)] {
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        let verdict = ["PROMOTED", "UNCHANGED"]
            .into_iter()
            .find(|v| out.contains(&format!("{v}: ")))
            .unwrap_or_else(|| panic!("{out}"));
        verdicts.push((verdict, version));
    }
    // Same data, same grid: whichever takes the lock second finds the
    // first one's identical model in service and leaves it there.
    verdicts.sort();
    assert_eq!(
        verdicts.iter().map(|v| v.0).collect::<Vec<_>>(),
        ["PROMOTED", "UNCHANGED"],
        "{verdicts:?}"
    );
    let h = s.history();
    let entries = h["entries"].as_array().unwrap();
    let versions: Vec<&str> = entries
        .iter()
        .map(|e| e["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["v1", verdicts[0].1], "{versions:?}");
    assert_eq!(h["in_service"], serde_json::json!([1, 2]));
    // model.path holds the promoted one; every kept file is in the history
    // and nothing else is in the directory (no temporary files left).
    let last = &entries[1];
    let served = std::fs::read(s.path("models/current.json")).unwrap();
    assert_eq!(
        nbserve::fsio::sha256_hex(&served),
        last["sha256"].as_str().unwrap()
    );
    let mut listed: Vec<String> = std::fs::read_dir(s.path("models/versions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    listed.sort();
    let mut expected: Vec<String> = entries
        .iter()
        .map(|e| e["file"].as_str().unwrap().to_owned())
        .chain(["history.json".to_owned()])
        .collect();
    expected.sort();
    assert_eq!(listed, expected);
    for e in entries {
        let bytes = std::fs::read(s.path("models/versions").join(e["file"].as_str().unwrap()));
        assert_eq!(
            nbserve::fsio::sha256_hex(&bytes.unwrap()),
            e["sha256"].as_str().unwrap()
        );
    }
}

#[test]
fn bad_input_is_named_and_promotes_nothing() {
    let s = Setup::new();
    let w = |name: &str, bytes: &str| {
        std::fs::write(s.path(name), bytes).unwrap();
        s.path(name).to_str().unwrap().to_owned()
    };
    let ham = w("ham.csv", "text,label\nhello there,ham\nlunch today,ham\n");
    let eggs = w("eggs.csv", "text,label\nspam and eggs,eggs\n");
    let header = w("header.csv", "text,label\n");
    let long_label = w(
        "long.csv",
        &format!("text,label\nhello,ham\nwin,{}\n", "s".repeat(300)),
    );
    let train = s.path("train.csv").to_str().unwrap().to_owned();
    let holdout = s.path("holdout.csv").to_str().unwrap().to_owned();
    let missing = s.path("missing.jsonl").to_str().unwrap().to_owned();
    let dir = s.path("models").to_str().unwrap().to_owned();
    let cases: [(&str, &str, &[&str], i32, &str); 11] = [
        (
            &train,
            &long_label,
            &[],
            4,
            "long.csv: a label of 300 bytes; a served model's labels are at most 256 bytes",
        ),
        (
            &long_label,
            &holdout,
            &[],
            4,
            "long.csv: a label of 300 bytes",
        ),
        (
            &ham,
            &holdout,
            &[],
            4,
            "every merged training document has the label \"ham\"",
        ),
        (
            &train,
            &eggs,
            &[],
            4,
            "the holdout has the label \"eggs\", which the merged training data lacks",
        ),
        (
            &holdout,
            &holdout,
            &[],
            4,
            "the holdout overlaps the training data entirely",
        ),
        (&header, &holdout, &[], 4, "no data rows after the header"),
        (
            &train,
            &holdout,
            &["--feedback-log", &missing],
            4,
            "cannot read feedback log",
        ),
        (
            &train,
            &holdout,
            &["--feedback-log", &dir],
            4,
            "cannot read feedback log",
        ),
        (
            &train,
            &holdout,
            &["--keep", "1"],
            2,
            "--keep 1: at least 2",
        ),
        (
            &train,
            &holdout,
            &["--max-regression", "1.5"],
            2,
            "--max-regression 1.5",
        ),
        (
            &train,
            &holdout,
            &["--alias", "champion"],
            2,
            "--alias needs --register",
        ),
    ];
    let before = s.snapshot();
    for (data, hold, extra, code, message) in cases {
        let o = s.retrain_on(data, hold, extra);
        let err = stderr(&o);
        assert_eq!(
            o.status.code(),
            Some(code),
            "{data} {hold} {extra:?}: {err}"
        );
        assert!(err.contains(message), "{extra:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(
            s.snapshot(),
            before,
            "{data} {hold} {extra:?} changed the models"
        );
    }
    assert!(!s.path("models/versions").exists());

    // Tracking configured but MLflow down: no run, so no retrain (exit 1).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("http://127.0.0.1:{port}");
    let o = s.retrain(&["--mlflow-uri", &dead]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("unreachable"), "{}", stderr(&o));
    assert_eq!(s.snapshot(), before);
    // A registry alias as model.path needs a tracking server to promote to.
    let config = s.path("nbserve.toml");
    let with_model_path = |model_path: &str| {
        s.run_env(
            &[
                "retrain",
                "--config",
                config.to_str().unwrap(),
                "--data",
                &train,
                "--holdout",
                &holdout,
            ],
            &[("NBSERVE__MODEL__PATH", model_path)],
        )
    };
    let o = with_model_path("models:/spam@champion");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("needs --mlflow-uri"), "{}", stderr(&o));
    let o = with_model_path("models:/spam/3");
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("pins one registry version"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_history_naming_files_outside_the_store_is_refused_and_touches_nothing() {
    let s = Setup::new();
    let o = s.retrain(&["--keep", "2"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    std::fs::create_dir(s.path("outside")).unwrap();
    let victims = [s.path("outside/victim.txt"), s.path("absolute.txt")];
    for v in &victims {
        std::fs::write(v, b"precious").unwrap();
    }
    // A restored or tampered history whose oldest entries (pruned first)
    // name files outside the versions directory.
    let mut h = s.history();
    let absolute = victims[1].to_str().unwrap();
    for (seq, file) in [(90, "../../outside/victim.txt"), (91, absolute)] {
        let mut e = h["entries"][0].clone();
        e["seq"] = seq.into();
        e["file"] = file.into();
        h["entries"].as_array_mut().unwrap().insert(0, e);
    }
    h["next_seq"] = 92.into();
    std::fs::write(s.path("models/versions/history.json"), h.to_string()).unwrap();
    let before = s.snapshot();
    let more = s.path("more.csv");
    let mut train = std::fs::read_to_string(s.path("train.csv")).unwrap();
    train.push_str("\"a brand new offer of cheap pills\",spam\n");
    std::fs::write(&more, train).unwrap();
    let holdout = s.path("holdout.csv");
    let o = s.retrain_on(
        more.to_str().unwrap(),
        holdout.to_str().unwrap(),
        &["--keep", "2"],
    );
    let config = s.path("nbserve.toml");
    let r = s.run(&["rollback", "--config", config.to_str().unwrap()]);
    for o in [&o, &r] {
        assert_eq!(o.status.code(), Some(1), "{}", stderr(o));
        assert!(
            stderr(o).contains("not a kept file name") && stderr(o).contains("nothing it names"),
            "{}",
            stderr(o)
        );
    }
    for v in &victims {
        assert_eq!(std::fs::read(v).unwrap(), b"precious", "{}", v.display());
    }
    assert_eq!(s.snapshot(), before);
}

/// What an older build left when killed (or out of disk) between replacing
/// `model.path` and writing the history: both kept files, no history, and
/// `model.path` holding the candidate. Returns the first model's bytes.
fn crashed_after_the_rename(s: &Setup) -> Vec<u8> {
    let v1 = std::fs::read(s.path("models/current.json")).unwrap();
    std::fs::create_dir(s.path("models/versions")).unwrap();
    std::fs::write(s.path("models/versions/000001-v1.json"), &v1).unwrap();
    s.train_current("holdout.csv", "v2");
    std::fs::copy(
        s.path("models/current.json"),
        s.path("models/versions/000002-v2.json"),
    )
    .unwrap();
    v1
}

#[test]
fn after_a_crash_between_the_rename_and_the_history_no_model_is_lost() {
    let s = Setup::new();
    let v1 = crashed_after_the_rename(&s);
    let config = s.path("nbserve.toml");
    let o = s.run(&["rollback", "--config", config.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::read(s.path("models/current.json")).unwrap(), v1);

    // The same state, then a promotion: both kept files are adopted, none
    // deleted, and rollback walks back through them.
    let s = Setup::new();
    let v1 = crashed_after_the_rename(&s);
    let o = s.retrain(&["--report", s.path("r.json").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("taken back into it"), "{}", stderr(&o));
    let r = s.report("r.json");
    assert_eq!(
        r["promoted"]["adopted"],
        serde_json::json!(["versions/000001-v1.json", "versions/000002-v2.json"])
    );
    assert_eq!(r["promoted"]["removed"], serde_json::json!([]));
    let h = s.history();
    assert_eq!(h["in_service"], serde_json::json!([1, 2, 3]));
    let config = s.path("nbserve.toml");
    for _ in 0..2 {
        let o = s.run(&["rollback", "--config", config.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    assert_eq!(std::fs::read(s.path("models/current.json")).unwrap(), v1);
}

/// Every file of `snapshot` that belongs to the model `other` (its artifact
/// and its store), and every other file.
fn split_other(
    s: &Setup,
    snapshot: BTreeMap<PathBuf, Vec<u8>>,
) -> (BTreeMap<PathBuf, Vec<u8>>, BTreeMap<PathBuf, Vec<u8>>) {
    let (artifact, store) = (s.path("models/other.json"), s.path("models/stores/other"));
    snapshot
        .into_iter()
        .partition(|(p, _)| *p == artifact || p.starts_with(&store))
}

#[test]
fn retrain_and_rollback_act_on_one_model_of_the_repository() {
    let s = Setup::new();
    let o = s.run(&[
        "train",
        "--data",
        s.path("train.csv").to_str().unwrap(),
        "--out",
        s.path("models/other.json").to_str().unwrap(),
        "--model-version",
        "o1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let config = std::fs::read_to_string(s.path("nbserve.toml")).unwrap();
    std::fs::write(
        s.path("nbserve.toml"),
        config.replace(
            "[model]\n",
            &format!("[model]\nrepository = {:?}\n", s.path("models")),
        ),
    )
    .unwrap();
    let config = s.path("nbserve.toml");
    let config = config.to_str().unwrap();
    let o1 = std::fs::read(s.path("models/other.json")).unwrap();

    // Retraining `other` leaves the default model's files byte-identical,
    // and keeps `other`'s versions in a store of its own.
    let (_, default_before) = split_other(&s, s.snapshot());
    let o = s.retrain(&["--served-model", "other", "--model-version", "o2"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("PROMOTED: "));
    let (other_after, default_after) = split_other(&s, s.snapshot());
    assert_eq!(default_after, default_before, "the default model untouched");
    assert!(!s.path("models/versions").exists());
    let o2 = std::fs::read(s.path("models/other.json")).unwrap();
    assert_ne!(o2, o1);
    assert!(other_after.contains_key(&s.path("models/stores/other/versions/history.json")));
    assert_eq!(
        std::fs::read_dir(s.path("models")).unwrap().count(),
        // current.json, other.json, stores/ (the lock is in stores/other).
        3,
        "{:?}",
        std::fs::read_dir(s.path("models"))
            .unwrap()
            .collect::<Vec<_>>()
    );

    // No name is the default model, as before: `other` untouched.
    let o = s.retrain(&["--model-version", "v2"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(s.history()["entries"][0]["version"], "v1");
    let (other_now, default_now) = split_other(&s, s.snapshot());
    assert_eq!(other_now, other_after, "the other model untouched");
    assert_ne!(default_now, default_after);

    // Rolling `other` back puts o1 back and touches nothing of the default.
    let o = s.run(&["rollback", "--config", config, "--served-model", "other"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::read(s.path("models/other.json")).unwrap(), o1);
    assert_eq!(split_other(&s, s.snapshot()).1, default_now);
    // And rolling the default back leaves `other` as it is now.
    let (other_now, _) = split_other(&s, s.snapshot());
    let o = s.run(&["rollback", "--config", config, "--served-model", "current"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(split_other(&s, s.snapshot()).0, other_now);

    // An unknown name is a usage error naming the models; nothing changes.
    let before = s.snapshot();
    for args in [
        vec!["rollback", "--config", config, "--served-model", "nope"],
        vec!["promote", "--config", config, "--served-model", "nope"],
    ] {
        let mut args = args;
        if args[0] == "promote" {
            args.extend(["--mlflow-uri", "http://127.0.0.1:1", "--version", "1"]);
        }
        let o = s.run(&args);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(
            stderr(&o).contains(
                "--served-model: no model \"nope\" in these settings (models: current, other)"
            ),
            "{}",
            stderr(&o)
        );
    }
    let o = s.retrain(&["--served-model", "nope"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(s.snapshot(), before);
}
