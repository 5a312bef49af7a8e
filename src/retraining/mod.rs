//! Retraining: merge the base data and the feedback logs, fit with the
//! cross-validated tuning, judge the candidate on a fixed holdout against
//! the minimum, against the model in service and by the servers' own rule,
//! and promote it (or roll back) without ever leaving `model.path`
//! half-written.
//!
//! The use cases are [`run`] (a retrain, from its [`Plan`] to its
//! [`Report`]), [`promote`] (a registry alias moved, gated) and
//! [`rollback`]; the command line only parses, prints and maps their errors
//! to exit codes. Their parts: [`merge`] (pure), [`judge`] (the gates and
//! the report), [`store`] (kept versions, history, lock, atomic writes), and
//! the model in service read from any source `model.path` accepts, with
//! the servers' limits.

mod base;
mod current;
pub mod judge;
pub mod merge;
mod plan;
mod promote;
mod rollback;
mod run;
pub mod store;

pub use current::{read_model_file, score_in_service, KeptModel, SourceBytes, SourceError};
pub use judge::Report;
pub use plan::{Inputs, Plan, PlanError, Registration, Target};
pub use promote::{promote, PromoteError};
pub use rollback::{rollback, RollbackError, RolledBack};
pub use run::{register, run, Progress, RetrainError};

#[cfg(test)]
mod tests;
