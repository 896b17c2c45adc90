//! `pidman run` at an interactive shell, as a user meets it: bash with job
//! control on a pseudo-terminal (script(1)), keys typed as bytes. Ctrl-Z
//! stops the server and gives the shell its prompt back, `fg` continues
//! both, and Ctrl-C at `run`'s own prompt is "no" and stops `run`.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::*;
use crate::trust::skip;

/// An interactive bash on a pseudo-terminal; what it prints is collected
/// as it comes.
struct Shell {
    script: Child,
    output: Arc<Mutex<String>>,
    /// Processes the test must make sure are gone, by PID.
    started: Vec<u32>,
}

impl Shell {
    /// None (and a SKIP line) where script(1) or bash is missing.
    fn start(env: &TestEnv) -> Option<Shell> {
        for tool in ["script", "bash"] {
            if Command::new(tool).arg("--version").output().is_err() {
                skip("an interactive shell", &format!("no {tool}"));
                return None;
            }
        }
        let mut script = Command::new("script")
            .args(["-qfec", "bash --norc --noprofile -i", "/dev/null"])
            .current_dir(env.root())
            .env("PIDMAN_CACHE_DIR", test_cache())
            .env("PS1", "$ ")
            .env("TERM", "dumb")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("script(1)");
        let output = Arc::new(Mutex::new(String::new()));
        let mut stdout = script.stdout.take().unwrap();
        let sink = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Some(Shell {
            script,
            output,
            started: Vec::new(),
        })
    }

    fn type_keys(&mut self, keys: &str) {
        let stdin = self.script.stdin.as_mut().unwrap();
        stdin.write_all(keys.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// Wait (at most 20 s) for `text` in what the shell printed after
    /// `from` bytes; where it ends.
    fn wait_for(&self, text: &str, from: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            {
                let output = self.output.lock().unwrap();
                if let Some(at) = output.get(from..).and_then(|rest| rest.find(text)) {
                    return from + at + text.len();
                }
                assert!(
                    Instant::now() < deadline,
                    "never printed {text:?}; the terminal showed:\n{output}"
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn printed(&self) -> String {
        self.output.lock().unwrap().clone()
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        for &pid in &self.started {
            if state(pid).is_some() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let _ = self.script.kill();
        let _ = self.script.wait();
    }
}

/// The state letter `/proc` shows for `pid`, and its parent; none once it
/// is gone or a zombie.
fn state(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    (state != 'Z' && state != 'X').then_some((state, parent))
}

/// Wait (at most 10 s) until `pid` is stopped (`T`) or not, as `stopped`.
fn wait_stopped(pid: u32, stopped: bool, what: &str, shell: &Shell) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = state(pid).map(|(s, _)| s);
        if now.is_some_and(|s| (s == 'T') == stopped) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} (PID {pid}) is {now:?}, not {}; the terminal showed:\n{}",
            if stopped { "stopped" } else { "running" },
            shell.printed()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A server that prints its PID, then sleeps in short steps (so that a
/// Ctrl-C ends it at once), for about a minute.
const SERVER: &str = "python3 -c 'import os, time\nprint(\"server\", os.getpid(), \"up\", flush=True)\nfor _ in range(1200): time.sleep(0.05)'";

#[test]
fn ctrl_z_stops_run_and_its_server_and_fg_continues_both() {
    let env = TestEnv::new();
    let Some(mut shell) = Shell::start(&env) else {
        return;
    };
    shell.type_keys(&format!("{PIDMAN} run -- {SERVER}\n"));
    let at = shell.wait_for("server ", 0);
    let end = shell.wait_for(" up", at);
    let server: u32 = shell.printed()[at..end - 3].trim().parse().unwrap();
    let (_, run) = state(server).expect("the server runs");
    shell.started.extend([server, run]);

    shell.type_keys("\x1a"); // Ctrl-Z
    wait_stopped(server, true, "the server", &shell);
    wait_stopped(run, true, "pidman run", &shell);
    // The shell has its prompt back: it runs what is typed.
    shell.type_keys("echo $((40 + 2))-at-the-prompt\n");
    let at = shell.wait_for("42-at-the-prompt", end);

    shell.type_keys("fg\n");
    wait_stopped(server, false, "the server", &shell);
    wait_stopped(run, false, "pidman run", &shell);
    // In the foreground again, the server has the terminal: Ctrl-C ends it,
    // and run ends with it.
    std::thread::sleep(Duration::from_millis(200));
    shell.type_keys("\x03");
    shell.type_keys("echo run-ended-$((1))\n");
    shell.wait_for("run-ended-1", at);
    let deadline = Instant::now() + Duration::from_secs(10);
    while state(server).is_some() || state(run).is_some() {
        assert!(Instant::now() < deadline, "{}", shell.printed());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!env.pid_file().exists(), "run removed its PID file");
}

#[test]
fn ctrl_c_at_runs_prompt_is_no_and_stops_run() {
    let env = TestEnv::new();
    let port = free_port();
    let mut stale = bengal(&["--port", &port.to_string()]);
    env.write_pid_file(stale.pid().to_string());
    let Some(mut shell) = Shell::start(&env) else {
        return;
    };
    let marker = env.root().join("started");
    shell.type_keys(&format!(
        "{PIDMAN} run --port {port} -- touch {}\n",
        marker.display()
    ));
    let at = shell.wait_for("[Y/n]", 0);
    std::thread::sleep(Duration::from_millis(200));
    shell.type_keys("\x03"); // Ctrl-C at the prompt
    // Then Enter, which would be "yes" to a prompt still waiting.
    std::thread::sleep(Duration::from_millis(300));
    // (`$((1))`: the line's echo on the terminal is not its output.)
    shell.type_keys("\necho run-said-$((1))-$?\n");
    let end = shell.wait_for("run-said-1-", at);
    let printed = shell.printed();
    assert!(
        printed[end..].starts_with("130"),
        "run ends as Ctrl-C ends a command:\n{printed}"
    );
    assert!(
        printed[at..].contains("SIGINT: not started"),
        "it says why:\n{printed}"
    );
    assert!(stale.running(), "Ctrl-C is no: the server is not stopped");
    assert!(!marker.exists(), "the new server never started");
    assert_eq!(
        env.read_pid_file().map(|s| s.trim().to_owned()),
        Some(stale.pid().to_string()),
        "the PID file is kept"
    );
}
