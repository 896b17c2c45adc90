//! The `pidman` command: see `pidman --help` and the README.

fn main() -> std::process::ExitCode {
    pidman::cli::main()
}
