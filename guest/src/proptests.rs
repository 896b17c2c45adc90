//! Property tests: PID-file parsing and the check decision over generated
//! contents never panic, never signal, and only ever report the live server.
//! `cargo test -p pidman-guest` runs 10,000 cases of each; the `--ignored`
//! long variant (bench/stress.sh) a million.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::fake::{Fake, OWN_PID, PARENT_PID};
use crate::policy::pidfile::{self, PID_MAX};
use crate::policy::stale::check_stale_pid;
use crate::wit::bengal::pid_manager::types::Error;

const PID_FILE: &str = "/srv/site/.bengal.pid";
const SERVER: u32 = 4242;

/// Contents worth generating: random bytes, and near-misses of a PID.
fn contents() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..80),
        "[ \t\r\n]{0,3}[+-]?[0-9]{0,12}[ \t\r\n]{0,3}".prop_map(String::into_bytes),
        "[0-9a-fxA-F\u{ff10}-\u{ff19} ]{0,10}".prop_map(String::into_bytes),
        Just(SERVER.to_string().into_bytes()),
        Just(format!(" {SERVER}\n").into_bytes()),
        Just(OWN_PID.to_string().into_bytes()),
        Just(PARENT_PID.to_string().into_bytes()),
    ]
}

fn parse_property(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(pid) = pidfile::parse(bytes) {
        prop_assert!(pid >= 1 && u64::from(pid) <= PID_MAX);
        let text = std::str::from_utf8(bytes).unwrap();
        let digits = text.trim_matches(|c: char| c.is_ascii_whitespace());
        prop_assert!(digits.bytes().all(|b| b.is_ascii_digit()));
        prop_assert!(bytes.len() <= pidfile::MAX_BYTES);
    }
    Ok(())
}

fn check_property(bytes: &[u8]) -> Result<(), TestCaseError> {
    let fake = Fake::new();
    fake.spawn(SERVER, "bengal serve");
    fake.spawn(4243, "sleep 100");
    fake.write(PID_FILE, bytes);
    let checked = check_stale_pid(&fake, PID_FILE);
    prop_assert!(fake.signals().is_empty(), "a check never signals");
    if bytes.len() > pidfile::MAX_BYTES {
        // Not a PID file (a wrong path): refused and kept, whatever it says.
        prop_assert!(matches!(checked, Err(Error::Invalid(_))), "{:?}", checked);
        prop_assert!(fake.file(PID_FILE).is_some());
        return Ok(());
    }
    let found = checked.map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
    let names_server = pidfile::parse(bytes) == Ok(SERVER);
    prop_assert_eq!(found, names_server.then_some(SERVER));
    // The file is kept exactly when it names the server or the caller (or
    // the caller's parent).
    let parsed = pidfile::parse(bytes);
    let keep = names_server || parsed == Ok(OWN_PID) || parsed == Ok(PARENT_PID);
    prop_assert_eq!(fake.file(PID_FILE).is_some(), keep);
    Ok(())
}

fn run(cases: u32, property: fn(&[u8]) -> Result<(), TestCaseError>) {
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    runner.run(&contents(), |bytes| property(&bytes)).unwrap();
}

#[test]
fn parsing_never_accepts_a_non_pid() {
    run(10_000, parse_property);
}

#[test]
fn checking_never_signals_and_reports_only_the_server() {
    run(10_000, check_property);
}

#[test]
#[ignore = "long variant: a million generated contents each (bench/stress.sh)"]
fn a_million_contents() {
    run(1_000_000, parse_property);
    run(1_000_000, check_property);
}
