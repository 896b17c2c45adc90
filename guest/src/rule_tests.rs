//! Each rule of the policy tested on its own, on the fake host: the
//! mutants `scripts/mutants` makes of `guest/src/policy/` that the
//! scenario tests (`tests.rs`, `tree_tests.rs`) let through, each caught
//! here by the rule it breaks, not by the host's gate behind it.

use crate::fake::{Fake, FakeFile, OWN_PID, OnTerm, PARENT_PID, T0, UID};
use crate::policy::claim::{Acquired, acquire, release};
use crate::policy::kill::{MAX_TIMEOUT_MS, kill_stale_process, refusal, valid_timeout};
use crate::policy::lock::{self, covers, describe, live_claim};
use crate::policy::pidfile::{self, Garbage, PID_MAX, temp_writer};
use crate::policy::port::describe_port;
use crate::policy::preflight::{clear_stale, preflight};
use crate::policy::stale::{EMPTY_RETRIES, EMPTY_RETRY_MS, check_stale_pid, examine};
use crate::policy::tree::Snapshot;
use crate::policy::write::{remove_judged, validate_pid, write_pid_file};
use crate::wit::bengal::pid_manager::ports::TcpState;
use crate::wit::bengal::pid_manager::process_table::{ProcessEntry, ProcessState};
use crate::wit::bengal::pid_manager::signals::Signal;
use crate::wit::bengal::pid_manager::types::{Error, Pid, ProcessIdentity};
use crate::wit::exports::bengal::pid_manager::manager::{KillOutcome, PortDescription};

const PID_FILE: &str = "/srv/site/.bengal.pid";
const LOCK: &str = "/srv/site/.bengal.pid.lock";

fn token(fake: &Fake, pid: Pid) -> u64 {
    fake.0.borrow().procs[&pid].start_ms
}

fn id(fake: &Fake, pid: Pid) -> ProcessIdentity {
    ProcessIdentity {
        pid,
        start_token: token(fake, pid),
    }
}

// --- kill -----------------------------------------------------------------

#[test]
fn the_guest_itself_refuses_0_1_the_caller_and_its_parent() {
    let fake = Fake::new();
    for pid in [0, 1, OWN_PID, PARENT_PID] {
        assert!(refusal(&fake, pid).is_some(), "{pid}");
    }
    assert!(refusal(&fake, 4242).is_none());
}

#[test]
fn the_longest_timeout_is_allowed_and_no_longer() {
    assert_eq!(valid_timeout(Some(MAX_TIMEOUT_MS)), Ok(MAX_TIMEOUT_MS));
    assert!(matches!(
        valid_timeout(Some(MAX_TIMEOUT_MS + 1)),
        Err(Error::Invalid(_))
    ));
}

/// A server (5000, leading its group) with two children.
fn family(fake: &Fake) {
    fake.spawn(5000, "bengal serve");
    fake.child(5001, 5000, "sh -c worker", 10);
    fake.child(5002, 5000, "worker", 20);
}

#[test]
fn a_root_the_os_refuses_stops_the_stop_before_any_other_signal() {
    let fake = Fake::new();
    family(&fake);
    fake.with_proc(5000, |p| p.refuses_signals = true);
    assert!(matches!(
        kill_stale_process(&fake, 5000, None),
        Err(Error::PermissionDenied(_))
    ));
    assert!(fake.signals().is_empty(), "{:?}", fake.signals());
}

#[test]
fn a_member_the_os_refuses_is_named_and_the_rest_still_stopped() {
    let fake = Fake::new();
    family(&fake);
    fake.with_proc(5001, |p| p.refuses_signals = true);
    fake.with_proc(5002, |p| p.on_term = OnTerm::Ignore);
    match kill_stale_process(&fake, 5000, Some(100)) {
        Err(Error::PermissionDenied(why)) => assert!(why.contains("5001"), "{why}"),
        other => panic!("{other:?}"),
    }
    let signals = fake.signals();
    assert!(signals.contains(&(5002, Signal::Kill)), "{signals:?}");
    assert!(!signals.iter().any(|(pid, _)| *pid == 5001), "{signals:?}");
    assert_ne!(fake.0.borrow().procs[&5002].state, ProcessState::Running);
}

#[test]
fn late_members_are_only_new_running_processes_of_a_members_group_never_the_caller() {
    let fake = Fake::new();
    family(&fake);
    // The master starts a replacement with its own start time on SIGTERM;
    // the caller and a zombie sit in its group too.
    fake.with_proc(5000, |p| p.spawns_on_term = Some(5003));
    fake.with_proc(OWN_PID, |p| p.group = 5000);
    fake.spawn_at(5004, "exited", T0);
    fake.with_proc(5004, |p| {
        p.group = 5000;
        p.state = ProcessState::Zombie;
    });
    // Another group's process with a member's exact start token.
    fake.spawn_at(6000, "other", token(&fake, 5001));
    let report = kill_stale_process(&fake, 5000, None).unwrap();
    let pids: Vec<Pid> = report.members.iter().map(|m| m.pid).collect();
    assert_eq!(pids, vec![5000, 5001, 5002, 5003]);
    let signalled: Vec<Pid> = fake.signals().iter().map(|(p, _)| *p).collect();
    for never in [OWN_PID, 5004, 6000] {
        assert!(!signalled.contains(&never), "{never}: {signalled:?}");
    }
}

#[test]
fn a_late_member_sharing_a_members_start_token_is_still_stopped() {
    let fake = Fake::new();
    family(&fake);
    fake.with_proc(5000, |p| p.spawns_on_term = Some(5003));
    // The replacement starts within the same tick as a member (one token).
    fake.0.borrow_mut().now = token(&fake, 5002);
    let report = kill_stale_process(&fake, 5000, None).unwrap();
    assert!(report.members.iter().any(|m| m.pid == 5003), "{report:?}");
}

// --- lock and claims --------------------------------------------------------

#[test]
fn every_error_has_its_text_for_a_log_line() {
    assert_eq!(describe(&Error::NotFound), "not found");
    assert_eq!(describe(&Error::Changed), "changed");
    assert_eq!(describe(&Error::Io("disk on fire".into())), "disk on fire");
}

/// A record held by `holder` for `claimant` (group: its own when it leads).
fn held_record(fake: &Fake, claimant: Pid, holder: Pid, group: Pid) {
    let (c, h) = (token(fake, claimant), token(fake, holder));
    fake.0.borrow_mut().foreign_locks.insert(LOCK.into());
    fake.write(
        LOCK,
        format!("{claimant} {c} {group} {holder} {h} {c}\n").as_bytes(),
    );
}

#[test]
fn a_live_claim_needs_both_its_holder_and_its_server_running_as_recorded() {
    let fake = Fake::new();
    fake.spawn(4100, "pidman run -- node server.js");
    fake.child(5000, 4100, "node server.js", 10);
    held_record(&fake, 5000, 4100, 0);
    assert!(live_claim(&fake, PID_FILE).is_some());
    fake.with_proc(4100, |p| p.state = ProcessState::Zombie);
    assert!(live_claim(&fake, PID_FILE).is_none(), "its holder exited");
    // The same for the lock's own rule: a zombie holder proves no claim.
    fake.write(PID_FILE, b"5000");
    assert_eq!(check_stale_pid(&fake, PID_FILE), Ok(None));
    fake.with_proc(4100, |p| p.state = ProcessState::Running);
    fake.with_proc(5000, |p| p.start_ms += 1); // reused since the record
    assert!(
        live_claim(&fake, PID_FILE).is_none(),
        "its server is another"
    );
}

#[test]
fn a_claim_covers_its_server_its_descendants_and_its_group_only() {
    let fake = Fake::new();
    family(&fake);
    fake.child(5010, 5001, "grandchild", 10);
    fake.spawn(6000, "unrelated");
    let root = id(&fake, 5000);
    for pid in [5000, 5001, 5002, 5010] {
        assert!(covers(&fake, root, None, pid), "{pid}");
    }
    assert!(!covers(&fake, root, None, 6000));
    // The claimant's PID with another start token is not the claimant.
    let stale = ProcessIdentity {
        pid: 5000,
        start_token: root.start_token + 1,
    };
    assert!(!covers(&fake, stale, None, 5001));
    // A parent PID that a younger process now has is no parent.
    fake.spawn_at(7000, "young parent", T0);
    fake.spawn_at(7001, "old child", T0 - 50_000);
    fake.with_proc(7001, |p| p.parent = 7000);
    assert!(!covers(&fake, id(&fake, 7000), None, 7001));
    // The group: a member started under the claim; not one started before.
    fake.with_proc(6000, |p| p.group = 5000);
    assert!(!covers(&fake, root, None, 6000));
    fake.with_proc(6000, |p| p.start_ms = root.start_token + 5);
    assert!(covers(&fake, root, Some(5000), 6000));
    fake.with_proc(6000, |p| p.start_ms = root.start_token - 5);
    assert!(!covers(&fake, root, Some(5000), 6000));
    fake.with_proc(6000, |p| p.group = 6000);
    assert!(!covers(&fake, root, Some(5000), 6000));
}

#[test]
fn a_claimant_sharing_a_start_token_with_another_pid_is_not_that_pid() {
    // The lock's live claimant is 5000; the file names 4242 (not Bengal),
    // which started in the same tick. Only the claimant's own PID counts.
    let fake = Fake::new();
    fake.spawn(5000, "node server.js");
    fake.spawn(4242, "node other.js");
    assert_eq!(token(&fake, 5000), token(&fake, 4242));
    held_record(&fake, 5000, 5000, 0);
    fake.write(PID_FILE, b"4242");
    assert_eq!(check_stale_pid(&fake, PID_FILE), Ok(None));
}

#[test]
fn acquire_for_the_pid_the_file_already_names_claims_it() {
    let fake = Fake::new();
    fake.spawn(4242, "bengal serve");
    fake.write(PID_FILE, b"4242");
    assert!(matches!(
        acquire(&fake, PID_FILE, Some(4242)),
        Ok(Acquired::Claimed(_))
    ));
}

#[test]
fn a_claim_for_init_records_no_group() {
    let fake = Fake::new();
    let Ok(Acquired::Claimed(_lock)) = acquire(&fake, PID_FILE, Some(1)) else {
        panic!("not claimed");
    };
    let record = lock::parse_record(&fake.file(LOCK).unwrap());
    assert_eq!(record, None, "PID 1 is never a recorded claimant");
    let text = String::from_utf8(fake.file(LOCK).unwrap()).unwrap();
    assert_eq!(text.split(' ').nth(2), Some("0"), "{text}");
}

fn lock_owned_by(fake: &Fake, uid: u32, dir_uid: u32) {
    let mut lock = FakeFile::regular(b"", T0 - 1_000);
    lock.uid = uid;
    fake.put(LOCK, lock);
    let mut dir = FakeFile::regular(b"", T0 - 1_000);
    dir.dir = true;
    dir.uid = dir_uid;
    fake.put("/srv/site", dir);
}

#[test]
fn a_lock_file_someone_else_left_is_named_with_its_owner_and_the_fix() {
    for (uid, dir_uid, who, fix) in [
        (
            0,
            UID,
            "belongs to root",
            "`rm /srv/site/.bengal.pid.lock` (you own /srv/site)",
        ),
        (
            0,
            0,
            "belongs to root",
            "`sudo rm /srv/site/.bengal.pid.lock`",
        ),
        (
            1001,
            UID,
            "belongs to uid 1001",
            "`rm /srv/site/.bengal.pid.lock`",
        ),
    ] {
        let fake = Fake::new();
        lock_owned_by(&fake, uid, dir_uid);
        match acquire(&fake, PID_FILE, None) {
            Err(Error::PermissionDenied(why)) => {
                assert!(why.contains(who), "{why}");
                assert!(why.contains(fix), "{why}");
            }
            other => panic!("{uid}/{dir_uid}: {:?}", other.is_ok()),
        }
    }
    // The caller's own file it cannot write, or another error: the OS's
    // own words stand.
    let fake = Fake::new();
    lock_owned_by(&fake, UID, UID);
    let denied = Error::PermissionDenied("read-only file system".into());
    assert_eq!(lock::not_ours(&fake, PID_FILE, denied.clone()), denied);
    lock_owned_by(&fake, 0, UID);
    let io = Error::Io("disk on fire".into());
    assert_eq!(lock::not_ours(&fake, PID_FILE, io.clone()), io);
}

#[test]
fn a_missing_directory_is_made_before_its_lock_and_an_existing_one_is_not() {
    let fake = Fake::new();
    write_pid_file(&fake, "/srv/new/site/.bengal.pid", Some(77)).unwrap();
    assert_eq!(fake.0.borrow().created_dirs, vec!["/srv/new/site"]);
    let fake = Fake::new();
    lock_owned_by(&fake, UID, UID);
    fake.0.borrow_mut().files.remove(LOCK);
    write_pid_file(&fake, PID_FILE, Some(77)).unwrap();
    assert!(fake.0.borrow().created_dirs.is_empty());
    let fake = Fake::new();
    write_pid_file(&fake, "pid", Some(77)).unwrap();
    assert!(fake.0.borrow().created_dirs.is_empty(), "no directory part");
}

#[test]
fn release_removes_a_full_64_byte_file_that_names_its_pid() {
    let fake = Fake::new();
    let Ok(Acquired::Claimed(_lock)) = acquire(&fake, PID_FILE, None) else {
        panic!("not claimed");
    };
    let padded = format!("{OWN_PID:>64}");
    assert_eq!(padded.len(), pidfile::MAX_BYTES);
    fake.write(PID_FILE, padded.as_bytes());
    assert_eq!(release(&fake, PID_FILE, Some(OWN_PID)), Ok(true));
}

// --- the PID file -----------------------------------------------------------

#[test]
fn a_64_byte_pid_file_is_a_pid_file_and_65_bytes_are_not() {
    let padded = format!("{:>64}", 4242);
    assert_eq!(pidfile::parse(padded.as_bytes()), Ok(4242));
    let longer = format!("{:>65}", 4242);
    assert_eq!(pidfile::parse(longer.as_bytes()), Err(Garbage::Oversized));
    // Read past the size check (a file that grew after its lstat): the
    // read itself refuses it.
    let fake = Fake::new();
    fake.write(PID_FILE, longer.as_bytes());
    assert!(matches!(
        examine(&fake, PID_FILE, None),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn garbage_says_what_it_is() {
    for garbage in [Garbage::Empty, Garbage::Zero, Garbage::OutOfRange] {
        assert!(garbage.to_string().starts_with("it"), "{garbage:?}");
    }
}

#[test]
fn a_temporary_name_holds_digits_only() {
    assert_eq!(temp_writer(PID_FILE, "..bengal.pid.42.tmp"), Some(42));
    assert_eq!(temp_writer(PID_FILE, "..bengal.pid.42.ab12.tmp"), Some(42));
    for name in [
        "..bengal.pid.+42.tmp",
        "..bengal.pid..tmp",
        "..bengal.pid.4x2.tmp",
    ] {
        assert_eq!(temp_writer(PID_FILE, name), None, "{name}");
    }
}

#[test]
fn the_largest_pid_is_a_pid_and_the_next_is_not() {
    let max = u32::try_from(PID_MAX).unwrap();
    assert_eq!(validate_pid(max), Ok(max));
    assert!(validate_pid(max + 1).is_err());
    assert!(validate_pid(0).is_err());
}

#[test]
fn an_empty_file_is_read_again_exactly_so_many_times() {
    let fake = Fake::new();
    fake.write(PID_FILE, b"");
    let before = fake.now();
    assert_eq!(check_stale_pid(&fake, PID_FILE), Ok(None));
    assert_eq!(
        fake.now() - before,
        u64::from(EMPTY_RETRIES) * EMPTY_RETRY_MS
    );
}

#[test]
fn a_removal_goes_ahead_only_while_the_file_holds_what_was_judged() {
    let fake = Fake::new();
    fake.write(PID_FILE, b"5555");
    assert_eq!(remove_judged(&fake, PID_FILE, "stale", b"4242"), Ok(false));
    assert_eq!(fake.file(PID_FILE), Some(b"5555".to_vec()));
    assert_eq!(remove_judged(&fake, PID_FILE, "stale", b"5555"), Ok(true));
    // Judged at 64 bytes, grown since: the whole file is compared.
    let judged = format!("{:>64}", 4242);
    fake.write(PID_FILE, format!("{judged}5").as_bytes());
    assert_eq!(
        remove_judged(&fake, PID_FILE, "stale", judged.as_bytes()),
        Ok(false)
    );
}

// --- the port's holder --------------------------------------------------------

fn lineage(fake: &Fake, port: u16) -> Vec<Pid> {
    match describe_port(fake, port, Some(PID_FILE)) {
        Ok(PortDescription::Held(h)) => h.lineage.iter().map(|e| e.pid).collect(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_walk_up_stops_at_a_younger_parent_and_a_session_leader_only() {
    let fake = Fake::new();
    fake.spawn(5000, "npm run dev");
    fake.child(5001, 5000, "node vite", 10);
    fake.listen(5173, Some(5001), UID, TcpState::Listen, 11);
    // Members of one session that lead nothing: the walk goes on.
    fake.with_proc(5000, |p| p.session = 4999);
    fake.with_proc(5001, |p| p.session = 4999);
    assert_eq!(lineage(&fake, 5173), vec![5001, 5000]);
    // A leader ends it; an unknown session (0) does not.
    fake.with_proc(5001, |p| p.session = 5001);
    assert_eq!(lineage(&fake, 5173), vec![5001]);
    fake.with_proc(5001, |p| p.session = 0);
    assert_eq!(lineage(&fake, 5173), vec![5001, 5000]);
    // A parent younger than its child: a reused PID, not a parent.
    fake.with_proc(5000, |p| p.start_ms = T0);
    assert_eq!(lineage(&fake, 5173), vec![5001]);
    let child = token(&fake, 5001);
    fake.with_proc(5000, |p| p.start_ms = child);
    assert_eq!(
        lineage(&fake, 5173),
        vec![5001, 5000],
        "same tick: still its parent"
    );
}

#[test]
fn the_walk_up_never_reaches_the_callers_grandparent() {
    // A Bengal server (3000) ran a shell (3999), which ran pidman (4000);
    // the port's holder is another child of the server.
    let fake = Fake::new();
    fake.spawn_at(3000, "bengal serve", T0 - 120_000);
    fake.with_proc(PARENT_PID, |p| {
        p.parent = 3000;
        p.argv = vec!["sh".into()];
    });
    fake.child(5000, 3000, "node assets", 1_000);
    fake.listen(5173, Some(5000), UID, TcpState::Listen, 11);
    assert_eq!(lineage(&fake, 5173), vec![5000]);
}

#[test]
fn a_server_that_is_gone_is_described_as_gone() {
    let fake = Fake::new();
    fake.spawn(5000, "sh -c server");
    fake.child(5001, 5000, "python3 -m http.server", 100);
    fake.listen(5173, Some(5001), UID, TcpState::Listen, 11);
    let start = token(&fake, 5000);
    let record = format!("5000 {start} 5000 4100 1 {start}\n");
    fake.put(LOCK, FakeFile::regular(record.as_bytes(), T0 - 30_000));
    let server = preflight(&fake, PID_FILE, Some(5173))
        .unwrap()
        .server
        .unwrap();
    assert_eq!(server.command, "sh -c server");
    fake.0.borrow_mut().procs.remove(&5000);
    fake.with_proc(5001, |p| p.parent = 1);
    let server = preflight(&fake, PID_FILE, Some(5173))
        .unwrap()
        .server
        .unwrap();
    assert_eq!(server.command, "(gone)");
    // The same claimant recorded with no group since: no orphans stopped.
    let record = format!("5000 {start} 0 4100 1 {start}\n");
    fake.put(LOCK, FakeFile::regular(record.as_bytes(), T0 - 30_000));
    let cleared = clear_stale(&fake, PID_FILE, &server, None, None).unwrap();
    assert_eq!(cleared.stopped.outcome, KillOutcome::AlreadyGone);
    assert!(fake.signals().is_empty());
}

#[test]
fn group_one_is_never_a_claims_group() {
    let entry = |pid, group, start| ProcessEntry {
        pid,
        parent: 1,
        group,
        start_token: start,
        state: ProcessState::Running,
    };
    let snap = Snapshot::from_entries(vec![entry(1, 1, 0), entry(50, 1, 10)]);
    let init = ProcessIdentity {
        pid: 1,
        start_token: 0,
    };
    assert!(snap.tree(init, Some(1), &[]).is_empty());
}

#[test]
fn init_is_never_a_late_member_whatever_its_group() {
    let fake = Fake::new();
    family(&fake);
    let late = token(&fake, 5002) + 1;
    fake.with_proc(1, |p| {
        p.group = 5000;
        p.start_ms = late;
    });
    assert!(kill_stale_process(&fake, 5000, None).is_ok());
    assert!(!fake.signals().iter().any(|(pid, _)| *pid == 1));
}

#[test]
fn a_members_pid_reused_by_the_tree_itself_is_a_late_member() {
    // The master's SIGTERM handler starts a process that gets the PID of a
    // worker that just exited: not that worker (another start), but the
    // tree's all the same.
    let fake = Fake::new();
    family(&fake);
    fake.with_proc(5000, |p| p.spawns_on_term = Some(5001));
    let report = kill_stale_process(&fake, 5000, None).unwrap();
    assert_ne!(fake.0.borrow().procs[&5001].state, ProcessState::Running);
    assert_eq!(report.members.iter().filter(|m| m.pid == 5001).count(), 2);
}

#[test]
fn a_child_started_in_its_parents_tick_is_covered() {
    let fake = Fake::new();
    fake.spawn(5000, "uv run bengal serve");
    fake.child(5001, 5000, "python -m bengal serve", 0);
    assert_eq!(token(&fake, 5000), token(&fake, 5001));
    assert!(covers(&fake, id(&fake, 5000), None, 5001));
}
