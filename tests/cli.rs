//! The command line as users and CI call it: exit codes and messages.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{nbserve_env, stderr};

fn nbserve(args: &[&str]) -> Output {
    nbserve_env(args, &[])
}

fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn train_evaluate_predict_check_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.json");
    let m = model.to_str().unwrap();
    let o = nbserve(&[
        "train",
        "--data",
        "tests/data/sample.csv",
        "--out",
        m,
        "--seed",
        "3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("F1 macro") && table.contains("confusion matrix"),
        "{table}"
    );

    let o = nbserve(&[
        "evaluate",
        "--model",
        m,
        "--data",
        "tests/data/sample.csv",
        "--json",
    ]);
    assert!(o.status.success());
    let e: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(e["f1_macro"].as_f64().unwrap() > 0.5);

    let o = nbserve(&["predict", "--model", m, "--json", "hello there friend"]);
    let p: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let sum: f64 = p["probabilities"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert!((sum - 1.0).abs() < 1e-9);
    assert!(p["log_probabilities"].is_object());

    let o = nbserve(&["check", "--model", m, "--min-f1-macro", "0"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("gate passed"));
    let o = nbserve(&["check", "--model", m, "--min-f1-macro", "1"]);
    assert_eq!(o.status.code(), Some(5));
    assert!(
        stderr(&o).contains("below the gate minimum 1.0000"),
        "{}",
        stderr(&o)
    );
    assert_eq!(stderr(&o).lines().count(), 1, "one-line reason");
    let o = nbserve(&["check", "--model", m, "--min-f1-macro", "1.5"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn holdout_re_evaluation_ignores_a_tampered_stored_figure() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.json");
    let m = model.to_str().unwrap();
    assert!(
        nbserve(&["train", "--data", "tests/data/sample.csv", "--out", m])
            .status
            .success()
    );
    // Raise the stored F1 and re-seal: only a holdout re-evaluation can tell.
    let mut a: nbserve::Artifact = serde_json::from_slice(&std::fs::read(&model).unwrap()).unwrap();
    let real = a.evaluation.as_ref().unwrap().f1_macro;
    a.evaluation.as_mut().unwrap().f1_macro = 0.999;
    a.seal();
    a.save(&model).unwrap();
    let threshold = format!("{:.4}", (real + 0.999) / 2.0);
    let o = nbserve(&["check", "--model", m, "--min-f1-macro", &threshold]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "stored figure trusted without holdout"
    );
    let o = nbserve(&[
        "check",
        "--model",
        m,
        "--min-f1-macro",
        &threshold,
        "--holdout",
        "tests/data/sample.csv",
    ]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(stderr(&o).contains("holdout re-evaluation"));
}

#[test]
fn bad_csv_is_reported_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.json");
    let out = out.to_str().unwrap();
    let cases: [(&str, &[u8], &str); 6] = [
        ("empty.csv", b"", "empty.csv, line 1: the file is empty"),
        (
            "header.csv",
            b"text,label\n",
            "header.csv, line 2: no data rows after the header",
        ),
        ("cols.csv", b"body,label\nx,ham\n", "no column \"text\""),
        (
            "ragged.csv",
            b"text,label\na b,ham\nc d,spam,extra\n",
            "line 3",
        ),
        (
            "utf8.csv",
            b"text,label\na b,ham\n\xff\xfe,spam\n",
            "line 3: invalid UTF-8",
        ),
        (
            "oneclass.csv",
            b"text,label\na b,ham\nc d,ham\n",
            "every training document has the label \"ham\"; at least 2 classes are needed",
        ),
    ];
    for (name, bytes, expected) in cases {
        let p = write(&dir, name, bytes);
        let o = nbserve(&["train", "--data", p.to_str().unwrap(), "--out", out]);
        assert_eq!(o.status.code(), Some(4), "{name}: {}", stderr(&o));
        assert!(stderr(&o).contains(expected), "{name}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"));
        assert!(
            !Path::new(out).exists(),
            "{name}: nothing is written for bad data"
        );
    }
    let o = nbserve(&[
        "train",
        "--data",
        "tests/data/sample.csv",
        "--out",
        out,
        "--alpha",
        "0",
    ]);
    // A value out of its range is a bad command line, as for `tune`.
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--alpha 0.0: "), "{}", stderr(&o));
}

#[test]
fn test_data_option_evaluates_on_the_given_file() {
    let dir = tempfile::tempdir().unwrap();
    let (train, test) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
    let o = nbserve(&[
        "split",
        "--data",
        "tests/data/sample.csv",
        "--train-out",
        train.to_str().unwrap(),
        "--test-out",
        test.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let model = dir.path().join("m.json");
    let o = nbserve(&[
        "train",
        "--data",
        train.to_str().unwrap(),
        "--test-data",
        test.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let a: serde_json::Value = serde_json::from_slice(&std::fs::read(&model).unwrap()).unwrap();
    assert_eq!(a["training"]["evaluated_on"], "test_file");
    let test_rows = nbserve::Dataset::from_csv(&test, "text", "label")
        .unwrap()
        .len();
    assert_eq!(a["evaluation"]["documents"], test_rows as u64);
}

#[test]
fn config_names_unknown_keys_and_healthcheck_fails_without_a_server() {
    let o = Command::new(env!("CARGO_BIN_EXE_nbserve"))
        .arg("config")
        .env("NBSERVE__GATE__MIN_F1", "0.5")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("min_f1"), "{}", stderr(&o));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/health");
    let o = nbserve(&["healthcheck", "--url", &url, "--timeout-ms", "500"]);
    assert_eq!(o.status.code(), Some(6));
}

/// `nbserve config` prints the settings without the secrets in them.
#[test]
fn config_redacts_the_admin_and_feedback_tokens() {
    let o = nbserve_env(
        &["config"],
        &[
            ("NBSERVE__ADMIN__TOKEN", "admin-secret-1"),
            ("NBSERVE__FEEDBACK__TOKEN", "feedback-secret-2"),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        !out.contains("admin-secret-1") && !out.contains("feedback-secret-2"),
        "{out}"
    );
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["admin"]["token"], "<redacted>");
    assert_eq!(s["feedback"]["token"], "<redacted>");
}

/// A tracking URI may carry a token as its user name (`http://TOKEN@host`)
/// or a user and password: `nbserve config` prints neither, nor does
/// `healthcheck` when its URL holds them.
#[test]
fn config_and_healthcheck_redact_url_user_info() {
    for (uri, printed) in [
        (
            "http://tok-user-secret@mlflow:5000",
            "http://<redacted>@mlflow:5000",
        ),
        (
            "http://someone-secret:pw-secret@mlflow:5000/",
            "http://<redacted>@mlflow:5000/",
        ),
    ] {
        let o = nbserve_env(&["config"], &[("NBSERVE__MODEL__MLFLOW_URI", uri)]);
        assert!(o.status.success(), "{}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(!out.contains("secret"), "{out}");
        let s: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(s["model"]["mlflow_uri"], printed);
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://probe-secret:pw-secret@127.0.0.1:{port}/health");
    let o = nbserve(&["healthcheck", "--url", &url, "--timeout-ms", "500"]);
    assert_eq!(o.status.code(), Some(6));
    let err = stderr(&o);
    assert!(!err.contains("secret"), "{err}");
    assert!(err.contains("<redacted>@127.0.0.1"), "{err}");
}

/// README: "the same data and parameters give a byte-identical artifact
/// apart from the creation time (set `SOURCE_DATE_EPOCH` to fix that too)",
/// through the real binary.
#[test]
fn retraining_with_source_date_epoch_is_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let train = |name: &str, epoch: Option<&str>| {
        let out = dir.path().join(name);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nbserve"));
        cmd.args(["train", "--data", "tests/data/sample.csv", "--out"])
            .arg(&out)
            .args(["--seed", "5", "--name", "repro", "--model-version", "1"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("SOURCE_DATE_EPOCH");
        if let Some(e) = epoch {
            cmd.env("SOURCE_DATE_EPOCH", e);
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        std::fs::read(out).unwrap()
    };
    let a = train("a.json", Some("1700000000"));
    let b = train("b.json", Some("1700000000"));
    assert!(a == b, "two trainings with SOURCE_DATE_EPOCH differ");
    let v: serde_json::Value = serde_json::from_slice(&a).unwrap();
    assert_eq!(v["created_at"], "2023-11-14T22:13:20Z");
    // Without it only the creation time (and so the checksum) differs.
    let c = train("c.json", None);
    let strip = |bytes: &[u8]| {
        let mut v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("created_at");
        o.remove("checksum");
        v
    };
    assert_eq!(strip(&a), strip(&c));
    assert_ne!(
        serde_json::from_slice::<serde_json::Value>(&c).unwrap()["created_at"],
        "2023-11-14T22:13:20Z"
    );
}

#[test]
fn tune_writes_a_calibrated_model_and_its_search() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tuned.json");
    let m = model.to_str().unwrap();
    let o = nbserve(&[
        "tune",
        "--data",
        "tests/data/sample.csv",
        "--out",
        m,
        "--model",
        "bernoulli,complement",
        "--binary",
        "--alpha",
        "0.1,1",
        "--min-df",
        "1,2",
        "--max-features",
        "0,200",
        "--folds",
        "3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        out.lines()
            .filter(|l| l.matches(" ± ").count() == 3)
            .count(),
        16,
        "{out}"
    );
    assert!(
        out.contains("chosen: --model") && out.contains("ECE"),
        "{out}"
    );
    let a: serde_json::Value = serde_json::from_slice(&std::fs::read(&model).unwrap()).unwrap();
    assert_eq!(a["schema_version"], 2);
    assert_eq!(a["tuning"]["results"].as_array().unwrap().len(), 16);
    let best = &a["tuning"]["results"][a["tuning"]["best"].as_u64().unwrap() as usize]["params"];
    assert_eq!(a["training"]["alpha"], best["alpha"]);
    assert_eq!(a["training"]["model"], best["model"]);
    assert!(a["calibration"]["temperature"].as_f64().unwrap() > 0.0);
    // The served probabilities are the calibrated ones; labels are unchanged.
    let o = nbserve(&["predict", "--model", m, "--json", "free money prize now"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn tune_bad_input_names_the_value_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("never.json");
    let m = model.to_str().unwrap();
    let base = ["tune", "--data", "tests/data/sample.csv", "--out", m];
    for (extra, code, needle) in [
        (&["--alpha", "0.1,0"][..], 2, "--alpha 0"),
        (&["--min-df", "1,0.0"][..], 2, "--min-df 0.0"),
        (&["--min-df", "100000"][..], 2, "--min-df 100000"),
        (&["--min-df", "5", "--max-df", "2"][..], 2, "--max-df 2"),
        (&["--folds", "1"][..], 2, "--folds 1"),
        (&["--folds", "5000"][..], 4, "--folds 5000"),
        (&["--model", "gaussian"][..], 2, "gaussian"),
        (&["--min-df", "0.99"][..], 4, "no terms remain"),
    ] {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let o = nbserve(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(code), "{extra:?}: {err}");
        assert!(err.contains(needle), "{extra:?}: {err}");
        assert_eq!(
            err.trim_end()
                .lines()
                .last()
                .map(|l| l.starts_with("nbserve: ")),
            Some(true),
            "{err}"
        );
        assert!(!model.exists(), "{extra:?} wrote a model");
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn gate_refusal_is_reported_once() {
    let o = nbserve_env(
        &["serve"],
        &[
            ("NBSERVE__GATE__MIN_F1_MACRO", "0.9999"),
            ("NBSERVE__SERVER__PORT", "0"),
        ],
    );
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(
        err.matches("below the gate minimum 0.9999").count(),
        1,
        "{err}"
    );
    // With the log switched off the reason still reaches the terminal, once.
    let o = nbserve_env(
        &["serve"],
        &[
            ("NBSERVE__GATE__MIN_F1_MACRO", "0.9999"),
            ("NBSERVE__LOG__LEVEL", "off"),
        ],
    );
    assert_eq!(o.status.code(), Some(5));
    let err = stderr(&o);
    assert_eq!(
        err.matches("below the gate minimum 0.9999").count(),
        1,
        "{err}"
    );
}

#[test]
fn out_of_range_port_names_the_range() {
    let o = nbserve_env(&["serve"], &[("NBSERVE__SERVER__PORT", "70000")]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(
        stderr(&o).trim(),
        "nbserve: invalid setting server.port: must be an integer from 0 to 65535 (got 70000)"
    );
}

#[test]
fn a_csv_given_as_model_is_named() {
    for cmd in [
        &[
            "check",
            "--model",
            "tests/data/sample.csv",
            "--min-f1-macro",
            "0.5",
        ][..],
        &["predict", "--model", "tests/data/sample.csv", "hello there"],
    ] {
        let o = nbserve(cmd);
        assert_eq!(o.status.code(), Some(4), "{cmd:?}");
        let err = stderr(&o);
        assert!(
            err.starts_with("nbserve: tests/data/sample.csv: model file is not valid JSON"),
            "{cmd:?}: {err}"
        );
        assert!(err.contains("`nbserve train`"), "{err}");
    }
}

/// A loopback URL where nothing listens.
fn dead_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}")
}

#[test]
fn mlflow_commands_fail_cleanly_without_a_tracking_server() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.json");
    let out = out.to_str().unwrap();
    let train = ["train", "--data", "tests/data/sample.csv", "--out", out];

    let o = nbserve(&[&train[..], &["--register", "spam"]].concat());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--register needs a tracking server"));

    let url = dead_url();
    let secret = [("MLFLOW_TRACKING_TOKEN", "tok-do-not-print")];
    let o = nbserve_env(&[&train[..], &["--mlflow-uri", &url]].concat(), &secret);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("unreachable after 4 attempts") && !err.contains("tok-do-not-print"));
    assert!(!Path::new(out).exists(), "no artifact without its run");

    let promote = ["promote", "--model-name", "spam", "--version", "1"];
    let o = nbserve_env(&promote, &[("MLFLOW_TRACKING_URI", url.as_str())]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));

    let serve = [
        ("NBSERVE__MODEL__PATH", "models:/spam@champion"),
        ("NBSERVE__SERVER__PORT", "0"),
    ];
    let o = nbserve_env(&["serve"], &serve);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("needs an MLflow tracking URI"));
    let o = nbserve_env(
        &["serve"],
        &[&serve[..], &[("MLFLOW_TRACKING_URI", &url)]].concat(),
    );
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("unreachable"), "{}", stderr(&o));
}

/// `nbserve train` on the sample data, writing `out`.
fn train_sample(out: &str, extra: &[&str]) -> Output {
    let args = ["train", "--data", "tests/data/sample.csv", "--out", out];
    nbserve(&[&args[..], extra].concat())
}

/// A value `train` accepts is one a served artifact may hold: an alpha
/// below the range is a usage error naming the flag, and one at the edge
/// trains a model `check` accepts.
#[test]
fn train_refuses_what_check_would_refuse_and_check_accepts_what_trains() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.json");
    let m = model.to_str().unwrap();
    let train = |alpha: &str| train_sample(m, &["--alpha", alpha]);
    for alpha in ["1e-12", "5e-324", "0", "2e10"] {
        let o = train(alpha);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "--alpha {alpha}: {err}");
        let value: f64 = alpha.parse().unwrap();
        let expected = format!("--alpha {value:?}: must be a finite number in [1e-10, 1e10]");
        assert!(err.contains(&expected), "{err}");
        assert!(!model.exists(), "--alpha {alpha} wrote a model");
    }
    for alpha in ["1e-10", "1e10"] {
        let o = train(alpha);
        assert!(o.status.success(), "--alpha {alpha}: {}", stderr(&o));
        let o = nbserve(&["check", "--model", m, "--min-f1-macro", "0"]);
        assert_eq!(o.status.code(), Some(0), "--alpha {alpha}: {}", stderr(&o));
    }
}

/// A calibrated model whose temperature was edited to 5e-324 and re-sealed
/// (a valid checksum): it would serve NaN probabilities, so `check` and
/// `serve` refuse it as an invalid model.
#[test]
fn a_vanishing_temperature_is_refused_by_check_and_serve() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.json");
    let m = model.to_str().unwrap();
    let o = train_sample(m, &["--calibrate"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut a: nbserve::Artifact = serde_json::from_slice(&std::fs::read(&model).unwrap()).unwrap();
    a.calibration.as_mut().unwrap().temperature = 5e-324;
    a.seal();
    a.save(&model).unwrap();
    let o = nbserve(&["check", "--model", m, "--min-f1-macro", "0"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(
        err.contains("temperature 5e-324: must be a finite number in [1e-2, 1e6]"),
        "{err}"
    );
    let o = nbserve_env(
        &["serve"],
        &[
            ("NBSERVE__MODEL__PATH", m),
            ("NBSERVE__GATE__MIN_F1_MACRO", "0"),
            ("NBSERVE__SERVER__PORT", "0"),
        ],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(err.contains("temperature 5e-324"), "{err}");
}
