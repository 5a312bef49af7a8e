//! The `nbserve` command line; everything lives in the library.

fn main() -> std::process::ExitCode {
    nbserve::cli::main()
}
