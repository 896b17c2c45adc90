//! `pidman port` and `pidman preflight` with real listeners on loopback.

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use crate::support::*;

#[test]
fn a_free_port_exits_1() {
    let env = TestEnv::new();
    let port = free_port().to_string();
    env.run(&["port", &port]).expect(1);
    assert_eq!(
        env.run(&["--json", "port", &port]).expect(1).json()["in_use"],
        false
    );
}

#[test]
fn an_ipv4_listener_is_found() {
    let env = TestEnv::new();
    let port = free_port();
    let server = not_bengal(&["--port", &port.to_string()]);
    let run = env.run(&["port", &port.to_string()]);
    run.expect(0);
    assert_eq!(run.stdout.trim(), server.pid().to_string());
}

#[test]
fn an_ipv6_dual_stack_listener_is_found() {
    if TcpListener::bind("[::1]:0").is_err() {
        crate::trust::skip("ipv6 listener test", "no IPv6 loopback here");
        return;
    }
    let env = TestEnv::new();
    let port = free_port();
    let server = not_bengal(&["--port", &port.to_string(), "--host", "::"]);
    let run = env.run(&["port", &port.to_string()]);
    run.expect(0);
    assert_eq!(run.stdout.trim(), server.pid().to_string());
}

#[test]
fn without_a_listener_any_process_holding_a_socket_counts() {
    let env = TestEnv::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (_accepted, _) = listener.accept().unwrap();
    drop(listener);
    // Only this process's accepted connection is left on the port.
    let run = env.run(&["--json", "port", &port.to_string()]);
    run.expect(0);
    assert_eq!(run.json()["pid"], std::process::id());
}

#[test]
fn preflight_is_clear_on_a_free_port() {
    let env = TestEnv::new();
    let run = env.run(&["preflight", "--port", &free_port().to_string()]);
    run.expect(0);
    assert!(run.stdout.contains("clear"), "{}", run.stdout);
}

#[test]
fn preflight_without_yes_or_a_terminal_does_not_kill() {
    let env = TestEnv::new();
    let port = free_port().to_string();
    let mut server = bengal(&["--port", &port]);
    env.write_pid_file(server.pid().to_string());
    let run = env.run(&["--json", "preflight", "--port", &port]);
    run.expect(1);
    let json = run.json();
    assert_eq!(json["verdict"], "stale-server");
    assert_eq!(json["server"]["pid"], server.pid());
    assert_eq!(json["server"]["holds_port"], true);
    assert_eq!(json["stopped"], false);
    assert!(server.running());
    assert!(env.read_pid_file().is_some());
}

#[test]
fn preflight_yes_stops_the_stale_server_and_frees_the_port() {
    let env = TestEnv::new();
    let port = free_port().to_string();
    let mut server = bengal(&["--port", &port]);
    env.write_pid_file(server.pid().to_string());
    let run = env.run(&["preflight", "--port", &port, "--yes"]);
    run.expect(0);
    assert!(
        run.stdout.contains(&format!("port {port} is free")),
        "{}",
        run.stdout
    );
    assert!(server.wait_for_exit(Duration::from_secs(5)).is_some());
    assert_eq!(env.read_pid_file(), None);
}

#[test]
fn preflight_finds_a_bengal_listener_without_a_pid_file() {
    let env = TestEnv::new();
    let port = free_port().to_string();
    let mut server = bengal(&["--port", &port]);
    let run = env.run(&["--json", "preflight", "--port", &port, "--yes"]);
    run.expect(0);
    assert_eq!(run.json()["server"]["from_pid_file"], false);
    assert!(server.wait_for_exit(Duration::from_secs(5)).is_some());
}

#[test]
fn preflight_never_touches_another_programs_port() {
    let env = TestEnv::new();
    let port = free_port().to_string();
    let mut other = not_bengal(&["--port", &port]);
    let run = env.run(&["preflight", "--port", &port, "--yes"]);
    run.expect(1);
    assert!(
        run.stdout.contains(&other.pid().to_string()),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("pick another port"), "{}", run.stdout);
    assert!(other.running());
}

/// `preflight` on a terminal: it names the server, asks, and acts on the
/// answer. (`script` gives pidman a pseudo-terminal; none when it is not
/// installed.)
pub fn preflight_on_a_terminal(answer: &str) -> Option<(Run, Proc)> {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        crate::trust::skip("preflight on a terminal", "no script(1) (util-linux)");
        return None;
    }
    let env = TestEnv::new();
    let port = free_port().to_string();
    let server = bengal(&["--port", &port]);
    env.write_pid_file(server.pid().to_string());
    let command = format!(
        "{PIDMAN} --root {} preflight --port {port}",
        env.root().display()
    );
    let mut script = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("PIDMAN_CACHE_DIR", test_cache())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("script(1) from util-linux");
    std::thread::sleep(Duration::from_millis(500));
    std::io::Write::write_all(script.stdin.as_mut().unwrap(), answer.as_bytes()).unwrap();
    let run = Run::from(script.wait_with_output().unwrap());
    Some((run, server))
}

#[test]
fn preflight_asks_on_a_terminal_and_stops_on_yes() {
    let Some((run, mut server)) = preflight_on_a_terminal("y\n") else {
        return;
    };
    run.expect(0);
    let asked = run.stdout.find("Kill stale process? [Y/n]").expect("asked");
    let named = run
        .stdout
        .find(&format!("PID {}", server.pid()))
        .expect("named the server");
    assert!(
        named < asked,
        "the server is named before the question: {}",
        run.stdout
    );
    assert!(server.wait_for_exit(Duration::from_secs(5)).is_some());
}

#[test]
fn preflight_on_a_terminal_keeps_the_server_on_no() {
    let Some((run, mut server)) = preflight_on_a_terminal("n\n") else {
        return;
    };
    run.expect(1);
    assert!(run.stdout.contains("not stopped"), "{}", run.stdout);
    assert!(server.running());
}

/// Another user's listener, seen by a user who cannot read that user's
/// processes: through `/proc`'s system-wide socket table (Linux), and
/// through the portable path (`lsof`, which lists only readable processes,
/// then a bind probe: macOS's fallback), the port is in use with its owner
/// unknown; never free.
#[test]
fn another_users_listener_is_in_use_with_its_owner_unknown_never_free() {
    use std::os::unix::process::CommandExt;
    if !is_root() {
        return crate::trust::skip(
            "another_users_listener_is_in_use_with_its_owner_unknown_never_free",
            "needs root, to run pidman as another user than the listener's",
        );
    }
    let env = TestEnv::new();
    let cache = env.root().join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::os::unix::fs::chown(&cache, Some(65534), Some(65534)).unwrap();
    std::os::unix::fs::chown(env.root(), Some(65534), Some(65534)).unwrap();
    // Root's listener (this test process), on every address, as a server.
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    for portable in ["0", "1"] {
        let as_nobody = |args: &[&str]| {
            let out = std::process::Command::new(PIDMAN)
                .args(args)
                .current_dir(env.root())
                .env("PIDMAN_PORTABLE", portable)
                .env("PIDMAN_CACHE_DIR", &cache)
                .uid(65534)
                .gid(65534)
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap();
            Run::from(out)
        };
        let run = as_nobody(&["port", &port]);
        run.expect(0);
        assert!(
            run.stderr.contains("cannot see") || run.stdout.contains("cannot see"),
            "portable={portable}: {run:?}"
        );
        let run = as_nobody(&["preflight", "--port", &port]);
        run.expect(1);
        assert!(
            run.stdout.contains("pick another port"),
            "portable={portable}: {run:?}"
        );
    }
    drop(listener);
}
