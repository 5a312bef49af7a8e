//! Schema 3: an artifact that carries the sufficient statistics of every
//! document it was fitted on, in the counts format `count` and `merge`
//! use, so learning and forgetting in place add and subtract exactly what
//! training counted.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::classifier::Counts;

use super::{Artifact, ArtifactError, SCHEMA_VERSION, STATISTICS_SCHEMA};

impl Artifact {
    /// The same artifact carrying `counts` (folds added up), as schema 3,
    /// resealed. `counts` must be those the model was fitted from.
    pub fn with_statistics(mut self, counts: &Counts) -> Artifact {
        self.statistics = Some(STANDARD.encode(counts.without_folds().to_bytes()));
        self.schema_version = STATISTICS_SCHEMA;
        self.seal();
        self
    }

    /// The same artifact without statistics, as schema 2, resealed.
    pub fn without_statistics(mut self) -> Artifact {
        if self.statistics.take().is_some() {
            self.schema_version = SCHEMA_VERSION;
            self.seal();
        }
        self
    }

    /// The statistics, decoded and checked against the model: `None` for
    /// older schemas. Schema 3 requires them and only schema 3 has them.
    pub fn decode_statistics(&self) -> Result<Option<Counts>, ArtifactError> {
        let bad = |m: String| ArtifactError::Statistics(m);
        let text = match (&self.statistics, self.schema_version == STATISTICS_SCHEMA) {
            (None, false) => return Ok(None),
            (Some(t), true) => t,
            (None, true) => return Err(bad("schema 3 requires statistics".into())),
            (Some(_), false) => {
                return Err(bad(format!(
                    "only schema {STATISTICS_SCHEMA} carries statistics, the file says {}",
                    self.schema_version
                )))
            }
        };
        let bytes = STANDARD
            .decode(text)
            .map_err(|e| bad(format!("not base64: {e}")))?;
        let counts = Counts::from_bytes(&bytes).map_err(|e| bad(e.to_string()))?;
        if counts.settings().folds.is_some() {
            return Err(bad("kept per fold; an artifact keeps them summed".into()));
        }
        if counts.classes() != self.classes.as_slice() {
            return Err(bad(format!(
                "{} classes counted, the model has {}",
                counts.classes().len(),
                self.classes.len()
            )));
        }
        if counts.settings().binary && !self.training.vectorizer.binary {
            return Err(bad(
                "binary (documents only) but the model counts occurrences".into(),
            ));
        }
        if counts.class_documents() != self.parameters.class_count {
            return Err(bad(
                "documents per class differ from the model's class counts".into(),
            ));
        }
        Ok(Some(counts))
    }
}
