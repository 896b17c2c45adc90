//! Who a process is: the Bengal argv rule and the PID-reuse rule.

use crate::host::Host;
use crate::wit::bengal::pid_manager::process_table::{ProcessInfo, ProcessState};
use crate::wit::bengal::pid_manager::types::Pid;

/// The program names (lower-cased basenames) that start Bengal.
const BENGAL_PROGRAMS: [&str; 3] = ["bengal", "bengal.cli", "bengal.__main__"];

/// The sub-commands that run its dev server.
const SERVE_COMMANDS: [&str; 3] = ["serve", "s", "dev"];

/// How much later than its PID file's modification time a process may seem
/// to have started and still be the one that wrote it: process start times
/// are 10 ms ticks on Linux (1 s elsewhere) and file times have their own
/// granularity.
pub const START_SLACK_MS: u64 = 1_000;

/// True when `argv` runs a Bengal serve command: scanning from the end, the
/// last argument whose lower-cased basename is a Bengal program must be
/// followed directly by a serve command.
pub fn is_bengal_argv(argv: &[String]) -> bool {
    argv.iter()
        .rposition(|arg| BENGAL_PROGRAMS.contains(&program_name(arg).as_str()))
        .and_then(|at| argv.get(at + 1))
        .is_some_and(|next| SERVE_COMMANDS.contains(&next.as_str()))
}

/// An argument's program name: its basename (after the last `/` or `\\`),
/// lower-cased, without the `.exe` of a Windows program or the
/// `-script.py`/`-script.pyw` of setuptools' Windows launchers (pip's
/// `Scripts\\bengal.exe`, and `bengal-script.py` run by `python.exe`).
/// ASCII lower-casing: no other character lower-cases to a letter of these
/// names, and it spares the plugin Unicode's case tables.
fn program_name(arg: &str) -> String {
    let base = arg.rsplit(['/', '\\']).next().unwrap_or(arg);
    let name = base.to_ascii_lowercase();
    for suffix in [".exe", "-script.pyw", "-script.py"] {
        if let Some(stem) = name.strip_suffix(suffix) {
            return stem.to_owned();
        }
    }
    name
}

/// True when a process started too late to have written a file last
/// modified at `file_modified_ms`: the PID was reused.
pub fn started_after_file(process_start_ms: u64, file_modified_ms: u64) -> bool {
    process_start_ms > file_modified_ms.saturating_add(START_SLACK_MS)
}

/// `is-bengal-process`: false for anything that cannot be read or verified.
pub fn is_bengal_process(host: &impl Host, pid: Pid) -> bool {
    match host.inspect(pid) {
        Ok(info) => info.state == ProcessState::Running && is_bengal_argv(&info.argv),
        Err(_) => false,
    }
}

/// A process's command line for messages (its name when argv is hidden).
pub fn command_line(info: &ProcessInfo) -> String {
    if info.argv.is_empty() {
        format!("[{}]", info.name)
    } else {
        let mut line = String::new();
        for arg in &info.argv {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(arg);
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn bengal_serve_commands_are_recognised() {
        for line in [
            "bengal serve",
            "bengal s",
            "bengal dev",
            "/home/me/.venv/bin/bengal serve --port 5173",
            "python -m bengal serve",
            "python3 -m bengal.cli serve",
            "python -m bengal.__main__ dev",
            "uv run bengal s",
            "BENGAL serve",
            "/opt/Bengal.CLI serve",
            "bengal build bengal serve",
            r"C:\Users\me\.venv\Scripts\bengal.exe serve",
            r"C:\Users\me\.venv\Scripts\BENGAL.EXE serve --port 5173",
            "Bengal.exe dev",
            r"C:\Python313\python.exe C:\venv\Scripts\bengal-script.py serve",
            r"pythonw.exe C:\venv\Scripts\bengal-script.pyw s",
            r"C:\Python313\python.exe -m bengal serve",
        ] {
            assert!(is_bengal_argv(&argv(line)), "{line}");
        }
    }

    #[test]
    fn everything_else_is_not_bengal() {
        for line in [
            "",
            "bengal",
            "bengal build --profile dev",
            "bengal --verbose serve",
            "vim bengal.toml",
            "python -m bengalx serve",
            "bengal-serve",
            "sleep 100",
            "bengal serve bengal build",
            "bengal Serve",
            "python -m bengal.cli",
            r"C:\venv\Scripts\bengal.exe.bak serve",
            r"C:\venv\Scripts\bengalexe serve",
            r"C:\venv\Scripts\bengal.com serve",
            r"C:\venv\Scripts\bengal-script.exe.py serve",
            r"C:\venv\Scripts\bengal.exe build",
            "python.exe bengal-script serve",
        ] {
            assert!(!is_bengal_argv(&argv(line)), "{line}");
        }
    }

    #[test]
    fn reuse_needs_a_start_clearly_after_the_file() {
        let written = 1_700_000_000_000;
        assert!(!started_after_file(written - 5_000, written));
        assert!(!started_after_file(written, written));
        assert!(!started_after_file(written + START_SLACK_MS, written));
        assert!(started_after_file(written + START_SLACK_MS + 1, written));
        assert!(!started_after_file(u64::MAX, u64::MAX));
    }
}
