//! nbserve: train, gate and serve a Bernoulli naive Bayes text classifier with
//! the same predictions as scikit-learn's `CountVectorizer(binary=True)` +
//! `BernoulliNB`.
//!
//! Dependencies point one way: `server` → (`gate`, `artifact`, `training`) →
//! `classifier`. The classifier knows nothing of files or HTTP.

pub mod artifact;
pub mod classifier;
pub mod cli;
pub mod dataset;
pub mod gate;
pub mod server;
pub mod settings;
pub mod telemetry;
pub mod training;
pub mod tuning;

pub use artifact::{Artifact, ArtifactError, LoadedModel, ModelMeta};
pub use classifier::{Classifier, Evaluation, Prediction};
pub use dataset::Dataset;
pub use gate::{gate, GateError, GatePass};
pub use settings::Settings;
