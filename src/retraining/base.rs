//! A retrain on stored counts (`--base-counts`): the base corpus is not
//! read again, its counts are added to. Its texts are gone, so no
//! cross-validation can score them: the candidate refits the parameters of
//! the model in service (model, smoothing, pruning) on the base counts plus
//! the merged rows, and keeps that model's temperature, as a nightly job
//! adding field labels wants. Choosing new parameters is `tune --counts`.

use std::path::Path;

use crate::artifact::{Artifact, LoadedModel};
use crate::classifier::{Counter, Counts, ModelKind};
use crate::dataset::Dataset;
use crate::shards::{self, ShardError};
use crate::training::counts::refit_counts;
use crate::training::{RunOptions, TrainOptions, TuneError};

use super::current::InService;
use super::merge::Merged;
use super::run::RetrainError;

/// Reads the base counts, their folds added up.
pub(super) fn read(path: &Path) -> Result<Counts, ShardError> {
    Ok(shards::read_counts(path)?.0.without_folds())
}

/// The candidate: the model in service's parameters and temperature
/// refitted on `base` plus the rows of `merged`, evaluated on `holdout`.
pub(super) fn refit(
    base: &Counts,
    merged: &Merged,
    holdout: &Dataset,
    in_service: &InService,
    run: &RunOptions,
) -> Result<Artifact, RetrainError> {
    let current = in_service
        .read()
        .map_err(|e| e.to_string())
        .and_then(|src| Artifact::load_bytes(&src.bytes).map_err(|e| e.to_string()))
        .map_err(RetrainError::NoModelForCounts)?;
    let LoadedModel { meta, .. } = current;
    let mut counter = Counter::new(base.settings().clone());
    for (text, label) in merged.train.texts.iter().zip(&merged.train.labels) {
        counter
            .add(text, label, 0)
            .expect("fold 0 exists without folds");
    }
    let sources = if merged.train.is_empty() {
        Vec::new()
    } else {
        vec![merged.train.sha256.clone()]
    };
    let total = base
        .merge(&counter.finish(sources))
        .expect("counted with the base's own settings");
    let model = meta.training.model_kind();
    let mut vectorizer = meta.training.vectorizer.options();
    vectorizer.binary |= model == ModelKind::Bernoulli;
    if !vectorizer.binary && base.settings().binary {
        return Err(RetrainError::NoModelForCounts(format!(
            "the model in service ({} {}) is scored on term counts, but the base counts are binary",
            meta.model.name, meta.model.version
        )));
    }
    let options = TrainOptions {
        model,
        vectorizer,
        calibrate_folds: None,
        alpha: meta.training.alpha,
        run: run.clone(),
    };
    refit_counts(&total, holdout, &options, meta.calibration)
        .map_err(|e| RetrainError::Tune(TuneError::Train(e)))
}

#[cfg(test)]
mod tests {
    use super::super::judge::Verdict;
    use super::super::tests::{run_told, Sandbox};
    use super::super::{Plan, RetrainError};
    use crate::artifact::Artifact;
    use crate::classifier::CountSettings;
    use crate::dataset::Dataset;
    use crate::shards::{count_files, write_counts, ShardColumns};
    use crate::training::{train, TrainOptions};

    /// The sandbox's retrain with its training part as base counts (kept
    /// per fold, as a search would have them) and field labels in a log.
    fn plan(s: &Sandbox, feedback: &[(&str, &str)]) -> Plan {
        let columns = ShardColumns {
            text: "text".into(),
            label: "label".into(),
        };
        let folds = Some(crate::classifier::FoldSpec {
            k: 3,
            by: crate::classifier::FoldBy::Hash { seed: 42 },
        });
        let counts = count_files(
            &[s.path("train.csv")],
            &columns,
            CountSettings::new(false, folds),
        )
        .unwrap();
        write_counts(&s.path("base.counts"), &counts).unwrap();
        let log: String = feedback
            .iter()
            .map(|(t, l)| {
                format!(
                    "{}\n",
                    serde_json::json!({"source": "example", "text": t, "label": l})
                )
            })
            .collect();
        std::fs::write(s.path("feedback.jsonl"), log).unwrap();
        let mut plan = s.plan();
        plan.inputs.data.clear();
        plan.inputs.base_counts = Some(s.path("base.counts"));
        plan.inputs.feedback_logs = vec![s.path("feedback.jsonl")];
        plan
    }

    #[test]
    fn field_labels_are_added_to_the_base_counts_and_refitted_exactly() {
        let s = Sandbox::new();
        let feedback = [
            ("claim your free prize money now", "spam"),
            ("the agenda for the board meeting", "ham"),
            ("cheap watches and free pills", "spam"),
        ];
        let plan = plan(&s, &feedback);
        let current = Artifact::load(&s.current()).unwrap();
        let (report, told) = run_told(&plan, None);
        let report = report.unwrap();
        assert!(
            told[1].starts_with("Refitting { base_documents: "),
            "{told:?}"
        );
        assert_eq!(
            report.data.base_counts_documents,
            report.data.training_documents - 3
        );
        assert_eq!(report.data.feedback_examples, 3);
        assert_eq!(
            (report.parameters.grid_points, report.parameters.cv_f1_macro),
            (1, None)
        );
        assert_eq!(report.verdict, Verdict::Promoted, "{}", report.reason);
        let candidate: Artifact =
            serde_json::from_slice(&std::fs::read(s.current()).unwrap()).unwrap();
        // What `train` fits on the base rows and the field labels, with the
        // model in service's parameters: the same vocabulary and counts.
        let mut rows = Dataset::holdout(&s.path("train.csv")).unwrap();
        for (t, l) in feedback {
            rows.texts.push(t.into());
            rows.labels.push(l.into());
        }
        let holdout = Dataset::holdout(&s.path("holdout.csv")).unwrap();
        let options = TrainOptions {
            model: current.meta.training.model_kind(),
            vectorizer: current.meta.training.vectorizer.options(),
            calibrate_folds: None,
            alpha: current.meta.training.alpha,
            run: plan.options.run.clone(),
        };
        let trained = train(&rows, Some(&holdout), &options, |_, _| {}).unwrap();
        assert_eq!(candidate.vocabulary, trained.vocabulary);
        assert_eq!(candidate.parameters, trained.parameters);
        assert_eq!(candidate.classes, trained.classes);
        assert_eq!(candidate.training, trained.training);
        assert_eq!(candidate.evaluation, trained.evaluation);
        assert_eq!(candidate.calibration, current.meta.calibration);
        // The same night again: nothing to promote.
        let again = run_told(&plan, None).0.unwrap();
        assert_eq!(again.verdict, Verdict::Unchanged, "{}", again.reason);
    }

    #[test]
    fn without_a_model_in_service_there_is_nothing_to_refit() {
        let s = Sandbox::new();
        let plan = plan(&s, &[("free money", "spam")]);
        std::fs::remove_file(s.current()).unwrap();
        let e = run_told(&plan, None).0.unwrap_err();
        assert!(matches!(e, RetrainError::NoModelForCounts(_)), "{e}");
        assert!(
            e.to_string()
                .starts_with("--base-counts refits the parameters of the model in service"),
            "{e}"
        );
    }
}
