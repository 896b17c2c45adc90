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
        eprintln!("skipped: no IPv6 loopback here");
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
