//! In-process cost of pidman's operations: through the plugin (one
//! `PidManager`, instance reused) and the same policy compiled natively
//! against a native implementation of its `Host` trait.
//!
//! `cargo bench -p pidman` (needs python3 for the fake Bengal server).

use std::fs::File;
use std::io::{BufRead, Read};
use std::os::fd::FromRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use nix::fcntl::{Flock, FlockArg};
use pidman_guest::host::{FileKind, FileRead, FileStat, Host};
use pidman_guest::types::FileOwner;
use pidman_guest::types::Level;
use pidman_guest::types::Signal;
use pidman_guest::types::TcpSocket;
use pidman_guest::types::{Error, Pid, ProcessIdentity};
use pidman_guest::types::{ProcessEntry, ProcessInfo, ProcessState};

fn main() {
    divan::main();
    if let Some(fixture) = FIXTURE.get() {
        let mut child = fixture.child.lock().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A fake Bengal server and a project root whose PID file names it.
struct Fixture {
    child: std::sync::Mutex<Child>,
    pid: u32,
    root: PathBuf,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/bengal");
        let mut child = Command::new(script)
            .arg("serve")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // The whole "ready <pid>" line: a pipe closed before the server has
        // written it all would end the server (EPIPE) and the benchmark.
        let mut ready = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert!(ready.starts_with("ready"), "the fake server: {ready:?}");
        let pid = child.id();
        let root = std::env::temp_dir().join(format!("pidman-bench-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join(".bengal.pid"), pid.to_string()).unwrap();
        Fixture {
            child: std::sync::Mutex::new(child),
            pid,
            root,
        }
    })
}

#[divan::bench]
fn plugin_check_live_server(bencher: divan::Bencher) {
    let f = fixture();
    let mut pids = pidman::PidManager::open(&f.root).unwrap();
    bencher.bench_local(|| assert_eq!(pids.check_stale_pid().unwrap(), Some(f.pid)));
}

#[divan::bench]
fn native_check_live_server(bencher: divan::Bencher) {
    let f = fixture();
    let host = NativeHost;
    let file = f.root.join(".bengal.pid");
    let file = file.to_str().unwrap();
    bencher.bench_local(|| {
        let found = pidman_guest::policy::stale::check_stale_pid(&host, file).unwrap();
        assert_eq!(found, Some(f.pid));
    });
}

#[divan::bench]
fn plugin_is_bengal(bencher: divan::Bencher) {
    let f = fixture();
    let mut pids = pidman::PidManager::open(&f.root).unwrap();
    bencher.bench_local(|| assert!(pids.is_bengal_process(f.pid).unwrap()));
}

#[divan::bench]
fn native_is_bengal(bencher: divan::Bencher) {
    let f = fixture();
    let host = NativeHost;
    bencher.bench_local(|| {
        assert!(pidman_guest::policy::identity::is_bengal_process(
            &host, f.pid
        ))
    });
}

#[divan::bench]
fn plugin_call_overhead(bencher: divan::Bencher) {
    let f = fixture();
    let mut pids = pidman::PidManager::open(&f.root).unwrap();
    // A PID nobody has: one trip into the plugin and one host call.
    bencher.bench_local(|| assert!(!pids.is_bengal_process(u32::MAX - 1).unwrap()));
}

/// The policy's `Host` on direct system calls, for the side-by-side
/// numbers: the same work the plugin's host does for `check`, without wasm.
/// (Signals and ports are not part of these benchmarks.)
#[derive(Default)]
struct NativeHost;

fn io(e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound,
        _ => Error::Io(e.to_string()),
    }
}

impl Host for NativeHost {
    type Lock = Flock<File>;

    fn own_pid(&self) -> Pid {
        std::process::id()
    }
    fn parent_pid(&self) -> Pid {
        nix::unistd::getppid().as_raw() as Pid
    }
    fn own_uid(&self) -> u32 {
        nix::unistd::geteuid().as_raw()
    }
    fn process_state(&self, pid: Pid) -> Result<ProcessState, Error> {
        // The same reader the plugin's host uses.
        Ok(match pidman::procfs::status(pid) {
            Ok(status) if status.zombie => ProcessState::Zombie,
            Ok(_) => ProcessState::Running,
            Err(_) => ProcessState::Gone,
        })
    }
    fn inspect(&self, pid: Pid) -> Result<ProcessInfo, Error> {
        // The same reader the plugin's host uses.
        let p = pidman::procfs::read(pid).map_err(io)?;
        Ok(pidman::process_info!(ProcessInfo, ProcessState, pid, p))
    }
    fn snapshot(&self) -> Result<Vec<ProcessEntry>, Error> {
        Err(Error::Unsupported("not benchmarked".into()))
    }
    fn now_ms(&self) -> u64 {
        static START: OnceLock<std::time::Instant> = OnceLock::new();
        START
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_millis() as u64
    }
    fn send(&self, _: ProcessIdentity, _: Signal) -> Result<(), Error> {
        Err(Error::Unsupported("not benchmarked".into()))
    }
    fn wait_exit(&self, _: ProcessIdentity, _: u64) -> Result<bool, Error> {
        Err(Error::Unsupported("not benchmarked".into()))
    }
    fn sockets(&self, _: u16, _: bool) -> Result<Vec<TcpSocket>, Error> {
        Err(Error::Unsupported("not benchmarked".into()))
    }
    fn socket_owner(&self, _: u64) -> Result<Option<Pid>, Error> {
        Err(Error::Unsupported("not benchmarked".into()))
    }
    fn file_owner(&self, path: &str) -> Result<FileOwner, Error> {
        let meta = std::fs::symlink_metadata(path).map_err(io)?;
        Ok(FileOwner {
            uid: meta.uid(),
            mode: meta.mode() & 0o7777,
            symlink: meta.file_type().is_symlink(),
        })
    }
    fn try_lock(&self, path: &str, _wait_ms: u32) -> Result<Option<Self::Lock>, Error> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Some(lock)),
            Err(_) => Ok(None),
        }
    }
    fn read_file(&self, path: &str, limit: usize) -> Result<FileRead, Error> {
        let c = std::ffi::CString::new(path).unwrap();
        // SAFETY: a valid C string; a non-negative result is a descriptor we own.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io(std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just opened.
        let file = unsafe { File::from_raw_fd(fd) };
        let meta = file.metadata().map_err(io)?;
        let mut bytes = Vec::new();
        file.take(limit as u64)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        let modified_ms = meta
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        Ok(FileRead { bytes, modified_ms })
    }
    fn write_file_atomic(&self, path: &str, temp: &str, contents: &[u8]) -> Result<(), Error> {
        std::fs::write(temp, contents).map_err(io)?;
        std::fs::rename(temp, path).map_err(io)
    }
    fn file_stat(&self, path: &str) -> Result<FileStat, Error> {
        let meta = std::fs::symlink_metadata(path).map_err(io)?;
        Ok(FileStat {
            kind: FileKind::of(&meta.file_type()),
            size: meta.len(),
        })
    }
    fn write_file(&self, path: &str, contents: &[u8]) -> Result<(), Error> {
        std::fs::write(path, contents).map_err(io)
    }
    fn create_dir_all(&self, dir: &str) -> Result<(), Error> {
        std::fs::create_dir_all(dir).map_err(io)
    }
    fn random_u64(&self) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    }
    fn list_dir(&self, dir: &str) -> Result<Vec<String>, Error> {
        std::fs::read_dir(dir)
            .map_err(io)?
            .map(|e| {
                e.map(|e| e.file_name().to_string_lossy().into_owned())
                    .map_err(io)
            })
            .collect()
    }
    fn remove_file(&self, path: &str) -> Result<(), Error> {
        std::fs::remove_file(path).map_err(io)
    }
    fn sleep_ms(&self, ms: u64) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    fn log(&self, _: Level, _: &str) {}
}
