//! Command-line interface: parses arguments, hands over to the library,
//! prints, and maps its errors to the documented exit codes through one
//! table ([`exit`]); the library knows neither.

// First: its macros (`outln!`, `noteln!`, ...) are used by the modules below.
#[macro_use]
mod output;

mod args;
mod commands;
mod exit;
mod promote;
mod reference;
mod retrain;
mod serve;
mod shard_args;
mod shards;
mod tracking;
mod tune;

use std::fmt;
use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};
use exit::ExitCoded;

/// What a command ends with.
type CmdResult = Result<(), Failure>;

/// Why a command failed: the error (which decides the exit code, see
/// [`exit`]) and, when the command words it itself, the message printed.
pub struct Failure {
    error: Box<dyn ExitCoded>,
    /// Replaces the error's own text (flag names, the file it is about).
    message: Option<String>,
    /// Already reported (through the log, or deliberately silent): `main`
    /// prints nothing more.
    logged: bool,
}

impl<E: ExitCoded + 'static> From<E> for Failure {
    fn from(error: E) -> Self {
        Self {
            error: Box::new(error),
            message: None,
            logged: false,
        }
    }
}

impl Failure {
    /// The same failure, printed as `message`.
    fn worded(mut self, message: impl fmt::Display) -> Self {
        self.message = Some(message.to_string());
        self
    }

    /// The same failure, printed after `what: ` (the file or version it is
    /// about).
    fn about(self, what: impl fmt::Display) -> Self {
        let message = format!("{what}: {self}");
        self.worded(message)
    }

    /// The same failure, reported already: nothing more is printed.
    fn reported(mut self) -> Self {
        self.logged = true;
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.message {
            Some(m) => f.write_str(m),
            None => self.error.fmt(f),
        }
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let result = match cli.command {
        Command::Train(a) => commands::train(a),
        Command::Tune(a) => tune::tune(a),
        Command::Split(a) => commands::split(a),
        Command::Evaluate(a) => commands::evaluate(a),
        Command::Predict(a) => commands::predict(a),
        Command::Check(a) => commands::check(a),
        Command::Serve(a) => serve::serve(a),
        Command::Healthcheck(a) => serve::healthcheck(a),
        Command::Config(a) => serve::config(a),
        Command::Promote(a) => promote::promote(a),
        Command::Retrain(a) => retrain::retrain(a),
        Command::Rollback(a) => retrain::rollback(a),
        Command::Count(a) => shards::count(a),
        Command::Merge(a) => shards::merge(a),
        Command::CvScore(a) => shards::cv_score(a),
        Command::Reference(a) => reference::reference(a),
    };
    // A command's own failure comes first; standard output's is checked
    // (and flushed) either way.
    let written = output::finish();
    match result.and(written) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(f) => {
            if !f.logged {
                noteln!("nbserve: {f}");
            }
            ExitCode::from(f.error.exit_code())
        }
    }
}

/// Prints clap's error (or the help or version asked for) and exits with its
/// code; a flag `serve` or `config` does not know may be a setting, which is
/// then named with its environment variable.
fn usage_error(e: clap::Error) -> ExitCode {
    let _ = e.print();
    let command = std::env::args().nth(1);
    if matches!(command.as_deref(), Some("serve" | "config")) {
        if let Some(tip) = setting_tip(&e) {
            noteln!("\ntip: {tip}");
        }
    }
    ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(exit::USAGE))
}

/// For an unknown `--flag`, the settings it may mean (`--max-batch-size`:
/// `server.max_batch_size`; `--log-format`: `log.format`) and how to set them.
fn setting_tip(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    let ContextValue::String(arg) = e.get(ContextKind::InvalidArg)? else {
        return None;
    };
    let flag = arg
        .trim_start_matches('-')
        .split('=')
        .next()?
        .replace('-', "_");
    let every = "`nbserve serve --help` lists every variable";
    let meant: Vec<String> = nbserve::settings::variables()
        .into_iter()
        .filter(|v| {
            v.key.rsplit('.').next() == Some(flag.as_str()) || v.key.replace('.', "_") == flag
        })
        .map(|v| format!("{} (the setting {})", v.env, v.key))
        .collect();
    Some(if meant.is_empty() {
        format!("settings are NBSERVE__SECTION__KEY environment variables or keys of a --config file; {every}")
    } else {
        format!(
            "{arg} is not a flag; set {} or the key in a --config file; {every}",
            meant.join(" or ")
        )
    })
}
