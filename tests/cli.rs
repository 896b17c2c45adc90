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

/// Complete `words` (the last one being typed) with pidman's bash script,
/// as bash's programmable completion would call it: what it offers, and
/// the `compopt` options it asks bash for (a stub outside a real prompt).
fn bash_complete(env: &TestEnv, words: &[&str]) -> (Vec<String>, String) {
    let script = env.run(&["completions", "bash"]).expect(0).stdout.clone();
    std::fs::write(env.root().join("pidman.bash"), script).unwrap();
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let current = words.len() - 1;
    let program = format!(
        "compopt() {{ echo \"$*\" >> compopt.log; }}
         source ./pidman.bash
         COMP_WORDS=({words}); COMP_CWORD={current}
         _pidman pidman {cur} {prev}
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        words = quoted.join(" "),
        cur = quoted[current],
        prev = quoted[current.saturating_sub(1)],
    );
    let out = std::process::Command::new("bash")
        .args(["--norc", "-c", &program])
        .current_dir(env.root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let offered = String::from_utf8(out.stdout).unwrap();
    let compopt = std::fs::read_to_string(env.root().join("compopt.log")).unwrap_or_default();
    (
        offered
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
        compopt,
    )
}

#[test]
fn bash_completes_commands_options_and_their_values() {
    let env = TestEnv::new();
    assert_eq!(bash_complete(&env, &["pidman", "pre"]).0, ["preflight"]);
    assert_eq!(bash_complete(&env, &["pidman", "--ro"]).0, ["--root"]);
    let (offered, _) = bash_complete(&env, &["pidman", "kill", "--d"]);
    assert_eq!(offered, ["--dry-run"]);
    let (offered, _) = bash_complete(&env, &["pidman", "completions", ""]);
    for shell in ["bash", "zsh", "fish", "powershell"] {
        assert!(offered.iter().any(|o| o == shell), "{offered:?}");
    }
    // `--root` takes a directory: the script asks bash for directories.
    let (offered, compopt) = bash_complete(&env, &["pidman", "check", "--root", ""]);
    assert!(offered.is_empty(), "{offered:?}");
    assert!(compopt.contains("-o plusdirs"), "{compopt:?}");
}

#[test]
fn every_shell_gets_a_script_and_man_renders_the_page() {
    let env = TestEnv::new();
    for (shell, marker) in [
        ("bash", "complete -F _pidman"),
        ("zsh", "#compdef pidman"),
        ("fish", "complete -c pidman"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let run = env.run(&["completions", shell]);
        run.expect(0);
        assert!(run.stdout.contains(marker), "{shell}: {}", run.stdout);
        assert!(
            run.stdout.contains("preflight"),
            "{shell} names the commands"
        );
    }
    env.run(&["completions", "tcsh"]).expect(2);

    let page = env.run(&["man"]).expect(0).stdout.clone();
    assert!(
        page.starts_with(".ie") || page.contains(".TH pidman"),
        "{page}"
    );
    std::fs::write(env.root().join("pidman.1"), &page).unwrap();
    let man = std::process::Command::new("man")
        .args(["-l", "pidman.1"])
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "80")
        .current_dir(env.root())
        .output()
        .expect("man (man-db) is installed: .ci/run installs it");
    assert!(
        man.status.success(),
        "{}",
        String::from_utf8_lossy(&man.stderr)
    );
    let text = String::from_utf8_lossy(&man.stdout);
    assert!(text.contains("NAME") && text.contains("pidman"), "{text}");
    assert!(
        text.contains("preflight"),
        "the page lists the commands: {text}"
    );
}

/// A cache directory pidman will not use costs every start a compile: with
/// `-v` it says why, once, and how to fix it; without `-v` it says nothing.
#[test]
fn an_untrusted_cache_is_explained_once_with_verbose() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    let cache = env.root().join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let run = |args: &[&str]| {
        let out = env
            .command(args)
            .env("PIDMAN_CACHE_DIR", &cache)
            .output()
            .unwrap();
        Run::from(out)
    };
    let verbose = run(&["-v", "check"]);
    verbose.expect(1);
    let said: Vec<&str> = verbose
        .stderr
        .lines()
        .filter(|l| l.contains("plugin cache"))
        .collect();
    assert_eq!(said.len(), 1, "{}", verbose.stderr);
    assert!(said[0].contains("writable by others"), "{}", said[0]);
    assert!(said[0].contains("chmod 700"), "how to fix it: {}", said[0]);
    let quiet = run(&["check"]);
    quiet.expect(1);
    assert!(!quiet.stderr.contains("plugin cache"), "{}", quiet.stderr);
    // Once trusted, nothing to say.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).unwrap();
    let trusted = run(&["-v", "check"]);
    assert!(
        !trusted.stderr.contains("plugin cache"),
        "{}",
        trusted.stderr
    );
}
