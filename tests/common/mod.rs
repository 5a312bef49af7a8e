//! What the test binaries that run the `nbserve` executable share
//! (`tests/cli.rs`, `tests/retrain.rs`).

use std::process::{Command, Output};

/// Runs `nbserve args` from the crate root with `env` added; a caller's
/// MLflow server must not receive the tests' runs, nor a caller's log
/// filter change what the tests read.
pub fn nbserve_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nbserve"))
        .args(args)
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

/// A finished command's stderr, as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
