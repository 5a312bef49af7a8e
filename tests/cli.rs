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

/// docs/cli.md: "the same data and parameters give a byte-identical artifact
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

/// `train` compares its model with the configured gate (environment or
/// `--config`), warns on stderr when it is below and names `tune`; a model
/// above the gate trains silently. The model is written either way.
#[test]
fn train_warns_when_its_model_is_below_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.json");
    let train = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec!["train", "--data", "tests/data/sample.csv", "--out"];
        args.push(out.to_str().unwrap());
        args.extend_from_slice(extra);
        nbserve_env(&args, env)
    };
    let o = train(&[], &[("NBSERVE__GATE__MIN_F1_MACRO", "0.999")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let warning = stderr(&o);
    assert!(
        warning.contains("warning: F1 macro")
            && warning.contains("below the gate minimum 0.9990 (gate.min_f1_macro)")
            && warning.contains("nbserve tune"),
        "{warning}"
    );
    assert!(out.exists());

    let o = train(&[], &[("NBSERVE__GATE__MIN_F1_MACRO", "0.1")]);
    assert!(o.status.success());
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));

    let config = write(&dir, "nbserve.toml", b"[gate]\nmin_f1_macro = 0.999\n");
    let o = train(&["--config", config.to_str().unwrap()], &[]);
    assert!(
        stderr(&o).contains("below the gate minimum 0.9990"),
        "{}",
        stderr(&o)
    );

    // A bad setting fails before any training, naming the key.
    let o = train(&[], &[("NBSERVE__GATE__MIN_F1_MACRO", "high")]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("gate.min_f1_macro"), "{}", stderr(&o));
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

/// Runs `nbserve args` with `stdin` as input and its standard output a pipe
/// whose reader is already gone, as in `nbserve ... | head` once `head` has
/// left: every write to it fails with `BrokenPipe`, the first one included.
#[cfg(unix)]
fn with_stdout_closed(args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::process::Stdio;
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    // Close-on-exec: no other test's child inherits the reading end.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 just opened both; nothing else owns them.
    let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(reader);
    let mut child = Command::new(env!("CARGO_BIN_EXE_nbserve"))
        .args(args)
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("RUST_LOG")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The child may stop reading early: a failed write here is expected.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

/// Every command that prints, with nobody reading its output, ends the way
/// a Unix tool does: no panic (exit 101), no "Broken pipe" message, exit 0.
#[cfg(unix)]
#[test]
fn a_reader_that_left_ends_printing_commands_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.json");
    let m = model.to_str().unwrap();
    let data = "tests/data/sample.csv";
    let lines = "some text to classify\n".repeat(20_000);
    let cases: &[(&[&str], &[u8])] = &[
        (&["train", "--data", data, "--out", m], b""),
        (&["config"], b""),
        (&["predict", "--model", m, "hello there"], b""),
        (&["predict", "--model", m, "--data", data], b""),
        (&["predict", "--model", m, "--json"], lines.as_bytes()),
        (&["evaluate", "--model", m, "--data", data], b""),
        (&["evaluate", "--model", m, "--data", data, "--json"], b""),
        (&["check", "--model", m, "--min-f1-macro", "0"], b""),
        (&["--help"], b""),
    ];
    for (args, stdin) in cases {
        let o = with_stdout_closed(args, stdin);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            !err.contains("panicked") && !err.contains("pipe"),
            "{args:?}: {err}"
        );
    }
    assert!(model.exists(), "train finished its work without a reader");
}

/// A closed output does not hide a command's own failure, nor end a
/// command's work half-way.
#[cfg(unix)]
#[test]
fn a_reader_that_left_changes_no_other_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.json");
    let m = model.to_str().unwrap();
    let o = with_stdout_closed(
        &["train", "--data", "tests/data/sample.csv", "--out", m],
        b"",
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = with_stdout_closed(&["check", "--model", m, "--min-f1-macro", "1"], b"");
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("below the gate minimum"),
        "{}",
        stderr(&o)
    );
    let o = with_stdout_closed(&["predict", "--model", "no-such.json", "hi"], b"");
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
}

/// `nbserve predict --data big.csv | head -1`, with a real reader that takes
/// one line and leaves while the command still has most of its output to
/// write.
#[test]
fn predict_into_head_stops_quietly() {
    use std::io::BufRead;
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let csv = write(
        &dir,
        "big.csv",
        format!(
            "text,label\n{}",
            "buy cheap pills now,spam\n".repeat(50_000)
        )
        .as_bytes(),
    );
    for _ in 0..5 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_nbserve"))
            .args(["predict", "--model", "models/spam-nb.json", "--data"])
            .arg(&csv)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(first.ends_with('\n') && first.contains('\t'), "{first}");
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(stderr(&o), "");
    }
}

/// Other failures to write the output are reported: exit 1 and the reason.
#[test]
fn a_full_disk_under_the_output_fails_the_command() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        return; // not Linux
    };
    for args in [
        &["config"][..],
        &["predict", "--model", "models/spam-nb.json", "hi"],
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_nbserve"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(full.try_clone().unwrap())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert_eq!(
            stderr(&o),
            "nbserve: cannot write to standard output: No space left on device (os error 28)\n"
        );
    }
}

/// The command line writes through its own macros (`outln!`, `noteln!`, ...
/// in `src/cli/output.rs`), which never panic: the standard printing macros
/// panic when the reader of a pipe has gone.
#[test]
fn the_command_line_does_not_use_the_panicking_print_macros() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![root.join("main.rs")];
    for entry in std::fs::read_dir(root.join("cli")).unwrap() {
        files.push(entry.unwrap().path());
    }
    let macro_call = regex::Regex::new(r"\be?print(ln)?!").unwrap();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        for (i, line) in code.lines().enumerate() {
            let trimmed = line.trim_start();
            if !trimmed.starts_with("//") && macro_call.is_match(line) {
                panic!("{}:{}: {trimmed}", file.display(), i + 1);
            }
        }
    }
}

/// Token settings as an operator meets them: refused with exit 3 and the
/// setting named (never the token), or accepted trimmed; a device or FIFO
/// given as the token file is refused at once instead of read forever.
#[cfg(unix)]
#[test]
fn token_files_are_checked_before_use() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let fifo = fifo.to_str().unwrap().to_owned();
    let path = |name: &str, content: &[u8]| {
        let p = write(&dir, name, content);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let blank = path("blank", b" \n");
    let spaced = path("spaced", b"two words here\n");
    let accented = path("accented", "caf\u{e9}-au-lait\n".as_bytes());
    for (file, says) in [
        (blank.as_str(), "the token is empty"),
        (&spaced, "the token must be visible ASCII"),
        (&accented, "the token must be visible ASCII"),
        ("/dev/zero", "not a regular file"),
        (&fifo, "not a regular file"),
    ] {
        let o = config_within(&[("NBSERVE__ADMIN__TOKEN_FILE", file)]);
        assert_eq!(o.status.code(), Some(3), "{file}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.starts_with("nbserve: invalid setting admin.token_file: "),
            "{err}"
        );
        assert!(err.contains(says), "{err}");
        assert!(!err.contains("words") && !err.contains("lait"), "{err}");
    }

    let secret = path("secret", b"  the-admin-secret\r\n");
    let o = config_within(&[
        ("NBSERVE__ADMIN__TOKEN_FILE", &secret),
        ("NBSERVE__FEEDBACK__TOKEN", "the-admin-secret"),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("feedback.token: must differ from admin.token"));
    assert!(!stderr(&o).contains("the-admin-secret"));

    let o = config_within(&[("NBSERVE__ADMIN__TOKEN_FILE", &secret)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stderr(&o), "", "an owner-only file is not warned about");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = config_within(&[("NBSERVE__ADMIN__TOKEN_FILE", &secret)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with(&format!(
            "nbserve: warning: admin.token_file {secret} can be read by every user"
        )),
        "{}",
        stderr(&o)
    );
}

/// `nbserve config` with `env`, killed if it has not finished within 20 s
/// (a FIFO given as a token file used to block it for good).
#[cfg(unix)]
fn config_within(env: &[(&str, &str)]) -> Output {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_nbserve"))
        .arg("config")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("nbserve config {env:?} still running after 20 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
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

/// A registry on its own thread that holds version 3 of `spam` (the file
/// `artifact`) and records the alias moves it is asked for; its URL.
fn registry_holding(artifact: Vec<u8>) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use axum::http::Uri;
    let moves = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = moves.clone();
    let answer = move |uri: Uri, body: String| {
        let (artifact, recorded) = (artifact.clone(), recorded.clone());
        async move {
            let version = r#"{"model_version": {"name": "spam", "version": "3",
                "run_id": "r", "source": "mlflow-artifacts:/1/r/artifacts/model"}}"#;
            match uri.path() {
                "/api/2.0/mlflow/model-versions/get" => version.as_bytes().to_vec(),
                "/api/2.0/mlflow/registered-models/alias" => {
                    recorded.lock().unwrap().push(body);
                    b"{}".to_vec()
                }
                _ => artifact,
            }
        }
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(format!("http://{}", listener.local_addr().unwrap()))
                .unwrap();
            let app = axum::Router::new().fallback(answer);
            axum::serve(listener, app).await.unwrap();
        });
    });
    (rx.recv().unwrap(), moves)
}

/// `promote --config`: the version is judged by the servers' rule with the
/// configured holdout, not by the evaluation stored in its artifact.
#[test]
fn promote_refuses_a_version_that_fails_the_configured_holdout() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.json");
    let o = train_sample(model.to_str().unwrap(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let sample = nbserve::Dataset::holdout(Path::new("tests/data/sample.csv")).unwrap();
    let mut flipped = sample.clone();
    for label in &mut flipped.labels {
        *label = if label == "spam" { "ham" } else { "spam" }.into();
    }
    flipped.write_csv(&dir.path().join("flipped.csv")).unwrap();
    let config = |holdout: &str| {
        let text = format!(
            "[gate]\nmin_f1_macro = 0.5\nholdout_path = {:?}\n",
            dir.path().join(holdout)
        );
        write(&dir, "nbserve.toml", text.as_bytes())
    };
    let (url, moves) = registry_holding(std::fs::read(&model).unwrap());
    let promote = |config: &Path| {
        nbserve(&[
            "promote",
            "--mlflow-uri",
            &url,
            "--model-name",
            "spam",
            "--version",
            "3",
            "--config",
            config.to_str().unwrap(),
        ])
    };
    let o = promote(&config("flipped.csv"));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(5), "{err}");
    assert!(err.contains("holdout re-evaluation"), "{err}");
    assert!(moves.lock().unwrap().is_empty(), "the alias moved");
    sample.write_csv(&dir.path().join("sample.csv")).unwrap();
    let o = promote(&config("sample.csv"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(moves.lock().unwrap().len(), 1);

    // `--served-model`: that model's gate, and its models:/NAME@ALIAS.
    let table = |holdout: &str| {
        let text = format!(
            "[model]\npath = {model:?}\nmlflow_uri = {url:?}\n[gate]\nmin_f1_macro = 0.5\n\
             holdout_path = {:?}\n[models.live]\npath = \"models:/spam@live\"\nholdout_path = {:?}\n",
            dir.path().join("sample.csv"),
            dir.path().join(holdout),
        );
        write(&dir, "many.toml", text.as_bytes())
    };
    let served = |config: &Path, name: &str| {
        nbserve(&[
            "promote",
            "--mlflow-uri",
            &url,
            "--version",
            "3",
            "--config",
            config.to_str().unwrap(),
            "--served-model",
            name,
        ])
    };
    let o = served(&table("flipped.csv"), "live");
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert_eq!(moves.lock().unwrap().len(), 1, "the alias moved");
    // The default model is a file: the registered name must be given.
    let o = served(&table("flipped.csv"), "m");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--model-name is needed"),
        "{}",
        stderr(&o)
    );
    let o = served(&table("sample.csv"), "live");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("spam@live -> version 3"));
    let moved = moves.lock().unwrap().last().unwrap().clone();
    assert!(
        moved.contains("\"live\"") && moved.contains("\"spam\""),
        "{moved}"
    );
}

/// Names and labels reach the terminal and the logs: a control character in
/// one is refused (the artifact by `check`, the CSV by `train`), never
/// printed.
#[test]
fn control_characters_in_names_and_labels_are_refused_not_printed() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.json");
    let m = model.to_str().unwrap();
    let o = train_sample(m, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let clean: nbserve::Artifact = serde_json::from_slice(&std::fs::read(&model).unwrap()).unwrap();
    let edits: [fn(&mut nbserve::Artifact); 3] = [
        |a| a.model.name = "spam\u{1b}[2J".into(),
        |a| a.model.version = "v1\nINFO forged".into(),
        |a| a.classes[0] = "ham\r".into(),
    ];
    for edit in edits {
        let mut a = clean.clone();
        edit(&mut a);
        a.seal();
        a.save(&model).unwrap();
        let o = nbserve(&["check", "--model", m, "--min-f1-macro", "0"]);
        let (out, err) = (String::from_utf8_lossy(&o.stdout).into_owned(), stderr(&o));
        assert_eq!(o.status.code(), Some(4), "{out}{err}");
        assert!(err.contains("holds a control character"), "{err}");
        for printed in [&out, &err] {
            assert!(!printed.contains(['\u{1b}', '\r']), "{printed:?}");
            assert_eq!(printed.lines().count(), usize::from(!printed.is_empty()));
        }
    }
    let csv = write(
        &dir,
        "bell.csv",
        b"text,label\nwin money,spam\x07\nhello there,ham\nbuy now,spam\x07\nlunch,ham\n",
    );
    let out = dir.path().join("never.json");
    let o = nbserve(&[
        "train",
        "--data",
        csv.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--test-size",
        "0.5",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(
        err.contains("a class label holds a control character"),
        "{err}"
    );
    assert!(!err.contains('\u{7}') && !out.exists(), "{err}");
}

/// One rule, one code: a test share out of range is a usage error in
/// `split` as in `train`.
#[test]
fn split_names_a_test_size_out_of_range_as_train_does() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
    for command in ["split", "train"] {
        let mut args = vec![
            command,
            "--data",
            "tests/data/sample.csv",
            "--test-size",
            "1.5",
        ];
        if command == "split" {
            args.extend([
                "--train-out",
                a.to_str().unwrap(),
                "--test-out",
                b.to_str().unwrap(),
            ]);
        } else {
            args.extend(["--out", a.to_str().unwrap()]);
        }
        let o = nbserve(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{command}: {err}");
        assert!(err.contains("--test-size 1.5: "), "{command}: {err}");
    }
    assert!(!a.exists() && !b.exists());
}

/// `model.path` and the registry's server are settings: a malformed one is
/// refused when the settings load (exit 3 naming the key), by `serve` as by
/// `config`, before any model is looked for.
#[test]
fn a_malformed_registry_source_is_a_settings_error() {
    for (env, key) in [
        (
            &[("NBSERVE__MODEL__PATH", "models:/spam")][..],
            "model.path",
        ),
        (
            &[
                ("NBSERVE__MODEL__PATH", "models:/spam@champion"),
                ("NBSERVE__MODEL__MLFLOW_URI", "ftp://mlflow"),
            ][..],
            "model.mlflow_uri",
        ),
    ] {
        for command in ["serve", "config"] {
            let o = nbserve_env(
                &[command],
                &[env, &[("NBSERVE__SERVER__PORT", "0")]].concat(),
            );
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(3), "{command} {env:?}: {err}");
            assert!(err.contains(key), "{err}");
        }
    }
}

#[test]
fn train_statistics_writes_a_learnable_schema_3_file() {
    let dir = tempfile::tempdir().unwrap();
    let (plain, stats) = (dir.path().join("p.json"), dir.path().join("s.json"));
    for (out, extra) in [(&plain, None), (&stats, Some("--statistics"))] {
        let mut args = vec![
            "train",
            "--data",
            "tests/data/sample.csv",
            "--min-df",
            "2",
            "--name",
            "m",
            "--model-version",
            "1",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(extra);
        let o = nbserve_env(&args, &[("SOURCE_DATE_EPOCH", "1700000000")]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let read = |p: &Path| -> nbserve::Artifact {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let (p, s) = (read(&plain), read(&stats));
    assert_eq!((p.schema_version, s.schema_version), (2, 3));
    assert!(p.statistics.is_none() && s.statistics.is_some());
    // The same model otherwise: the statistics only add.
    assert!(s.clone().without_statistics() == p);
    assert!(nbserve::Artifact::load(&stats)
        .unwrap()
        .statistics
        .is_some());
    nbserve::learning::Learner::from_artifact(&s, false).expect("learnable");
    assert!(matches!(
        nbserve::learning::Learner::from_artifact(&p, false),
        Err(nbserve::learning::LearnError::NoStatistics)
    ));
    let o = nbserve(&[
        "check",
        "--model",
        stats.to_str().unwrap(),
        "--min-f1-macro",
        "0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// A repository whose models cannot all be named stops `serve` before it
/// binds: a duplicate name, a file stem that is not a name, a default that
/// names none (exit 3, the key named).
#[test]
fn serve_refuses_a_repository_with_bad_names() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy("models/spam-nb.json", dir.path().join("spam-nb.json")).unwrap();
    let repo = dir.path().to_str().unwrap();
    let config = write(
        &dir,
        "dup.toml",
        b"[models.spam-nb]\npath = \"models/spam-cnb.json\"\n",
    );
    let config = config.to_str().unwrap();
    let serve = |args: &[&str], env: &[(&str, &str)]| {
        let mut env = env.to_vec();
        env.extend([
            ("NBSERVE__MODEL__REPOSITORY", repo),
            ("NBSERVE__SERVER__PORT", "0"),
        ]);
        nbserve_env(args, &env)
    };
    for (o, expected) in [
        (serve(&["serve", "--config", config], &[]), "named twice"),
        (
            serve(&["serve"], &[("NBSERVE__MODEL__DEFAULT", "nope")]),
            "model.default",
        ),
    ] {
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(3), "{expected}: {err}");
        assert!(err.contains(expected), "{err}");
    }
    std::fs::copy("models/spam-nb.json", dir.path().join("bad name.json")).unwrap();
    let o = serve(&["serve"], &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("model.repository") && err.contains("bad name"),
        "{err}"
    );
}

/// A port free on the loopback interface a moment ago.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `serve --host/--port/--model` set the settings they name and beat every
/// other layer: the file's and the environment's port, and an environment
/// model path that does not exist.
#[cfg(unix)]
#[test]
fn serve_flags_beat_the_environment_and_the_file() {
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let (file_port, env_port, port) = (free_port(), free_port(), free_port());
    let config = write(
        &dir,
        "nbserve.toml",
        format!("[server]\nport = {file_port}\n").as_bytes(),
    );
    let env_port = env_port.to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_nbserve"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--model", "models/spam-nb.json"])
        .env("NBSERVE__SERVER__PORT", &env_port)
        .env("NBSERVE__MODEL__PATH", "models/no-such-model.json")
        .env_remove("MLFLOW_TRACKING_URI")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/health");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let healthy = loop {
        if nbserve(&["healthcheck", "--url", &url]).status.success() {
            break true;
        }
        if child.try_wait().unwrap().is_some() || std::time::Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    child.kill().unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(healthy, "no server on the --port: {}", stderr(&o));
    let other = format!("http://127.0.0.1:{file_port}/health");
    assert!(!nbserve(&["healthcheck", "--url", &other]).status.success());

    // --model is model.path: parsed and checked like the variable.
    let o = nbserve(&["serve", "--model", "models:/spam"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("nbserve: invalid setting model.path: "),
        "{}",
        stderr(&o)
    );
    let o = nbserve_env(
        &["serve", "--model", "models/spam-cnb.json", "--port", "0"],
        &[("NBSERVE__GATE__MIN_F1_MACRO", "0.9999")],
    );
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(stderr(&o).contains("spam-cnb"), "{}", stderr(&o));
}

/// `serve --help` lists the variable of every setting `config` prints (the
/// two read the settings independently: help from their defaults, config
/// resolved), with the order of the layers and the rules.
#[test]
fn serve_help_lists_every_setting_variable() {
    let o = nbserve(&["serve", "--help"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let help = String::from_utf8_lossy(&o.stdout);
    let o = nbserve(&["config"]);
    let config: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut listed = 0;
    for (section, keys) in config.as_object().unwrap() {
        for key in keys.as_object().unwrap().keys() {
            let var = format!("NBSERVE__{}__{}", section, key).to_uppercase();
            assert!(help.contains(&format!("  {var}")), "{var} missing:\n{help}");
            listed += 1;
        }
    }
    assert!(listed > 30, "{listed}");
    for text in [
        "--port <PORT>",
        "--model <PATH_OR_URI>",
        "--host <HOST>",
        "NBSERVE__SERVER__PORT=8080",
        "NBSERVE__ADMIN__TOKEN (unset)",
        "NBSERVE__LOG__FORMAT=pretty\n      one of json, pretty (any case)",
        "then\n--host, --port and --model",
    ] {
        assert!(help.contains(text), "{text:?} missing:\n{help}");
    }
    assert!(help.contains("must be at least 8"), "{help}");
    // The short help points at the long one.
    let o = nbserve(&["serve", "-h"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("--help lists them"));
}

/// `JSON` means `json`; a wrong word is named with the choices, not in
/// serde's words.
#[test]
fn enum_settings_are_read_in_any_case_and_refused_in_words() {
    let o = nbserve_env(
        &["config"],
        &[
            ("NBSERVE__LOG__FORMAT", "JSON"),
            ("NBSERVE__FEEDBACK__LOG_FSYNC", "Always"),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let config: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(config["log"]["format"], "json");
    assert_eq!(config["feedback"]["log_fsync"], "always");
    let o = nbserve_env(&["serve"], &[("NBSERVE__LOG__FORMAT", "xml")]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(
        stderr(&o).trim(),
        "nbserve: invalid setting log.format: expected one of json, pretty; got 'xml'"
    );
}

/// A setting tried as a flag is a usage error that names its variable.
#[test]
fn a_setting_tried_as_a_flag_names_its_variable() {
    let o = nbserve(&["serve", "--max-batch-size", "5"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("unexpected argument '--max-batch-size'"),
        "{err}"
    );
    assert!(
        err.contains("tip: --max-batch-size is not a flag; set NBSERVE__SERVER__MAX_BATCH_SIZE"),
        "{err}"
    );
    let o = nbserve(&["serve", "--log-format=json"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("NBSERVE__LOG__FORMAT"),
        "{}",
        stderr(&o)
    );
    let o = nbserve(&["serve", "--nonsense"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("settings are NBSERVE__SECTION__KEY environment variables"),
        "{}",
        stderr(&o)
    );
}

/// A TLS registry stand-in on the loopback interface: a CA and a server
/// certificate for 127.0.0.1 made with `openssl`, and a Python HTTPS server
/// answering every GET with MLflow's 404 and recording its path on stderr.
/// The directory (holding `ca.pem`), the server and its URL.
#[cfg(unix)]
fn tls_registry() -> (tempfile::TempDir, std::process::Child, String) {
    use std::io::BufRead;
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let o = Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("openssl runs");
        assert!(o.status.success(), "openssl {args:?}: {}", stderr(&o));
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca = [
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=nbserve test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ];
    run(&[&["req", "-x509"], &ec[..], &ca[..]].concat());
    write(
        &dir,
        "server.ext",
        b"subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    );
    let csr = [
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ];
    run(&[&["req"], &ec[..], &csr[..]].concat());
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    let server = write(
        &dir,
        "server.py",
        br#"import http.server, json, ssl, sys
class Registry(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such alias"}).encode()
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        print("GET " + self.path.split("?")[0], file=sys.stderr, flush=True)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Registry)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain("server.pem", "server.key")
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#,
    );
    let mut child = Command::new("python3")
        .arg(&server)
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut port = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let url = format!("https://127.0.0.1:{}", port.trim());
    (dir, child, url)
}

/// An `https://` registry is spoken to over TLS: trusted through the CA
/// bundle MLflow's variable names (the registry's own 404 comes back), and
/// refused without it (an unknown issuer), never "unreachable" for want of
/// a TLS client. A bundle without a certificate is a settings error.
#[cfg(unix)]
#[test]
fn an_https_registry_is_trusted_through_the_ca_bundle() {
    let (dir, mut server, url) = tls_registry();
    let ca = dir.path().join("ca.pem");
    let serve = |extra: &[(&str, &str)]| {
        let env = [
            ("NBSERVE__MODEL__PATH", "models:/spam@champion"),
            ("NBSERVE__MODEL__MLFLOW_URI", url.as_str()),
            ("NBSERVE__SERVER__PORT", "0"),
        ];
        nbserve_env(&["serve"], &[&env[..], extra].concat())
    };
    let o = serve(&[("MLFLOW_TRACKING_SERVER_CERT_PATH", ca.to_str().unwrap())]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(
        err.contains("registered-models/alias answered 404: RESOURCE_DOES_NOT_EXIST"),
        "{err}"
    );
    let o = serve(&[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(err.contains("UnknownIssuer"), "{err}");

    let empty = write(&dir, "empty.pem", b"no certificate\n");
    let o = serve(&[("MLFLOW_TRACKING_SERVER_CERT_PATH", empty.to_str().unwrap())]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("invalid setting MLFLOW_TRACKING_SERVER_CERT_PATH: ")
            && stderr(&o).contains("empty.pem: holds no PEM certificate"),
        "{}",
        stderr(&o)
    );
    server.kill().unwrap();
    let log = server.wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&log.stderr)
            .contains("GET /api/2.0/mlflow/registered-models/alias"),
        "{}",
        stderr(&log)
    );
}
