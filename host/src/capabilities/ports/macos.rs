//! Ports on macOS from libproc, as `lsof` finds them but without starting
//! it: every process this user may read (`proc_listallpids`), its
//! descriptors (`PROC_PIDLISTFDS`), and for each socket its
//! `struct socket_fdinfo` (`PROC_PIDFDSOCKETINFO`), which names the local
//! port, the TCP state and the socket's owner uid. The owner PID is the
//! process the descriptor was found in.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::Owned;
use crate::bindings::bengal::pid_manager::ports::{TcpSocket, TcpState};
use crate::bindings::bengal::pid_manager::types::{Error, Pid};

/// `proc_pidfdinfo` flavour: `struct socket_fdinfo` (`sys/proc_info.h`).
const PROC_PIDFDSOCKETINFO: libc::c_int = 3;
/// `sizeof(struct socket_fdinfo)`: `proc_fileinfo` (24) + `socket_info` (768).
const SOCKET_FDINFO_SIZE: usize = 792;
/// Offsets into `struct socket_fdinfo` (`socket_info` starts at 24).
const VST_UID: usize = 24 + 16;
const SOI_FAMILY: usize = 24 + 160;
const SOI_KIND: usize = 24 + 232;
/// `soi_proto.pri_tcp`: an `in_sockinfo` (80 bytes), then `tcpsi_state`.
const PRI_TCP: usize = 24 + 240;
const INSI_LPORT: usize = PRI_TCP + 4;
const INSI_LADDR: usize = PRI_TCP + 48;
const TCPSI_STATE: usize = PRI_TCP + 80;
/// `soi_kind` for a TCP socket, and the TCP states (`netinet/tcp_fsm.h`).
const SOCKINFO_TCP: i32 = 2;
const TCPS_LISTEN: i32 = 1;
const TCPS_ESTABLISHED: i32 = 4;
const AF_INET6: i32 = 30;

fn int(buf: &[u8], at: usize) -> i32 {
    i32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

/// The TCP sockets on local `port`, with their owners.
pub fn sockets(port: u16, listening: bool) -> Result<Vec<Owned>, Error> {
    let mut found = Vec::new();
    for pid in all_pids()? {
        for fd in socket_fds(pid) {
            if let Some(socket) = socket_on(pid, fd, port)
                && (socket.state == TcpState::Listen) == listening
            {
                found.push(Owned { socket, pid });
            }
        }
    }
    Ok(found)
}

fn all_pids() -> Result<Vec<Pid>, Error> {
    let mut pids = vec![0 as libc::pid_t; 4096];
    loop {
        let bytes = (pids.len() * std::mem::size_of::<libc::pid_t>()) as libc::c_int;
        // SAFETY: the buffer is valid for `bytes`.
        let n = unsafe { libc::proc_listallpids(pids.as_mut_ptr().cast(), bytes) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return Err(crate::capabilities::io_error("list processes", &e));
        }
        let n = n as usize;
        if n < pids.len() {
            pids.truncate(n);
            return Ok(pids
                .into_iter()
                .filter(|&p| p > 0)
                .map(|p| p as Pid)
                .collect());
        }
        pids.resize(pids.len() * 2, 0);
    }
}

/// The socket descriptors of `pid` (none if it cannot be read).
fn socket_fds(pid: Pid) -> Vec<i32> {
    let size = std::mem::size_of::<libc::proc_fdinfo>();
    let mut fds: Vec<libc::proc_fdinfo> = Vec::with_capacity(256);
    loop {
        let bytes = (fds.capacity() * size) as libc::c_int;
        // SAFETY: the buffer has room for `capacity` entries.
        let n = unsafe {
            libc::proc_pidinfo(
                pid as libc::c_int,
                libc::PROC_PIDLISTFDS,
                0,
                fds.as_mut_ptr().cast(),
                bytes,
            )
        };
        if n <= 0 {
            return Vec::new();
        }
        let count = n as usize / size;
        if count < fds.capacity() {
            // SAFETY: the kernel wrote `count` entries.
            unsafe { fds.set_len(count) };
            return fds
                .iter()
                .filter(|f| f.proc_fdtype == libc::PROX_FDTYPE_SOCKET as u32)
                .map(|f| f.proc_fd)
                .collect();
        }
        fds.reserve(fds.capacity() * 2); // len is 0: room for twice as many
    }
}

/// Descriptor `fd` of `pid`, if it is a TCP socket on local `port`.
fn socket_on(pid: Pid, fd: i32, port: u16) -> Option<TcpSocket> {
    let mut buf = [0u8; SOCKET_FDINFO_SIZE];
    // SAFETY: the buffer is valid for its length.
    let n = unsafe {
        libc::proc_pidfdinfo(
            pid as libc::c_int,
            fd,
            PROC_PIDFDSOCKETINFO,
            buf.as_mut_ptr().cast(),
            SOCKET_FDINFO_SIZE as libc::c_int,
        )
    };
    if n as usize != SOCKET_FDINFO_SIZE || int(&buf, SOI_KIND) != SOCKINFO_TCP {
        return None;
    }
    // The port is in network byte order in the low 16 bits.
    if u16::from_be_bytes([buf[INSI_LPORT], buf[INSI_LPORT + 1]]) != port {
        return None;
    }
    let ipv6 = int(&buf, SOI_FAMILY) == AF_INET6;
    let addr = &buf[INSI_LADDR..INSI_LADDR + 16];
    let local_address = if ipv6 {
        Ipv6Addr::from(<[u8; 16]>::try_from(addr).ok()?).to_string()
    } else {
        // An `in4in6_addr`: 12 bytes of padding, then the IPv4 address.
        Ipv4Addr::new(addr[12], addr[13], addr[14], addr[15]).to_string()
    };
    Some(TcpSocket {
        ipv6,
        local_address,
        state: match int(&buf, TCPSI_STATE) {
            TCPS_LISTEN => TcpState::Listen,
            TCPS_ESTABLISHED => TcpState::Established,
            _ => TcpState::Other,
        },
        uid: int(&buf, VST_UID) as u32,
        handle: 0,
    })
}
