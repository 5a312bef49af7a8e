//! What the commands write to standard output and standard error.
//!
//! Rust ignores SIGPIPE, so writing to a pipe whose reader has gone
//! (`nbserve predict ... | head`) fails with `BrokenPipe` instead of ending
//! the process, and the standard `println!` panics on it (exit 101). The
//! commands write through the macros below instead, and a reader that went
//! away is treated the way ripgrep and other Rust command-line tools do: the
//! output stops, nothing is printed about it, and the exit status is the
//! command's own (0 when it succeeded). Only the commands whose output is
//! their product (`predict`) stop early; the others finish their work
//! (a model written, a promotion recorded) even when nobody reads the
//! report. Any other failure to write standard output (a full disk) fails
//! the command with exit 1 and a message, once the command is done.
//!
//! Standard error carries notes and progress: writing it is best effort, so
//! a closed standard error never stops a command either.

use std::io::Write;
use std::sync::Mutex;

use super::exit::Stdout;
use super::Failure;

/// The first failed write to standard output; nothing more is written
/// after it (what follows would be a hole in the output).
static STDOUT_FAILED: Mutex<Option<std::io::Error>> = Mutex::new(None);

/// `print!` for a command's results: never panics (see the module).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::print(format_args!($($arg)*))
    };
}

/// `println!` for a command's results: never panics (see the module).
macro_rules! outln {
    () => {
        $crate::cli::output::print(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprint!` for notes and progress: best effort, never panics.
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::cli::output::note(format_args!($($arg)*))
    };
}

/// `eprintln!` for notes and progress: best effort, never panics.
macro_rules! noteln {
    () => {
        $crate::cli::output::note(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::note(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Writes to standard output unless an earlier write failed; a failure is
/// kept for [`finish`].
pub(super) fn print(args: std::fmt::Arguments<'_>) {
    let mut failed = STDOUT_FAILED.lock().unwrap_or_else(|e| e.into_inner());
    if failed.is_none() {
        if let Err(e) = std::io::stdout().lock().write_fmt(args) {
            *failed = Some(e);
        }
    }
}

/// Writes to standard error, ignoring failures.
pub(super) fn note(args: std::fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(args);
}

/// Called once the command is done: flushes standard output, and turns a
/// failed write into the command's outcome (see [`write_failure`]).
pub(super) fn finish() -> Result<(), Failure> {
    let mut failed = STDOUT_FAILED.lock().unwrap_or_else(|e| e.into_inner());
    if failed.is_none() {
        if let Err(e) = std::io::stdout().lock().flush() {
            *failed = Some(e);
        }
    }
    match failed.take() {
        Some(e) => Err(write_failure(e)),
        None => Ok(()),
    }
}

/// How a failed write to standard output ends a command: quietly with
/// the command's own code when the reader went away, else naming the error.
pub(super) fn write_failure(e: std::io::Error) -> Failure {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Failure::from(Stdout::ReaderGone).reported()
    } else {
        Failure::from(Stdout::Failed(e))
    }
}
