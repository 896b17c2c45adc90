//! `pidman check` (check-stale-pid) against real processes, and the
//! wrong-process matrix: nothing but a live server is ever reported, and
//! nothing the rules protect is ever deleted.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use crate::support::*;

#[test]
fn missing_file_is_none_and_creates_nothing() {
    let env = TestEnv::new();
    env.run(&["check"]).expect(1);
    assert_eq!(
        std::fs::read_dir(env.root()).unwrap().count(),
        0,
        "no side effect"
    );
}

#[test]
fn garbage_is_removed() {
    // 64 bytes is still a (bad) PID file; 65 is not one at all (trust.rs).
    let long = "1".repeat(64);
    let cases: Vec<&[u8]> = vec![
        b"",
        b"  \n",
        b"garbage",
        b"-5",
        b"+5",
        b"0x1F",
        "\u{ff11}\u{ff12}\u{ff13}".as_bytes(),
        b"0",
        b"99999999999",
        b"\xff\xfe\x00",
        long.as_bytes(),
    ];
    for contents in cases {
        let env = TestEnv::new();
        env.write_pid_file(contents);
        env.run(&["check"]).expect(1);
        assert_eq!(env.read_pid_file(), None, "{contents:?} should be removed");
    }
}

#[test]
fn a_dead_pid_is_removed() {
    let env = TestEnv::new();
    env.write_pid_file(format!("{}\n", dead_pid()));
    env.run(&["check"]).expect(1);
    assert_eq!(env.read_pid_file(), None);
}

#[test]
fn a_live_process_that_is_not_bengal_is_removed_and_left_running() {
    let env = TestEnv::new();
    let mut sleep = sleeper();
    env.write_pid_file(sleep.pid().to_string());
    env.run(&["check"]).expect(1);
    assert_eq!(env.read_pid_file(), None);
    assert!(sleep.running(), "never signalled");
}

#[test]
fn a_live_bengal_server_is_reported_and_kept() {
    let env = TestEnv::new();
    let mut server = bengal(&[]);
    env.write_pid_file(format!("{}\n", server.pid()));
    let run = env.run(&["check"]);
    run.expect(0);
    assert_eq!(run.stdout.trim(), server.pid().to_string());
    assert!(env.read_pid_file().is_some());
    assert!(server.running());
}

#[test]
fn a_reused_pid_is_stale_and_never_signalled() {
    let env = TestEnv::new();
    let mut server = bengal(&[]);
    env.write_pid_file(server.pid().to_string());
    // The file was written a minute before this process started: the
    // server that wrote it is gone and its PID went to a newcomer.
    let file = std::fs::File::options()
        .write(true)
        .open(env.pid_file())
        .unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(60))
        .unwrap();
    let run = env.run(&["-v", "check"]);
    run.expect(1);
    assert!(run.stderr.contains("reused"), "{}", run.stderr);
    assert_eq!(env.read_pid_file(), None);
    assert!(server.running(), "never signalled");
}

#[test]
fn the_caller_itself_is_never_reported() {
    // pidman's parent is this test process: the "caller".
    let env = TestEnv::new();
    env.write_pid_file(std::process::id().to_string());
    env.run(&["check"]).expect(1);
    assert!(
        env.read_pid_file().is_some(),
        "the caller's own file is kept"
    );
}

#[test]
fn a_zombie_is_dead() {
    let env = TestEnv::new();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    std::thread::sleep(Duration::from_millis(100)); // exited, not yet reaped
    env.write_pid_file(child.id().to_string());
    env.run(&["check"]).expect(1);
    assert_eq!(env.read_pid_file(), None);
    child.wait().unwrap();
}

#[test]
fn a_directory_in_place_of_the_file_is_an_error_and_kept() {
    let env = TestEnv::new();
    std::fs::create_dir(env.pid_file()).unwrap();
    let run = env.run(&["check"]);
    run.expect(2);
    assert!(run.stderr.contains("directory"), "{}", run.stderr);
    assert!(env.pid_file().is_dir());
}

#[test]
fn a_symlinked_pid_file_is_never_followed() {
    let env = TestEnv::new();
    let mut server = bengal(&[]);
    let target = env.root().join("elsewhere.pid");
    std::fs::write(&target, server.pid().to_string()).unwrap();
    std::os::unix::fs::symlink(&target, env.pid_file()).unwrap();
    let run = env.run(&["check"]);
    run.expect(2);
    assert!(run.stderr.contains("symlink"), "{}", run.stderr);
    assert!(
        env.pid_file()
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        server.pid().to_string()
    );
    // Nor is its PID signalled by a preflight.
    env.run(&["preflight", "--yes"]).expect(2);
    assert!(server.running());
}

#[test]
fn a_world_writable_pid_file_is_not_trusted() {
    let env = TestEnv::new();
    let mut server = bengal(&[]);
    env.write_pid_file(server.pid().to_string());
    std::fs::set_permissions(env.pid_file(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let run = env.run(&["check"]);
    run.expect(2);
    assert!(
        run.stderr.contains("writable by every user"),
        "{}",
        run.stderr
    );
    assert!(env.read_pid_file().is_some());
    env.run(&["preflight", "--yes"]).expect(2);
    assert!(server.running());
}

#[test]
fn another_users_pid_file_is_not_trusted() {
    if !is_root() {
        crate::trust::skip(
            "another_users_pid_file_is_not_trusted",
            "needs root to give the file to another user",
        );
        return;
    }
    let env = TestEnv::new();
    let mut server = bengal(&[]);
    env.write_pid_file(server.pid().to_string());
    nix::unistd::chown(
        &env.pid_file(),
        Some(nix::unistd::Uid::from_raw(65534)),
        None,
    )
    .unwrap();
    let run = env.run(&["check"]);
    run.expect(2);
    assert!(run.stderr.contains("uid 65534"), "{}", run.stderr);
    assert!(env.read_pid_file().is_some());
    assert!(server.running());
}

#[test]
fn is_bengal_follows_the_argv_rule() {
    let env = TestEnv::new();
    let server = bengal(&[]);
    let other = not_bengal(&[]);
    let sleep = sleeper();
    env.run(&["is-bengal", &server.pid().to_string()]).expect(0);
    env.run(&["is-bengal", &other.pid().to_string()]).expect(1);
    env.run(&["is-bengal", &sleep.pid().to_string()]).expect(1);
    env.run(&["is-bengal", &dead_pid().to_string()]).expect(1);
}
