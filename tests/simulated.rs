//! The conformance scenarios (`tests/conformance/*.json`) run by the real
//! guest on the simulated backend: same plugin, same linker as on the real
//! OS, but an in-memory process table, simulated sockets and a virtual
//! clock, so every policy path (5-second timeouts included) is checked
//! deterministically in microseconds.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use pidman::simulated::{OnTerm, Process, Signal, Simulated, Socket};
use pidman::{
    Claim, GuestError, KillOutcome, PidManager, Plugin, PortDescription, PortOwner, PortStatus,
    Role, StopReport, Verdict,
};
use serde_json::{Value, json};

fn plugin() -> &'static Plugin<Simulated> {
    static PLUGIN: OnceLock<Plugin<Simulated>> = OnceLock::new();
    PLUGIN.get_or_init(crate::support::embedded)
}

/// Lay out a scenario's world: the simulated processes and sockets, and the
/// real PID file in `root`.
fn arrange(sim: &Simulated, root: &Path, world: &Value) {
    let pid_file = root.join(".bengal.pid");
    let mut w = sim.world();
    let now = w.now_ms;
    for p in world["processes"].as_array().unwrap() {
        let argv: Vec<&str> = p["argv"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let mut process = Process::new(
            &argv,
            now - p["started_ms_ago"].as_u64().unwrap(),
            p["uid"].as_u64().unwrap() as u32,
        );
        if p["zombie"].as_bool().unwrap() {
            process.state = pidman::simulated::ProcessState::Zombie;
        }
        process.on_term = match p["on_term"].as_str().unwrap() {
            "ignore" => OnTerm::Ignore,
            _ => OnTerm::ExitAfter(p["term_delay_ms"].as_u64().unwrap()),
        };
        process.unkillable = p["unkillable"].as_bool().unwrap();
        process.parent = p["ppid"].as_u64().map_or(1, |p| p as u32);
        process.group = p["pgid"].as_u64().map(|g| g as u32);
        process.session = p["sid"].as_u64().map_or(0, |s| s as u32);
        process.respawn = p["respawn"].as_bool().unwrap_or(false);
        w.processes
            .insert(p["pid"].as_u64().unwrap() as u32, process);
    }
    for s in world["sockets"].as_array().unwrap() {
        w.sockets.push(Socket {
            port: s["port"].as_u64().unwrap() as u16,
            listening: s["listening"].as_bool().unwrap(),
            pid: s["pid"].as_u64().map(|p| p as u32),
            uid: s["uid"].as_u64().unwrap() as u32,
            ipv6: s["ipv6"].as_bool().unwrap(),
        });
    }
    if world["lock_held_elsewhere"].as_bool().unwrap() {
        w.locks_held_elsewhere.insert(root.join(".bengal.pid.lock"));
    }
    if let Some(kind) = world["lock_error"].as_str() {
        w.lock_error = Some(match kind {
            "permission-denied" => GuestError::PermissionDenied("simulated".into()),
            "io" => GuestError::Io("simulated".into()),
            other => panic!("unknown lock error {other}"),
        });
    }
    // The held lock's record of its claimant, which holds it itself:
    // `<pid> <start token> <group: 0, none> <holder pid> <holder token>`.
    if let Some(named) = world["lock_names"].as_u64() {
        let start = w.processes[&(named as u32)].start_time_ms;
        let record = format!("{named} {start} 0 {named} {start}\n");
        std::fs::write(root.join(".bengal.pid.lock"), record).unwrap();
    }
    // A record that nobody holds: `{start:PID}` stands for PID's token.
    if let Some(text) = world["lock_file"].as_str() {
        let mut text = text.to_owned();
        for (pid, process) in &w.processes {
            text = text.replace(
                &format!("{{start:{pid}}}"),
                &process.start_time_ms.to_string(),
            );
        }
        std::fs::write(root.join(".bengal.pid.lock"), text).unwrap();
    }
    let file = &world["pid_file"];
    if file.is_null() {
        return;
    }
    let contents = file["contents"].as_str().unwrap();
    let real = if file["symlink"].as_bool().unwrap() {
        let target = root.join("elsewhere.pid");
        std::os::unix::fs::symlink(&target, &pid_file).unwrap();
        target
    } else {
        pid_file.clone()
    };
    std::fs::write(&real, contents).unwrap();
    let written =
        SystemTime::now() - Duration::from_millis(file["written_ms_ago"].as_u64().unwrap());
    std::fs::File::options()
        .write(true)
        .open(&real)
        .unwrap()
        .set_modified(written)
        .unwrap();
    let mode = file["mode"].as_u64().unwrap() as u32;
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(mode)).unwrap();
    if let Some(uid) = file["owner_uid"].as_u64() {
        w.file_owners.insert(pid_file, uid as u32);
    }
}

fn kill_name(outcome: KillOutcome) -> &'static str {
    match outcome {
        KillOutcome::AlreadyGone => "already-gone",
        KillOutcome::Terminated => "terminated",
        KillOutcome::Killed => "killed",
    }
}

fn error(e: pidman::Error) -> Value {
    json!({"error": e.kind()})
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Other => "other",
        Role::Bengal => "bengal",
        Role::Claimed => "claimed",
    }
}

/// A stop report's members in the scenarios' notation.
fn members(report: &StopReport) -> Value {
    report
        .members
        .iter()
        .map(|m| json!([m.pid, kill_name(m.outcome)]))
        .collect()
}

fn port_status_name(status: &PortStatus) -> &'static str {
    match status {
        PortStatus::Unchecked => "unchecked",
        PortStatus::Free => "free",
        PortStatus::HeldByServer(_) => "held-by-server",
        PortStatus::HeldByOther(_) => "held-by-other",
        PortStatus::HeldByUnknown(_) => "held-by-unknown",
    }
}

fn lineage_pids(status: &PortStatus) -> Value {
    match status {
        PortStatus::HeldByServer(h) | PortStatus::HeldByOther(h) => {
            h.lineage.iter().map(|e| e.pid).collect()
        }
        _ => Value::Null,
    }
}

/// The call's result, and the stop report's members when it made one.
type Answer = (Value, Option<Value>);

/// Make the call; its result in the scenarios' notation.
fn call(pids: &mut PidManager<Simulated>, call: &Value) -> Answer {
    let pid = call["pid"].as_u64().map(|p| p as u32);
    match call["op"].as_str().unwrap() {
        "kill" => {
            let timeout = call["timeout_ms"].as_u64().map(Duration::from_millis);
            match pids.kill_stale_process(pid.unwrap(), timeout) {
                Ok(report) => (
                    json!({"ok": kill_name(report.outcome)}),
                    Some(members(&report)),
                ),
                Err(e) => (error(e), None),
            }
        }
        "clear" => {
            let port = call["port"].as_u64().map(|p| p as u16);
            let timeout = call["timeout_ms"].as_u64().map(Duration::from_millis);
            match pids.preflight(port) {
                Err(e) => (error(e), None),
                Ok(report) => match report.server {
                    None => (json!({"ok": "no-server"}), None),
                    Some(server) => match pids.clear_stale(&server, port, timeout) {
                        Ok(cleared) => (
                            json!({"ok": kill_name(cleared.stopped.outcome)}),
                            Some(members(&cleared.stopped)),
                        ),
                        Err(e) => (error(e), None),
                    },
                },
            }
        }
        _ => (simple_call(pids, call), None),
    }
}

/// A call that stops nothing.
fn simple_call(pids: &mut PidManager<Simulated>, call: &Value) -> Value {
    let pid = call["pid"].as_u64().map(|p| p as u32);
    match call["op"].as_str().unwrap() {
        "plan" => pids.plan_stop(pid.unwrap()).map_or_else(error, |tree| {
            json!({"ok": tree.iter().map(|m| m.identity.pid).collect::<Vec<_>>()})
        }),
        "describe-port" => pids
            .describe_port(call["port"].as_u64().unwrap() as u16)
            .map_or_else(error, |d| {
                json!({"ok": match d {
                    PortDescription::Free => json!("free"),
                    PortDescription::Unknown(uid) => json!({"unknown": uid}),
                    PortDescription::Held(h) => json!({
                        "listening": h.listening,
                        "lineage": h.lineage.iter().map(|e| json!([e.pid, role_name(e.role)])).collect::<Vec<_>>(),
                        "orphan_of": h.orphan_of.map(|o| o.pid),
                    }),
                }})
            }),
        "check" => pids
            .check_stale_pid()
            .map_or_else(error, |r| json!({"ok": r})),
        "port" => pids
            .process_on_port(call["port"].as_u64().unwrap() as u16)
            .map_or_else(error, |owner| {
                json!({"ok": match owner {
                    PortOwner::Free => json!("free"),
                    PortOwner::Listener(p) => json!({"listener": p}),
                    PortOwner::Holder(p) => json!({"holder": p}),
                    PortOwner::Unknown(uid) => json!({"unknown": uid}),
                }})
            }),
        "preflight" => {
            let port = call["port"].as_u64().map(|p| p as u16);
            pids.preflight(port).map_or_else(error, |report| {
                let verdict = match report.verdict {
                    Verdict::Clear => "clear",
                    Verdict::StaleServer => "stale-server",
                    Verdict::PortBusy => "port-busy",
                };
                json!({"ok": {
                    "verdict": verdict,
                    "server": report.server.as_ref().map(|s| s.identity.pid),
                    "tree": report.server.as_ref().map_or_else(Vec::new, |s| {
                        s.tree.iter().map(|m| m.identity.pid).collect()
                    }),
                    "port": port_status_name(&report.port),
                    "lineage": lineage_pids(&report.port),
                }})
            })
        }
        "acquire" => match pids.acquire(pid) {
            // Like the CLI: the claim outlives the call (the file stays).
            Ok(Claim::Claimed(guard)) => {
                std::mem::forget(guard);
                json!({"ok": {"claimed": true}})
            }
            Ok(Claim::Held { holder }) => json!({"ok": {"held": holder}}),
            Err(e) => error(e),
        },
        "write" => pids
            .write_pid_file(pid)
            .map_or_else(error, |p| json!({"ok": p})),
        "remove" => pids
            .remove_pid_file(pid)
            .map_or_else(error, |removed| json!({"ok": removed})),
        "is-bengal" => pids
            .is_bengal_process(pid.unwrap())
            .map_or_else(error, |yes| json!({"ok": yes})),
        other => panic!("unknown op {other}"),
    }
}

fn run_scenario(scenario: &Value) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let sim = Simulated::new();
    arrange(&sim, &root, &scenario["world"]);
    let start = sim.world().now_ms;
    let mut pids =
        PidManager::in_root(plugin(), &root, sim.clone(), false).map_err(|e| e.to_string())?;
    let (result, stopped) = call(&mut pids, &scenario["call"]);
    let expect = &scenario["expect"];
    let mut failures = Vec::new();
    if !matches_expected(&result, &expect["result"], &scenario["call"]) {
        failures.push(format!("result {result}, expected {}", expect["result"]));
    }
    if let Some(expected) = expect.get("members")
        && stopped.as_ref() != Some(expected)
    {
        failures.push(format!("members {stopped:?}, expected {expected}"));
    }
    let w = sim.world();
    if let Some(signals) = expect.get("signals") {
        let sent: Vec<Value> = w
            .signals
            .iter()
            .map(|(pid, s)| {
                json!([
                    pid,
                    match s {
                        Signal::Term => "term",
                        Signal::Kill => "kill",
                        Signal::Cont => "cont",
                    }
                ])
            })
            .collect();
        if Value::from(sent.clone()) != *signals {
            failures.push(format!("signals {sent:?}, expected {signals}"));
        }
    }
    if let Some(file) = expect.get("pid_file") {
        let now = std::fs::read_to_string(root.join(".bengal.pid")).ok();
        if json!(now) != *file {
            failures.push(format!("PID file {now:?}, expected {file}"));
        }
    }
    if let Some(elapsed) = expect["elapsed_ms"].as_u64()
        && w.now_ms - start != elapsed
    {
        failures.push(format!(
            "took {} virtual ms, expected {elapsed}",
            w.now_ms - start
        ));
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// A preflight's answer is compared on the keys the scenario names;
/// everything else, whole.
fn matches_expected(result: &Value, expected: &Value, call: &Value) -> bool {
    match (
        call["op"].as_str(),
        result["ok"].as_object(),
        expected["ok"].as_object(),
    ) {
        (Some("preflight"), Some(got), Some(want)) => {
            want.iter().all(|(key, value)| got.get(key) == Some(value))
        }
        _ => result == expected,
    }
}

fn run_file(name: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/conformance")
        .join(name);
    let scenarios: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(!scenarios.is_empty());
    let failures: Vec<String> = scenarios
        .iter()
        .filter_map(|s| {
            run_scenario(s)
                .err()
                .map(|e| format!("{}: {e}", s["name"].as_str().unwrap()))
        })
        .collect();
    assert!(failures.is_empty(), "{name}:\n  {}", failures.join("\n  "));
}

#[test]
fn conformance_check() {
    run_file("check.json");
}

#[test]
fn conformance_kill() {
    run_file("kill.json");
}

#[test]
fn conformance_port() {
    run_file("port.json");
}

#[test]
fn conformance_preflight() {
    run_file("preflight.json");
}

#[test]
fn conformance_acquire() {
    run_file("acquire.json");
}

#[test]
fn conformance_remove() {
    run_file("remove.json");
}

#[test]
fn conformance_is_bengal() {
    run_file("is_bengal.json");
}

#[test]
fn conformance_clear() {
    run_file("clear.json");
}

#[test]
fn conformance_tree() {
    run_file("tree.json");
}

#[test]
fn the_five_second_default_runs_on_the_virtual_clock() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulated::new();
    let start = sim.world().now_ms;
    {
        let mut w = sim.world();
        let mut stubborn =
            Process::new(&["bengal", "serve"], start - 60_000, pidman::simulated::UID);
        stubborn.on_term = OnTerm::Ignore;
        w.processes.insert(4242, stubborn);
    }
    let mut pids = PidManager::in_root(plugin(), dir.path(), sim.clone(), false).unwrap();
    assert!(matches!(
        pids.kill_stale_process(4242, None).map(|r| r.outcome),
        Ok(KillOutcome::Killed)
    ));
    let w = sim.world();
    assert_eq!(w.now_ms - start, 5_000, "five virtual seconds, none real");
    assert_eq!(
        w.signals,
        vec![
            (4242, Signal::Term),
            (4242, Signal::Cont),
            (4242, Signal::Kill)
        ]
    );
}
