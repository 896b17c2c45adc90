//! A broken plugin: each export misbehaves in its own way, so the host's
//! limits can be tested one by one.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "plugin",
});

use crate::bengal::pid_manager::types::{Error, Pid};
use crate::exports::bengal::pid_manager::manager::{
    Claim, ClearReport, Guest, KillOutcome, PortOwner, PreflightReport, StaleServer,
};

struct Broken;

fn unsupported<T>() -> Result<T, Error> {
    Err(Error::Unsupported("this is the broken test plugin".into()))
}

impl Guest for Broken {
    fn get_pid_file(project_root: String) -> String {
        format!("{project_root}/.bengal.pid")
    }

    /// Allocates without bound: the memory limit must stop it.
    fn is_bengal_process(_pid: Pid) -> bool {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![1u8; 1 << 20]);
            if hoard.len() == usize::MAX {
                return false;
            }
        }
    }

    /// Never returns: fuel must stop it.
    fn check_stale_pid(pid_file: String) -> Result<Option<Pid>, Error> {
        let mut n: u64 = 0;
        loop {
            n = n.wrapping_mul(6364136223846793005).wrapping_add(pid_file.len() as u64);
            if n == 42 {
                return Ok(None);
            }
        }
    }

    /// Crashes.
    fn kill_stale_process(pid: Pid, _timeout_ms: Option<u64>) -> Result<KillOutcome, Error> {
        panic!("the broken plugin was asked to kill {pid}");
    }

    /// Tries to write outside the one directory it was given, and reports
    /// what the sandbox said.
    fn write_pid_file(_pid_file: String, _pid: Option<Pid>) -> Result<Pid, Error> {
        match std::fs::write("/etc/pidman-escape", b"1") {
            Ok(()) => Ok(1),
            Err(e) => Err(Error::Io(format!("/etc/pidman-escape: {e}"))),
        }
    }

    fn remove_pid_file(_pid_file: String, _expected: Option<Pid>) -> Result<bool, Error> {
        unsupported()
    }

    fn get_process_on_port(_port: u16) -> Result<PortOwner, Error> {
        unsupported()
    }

    fn acquire(_pid_file: String, _pid: Option<Pid>) -> Result<Claim, Error> {
        unsupported()
    }

    fn preflight(_pid_file: String, _port: Option<u16>) -> Result<PreflightReport, Error> {
        unsupported()
    }

    fn clear_stale(
        _pid_file: String,
        _server: StaleServer,
        _port: Option<u16>,
        _timeout_ms: Option<u64>,
    ) -> Result<ClearReport, Error> {
        unsupported()
    }
}

export!(Broken);
