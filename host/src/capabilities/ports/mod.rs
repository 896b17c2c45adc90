//! `ports`: the TCP sockets on a local port and their owners, one
//! implementation per OS:
//!
//! - [`linux`]: sock_diag (or `/proc/net/tcp{,6}`), the owner from the
//!   socket's inode in `/proc/<pid>/fd`.
//! - `macos`: libproc, each process's socket descriptors
//!   (`PROC_PIDFDSOCKETINFO`): the owner comes with the socket.
//! - `windows`: `GetExtendedTcpTable` with owning PIDs.
//! - [`lsof`]: the `lsof` command: where Linux has no `/proc`, and under
//!   `PIDMAN_PORTABLE=1`.
//!
//! Where the owner comes with the socket, the socket's handle is
//! `2^32 + PID` (never an inode, which are 32-bit) and the owner is
//! remembered by handle for `owner`.

#[cfg(target_os = "linux")]
pub mod linux;
#[cfg(unix)]
mod lsof;
#[cfg(target_os = "macos")]
mod macos;
#[cfg(windows)]
mod windows;

use std::collections::HashMap;

use crate::bindings::bengal::pid_manager::ports::TcpSocket;
use crate::bindings::bengal::pid_manager::types::{Error, Pid};

/// Host-side state: owners that came with their sockets, and the users
/// of the sockets whose owner is still to find, by handle.
#[derive(Default)]
pub struct PortTable {
    owners: HashMap<u64, Pid>,
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    uids: HashMap<u64, u32>,
}

/// A socket whose owner came with it, and the handle that names it.
pub struct Owned {
    /// The socket, its `handle` not yet set.
    pub socket: TcpSocket,
    /// The process that holds it.
    pub pid: Pid,
}

/// A listener this user cannot see the owner of, found by trying to bind
/// the port (as a new server would: with `SO_REUSEADDR`, on every IPv4 and
/// IPv6 address): where the socket table lists only this user's own
/// processes (`lsof`, libproc), another user's listener would otherwise
/// read as a free port. Its owner and uid are unknown (PID 0, uid
/// `u32::MAX`, which no user has).
#[cfg(unix)]
pub fn unseen_listener(port: u16) -> Option<Owned> {
    let in_use = |address: &str| {
        matches!(
            std::net::TcpListener::bind((address, port)),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse
        )
    };
    (port != 0 && (in_use("0.0.0.0") || in_use("::"))).then(|| Owned {
        pid: 0,
        socket: TcpSocket {
            ipv6: false,
            local_address: "*".into(),
            state: crate::bindings::bengal::pid_manager::ports::TcpState::Listen,
            uid: UNKNOWN_UID,
            handle: 0,
        },
    })
}

/// The uid of a socket whose owner cannot be seen: `(uid_t)-1`, no user's.
pub const UNKNOWN_UID: u32 = u32::MAX;

impl PortTable {
    /// The TCP sockets on local `port`: listeners, or all the others.
    /// Handles are good until the next call (so that a long-lived session
    /// remembers only the latest answer's owners).
    pub fn sockets(&mut self, port: u16, listening: bool) -> Result<Vec<TcpSocket>, Error> {
        self.owners.clear();
        self.uids.clear();
        #[cfg(target_os = "linux")]
        if !super::portable()
            && let Some(sockets) = linux::sockets(port, listening)?
        {
            self.uids.extend(sockets.iter().map(|s| (s.handle, s.uid)));
            return Ok(sockets);
        }
        #[cfg(target_os = "macos")]
        if !super::portable() {
            let mut found = macos::sockets(port, listening)?;
            if listening && found.is_empty() {
                found.extend(unseen_listener(port));
            }
            return Ok(self.remember(found));
        }
        #[cfg(unix)]
        {
            let mut found = lsof::sockets(port, listening)?;
            if listening && found.is_empty() {
                found.extend(unseen_listener(port));
            }
            Ok(self.remember(found))
        }
        #[cfg(windows)]
        {
            Ok(self.remember(windows::sockets(port, listening)?))
        }
    }

    /// Give each socket its handle, remembering its owner. PID 0 is no
    /// process's: its socket gets handle 0, whose owner is unknown.
    fn remember(&mut self, owned: Vec<Owned>) -> Vec<TcpSocket> {
        owned
            .into_iter()
            .map(|Owned { mut socket, pid }| {
                socket.handle = 0;
                if pid != 0 {
                    socket.handle = (1u64 << 32) | u64::from(pid);
                    self.owners.insert(socket.handle, pid);
                }
                socket
            })
            .collect()
    }

    /// The PID holding socket `handle`, if a readable process holds it.
    pub fn owner(&self, handle: u64) -> Result<Option<Pid>, Error> {
        if let Some(&pid) = self.owners.get(&handle) {
            return Ok(Some(pid));
        }
        if handle == 0 || handle >> 32 != 0 {
            return Ok(None);
        }
        #[cfg(target_os = "linux")]
        {
            Ok(linux::owner(handle, self.uids.get(&handle).copied()))
        }
        #[cfg(not(target_os = "linux"))]
        {
            Ok(None)
        }
    }
}
