//! The real-backend conformance scenarios (`tests/conformance/real.json`):
//! the guarantee rows with real processes, files, locks and sockets, run
//! here through the Rust library on the real OS, and by the Python and
//! Node packages from the same file. The format is in
//! `tests/conformance/README.md`.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use pidman::{Claim, Error, Native, PidManager, Plugin, PortOwner};
use serde_json::{Value, json};

use crate::support::*;
use crate::trust::skip;

fn plugin() -> &'static Plugin {
    static PLUGIN: OnceLock<Plugin> = OnceLock::new();
    PLUGIN.get_or_init(embedded)
}

/// The unprivileged user of the root-only rows.
const NOBODY: u32 = 65534;

/// What a scenario started, reaped (by PID) when dropped.
struct World {
    env: TestEnv,
    /// The scenario's PID (a thread id for `thread`).
    pid: Option<u32>,
    port: Option<u16>,
    procs: Vec<Proc>,
}

/// A process that prints "ready <pid> [<more>]" once it is up; the words
/// after "ready".
fn start_reporting(mut cmd: Command) -> (Proc, Vec<String>) {
    use std::io::BufRead;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let words: Vec<String> = line.split_whitespace().map(String::from).collect();
    assert_eq!(words.first().map(String::as_str), Some("ready"), "{line:?}");
    (Proc { child }, words[1..].to_vec())
}

fn arrange(scenario: &Value) -> World {
    let env = TestEnv::new();
    let listen = scenario["listen"].as_bool().unwrap();
    let port = listen.then(free_port);
    let serve = |extra: &[&str]| {
        let mut cmd = Command::new(fixture("bengal"));
        cmd.arg("serve").args(extra);
        if let Some(port) = port {
            cmd.args(["--port", &port.to_string()]);
        }
        cmd
    };
    let mut procs = Vec::new();
    let pid = match scenario["process"].as_str() {
        None => None,
        Some("dead") => Some(dead_pid()),
        Some(kind) => {
            let cmd = match kind {
                // `hidepid`: root's server, which the caller (as NOBODY,
                // with /proc mounted hidepid=2) will not see.
                "bengal" | "hidepid" => serve(&[]),
                "main-exited" => serve(&["--main-exits"]),
                "other" => {
                    let mut cmd = Command::new(fixture("bengal"));
                    cmd.arg("build");
                    cmd
                }
                "empty-argument" => {
                    let mut cmd = Command::new(fixture("bengal"));
                    cmd.args(["", "serve"]);
                    cmd
                }
                "other-user" => {
                    // An interpreter that user may run (not a shim under
                    // root's home).
                    let python = ["/usr/bin/python3", "/usr/local/bin/python3"]
                        .into_iter()
                        .find(|p| Path::new(p).exists())
                        .unwrap_or("python3");
                    let mut cmd = Command::new(python);
                    cmd.arg(fixture("bengal")).arg("serve");
                    if let Some(port) = port {
                        cmd.args(["--port", &port.to_string()]);
                    }
                    cmd.uid(NOBODY).gid(NOBODY);
                    cmd
                }
                "thread" => {
                    let mut cmd = Command::new("python3");
                    cmd.args([
                        "-c",
                        "import sys, threading, time\n\
                         t = threading.Thread(target=time.sleep, args=(60,), daemon=True)\n\
                         t.start()\n\
                         print('ready', t.native_id, flush=True)\n\
                         time.sleep(60)",
                        "bengal",
                        "serve",
                    ]);
                    cmd
                }
                "zombie" => {
                    // Exits at once, unreaped: a zombie with a Bengal argv.
                    let child = serve(&["--exit"]).stdout(Stdio::null()).spawn().unwrap();
                    let pid = child.id();
                    let proc = Proc { child };
                    let deadline = std::time::Instant::now() + Duration::from_secs(10);
                    while !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                        .is_ok_and(|s| s.rsplit_once(')').unwrap().1.trim_start().starts_with('Z'))
                    {
                        assert!(std::time::Instant::now() < deadline, "never a zombie");
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    procs.push(proc);
                    return finish(scenario, env, Some(pid), port, procs);
                }
                other => panic!("unknown process kind {other:?}"),
            };
            let (proc, words) = start_reporting(cmd);
            // `thread`: its TID; the others: their PID.
            let pid = match kind {
                "thread" => words[0].parse().unwrap(),
                _ => proc.pid(),
            };
            procs.push(proc);
            Some(pid)
        }
    };
    finish(scenario, env, pid, port, procs)
}

/// The PID file and the lock, once the process runs.
fn finish(
    scenario: &Value,
    env: TestEnv,
    pid: Option<u32>,
    port: Option<u16>,
    mut procs: Vec<Proc>,
) -> World {
    let file = env.pid_file();
    let pid_text = pid.map_or_else(|| "1".to_owned(), |p| p.to_string());
    match scenario["pid_file"].as_str() {
        None => {}
        Some("pid") => std::fs::write(&file, format!("{pid_text}\n")).unwrap(),
        Some("garbage") => std::fs::write(&file, "not a pid\n").unwrap(),
        Some("oversize") => std::fs::write(&file, format!("{pid_text:<100}")).unwrap(),
        Some("symlink") => {
            let target = env.root().join("elsewhere.pid");
            std::fs::write(&target, format!("{pid_text}\n")).unwrap();
            std::os::unix::fs::symlink(&target, &file).unwrap();
        }
        Some("fifo") => {
            nix::unistd::mkfifo(&file, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap()
        }
        Some("world-writable") => {
            std::fs::write(&file, format!("{pid_text}\n")).unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        }
        Some(other) => panic!("unknown pid_file {other:?}"),
    }
    if scenario["written"] == "before-start" && file.exists() {
        let started = SystemTime::now() - Duration::from_secs(60);
        let f = std::fs::File::options().write(true).open(&file).unwrap();
        f.set_modified(started).unwrap();
    }
    let lock = PathBuf::from(format!("{}.lock", file.display()));
    match scenario["lock"].as_str() {
        None => {}
        Some("held") => {
            let mut cmd = Command::new("python3");
            cmd.args([
                "-c",
                "import fcntl, sys, time\n\
                 f = open(sys.argv[1], 'a')\n\
                 fcntl.flock(f, fcntl.LOCK_EX)\n\
                 print('ready', flush=True)\n\
                 time.sleep(60)",
            ])
            .arg(&lock);
            procs.push(start_reporting(cmd).0);
        }
        Some("root-leftover") => {
            std::fs::write(&lock, "").unwrap();
            std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        Some(other) => panic!("unknown lock {other:?}"),
    }
    if as_nobody(scenario) {
        std::os::unix::fs::chown(env.root(), Some(NOBODY), Some(NOBODY)).unwrap();
        if scenario["pid_file"] != "symlink" && std::fs::symlink_metadata(&file).is_ok() {
            std::os::unix::fs::lchown(&file, Some(NOBODY), Some(NOBODY)).unwrap();
        }
    }
    World {
        env,
        pid,
        port,
        procs,
    }
}

/// Whether the call is made as `NOBODY` (root's leftover lock; hidepid).
fn as_nobody(scenario: &Value) -> bool {
    scenario["lock"] == "root-leftover" || scenario["process"] == "hidepid"
}

/// A WIT-level result as the scenarios write it.
fn answer(result: Result<Value, Error>) -> Value {
    match result {
        Ok(value) => json!({ "ok": value }),
        Err(e) => json!({ "error": e.kind() }),
    }
}

/// Make the scenario's call through the library, as this process (root in
/// CI).
fn call(world: &World, op: &str) -> Value {
    let pid = world.pid.unwrap_or(1);
    let mut pids =
        PidManager::for_pid_file(plugin(), &world.env.pid_file(), Native::default(), false)
            .unwrap();
    answer(match op {
        "check" => pids.check_stale_pid().map(|p| json!(p)),
        "is-bengal" => pids.is_bengal_process(pid).map(|b| json!(b)),
        "kill" => pids
            .kill_stale_process(pid, Some(Duration::from_secs(2)))
            .map(|_| json!(true)),
        "port" => {
            let port = world.port.unwrap_or_else(free_port);
            pids.process_on_port(port).map(|owner| match owner {
                PortOwner::Free => json!(null),
                PortOwner::Listener(p) | PortOwner::Holder(p) => json!(p),
                other => json!(format!("{other:?}").to_lowercase()),
            })
        }
        "acquire-release" => {
            let me = std::process::id();
            match pids.acquire(Some(me)) {
                Ok(Claim::Claimed(guard)) => guard.release().map(|_| json!("claimed")),
                Ok(Claim::Held { .. }) => Ok(json!("held")),
                Err(e) => Err(e),
            }
        }
        "remove" => pids.remove_pid_file(None).map(|b| json!(b)),
        other => panic!("unknown call {other:?}"),
    })
}

/// The same call through the CLI run as `NOBODY` (the root-only rows whose
/// caller is an unprivileged user), read from its `--json`. For `hidepid`,
/// in a mount namespace of its own whose /proc hides other users'
/// processes.
fn call_as_nobody(world: &World, scenario: &Value, op: &str) -> Value {
    let file = world.env.pid_file();
    let file = file.to_str().unwrap().to_owned();
    let pid = world.pid.unwrap_or(1).to_string();
    let port = world.port.unwrap_or_else(free_port).to_string();
    let mut args: Vec<String> = ["--json".into(), op.replace("-release", "")].to_vec();
    match op {
        "check" | "acquire-release" | "remove" => args.extend(["--pid-file".into(), file]),
        "is-bengal" => args.push(pid),
        "kill" => args.extend([pid, "--timeout".into(), "2".into()]),
        "port" => args.push(port),
        other => panic!("{other:?} is not run as another user"),
    }
    let mut cmd = if scenario["process"] == "hidepid" {
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            "mount -t proc -o hidepid=2 proc /proc && exec setpriv --reuid=65534 \
             --regid=65534 --clear-groups \"$@\"",
            "sh",
            PIDMAN,
        ]);
        cmd
    } else {
        let mut cmd = Command::new(PIDMAN);
        cmd.uid(NOBODY).gid(NOBODY);
        cmd
    };
    let out = cmd
        .args(&args)
        .env("PIDMAN_CACHE_DIR", world.env.root().join("cache"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let json: Value = serde_json::from_str(text.lines().next().unwrap_or("{}"))
        .unwrap_or_else(|_| panic!("no JSON: {text} {}", String::from_utf8_lossy(&out.stderr)));
    if json["ok"] == false {
        return json!({ "error": json["error"]["kind"] });
    }
    // A refusal the CLI reports as an answer (exit 1): the WIT's error.
    if let Some(kind) = json["kind"].as_str() {
        return json!({ "error": kind });
    }
    json!({ "ok": match op {
        "check" | "port" => json["pid"].clone(),
        "is-bengal" => json["bengal"].clone(),
        "kill" => json!(true),
        "acquire-release" if json["claimed"] == true => {
            // `acquire` keeps the file for its caller, and its lock ended
            // with it: remove the file as the claim's release would.
            let _ = std::fs::remove_file(world.env.pid_file());
            json!("claimed")
        }
        "acquire-release" => json!("held"),
        _ => json["removed"].clone(),
    }})
}

/// The scenario's expected result with `"pid"` replaced by its PID.
fn expected(scenario: &Value, world: &World) -> Value {
    let mut want = scenario["expect"]["result"].clone();
    if want["ok"] == "pid" {
        want["ok"] = json!(world.pid.unwrap());
    }
    want
}

/// Whether `pid` runs: in `/proc`, and not exited (a zombie with no thread
/// left).
fn runs(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    !(matches!(fields[0], "Z" | "X") && fields[17] == "1")
}

fn run(scenario: &Value) -> Result<(), String> {
    let world = arrange(scenario);
    let op = scenario["call"].as_str().unwrap();
    let got = if as_nobody(scenario) {
        call_as_nobody(&world, scenario, op)
    } else {
        call(&world, op)
    };
    let mut failures = Vec::new();
    let want = expected(scenario, &world);
    if got != want {
        failures.push(format!("result {got}, expected {want}"));
    }
    let file = world.env.pid_file();
    let exists = std::fs::symlink_metadata(&file).is_ok();
    match scenario["expect"]["pid_file"].as_str() {
        Some("kept") if !exists => failures.push("the PID file was removed".into()),
        Some("removed") if exists => failures.push("the PID file was kept".into()),
        _ => {}
    }
    if let Some(pid) = world.pid {
        let running = runs(pid);
        match scenario["expect"]["process"].as_str() {
            Some("running") if !running => failures.push(format!("PID {pid} is gone")),
            Some("gone") if running => failures.push(format!("PID {pid} still runs")),
            _ => {}
        }
    }
    drop(world.procs);
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

#[test]
fn every_real_scenario_is_decided_as_the_table_says() {
    let path = std::env::var_os("PIDMAN_REAL_JSON").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/conformance/real.json"),
        PathBuf::from,
    );
    let scenarios: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(!scenarios.is_empty());
    let mut failures = Vec::new();
    for scenario in &scenarios {
        let name = scenario["name"].as_str().unwrap();
        if scenario["root_only"] == true && !is_root() {
            skip(name, "needs root (another user's process or files)");
            continue;
        }
        let process = scenario["process"].as_str().unwrap_or("");
        if portable() && matches!(process, "thread" | "empty-argument" | "main-exited") {
            skip(
                name,
                "a Linux /proc row: the portable process table (sysinfo) has no thread ids, \
                 drops empty arguments, and shows a process whose main thread ended as exited",
            );
            continue;
        }
        if let Err(why) = run(scenario) {
            failures.push(format!("{name}: {why}"));
        }
    }
    assert!(failures.is_empty(), "\n  {}", failures.join("\n  "));
}
