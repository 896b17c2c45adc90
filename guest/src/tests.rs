//! The policy against the fake host: one test (or more) per row of SPEC.md's
//! API table, and the safety rules of the wrong-process matrix.

use crate::fake::{Fake, FakeFile, OWN_PID, OnTerm, PARENT_PID, T0, UID};
use crate::policy::claim::{Acquired, acquire, hand_over, release};
use crate::policy::identity::is_bengal_process;
use crate::policy::kill::{DEFAULT_TIMEOUT_MS, KILL_CONFIRM_MS, kill_stale_process};
use crate::policy::port::process_on_port;
use crate::policy::preflight::{clear_stale, preflight};
use crate::policy::stale::check_stale_pid;
use crate::policy::write::{remove_pid_file, write_pid_file};
use crate::wit::bengal::pid_manager::ports::TcpState;
use crate::wit::bengal::pid_manager::process_table::ProcessState;
use crate::wit::bengal::pid_manager::signals::Signal;
use crate::wit::bengal::pid_manager::types::Error;
use crate::wit::exports::bengal::pid_manager::manager::{
    KillOutcome, PortOwner, PortStatus, Verdict,
};

const PID_FILE: &str = "/srv/site/.bengal.pid";
const LOCK: &str = "/srv/site/.bengal.pid.lock";

// --- check-stale-pid ------------------------------------------------------

#[test]
fn check_missing_file_is_none_without_side_effects() {
    let fake = Fake::new();
    assert_eq!(check_stale_pid(&fake, PID_FILE), Ok(None));
    assert!(fake.removed().is_empty());
    assert!(fake.signals().is_empty());
    assert_eq!(fake.0.borrow().lock_attempts, 0, "not even a lock is taken");
}

#[test]
fn check_removes_garbage() {
    let long = vec![b'1'; 64];
    for garbage in [
        &b""[..],
        b"   \n",
        b"abc",
        b"+5",
        b"-5",
        b"0x1F",
        "\u{ff11}\u{ff12}\u{ff13}".as_bytes(),
        b"0",
        b"4294967296",
        b"\xff\xfe",
        &long,
    ] {
        let fake = Fake::new();
        fake.write(PID_FILE, garbage);
        assert_eq!(check_stale_pid(&fake, PID_FILE), Ok(None), "{garbage:?}");
        assert_eq!(fake.file(PID_FILE), None, "{garbage:?} should be removed");
        assert!(fake.signals().is_empty());
    }
}

#[test]
fn check_retries_an_empty_file_before_calling_it_garbage() {
    let fake = Fake::new();
    fake.write(PID_FILE, b"");
    let before = fake.now();
    assert_eq!(check_stale_pid(&fake, PID_FILE), Ok(None));
    assert!(
        fake.now() > before,
        "an empty file is read again after a pause"
    );
}

#[test]
fn check_removes_a_dead_pid() {
    let fake = Fake::new();
    fake.write(PID_FILE, b"4242\n");
    assert_eq!(check_stale_pid(&fake, PID_FILE), Ok(None));
    assert_eq!(fake.removed(), vec![PID_FILE]);
}

#[test]
fn check_removes_a_zombie() {
    let fake = Fake::new();
    fake.spawn(4242, "bengal serve");
    fake.with_proc(4242, |p| p.state = ProcessState::Zombie);
    fake.write(PID_FILE, b"4242");
    assert_eq!(check_stale_pid(&fake, PID_FILE), Ok(None));
    assert_eq!(fake.removed(), vec![PID_FILE]);
}

#[test]
fn check_removes_a_live_process_that_is_not_bengal() {
    let fake = Fake::new();
    fake.spawn(4242, "sleep 100");
    fake.write(PID_FILE, b"4242");
    assert_eq!(check_stale_pid(&fake, PID_FILE), Ok(None));
    assert_eq!(fake.removed(), vec![PID_FILE]);
    assert!(fake.signals().is_empty());
}

#[test]
fn check_reports_a_live_bengal_server_and_keeps_the_file() {
    let fake = Fake::new();
    fake.spawn(4242, "python -m bengal serve --port 5173");
    fake.write(PID_FILE, b" 4242\n");
    assert_eq!(check_stale_pid(&fake, PID_FILE), Ok(Some(4242)));
    assert_eq!(fake.file(PID_FILE).as_deref(), Some(&b" 4242\n"[..]));
}

#[test]
fn check_never_reports_the_caller_or_its_parent() {
    for pid in [OWN_PID, PARENT_PID] {
        let fake = Fake::new();
        fake.write(PID_FILE, pid.to_string().as_bytes());
        assert_eq!(check_stale_pid(&fake, PID_FILE), Ok(None));
        assert!(
            fake.file(PID_FILE).is_some(),
            "the caller's own file is kept"
        );
    }
}

#[test]
fn a_dead_pids_check_never_asks_for_the_parent() {
    // The caller's parent runs, so a PID that does not (none, a zombie) is
    // never it: the check spares the host that call, and still removes.
    let fake = Fake::new();
    fake.spawn(4243, "bengal serve");
    fake.with_proc(4243, |p| p.state = ProcessState::Zombie);
    for contents in ["31337", "4243"] {
        fake.write(PID_FILE, contents.as_bytes());
        assert_eq!(check_stale_pid(&fake, PID_FILE), Ok(None), "{contents}");
        assert_eq!(fake.file(PID_FILE), None, "{contents}: removed");
    }
    assert_eq!(fake.0.borrow().parent_asks, 0);
    // A live one is asked about: here it is the parent, and kept.
    fake.write(PID_FILE, PARENT_PID.to_string().as_bytes());
    assert_eq!(check_stale_pid(&fake, PID_FILE), Ok(None));
    assert!(fake.file(PID_FILE).is_some());
    assert_eq!(fake.0.borrow().parent_asks, 1);
}

#[test]
fn a_parent_that_cannot_be_read_is_still_the_caller() {
    // hidepid, or a parent of another user's: its file is kept, never
    // removed as "cannot be verified".
    let fake = Fake::new();
    fake.0.borrow_mut().hidden.insert(PARENT_PID);
    fake.write(PID_FILE, PARENT_PID.to_string().as_bytes());
    assert_eq!(check_stale_pid(&fake, PID_FILE), Ok(None));
    assert!(
        fake.file(PID_FILE).is_some(),
        "the caller's parent's file is kept"
    );
    // Any other unreadable PID is stale.
    fake.spawn(4244, "bengal serve");
    fake.0.borrow_mut().hidden.insert(4244);
    fake.write(PID_FILE, b"4244");
    assert_eq!(check_stale_pid(&fake, PID_FILE), Ok(None));
    assert_eq!(fake.file(PID_FILE), None);
}

#[test]
fn check_reports_read_errors() {
    let fake = Fake::new();
    fake.put(
        PID_FILE,
        FakeFile {
            bytes: vec![],
            modified_ms: T0,
            uid: UID,
            mode: 0o755,
            symlink: false,
            dir: true,
            special: false,
        },
    );
    assert!(matches!(
        check_stale_pid(&fake, PID_FILE),
        Err(Error::Invalid(_))
    ));
    assert!(fake.removed().is_empty());
}

#[test]
fn check_treats_a_reused_pid_as_stale_and_never_signals_it() {
    let fake = Fake::new();
    fake.write(PID_FILE, b"4242"); // written 30 s ago
    fake.spawn_at(4242, "bengal serve", fake.now() - 1_000); // started 1 s ago
    assert_eq!(check_stale_pid(&fake, PID_FILE), Ok(None));
    assert_eq!(fake.removed(), vec![PID_FILE]);
    assert!(fake.signals().is_empty());
}

#[test]
fn check_refuses_untrusted_files_and_keeps_them() {
    let cases = [
        (
            "symlink",
            FakeFile {
                symlink: true,
                ..file(b"4242")
            },
        ),
        (
            "other user",
            FakeFile {
                uid: 2000,
                ..file(b"4242")
            },
        ),
        (
            "world-writable",
            FakeFile {
                mode: 0o666,
                ..file(b"4242")
            },
        ),
    ];
    for (what, f) in cases {
        let fake = Fake::new();
        fake.spawn(4242, "bengal serve");
        fake.put(PID_FILE, f);
        assert!(
            matches!(check_stale_pid(&fake, PID_FILE), Err(Error::Untrusted(_))),
            "{what}"
        );
        assert!(fake.removed().is_empty(), "{what}");
        assert!(fake.file(PID_FILE).is_some(), "{what}");
    }
    // Root's files are trusted.
    let fake = Fake::new();
    fake.spawn(4242, "bengal serve");
    fake.put(
        PID_FILE,
        FakeFile {
            uid: 0,
            ..file(b"4242")
        },
    );
    assert_eq!(check_stale_pid(&fake, PID_FILE), Ok(Some(4242)));
}

fn file(bytes: &[u8]) -> FakeFile {
    FakeFile {
        bytes: bytes.to_vec(),
        modified_ms: T0 - 30_000,
        uid: UID,
        mode: 0o644,
        symlink: false,
        dir: false,
        special: false,
    }
}

#[test]
fn check_removes_nothing_while_another_process_holds_the_lock() {
    let fake = Fake::new();
    fake.0.borrow_mut().foreign_locks.insert(LOCK.into());
    fake.write(PID_FILE, b"4242"); // dead
    assert_eq!(check_stale_pid(&fake, PID_FILE), Ok(None));
    assert!(fake.file(PID_FILE).is_some());
}

/// The lock record naming `pid` as the live claimant that holds the lock
/// itself, as `acquire` writes it.
fn name_claimant(fake: &Fake, pid: u32) {
    let token = fake.0.borrow().procs[&pid].start_ms;
    fake.0.borrow_mut().foreign_locks.insert(LOCK.into());
    fake.write(LOCK, format!("{pid} {token} 0 {pid} {token}\n").as_bytes());
}

#[test]
fn a_record_whose_holder_is_gone_proves_no_claim_whoever_holds_the_lock() {
    // `pidman run -- python3 worker.py`; run (5000) was SIGKILLed, its
    // record names the worker (4242) as held by run. Now an editor's
    // pidman holds the lock for a moment: the worker is judged by argv.
    let fake = Fake::new();
    fake.spawn(4242, "python3 worker.py");
    let token = fake.0.borrow().procs[&4242].start_ms;
    fake.0.borrow_mut().foreign_locks.insert(LOCK.into());
    fake.write(
        LOCK,
        format!("4242 {token} 0 5000 {}\n", T0 - 70_000).as_bytes(),
    );
    fake.write(PID_FILE, b"4242");
    assert_eq!(check_stale_pid(&fake, PID_FILE), Ok(None));
    let report = preflight(&fake, PID_FILE, None).unwrap();
    assert!(report.server.is_none(), "{report:?}");
    // An older pidman's record (no holder) proves no claim either.
    fake.write(LOCK, format!("4242 {token}\n").as_bytes());
    assert_eq!(check_stale_pid(&fake, PID_FILE), Ok(None));
    // While run lives and holds the lock, the worker is its server.
    fake.spawn(5000, "pidman run -- python3 worker.py");
    let run_token = fake.0.borrow().procs[&5000].start_ms;
    fake.write(
        LOCK,
        format!("4242 {token} 0 5000 {run_token}\n").as_bytes(),
    );
    assert_eq!(check_stale_pid(&fake, PID_FILE), Ok(Some(4242)));
    assert!(fake.signals().is_empty());
}

#[test]
fn a_lock_holder_is_live_whatever_its_argv() {
    let fake = Fake::new();
    fake.spawn(4242, "node server.js");
    name_claimant(&fake, 4242);
    fake.write(PID_FILE, b"4242");
    assert_eq!(check_stale_pid(&fake, PID_FILE), Ok(Some(4242)));
    let report = preflight(&fake, PID_FILE, None).unwrap();
    assert!(
        report.server.unwrap().claimed,
        "preflight says the server is managed"
    );
    // ... but not when it started after the file was written.
    fake.spawn_at(4242, "node server.js", fake.now());
    assert_eq!(check_stale_pid(&fake, PID_FILE), Ok(None));
    assert!(fake.file(PID_FILE).is_some());
}

#[test]
fn check_in_a_read_only_directory_removes_nothing_and_reports_live_servers() {
    let fake = Fake::new();
    fake.spawn(4242, "bengal serve");
    fake.write(PID_FILE, b"4242");
    fake.0.borrow_mut().readonly = true;
    assert_eq!(check_stale_pid(&fake, PID_FILE), Ok(Some(4242)));
}

// --- is-bengal-process ----------------------------------------------------

#[test]
fn is_bengal_reads_the_process_argv() {
    let fake = Fake::new();
    fake.spawn(10, "uv run bengal s");
    fake.spawn(11, "bengal build --profile dev");
    fake.spawn(12, "bengal serve");
    fake.with_proc(12, |p| p.state = ProcessState::Zombie);
    assert!(is_bengal_process(&fake, 10));
    assert!(!is_bengal_process(&fake, 11));
    assert!(!is_bengal_process(&fake, 12), "a zombie is not a server");
    assert!(
        !is_bengal_process(&fake, 13),
        "a missing process is not one"
    );
}

// --- kill-stale-process ---------------------------------------------------

#[test]
fn kill_terminates_with_sigterm_when_the_process_obeys() {
    let fake = Fake::new();
    fake.spawn(4242, "bengal serve");
    let start = fake.now();
    assert_eq!(
        kill_stale_process(&fake, 4242, None).map(|r| r.outcome),
        Ok(KillOutcome::Terminated)
    );
    assert_eq!(
        fake.signals(),
        vec![(4242, Signal::Term), (4242, Signal::Cont)]
    );
    assert_eq!(fake.now() - start, 50, "returns the moment it exits");
}

#[test]
fn kill_escalates_to_sigkill_at_the_timeout() {
    let fake = Fake::new();
    fake.spawn(4242, "bengal serve");
    fake.with_proc(4242, |p| p.on_term = OnTerm::Ignore);
    let start = fake.now();
    assert_eq!(
        kill_stale_process(&fake, 4242, None).map(|r| r.outcome),
        Ok(KillOutcome::Killed)
    );
    assert_eq!(
        fake.signals(),
        vec![
            (4242, Signal::Term),
            (4242, Signal::Cont),
            (4242, Signal::Kill)
        ]
    );
    assert_eq!(fake.now() - start, DEFAULT_TIMEOUT_MS);

    let fake = Fake::new();
    fake.spawn(4242, "bengal serve");
    fake.with_proc(4242, |p| p.on_term = OnTerm::Ignore);
    assert_eq!(
        kill_stale_process(&fake, 4242, Some(300)).map(|r| r.outcome),
        Ok(KillOutcome::Killed)
    );
    assert_eq!(fake.now() - T0, 300);
}

#[test]
fn kill_reports_a_process_that_survives_sigkill() {
    let fake = Fake::new();
    fake.spawn(4242, "bengal serve");
    fake.with_proc(4242, |p| {
        p.on_term = OnTerm::Ignore;
        p.unkillable = true;
    });
    assert!(matches!(
        kill_stale_process(&fake, 4242, Some(100)),
        Err(Error::Survived(_))
    ));
    assert_eq!(fake.now() - T0, 100 + KILL_CONFIRM_MS);
}

#[test]
fn kill_of_a_dead_or_zombie_process_is_already_gone() {
    let fake = Fake::new();
    assert_eq!(
        kill_stale_process(&fake, 4242, None).map(|r| r.outcome),
        Ok(KillOutcome::AlreadyGone)
    );
    fake.spawn(4243, "bengal serve");
    fake.with_proc(4243, |p| p.state = ProcessState::Zombie);
    assert_eq!(
        kill_stale_process(&fake, 4243, None).map(|r| r.outcome),
        Ok(KillOutcome::AlreadyGone)
    );
    assert!(fake.signals().is_empty());
}

#[test]
fn kill_refuses_pid_0_1_self_and_parent() {
    let fake = Fake::new();
    for pid in [0, 1, OWN_PID, PARENT_PID] {
        assert!(
            matches!(kill_stale_process(&fake, pid, None), Err(Error::Denied(_))),
            "{pid}"
        );
    }
    assert!(fake.signals().is_empty());
}

#[test]
fn kill_of_another_users_process_is_permission_denied() {
    let fake = Fake::new();
    fake.spawn(4242, "bengal serve");
    fake.with_proc(4242, |p| p.uid = 0);
    assert!(matches!(
        kill_stale_process(&fake, 4242, None),
        Err(Error::PermissionDenied(_))
    ));
    assert!(fake.signals().is_empty());
}

#[test]
fn kill_rejects_absurd_timeouts() {
    let fake = Fake::new();
    fake.spawn(4242, "bengal serve");
    assert!(matches!(
        kill_stale_process(&fake, 4242, Some(u64::MAX)),
        Err(Error::Invalid(_))
    ));
    assert!(fake.signals().is_empty());
}

// --- write-pid-file / remove ----------------------------------------------

#[test]
fn write_stores_the_bare_decimal_pid() {
    let fake = Fake::new();
    assert_eq!(write_pid_file(&fake, PID_FILE, None), Ok(OWN_PID));
    assert_eq!(fake.file(PID_FILE), Some(OWN_PID.to_string().into_bytes()));
    assert_eq!(write_pid_file(&fake, PID_FILE, Some(77)), Ok(77));
    assert_eq!(fake.file(PID_FILE), Some(b"77".to_vec()));
    assert!(matches!(
        write_pid_file(&fake, PID_FILE, Some(0)),
        Err(Error::Invalid(_))
    ));
    assert_eq!(
        fake.file(PID_FILE),
        Some(b"77".to_vec()),
        "a bad write loses nothing"
    );
}

#[test]
fn write_sweeps_only_dead_writers_temporary_files() {
    let fake = Fake::new();
    fake.spawn(4242, "pidman write");
    fake.write("/srv/site/..bengal.pid.7777.tmp", b"12"); // writer gone
    fake.write("/srv/site/..bengal.pid.4242.tmp", b"34"); // writer alive
    fake.write("/srv/site/notes.tmp", b"x");
    write_pid_file(&fake, PID_FILE, Some(77)).unwrap();
    assert_eq!(fake.removed(), vec!["/srv/site/..bengal.pid.7777.tmp"]);
}

#[test]
fn remove_with_an_expected_pid_keeps_a_successors_file() {
    let fake = Fake::new();
    fake.write(PID_FILE, b"77");
    assert_eq!(remove_pid_file(&fake, PID_FILE, Some(78)), Ok(false));
    assert!(fake.file(PID_FILE).is_some());
    assert_eq!(remove_pid_file(&fake, PID_FILE, Some(77)), Ok(true));
    assert_eq!(remove_pid_file(&fake, PID_FILE, None), Ok(false));
}

// --- get-process-on-port --------------------------------------------------

#[test]
fn port_prefers_the_listener() {
    let fake = Fake::new();
    fake.listen(5173, Some(500), UID, TcpState::Established, 11);
    fake.listen(5173, Some(501), UID, TcpState::Listen, 12);
    assert_eq!(process_on_port(&fake, 5173), Ok(PortOwner::Listener(501)));
}

#[test]
fn port_falls_back_to_any_held_socket() {
    let fake = Fake::new();
    fake.listen(5173, None, UID, TcpState::Other, 0); // time-wait: nobody's
    assert_eq!(process_on_port(&fake, 5173), Ok(PortOwner::Free));
    fake.listen(5173, Some(500), UID, TcpState::Established, 11);
    assert_eq!(process_on_port(&fake, 5173), Ok(PortOwner::Holder(500)));
}

#[test]
fn port_owned_by_an_unreadable_process_is_in_use_owner_unknown() {
    let fake = Fake::new();
    fake.listen(5173, None, 0, TcpState::Listen, 11);
    assert_eq!(process_on_port(&fake, 5173), Ok(PortOwner::Unknown(0)));
    assert_eq!(process_on_port(&fake, 5174), Ok(PortOwner::Free));
    assert!(matches!(process_on_port(&fake, 0), Err(Error::Invalid(_))));
}

// --- acquire --------------------------------------------------------------

#[test]
fn acquire_claims_a_free_or_stale_file() {
    let fake = Fake::new();
    fake.write(PID_FILE, b"garbage");
    let claim = acquire(&fake, PID_FILE, None).unwrap();
    assert!(matches!(claim, Acquired::Claimed(_)));
    assert_eq!(fake.file(PID_FILE), Some(OWN_PID.to_string().into_bytes()));
    assert!(
        fake.0.borrow().locks.contains(LOCK),
        "the claim keeps the lock"
    );
    drop(claim);
    assert!(!fake.0.borrow().locks.contains(LOCK));
}

#[test]
fn acquire_is_refused_while_a_live_server_holds_the_file() {
    let fake = Fake::new();
    fake.spawn(4242, "bengal serve");
    fake.write(PID_FILE, b"4242");
    match acquire(&fake, PID_FILE, None).unwrap() {
        Acquired::Held(holder) => assert_eq!(holder.pid, Some(4242)),
        Acquired::Claimed(_) => panic!("claimed a live server's file"),
    }
    assert_eq!(fake.file(PID_FILE), Some(b"4242".to_vec()));
}

#[test]
fn acquire_is_refused_while_another_pidman_holds_the_lock() {
    let fake = Fake::new();
    fake.0.borrow_mut().foreign_locks.insert(LOCK.into());
    fake.spawn(4242, "node server.js");
    fake.write(PID_FILE, b"4242");
    match acquire(&fake, PID_FILE, None).unwrap() {
        Acquired::Held(holder) => assert_eq!(holder.pid, None, "busy, nobody named"),
        Acquired::Claimed(_) => panic!("claimed a locked file"),
    }
    name_claimant(&fake, 4242);
    match acquire(&fake, PID_FILE, None).unwrap() {
        Acquired::Held(holder) => assert_eq!(holder.pid, Some(4242)),
        Acquired::Claimed(_) => panic!("claimed a locked file"),
    }
    assert_eq!(fake.file(PID_FILE), Some(b"4242".to_vec()));
}

#[test]
fn acquire_for_a_dead_pid_is_invalid() {
    let fake = Fake::new();
    assert!(matches!(
        acquire(&fake, PID_FILE, Some(4242)),
        Err(Error::Invalid(_))
    ));
    assert_eq!(fake.file(PID_FILE), None);
}

// --- preflight ------------------------------------------------------------

#[test]
fn preflight_is_clear_when_nothing_is_in_the_way() {
    let fake = Fake::new();
    let report = preflight(&fake, PID_FILE, Some(5173)).unwrap();
    assert_eq!(report.verdict, Verdict::Clear);
    assert!(matches!(report.port, PortStatus::Free));
}

#[test]
fn preflight_finds_the_server_from_the_pid_file_and_clears_it() {
    let fake = Fake::new();
    fake.spawn(4242, "bengal serve");
    fake.write(PID_FILE, b"4242");
    fake.listen(5173, Some(4242), UID, TcpState::Listen, 11);
    let report = preflight(&fake, PID_FILE, Some(5173)).unwrap();
    assert_eq!(report.verdict, Verdict::StaleServer);
    let server = report.server.unwrap();
    assert!(server.holds_port && server.from_pid_file && !server.claimed);
    assert!(matches!(report.port, PortStatus::HeldByServer(_)));

    fake.0.borrow_mut().sockets.clear(); // the socket closes with the process
    let cleared = clear_stale(&fake, PID_FILE, &server, Some(5173), None).unwrap();
    assert_eq!(cleared.stopped.outcome, KillOutcome::Terminated);
    assert!(matches!(cleared.port, PortStatus::Free));
    assert_eq!(fake.file(PID_FILE), None);
}

#[test]
fn preflight_finds_a_bengal_listener_without_a_pid_file() {
    let fake = Fake::new();
    fake.spawn(4242, "bengal s");
    fake.listen(5173, Some(4242), UID, TcpState::Listen, 11);
    let report = preflight(&fake, PID_FILE, Some(5173)).unwrap();
    assert_eq!(report.verdict, Verdict::StaleServer);
    assert!(!report.server.unwrap().from_pid_file);
}

#[test]
fn preflight_never_touches_another_programs_port() {
    let fake = Fake::new();
    fake.spawn(4242, "node vite");
    fake.listen(5173, Some(4242), UID, TcpState::Listen, 11);
    let report = preflight(&fake, PID_FILE, Some(5173)).unwrap();
    assert_eq!(report.verdict, Verdict::PortBusy);
    match report.port {
        PortStatus::HeldByOther(p) => {
            assert_eq!(p.lineage[0].pid, 4242);
            assert_eq!(p.lineage[0].command, "node vite");
        }
        other => panic!("{other:?}"),
    }
    assert!(report.server.is_none());
    assert!(fake.signals().is_empty());
}

#[test]
fn clear_stale_never_signals_a_process_that_reused_the_pid() {
    let fake = Fake::new();
    fake.spawn(4242, "bengal serve");
    fake.write(PID_FILE, b"4242");
    let server = preflight(&fake, PID_FILE, None).unwrap().server.unwrap();
    // The server dies; an unrelated process gets its PID.
    fake.spawn_at(4242, "bengal serve", fake.now());
    let cleared = clear_stale(&fake, PID_FILE, &server, None, None).unwrap();
    assert_eq!(cleared.stopped.outcome, KillOutcome::AlreadyGone);
    assert!(fake.signals().is_empty());
}

// --- the issue-8 rules ----------------------------------------------------

fn special(kind: &str) -> FakeFile {
    match kind {
        "dir" => FakeFile {
            dir: true,
            ..file(b"")
        },
        "special" => FakeFile {
            special: true,
            ..file(b"")
        },
        _ => file(&[b'1'; 65]),
    }
}

#[test]
fn what_cannot_be_a_pid_file_is_refused_unopened_and_kept() {
    // The fake panics if the policy opens a directory, FIFO or device.
    for kind in ["dir", "special", "oversized"] {
        let fake = Fake::new();
        fake.put(PID_FILE, special(kind));
        for result in [
            check_stale_pid(&fake, PID_FILE).map(|_| ()),
            remove_pid_file(&fake, PID_FILE, None).map(|_| ()),
            preflight(&fake, PID_FILE, None).map(|_| ()),
            acquire(&fake, PID_FILE, None).map(|_| ()),
        ] {
            assert!(
                matches!(result, Err(Error::Invalid(_))),
                "{kind}: {result:?}"
            );
        }
        assert!(fake.file(PID_FILE).is_some(), "{kind} is kept");
        assert!(fake.removed().is_empty(), "{kind}");
        assert_eq!(
            fake.0.borrow().lock_attempts,
            0,
            "{kind}: no lock file made"
        );
    }
}

#[test]
fn a_busy_lock_never_turns_the_identity_rule_off() {
    // Another pidman holds the lock for a moment and names nobody: the file's
    // live process must still look like Bengal to count, and nothing is
    // removed, reported or stopped on its account.
    let fake = Fake::new();
    fake.0.borrow_mut().foreign_locks.insert(LOCK.into());
    fake.spawn(4242, "vim notes.txt");
    fake.write(PID_FILE, b"4242");
    assert_eq!(check_stale_pid(&fake, PID_FILE), Ok(None));
    let report = preflight(&fake, PID_FILE, None).unwrap();
    assert!(report.server.is_none(), "{report:?}");
    assert!(fake.file(PID_FILE).is_some(), "no removal without the lock");
    // A record naming a claimant that died, or a PID reused since, is no claim.
    fake.write(LOCK, b"4242 1\n");
    assert_eq!(check_stale_pid(&fake, PID_FILE), Ok(None));
    fake.write(LOCK, b"9999 5\n");
    assert_eq!(check_stale_pid(&fake, PID_FILE), Ok(None));
    assert!(fake.signals().is_empty());
}

#[test]
fn a_thread_id_is_not_a_process() {
    let fake = Fake::new();
    fake.spawn(4242, "bengal serve");
    fake.0.borrow_mut().threads.insert(4243, 4242);
    assert!(!is_bengal_process(&fake, 4243));
    assert!(matches!(
        kill_stale_process(&fake, 4243, None),
        Err(Error::Invalid(_))
    ));
    assert!(
        fake.signals().is_empty(),
        "never reported gone, never signalled"
    );
    fake.write(PID_FILE, b"4243");
    assert_eq!(check_stale_pid(&fake, PID_FILE), Ok(None));
    assert_eq!(fake.file(PID_FILE), None, "no process has that PID: stale");
}

#[test]
fn a_stopped_server_is_woken_to_act_on_sigterm() {
    let fake = Fake::new();
    fake.spawn(4242, "bengal serve");
    fake.with_proc(4242, |p| p.stopped = true);
    assert_eq!(
        kill_stale_process(&fake, 4242, None).map(|r| r.outcome),
        Ok(KillOutcome::Terminated)
    );
    assert_eq!(
        fake.signals()[..2],
        [(4242, Signal::Term), (4242, Signal::Cont)]
    );
}

#[test]
fn write_happens_under_the_lock_and_never_over_a_claim() {
    let fake = Fake::new();
    fake.spawn(4242, "bengal serve");
    fake.write(PID_FILE, b"4242");
    name_claimant(&fake, 4242);
    assert!(matches!(
        write_pid_file(&fake, PID_FILE, Some(77)),
        Err(Error::Denied(_))
    ));
    assert_eq!(
        fake.file(PID_FILE),
        Some(b"4242".to_vec()),
        "the claim's file"
    );
    // Busy (a lock that names nobody): refused too, nothing written.
    fake.write(LOCK, b"");
    assert!(matches!(
        write_pid_file(&fake, PID_FILE, Some(77)),
        Err(Error::Denied(_))
    ));
    // The claimant itself (here: the caller's parent) may write.
    name_claimant(&fake, PARENT_PID);
    assert_eq!(
        write_pid_file(&fake, PID_FILE, Some(PARENT_PID)),
        Ok(PARENT_PID)
    );
    // With the lock free, the writer takes it (and lets it go).
    let free = Fake::new();
    let attempts = free.0.borrow().lock_attempts;
    assert_eq!(write_pid_file(&free, PID_FILE, Some(77)), Ok(77));
    assert_eq!(free.0.borrow().lock_attempts, attempts + 1);
    assert!(free.0.borrow().locks.is_empty());
}

#[test]
fn remove_keeps_another_live_servers_file() {
    let fake = Fake::new();
    fake.spawn(4242, "bengal serve");
    fake.write(PID_FILE, b"4242");
    assert!(matches!(
        remove_pid_file(&fake, PID_FILE, None),
        Err(Error::Denied(_))
    ));
    assert!(fake.file(PID_FILE).is_some());
    // The caller's, its parent's, a dead PID's, garbage: removed.
    for contents in [
        OWN_PID.to_string(),
        PARENT_PID.to_string(),
        "31337".into(),
        "junk".into(),
    ] {
        fake.write(PID_FILE, contents.as_bytes());
        assert_eq!(
            remove_pid_file(&fake, PID_FILE, None),
            Ok(true),
            "{contents}"
        );
        assert_eq!(fake.file(PID_FILE), None);
    }
    // A claimed file (another live claimant holds the lock) is kept.
    fake.write(PID_FILE, b"4242");
    name_claimant(&fake, 4242);
    assert!(matches!(
        remove_pid_file(&fake, PID_FILE, None),
        Err(Error::Denied(_))
    ));
    assert!(fake.file(PID_FILE).is_some());
}

#[test]
fn a_claim_names_its_claimant_and_is_handed_over_and_released() {
    let fake = Fake::new();
    let Acquired::Claimed(lock) = acquire(&fake, PID_FILE, None).unwrap() else {
        panic!("not claimed");
    };
    let own_token = fake.0.borrow().procs[&OWN_PID].start_ms;
    assert_eq!(
        fake.file(LOCK),
        Some(format!("{OWN_PID} {own_token} 0 {OWN_PID} {own_token} {own_token}\n").into_bytes()),
        "the claim is held by the caller itself"
    );
    fake.spawn(4242, "bengal serve");
    hand_over(&fake, PID_FILE, 4242).unwrap();
    assert_eq!(fake.file(PID_FILE), Some(b"4242".to_vec()));
    let token = fake.0.borrow().procs[&4242].start_ms;
    assert_eq!(
        fake.file(LOCK),
        Some(format!("4242 {token} 4242 {OWN_PID} {own_token} {token}\n").into_bytes()),
        "a server that leads its process group has the group recorded"
    );
    assert!(matches!(
        hand_over(&fake, PID_FILE, 31337),
        Err(Error::Invalid(_))
    ));
    // Release: the file goes only while it names the claim's PID.
    assert_eq!(release(&fake, PID_FILE, Some(1234)), Ok(false));
    assert!(fake.file(PID_FILE).is_some());
    assert_eq!(release(&fake, PID_FILE, Some(4242)), Ok(true));
    assert_eq!(fake.file(PID_FILE), None);
    assert_eq!(fake.file(LOCK), Some(Vec::new()), "the record is cleared");
    drop(lock);
}

#[test]
fn writers_take_distinct_temporary_names() {
    let fake = Fake::new();
    write_pid_file(&fake, PID_FILE, Some(77)).unwrap();
    write_pid_file(&fake, PID_FILE, Some(78)).unwrap();
    assert_eq!(fake.0.borrow().randoms, 2, "a fresh nonce for each write");
    let names = fake.0.borrow().temp_names.clone();
    assert_eq!(names.len(), 2);
    assert_ne!(
        names[0], names[1],
        "two writers never share a temporary name"
    );
    for name in &names {
        assert!(
            name.starts_with("/srv/site/..bengal.pid."),
            "beside the file: {name}"
        );
    }
}
