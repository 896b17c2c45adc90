//! The server is a tree (issue 18): real wrappers whose children serve, a
//! reloader, a pre-fork pool, a child that ignores SIGTERM, a `run` whose
//! server's root was SIGKILLed with it; and what must never be touched.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// Whether something listens on loopback `port`: the port cannot be bound
/// (std binds with SO_REUSEADDR, so a closed connection's remains do not
/// count). Not a connect: with nothing listening on a port of the
/// ephemeral range, a connect can meet itself (TCP simultaneous open).
fn listening(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_err()
}

/// Wait (at most 10 s) until `port` is `up` or not.
fn wait_port(port: u16, up: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while listening(port) != up {
        assert!(Instant::now() < deadline, "port {port} never became {up}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid` runs (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// Wait (at most 10 s) for `pid` to be gone.
fn gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// The children of `pid`.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

/// SIGKILL a process the test did not start as a `Child` (a grandchild):
/// by PID, only one this test made.
fn kill9(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// A wrapper as `npm run dev` is one: `sh -c '<server>; true'` (the `;
/// true` keeps the shell from exec'ing its command), its child serving on
/// `port`. Returns the shell and the server's PID.
fn wrapper(port: u16, server_args: &str) -> (Proc, u32) {
    let script = format!(
        "{} serve --port {port} {server_args}; true",
        fixture("bengal").display()
    );
    let shell = Proc {
        child: Command::new("sh")
            .args(["-c", &script])
            .stdout(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    };
    wait_port(port, true);
    let server = children(shell.pid())[0];
    (shell, server)
}

/// Reap what a test left on the machine: by PID, only its own.
struct Leftovers(Vec<u32>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if alive(pid) {
                kill9(pid);
            }
        }
    }
}

#[test]
fn kill_stops_a_wrapper_and_the_child_that_holds_the_port() {
    let env = TestEnv::new();
    let port = free_port();
    let (mut shell, server) = wrapper(port, "");
    let _reap = Leftovers(vec![server]);
    let run = env.run(&["--json", "kill", &shell.pid().to_string()]);
    run.expect(0);
    let json = run.json();
    let members: Vec<u64> = json["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(members, [shell.pid() as u64, server as u64], "{json}");
    assert!(shell.wait_for_exit(Duration::from_secs(5)).is_some());
    assert!(gone(server), "the child that served is stopped too");
    assert!(!listening(port), "and the port is free");
}

#[test]
fn a_child_that_ignores_sigterm_is_killed_at_the_timeout() {
    let env = TestEnv::new();
    let port = free_port();
    let (mut shell, server) = wrapper(port, "--ignore-term");
    let _reap = Leftovers(vec![server]);
    let run = env.run(&[
        "--json",
        "kill",
        &shell.pid().to_string(),
        "--timeout",
        "0.3",
    ]);
    run.expect(0);
    let json = run.json();
    assert_eq!(json["outcome"], "terminated", "{json}");
    assert_eq!(json["members"][1]["outcome"], "killed", "{json}");
    assert!(shell.wait_for_exit(Duration::from_secs(5)).is_some());
    assert!(gone(server));
    assert!(!listening(port));
}

#[test]
fn siblings_and_the_callers_own_ancestors_are_never_touched() {
    let env = TestEnv::new();
    let port = free_port();
    let (mut shell, server) = wrapper(port, "");
    let _reap = Leftovers(vec![server]);
    let mut sibling = sleeper(); // another child of this test
    env.run(&["kill", &shell.pid().to_string()]).expect(0);
    assert!(shell.wait_for_exit(Duration::from_secs(5)).is_some());
    assert!(sibling.running(), "a sibling of the server is not its tree");

    // pidman run by a script that a process runs: that process is pidman's
    // grandparent, and is refused as a root.
    let script = format!(
        "sh -c '{} --json --root {} kill \"$1\"; true' _ $$; sleep 0.5",
        PIDMAN,
        env.root().display()
    );
    let grandparent = Command::new("sh")
        .args(["-c", &script])
        .env("PIDMAN_CACHE_DIR", test_cache())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&grandparent.stdout);
    assert!(out.contains("\"kind\":\"denied\""), "{out}");
    assert!(out.contains("ancestor"), "{out}");
    assert!(
        grandparent.status.success(),
        "the ancestor ran on: {grandparent:?}"
    );
}

#[test]
fn dry_runs_name_the_tree_and_stop_nothing() {
    let env = TestEnv::new();
    let port = free_port();
    let (mut shell, server) = wrapper(port, "");
    let _reap = Leftovers(vec![server]);
    let run = env.run(&["--json", "kill", &shell.pid().to_string(), "--dry-run"]);
    run.expect(0);
    let tree: Vec<u64> = run.json()["tree"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(tree, [shell.pid() as u64, server as u64]);
    let plain = env.run(&["kill", &shell.pid().to_string(), "--dry-run"]);
    plain.expect(0);
    assert!(plain.stdout.contains("would stop 2 processes"), "{plain:?}");
    assert!(
        plain.stdout.contains(&format!("child of {}", shell.pid())),
        "{plain:?}"
    );

    // The shell is no server, but a Bengal child of it is; preflight
    // finds it through the port.
    let preflight = env.run(&["preflight", "--port", &port.to_string(), "--dry-run"]);
    preflight.expect(1);
    assert!(preflight.stdout.contains("dry run"), "{preflight:?}");
    assert!(shell.running() && alive(server) && listening(port));
}

#[test]
fn port_names_the_holder_and_its_ancestry() {
    let env = TestEnv::new();
    let port = free_port();
    let (shell, server) = wrapper(port, "");
    let _reap = Leftovers(vec![server]);
    let run = env.run(&["--json", "port", &port.to_string()]);
    run.expect(0);
    let json = run.json();
    assert_eq!(json["pid"], server);
    assert_eq!(json["lineage"][0]["role"], "bengal", "{json}");
    let plain = env.run(&["port", &port.to_string()]);
    plain.expect(0);
    assert_eq!(
        plain.stdout.trim(),
        server.to_string(),
        "stdout: the PID alone"
    );
    assert!(plain.stderr.contains(&format!("PID {server}")), "{plain:?}");
    drop(shell);
}

#[test]
fn a_reloader_is_stopped_from_the_top_and_does_not_respawn() {
    let env = TestEnv::new();
    let port = free_port();
    let mut cmd = Command::new(fixture("bengal"));
    cmd.args(["serve", "--reload", "--port", &port.to_string()]);
    let mut reloader = start_ready(cmd);
    let child = children(reloader.pid())[0];
    let _reap = Leftovers(vec![child]);
    wait_port(port, true);
    let run = env.run(&["--json", "preflight", "--port", &port.to_string(), "--yes"]);
    run.expect(0);
    let json = run.json();
    assert_eq!(
        json["server"]["pid"],
        reloader.pid(),
        "the topmost Bengal process: {json}"
    );
    assert!(reloader.wait_for_exit(Duration::from_secs(5)).is_some());
    assert!(gone(child));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!listening(port), "no new child took the port");
}

#[test]
fn a_pre_fork_pool_is_stopped_whole() {
    let env = TestEnv::new();
    let port = free_port();
    let mut cmd = Command::new(fixture("bengal"));
    cmd.args(["serve", "--workers", "3", "--port", &port.to_string()]);
    let mut master = start_ready(cmd);
    let workers = children(master.pid());
    assert_eq!(workers.len(), 3);
    let _reap = Leftovers(workers.clone());
    let run = env.run(&["--json", "preflight", "--port", &port.to_string(), "--yes"]);
    run.expect(0);
    assert_eq!(run.json()["server"]["pid"], master.pid());
    assert!(master.wait_for_exit(Duration::from_secs(5)).is_some());
    for worker in workers {
        assert!(gone(worker), "worker {worker}");
    }
    assert!(!listening(port));
}

/// `pidman run --port P -- sh -c SCRIPT`, once SCRIPT's child listens on
/// `port`: the running `run` (its stderr piped), the shell it started as
/// the server, and the shell's child.
fn start_run(env: &TestEnv, port: u16, script: &str) -> (std::process::Child, u32, u32) {
    let run = env
        .command(&["run", "--port", &port.to_string(), "--", "sh", "-c", script])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    wait_port(port, true);
    let shell = children(run.id())[0];
    let server = children(shell)[0];
    (run, shell, server)
}

/// `pidman run --port P -- sh -c '<server>; true'`, then `run` is
/// SIGKILLed (a crashed terminal). Returns the shell and the server.
fn orphaned_run(env: &TestEnv, port: u16) -> (u32, u32) {
    let script = format!("{} build --port {port}; true", fixture("bengal").display());
    let (mut run, shell, server) = start_run(env, port, &script);
    run.kill().unwrap();
    run.wait().unwrap();
    (shell, server)
}

#[test]
fn the_server_of_a_sigkilled_run_is_stopped_with_its_child() {
    let env = TestEnv::new();
    let port = free_port();
    let (shell, server) = orphaned_run(&env, port);
    let _reap = Leftovers(vec![shell, server]);
    // Neither is a Bengal server (`bengal build`): only the claim that
    // `run` recorded says the shell was the server it started.
    let run = env.run(&["--json", "preflight", "--port", &port.to_string(), "--yes"]);
    run.expect(0);
    let json = run.json();
    assert_eq!(json["server"]["pid"], shell, "{json}");
    assert!(gone(shell) && gone(server), "{json}");
    assert!(!listening(port));
}

#[test]
fn the_orphans_of_a_run_whose_server_died_too_are_stopped() {
    let env = TestEnv::new();
    let port = free_port();
    let (shell, server) = orphaned_run(&env, port);
    let _reap = Leftovers(vec![shell, server]);
    kill9(shell);
    assert!(gone(shell));
    let held = env.run(&["--json", "port", &port.to_string()]);
    held.expect(0);
    assert_eq!(held.json()["orphan_of"], shell, "{:?}", held.json());
    let run = env.run(&["--json", "preflight", "--port", &port.to_string(), "--yes"]);
    run.expect(0);
    let json = run.json();
    assert_eq!(json["outcome"], "already-gone", "{json}");
    assert_eq!(json["members"][0]["pid"], server, "{json}");
    assert!(gone(server));
    assert!(!listening(port));
}

#[test]
fn an_unrelated_program_on_the_port_is_still_never_touched() {
    let env = TestEnv::new();
    let port = free_port();
    let mut cmd = Command::new(fixture("bengal"));
    cmd.args(["build", "--port", &port.to_string()]);
    let mut other = start_ready(cmd);
    let run = env.run(&["--json", "preflight", "--port", &port.to_string(), "--yes"]);
    run.expect(1);
    assert_eq!(run.json()["verdict"], "port-busy");
    assert!(other.running());
}

#[test]
fn run_told_to_stop_stops_what_its_server_left_in_its_group() {
    let env = TestEnv::new();
    let port = free_port();
    // The server is a shell that dies of SIGTERM while its child, in its
    // process group, would keep the port.
    let script = format!("{} build --port {port} & wait", fixture("bengal").display());
    let (run, shell, server) = start_run(&env, port, &script);
    let _reap = Leftovers(vec![shell, server]);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(run.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let done = finish_within(run, Duration::from_secs(20), "run");
    assert!(done.stderr.contains("left behind"), "{done:?}");
    assert!(gone(server), "{done:?}");
    assert!(!listening(port));
    assert!(
        env.read_pid_file().is_none(),
        "the claim ended with the server"
    );
}

#[test]
fn a_member_whose_pid_is_reused_after_the_snapshot_is_never_signalled() {
    if !pause_points("a_member_whose_pid_is_reused_after_the_snapshot_is_never_signalled") {
        return;
    }
    if !is_root() {
        return crate::trust::skip(
            "a_member_whose_pid_is_reused_after_the_snapshot_is_never_signalled",
            "a PID namespace needs root",
        );
    }
    let env = TestEnv::new();
    let cache = test_cache();
    // In a PID namespace: a wrapper S whose child C serves; pidman takes its
    // snapshot of S's tree and pauses before the first signal; C dies and
    // an impostor gets C's PID; pidman goes on, and must not touch it.
    let script = r#"
        sh -c "$FIXTURE serve > /dev/null; sleep 30" &
        S=$!
        sleep 0.5
        read C _ < /proc/$S/task/$S/children
        [ -n "$C" ] || { echo "no child"; exit 3; }
        PIDMAN_TEST_PAUSE="stopping the tree=$DIR/release" \
          $PIDMAN --json --root $DIR kill $S > $DIR/out 2> $DIR/err &
        K=$!
        until grep -q "paused at" $DIR/err; do sleep 0.01; done
        kill -9 $C
        # Past the next whole second: the portable path's start tokens
        # (sysinfo) are whole seconds, which cannot tell two lifetimes of a
        # PID within one second apart.
        sleep 1.1
        echo $((C - 1)) > /proc/sys/kernel/ns_last_pid
        sleep 60 &
        I=$!
        [ "$I" = "$C" ] || { echo "no reuse: $C then $I"; exit 4; }
        touch $DIR/release
        wait $K; echo "kill=$?"
        cat $DIR/out
        kill -0 $I && echo "impostor alive"
    "#;
    let run = crate::trust::in_pid_namespace(
        script,
        &[
            ("FIXTURE", fixture("bengal").to_str().unwrap()),
            ("PIDMAN", PIDMAN),
            ("DIR", env.root().to_str().unwrap()),
            ("PIDMAN_CACHE_DIR", cache.to_str().unwrap()),
        ],
    );
    assert!(run.stdout.contains("kill=0"), "{run:?}");
    assert!(
        run.stdout.contains("\"already-gone\""),
        "C reported gone: {run:?}"
    );
    assert!(run.stdout.contains("impostor alive"), "{run:?}");
}

/// A server whose main thread has ended while another thread serves: the
/// kernel shows its thread-group leader as a zombie (`Z`), yet the
/// process runs and holds its port, as every multi-threaded server does
/// for a moment while it exits. It is alive to `check`, its PID file is
/// kept, `port` names it, and `kill` returns only once the port is free.
#[test]
fn a_server_whose_main_thread_ended_is_alive_until_its_last_thread_ends() {
    if portable() {
        return crate::trust::skip(
            "a_server_whose_main_thread_ended_is_alive_until_its_last_thread_ends",
            "a process shown as a zombie while its threads run is Linux's /proc view; the \
             portable process table stands in for other Unixes, which show it running",
        );
    }
    let env = TestEnv::new();
    let port = free_port();
    let mut server = bengal(&["--port", &port.to_string(), "--main-exits"]);
    let pid = server.pid();
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(Instant::now() < deadline, "the main thread never ended");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(listening(port), "a thread still serves");

    env.write_pid_file(pid.to_string());
    let run = env.run(&["check"]);
    run.expect(0);
    assert_eq!(run.stdout.trim(), pid.to_string());
    assert!(
        env.read_pid_file().is_some(),
        "a live server's file is kept"
    );

    let run = env.run(&["port", &port.to_string()]);
    run.expect(0);
    assert_eq!(run.stdout.trim(), pid.to_string());

    env.run(&["kill", &pid.to_string()]).expect(0);
    assert!(!listening(port), "kill returned with the port still held");
    assert!(server.wait_for_exit(Duration::from_secs(5)).is_some());
}
