//! MLflow tracking for commands that fit a model: one run per command
//! ([`ModelRun`], the library's, which the server's promotion of a
//! challenger logs with too), driven from the command's own runtime.

use nbserve::artifact::Artifact;
use nbserve::mlflow::{MlflowClient, MlflowError, ModelVersion};
use nbserve::training::{BlockingRun, ModelRun, Tracking, TrainingFacts};

use super::args::TrackingArgs;
use super::exit::Usage;
use super::Failure;

/// The MLflow side of one command: a started run on a tracking server.
pub struct Tracker {
    run: BlockingRun,
    runtime: tokio::runtime::Runtime,
}

impl Tracker {
    /// Starts a run when a tracking URI is set; `None` when tracking is off.
    pub fn start(
        args: &TrackingArgs,
        run_name: &str,
        command: &str,
    ) -> Result<Option<Self>, Failure> {
        let Some(uri) = args.mlflow_uri.as_deref().filter(|u| !u.is_empty()) else {
            if args.register.is_some() {
                return Err(Usage(
                    "--register needs a tracking server (--mlflow-uri or MLFLOW_TRACKING_URI)"
                        .into(),
                )
                .into());
            }
            return Ok(None);
        };
        let client = MlflowClient::new(uri)?;
        let runtime = super::serve::runtime()?;
        let mut tags = vec![
            ("mlflow.source.name".to_owned(), command.to_owned()),
            ("mlflow.source.type".to_owned(), "LOCAL".to_owned()),
        ];
        if let Some(commit) = args.git_commit.as_deref().filter(|c| !c.is_empty()) {
            tags.push(("mlflow.source.git.commit".to_owned(), commit.to_owned()));
        }
        let run = runtime.block_on(ModelRun::start(
            client,
            &args.mlflow_experiment,
            run_name,
            &tags,
        ))?;
        let run = BlockingRun::new(runtime.handle().clone(), run);
        Ok(Some(Self { run, runtime }))
    }

    /// Ends the run: FINISHED, or FAILED with the error as a tag. Best
    /// effort: the command's own outcome is what is reported.
    pub fn finish(self, outcome: &Result<(), Failure>) {
        let error = outcome.as_ref().err().map(ToString::to_string);
        self.runtime
            .block_on(self.run.run().finish(error.as_deref()));
    }
}

impl Tracking for Tracker {
    fn run_id(&self) -> &str {
        self.run.run_id()
    }

    fn log_model(&self, artifact: &Artifact, facts: &TrainingFacts) -> Result<(), MlflowError> {
        self.run.log_model(artifact, facts)
    }

    fn register(&self, name: &str) -> Result<ModelVersion, MlflowError> {
        self.run.register(name)
    }

    fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<(), MlflowError> {
        self.run.set_alias(name, alias, version)
    }

    fn log_outcome(
        &self,
        metrics: &[(String, f64)],
        tags: &[(String, String)],
    ) -> Result<(), MlflowError> {
        self.run.log_outcome(metrics, tags)
    }
}
