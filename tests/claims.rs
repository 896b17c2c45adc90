//! `pidman write`, `remove`, `acquire` and `run`: claiming the PID file.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn write_defaults_to_the_calling_process() {
    let env = TestEnv::new();
    env.run(&["write"]).expect(0);
    assert_eq!(env.read_pid_file().unwrap(), std::process::id().to_string());
    env.run(&["write", "--pid", "4321"]).expect(0);
    assert_eq!(env.read_pid_file().unwrap(), "4321");
    env.run(&["write", "--pid", "0"]).expect(2);
    assert_eq!(
        env.read_pid_file().unwrap(),
        "4321",
        "a bad write loses nothing"
    );
}

#[test]
fn write_creates_the_directory_and_leaves_no_temporary_files() {
    let env = TestEnv::new();
    env.run(&["write", "--pid-file", "run/dev/server.pid", "--pid", "77"])
        .expect(0);
    let dir = env.root().join("run/dev");
    assert_eq!(
        std::fs::read_to_string(dir.join("server.pid")).unwrap(),
        "77"
    );
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["server.pid", "server.pid.lock"],
        "no temporary file"
    );
}

#[test]
fn write_replaces_a_symlink_and_never_its_target() {
    let env = TestEnv::new();
    let target = env.root().join("precious");
    std::fs::write(&target, "keep me").unwrap();
    std::os::unix::fs::symlink(&target, env.pid_file()).unwrap();
    env.run(&["write", "--pid", "77"]).expect(0);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
    assert!(
        !env.pid_file()
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(env.read_pid_file().unwrap(), "77");
}

#[test]
fn write_outside_a_writable_directory_fails_clearly() {
    let env = TestEnv::new();
    std::fs::write(env.root().join("file"), "").unwrap();
    let run = env.run(&["write", "--pid-file", "file/x.pid"]);
    run.expect(2);
    assert!(run.stderr.contains("not a directory"), "{}", run.stderr);
}

#[test]
fn remove_is_idempotent() {
    let env = TestEnv::new();
    env.write_pid_file("123");
    assert_eq!(
        env.run(&["--json", "remove"]).expect(0).json()["removed"],
        true
    );
    assert_eq!(env.read_pid_file(), None);
    assert_eq!(
        env.run(&["--json", "remove"]).expect(0).json()["removed"],
        false
    );
}

#[test]
fn acquire_claims_for_the_caller_unless_a_server_holds_it() {
    let env = TestEnv::new();
    env.write_pid_file("garbage");
    env.run(&["acquire"]).expect(0);
    assert_eq!(env.read_pid_file().unwrap(), std::process::id().to_string());

    let server = bengal(&[]);
    env.write_pid_file(server.pid().to_string());
    let run = env.run(&["--json", "acquire"]);
    run.expect(1);
    assert_eq!(run.json()["holder"], server.pid());
    assert_eq!(env.read_pid_file().unwrap(), server.pid().to_string());
}

/// `rounds` rounds of the race: `racers` Bengal servers each try to claim
/// the same (absent) PID file at once; exactly one may win each round.
fn race(rounds: usize, racers: usize) {
    let env = TestEnv::new();
    let servers: Vec<Proc> = (0..racers).map(|_| bengal(&[])).collect();
    for round in 0..rounds {
        let _ = std::fs::remove_file(env.pid_file());
        let children: Vec<_> = servers
            .iter()
            .map(|s| {
                env.command(&["acquire", "--pid", &s.pid().to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let codes: Vec<i32> = children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap().status.code().unwrap())
            .collect();
        let winners = codes.iter().filter(|&&c| c == 0).count();
        assert_eq!(winners, 1, "round {round}: exit codes {codes:?}");
        assert!(
            codes.iter().all(|&c| c == 0 || c == 1),
            "round {round}: {codes:?}"
        );
        let named: u32 = env.read_pid_file().unwrap().parse().unwrap();
        let winner = codes.iter().position(|&c| c == 0).unwrap();
        assert_eq!(
            named,
            servers[winner].pid(),
            "round {round}: the file names the winner"
        );
    }
}

#[test]
fn racing_acquires_have_exactly_one_winner() {
    race(5, 32);
}

#[test]
#[ignore = "stress: 100 rounds of 32 racers (run by bench/stress.sh, which CI calls)"]
fn racing_acquires_stress() {
    race(100, 32);
}

/// SIGKILL `writes` writers at random points: the file always holds a
/// complete PID, the last one written or the one before.
fn killed_writers(writes: u32) {
    let env = TestEnv::new();
    env.run(&["write", "--pid", "1000000"]).expect(0);
    let mut committed = 1_000_000u32;
    let mut seed = 0x9e37_79b9_u32;
    let mut completed = 0;
    for i in 0..writes {
        let pid = 1_000_001 + i;
        let mut writer = env
            .command(&["write", "--pid", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        std::thread::sleep(Duration::from_micros(u64::from(seed % 4_000)));
        let _ = writer.kill();
        let status = writer.wait().unwrap();
        let now: u32 = env
            .read_pid_file()
            .expect("the PID file never disappears")
            .parse()
            .expect("the PID file always holds a complete PID");
        assert!(
            now == committed || now == pid,
            "write {i}: found {now}, expected {committed} or {pid}"
        );
        if status.success() {
            assert_eq!(now, pid, "a finished write is durable");
            completed += 1;
        }
        committed = now;
    }
    eprintln!("{writes} writers killed at random points, {completed} finished first");
    // The next write sweeps the temporary files the dead writers left.
    env.run(&["write", "--pid", "42"]).expect(0);
    let names: Vec<String> = std::fs::read_dir(env.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(
        names,
        [".bengal.pid", ".bengal.pid.lock"],
        "the lock file stays"
    );
}

#[test]
fn a_killed_writer_never_leaves_a_partial_file() {
    killed_writers(100);
}

#[test]
#[ignore = "stress: 1000 killed writers (run by bench/stress.sh, which CI calls)"]
fn a_killed_writer_never_leaves_a_partial_file_stress() {
    killed_writers(1_000);
}

fn pidman_run(env: &TestEnv, script: &str) -> Proc {
    let child = env
        .command(&["run", "--", "sh", "-c", script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Proc { child }
}

/// Wait until the PID file names a process other than `not`.
fn wait_for_claim(env: &TestEnv, not: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(pid) = env
            .read_pid_file()
            .and_then(|s| s.trim().parse::<u32>().ok())
            && pid != not
        {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "the PID file never named the child"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn run_claims_for_its_child_and_cleans_up_when_it_exits() {
    let env = TestEnv::new();
    let mut pidman = pidman_run(&env, "sleep 0.5; exit 7");
    let child = wait_for_claim(&env, pidman.pid());
    // A second run is refused while the first lives, naming the holder.
    let second = env.run(&["run", "--", "true"]);
    second.expect(1);
    assert!(
        second.stdout.contains(&child.to_string()),
        "{}",
        second.stdout
    );
    // Any server command is identified by the held lock, not by argv.
    assert_eq!(
        env.run(&["check"]).expect(0).stdout.trim(),
        child.to_string()
    );
    let status = pidman
        .wait_for_exit(Duration::from_secs(10))
        .expect("run ended");
    assert_eq!(status.code(), Some(7), "the child's status");
    assert_eq!(env.read_pid_file(), None);
}

#[test]
fn run_forwards_sigterm_and_removes_the_file() {
    let env = TestEnv::new();
    let mut pidman = pidman_run(&env, "trap 'exit 0' TERM; while :; do sleep 0.05; done");
    wait_for_claim(&env, pidman.pid());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pidman.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = pidman
        .wait_for_exit(Duration::from_secs(10))
        .expect("run ended");
    assert_eq!(status.code(), Some(0));
    assert_eq!(env.read_pid_file(), None);
}

/// The claim lives in `run` (no child inherits the lock): when `run` is
/// SIGKILLed, its server runs on, still named by the PID file, and is judged
/// like any server (a Bengal one stays the live holder).
#[test]
fn a_sigkilled_run_leaves_its_server_named_in_the_file() {
    let env = TestEnv::new();
    let server = format!("exec {} serve", fixture("bengal").display());
    let mut pidman = pidman_run(&env, &server);
    let child = wait_for_claim(&env, pidman.pid());
    // The claim names the shell before it has exec'd the server: wait for
    // the server's own command line (a check in between judges `sh`).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read(format!("/proc/{child}/cmdline"))
        .is_ok_and(|argv| argv.windows(5).any(|w| w == b"serve"))
    {
        assert!(Instant::now() < deadline, "the server never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    pidman.child.kill().unwrap();
    pidman.child.wait().unwrap();
    assert_eq!(
        env.run(&["check"]).expect(0).stdout.trim(),
        child.to_string()
    );
    env.run(&["acquire"]).expect(1);
    // Clean up the orphan: it is ours (we started pidman, pidman started it).
    env.run(&["kill", &child.to_string(), "--timeout", "1"])
        .expect(0);
}

#[test]
fn run_of_a_missing_command_fails_and_leaves_no_file() {
    let env = TestEnv::new();
    let run = env.run(&["run", "--", "/nonexistent/server"]);
    run.expect(2);
    assert!(run.stderr.contains("cannot start"), "{}", run.stderr);
    assert_eq!(env.read_pid_file(), None);
}

#[test]
fn run_needs_a_command() {
    let env = TestEnv::new();
    env.run(&["run"]).expect(2);
    let _ = Command::new("true").status();
}
