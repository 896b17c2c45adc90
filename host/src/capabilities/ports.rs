//! `ports`: the TCP sockets on a local port and their owners. On Linux from
//! `/proc/net/tcp` and `/proc/net/tcp6`, then the socket inode's holder from
//! `/proc/<pid>/fd` (the caller's own user's processes first, stopping at
//! the first match): no subprocess. Where `/proc` is missing, `lsof`.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use crate::plugin::bindings::bengal::pid_manager::ports::{Host, TcpSocket, TcpState};
use crate::plugin::bindings::bengal::pid_manager::types::{Error, Pid};
use crate::state::PluginState;

const PROC_TCP: [(&str, bool); 2] = [("/proc/net/tcp", false), ("/proc/net/tcp6", true)];

/// Host-side state: owners already known from `lsof`, by handle.
#[derive(Default)]
pub struct PortTable {
    lsof_owners: HashMap<u64, Pid>,
}

impl PortTable {
    /// Every TCP socket on local `port`.
    pub fn sockets(&mut self, port: u16) -> Result<Vec<TcpSocket>, Error> {
        if !Path::new(PROC_TCP[0].0).exists() {
            return self.lsof_listeners(port);
        }
        let mut sockets = Vec::new();
        for (path, ipv6) in PROC_TCP {
            match std::fs::read_to_string(path) {
                Ok(table) => sockets.extend(parse_proc_net_tcp(&table, port, ipv6)),
                // A kernel without IPv6 has no tcp6 table.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && ipv6 => {}
                Err(e) => return Err(super::io_error(path, &e)),
            }
        }
        Ok(sockets)
    }

    /// The PID holding socket `handle`, if a readable process holds it.
    pub fn owner(&self, handle: u64) -> Result<Option<Pid>, Error> {
        if let Some(&pid) = self.lsof_owners.get(&handle) {
            return Ok(Some(pid));
        }
        if handle == 0 {
            return Ok(None);
        }
        Ok(find_inode_owner(handle))
    }

    /// `lsof -nP -iTCP:<port> -sTCP:LISTEN -t`: listeners' PIDs only.
    fn lsof_listeners(&mut self, port: u16) -> Result<Vec<TcpSocket>, Error> {
        let output = Command::new("lsof")
            .args(["-nP", &format!("-iTCP:{port}"), "-sTCP:LISTEN", "-t"])
            .output()
            .map_err(|e| Error::Unsupported(format!("no /proc/net/tcp and no lsof: {e}")))?;
        let uid = nix::unistd::geteuid().as_raw();
        let mut sockets = Vec::new();
        for pid in String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|l| l.trim().parse().ok())
        {
            // Handles for lsof's answers: 2^32 + PID, never an inode here.
            let handle = (1u64 << 32) | u64::from(pid);
            self.lsof_owners.insert(handle, pid);
            sockets.push(TcpSocket {
                ipv6: false,
                local_address: "*".into(),
                state: TcpState::Listen,
                uid,
                handle,
            });
        }
        Ok(sockets)
    }
}

/// The rows of a `/proc/net/tcp{,6}` table whose local port is `port`:
/// `sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode`.
pub fn parse_proc_net_tcp(table: &str, port: u16, ipv6: bool) -> Vec<TcpSocket> {
    let wanted = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_ascii_whitespace();
            let local = fields.nth(1)?;
            if !local.ends_with(&wanted) {
                return None;
            }
            let state = fields.nth(1)?;
            let uid = fields.nth(3)?.parse().ok()?;
            let inode = fields.nth(1)?.parse().ok()?;
            let address = decode_address(&local[..local.len() - wanted.len()], ipv6)?;
            Some(TcpSocket {
                ipv6,
                local_address: address,
                state: match state {
                    "0A" => TcpState::Listen,
                    "01" => TcpState::Established,
                    _ => TcpState::Other,
                },
                uid,
                handle: inode,
            })
        })
        .collect()
}

/// The kernel prints addresses as 32-bit words in host byte order.
fn decode_address(hex: &str, ipv6: bool) -> Option<String> {
    let word = |i: usize| -> Option<[u8; 4]> {
        Some(
            u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16)
                .ok()?
                .to_ne_bytes(),
        )
    };
    if ipv6 {
        let mut bytes = [0u8; 16];
        for i in 0..4 {
            bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
        }
        Some(Ipv6Addr::from(bytes).to_string())
    } else {
        Some(Ipv4Addr::from(word(0)?).to_string())
    }
}

/// Scan `/proc/<pid>/fd` for `socket:[inode]`: the caller's own user's
/// processes first (where the answer usually is, and all that a non-root
/// caller can read), stopping at the first match.
fn find_inode_owner(inode: u64) -> Option<Pid> {
    let wanted = format!("socket:[{inode}]");
    let euid = nix::unistd::geteuid().as_raw();
    let mut others = Vec::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<Pid>().ok())
        else {
            continue;
        };
        match entry.metadata() {
            Ok(meta) if meta.uid() == euid && holds(pid, &wanted) => {
                return Some(pid);
            }
            Ok(_) if euid == 0 => others.push(pid),
            _ => {}
        }
    }
    others.into_iter().find(|&pid| holds(pid, &wanted))
}

fn holds(pid: Pid, wanted: &str) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == wanted))
}

impl Host for PluginState {
    fn sockets(&mut self, port: u16) -> wasmtime::Result<Result<Vec<TcpSocket>, Error>> {
        Ok(self.ports.sockets(port))
    }

    fn owner(&mut self, handle: u64) -> wasmtime::Result<Result<Option<Pid>, Error>> {
        Ok(self.ports.owner(handle))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1435 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1435 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000  1000        0 4243 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1436 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 99 1 0000000000000000 100 0 0 10 0
   3: 0100007F:9C40 0100007F:1435 06 00000000:00000000 03:00000D2A 00000000     0        0 0 3 0000000000000000
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1435 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 777 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:1435 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 778 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn parses_ipv4_rows_for_one_port() {
        let rows = parse_proc_net_tcp(TCP, 0x1435, false);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].local_address, "127.0.0.1");
        assert_eq!(rows[0].state, TcpState::Listen);
        assert_eq!(rows[0].uid, 1000);
        assert_eq!(rows[0].handle, 4242);
        assert_eq!(rows[1].state, TcpState::Established);
        // Port 0x1435 as a remote port (row 3) does not count.
        assert!(rows.iter().all(|r| r.handle != 0));
    }

    #[test]
    fn parses_ipv6_rows() {
        let rows = parse_proc_net_tcp(TCP6, 5173, true);
        assert_eq!(rows[0].local_address, "::");
        assert_eq!(rows[1].local_address, "::1");
        assert!(rows.iter().all(|r| r.ipv6 && r.state == TcpState::Listen));
    }
}
