//! The command line as users and CI call it: exit codes and messages.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn nbserve(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nbserve"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
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
    assert_eq!(o.status.code(), Some(4));
    assert!(stderr(&o).contains("alpha"));
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

fn nbserve_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nbserve"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
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
