//! The promises of issue 8, each tried the way a hostile user (or bad luck)
//! would: FIFOs and devices at the path, races between writers and
//! checkers, signals at the worst moment, thread ids, PID reuse on the real
//! host, full and read-only filesystems, another user's cache. Tests that
//! need root say SKIP on stdout when not run as root (CI runs as root).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// Say on stdout (past the test harness's capture) that a test was skipped.
pub fn skip(test: &str, why: &str) {
    let _ = writeln!(std::io::stdout(), "SKIP {test}: {why}");
}

fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
}

#[test]
fn a_fifo_at_the_pid_file_is_refused_at_once_and_kept() {
    let env = TestEnv::new();
    mkfifo(&env.pid_file());
    for args in [
        &["check"][..],
        &["acquire"],
        &["preflight", "--yes"],
        &["remove"],
        &["run", "--", "true"],
    ] {
        let child = env
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let run = finish_within(child, Duration::from_secs(20), &format!("pidman {args:?}"));
        run.expect(2);
        assert!(run.stderr.contains("FIFO"), "{args:?}: {}", run.stderr);
        assert!(env.pid_file().exists(), "{args:?}: the FIFO is kept");
    }
    assert!(
        !env.root().join(".bengal.pid.lock").exists(),
        "no lock file made for it"
    );
}

#[test]
fn a_file_over_64_bytes_or_a_device_is_refused_and_kept() {
    let env = TestEnv::new();
    let readme = env.root().join("README.md");
    std::fs::write(
        &readme,
        "# A project\n\nThis is not a PID file, whatever pidman may be told to do with it.\n",
    )
    .unwrap();
    let run = env.run(&["check", "--pid-file", readme.to_str().unwrap()]);
    run.expect(2);
    assert!(run.stderr.contains("not a PID file"), "{}", run.stderr);
    assert!(readme.exists(), "README.md is kept");
    if !is_root() {
        return skip(
            "a_file_over_64_bytes_or_a_device_is_refused_and_kept (device)",
            "mknod needs root",
        );
    }
    let null = env.root().join("null");
    sh(&format!("mknod {} c 1 3", null.display()));
    let run = env.run(&["check", "--pid-file", null.to_str().unwrap()]);
    run.expect(2);
    assert!(null.exists(), "the device node is kept");
}

#[test]
fn a_plugin_that_is_a_fifo_or_endless_is_refused_in_bounded_time() {
    let env = TestEnv::new();
    let fifo = env.root().join("plugin.wasm");
    mkfifo(&fifo);
    for plugin in [fifo.to_str().unwrap(), "/dev/zero"] {
        let child = env
            .command(&["--plugin", plugin, "check"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let run = finish_within(child, Duration::from_secs(20), plugin);
        run.expect(2);
        assert!(run.stderr.contains("not a regular file"), "{}", run.stderr);
    }
}

#[test]
fn run_starts_the_server_unblocked_in_its_own_process_group() {
    let env = TestEnv::new();
    let run = env.run(&[
        "run",
        "--",
        "sh",
        "-c",
        "grep -E '^(SigBlk|SigIgn)' /proc/self/status; echo pgid $(ps -o pgid= -p $$) pid $$",
    ]);
    run.expect(0);
    assert!(
        run.stdout.contains("SigBlk:\t0000000000000000"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("SigIgn:\t0000000000000000"),
        "{}",
        run.stdout
    );
    let words: Vec<&str> = run.stdout.split_whitespace().collect();
    let at = |key| words[words.iter().position(|w| *w == key).unwrap() + 1];
    assert_eq!(at("pgid"), at("pid"), "the server leads its own group");
}

#[test]
fn run_started_with_signals_ignored_starts_the_server_with_none_ignored() {
    // As `nohup`, a `trap '' INT HUP` or a CI runner starts it: pidman
    // inherits ignored dispositions, and must not hand them to the server.
    let env = TestEnv::new();
    let script = format!(
        "trap '' INT HUP QUIT TERM; grep SigIgn /proc/self/status; \
         exec {PIDMAN} run -- sh -c 'grep SigIgn /proc/self/status'"
    );
    let out = env.command(&["path"]).output().unwrap(); // warms the cache
    assert!(out.status.success());
    let run = Run::from(
        Command::new("sh")
            .args(["-c", &script])
            .current_dir(env.root())
            .env("PIDMAN_CACHE_DIR", test_cache())
            .stdin(Stdio::null())
            .output()
            .unwrap(),
    );
    run.expect(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_ne!(
        lines[0], "SigIgn:\t0000000000000000",
        "pidman inherited them: {lines:?}"
    );
    assert_eq!(
        lines[1], "SigIgn:\t0000000000000000",
        "the server did not: {lines:?}"
    );
}

#[test]
fn a_signal_before_the_server_starts_stops_run_and_the_server_never_starts() {
    let env = TestEnv::new();
    // A stale server that ignores SIGTERM keeps `run`'s start check busy for
    // its timeout: the moment to send SIGINT.
    let stale = bengal(&["--ignore-term"]);
    env.write_pid_file(stale.pid().to_string());
    let marker = env.root().join("started");
    let mut child = env
        .command(&[
            "run",
            "--yes",
            "--timeout",
            "2",
            "--",
            "touch",
            marker.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(!marker.exists(), "the server never started");
    assert!(env.read_pid_file().is_none(), "and no claim is left");
}

#[test]
fn run_never_lends_the_lock_to_the_servers_children() {
    let env = TestEnv::new();
    let gc = env.root().join("grandchild");
    // A server that leaves a child behind with every descriptor it has (a
    // file watcher, a build service): dash would close its high ones.
    let script = format!(
        "import subprocess\np = subprocess.Popen(['sleep', '30'], close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\nopen('{}', 'w').write(str(p.pid))",
        gc.display()
    );
    env.run(&["run", "--", "python3", "-c", &script]).expect(0);
    let grandchild: i32 = std::fs::read_to_string(&gc)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let holds_lock = std::fs::read_dir(format!("/proc/{grandchild}/fd"))
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.unwrap().path()).ok())
        .any(|target| target.to_string_lossy().ends_with(".bengal.pid.lock"));
    let server = sleeper();
    let next = env.run(&["acquire", "--pid", &server.pid().to_string()]);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(grandchild),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert!(!holds_lock, "the orphaned grandchild holds the lock");
    next.expect(0);
}

#[test]
fn remove_keeps_the_file_of_a_server_that_run_claims() {
    let env = TestEnv::new();
    let mut run = start_ready({
        let mut cmd = env.command(&["run", "--"]);
        cmd.arg(fixture("bengal")).arg("serve");
        cmd
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.read_pid_file().as_deref() == Some(&run.pid().to_string())
        || env.read_pid_file().is_none()
    {
        assert!(Instant::now() < deadline, "run never handed over its claim");
        std::thread::sleep(Duration::from_millis(10));
    }
    let named = env.read_pid_file().unwrap();
    let removed = env.run(&["remove"]);
    removed.expect(1);
    assert!(
        removed.stdout.contains(&named),
        "names the server: {}",
        removed.stdout
    );
    assert_eq!(env.read_pid_file().as_deref(), Some(named.as_str()), "kept");
    // `check` and `preflight` see the claim; a second `run` is refused.
    env.run(&["check"]).expect(0);
    env.run(&["run", "--", "true"]).expect(1);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(run.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    run.wait_for_exit(Duration::from_secs(10))
        .expect("run ends with its server");
    assert!(env.read_pid_file().is_none(), "clean shutdown removes it");
}

#[test]
fn a_write_never_loses_its_file_to_a_concurrent_check() {
    let env = TestEnv::new();
    let server = bengal(&[]);
    let server_pid = server.pid().to_string();
    for round in 0..150 {
        env.write_pid_file(dead_pid().to_string());
        let spawn = |args: &[&str]| {
            env.command(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        };
        let mut writer = spawn(&["write", "--pid", &server_pid]);
        let mut checker = spawn(&["check"]);
        writer.wait().unwrap();
        checker.wait().unwrap();
        assert_eq!(
            env.read_pid_file().as_deref(),
            Some(server_pid.as_str()),
            "round {round}: a check removed the file a writer had just written"
        );
    }
}

/// `pidman ARGS` paused at the first guest message containing `at`, until
/// the returned release file is made. Returns once it has paused.
fn paused(env: &TestEnv, args: &[&str], at: &str) -> (Child, PathBuf) {
    let release = env.root().join("release");
    let mut child = env
        .command(args)
        .env("PIDMAN_TEST_PAUSE", format!("{at}={}", release.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("paused at"), "did not pause: {line:?}");
    (child, release)
}

/// The race of the row above, forced: a `write` that comes while a check
/// holds the lock to remove a dead server's file is refused at once
/// ("try again", exit 1) and writes nothing; it is never reported done and
/// then lost to the removal. Tried again after the check, it stays.
#[test]
fn a_write_during_a_checks_removal_is_refused_never_lost() {
    if !pause_points("a_write_during_a_checks_removal_is_refused_never_lost") {
        return;
    }
    let env = TestEnv::new();
    let server = bengal(&[]);
    let server_pid = server.pid().to_string();
    env.write_pid_file(dead_pid().to_string());
    let (checker, release) = paused(&env, &["check"], "removing it under its lock");
    let refused = env.run(&["write", "--pid", &server_pid]);
    refused.expect(1);
    assert!(refused.stdout.contains("try again"), "{refused:?}");
    std::fs::write(&release, "").unwrap();
    finish_within(checker, Duration::from_secs(20), "check").expect(1);
    assert_eq!(
        env.read_pid_file(),
        None,
        "the dead server's file is removed"
    );
    env.run(&["write", "--pid", &server_pid]).expect(0);
    assert_eq!(
        env.read_pid_file().as_deref(),
        Some(server_pid.as_str()),
        "written once the check is done, and kept"
    );
}

/// A server that exits between `kill`'s look at it (the snapshot, its
/// start token) and its signals, forced: gone, never an error, and no
/// signal reaches anything else.
#[test]
fn a_server_gone_between_the_look_and_the_signal_is_gone_not_an_error() {
    if !pause_points("a_server_gone_between_the_look_and_the_signal_is_gone_not_an_error") {
        return;
    }
    let env = TestEnv::new();
    let mut server = bengal(&[]);
    let pid = server.pid().to_string();
    let (killer, release) = paused(&env, &["--json", "kill", &pid], "stopping the tree");
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    std::fs::write(&release, "").unwrap();
    let run = finish_within(killer, Duration::from_secs(20), "kill");
    run.expect(0);
    assert_eq!(run.json()["outcome"], "already-gone", "{}", run.stdout);
}

#[test]
fn a_file_changed_between_judgement_and_removal_is_kept() {
    if !pause_points("a_file_changed_between_judgement_and_removal_is_kept") {
        return;
    }
    let env = TestEnv::new();
    env.write_pid_file(dead_pid().to_string());
    let (child, release) = paused(&env, &["check"], "removing it under its lock");
    // Someone (a server writing its own PID, as Bengal does) replaces it.
    let server = bengal(&[]);
    std::fs::write(env.pid_file(), server.pid().to_string()).unwrap();
    std::fs::write(&release, "").unwrap();
    let run = finish_within(child, Duration::from_secs(20), "check");
    run.expect(1);
    assert_eq!(
        env.read_pid_file(),
        Some(server.pid().to_string()),
        "the new file is kept"
    );
}

#[test]
fn a_writer_killed_between_its_temporary_file_and_the_rename_loses_nothing() {
    if !pause_points("a_writer_killed_between_its_temporary_file_and_the_rename_loses_nothing") {
        return;
    }
    let env = TestEnv::new();
    let old = bengal(&[]);
    env.write_pid_file(old.pid().to_string());
    let new = sleeper();
    let (mut child, _release) = paused(
        &env,
        &["write", "--pid", &new.pid().to_string()],
        "temporary file written",
    );
    let temps: Vec<PathBuf> = std::fs::read_dir(env.root())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert_eq!(temps.len(), 1, "mid-write: the temporary file exists");
    assert_eq!(
        std::fs::read_to_string(&temps[0]).unwrap(),
        new.pid().to_string()
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        env.read_pid_file(),
        Some(old.pid().to_string()),
        "the old file, whole"
    );
    env.run(&["write", "--pid", &new.pid().to_string()])
        .expect(0);
    assert!(
        !temps[0].exists(),
        "the dead writer's temporary file is swept"
    );
}

#[test]
fn a_reader_never_sees_a_partial_or_empty_file() {
    let env = TestEnv::new();
    let pid_file = env.pid_file();
    std::fs::write(&pid_file, "1").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (stop, pid_file) = (stop.clone(), pid_file.clone());
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let text = std::fs::read_to_string(&pid_file).expect("the file is always there");
                assert!(
                    matches!(text.as_str(), "1" | "4000000" | "22"),
                    "read {text:?}"
                );
                reads += 1;
            }
            reads
        })
    };
    let plugin = embedded();
    let mut pids =
        pidman::PidManager::for_pid_file(&plugin, &pid_file, pidman::Native::default(), false)
            .unwrap();
    for i in 0..2_000 {
        pids.write_pid_file(Some(if i % 2 == 0 { 4_000_000 } else { 22 }))
            .unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = reader.join().expect("the reader saw only whole PIDs");
    assert!(
        reads > 100,
        "the reader read while the writes ran ({reads})"
    );
}

#[test]
fn a_thread_id_is_not_a_process() {
    if portable() {
        return skip(
            "a_thread_id_is_not_a_process",
            "thread ids share the PID space on Linux only; the portable path has no such ids",
        );
    }
    let env = TestEnv::new();
    let mut threads = start_ready({
        let mut cmd = Command::new("python3");
        cmd.args([
            "-c",
            "import threading,time\nt=threading.Thread(target=time.sleep,args=(60,),daemon=True)\nt.start()\nprint('ready', t.native_id, flush=True)\ntime.sleep(60)",
        ]);
        cmd
    });
    let tid = std::fs::read_dir(format!("/proc/{}/task", threads.pid()))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|t| *t != threads.pid().to_string())
        .expect("a second thread");
    let killed = env.run(&["kill", &tid]);
    killed.expect(2);
    assert!(killed.stderr.contains("thread"), "{}", killed.stderr);
    assert!(threads.running(), "never reported gone, never signalled");
    env.run(&["is-bengal", &tid]).expect(1);
    env.write_pid_file(&tid);
    env.run(&["check"]).expect(1);
    assert!(
        env.read_pid_file().is_none(),
        "no process has that PID: stale"
    );
}

#[test]
fn a_server_exiting_on_sigterm_is_always_gone_never_an_error() {
    let env = TestEnv::new();
    for _ in 0..25 {
        let mut server = bengal(&[]);
        let run = env.run(&["--json", "kill", &server.pid().to_string()]);
        run.expect(0);
        assert_eq!(run.json()["outcome"], "terminated", "{}", run.stdout);
        assert!(server.wait_for_exit(Duration::from_secs(5)).is_some());
    }
}

#[test]
fn a_stopped_server_is_woken_to_act_on_sigterm() {
    let env = TestEnv::new();
    let mut server = bengal(&[]);
    let pid = nix::unistd::Pid::from_raw(server.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let run = env.run(&[
        "--json",
        "kill",
        &server.pid().to_string(),
        "--timeout",
        "10",
    ]);
    run.expect(0);
    assert_eq!(
        run.json()["outcome"],
        "terminated",
        "not SIGKILLed: {}",
        run.stdout
    );
    assert!(server.wait_for_exit(Duration::from_secs(5)).is_some());
}

#[test]
fn an_empty_argument_is_an_argument() {
    if portable() {
        return skip(
            "an_empty_argument_is_an_argument",
            "the portable process table (sysinfo) drops empty arguments: a known limit",
        );
    }
    let env = TestEnv::new();
    let mut cmd = Command::new(fixture("bengal"));
    cmd.args(["", "serve"]);
    let odd = start_ready(cmd);
    env.run(&["is-bengal", &odd.pid().to_string()]).expect(1);
}

#[test]
fn output_that_cannot_be_written_is_exit_2() {
    let env = TestEnv::new();
    for args in [&["path"][..], &["--json", "path"]] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = env.command(args).stdout(full).output().unwrap();
        let run = Run::from(out);
        run.expect(2);
        assert!(
            run.stderr.contains("cannot write"),
            "{args:?}: {}",
            run.stderr
        );
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
}

#[test]
fn write_creates_a_missing_root() {
    let env = TestEnv::new();
    let root = env.root().join("new/project");
    let server = sleeper();
    let run = env.run(&[
        "--root",
        root.to_str().unwrap(),
        "write",
        "--pid",
        &server.pid().to_string(),
    ]);
    run.expect(0);
    assert_eq!(
        std::fs::read_to_string(root.join(".bengal.pid")).unwrap(),
        server.pid().to_string()
    );
    let missing = env.run(&["--json", "--root", "/nonexistent/x", "check"]);
    missing.expect(1);
    assert!(
        missing.json()["pid"].is_null(),
        "a missing root holds no PID file"
    );
}

/// Run a shell script as root in a fresh PID namespace with its own /proc.
pub fn in_pid_namespace(script: &str, env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", "sh", "-c", script]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run::from(cmd.stdin(Stdio::null()).output().expect("unshare"))
}

#[test]
fn a_pid_reused_on_the_real_host_is_never_signalled() {
    if !is_root() {
        return skip(
            "a_pid_reused_on_the_real_host_is_never_signalled",
            "a PID namespace needs root",
        );
    }
    let env = TestEnv::new();
    let cache = test_cache();
    // 2.5 s between the file and the impostor: past the one-second slack
    // of the identity rule, even where start times are whole seconds
    // computed from a whole-second boot time (sysinfo, `PIDMAN_PORTABLE=1`:
    // up to a second early), which 1.2 s left to chance.
    let script = r#"
        $FIXTURE serve > /dev/null &
        A=$!
        sleep 0.5
        $PIDMAN --root $DIR write --pid $A || exit 3
        kill -9 $A; wait $A
        sleep 2.5
        echo $((A - 1)) > /proc/sys/kernel/ns_last_pid
        $FIXTURE serve > /dev/null &
        B=$!
        [ "$B" = "$A" ] || { echo "no reuse: $A then $B"; exit 4; }
        sleep 0.5
        $PIDMAN --root $DIR check; echo "check=$?"
        $PIDMAN --root $DIR preflight --yes; echo "preflight=$?"
        kill -0 $B && echo "impostor alive"
        kill -9 $B
    "#;
    let run = in_pid_namespace(
        script,
        &[
            ("FIXTURE", fixture("bengal").to_str().unwrap()),
            ("PIDMAN", PIDMAN),
            ("DIR", env.root().to_str().unwrap()),
            ("PIDMAN_CACHE_DIR", cache.to_str().unwrap()),
        ],
    );
    assert!(run.stdout.contains("check=1"), "{run:?}");
    assert!(run.stdout.contains("preflight=0"), "{run:?}");
    assert!(run.stdout.contains("impostor alive"), "{run:?}");
    assert!(env.read_pid_file().is_none(), "the stale file is removed");
}

#[test]
fn a_real_zombie_of_a_bengal_process_is_dead() {
    let env = TestEnv::new();
    // sh starts a Bengal-looking child that exits at once, then becomes a
    // `sleep` that never reaps it: a zombie with a Bengal past.
    let script = format!(
        "{} serve --exit & echo ready $!; exec sleep 30",
        fixture("bengal").display()
    );
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &script]);
    let parent = start_ready(cmd);
    let pid: u32 = std::fs::read_to_string(format!(
        "/proc/{}/task/{}/children",
        parent.pid(),
        parent.pid()
    ))
    .unwrap()
    .split_whitespace()
    .next()
    .expect("the child")
    .parse()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap()
        .contains(") Z")
    {
        assert!(Instant::now() < deadline, "never became a zombie");
        std::thread::sleep(Duration::from_millis(20));
    }
    env.run(&["is-bengal", &pid.to_string()]).expect(1);
    env.write_pid_file(pid.to_string());
    // Judged by its state, not by its (empty) command line: the zombie
    // rule, not the argv rule, decides.
    let run = env.run(&["-v", "check"]);
    run.expect(1);
    assert!(
        run.stderr.contains("has exited (zombie)"),
        "the reason: {}",
        run.stderr
    );
    assert!(env.read_pid_file().is_none(), "a zombie's file is stale");
    let killed = env.run(&["--json", "kill", &pid.to_string()]);
    killed.expect(0);
    assert_eq!(killed.json()["outcome"], "already-gone");
}

/// A filesystem mounted for one test, unmounted when dropped.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn sh(script: &str) {
    let status = Command::new("sh").args(["-c", script]).status().unwrap();
    assert!(status.success(), "{script}");
}

#[test]
fn write_faults_fail_clearly_and_keep_the_old_file() {
    if !is_root() {
        return skip(
            "write_faults_fail_clearly_and_keep_the_old_file",
            "mounts and setpriv need root",
        );
    }
    let env = TestEnv::new();
    let server = sleeper();
    let new_pid = server.pid().to_string();
    // A full disk: a 64 KiB tmpfs, filled.
    let full = env.root().join("full");
    std::fs::create_dir(&full).unwrap();
    sh(&format!(
        "mount -t tmpfs -o size=64k tmpfs {}",
        full.display()
    ));
    let _full = Mount(full.clone());
    std::fs::write(full.join(".bengal.pid"), "111").unwrap();
    let _ = Command::new("dd")
        .args([
            "if=/dev/zero",
            &format!("of={}/fill", full.display()),
            "bs=4k",
        ])
        .stderr(Stdio::null())
        .status();
    let run = env.run(&[
        "write",
        "--pid-file",
        full.join(".bengal.pid").to_str().unwrap(),
        "--pid",
        &new_pid,
    ]);
    run.expect(2);
    // wasmtime-wasi reports the failed write as EIO, not ENOSPC.
    assert!(run.stderr.contains("cannot write"), "{}", run.stderr);
    assert_eq!(
        std::fs::read_to_string(full.join(".bengal.pid")).unwrap(),
        "111"
    );
    // A read-only directory: a read-only bind mount.
    let ro = env.root().join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::write(ro.join(".bengal.pid"), "222").unwrap();
    sh(&format!(
        "mount --bind {0} {0} && mount -o remount,ro,bind {0} {0}",
        ro.display()
    ));
    let _ro = Mount(ro.clone());
    let run = env.run(&[
        "write",
        "--pid-file",
        ro.join(".bengal.pid").to_str().unwrap(),
        "--pid",
        &new_pid,
    ]);
    run.expect(2);
    assert!(run.stderr.contains("Read-only"), "{}", run.stderr);
    assert_eq!(
        std::fs::read_to_string(ro.join(".bengal.pid")).unwrap(),
        "222"
    );
    // EACCES: nobody writing into root's directory.
    let locked = env.root().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::write(locked.join(".bengal.pid"), "333").unwrap();
    std::fs::set_permissions(
        env.root(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", PIDMAN])
        .args([
            "write",
            "--pid-file",
            locked.join(".bengal.pid").to_str().unwrap(),
            "--pid",
            &new_pid,
        ])
        .env("PIDMAN_CACHE_DIR", "/nonexistent")
        .output()
        .unwrap();
    let run = Run::from(out);
    run.expect(2);
    assert!(run.stderr.contains("ermission denied"), "{}", run.stderr);
    assert_eq!(
        std::fs::read_to_string(locked.join(".bengal.pid")).unwrap(),
        "333"
    );
}

#[test]
fn a_process_hidden_by_hidepid_is_alive_not_gone() {
    if !is_root() {
        return skip(
            "a_process_hidden_by_hidepid_is_alive_not_gone",
            "mounting /proc needs root",
        );
    }
    let mut root_process = sleeper();
    let script = format!(
        "mount -t proc -o hidepid=2 proc /proc && exec setpriv --reuid=65534 --regid=65534 --clear-groups {PIDMAN} kill {}",
        root_process.pid()
    );
    let out = Command::new("unshare")
        .args(["--mount", "sh", "-c", &script])
        .env("PIDMAN_CACHE_DIR", "/nonexistent")
        .output()
        .unwrap();
    let run = Run::from(out);
    run.expect(1);
    assert!(!run.stdout.contains("was not running"), "{run:?}");
    assert!(root_process.running(), "never signalled");
}

#[test]
fn a_cache_entry_another_user_could_have_written_is_never_loaded() {
    if !is_root() {
        return skip(
            "a_cache_entry_another_user_could_have_written_is_never_loaded",
            "chown needs root",
        );
    }
    let env = TestEnv::new();
    let cache = env.root().join("cache");
    let run = |env: &TestEnv| {
        let out = env
            .command(&["check"])
            .env("PIDMAN_CACHE_DIR", &cache)
            .output()
            .unwrap();
        Run::from(out)
    };
    run(&env).expect(1);
    let entry = std::fs::read_dir(&cache)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(
        std::fs::metadata(&cache).unwrap().mode() & 0o777,
        0o700,
        "a private directory"
    );
    // An entry that another user owns, intact (only its owner changed, so
    // its checksum still holds), is replaced, never loaded.
    let intact = std::fs::read(&entry).unwrap();
    std::os::unix::fs::chown(&entry, Some(65534), Some(65534)).unwrap();
    run(&env).expect(1);
    assert_eq!(
        std::fs::metadata(&entry).unwrap().uid(),
        0,
        "replaced by its user, not loaded"
    );
    assert_eq!(
        std::fs::read(&entry).unwrap(),
        intact,
        "the same plugin, compiled again"
    );
    // A directory others may write is not used at all.
    std::fs::set_permissions(&cache, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    std::fs::remove_file(&entry).unwrap();
    run(&env).expect(1);
    assert_eq!(
        std::fs::read_dir(&cache).unwrap().count(),
        0,
        "nothing written there"
    );
}

#[test]
fn ctrl_d_at_the_prompt_is_no() {
    let Some((run, mut server)) = crate::ports::preflight_on_a_terminal("\x04") else {
        return;
    };
    run.expect(1);
    assert!(
        run.stdout.contains("Kill stale process? [Y/n]"),
        "asked: {run:?}"
    );
    assert!(server.running(), "end of input is no: {run:?}");
}

/// `pidman ARGS` on a pseudo-terminal (script(1)), with `input` typed after
/// `delay`; none when script(1) is missing.
fn on_a_terminal(env: &TestEnv, args: &str, input: &[u8], delay: Duration) -> Option<Run> {
    if Command::new("script").arg("--version").output().is_err() {
        skip("on a terminal", "no script(1) (util-linux)");
        return None;
    }
    let command = format!("{PIDMAN} --root {} {args}", env.root().display());
    let mut script = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("PIDMAN_CACHE_DIR", test_cache())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script(1)");
    std::thread::sleep(delay);
    script.stdin.as_mut().unwrap().write_all(input).unwrap();
    Some(finish_within(script, Duration::from_secs(30), &command))
}

#[test]
fn run_hands_the_terminal_to_the_server() {
    let env = TestEnv::new();
    let Some(run) = on_a_terminal(
        &env,
        "run -- sh -c 'read line; echo got:$line'",
        b"hello\n",
        Duration::from_millis(700),
    ) else {
        return;
    };
    run.expect(0);
    assert!(
        run.stdout.contains("got:hello"),
        "the server read the terminal: {run:?}"
    );
}

#[test]
fn ctrl_c_on_a_terminal_reaches_the_server_once() {
    let env = TestEnv::new();
    let server = "python3 -c 'import signal, time\nn = []\nsignal.signal(signal.SIGINT, lambda *a: n.append(1))\nprint(\"ready\", flush=True)\ntime.sleep(1.5)\nprint(\"interrupts\", len(n), flush=True)'";
    let Some(run) = on_a_terminal(
        &env,
        &format!("run -- {server}"),
        b"\x03",
        Duration::from_millis(800),
    ) else {
        return;
    };
    run.expect(0);
    assert!(
        run.stdout.contains("interrupts 1"),
        "once, not twice: {run:?}"
    );
}

#[test]
fn a_claim_record_that_outlived_its_run_never_turns_the_argv_rule_off() {
    let env = TestEnv::new();
    // `pidman run` of a program that is not a Bengal server; run is
    // SIGKILLed (a crashed terminal) and its server runs on.
    let script = format!("exec {} build", fixture("bengal").display());
    let mut run = env
        .command(&["run", "--", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(run.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let worker: u32 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut worker_proc = WorkerGuard(worker);
    run.kill().unwrap();
    run.wait().unwrap();
    assert_eq!(env.read_pid_file(), Some(worker.to_string()));
    // Anyone holding the lock for a moment (an editor's pidman check).
    let lock = std::fs::File::open(env.root().join(".bengal.pid.lock")).unwrap();
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| e)
        .unwrap();
    env.run(&["check"]).expect(1);
    let preflight = env.run(&["--json", "preflight", "--yes"]);
    preflight.expect(0);
    assert!(
        preflight.json()["server"].is_null(),
        "{:?}",
        preflight.json()
    );
    drop(held);
    assert!(worker_proc.alive(), "the worker was never signalled");
    worker_proc.stop();
}

/// A process this test started indirectly: stopped by its PID at the end.
struct WorkerGuard(u32);

impl WorkerGuard {
    fn alive(&mut self) -> bool {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0 as i32), None).is_ok()
    }

    fn stop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0 as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn another_processs_command_line_never_reaches_the_terminal_raw() {
    let env = TestEnv::new();
    let port = free_port();
    let mut cmd = Command::new(fixture("bengal"));
    cmd.args([
        "serve",
        "--port",
        &port.to_string(),
        "\u{1b}]0;pwned\u{7}\u{1b}[2J",
        "\nclear: no stale server, port 1 is free",
    ]);
    let server = start_ready(cmd);
    for args in [
        vec!["preflight", "--port", &port.to_string()],
        vec!["-v", "port", &port.to_string()],
        vec!["kill", "--dry-run", &server.pid().to_string()],
    ] {
        let run = env.run(&args);
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(
            !all.contains('\u{1b}') && !all.contains('\u{7}'),
            "{args:?}: {all:?}"
        );
        assert!(
            !all.lines().any(|l| l.starts_with("clear:")),
            "{args:?}: a forged line: {all:?}"
        );
        assert!(
            all.contains("\\e]0;pwned"),
            "{args:?}: shown escaped: {all:?}"
        );
    }
    // In --json it is data, whole.
    let json = env
        .run(&["--json", "preflight", "--port", &port.to_string()])
        .json();
    assert!(
        json["server"]["command"]
            .as_str()
            .unwrap()
            .contains("\u{1b}]0;pwned")
    );
}

#[test]
fn run_wakes_a_stopped_server_to_act_on_the_sigterm_it_forwards() {
    let env = TestEnv::new();
    let mut run = env
        .command(&["run", "--", fixture("bengal").to_str().unwrap(), "serve"])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(run.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let server: i32 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let _server = WorkerGuard(server as u32);
    let pid = |p: i32| nix::unistd::Pid::from_raw(p);
    nix::sys::signal::kill(pid(server), nix::sys::signal::Signal::SIGSTOP).unwrap();
    nix::sys::signal::kill(pid(run.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let done = finish_within(run, Duration::from_secs(20), "run with a stopped server");
    assert_eq!(done.code, 143, "the server ended by SIGTERM: {done:?}");
}

#[test]
fn a_lock_file_root_left_in_a_users_project_never_locks_the_user_out() {
    if !is_root() || !Path::new("/usr/bin/setpriv").exists() {
        return skip(
            "a_lock_file_root_left_in_a_users_project_never_locks_the_user_out",
            "needs root (to leave root's file) and setpriv (to run as nobody)",
        );
    }
    let env = TestEnv::new();
    std::fs::set_permissions(
        env.root(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    // The user's project, and the lock file one `sudo pidman run` left.
    let project = env.root().join("project");
    std::fs::create_dir(&project).unwrap();
    nix::unistd::chown(&project, Some(65534.into()), Some(65534.into())).unwrap();
    let lock = project.join(".bengal.pid.lock");
    std::fs::write(&lock, "").unwrap();
    let as_nobody = |args: &[&str]| {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", PIDMAN])
            .arg("--root")
            .arg(&project)
            .args(args)
            .env("PIDMAN_CACHE_DIR", "/nonexistent")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        Run::from(out)
    };
    // Checks and changes still work: the lock is taken read-only.
    as_nobody(&["write", "--pid", "12345"]).expect(0);
    assert_eq!(
        std::fs::read_to_string(project.join(".bengal.pid")).unwrap(),
        "12345"
    );
    as_nobody(&["check"]).expect(1);
    as_nobody(&["remove"]).expect(0);
    // A claim must record itself in the file: refused, naming the file,
    // its owner and the fix.
    let claim = as_nobody(&["acquire"]);
    claim.expect(2);
    assert!(claim.stderr.contains("belongs to root"), "{}", claim.stderr);
    assert!(
        claim.stderr.contains(&format!("`rm {}`", lock.display())),
        "{}",
        claim.stderr
    );
}
