//! Tracking: experiments, runs, their params, metrics and tags, and the
//! files logged to them through the proxied artifact store.

use reqwest::Method;
use serde_json::{json, Value};

use super::paths::proxied_path;
use super::transport::{Body, Expect};
use super::{field_str, MlflowClient, MlflowError};

/// Most MLflow's `log-batch` takes in one call (its documented limits are
/// 1000 metrics, 100 params, 100 tags).
const BATCH_PARAMS: usize = 100;

/// A run as the server describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    /// The run id.
    pub run_id: String,
    /// The experiment it belongs to.
    pub experiment_id: String,
    /// Where its artifacts live, e.g. `mlflow-artifacts:/1/<run>/artifacts`.
    pub artifact_uri: String,
}

/// Run states `runs/update` accepts at the end of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Completed.
    Finished,
    /// The command failed after the run began.
    Failed,
}

impl MlflowClient {
    /// The id of the experiment called `name`, created when missing.
    pub async fn experiment_id(&self, name: &str) -> Result<String, MlflowError> {
        match self
            .get("experiments/get-by-name", &[("experiment_name", name)])
            .await
        {
            Ok(v) => field_str(&v, "/experiment/experiment_id", "experiments/get-by-name"),
            Err(e) if e.is_not_found() => {
                let v = self
                    .post("experiments/create", json!({ "name": name }))
                    .await;
                match v {
                    Ok(v) => field_str(&v, "/experiment_id", "experiments/create"),
                    // Created by someone else in between.
                    Err(e) if e.is_already_exists() => Box::pin(self.experiment_id(name)).await,
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Starts a run in `experiment_id` with `tags`.
    pub async fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        tags: &[(String, String)],
    ) -> Result<RunInfo, MlflowError> {
        let v = self
            .post(
                "runs/create",
                json!({
                    "experiment_id": experiment_id,
                    "run_name": run_name,
                    "start_time": now_millis(),
                    "tags": key_values(tags),
                }),
            )
            .await?;
        run_info(&v, "runs/create")
    }

    /// The run's info, params, metrics and tags as MLflow returns them.
    pub async fn get_run(&self, run_id: &str) -> Result<Value, MlflowError> {
        self.get("runs/get", &[("run_id", run_id)]).await
    }

    /// Ends a run.
    pub async fn end_run(&self, run_id: &str, status: RunStatus) -> Result<(), MlflowError> {
        let status = match status {
            RunStatus::Finished => "FINISHED",
            RunStatus::Failed => "FAILED",
        };
        self.post(
            "runs/update",
            json!({ "run_id": run_id, "status": status, "end_time": now_millis() }),
        )
        .await
        .map(drop)
    }

    /// Logs params, metrics (step 0, now) and tags, in as many batches as
    /// MLflow's limits need.
    pub async fn log_batch(
        &self,
        run_id: &str,
        params: &[(String, String)],
        metrics: &[(String, f64)],
        tags: &[(String, String)],
    ) -> Result<(), MlflowError> {
        let timestamp = now_millis();
        let metrics: Vec<Value> = metrics
            .iter()
            .map(|(k, v)| json!({ "key": k, "value": v, "timestamp": timestamp, "step": 0 }))
            .collect();
        let mut first = true;
        for (i, params) in params.chunks(BATCH_PARAMS).enumerate() {
            let body = json!({
                "run_id": run_id,
                "params": key_values(params),
                // Metrics and tags fit their limits; sent once with the first batch.
                "metrics": if i == 0 { metrics.clone() } else { Vec::new() },
                "tags": if i == 0 { key_values(tags) } else { Vec::new() },
            });
            self.post("runs/log-batch", body).await?;
            first = false;
        }
        if first {
            let body = json!({ "run_id": run_id, "metrics": metrics, "tags": key_values(tags) });
            self.post("runs/log-batch", body).await?;
        }
        Ok(())
    }

    /// Sets one tag on a run.
    pub async fn set_tag(&self, run_id: &str, key: &str, value: &str) -> Result<(), MlflowError> {
        self.post(
            "runs/set-tag",
            json!({ "run_id": run_id, "key": key, "value": value }),
        )
        .await
        .map(drop)
    }

    /// Uploads `bytes` as `<run's artifact dir>/<rel_path>` through the
    /// server's proxied artifact store; returns the file's artifact URI.
    pub async fn upload_artifact(
        &self,
        run: &RunInfo,
        rel_path: &str,
        bytes: Vec<u8>,
    ) -> Result<String, MlflowError> {
        let uri = format!("{}/{rel_path}", run.artifact_uri.trim_end_matches('/'));
        let path = proxied_path(&uri)?;
        let body = Some(Body::Bytes(bytes));
        self.send(Method::PUT, &path, &[], body, Expect::Answer)
            .await?;
        Ok(uri)
    }
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn key_values(pairs: &[(String, String)]) -> Vec<Value> {
    pairs
        .iter()
        .map(|(k, v)| json!({ "key": k, "value": v }))
        .collect()
}

pub(super) fn run_info(v: &Value, endpoint: &str) -> Result<RunInfo, MlflowError> {
    Ok(RunInfo {
        run_id: field_str(v, "/run/info/run_id", endpoint)?,
        experiment_id: field_str(v, "/run/info/experiment_id", endpoint)?,
        artifact_uri: field_str(v, "/run/info/artifact_uri", endpoint)?,
    })
}
