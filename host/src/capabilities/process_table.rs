//! `process-table`: facts about processes from `sysinfo`, refreshing only
//! the PID asked for. On Linux the start time also comes from
//! `/proc/<pid>/stat` in clock ticks, which `sysinfo` rounds to seconds: the
//! ticks are the exact start token, and give 10 ms precision for comparing
//! with file times.

use sysinfo::{ProcessRefreshKind, ProcessStatus, ProcessesToUpdate, System, UpdateKind};

use crate::plugin::bindings::bengal::pid_manager::process_table::{
    Host, ProcessInfo, ProcessState,
};
use crate::plugin::bindings::bengal::pid_manager::types::{Error, Pid};
use crate::state::PluginState;

/// The host side of the process table: one `sysinfo::System`, made on
/// first use and reused.
#[derive(Default)]
pub struct ProcessTable {
    system: Option<System>,
}

impl ProcessTable {
    /// An empty table; `sysinfo` is set up on first use.
    pub fn new() -> Self {
        Self::default()
    }

    fn system(&mut self) -> Result<&mut System, Error> {
        if self.system.is_none() {
            let system = System::new()
                .map_err(|e| Error::Unsupported(format!("no process table here: {e}")))?;
            self.system = Some(system);
        }
        Ok(self.system.as_mut().expect("just made"))
    }

    /// Everything known about `pid`, freshly read.
    pub fn inspect(&mut self, pid: Pid) -> Result<ProcessInfo, Error> {
        let spid = sysinfo::Pid::from_u32(pid);
        let kind = ProcessRefreshKind::nothing()
            .with_cmd(UpdateKind::Always)
            .with_user(UpdateKind::Always);
        let system = self.system()?;
        system.refresh_processes_specifics(ProcessesToUpdate::Some(&[spid]), true, kind);
        let process = system.process(spid).ok_or(Error::NotFound)?;
        let state = match process.status() {
            ProcessStatus::Zombie | ProcessStatus::Dead => ProcessState::Zombie,
            _ => ProcessState::Running,
        };
        let (start_time_ms, start_token) = match linux::start(pid) {
            Some(start) => start,
            None => (process.start_time() * 1_000, process.start_time()),
        };
        Ok(ProcessInfo {
            pid,
            name: process.name().to_string_lossy().into_owned(),
            argv: process
                .cmd()
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            start_time_ms,
            start_token,
            uid: process.user_id().map(|uid| **uid),
            state,
        })
    }
}

/// Running, zombie or gone, by `kill(pid, 0)` (EPERM means it exists) and,
/// on Linux, the state letter in `/proc/<pid>/stat`.
pub fn state(pid: Pid) -> Result<ProcessState, Error> {
    if pid == 0 || pid > i32::MAX as u32 {
        return Ok(ProcessState::Gone);
    }
    if let Some(stat) = linux::stat(pid) {
        return Ok(if stat.zombie {
            ProcessState::Zombie
        } else {
            ProcessState::Running
        });
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None) {
        Ok(()) | Err(nix::errno::Errno::EPERM) => Ok(ProcessState::Running),
        Err(nix::errno::Errno::ESRCH) => Ok(ProcessState::Gone),
        Err(e) => Err(super::errno_error(&format!("PID {pid}"), e)),
    }
}

/// The exact start token of `pid` now, if it runs and the platform has one.
pub fn start_token(table: &mut ProcessTable, pid: Pid) -> Result<u64, Error> {
    match linux::start(pid) {
        Some((_, token)) => Ok(token),
        None => table.inspect(pid).map(|info| info.start_token),
    }
}

impl Host for PluginState {
    fn own_pid(&mut self) -> wasmtime::Result<Pid> {
        Ok(std::process::id())
    }

    fn parent_pid(&mut self) -> wasmtime::Result<Pid> {
        Ok(nix::unistd::getppid().as_raw() as Pid)
    }

    fn own_uid(&mut self) -> wasmtime::Result<u32> {
        Ok(nix::unistd::geteuid().as_raw())
    }

    fn state(&mut self, pid: Pid) -> wasmtime::Result<Result<ProcessState, Error>> {
        Ok(state(pid))
    }

    fn inspect(&mut self, pid: Pid) -> wasmtime::Result<Result<ProcessInfo, Error>> {
        if pid == 0 || pid > i32::MAX as u32 {
            return Ok(Err(Error::NotFound));
        }
        Ok(self.processes.inspect(pid))
    }
}

/// `/proc/<pid>/stat`, where there is one.
pub(crate) mod linux {
    use std::sync::OnceLock;
    use std::time::{SystemTime, UNIX_EPOCH};

    use crate::plugin::bindings::bengal::pid_manager::types::Pid;

    /// The fields of `/proc/<pid>/stat` pidman reads.
    pub struct Stat {
        pub zombie: bool,
        pub start_ticks: u64,
    }

    /// Parse `/proc/<pid>/stat`; none when it cannot be read.
    pub fn stat(pid: Pid) -> Option<Stat> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        parse_stat(&text)
    }

    /// The command name may hold spaces and parentheses: the fields start
    /// after the last `)`. Field 3 is the state, field 22 the start time.
    pub fn parse_stat(text: &str) -> Option<Stat> {
        let rest = &text[text.rfind(')')? + 1..];
        let mut fields = rest.split_ascii_whitespace();
        let state = fields.next()?;
        let start_ticks = fields.nth(18)?.parse().ok()?;
        Some(Stat {
            zombie: matches!(state, "Z" | "X" | "x"),
            start_ticks,
        })
    }

    /// (start time in ms since the epoch, exact start token).
    pub fn start(pid: Pid) -> Option<(u64, u64)> {
        let stat = stat(pid)?;
        let ms = boot_time_ms()? + stat.start_ticks * 1_000 / ticks_per_second();
        Some((ms, stat.start_ticks))
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
    fn boot_time_ms() -> Option<u64> {
        static BOOT: OnceLock<Option<u64>> = OnceLock::new();
        *BOOT.get_or_init(|| {
            let since_boot = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).ok()?;
            let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
            let boot_ms = now.as_millis() as i128
                - (since_boot.tv_sec() as i128 * 1_000 + since_boot.tv_nsec() as i128 / 1_000_000);
            u64::try_from(boot_ms).ok()
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn parses_names_with_spaces_and_parentheses() {
            let line = "123 (my (odd) name) Z 1 123 123 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 \
                        98765 1000 10 18446744073709551615";
            let stat = parse_stat(line).unwrap();
            assert!(stat.zombie);
            assert_eq!(stat.start_ticks, 98765);
        }

        #[test]
        fn reads_its_own_process() {
            let stat = stat(std::process::id()).expect("/proc/self/stat");
            assert!(!stat.zombie);
            assert!(stat.start_ticks > 0);
        }
    }
}
