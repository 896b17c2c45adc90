//! `pidman kill`: the SIGTERM / SIGKILL schedule on real processes, and the
//! processes it must refuse.

use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn a_server_that_obeys_sigterm_is_terminated() {
    let env = TestEnv::new();
    let mut server = bengal(&[]);
    let run = env.run(&["--json", "kill", &server.pid().to_string()]);
    run.expect(0);
    assert_eq!(run.json()["outcome"], "terminated");
    assert!(server.wait_for_exit(Duration::from_secs(5)).is_some());
}

#[test]
fn a_server_that_ignores_sigterm_is_killed_at_the_timeout() {
    let env = TestEnv::new();
    let mut server = bengal(&["--ignore-term"]);
    let started = Instant::now();
    let run = env.run(&[
        "--json",
        "kill",
        &server.pid().to_string(),
        "--timeout",
        "0.3",
    ]);
    let elapsed = started.elapsed();
    run.expect(0);
    assert_eq!(run.json()["outcome"], "killed");
    let status = server.wait_for_exit(Duration::from_secs(5)).expect("dead");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    // Never before the timeout. (How soon after it is measured by the
    // benchmark, not asserted here: these machines are noisy.)
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
}

#[test]
fn an_already_dead_process_is_gone() {
    let env = TestEnv::new();
    let run = env.run(&["--json", "kill", &dead_pid().to_string()]);
    run.expect(0);
    assert_eq!(run.json()["outcome"], "already-gone");
}

#[test]
fn pid_0_1_and_the_caller_are_refused() {
    let env = TestEnv::new();
    let me = std::process::id().to_string();
    for pid in ["0", "1", me.as_str()] {
        let run = env.run(&["--json", "kill", pid]);
        run.expect(1);
        let json = run.json();
        assert_eq!(json["gone"], false);
        assert_eq!(json["kind"], "denied", "{json}");
    }
}

#[test]
fn an_absurd_timeout_is_a_usage_error() {
    let env = TestEnv::new();
    let mut sleep = sleeper();
    for timeout in ["-1", "soon", "NaN"] {
        env.run(&["kill", &sleep.pid().to_string(), "--timeout", timeout])
            .expect(2);
    }
    assert!(sleep.running());
}

#[test]
fn another_users_process_is_not_signalled() {
    if !is_root() || !std::path::Path::new("/usr/bin/setpriv").exists() {
        crate::trust::skip(
            "another_users_process_is_not_signalled",
            "needs root and setpriv to run pidman as nobody",
        );
        return;
    }
    let env = TestEnv::new();
    std::fs::set_permissions(
        env.root(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let mut victim = sleeper(); // root's
    let output = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            PIDMAN,
            "--json",
            "kill",
        ])
        .arg(victim.pid().to_string())
        .current_dir(env.root())
        .env("PIDMAN_CACHE_DIR", env.root().join("cache"))
        .output()
        .unwrap();
    let run = Run::from(output);
    run.expect(1);
    let json = run.json();
    assert_eq!(json["gone"], false);
    assert!(json["reason"].as_str().unwrap().contains("uid 0"), "{json}");
    assert!(victim.running());
}
