//! pidman's plugin: Bengal's PID manager as a `wasm32-wasip2` component.
//!
//! Every rule lives here: the PID file's format and validation, the identity
//! rule that tells a Bengal server from a process that reused its PID, the
//! TERM/wait/KILL schedule, the listener-first port rule and the start-up
//! check. The host only does what the guest asks through its imports.
//!
//! Layout:
//! - [`host`]: the small [`host::Host`] trait the policy talks to;
//! - [`wasi_host`]: its one real implementation, on the WIT imports and WASI;
//! - [`policy`]: the rules, which see nothing but the trait;
//! - this file: the bindings and the export, which only forward.

#![deny(missing_docs)]

/// The generated bindings, private as Zed keeps its extension API's: the
/// policy speaks [`types`].
#[allow(missing_docs)]
mod wit {
    wit_bindgen::generate!({
        path: "../wit",
        world: "plugin",
        // For the unit tests' assertions; `claim` holds a resource, which
        // has no equality.
        additional_derives: [PartialEq, Eq],
        additional_derives_ignore: ["claim"],
    });
}

/// Bindings for the part of WASI the guest calls directly (`wasi_files`).
#[cfg(target_os = "wasi")]
#[allow(missing_docs)]
mod wit_wasi {
    wit_bindgen::generate!({
        path: "wasi",
        world: "files",
        generate_all,
    });
}

/// The WIT types the policy speaks, generated from `wit/` (their docs are
/// the WIT's).
pub mod types {
    pub use crate::wit::bengal::pid_manager::files::{FileOwner, Lock};
    pub use crate::wit::bengal::pid_manager::log::Level;
    pub use crate::wit::bengal::pid_manager::ports::{TcpSocket, TcpState};
    pub use crate::wit::bengal::pid_manager::process_table::{
        ProcessEntry, ProcessInfo, ProcessState,
    };
    pub use crate::wit::bengal::pid_manager::signals::Signal;
    pub use crate::wit::bengal::pid_manager::types::{Error, Pid, ProcessIdentity};
    pub use crate::wit::exports::bengal::pid_manager::manager::{
        Claim, ClearReport, Holder, KillOutcome, LineageEntry, MemberStop, PortDescription,
        PortHolder, PortOwner, PortStatus, PreflightReport, Role, StaleServer, StopReport,
        TreeMember, Verdict,
    };
}

pub mod host;
pub mod policy;
#[cfg(target_os = "wasi")]
mod wasi_files;
mod wasi_host;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod rule_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tree_tests;

use crate::wasi_host::WasiHost;
use crate::wit::bengal::pid_manager::files::Lock;
use crate::wit::bengal::pid_manager::log::Level;
use crate::wit::bengal::pid_manager::types::{Error, Pid};
use crate::wit::exports::bengal::pid_manager::manager::{
    Claim, ClearReport, Guest, PortDescription, PortOwner, PreflightReport, StaleServer,
    StopReport, TreeMember,
};

/// The exported component: each function forwards to its policy module.
struct Plugin;

impl Guest for Plugin {
    fn set_log_level(least: Option<Level>) {
        wasi_host::set_log_level(least);
    }

    fn get_pid_file(project_root: String) -> String {
        policy::pidfile::path_in(&project_root)
    }

    fn is_bengal_process(pid: Pid) -> bool {
        policy::identity::is_bengal_process(&WasiHost, pid)
    }

    fn check_stale_pid(pid_file: String) -> Result<Option<Pid>, Error> {
        policy::stale::check_stale_pid(&WasiHost, &pid_file)
    }

    fn kill_stale_process(pid: Pid, timeout_ms: Option<u64>) -> Result<StopReport, Error> {
        policy::kill::kill_stale_process(&WasiHost, pid, timeout_ms)
    }

    fn plan_stop(pid: Pid) -> Result<Vec<TreeMember>, Error> {
        policy::kill::plan_stop(&WasiHost, pid)
    }

    fn write_pid_file(pid_file: String, pid: Option<Pid>) -> Result<Pid, Error> {
        policy::write::write_pid_file(&WasiHost, &pid_file, pid)
    }

    fn remove_pid_file(pid_file: String, expected: Option<Pid>) -> Result<bool, Error> {
        policy::write::remove_pid_file(&WasiHost, &pid_file, expected)
    }

    fn get_process_on_port(port: u16) -> Result<PortOwner, Error> {
        policy::port::process_on_port(&WasiHost, port)
    }

    fn describe_port(port: u16, pid_file: Option<String>) -> Result<PortDescription, Error> {
        policy::port::describe_port(&WasiHost, port, pid_file.as_deref())
    }

    fn acquire(pid_file: String, pid: Option<Pid>) -> Result<Claim, Error> {
        policy::claim::acquire(&WasiHost, &pid_file, pid).map(|claim| match claim {
            policy::claim::Acquired::Claimed(lock) => Claim::Claimed(lock),
            policy::claim::Acquired::Held(holder) => Claim::Held(holder),
        })
    }

    fn hand_over(_claim: &Lock, pid_file: String, pid: Pid) -> Result<(), Error> {
        policy::claim::hand_over(&WasiHost, &pid_file, pid)
    }

    fn stop_claimed_tree(
        _claim: &Lock,
        pid_file: String,
        timeout_ms: Option<u64>,
    ) -> Result<StopReport, Error> {
        policy::claim::stop_claimed_tree(&WasiHost, &pid_file, timeout_ms)
    }

    fn release(claim: Lock, pid_file: String, remove: Option<Pid>) -> Result<bool, Error> {
        let released = policy::claim::release(&WasiHost, &pid_file, remove);
        drop(claim);
        released
    }

    fn preflight(pid_file: String, port: Option<u16>) -> Result<PreflightReport, Error> {
        policy::preflight::preflight(&WasiHost, &pid_file, port)
    }

    fn clear_stale(
        pid_file: String,
        server: StaleServer,
        port: Option<u16>,
        timeout_ms: Option<u64>,
    ) -> Result<ClearReport, Error> {
        policy::preflight::clear_stale(&WasiHost, &pid_file, &server, port, timeout_ms)
    }
}

// Natively (unit tests) the imports are `unreachable!()` and there is no
// component to export.
#[cfg(target_arch = "wasm32")]
wit::export!(Plugin with_types_in wit);
