//! The host's hard limits, proven with a deliberately broken plugin
//! (`tests/plugins/broken`): a loop, unbounded allocation, a crash, and a
//! reach outside the granted directory. Each is stopped and reported as one
//! clear error; the host survives and the PID file is untouched.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::support::*;

/// Build the broken plugin once per test run.
fn broken_plugin() -> &'static str {
    static PLUGIN: OnceLock<PathBuf> = OnceLock::new();
    PLUGIN.get_or_init(|| build_broken(&[])).to_str().unwrap()
}

/// Build the broken plugin with `features`, in a target directory of its own.
fn build_broken(features: &[&str]) -> PathBuf {
    let manifest = fixture("../plugins/broken/Cargo.toml");
    let name = ["broken-plugin"]
        .iter()
        .chain(features)
        .copied()
        .collect::<Vec<_>>();
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name.join("-"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .args(features.iter().flat_map(|f| ["--features", f]))
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .status()
        .expect("run cargo for the broken plugin");
    assert!(status.success(), "building tests/plugins/broken failed");
    target.join("wasm32-wasip2/release/pidman_broken_plugin.wasm")
}

#[test]
fn a_plugin_that_imports_the_network_is_refused_before_it_runs() {
    let plugin = build_broken(&["network"]);
    let env = TestEnv::new();
    env.write_pid_file("123\n");
    let run = env.run(&["--plugin", plugin.to_str().unwrap(), "port", "9"]);
    run.expect(2);
    assert!(
        run.stderr.contains("does not fit") && run.stderr.contains("wasi:sockets"),
        "refused at load, naming the import: {}",
        run.stderr
    );
    assert_eq!(env.read_pid_file().as_deref(), Some("123\n"));
}

#[test]
fn an_endless_loop_is_stopped_by_fuel() {
    let env = TestEnv::new();
    env.write_pid_file("123\n");
    let run = env.run(&["--plugin", broken_plugin(), "check"]);
    run.expect(2);
    assert!(run.stderr.contains("fuel"), "{}", run.stderr);
    assert_eq!(
        run.stderr.trim().lines().count(),
        1,
        "one line: {}",
        run.stderr
    );
    assert_eq!(
        env.read_pid_file().as_deref(),
        Some("123\n"),
        "the PID file is untouched"
    );
}

#[test]
fn unbounded_allocation_is_stopped_at_the_memory_limit() {
    let env = TestEnv::new();
    let run = env.run(&["--plugin", broken_plugin(), "is-bengal", "5"]);
    run.expect(2);
    assert!(run.stderr.contains("memory limit"), "{}", run.stderr);
}

#[test]
fn a_crash_is_an_error_not_a_host_crash() {
    let env = TestEnv::new();
    let mut sleep = sleeper();
    let run = env.run(&[
        "--json",
        "--plugin",
        broken_plugin(),
        "kill",
        &sleep.pid().to_string(),
    ]);
    run.expect(2);
    let json = run.json();
    assert_eq!(json["error"]["kind"], "plugin");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("crashed"),
        "{json}"
    );
    assert!(sleep.running());
}

#[test]
fn the_plugin_sees_only_the_pid_files_directory() {
    let env = TestEnv::new();
    let run = env.run(&["--plugin", broken_plugin(), "write"]);
    run.expect(2);
    assert!(run.stderr.contains("/etc/pidman-escape"), "{}", run.stderr);
    assert!(!std::path::Path::new("/etc/pidman-escape").exists());
}

#[test]
fn the_library_survives_a_trap_and_says_so_on_the_next_call() {
    let env = TestEnv::new();
    let plugin = pidman::Plugin::from_file_cached_in(
        std::path::Path::new(broken_plugin()),
        Some(&test_cache()),
    )
    .unwrap();
    let mut pids =
        pidman::PidManager::in_root(&plugin, env.root(), pidman::Native::default(), false).unwrap();
    let first = pids.check_stale_pid().unwrap_err();
    assert_eq!(first.kind(), "plugin");
    let second = pids.check_stale_pid().unwrap_err();
    assert!(second.to_string().contains("failed earlier"), "{second}");
}

/// Run the broken plugin's `args` with a 500 ms call budget: it must be
/// stopped with one line on stderr, well before the test gives up on it.
fn stopped_within_budget(env: &TestEnv, args: &[&str]) -> Run {
    let mut full = vec!["--plugin", broken_plugin()];
    full.extend_from_slice(args);
    let child = env
        .command(&full)
        .env("PIDMAN_CALL_BUDGET_MS", "500")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let what = format!("pidman {args:?}");
    let run = finish_within(child, std::time::Duration::from_secs(30), &what);
    run.expect(2);
    assert_eq!(
        run.stderr.trim().lines().count(),
        1,
        "one line: {}",
        run.stderr
    );
    run
}

#[test]
fn a_plugin_waiting_forever_for_an_exit_is_stopped_by_its_budget() {
    let env = TestEnv::new();
    env.write_pid_file("123");
    let run = stopped_within_budget(&env, &["remove"]);
    assert!(run.stderr.contains("time budget"), "{}", run.stderr);
    assert_eq!(env.read_pid_file().as_deref(), Some("123"));
}

#[test]
fn a_plugin_sleeping_forever_through_wasi_is_stopped_by_its_budget() {
    let env = TestEnv::new();
    let run = stopped_within_budget(&env, &["port", "5173"]);
    assert!(run.stderr.contains("time budget"), "{}", run.stderr);
}

#[test]
fn a_plugin_waiting_forever_for_a_lock_is_stopped_by_its_budget() {
    let env = TestEnv::new();
    // The test holds the lock the plugin asks for.
    let lock = std::fs::File::create(env.root().join(".bengal.pid.lock")).unwrap();
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| e)
        .unwrap();
    let run = stopped_within_budget(&env, &["acquire"]);
    assert!(run.stderr.contains("time budget"), "{}", run.stderr);
    drop(held);
}

#[test]
fn a_plugin_blocked_in_the_host_on_a_fifo_is_stopped_by_the_watchdog() {
    let env = TestEnv::new();
    nix::unistd::mkfifo(
        &env.root().join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let run = stopped_within_budget(&env, &["preflight"]);
    assert!(run.stderr.contains("time budget"), "{}", run.stderr);
}

#[test]
fn a_plugin_cannot_name_a_pid_file_outside_its_root() {
    let env = TestEnv::new();
    let root = env.root().join("grant-escape");
    std::fs::create_dir(&root).unwrap();
    let run = env.run(&[
        "--plugin",
        broken_plugin(),
        "--root",
        root.to_str().unwrap(),
        "path",
    ]);
    run.expect(2);
    assert!(
        run.stderr.contains("outside the project root"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_hosts_signal_floor_holds_whatever_the_plugin_asks() {
    // The broken plugin's `plan-stop` asks the host itself to SIGTERM PID
    // 1, pidman and pidman's parent (this test), past every rule of the
    // real plugin: the host refuses each.
    let env = TestEnv::new();
    let run = env.run(&[
        "--json",
        "--plugin",
        broken_plugin(),
        "kill",
        "--dry-run",
        "4242",
    ]);
    run.expect(1);
    let reason = run.json()["reason"].as_str().unwrap().to_owned();
    assert_eq!(reason.matches(": denied").count(), 3, "{reason}");
    assert!(reason.starts_with("1: denied"), "{reason}");
    // And this test, pidman's parent, is still here to say so.
}

/// A directory inside the grant that is a symlink to one outside it: the
/// files capability resolves every path beneath the granted directory,
/// following no symlink on the way, so a plugin can neither look at nor
/// create a file through it.
#[test]
fn a_symlinked_directory_inside_the_grant_leads_nowhere() {
    let env = TestEnv::new();
    let outside = env.root().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), "x").unwrap();
    let root = env.root().join("symlink-escape");
    std::fs::create_dir(&root).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("escape-link")).unwrap();
    let run = env.run(&[
        "--plugin",
        broken_plugin(),
        "--root",
        root.to_str().unwrap(),
        "check",
    ]);
    run.expect(2);
    assert!(
        run.stderr.contains("owner: Err(") && run.stderr.contains("lock: Err("),
        "both refused: {}",
        run.stderr
    );
    assert!(run.stderr.contains("symlink"), "says why: {}", run.stderr);
    assert!(
        !outside.join("planted.lock").exists(),
        "nothing created outside the grant"
    );
}

/// The budget's clamps, where no watchdog stands behind them (the library:
/// the CLI's watchdog would end a blocked call with the same message): a
/// lock wait, a WASI sleep and a wait for an exit, each asked for forever
/// by the broken plugin, are each cut to what is left of a 500 ms budget.
#[test]
fn the_library_clamps_each_blocking_request_to_the_calls_budget() {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    let env = TestEnv::new();
    env.write_pid_file("123");
    // The lock the plugin waits for, held by the test.
    let lock = std::fs::File::create(env.root().join(".bengal.pid.lock")).unwrap();
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| e)
        .unwrap();
    let budget = Duration::from_millis(500);
    for what in ["a lock wait", "a WASI sleep", "a wait for an exit"] {
        let (done, answer) = mpsc::channel();
        let root = env.root().to_path_buf();
        std::thread::spawn(move || {
            let plugin = pidman::Plugin::from_file_cached_in(
                std::path::Path::new(broken_plugin()),
                Some(&test_cache()),
            )
            .unwrap();
            let mut pids =
                pidman::PidManager::in_root(&plugin, &root, pidman::Native::default(), false)
                    .unwrap();
            pids.set_budget(budget);
            let start = Instant::now();
            let result = match what {
                "a lock wait" => pids.acquire(None).map(|_| ()),
                "a WASI sleep" => pids.process_on_port(5173).map(|_| ()),
                _ => pids.remove_pid_file(None).map(|_| ()),
            };
            let _ = done.send((start.elapsed(), result.map_err(|e| e.to_string())));
        });
        // Unclamped, each would block for days: 20 s is "never".
        let (elapsed, result) = answer
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("{what} was not cut to the budget"));
        let error = result.expect_err(what);
        assert!(error.contains("time budget"), "{what}: {error}");
        assert!(
            elapsed >= budget,
            "{what}: ended before its budget: {elapsed:?}"
        );
        assert!(
            elapsed < budget * 8,
            "{what}: took {elapsed:?}, far past its {budget:?} budget"
        );
    }
    assert_eq!(env.read_pid_file().as_deref(), Some("123"));
}
