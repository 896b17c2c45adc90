//! The server is a tree (SPEC.md, third release): the tree rules against
//! the fake host. Each test builds the shape a real dev server has (a
//! wrapper whose child serves, a reloader, a pre-fork pool, an orphaned
//! group) and asserts every signal the policy sent, and every one it did
//! not.

use crate::fake::{Fake, FakeFile, OWN_PID, OnTerm, PARENT_PID, State, T0, UID};
use crate::policy::kill::{KILL_CONFIRM_MS, kill_stale_process, plan_stop};
use crate::policy::port::describe_port;
use crate::policy::preflight::{clear_stale, preflight};
use crate::wit::bengal::pid_manager::ports::TcpState;
use crate::wit::bengal::pid_manager::process_table::ProcessState;
use crate::wit::bengal::pid_manager::signals::Signal;
use crate::wit::bengal::pid_manager::types::{Error, Pid};
use crate::wit::exports::bengal::pid_manager::manager::{
    KillOutcome, PortDescription, PortStatus, Role, Verdict,
};

const PID_FILE: &str = "/srv/site/.bengal.pid";
const LOCK: &str = "/srv/site/.bengal.pid.lock";
const PORT: u16 = 5173;

/// Every PID that got any signal.
fn signalled(fake: &Fake) -> Vec<Pid> {
    let mut pids: Vec<Pid> = fake.signals().iter().map(|(pid, _)| *pid).collect();
    pids.dedup();
    pids
}

fn terms(fake: &Fake) -> Vec<Pid> {
    fake.signals()
        .iter()
        .filter(|(_, s)| *s == Signal::Term)
        .map(|(pid, _)| *pid)
        .collect()
}

/// `npm run dev`: npm (5000), its shell (5001), node serving (5002).
fn wrapper(fake: &Fake) {
    fake.spawn(5000, "npm run dev");
    fake.child(5001, 5000, "sh -c vite", 100);
    fake.child(5002, 5001, "node vite", 100);
}

#[test]
fn kill_stops_the_whole_tree_the_root_first() {
    let fake = Fake::new();
    wrapper(&fake);
    let report = kill_stale_process(&fake, 5000, None).unwrap();
    assert_eq!(
        terms(&fake),
        vec![5000, 5001, 5002],
        "the root first, parents before children"
    );
    assert_eq!(report.outcome, KillOutcome::Terminated);
    let members: Vec<(Pid, KillOutcome)> =
        report.members.iter().map(|m| (m.pid, m.outcome)).collect();
    assert_eq!(
        members,
        vec![
            (5000, KillOutcome::Terminated),
            (5001, KillOutcome::Terminated),
            (5002, KillOutcome::Terminated),
        ]
    );
    assert_eq!(report.members[2].command, "node vite");
    assert_eq!(
        fake.0.borrow().snapshots,
        2,
        "one snapshot before the first signal, one for what the tree started meanwhile"
    );
    for pid in [5000, 5001, 5002] {
        assert_ne!(fake.0.borrow().procs[&pid].state, ProcessState::Running);
    }
}

#[test]
fn every_term_is_followed_by_cont_so_a_stopped_member_acts_on_it() {
    let fake = Fake::new();
    wrapper(&fake);
    fake.with_proc(5002, |p| p.stopped = true); // Ctrl-Z reached the server
    let report = kill_stale_process(&fake, 5000, Some(1_000)).unwrap();
    assert_eq!(report.members[2].outcome, KillOutcome::Terminated);
    let signals = fake.signals();
    let at = signals
        .iter()
        .position(|s| *s == (5002, Signal::Term))
        .unwrap();
    assert_eq!(signals[at + 1], (5002, Signal::Cont));
    assert!(!signals.contains(&(5002, Signal::Kill)));
}

#[test]
fn members_that_ignore_term_are_killed_at_one_shared_timeout() {
    let fake = Fake::new();
    wrapper(&fake);
    fake.with_proc(5001, |p| p.on_term = OnTerm::Ignore);
    fake.with_proc(5002, |p| p.on_term = OnTerm::Ignore);
    let report = kill_stale_process(&fake, 5000, Some(300)).unwrap();
    assert_eq!(
        fake.now() - T0,
        300,
        "one timeout for the tree, not one per member"
    );
    let outcomes: Vec<KillOutcome> = report.members.iter().map(|m| m.outcome).collect();
    assert_eq!(
        outcomes,
        vec![
            KillOutcome::Terminated,
            KillOutcome::Killed,
            KillOutcome::Killed
        ]
    );
    assert!(fake.signals().contains(&(5002, Signal::Kill)));
    assert!(!fake.signals().contains(&(5000, Signal::Kill)));
}

#[test]
fn a_member_that_survives_sigkill_is_an_error_naming_it() {
    let fake = Fake::new();
    wrapper(&fake);
    fake.with_proc(5002, |p| {
        p.on_term = OnTerm::Ignore;
        p.unkillable = true;
    });
    match kill_stale_process(&fake, 5000, Some(100)) {
        Err(Error::Survived(why)) => assert!(why.contains("5002"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.now() - T0, 100 + KILL_CONFIRM_MS);
}

#[test]
fn siblings_the_caller_and_its_ancestors_are_never_touched() {
    let fake = Fake::new();
    // The caller's own chain: a shell (3000) ran the parent (3999), which
    // ran pidman (4000). The server is a child of that shell too.
    fake.spawn_at(3000, "bash", T0 - 120_000);
    fake.with_proc(PARENT_PID, |p| {
        p.parent = 3000;
        p.group = 3000;
    });
    fake.child(5000, 3000, "bengal serve", 1_000);
    fake.child(5001, 5000, "bengal serve --worker", 100);
    fake.child(5100, 3000, "vim bengal.toml", 2_000); // a sibling
    fake.spawn(6000, "bengal serve"); // another project's server
    kill_stale_process(&fake, 5000, None).unwrap();
    assert_eq!(signalled(&fake), vec![5000, 5001]);
    // The caller's ancestors are refused as roots.
    for pid in [3000, PARENT_PID, OWN_PID] {
        assert!(
            matches!(kill_stale_process(&fake, pid, None), Err(Error::Denied(_))),
            "{pid}"
        );
    }
    assert_eq!(signalled(&fake), vec![5000, 5001]);
}

#[test]
fn a_member_whose_pid_is_reused_after_the_snapshot_is_never_signalled() {
    let fake = Fake::new();
    wrapper(&fake);
    fake.0.borrow_mut().after_snapshot = Some(|state: &mut State| {
        // node (5002) exits and an unrelated process takes its PID.
        let reused = state.procs.get_mut(&5002).unwrap();
        reused.argv = vec!["postgres".into()];
        reused.start_ms = T0;
        reused.parent = 1;
        reused.group = 5002;
    });
    let report = kill_stale_process(&fake, 5000, None).unwrap();
    assert_eq!(signalled(&fake), vec![5000, 5001]);
    assert_eq!(report.members[2].outcome, KillOutcome::AlreadyGone);
    assert_eq!(fake.0.borrow().procs[&5002].state, ProcessState::Running);
}

#[test]
fn another_users_member_refuses_the_stop_before_any_signal() {
    let fake = Fake::new();
    wrapper(&fake);
    fake.with_proc(5002, |p| p.uid = 0);
    assert!(matches!(
        kill_stale_process(&fake, 5000, None),
        Err(Error::PermissionDenied(_))
    ));
    assert!(fake.signals().is_empty());
}

#[test]
fn plan_stop_lists_the_tree_and_signals_nothing() {
    let fake = Fake::new();
    wrapper(&fake);
    let plan = plan_stop(&fake, 5000).unwrap();
    let pids: Vec<Pid> = plan.iter().map(|m| m.identity.pid).collect();
    assert_eq!(pids, vec![5000, 5001, 5002]);
    assert_eq!(plan[2].parent, 5001);
    assert_eq!(plan[1].command, "sh -c vite");
    assert!(fake.signals().is_empty());
    assert_eq!(plan_stop(&fake, 4242), Ok(Vec::new()), "nothing runs there");
    assert!(matches!(plan_stop(&fake, 1), Err(Error::Denied(_))));
}

// --- the port's holder and the server above it --------------------------

#[test]
fn a_reloader_is_stopped_from_the_top_so_it_cannot_respawn() {
    let fake = Fake::new();
    fake.spawn(5000, "python -m bengal serve"); // the reloader
    fake.child(5001, 5000, "python -m bengal serve", 100); // its server
    fake.listen(PORT, Some(5001), UID, TcpState::Listen, 11);
    let report = preflight(&fake, PID_FILE, Some(PORT)).unwrap();
    assert_eq!(report.verdict, Verdict::StaleServer);
    let server = report.server.unwrap();
    assert_eq!(server.identity.pid, 5000, "the topmost Bengal process");
    assert!(server.holds_port && !server.from_pid_file);
    let tree: Vec<Pid> = server.tree.iter().map(|m| m.identity.pid).collect();
    assert_eq!(tree, vec![5000, 5001]);
    assert!(matches!(report.port, PortStatus::HeldByServer(_)));
    fake.0.borrow_mut().sockets.clear();
    let cleared = clear_stale(&fake, PID_FILE, &server, Some(PORT), None).unwrap();
    assert_eq!(terms(&fake), vec![5000, 5001]);
    assert!(matches!(cleared.port, PortStatus::Free));
}

#[test]
fn a_pre_fork_pool_is_one_server() {
    let fake = Fake::new();
    fake.spawn(5000, "bengal serve --workers 3");
    for worker in 5001..=5003 {
        fake.child(worker, 5000, "bengal-worker", 100);
        fake.listen(PORT, Some(worker), UID, TcpState::Listen, u64::from(worker));
    }
    let report = preflight(&fake, PID_FILE, Some(PORT)).unwrap();
    let server = report.server.unwrap();
    assert_eq!(server.identity.pid, 5000);
    assert_eq!(server.tree.len(), 4);
    clear_stale(&fake, PID_FILE, &server, None, None).unwrap();
    assert_eq!(terms(&fake), vec![5000, 5001, 5002, 5003]);
}

#[test]
fn the_holder_is_named_with_its_ancestry() {
    let fake = Fake::new();
    wrapper(&fake);
    fake.listen(PORT, Some(5002), UID, TcpState::Listen, 11);
    let Ok(PortDescription::Held(holder)) = describe_port(&fake, PORT, Some(PID_FILE)) else {
        panic!("not held");
    };
    let lineage: Vec<(Pid, &str, Role)> = holder
        .lineage
        .iter()
        .map(|e| (e.pid, e.command.as_str(), e.role))
        .collect();
    assert_eq!(
        lineage,
        vec![
            (5002, "node vite", Role::Other),
            (5001, "sh -c vite", Role::Other),
            (5000, "npm run dev", Role::Other),
        ],
        "up to init, which is not named"
    );
    assert!(holder.listening && holder.orphan_of.is_none());
    // No server above it: another program's port, never touched.
    let report = preflight(&fake, PID_FILE, Some(PORT)).unwrap();
    assert_eq!(report.verdict, Verdict::PortBusy);
    assert!(report.server.is_none());
    assert!(fake.signals().is_empty());
}

/// The lock file a `pidman run` (PID 4100, gone) left when it was
/// SIGKILLed: it records its server `pid` (start token and time: the fake's
/// are one) and, when it leads one, its group.
fn record_claim(fake: &Fake, pid: Pid, start_ms: u64, group: Option<Pid>) {
    let group = group.unwrap_or(0);
    let record = format!(
        "{pid} {start_ms} {group} 4100 {} {start_ms}\n",
        start_ms - 5
    );
    fake.put(
        LOCK,
        FakeFile::regular(record.as_bytes(), fake.now() - 30_000),
    );
}

/// `pidman run -- sh -c 'python3 -m http.server'`: the shell (5000) leads
/// its group; python (5001) serves.
fn run_wrapper(fake: &Fake) -> u64 {
    fake.spawn(5000, "sh -c python3 -m http.server");
    fake.child(5001, 5000, "python3 -m http.server", 100);
    fake.listen(PORT, Some(5001), UID, TcpState::Listen, 11);
    fake.0.borrow().procs[&5000].start_ms
}

#[test]
fn the_server_a_run_claimed_is_found_above_the_port_after_run_died() {
    let fake = Fake::new();
    let start = run_wrapper(&fake);
    fake.write(PID_FILE, b"5000");
    record_claim(&fake, 5000, start, Some(5000));
    let report = preflight(&fake, PID_FILE, Some(PORT)).unwrap();
    assert_eq!(report.verdict, Verdict::StaleServer);
    let server = report.server.unwrap();
    assert_eq!(server.identity.pid, 5000);
    assert!(
        !server.claimed,
        "nobody holds the lock: a record is no live claim"
    );
    let PortStatus::HeldByServer(holder) = &report.port else {
        panic!("{:?}", report.port);
    };
    assert_eq!(holder.lineage.last().unwrap().role, Role::Claimed);
    fake.0.borrow_mut().sockets.clear();
    clear_stale(&fake, PID_FILE, &server, Some(PORT), None).unwrap();
    assert_eq!(terms(&fake), vec![5000, 5001]);
}

#[test]
fn the_orphaned_group_of_a_claimed_server_is_its_tree() {
    let fake = Fake::new();
    let start = run_wrapper(&fake);
    record_claim(&fake, 5000, start, Some(5000));
    // The shell was SIGKILLed: python is reparented to init, still in the
    // group. A process of the same group that predates the claim is not
    // the server's.
    fake.0.borrow_mut().procs.remove(&5000);
    fake.with_proc(5001, |p| p.parent = 1);
    fake.spawn_at(5009, "older", start - 10);
    fake.with_proc(5009, |p| p.group = 5000);
    let report = preflight(&fake, PID_FILE, Some(PORT)).unwrap();
    assert_eq!(report.verdict, Verdict::StaleServer);
    let server = report.server.unwrap();
    assert_eq!(server.group, Some(5000));
    let tree: Vec<Pid> = server.tree.iter().map(|m| m.identity.pid).collect();
    assert_eq!(tree, vec![5001]);
    let PortStatus::HeldByServer(holder) = &report.port else {
        panic!("{:?}", report.port);
    };
    assert_eq!(holder.orphan_of.map(|o| o.pid), Some(5000));
    fake.0.borrow_mut().sockets.clear();
    let cleared = clear_stale(&fake, PID_FILE, &server, Some(PORT), None).unwrap();
    assert_eq!(cleared.stopped.outcome, KillOutcome::AlreadyGone);
    assert_eq!(signalled(&fake), vec![5001]);
    assert!(matches!(cleared.port, PortStatus::Free));
}

#[test]
fn a_group_is_only_the_claims_while_the_lock_file_records_it() {
    let fake = Fake::new();
    let start = run_wrapper(&fake);
    record_claim(&fake, 5000, start, Some(5000));
    fake.0.borrow_mut().procs.remove(&5000);
    fake.with_proc(5001, |p| p.parent = 1);
    let server = preflight(&fake, PID_FILE, Some(PORT))
        .unwrap()
        .server
        .unwrap();
    // A new claim replaced the record between the check and the stop.
    record_claim(&fake, 7000, T0, None);
    let cleared = clear_stale(&fake, PID_FILE, &server, None, None).unwrap();
    assert_eq!(cleared.stopped.outcome, KillOutcome::AlreadyGone);
    assert!(fake.signals().is_empty());
}

#[test]
fn a_record_nobody_may_trust_or_a_reused_group_finds_no_orphan() {
    for case in ["other user", "world-writable", "reused leader", "no group"] {
        let fake = Fake::new();
        let start = run_wrapper(&fake);
        record_claim(&fake, 5000, start, (case != "no group").then_some(5000));
        fake.0.borrow_mut().procs.remove(&5000);
        fake.with_proc(5001, |p| p.parent = 1);
        match case {
            "other user" => fake.0.borrow_mut().files.get_mut(LOCK).unwrap().uid = 1001,
            "world-writable" => fake.0.borrow_mut().files.get_mut(LOCK).unwrap().mode = 0o666,
            "reused leader" => fake.spawn_at(5000, "unrelated", T0),
            _ => {}
        }
        let report = preflight(&fake, PID_FILE, Some(PORT)).unwrap();
        assert_eq!(report.verdict, Verdict::PortBusy, "{case}");
        assert!(report.server.is_none(), "{case}");
    }
}

#[test]
fn a_server_above_the_caller_is_the_callers_own_never_stale() {
    let fake = Fake::new();
    // bengal serve (3000) runs a shell (3999) that runs pidman (4000).
    fake.spawn_at(3000, "bengal serve", T0 - 120_000);
    fake.with_proc(PARENT_PID, |p| {
        p.parent = 3000;
        p.argv = vec!["sh".into()];
    });
    fake.write(PID_FILE, b"3000");
    fake.listen(PORT, Some(3000), UID, TcpState::Listen, 11);
    let report = preflight(&fake, PID_FILE, Some(PORT)).unwrap();
    assert!(report.server.is_none(), "{report:?}");
    assert!(fake.signals().is_empty());
}

// --- the review's cases ---------------------------------------------------

#[test]
fn the_search_for_a_server_stops_at_a_session_leader() {
    // `screen -S site bengal serve`: the daemon keeps that argv. A window
    // (a session leader) runs a shell, and in it a server or another
    // program holds the port. The daemon, and every other window under
    // it, is never the server.
    for holder_line in ["bengal serve", "node vite"] {
        let fake = Fake::new();
        fake.spawn(5000, "SCREEN -S site bengal serve");
        fake.with_proc(5000, |p| p.session = 5000);
        fake.child(5001, 5000, "bash", 100);
        fake.with_proc(5001, |p| {
            p.session = 5001;
            p.group = 5001;
        });
        fake.child(5002, 5001, holder_line, 100);
        fake.with_proc(5002, |p| p.session = 5001);
        fake.child(5010, 5000, "vim notes.txt", 50); // another window
        fake.listen(PORT, Some(5002), UID, TcpState::Listen, 11);
        let report = preflight(&fake, PID_FILE, Some(PORT)).unwrap();
        match holder_line {
            "bengal serve" => {
                let server = report.server.unwrap();
                assert_eq!(server.identity.pid, 5002);
                assert_eq!(server.tree.len(), 1);
                clear_stale(&fake, PID_FILE, &server, None, None).unwrap();
                assert_eq!(signalled(&fake), vec![5002]);
            }
            _ => {
                assert_eq!(report.verdict, Verdict::PortBusy);
                assert!(report.server.is_none());
                assert!(fake.signals().is_empty());
            }
        }
    }
}

#[test]
fn a_zombie_group_leader_with_another_token_means_the_group_was_reused() {
    let fake = Fake::new();
    let start = run_wrapper(&fake);
    record_claim(&fake, 5000, start, Some(5000));
    // PID 5000 went to an unrelated process that exited and is a zombie.
    fake.spawn_at(5000, "unrelated", T0 - 10);
    fake.with_proc(5000, |p| p.state = ProcessState::Zombie);
    fake.with_proc(5001, |p| p.parent = 1);
    let report = preflight(&fake, PID_FILE, Some(PORT)).unwrap();
    assert_eq!(report.verdict, Verdict::PortBusy, "{report:?}");
    assert!(fake.signals().is_empty());
}

#[test]
fn a_record_from_before_this_boot_names_no_group() {
    // The record survived a reboot (or a container restart): PIDs and
    // start tokens began again, and group 5000 may be anyone's.
    let fake = Fake::new();
    let start = run_wrapper(&fake);
    let boot = T0 - 1_000;
    fake.with_proc(1, |p| p.start_ms = boot);
    let before_boot = boot - 3_600_000;
    fake.put(
        LOCK,
        FakeFile::regular(
            format!("5000 {start} 5000 4100 1 {before_boot}\n").as_bytes(),
            fake.now() - 30_000,
        ),
    );
    fake.0.borrow_mut().procs.remove(&5000);
    fake.with_proc(5001, |p| p.parent = 1);
    let report = preflight(&fake, PID_FILE, Some(PORT)).unwrap();
    assert_eq!(report.verdict, Verdict::PortBusy, "{report:?}");
    assert!(fake.signals().is_empty());
}

#[test]
fn a_claim_covers_its_servers_children_so_run_never_stops_a_managed_server() {
    // `pidman run -- uv run bengal serve`: run (4100) holds the lock for uv
    // (5000); Bengal (5001), uv's child, wrote its own PID to the file.
    let fake = Fake::new();
    fake.spawn(4100, "pidman run -- uv run bengal serve");
    fake.child(5000, 4100, "uv run bengal serve", 10);
    fake.with_proc(5000, |p| p.group = 5000);
    fake.child(5001, 5000, "python -m bengal serve", 10);
    fake.listen(PORT, Some(5001), UID, TcpState::Listen, 11);
    let (uv, run) = {
        let s = fake.0.borrow();
        (s.procs[&5000].start_ms, s.procs[&4100].start_ms)
    };
    fake.0.borrow_mut().foreign_locks.insert(LOCK.into());
    fake.put(
        LOCK,
        FakeFile::regular(
            format!("5000 {uv} 5000 4100 {run} {uv}\n").as_bytes(),
            fake.now() - 30_000,
        ),
    );
    fake.write(PID_FILE, b"5001");
    let server = preflight(&fake, PID_FILE, Some(PORT))
        .unwrap()
        .server
        .unwrap();
    assert_eq!(server.identity.pid, 5001);
    assert!(server.claimed, "the file names the claim's server's child");
    // Without the PID file, found through the port: claimed all the same.
    fake.0.borrow_mut().files.remove(PID_FILE);
    let server = preflight(&fake, PID_FILE, Some(PORT))
        .unwrap()
        .server
        .unwrap();
    assert!(server.claimed, "{server:?}");
    assert!(fake.signals().is_empty());
}

#[test]
fn what_the_tree_starts_while_it_is_stopped_is_stopped_too() {
    // A pool master (5000, leading group 5000) replaces its worker when it
    // gets SIGTERM: the new worker (5002) is not in the snapshot, and is
    // orphaned when the master exits. It is in the master's group.
    let fake = Fake::new();
    fake.spawn(5000, "bengal serve --workers 1");
    fake.child(5001, 5000, "bengal-worker", 100);
    fake.with_proc(5000, |p| p.spawns_on_term = Some(5002));
    let report = kill_stale_process(&fake, 5000, None).unwrap();
    let stopped: Vec<Pid> = report.members.iter().map(|m| m.pid).collect();
    assert_eq!(stopped, vec![5000, 5001, 5002]);
    assert_ne!(fake.0.borrow().procs[&5002].state, ProcessState::Running);
    // Nothing outside the master's group is a late member.
    assert!(!signalled(&fake).contains(&OWN_PID));
}
