//! The command line itself: paths, `--json` for every outcome, usage errors
//! and plugin loading.

use crate::support::*;

#[test]
fn path_prints_the_pid_file() {
    let env = TestEnv::new();
    let run = env.run(&["path"]);
    run.expect(0);
    let canonical = env.root().canonicalize().unwrap().join(".bengal.pid");
    assert_eq!(run.stdout.trim(), canonical.to_str().unwrap());
    let sub = env.root().join("site");
    std::fs::create_dir(&sub).unwrap();
    let run = env.run(&["--root", "site", "--json", "path"]);
    assert_eq!(
        run.json()["pid_file"],
        sub.canonicalize()
            .unwrap()
            .join(".bengal.pid")
            .to_str()
            .unwrap()
    );
}

#[test]
fn json_covers_results_and_errors() {
    let env = TestEnv::new();
    let json = env.run(&["--json", "check"]).expect(1).json();
    assert_eq!(json["ok"], true);
    assert_eq!(json["command"], "check");
    assert!(json["pid"].is_null());

    std::fs::create_dir(env.pid_file()).unwrap();
    let json = env.run(&["--json", "check"]).expect(2).json();
    assert_eq!(json["ok"], false);
    assert_eq!(json["error"]["kind"], "invalid");

    let json = env.run(&["--json", "kill", "not-a-pid"]).expect(2).json();
    assert_eq!(json["error"]["kind"], "usage");
}

#[test]
fn usage_errors_exit_2_with_a_message() {
    let env = TestEnv::new();
    for args in [
        &["frobnicate"][..],
        &["port"],
        &["port", "70000"],
        &["is-bengal", "-3"],
    ] {
        let run = env.run(args);
        run.expect(2);
        assert!(!run.stderr.is_empty(), "{args:?}");
    }
}

#[test]
fn a_missing_root_is_a_missing_pid_file() {
    // A shutdown script's `pidman --root $SITE remove` after $SITE was
    // cleaned: as a missing directory in `--pid-file` is.
    let env = TestEnv::new();
    let file = env.root().join("gone/.bengal.pid");
    for (command, code) in [("check", 1), ("remove", 0), ("preflight", 0)] {
        env.run(&["--root", "no/such/dir", command]).expect(code);
        if command != "preflight" {
            env.run(&[command, "--pid-file", file.to_str().unwrap()])
                .expect(code);
        }
    }
    assert!(!env.root().join("no").exists(), "nothing was created");
    // A root that is a file is an error that names it.
    std::fs::write(env.root().join("plain"), "").unwrap();
    let run = env.run(&["--root", "plain", "check"]);
    run.expect(2);
    assert!(run.stderr.contains("plain"), "{}", run.stderr);
}

#[test]
fn a_plugin_that_fails_to_load_is_a_clear_error() {
    let env = TestEnv::new();
    let run = env.run(&["--plugin", "missing.wasm", "check"]);
    run.expect(2);
    assert!(run.stderr.contains("missing.wasm"), "{}", run.stderr);
    std::fs::write(env.root().join("bad.wasm"), b"\0asm not really").unwrap();
    let run = env.run(&["--plugin", "bad.wasm", "check"]);
    run.expect(2);
    assert!(run.stderr.contains("bad.wasm"), "{}", run.stderr);
}

#[test]
fn verbose_explains_the_decision() {
    let env = TestEnv::new();
    env.write_pid_file("0x1F");
    let run = env.run(&["-v", "check"]);
    run.expect(1);
    assert!(
        run.stderr.contains("not a decimal number"),
        "{}",
        run.stderr
    );
}
