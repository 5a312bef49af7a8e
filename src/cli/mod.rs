//! Command-line interface: parses arguments, hands over to the library and
//! maps its errors to the documented exit codes (the library knows neither).

// First: its macros (`outln!`, `noteln!`, ...) are used by the modules below.
#[macro_use]
mod output;

mod args;
mod commands;
mod reference;
mod retrain;
mod tracking;
mod tune;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};

/// Process exit codes (the book's reference: `nbserve reference exit-codes`).
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Any other failure (I/O, runtime).
    pub const FAILURE: u8 = 1;
    /// Bad command line (clap's own code).
    pub const USAGE: u8 = 2;
    /// Invalid settings.
    pub const SETTINGS: u8 = 3;
    /// Invalid model artifact.
    pub const INVALID_MODEL: u8 = 4;
    /// Unusable data file (CSV). The documented contract gives invalid models
    /// and invalid data one code.
    pub const INVALID_DATA: u8 = INVALID_MODEL;
    /// The deployment gate rejected the model.
    pub const GATE_REJECTED: u8 = 5;
    /// `healthcheck` found the server unhealthy.
    pub const UNHEALTHY: u8 = 6;
    /// `retrain` put the candidate in service, but the version history or
    /// the pruning that follows failed.
    pub const PROMOTED_WITH_ERROR: u8 = 7;
}

/// A failure with the exit code it maps to.
pub struct Failure {
    code: u8,
    message: String,
    /// Already reported through the log: `main` prints nothing more.
    logged: bool,
}

impl Failure {
    /// A failure exiting with `code` after printing `message`.
    pub fn new(code: u8, message: impl std::fmt::Display) -> Self {
        Self {
            code,
            message: message.to_string(),
            logged: false,
        }
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Train(a) => commands::train(a),
        Command::Tune(a) => tune::tune(a),
        Command::Split(a) => commands::split(a),
        Command::Evaluate(a) => commands::evaluate(a),
        Command::Predict(a) => commands::predict(a),
        Command::Check(a) => commands::check(a),
        Command::Serve(a) => commands::serve(a),
        Command::Healthcheck(a) => commands::healthcheck(a),
        Command::Config(a) => commands::config(a),
        Command::Promote(a) => commands::promote(a),
        Command::Retrain(a) => retrain::retrain(a),
        Command::Rollback(a) => retrain::rollback(a),
        Command::Reference(a) => reference::reference(a),
    };
    // A command's own failure comes first; standard output's is checked
    // (and flushed) either way.
    let written = output::finish();
    match result.and(written) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(f) => {
            if !f.logged {
                noteln!("nbserve: {}", f.message);
            }
            ExitCode::from(f.code)
        }
    }
}
