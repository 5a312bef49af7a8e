//! nbserve: train, gate and serve a Bernoulli naive Bayes text classifier with
//! the same predictions as scikit-learn's `CountVectorizer(binary=True)` +
//! `BernoulliNB`.
//!
//! Layers, each using only the ones below it (checked by `tests/layers.rs`):
//!
//! ```text
//! server                      HTTP: Application, loader, routes, state, metrics
//! retraining                  use cases: run a retrain (plan → report), promote, roll back
//! gate, monitoring, shards,   the one rule for "may this be served"; how is it doing?;
//! learning                    counts files: shards counted, merged, scored; learning and
//!                             forgetting in place on a champion's statistics
//! training                    dataset → split → fit → evaluate → artifact (train, tune)
//! telemetry, tuning           logging set-up; cross-validation: folds, grid, temperature
//! artifact, settings          the model file and its validation; typed settings (ModelSource)
//! dataset, mlflow             CSV input; MLflow REST client
//! classifier                  pure computation: tokenizer … evaluation
//! fsio                        every file read or written: regular files only, capped, atomic
//! ```
//!
//! The command line (`src/main.rs`, `src/cli`) is the binary, above all of
//! them, and the only place that turns errors into exit codes.

pub mod artifact;
pub mod classifier;
pub mod dataset;
pub mod fsio;
pub mod gate;
pub mod learning;
pub mod mlflow;
pub mod monitoring;
pub mod retraining;
pub mod server;
pub mod settings;
pub mod shards;
pub mod telemetry;
pub mod training;
pub mod tuning;

pub use artifact::{Artifact, ArtifactError, LoadedModel, ModelMeta};
pub use classifier::{Classifier, Evaluation, Prediction};
pub use dataset::Dataset;
pub use gate::{gate, GateError, GatePass};
pub use settings::Settings;
