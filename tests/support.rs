//! The test environment: a temporary project root, the `pidman` binary, and
//! child processes that are killed (by PID) and reaped on drop.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const PIDMAN: &str = env!("CARGO_BIN_EXE_pidman");

/// The fake Bengal server script.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

/// The precompiled-plugin cache of the tests (never the user's own).
pub fn test_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("pidman-cache")
}

/// The embedded plugin, cached in [`test_cache`].
pub fn embedded<B: pidman::Backend>() -> pidman::Plugin<B> {
    pidman::Plugin::embedded_cached_in(Some(&test_cache())).expect("the embedded plugin loads")
}

/// A temporary project root and a way to run pidman in it.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
}

impl TestEnv {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid_file(&self) -> PathBuf {
        self.root().join(".bengal.pid")
    }

    pub fn write_pid_file(&self, contents: impl AsRef<[u8]>) {
        std::fs::write(self.pid_file(), contents).unwrap();
    }

    pub fn read_pid_file(&self) -> Option<String> {
        std::fs::read_to_string(self.pid_file()).ok()
    }

    /// `pidman ARGS` in the root, with a shared precompiled-plugin cache.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(PIDMAN);
        cmd.args(args)
            .current_dir(self.root())
            .env("PIDMAN_CACHE_DIR", test_cache())
            .stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let output = self.command(args).output().expect("run pidman");
        Run::from(output)
    }
}

/// A finished pidman.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    #[track_caller]
    pub fn expect(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code; stdout: {}; stderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        let lines: Vec<&str> = self.stdout.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "one JSON object on stdout, got {:?}",
            self.stdout
        );
        serde_json::from_str(lines[0]).expect("valid JSON")
    }
}

/// A child process, killed by its PID and reaped when dropped.
pub struct Proc {
    pub child: Child,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it still runs (not exited, not a zombie we have not reaped).
    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Wait for it to end, at most `limit`.
    pub fn wait_for_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start a command and wait for its "ready" line on stdout.
pub fn start_ready(mut cmd: Command) -> Proc {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let proc = Proc { child };
    assert!(
        line.starts_with("ready"),
        "the fixture did not start: {line:?}"
    );
    proc
}

/// A fake Bengal server: `python3 .../bengal serve ARGS`.
pub fn bengal(args: &[&str]) -> Proc {
    let mut cmd = Command::new(fixture("bengal"));
    cmd.arg("serve").args(args);
    start_ready(cmd)
}

/// The same script, but not a serve command: a program that is not Bengal.
pub fn not_bengal(args: &[&str]) -> Proc {
    let mut cmd = Command::new(fixture("bengal"));
    cmd.arg("build").args(args);
    start_ready(cmd)
}

/// A plain `sleep`.
pub fn sleeper() -> Proc {
    Proc {
        child: Command::new("sleep")
            .arg("60")
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    }
}

/// A PID that no process has: a child that ran and was reaped.
pub fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether the host takes its portable paths (`PIDMAN_PORTABLE=1`: what
/// macOS runs), where a few Linux-only promises do not apply.
pub fn portable() -> bool {
    std::env::var("PIDMAN_PORTABLE").as_deref() == Ok("1")
}

/// Whether this build has the test-only pause points (the `test-pause`
/// feature, which `.ci/run` turns on); if not, `test` says SKIP.
pub fn pause_points(test: &str) -> bool {
    if !cfg!(feature = "test-pause") {
        crate::trust::skip(
            test,
            "built without the pause points: cargo test --features pidman/test-pause (as .ci/run does)",
        );
    }
    cfg!(feature = "test-pause")
}

/// Whether the tests run as root (some safety tests need another user).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Wait for `child` at most `limit`; kill it (by PID) and fail if it hangs.
pub fn finish_within(mut child: Child, limit: Duration, what: &str) -> Run {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} hung for {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Run::from(child.wait_with_output().unwrap())
}
