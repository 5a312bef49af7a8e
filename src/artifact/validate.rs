//! What a parsed artifact must satisfy before its scoring tables are built:
//! shapes and names, and every number in its range (the training parameters
//! through the same [`TrainParams::check`] that `train` and `tune` run).

use crate::classifier::{ModelKind, TrainParams};

use super::{Artifact, ArtifactError, MAX_CLASSES, MAX_NAME_BYTES};

/// What keeps `name` from being a served model's name, version or class
/// label, in words that do not quote it: longer than [`MAX_NAME_BYTES`]
/// (each is repeated in every prediction and metric label), or holding a
/// control character (each reaches the command line's output and the logs,
/// where a newline or an escape sequence would forge lines or rewrite the
/// terminal).
pub fn name_problem(name: &str) -> Option<String> {
    if name.len() > MAX_NAME_BYTES {
        Some(format!(
            "is {} bytes; at most {MAX_NAME_BYTES} bytes are served",
            name.len()
        ))
    } else if name.chars().any(char::is_control) {
        Some("holds a control character (a newline, tab or escape...)".to_owned())
    } else {
        None
    }
}

impl Artifact {
    /// The ranged training parameters the artifact records.
    pub fn train_params(&self) -> TrainParams {
        TrainParams {
            alpha: self.training.alpha,
            vectorizer: self.training.vectorizer.options(),
            test_size: self.training.test_size,
            folds: self.calibration.as_ref().map(|c| c.folds),
            temperature: self.calibration.as_ref().map(|c| c.temperature),
        }
    }

    /// Shape and range checks that do not need the scoring tables.
    pub fn validate(&self) -> Result<(), ArtifactError> {
        self.train_params().check()?;
        if self.parameters.alpha != self.training.alpha {
            return Err(ArtifactError::Shape(
                "training.alpha and parameters.alpha differ".into(),
            ));
        }
        let evaluation = self
            .evaluation
            .as_ref()
            .ok_or(ArtifactError::MissingEvaluation)?;
        if !evaluation.is_consistent() {
            return Err(ArtifactError::NonFinite("evaluation"));
        }
        self.validate_description()?;
        let n = self.classes.len();
        if self.parameters.class_count.len() != n {
            return Err(ArtifactError::Shape(format!(
                "{} class counts for {n} classes",
                self.parameters.class_count.len()
            )));
        }
        if evaluation.per_class.len() != n {
            return Err(ArtifactError::Shape(format!(
                "evaluation covers {} classes, model has {n}",
                evaluation.per_class.len()
            )));
        }
        let binary = self.training.vectorizer.binary;
        if self.training.model_kind() == ModelKind::Bernoulli && !binary {
            return Err(ArtifactError::Shape(
                "a Bernoulli model needs a binary vectorizer".into(),
            ));
        }
        self.parameters.validate_as(self.vocabulary.len(), binary)?;
        Ok(())
    }

    /// Classes and names within their caps, and the numbers of the
    /// calibration and tuning records in range.
    fn validate_description(&self) -> Result<(), ArtifactError> {
        let n = self.classes.len();
        if n < 2 {
            return Err(ArtifactError::Shape(format!(
                "{n} class(es); need at least 2"
            )));
        }
        if n > MAX_CLASSES {
            return Err(ArtifactError::Shape(format!(
                "{n} classes; at most {MAX_CLASSES} are served"
            )));
        }
        let names = [&self.model.name, &self.model.version]
            .into_iter()
            .chain(&self.classes);
        if let Some(problem) = names.into_iter().find_map(|s| name_problem(s)) {
            // Not quoted: the name is what is wrong with the file.
            return Err(ArtifactError::Shape(format!(
                "a model name, version or class label {problem}"
            )));
        }
        let mut sorted = self.classes.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != n {
            return Err(ArtifactError::Shape("duplicate class labels".into()));
        }
        let loss = |x: f64| x.is_finite() && x >= 0.0;
        if let Some(c) = &self.calibration {
            if !(loss(c.log_loss_before) && loss(c.log_loss_after)) {
                return Err(ArtifactError::NonFinite("calibration.log_loss"));
            }
        }
        if let Some(t) = &self.tuning {
            TrainParams {
                folds: Some(t.folds),
                ..TrainParams::default()
            }
            .check()?;
            for r in &t.results {
                TrainParams::from(&r.params).check()?;
            }
            let unit = |x: f64| x.is_finite() && (0.0..=1.0).contains(&x);
            let scores_ok = t.results.iter().all(|r| {
                [r.f1_macro, r.balanced_accuracy, r.accuracy]
                    .iter()
                    .all(|m| unit(m.mean) && unit(m.std))
                    && r.vocabulary_size.is_finite()
                    && r.vocabulary_size >= 0.0
            });
            if !scores_ok || t.best >= t.results.len() {
                return Err(ArtifactError::NonFinite("tuning"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{resealed, sample_artifact};
    use super::super::MemoryEstimate;
    use super::*;
    use crate::classifier::{Param, ParamError};
    use crate::training::{train, RunOptions, TrainOptions};

    #[test]
    fn the_memory_budget_is_checked_before_the_artifact_is_parsed() {
        let a = sample_artifact();
        let bytes = a.to_bytes();
        let estimate = MemoryEstimate::of_bytes(&bytes).unwrap();
        assert!(Artifact::load_bytes_within(&bytes, estimate.peak).is_ok());
        let e = Artifact::load_bytes_within(&bytes, estimate.peak - 1).unwrap_err();
        assert!(
            matches!(
                e,
                ArtifactError::TooMuchMemory { estimate: got, max_memory_bytes, terms, classes: 2 }
                    if got == estimate.peak
                        && max_memory_bytes == estimate.peak - 1
                        && terms == a.vocabulary.len() as u64
            ),
            "{e}"
        );
        assert!(e.to_string().contains("gate.max_memory_bytes"), "{e}");
        assert!(matches!(
            Artifact::load_owned_within(bytes.clone(), estimate.peak - 1),
            Err(ArtifactError::TooMuchMemory { .. })
        ));
        // Tools that only read a model have no budget.
        assert!(Artifact::load_bytes(&bytes).is_ok());
        // Refused before the checksum: the content was never parsed.
        let mut tampered = a.clone();
        tampered.model.version = "other".into();
        assert!(matches!(
            Artifact::load_bytes_within(&tampered.to_bytes(), estimate.peak - 1),
            Err(ArtifactError::TooMuchMemory { .. })
        ));
    }

    #[test]
    fn recorded_calibration_and_tuning_numbers_are_range_checked() {
        let refused = |edit: fn(&mut Artifact)| Artifact::load_bytes(&resealed(edit)).unwrap_err();
        fn calibration(folds: u32, log_loss_before: f64) -> Option<super::super::Calibration> {
            Some(super::super::Calibration {
                method: "temperature".into(),
                temperature: 2.0,
                folds,
                seed: 0,
                log_loss_before,
                log_loss_after: 0.2,
            })
        }
        let e = refused(|a| a.calibration = calibration(1, 0.3));
        assert!(
            matches!(
                e,
                ArtifactError::Param(ParamError {
                    param: Param::Folds,
                    ..
                })
            ),
            "{e}"
        );
        let e = refused(|a| a.calibration = calibration(5, -0.3));
        assert!(
            matches!(e, ArtifactError::NonFinite("calibration.log_loss")),
            "{e}"
        );
        let e = refused(|a| a.training.test_size = Some(1.0));
        assert!(
            matches!(
                e,
                ArtifactError::Param(ParamError {
                    param: Param::TestSize,
                    ..
                })
            ),
            "{e}"
        );
    }

    /// What `train` accepts, a load accepts: the ends of the alpha range.
    #[test]
    fn a_model_trained_at_the_ends_of_the_ranges_is_served() {
        let data = crate::Dataset::from_csv(
            std::path::Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/data/sample.csv"
            )),
            "text",
            "label",
        )
        .unwrap();
        for alpha in [
            *crate::classifier::params::ALPHA_RANGE.start(),
            *crate::classifier::params::ALPHA_RANGE.end(),
        ] {
            let options = TrainOptions {
                model: crate::classifier::ModelKind::Bernoulli,
                vectorizer: crate::classifier::VectorizerOptions::default(),
                calibrate_folds: Some(2),
                alpha,
                run: RunOptions {
                    test_size: 0.25,
                    seed: 7,
                    name: "ends".into(),
                    version: None,
                    created_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
                },
            };
            let a = train(&data, None, &options, |_, _| {}).unwrap();
            Artifact::load_bytes(&a.to_bytes()).unwrap();
            let mut below = options.clone();
            below.alpha = alpha * if alpha < 1.0 { 0.01 } else { 100.0 };
            assert!(matches!(
                train(&data, None, &below, |_, _| {}),
                Err(crate::training::TrainError::Param(ParamError {
                    param: Param::Alpha,
                    ..
                }))
            ));
        }
    }
}
