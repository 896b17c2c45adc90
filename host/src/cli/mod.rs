//! The `pidman` command line, laid out as fd's: a thin [`main`], the
//! arguments (`args`, clap), exit statuses (`exit`), one function per
//! command (`commands`, and `start` for `preflight` and `run`), and the
//! output (`output`). Every decision is the plugin's: this module only
//! asks, prints and maps answers to exit statuses.

mod args;
mod commands;
mod exit;
mod output;
mod start;
mod tree;

use std::process::ExitCode;

use clap::Parser;

pub use args::Cli;

/// Run the command line; errors print once, as one line (or one JSON
/// object), with exit status 2.
pub fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        // --help and --version.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => return output::usage_error(args.iter().any(|a| a == "--json"), &e),
    };
    // Generated from the same definitions as the parser: never out of step.
    match cli.command {
        args::Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "pidman", &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        args::Command::Man => {
            let page = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command());
            return match page.render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("pidman: could not write the man page: {e}");
                    ExitCode::from(2)
                }
            };
        }
        _ => {}
    }
    output::finish(cli.json, cli.command.name(), commands::run(&cli))
}
