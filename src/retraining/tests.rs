//! The use cases called in-process, as a scheduler or another program would
//! call them: a temporary models directory, fixtures cut from
//! `tests/data/sample.csv`, and a fake tracking run that records its calls.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::artifact::Artifact;
use crate::classifier::{DfBound, Grid, ModelKind, VectorizerOptions};
use crate::dataset::Dataset;
use crate::gate::{GateError, ServingRule};
use crate::mlflow::{MlflowError, ModelUri, ModelVersion};
use crate::settings::{ModelSource, Settings};
use crate::training::{train, RunOptions, Tracking, TrainOptions, TrainingFacts, TuneOptions};

use super::judge::Verdict;
use super::*;

/// A models directory holding `current.json` (v1, trained on the training
/// part), the training part, the holdout, and the holdout with every label
/// swapped (no model that learned the sample passes on it).
pub(super) struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    pub(super) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sample = Dataset::holdout(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/sample.csv"
        )))
        .unwrap();
        let (hold, rest): (Vec<usize>, Vec<usize>) = (0..sample.len()).partition(|i| i % 3 == 0);
        let train_part = sample.subset(&rest);
        train_part.write_csv(&dir.path().join("train.csv")).unwrap();
        let holdout = sample.subset(&hold);
        holdout.write_csv(&dir.path().join("holdout.csv")).unwrap();
        let mut flipped = holdout.clone();
        for label in &mut flipped.labels {
            *label = if label == "spam" { "ham" } else { "spam" }.into();
        }
        flipped.write_csv(&dir.path().join("flipped.csv")).unwrap();
        std::fs::create_dir(dir.path().join("models")).unwrap();
        let s = Self { dir };
        s.model("v1").save(&s.current()).unwrap();
        s
    }

    pub(super) fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub(super) fn current(&self) -> PathBuf {
        self.path("models/current.json")
    }

    /// A model trained on the training part as `version`.
    fn model(&self, version: &str) -> Artifact {
        let data = Dataset::holdout(&self.path("train.csv")).unwrap();
        let options = TrainOptions {
            model: ModelKind::Bernoulli,
            vectorizer: VectorizerOptions::default(),
            calibrate_folds: None,
            alpha: 1.0,
            run: run_options(version),
        };
        train(&data, None, &options, |_, _| {}).unwrap()
    }

    fn settings(&self) -> Settings {
        let mut s = Settings::default();
        s.model.path = ModelSource::File(self.current());
        s.model.dir = self.path("models");
        s.gate.min_f1_macro = 0.5;
        s
    }

    /// A retrain of the sandbox into `model.path`, v2.
    pub(super) fn plan(&self) -> Plan {
        let settings = self.settings();
        Plan {
            target: Target::new(&settings.model.path, None, None).unwrap(),
            settings,
            inputs: Inputs {
                data: vec![self.path("train.csv")],
                feedback_logs: Vec::new(),
                holdout: self.path("holdout.csv"),
                base_counts: None,
                text_column: "text".into(),
                label_column: "label".into(),
                allow_new_classes: false,
                max_log_bytes: 1 << 20,
            },
            options: TuneOptions {
                grid: Grid {
                    models: vec![ModelKind::Bernoulli],
                    binary: false,
                    alphas: vec![0.1, 1.0],
                    min_dfs: vec![DfBound::parse("1").unwrap()],
                    max_dfs: vec![DfBound::parse("1.0").unwrap()],
                    max_features: vec![0],
                },
                folds: 3,
                fold_rule: crate::tuning::FoldRule::Stratified,
                run: RunOptions {
                    test_size: 0.0,
                    ..run_options("v2")
                },
            },
            min_f1_macro: 0.5,
            max_regression: 0.5,
            keep: 5,
            lock_wait: Duration::from_secs(5),
            report: Some(self.path("report.json")),
        }
    }
}

fn run_options(version: &str) -> RunOptions {
    RunOptions {
        test_size: 0.25,
        seed: 42,
        name: "current".into(),
        version: Some(version.into()),
        created_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
    }
}

/// A tracking run that records what it is asked, in order.
#[derive(Default)]
struct FakeTracking {
    calls: RefCell<Vec<String>>,
    /// `log_outcome` fails (the tracking server went away at the end).
    outcome_fails: bool,
}

impl FakeTracking {
    fn record(&self, call: String) {
        self.calls.borrow_mut().push(call);
    }

    fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }
}

impl Tracking for FakeTracking {
    fn run_id(&self) -> &str {
        "run-1"
    }

    fn log_model(&self, artifact: &Artifact, facts: &TrainingFacts) -> Result<(), MlflowError> {
        self.record(format!(
            "log_model {} {} {}",
            artifact.model.version,
            artifact.mlflow_run_id.as_deref().unwrap_or("-"),
            facts.command
        ));
        Ok(())
    }

    fn register(&self, name: &str) -> Result<ModelVersion, MlflowError> {
        self.record(format!("register {name}"));
        Ok(ModelVersion {
            name: name.into(),
            version: "7".into(),
            source: String::new(),
            run_id: "run-1".into(),
        })
    }

    fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<(), MlflowError> {
        self.record(format!("set_alias {name} {alias} {version}"));
        Ok(())
    }

    fn log_outcome(
        &self,
        _metrics: &[(String, f64)],
        tags: &[(String, String)],
    ) -> Result<(), MlflowError> {
        let verdict = tags.iter().find(|(k, _)| k == "nbserve.retrain.verdict");
        self.record(format!("log_outcome {}", verdict.map_or("-", |(_, v)| v)));
        if self.outcome_fails {
            return Err(MlflowError::Api {
                endpoint: "runs/log-batch".into(),
                status: 503,
                code: "TEMPORARILY_UNAVAILABLE".into(),
                message: "down".into(),
            });
        }
        Ok(())
    }
}

/// Runs `plan`, collecting what it tells as progress.
pub(super) fn run_told(
    plan: &Plan,
    tracking: Option<&dyn Tracking>,
) -> (Result<Report, RetrainError>, Vec<String>) {
    let mut told = Vec::new();
    let result = run(plan, tracking, &mut |p| told.push(format!("{p:?}")));
    (result, told)
}

#[test]
fn a_retrain_promotes_into_the_file_and_registers_through_its_tracking_run() {
    let s = Sandbox::new();
    let before = std::fs::read(s.current()).unwrap();
    let mut plan = s.plan();
    plan.target = Target::new(
        &plan.settings.model.path,
        Some("spam".into()),
        Some("champion".into()),
    )
    .unwrap();
    let tracking = FakeTracking::default();
    let (report, told) = run_told(&plan, Some(&tracking));
    let report = report.unwrap();
    assert_eq!(report.verdict, Verdict::Promoted, "{}", report.reason);
    assert!(report.outcome().is_ok());
    // model.path holds the candidate, sealed with the run's id.
    let now = std::fs::read(s.current()).unwrap();
    assert_eq!(crate::fsio::sha256_hex(&now), report.candidate.sha256);
    let served = Artifact::load_bytes(&now).unwrap();
    assert_eq!(served.meta.model.version, "v2");
    assert_eq!(served.meta.mlflow_run_id.as_deref(), Some("run-1"));
    // The replaced model is kept, byte for byte.
    let promoted = report.promoted.as_ref().unwrap();
    assert_eq!(promoted.replaced_version.as_deref(), Some("v1"));
    let kept: Vec<Vec<u8>> = std::fs::read_dir(s.path("models/versions"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(
        kept.contains(&before) && kept.contains(&now),
        "{}",
        kept.len()
    );
    let registered = promoted.registered.as_ref().unwrap();
    assert_eq!(
        (registered.name.as_str(), registered.version.as_str()),
        ("spam", "7")
    );
    assert_eq!(
        tracking.calls(),
        [
            "log_model v2 run-1 nbserve retrain",
            "register spam",
            "set_alias spam champion 7",
            "log_outcome promoted",
        ]
    );
    assert!(
        told[0].starts_with("Data {") && told[1].starts_with("Tuning {"),
        "{told:?}"
    );
    // The report file is the report returned.
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.path("report.json")).unwrap()).unwrap();
    assert_eq!(written, serde_json::to_value(&report).unwrap());
    assert_eq!(written["mlflow_run_id"], "run-1");
}

#[test]
fn the_same_data_again_is_unchanged_and_changes_nothing() {
    let s = Sandbox::new();
    let plan = s.plan();
    assert_eq!(run_told(&plan, None).0.unwrap().verdict, Verdict::Promoted);
    let snapshot = std::fs::read(s.current()).unwrap();
    let history = std::fs::read(s.path("models/versions/history.json")).unwrap();
    let (report, _) = run_told(&plan, None);
    let report = report.unwrap();
    assert_eq!(report.verdict, Verdict::Unchanged, "{}", report.reason);
    assert!(report.outcome().is_ok() && report.promoted.is_none());
    assert_eq!(std::fs::read(s.current()).unwrap(), snapshot);
    assert_eq!(
        std::fs::read(s.path("models/versions/history.json")).unwrap(),
        history
    );
}

/// `gate.min_f1_macro` above what the candidate reaches: the servers would
/// refuse it, whatever the retrain's own minimum says.
#[test]
fn a_candidate_the_servers_would_refuse_is_rejected_and_nothing_changes() {
    let s = Sandbox::new();
    let before = std::fs::read(s.current()).unwrap();
    let mut plan = s.plan();
    plan.settings.gate.min_f1_macro = 0.999;
    let tracking = FakeTracking::default();
    let report = run_told(&plan, Some(&tracking)).0.unwrap();
    assert_eq!(report.verdict, Verdict::Rejected);
    assert!(!report.gates.serving.passed);
    assert!(report.reason.contains("serving gate"), "{}", report.reason);
    assert!(
        matches!(report.outcome(), Err(RetrainError::Rejected(r)) if r == report.reason),
        "{:?}",
        report.outcome()
    );
    assert_eq!(std::fs::read(s.current()).unwrap(), before);
    assert!(!s.path("models/versions").exists());
    assert_eq!(
        tracking.calls(),
        ["log_model v2 run-1 nbserve retrain", "log_outcome rejected"]
    );
}

#[test]
fn a_tracking_server_lost_at_the_end_does_not_undo_the_outcome() {
    let s = Sandbox::new();
    let tracking = FakeTracking {
        outcome_fails: true,
        ..FakeTracking::default()
    };
    let (report, told) = run_told(&s.plan(), Some(&tracking));
    assert_eq!(report.unwrap().verdict, Verdict::Promoted);
    assert!(
        told.last().unwrap().starts_with("OutcomeNotLogged"),
        "{told:?}"
    );
}

#[test]
fn a_registration_without_tracking_and_bad_ranges_fail_before_anything_is_read() {
    let s = Sandbox::new();
    let mut plan = s.plan();
    plan.inputs.holdout = s.path("missing.csv");
    plan.settings.model.path =
        ModelSource::Registry(ModelUri::parse("models:/spam@champion").unwrap());
    plan.target = Target::new(&plan.settings.model.path, None, None).unwrap();
    assert_eq!(
        plan.target.registration().map(|r| r.alias.as_deref()),
        Some(Some("champion"))
    );
    let (result, told) = run_told(&plan, None);
    assert!(
        matches!(result, Err(RetrainError::Plan(PlanError::NoTracking(ref n))) if n == "spam"),
        "{result:?}"
    );
    assert!(told.is_empty());
    let bad: [fn(&mut Plan); 3] = [
        |p| p.keep = 1,
        |p| p.max_regression = 1.5,
        |p| p.min_f1_macro = f64::NAN,
    ];
    for edit in bad {
        let mut plan = s.plan();
        plan.inputs.holdout = s.path("missing.csv");
        edit(&mut plan);
        assert!(matches!(
            run_told(&plan, None).0,
            Err(RetrainError::Plan(_))
        ));
    }
    // A pinned registry version cannot be promoted to.
    let pinned = ModelSource::Registry(ModelUri::parse("models:/spam/3").unwrap());
    assert!(matches!(
        Target::new(&pinned, None, None),
        Err(PlanError::PinnedVersion(_))
    ));
    assert!(matches!(
        Target::new(&s.settings().model.path, None, Some("champion".into())),
        Err(PlanError::AliasWithoutName)
    ));
}

#[test]
fn rollback_puts_the_previous_version_back_only_through_the_gate() {
    let s = Sandbox::new();
    let v1 = std::fs::read(s.current()).unwrap();
    assert_eq!(
        run_told(&s.plan(), None).0.unwrap().verdict,
        Verdict::Promoted
    );
    let v2 = std::fs::read(s.current()).unwrap();
    // With a configured holdout v1 fails, rollback refuses and changes nothing.
    let mut strict = s.settings();
    strict.gate.holdout_path = Some(s.path("flipped.csv"));
    let e = rollback(&strict, None, Duration::from_secs(5)).unwrap_err();
    assert!(
        matches!(
            e,
            RollbackError::Refused {
                source: GateError::Rejected { .. },
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(std::fs::read(s.current()).unwrap(), v2);
    let done = rollback(&s.settings(), None, Duration::from_secs(5)).unwrap();
    assert_eq!(done.model.version, "v1");
    assert_eq!(std::fs::read(s.current()).unwrap(), v1);
    // A registry source keeps its own versions.
    let mut registry = s.settings();
    registry.model.path = ModelSource::parse("models:/spam@champion").unwrap();
    assert!(matches!(
        rollback(&registry, None, Duration::from_secs(5)),
        Err(RollbackError::RegistrySource(_))
    ));
}

/// `promote` judges a version by the servers' rule with the configured
/// holdout, not by the evaluation stored in the artifact.
#[tokio::test]
async fn promote_refuses_a_version_that_fails_the_configured_holdout() {
    let s = Sandbox::new();
    let registry = crate::mlflow::fake::serve(s.model("v3").file_bytes()).await;
    let (client, moved) = (registry.client, registry.moved);
    let mut settings = s.settings();
    let rule = |settings: &Settings| ServingRule::from(settings);
    settings.gate.holdout_path = Some(s.path("flipped.csv"));
    let e = promote(&client, "spam", "3", "champion", &rule(&settings))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            PromoteError::Refused {
                source: GateError::Rejected { .. },
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("holdout re-evaluation"), "{e}");
    assert!(moved.lock().unwrap().is_empty(), "the alias moved");
    // The configured size limit is the servers' too.
    settings.gate.holdout_path = None;
    settings.model.max_bytes = 1000;
    let e = promote(&client, "spam", "3", "champion", &rule(&settings))
        .await
        .unwrap_err();
    assert!(
        matches!(e, PromoteError::Registry(MlflowError::TooLarge { .. })),
        "{e}"
    );
    // On the real holdout it passes, and only then the alias moves.
    settings = s.settings();
    settings.gate.holdout_path = Some(s.path("holdout.csv"));
    let pass = promote(&client, "spam", "3", "champion", &rule(&settings))
        .await
        .unwrap();
    assert!(pass.f1_macro >= 0.5);
    let moved = moved.lock().unwrap();
    assert_eq!(moved.len(), 1);
    assert!(
        moved[0].contains("\"champion\"") && moved[0].contains("\"3\""),
        "{moved:?}"
    );
}
