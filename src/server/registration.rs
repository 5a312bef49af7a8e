//! A promoted challenger in MLflow: logged as a run and registered as a new
//! model version by the code `nbserve retrain` logs and registers with
//! ([`ModelRun`] through [`BlockingRun`], [`crate::retraining::register`]),
//! tagged with what was learned and forgotten. Only when the promotion's
//! target registers: `learning.register` set, or `model.path` a
//! `models:/NAME@ALIAS` alias (see [`Target::new`]).

use std::time::Instant;

use crate::artifact::Artifact;
use crate::learning::Tally;
use crate::mlflow::{MlflowClient, MlflowError};
use crate::retraining::judge::Registered;
use crate::retraining::{Registration, Target};
use crate::server::error::ApiError;
use crate::settings::Settings;
use crate::training::{BlockingRun, ModelRun, Tracking, TrainingFacts};

/// What the run records as its command.
const COMMAND: &str = "nbserve serve: POST /admin/challenger/promote";

/// The MLflow run of one promotion.
pub struct Tracked {
    run: BlockingRun,
    registration: Registration,
    started: Instant,
}

fn unavailable(e: &MlflowError) -> ApiError {
    tracing::warn!(error = %e, "challenger promotion: the MLflow tracking server failed");
    ApiError::unavailable(
        "registry_unavailable",
        format!("nothing was promoted: the MLflow tracking server failed: {e}"),
        1,
    )
}

impl Tracked {
    /// Starts the run, named `run_name`, when promoting to `target`
    /// registers; `None` when it does not (nothing goes to MLflow).
    pub async fn start(
        settings: &Settings,
        target: &Target,
        run_name: &str,
    ) -> Result<Option<Self>, ApiError> {
        let Some(registration) = target.registration().cloned() else {
            return Ok(None);
        };
        let uri = settings.model.mlflow_uri.as_deref().unwrap_or_default();
        let client = MlflowClient::new(uri).map_err(|e| unavailable(&e))?;
        let tags = [
            ("mlflow.source.name".to_owned(), COMMAND.to_owned()),
            ("mlflow.source.type".to_owned(), "LOCAL".to_owned()),
        ];
        let experiment = &settings.learning.mlflow_experiment;
        let run = ModelRun::start(client, experiment, run_name, &tags)
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(Some(Self {
            run: BlockingRun::new(tokio::runtime::Handle::current(), run),
            registration,
            started: Instant::now(),
        }))
    }

    /// The run's id (sealed into the promoted artifact).
    pub fn run_id(&self) -> String {
        self.run.run_id().to_owned()
    }

    /// Logs `artifact` to the run as `retrain` logs its candidate, tags it
    /// with what `tally` learned and forgot on the champion
    /// `champion_version`, and registers it (moving the alias, if any).
    pub async fn register(
        &self,
        artifact: Artifact,
        tally: Tally,
        champion_version: String,
    ) -> Result<Registered, ApiError> {
        let (run, registration, started) =
            (self.run.clone(), self.registration.clone(), self.started);
        let done = tokio::task::spawn_blocking(move || {
            let facts = TrainingFacts {
                command: COMMAND,
                dataset_bytes: 0,
                training_seconds: started.elapsed().as_secs_f64(),
            };
            run.log_model(&artifact, &facts)?;
            run.log_outcome(&[], &learning_tags(tally, &champion_version))?;
            crate::retraining::register(&run, &registration)
        })
        .await
        .expect("registering does not panic");
        done.map_err(|e| unavailable(&e))
    }

    /// Ends the run: FINISHED, or FAILED with `error` as a tag.
    pub async fn finish(&self, error: Option<&ApiError>) {
        let error = error.map(|e| format!("{}: {}", e.code, e.message));
        self.run.run().finish(error.as_deref()).await;
    }
}

/// The tags that say a model came from learning in place, and how.
fn learning_tags(tally: Tally, champion_version: &str) -> Vec<(String, String)> {
    [
        ("nbserve.origin", "learning_in_place".to_owned()),
        ("nbserve.learning.learned", tally.learned.to_string()),
        ("nbserve.learning.forgotten", tally.forgotten.to_string()),
        (
            "nbserve.learning.champion_version",
            champion_version.to_owned(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}
