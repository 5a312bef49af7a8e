//! The `nbserve` binary: the command line on top of the library, and the only
//! place where errors become process exit codes.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
