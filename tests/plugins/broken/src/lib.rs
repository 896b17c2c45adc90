//! A broken plugin: each export misbehaves in its own way, so the host's
//! limits can be tested one by one: unbounded memory, an endless loop, a
//! crash, a reach outside its directory, and four ways to block (a wait for
//! exit, a lock, a WASI sleep, each asked for forever; a FIFO opened for
//! reading). A project root whose name ends in `grant-escape` gets a PID
//! file named outside it; in one whose name ends in `symlink-escape`,
//! `check-stale-pid` reaches through a symlinked directory inside the grant.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "plugin",
});

use crate::bengal::pid_manager::files::{self, Lock};
use crate::bengal::pid_manager::process_table;
use crate::bengal::pid_manager::signals;
use crate::bengal::pid_manager::types::{Error, Pid, ProcessIdentity};
use crate::exports::bengal::pid_manager::manager::{
    Claim, ClearReport, Guest, PortDescription, PortOwner, PreflightReport, StaleServer,
    StopReport, TreeMember,
};

struct Broken;

fn unsupported<T>() -> Result<T, Error> {
    Err(Error::Unsupported("this is the broken test plugin".into()))
}

impl Guest for Broken {
    fn set_log_level(_least: Option<bengal::pid_manager::log::Level>) {}

    /// Names a PID file outside the root it was given, for a root named
    /// `...grant-escape`: the host must refuse it.
    fn get_pid_file(project_root: String) -> String {
        if project_root.ends_with("grant-escape") {
            return "/etc/.bengal.pid".into();
        }
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

    /// Never returns: fuel must stop it. In a root named
    /// `...symlink-escape`, asks instead for the owner of
    /// `<root>/escape-link/secret` and a lock at
    /// `<root>/escape-link/planted.lock`, where `escape-link` is a symlink to
    /// a directory outside the grant; reports the host's answers.
    fn check_stale_pid(pid_file: String) -> Result<Option<Pid>, Error> {
        let dir = pid_file.rsplit_once('/').map_or(".", |(dir, _)| dir);
        if dir.ends_with("symlink-escape") {
            let owner = files::owner(&format!("{dir}/escape-link/secret"));
            let lock = files::try_lock(&format!("{dir}/escape-link/planted.lock"), 0)
                .map(|lock| lock.is_some());
            return Err(Error::Io(format!("owner: {owner:?}; lock: {lock:?}")));
        }
        let mut n = pid_file.len() as u64;
        // `black_box(true)`: the compiler cannot prove the loop ends, and it
        // never does.
        while std::hint::black_box(true) {
            n = std::hint::black_box(n.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        Ok(Some(n as Pid))
    }

    /// Crashes.
    fn kill_stale_process(pid: Pid, _timeout_ms: Option<u64>) -> Result<StopReport, Error> {
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

    /// Waits forever for its parent (the test) to exit.
    fn remove_pid_file(_pid_file: String, _expected: Option<Pid>) -> Result<bool, Error> {
        let parent = process_table::parent_pid();
        let start_token = process_table::inspect(parent)?.start_token;
        let target = ProcessIdentity { pid: parent, start_token };
        loop {
            signals::wait_exit(target, u64::MAX)?;
        }
    }

    /// Sleeps forever through WASI. (The `network` variant connects out
    /// first, which imports `wasi:sockets`.)
    fn get_process_on_port(_port: u16) -> Result<PortOwner, Error> {
        #[cfg(feature = "network")]
        let _ = std::net::TcpStream::connect("127.0.0.1:9");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(u64::MAX / 2));
        }
    }

    /// Waits forever for a lock someone else holds.
    fn acquire(pid_file: String, _pid: Option<Pid>) -> Result<Claim, Error> {
        loop {
            if let Some(lock) = files::try_lock(&format!("{pid_file}.lock"), u32::MAX)? {
                return Ok(Claim::Claimed(lock));
            }
        }
    }

    /// Opens the FIFO `<dir>/fifo` for reading: a host syscall that blocks
    /// until a writer comes.
    fn preflight(pid_file: String, _port: Option<u16>) -> Result<PreflightReport, Error> {
        let dir = pid_file.rsplit_once('/').map_or(".", |(dir, _)| dir);
        match std::fs::read(format!("{dir}/fifo")) {
            Ok(_) => unsupported(),
            Err(e) => Err(Error::Io(e.to_string())),
        }
    }

    /// Asks the host to SIGTERM PID 1, the host itself and its parent,
    /// skipping every rule of the real plugin: the host's own floor must
    /// refuse each. Reports what the host answered.
    fn plan_stop(_pid: Pid) -> Result<Vec<TreeMember>, Error> {
        let targets = [1, process_table::own_pid(), process_table::parent_pid()];
        let mut answers = Vec::new();
        for pid in targets {
            let start_token = process_table::inspect(pid).map_or(0, |p| p.start_token);
            let target = ProcessIdentity { pid, start_token };
            match signals::send(target, signals::Signal::Term) {
                Err(Error::Denied(_)) => answers.push(format!("{pid}: denied")),
                other => answers.push(format!("{pid}: {other:?}")),
            }
        }
        Err(Error::Denied(answers.join("; ")))
    }

    /// Sleeps forever through WASI, as `get-process-on-port` does (the
    /// CLI's `port` asks this one).
    fn describe_port(port: u16, _pid_file: Option<String>) -> Result<PortDescription, Error> {
        Self::get_process_on_port(port)?;
        unsupported()
    }

    fn hand_over(_claim: &Lock, _pid_file: String, _pid: Pid) -> Result<(), Error> {
        unsupported()
    }

    fn stop_claimed_tree(
        _claim: &Lock,
        _pid_file: String,
        _timeout_ms: Option<u64>,
    ) -> Result<StopReport, Error> {
        unsupported()
    }

    fn release(_claim: Lock, _pid_file: String, _remove: Option<Pid>) -> Result<bool, Error> {
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
