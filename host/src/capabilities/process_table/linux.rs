//! The process table on Linux: `/proc`, one process's facts in three small
//! reads (`stat`, `status`, `cmdline`), about a fifth of what a `sysinfo`
//! refresh costs. The start time in clock ticks since boot is the exact
//! start token (10 ms precision).

use std::io::{self, Read};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::bindings::bengal::pid_manager::process_table::{
    ProcessEntry, ProcessInfo, ProcessState,
};
use crate::bindings::bengal::pid_manager::types::{Error, Pid};
use crate::capabilities::io_error;

/// The facts pidman reads about one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// The kernel's short name (`comm`).
    pub name: String,
    /// The command line; empty for kernel threads, zombies, and hidden
    /// processes.
    pub argv: Vec<String>,
    /// Start time in ms since the UNIX epoch (10 ms ticks).
    pub start_time_ms: u64,
    /// Start time in clock ticks since boot: the exact identity token.
    pub start_ticks: u64,
    /// The process's real user id.
    pub uid: u32,
    /// The process (thread group) this id belongs to: the id itself for a
    /// process, another for a thread that does not lead its process.
    pub tgid: u32,
    /// Whether it has exited and waits to be reaped.
    pub zombie: bool,
    /// Its parent's PID.
    pub parent: u32,
    /// Its process group.
    pub group: u32,
    /// Its session.
    pub session: u32,
}

/// A WIT `process-info` (of whichever bindings: the host's, or the guest's
/// compiled natively for the benchmarks) from a [`Process`] read for `pid`.
/// One mapping for both type families, which cannot share a type.
#[macro_export]
#[doc(hidden)]
macro_rules! process_info {
    ($info:ident, $state:ident, $pid:expr, $process:expr) => {{
        let p = $process;
        $info {
            pid: $pid,
            name: p.name,
            argv: p.argv,
            start_time_ms: p.start_time_ms,
            start_token: p.start_ticks,
            uid: Some(p.uid),
            state: if p.zombie {
                $state::Zombie
            } else {
                $state::Running
            },
            parent: p.parent,
            group: p.group,
            session: p.session,
        }
    }};
}

/// Whether this system has a Linux `/proc`.
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        !crate::capabilities::portable() && std::path::Path::new("/proc/self/stat").exists()
    })
}

/// The fields of `/proc/<pid>/stat` pidman reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// `comm`, between the first `(` and the last `)`.
    pub name: String,
    /// Exited: state `Z` (zombie) or `X` (dead) with no thread left (see
    /// [`exited`]).
    pub zombie: bool,
    /// Field 22, `starttime`, in clock ticks since boot.
    pub start_ticks: u64,
    /// Field 4, `ppid`.
    pub parent: u32,
    /// Field 5, `pgrp`.
    pub group: u32,
    /// Field 6, `session`.
    pub session: u32,
}

/// Parse a `/proc/<pid>/stat` line. The name may hold spaces and
/// parentheses: the fields start after the last `)`.
/// The name is bytes (`comm` is cut at 15 bytes, which may split a
/// character): it is read lossily, and nothing else depends on it.
pub fn parse_stat(raw: &[u8]) -> Option<Stat> {
    let open = raw.iter().position(|&b| b == b'(')?;
    let close = raw.iter().rposition(|&b| b == b')')?;
    let name = String::from_utf8_lossy(raw.get(open + 1..close)?).into_owned();
    let rest = std::str::from_utf8(&raw[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?;
    let parent = fields.next()?.parse().ok()?;
    let group = fields.next()?.parse().ok()?;
    let session = fields.next()?.parse().ok()?;
    let threads = fields.nth(13)?.parse().ok()?;
    let start_ticks = fields.nth(1)?.parse().ok()?;
    Some(Stat {
        name,
        zombie: exited(state, threads),
        start_ticks,
        parent,
        group,
        session,
    })
}

/// Whether a process has exited, from its `/proc` state and thread count.
/// The state is its thread-group leader's: `Z` once the main thread has
/// ended, while the process's other threads may still run and hold its
/// files and sockets (a multi-threaded server is so for a moment while it
/// exits; one whose main thread called `pthread_exit` is so for good). It
/// has exited only when it is the last thread left.
fn exited(state: &str, threads: u32) -> bool {
    matches!(state.chars().next(), Some('Z' | 'X' | 'x')) && threads <= 1
}

/// A `/proc` file, whole. procfs reports a size of 0, so `fs::read` would
/// stat it and then read in doubling chunks from 32 bytes (six reads for a
/// `stat` line); a page-sized first read takes it in one, plus the read
/// that sees the end.
fn read_proc(path: &str) -> io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    let mut bytes = Vec::with_capacity(4096);
    loop {
        let len = bytes.len();
        bytes.resize(len + 4096, 0);
        match file.read(&mut bytes[len..]) {
            Ok(0) => {
                bytes.truncate(len);
                return Ok(bytes);
            }
            Ok(n) => bytes.truncate(len + n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => bytes.truncate(len),
            Err(e) => return Err(e),
        }
    }
}

/// A `/proc` file as text.
fn read_proc_text(path: &str) -> io::Result<String> {
    String::from_utf8(read_proc(path)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: not UTF-8")))
}

/// `/proc/<pid>/stat`, parsed.
pub fn stat(pid: u32) -> io::Result<Stat> {
    let raw = read_proc(&format!("/proc/{pid}/stat"))?;
    parse_stat(&raw).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unparsable stat"))
}

/// `process-table.snapshot`: every process in `/proc` (its numeric
/// entries are thread-group leaders), one `stat` read each. A process that
/// ends while it is read is left out.
pub fn snapshot() -> Result<Vec<ProcessEntry>, Error> {
    let dir = std::fs::read_dir("/proc").map_err(|e| io_error("/proc", &e))?;
    let mut entries = Vec::with_capacity(512);
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(stat) = stat(pid) {
            entries.push(ProcessEntry {
                pid,
                parent: stat.parent,
                group: stat.group,
                start_token: stat.start_ticks,
                state: if stat.zombie {
                    ProcessState::Zombie
                } else {
                    ProcessState::Running
                },
            });
        }
    }
    Ok(entries)
}

/// The fields of `/proc/<pid>/status` pidman reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// `Tgid`: the process the id belongs to.
    pub tgid: u32,
    /// `Uid`, the first (real) of the four.
    pub uid: u32,
    /// Exited: `State` Z (zombie) or X (dead) and one `Threads` left.
    pub zombie: bool,
}

/// Parse `/proc/<pid>/status`.
pub fn parse_status(text: &str) -> Option<Status> {
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim_start)
    };
    let tgid = field("Tgid")?.parse().ok()?;
    let uid = field("Uid")?
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()?;
    let threads = field("Threads")?.parse().ok()?;
    let zombie = exited(field("State")?, threads);
    Some(Status { tgid, uid, zombie })
}

/// `/proc/<pid>/status`, parsed.
pub fn status(pid: u32) -> io::Result<Status> {
    let text = read_proc_text(&format!("/proc/{pid}/status"))?;
    parse_status(&text)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unparsable status"))
}

/// A command line as the kernel keeps it: arguments each ended by a NUL.
/// Empty arguments are arguments (`bengal "" serve` is not `bengal serve`).
pub fn parse_cmdline(raw: &[u8]) -> Vec<String> {
    if raw.is_empty() {
        return Vec::new();
    }
    let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
    raw.split(|&b| b == 0)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

/// Everything about `pid`; `NotFound` when no such process runs.
pub fn read(pid: u32) -> io::Result<Process> {
    let stat = stat(pid)?;
    let status = status(pid)?;
    let mut argv = match read_proc(&format!("/proc/{pid}/cmdline")) {
        Ok(raw) => parse_cmdline(&raw),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(e),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Err(e),
        Err(_) => Vec::new(),
    };
    let zombie = stat.zombie || status.zombie;
    if argv.is_empty() && !zombie {
        argv = thread_cmdline(pid);
    }
    Ok(Process {
        name: stat.name,
        argv,
        start_time_ms: start_time_ms(stat.start_ticks),
        start_ticks: stat.start_ticks,
        uid: status.uid,
        tgid: status.tgid,
        zombie,
        parent: stat.parent,
        group: stat.group,
        session: stat.session,
    })
}

/// The command line as another thread of `pid` reads it: a process whose
/// main thread has ended shows an empty `/proc/<pid>/cmdline` (it was read
/// through that thread), while its other threads share the same memory.
/// Empty when there is no other thread (a kernel thread) or none can tell.
fn thread_cmdline(pid: Pid) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| task.file_name().to_str()?.parse::<Pid>().ok())
        .filter(|&tid| tid != pid)
        .find_map(|tid| {
            let raw = read_proc(&format!("/proc/{pid}/task/{tid}/cmdline")).ok()?;
            Some(parse_cmdline(&raw)).filter(|argv| !argv.is_empty())
        })
        .unwrap_or_default()
}

/// A start time in ticks since boot as ms since the epoch.
pub fn start_time_ms(ticks: u64) -> u64 {
    boot_time_ms() + ticks * 1_000 / ticks_per_second()
}

fn ticks_per_second() -> u64 {
    static HZ: OnceLock<u64> = OnceLock::new();
    *HZ.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if hz > 0 { hz as u64 } else { 100 }
    })
}

/// Wall-clock time of boot in ms: now minus the time since boot
/// (CLOCK_BOOTTIME, which the kernel's start times count from).
fn boot_time_ms() -> u64 {
    static BOOT: OnceLock<u64> = OnceLock::new();
    *BOOT.get_or_init(|| {
        let since_boot = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
            .map(|t| t.tv_sec() as i128 * 1_000 + t.tv_nsec() as i128 / 1_000_000)
            .unwrap_or(0);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i128)
            .unwrap_or(0);
        u64::try_from(now - since_boot).unwrap_or(0)
    })
}

/// `process-table.inspect` from `/proc`: a thread id is not a process, and
/// a process `/proc` hides (`hidepid`) is alive, not gone.
pub fn inspect(pid: Pid) -> Result<ProcessInfo, Error> {
    let p = read(pid).map_err(|e| confirm_unreadable(pid, &e))?;
    if p.tgid != pid {
        return Err(thread_of(pid, p.tgid));
    }
    Ok(crate::process_info!(ProcessInfo, ProcessState, pid, p))
}

/// `process-table.state` from `/proc/<pid>/status` (which also tells a
/// thread id from a PID); a missing entry is confirmed by `kill(pid, 0)`.
pub fn state(pid: Pid) -> Result<ProcessState, Error> {
    match status(pid) {
        Ok(status) if status.tgid != pid => Err(thread_of(pid, status.tgid)),
        Ok(status) if status.zombie => Ok(ProcessState::Zombie),
        Ok(_) => Ok(ProcessState::Running),
        Err(_) => super::probe(pid), // missing or hidden
    }
}

/// The start token: clock ticks since boot.
pub fn start_token(pid: Pid) -> Result<u64, Error> {
    stat(pid)
        .map(|stat| stat.start_ticks)
        .map_err(|e| io_error(&format!("PID {pid}"), &e))
}

/// The error for a thread id that does not lead its process.
fn thread_of(tid: Pid, tgid: u32) -> Error {
    Error::Invalid(format!(
        "{tid} is a thread of process {tgid}, not a process"
    ))
}

/// `/proc` could not tell about `pid`: a missing entry may still be a live
/// process that `/proc` hides from us (`hidepid`), so ask `kill(pid, 0)`,
/// for which EPERM means alive.
fn confirm_unreadable(pid: Pid, e: &io::Error) -> Error {
    let what = format!("PID {pid}");
    match io_error(&what, e) {
        Error::NotFound => match super::probe(pid) {
            Ok(ProcessState::Gone) => Error::NotFound,
            Ok(_) => {
                Error::PermissionDenied(format!("{what} runs, but /proc hides it from this user"))
            }
            Err(e) => e,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_spaces_and_parentheses() {
        let line = "123 (my (odd) name) Z 1 123 123 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 \
                    98765 1000 10 18446744073709551615";
        let stat = parse_stat(line.as_bytes()).unwrap();
        assert_eq!(stat.name, "my (odd) name");
        assert!(stat.zombie);
        assert_eq!(stat.start_ticks, 98765);
        assert_eq!((stat.parent, stat.group, stat.session), (1, 123, 123));
    }

    #[test]
    fn a_zombie_leader_with_a_thread_left_has_not_exited() {
        let line = |threads: u32| {
            format!("9 (node) Z 1 9 9 0 -1 0 0 0 0 0 0 0 0 0 20 0 {threads} 0 555 0 0")
        };
        assert!(!parse_stat(line(2).as_bytes()).unwrap().zombie);
        assert!(parse_stat(line(1).as_bytes()).unwrap().zombie);
        let status = |threads: u32| {
            parse_status(&format!(
                "State:\tZ (zombie)\nTgid:\t9\nUid:\t0 0 0 0\nThreads:\t{threads}\n"
            ))
            .unwrap()
            .zombie
        };
        assert!(!status(2));
        assert!(status(1));
    }

    #[test]
    fn a_name_cut_inside_a_character_is_read_lossily() {
        let mut line = b"77 (caf\xc3".to_vec(); // `comm` cut after 15 bytes
        line.extend_from_slice(b") S 5 77 77 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 4242 0 0");
        let stat = parse_stat(&line).unwrap();
        assert_eq!(stat.name, "caf\u{fffd}");
        assert_eq!((stat.parent, stat.group, stat.start_ticks), (5, 77, 4242));
    }

    #[test]
    fn the_snapshot_shows_this_process_and_its_parent() {
        let entries = snapshot().unwrap();
        let me = entries
            .iter()
            .find(|e| e.pid == std::process::id())
            .unwrap();
        assert_eq!(me.parent, nix::unistd::getppid().as_raw() as u32);
        assert_eq!(me.group, nix::unistd::getpgrp().as_raw() as u32);
        assert_eq!(me.start_token, read(me.pid).unwrap().start_ticks);
        assert!(entries.iter().any(|e| e.pid == me.parent));
    }

    #[test]
    fn parses_status_and_keeps_empty_arguments() {
        let text = "Name:\tpython3\nState:\tS (sleeping)\nTgid:\t42\nPid:\t43\nUid:\t1000\t1001\t1000\t1000\nThreads:\t3\n";
        assert_eq!(
            parse_status(text),
            Some(Status {
                tgid: 42,
                uid: 1000,
                zombie: false
            })
        );
        assert!(
            parse_status("State:\tZ (zombie)\nTgid:\t7\nUid:\t0 0 0 0\nThreads:\t1\n")
                .unwrap()
                .zombie
        );
        assert_eq!(parse_status("Name: x\n"), None);
        assert_eq!(parse_cmdline(b"bengal\0\0serve\0"), ["bengal", "", "serve"]);
        assert_eq!(
            parse_cmdline(b"bengal\0serve"),
            ["bengal", "serve"],
            "rewritten, no final NUL"
        );
        assert!(parse_cmdline(b"").is_empty());
    }

    #[test]
    fn reads_its_own_process() {
        let me = read(std::process::id()).expect("/proc/self");
        assert!(!me.zombie);
        assert!(me.start_ticks > 0);
        assert!(!me.argv.is_empty());
        assert_eq!(me.uid, nix::unistd::getuid().as_raw());
        assert_eq!(me.tgid, std::process::id());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(me.start_time_ms <= now + 1_000 && me.start_time_ms + 3_600_000 > now);
    }
}
