//! Ports on Linux: the kernel's sock_diag netlink interface (what `ss`
//! uses; asking for listeners only spares the kernel its walk of every
//! connection), falling back to `/proc/net/tcp{,6}`; then the socket
//! inode's holder from `/proc/<pid>/fd` (the caller's own user's processes
//! first, stopping at the first match): no subprocess.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::bindings::bengal::pid_manager::ports::{TcpSocket, TcpState};
use crate::bindings::bengal::pid_manager::types::{Error, Pid};

const PROC_TCP: [(&str, bool); 2] = [("/proc/net/tcp", false), ("/proc/net/tcp6", true)];

/// The TCP sockets on local `port` (listeners, or all the others); none
/// (`Ok(None)`) where this kernel has neither sock_diag nor `/proc/net`.
pub fn sockets(port: u16, listening: bool) -> Result<Option<Vec<TcpSocket>>, Error> {
    if let Ok(sockets) = sock_diag::sockets(port, listening) {
        return Ok(Some(sockets));
    }
    if !std::path::Path::new(PROC_TCP[0].0).exists() {
        return Ok(None);
    }
    let mut sockets = Vec::new();
    for (path, ipv6) in PROC_TCP {
        match std::fs::read_to_string(path) {
            Ok(table) => sockets.extend(
                parse_proc_net_tcp(&table, port, ipv6)
                    .into_iter()
                    .filter(|s| (s.state == TcpState::Listen) == listening),
            ),
            // A kernel without IPv6 has no tcp6 table.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && ipv6 => {}
            Err(e) => return Err(crate::capabilities::io_error(path, &e)),
        }
    }
    Ok(Some(sockets))
}

/// The PID holding the socket with `inode` (whose user, if known, is
/// `uid`), if a readable process holds it.
pub fn owner(inode: u64, uid: Option<u32>) -> Option<Pid> {
    find_inode_owner(inode, uid)
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

/// Scan `/proc/<pid>/fd` for `socket:[inode]`, stopping at the first
/// match, newest first (a dev server usually started after most of what
/// runs beside it). A caller that is not root can read only its own
/// processes' descriptors (the others fail at once); root reads first the
/// processes of `uid`, the user the kernel records as the socket's, when
/// that is not root, then everyone else's (a server that changed its user
/// after it bound the port).
///
/// Reading a process's descriptor table costs the kernel tens of
/// microseconds, so past the newest few processes the scan runs on one
/// thread per core (what `ss -p` and `lsof` do on one).
fn find_inode_owner(inode: u64, uid: Option<u32>) -> Option<Pid> {
    let wanted = format!("socket:[{inode}]");
    let euid = nix::unistd::geteuid().as_raw();
    let first = uid.unwrap_or(euid);
    let mut pids: Vec<Pid> = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable_by(|a, b| b.cmp(a));
    // Processes with no descriptors at all: kernel threads, and processes
    // whose main thread has ended while other threads run on with the
    // table (the port's holder may be one: looked at last).
    let empty = Mutex::new(Vec::new());
    let scan = |pid: Pid| match holds(&format!("/proc/{pid}/fd"), &wanted) {
        Fds::Held => true,
        Fds::Empty => {
            empty.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
            false
        }
        Fds::NotHeld => false,
    };
    // Only root reads other users' descriptors; only when the socket is
    // another user's is it worth a `stat` per process to read theirs first.
    let found = if euid != 0 || first == 0 {
        find_in_parallel(&pids, scan)
    } else {
        let later = Mutex::new(Vec::new());
        let scan_first = |pid: Pid| match std::fs::metadata(format!("/proc/{pid}")) {
            Ok(meta) if meta.uid() == first => scan(pid),
            Ok(_) => {
                later.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
                false
            }
            _ => false,
        };
        find_in_parallel(&pids, scan_first).or_else(|| {
            let mut later = later.into_inner().unwrap_or_else(|e| e.into_inner());
            later.sort_unstable_by(|a, b| b.cmp(a));
            find_in_parallel(&later, scan)
        })
    };
    found.or_else(|| {
        let mut empty = empty.into_inner().unwrap_or_else(|e| e.into_inner());
        empty.sort_unstable_by(|a, b| b.cmp(a));
        empty
            .into_iter()
            .find(|&pid| held_by_a_thread(pid, &wanted))
    })
}

/// Whether a thread of `pid` other than its main thread has a descriptor
/// whose link reads `wanted` (the threads of a process share one table,
/// which outlives the main thread).
fn held_by_a_thread(pid: Pid, wanted: &str) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks
        .flatten()
        .filter_map(|task| task.file_name().to_str()?.parse::<Pid>().ok())
        .filter(|&tid| tid != pid)
        .any(|tid| holds(&format!("/proc/{pid}/task/{tid}/fd"), wanted) == Fds::Held)
}

/// The first of `pids` (in order, on this thread, for the first few; then
/// in about that order, on a thread per core) for which `hit` is true.
fn find_in_parallel(pids: &[Pid], hit: impl Fn(Pid) -> bool + Sync) -> Option<Pid> {
    const ALONE: usize = 16;
    let (head, rest) = pids.split_at(pids.len().min(ALONE));
    if let Some(&pid) = head.iter().find(|&&pid| hit(pid)) {
        return Some(pid);
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let next = AtomicUsize::new(0);
    let found = Mutex::new(None::<(usize, Pid)>);
    let work = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            // Stop past the end, or past a hit: every index before a hit is
            // still looked at, so the earliest hit wins.
            let done = |found: &Option<(usize, Pid)>| found.is_some_and(|(at, _)| at < i);
            if i >= rest.len() || done(&found.lock().unwrap_or_else(|e| e.into_inner())) {
                return;
            }
            if hit(rest[i]) {
                let mut found = found.lock().unwrap_or_else(|e| e.into_inner());
                if found.is_none_or(|(at, _)| i < at) {
                    *found = Some((i, rest[i]));
                }
            }
        }
    };
    std::thread::scope(|scope| {
        for _ in 1..threads {
            scope.spawn(work);
        }
        work();
    });
    let found = found.into_inner().unwrap_or_else(|e| e.into_inner());
    found.map(|(_, pid)| pid)
}

/// What a descriptor table holds of the one socket looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fds {
    Held,
    NotHeld,
    /// No descriptors at all.
    Empty,
}

/// Whether the `fd` directory `path` has a descriptor whose link reads
/// `wanted`: the directory read with one `getdents64` (procfs fills the
/// buffer until it runs out of descriptors), each link read relative to it
/// (`readlinkat`, no path walk from `/`).
fn holds(path: &str, wanted: &str) -> Fds {
    let Ok(dir) = std::fs::File::open(path) else {
        return Fds::NotHeld; // gone, or another user's
    };
    let mut seen = false;
    let mut entries = [0u8; 16 * 1024];
    let mut link = [0u8; 64];
    loop {
        // SAFETY: the buffer is valid for its length; the result is checked.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir.as_raw_fd(),
                entries.as_mut_ptr(),
                entries.len(),
            )
        };
        if n <= 0 {
            return if seen { Fds::NotHeld } else { Fds::Empty };
        }
        let n = n as usize;
        let mut at = 0;
        while at + 19 < n {
            // struct linux_dirent64: ino (8), off (8), reclen (2), type (1), name.
            let reclen = u16::from_ne_bytes([entries[at + 16], entries[at + 17]]) as usize;
            let name = &entries[at + 19..at + reclen];
            if name[0] != b'.' {
                seen = true;
                // SAFETY: `name` is NUL-terminated inside the record; `link`
                // is valid for its length.
                let len = unsafe {
                    libc::readlinkat(
                        dir.as_raw_fd(),
                        name.as_ptr().cast(),
                        link.as_mut_ptr().cast(),
                        link.len(),
                    )
                };
                if len > 0 && &link[..len as usize] == wanted.as_bytes() {
                    return Fds::Held;
                }
            }
            at += reclen;
        }
        // Room left for another record: procfs had no more to give.
        if n + 300 < entries.len() {
            return if seen { Fds::NotHeld } else { Fds::Empty };
        }
    }
}

/// `NETLINK_SOCK_DIAG` dumps of TCP sockets (see `sock_diag(7)`).
mod sock_diag {
    use std::io;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    use super::{TcpSocket, TcpState};

    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    const TCP_LISTEN: u8 = 10;
    /// `struct inet_diag_req_v2` after the 16-byte `nlmsghdr`.
    const REQUEST_LEN: usize = 16 + 56;
    /// `struct inet_diag_msg`.
    const MSG_LEN: usize = 72;

    /// TCP sockets on local `port`, IPv4 and IPv6: listeners, or the rest.
    pub fn sockets(port: u16, listening: bool) -> io::Result<Vec<TcpSocket>> {
        // TCP states 1..=11; 12 (TCP_NEW_SYN_RECV) holds no process.
        let states: u32 = if listening {
            1 << TCP_LISTEN
        } else {
            0xffe & !(1 << TCP_LISTEN)
        };
        let mut found = Vec::new();
        for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
            dump(family, states, port, &mut found)?;
        }
        Ok(found)
    }

    fn dump(family: u8, states: u32, port: u16, found: &mut Vec<TcpSocket>) -> io::Result<()> {
        let fd = request_dump(family, states)?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: `buf` is valid for writes of its length.
            let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if read_messages(&buf[..n as usize], port, found)? {
                return Ok(());
            }
        }
    }

    /// A sock_diag socket on which the kernel dumps the TCP sockets of
    /// `family` in `states`.
    fn request_dump(family: u8, states: u32) -> io::Result<OwnedFd> {
        // SAFETY: plain socket(2); a non-negative result is ours to own.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut request = [0u8; REQUEST_LEN];
        request[0..4].copy_from_slice(&(REQUEST_LEN as u32).to_ne_bytes());
        request[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
        request[6..8].copy_from_slice(&flags.to_ne_bytes());
        request[8..12].copy_from_slice(&1u32.to_ne_bytes());
        request[16] = family;
        request[17] = libc::IPPROTO_TCP as u8;
        request[20..24].copy_from_slice(&states.to_ne_bytes());
        // SAFETY: an all-zero sockaddr_nl is valid; we set its family.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: the buffer and address outlive the call; lengths match.
        let sent = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                request.as_ptr().cast(),
                request.len(),
                0,
                (&kernel as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(fd)
    }

    /// The netlink messages in one datagram: sockets on `port` into
    /// `found`; true once the dump is done.
    fn read_messages(buf: &[u8], port: u16, found: &mut Vec<TcpSocket>) -> io::Result<bool> {
        let mut at = 0;
        while at + 16 <= buf.len() {
            let len = u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
            let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().unwrap());
            if len < 16 || at + len > buf.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "short netlink message",
                ));
            }
            match kind {
                NLMSG_DONE => return Ok(true),
                NLMSG_ERROR => {
                    let code = i32::from_ne_bytes(buf[at + 16..at + 20].try_into().unwrap());
                    return Err(io::Error::from_raw_os_error(-code));
                }
                _ if len >= 16 + MSG_LEN => {
                    if let Some(socket) = parse(&buf[at + 16..at + 16 + MSG_LEN], port) {
                        found.push(socket);
                    }
                }
                _ => {}
            }
            at += (len + 3) & !3;
        }
        Ok(false)
    }

    /// One `inet_diag_msg`, if its local port is `port`.
    fn parse(msg: &[u8], port: u16) -> Option<TcpSocket> {
        let sport = u16::from_be_bytes([msg[4], msg[5]]);
        if sport != port {
            return None;
        }
        let ipv6 = msg[0] == libc::AF_INET6 as u8;
        let src = &msg[8..24];
        let local_address = if ipv6 {
            Ipv6Addr::from(<[u8; 16]>::try_from(src).ok()?).to_string()
        } else {
            Ipv4Addr::new(src[0], src[1], src[2], src[3]).to_string()
        };
        let state = match msg[1] {
            TCP_LISTEN => TcpState::Listen,
            1 => TcpState::Established,
            _ => TcpState::Other,
        };
        let uid = u32::from_ne_bytes(msg[64..68].try_into().ok()?);
        let inode = u32::from_ne_bytes(msg[68..72].try_into().ok()?);
        Some(TcpSocket {
            ipv6,
            local_address,
            state,
            uid,
            handle: u64::from(inode),
        })
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
    fn sock_diag_and_proc_find_the_same_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let diag = sock_diag::sockets(port, true).expect("sock_diag works here");
        assert_eq!(diag.len(), 1);
        assert_eq!(diag[0].local_address, "127.0.0.1");
        assert_eq!(diag[0].state, TcpState::Listen);
        assert!(sock_diag::sockets(port, false).unwrap().is_empty());
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
        let proc_rows = parse_proc_net_tcp(&table, port, false);
        assert_eq!(proc_rows.len(), 1);
        assert_eq!(proc_rows[0].handle, diag[0].handle, "the same inode");
        assert_eq!(
            find_inode_owner(diag[0].handle, Some(diag[0].uid)),
            Some(std::process::id())
        );
        assert_eq!(
            find_inode_owner(diag[0].handle, None),
            Some(std::process::id())
        );
    }

    #[test]
    fn sock_diag_sees_connections_when_asked_for_the_rest() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let rest = sock_diag::sockets(port, false).unwrap();
        assert_eq!(rest.len(), 1, "the accepted connection: {rest:?}");
        assert_eq!(rest[0].state, TcpState::Established);
    }

    #[test]
    fn the_parallel_scan_answers_the_first_hit_in_order() {
        let pids: Vec<Pid> = (1..=2000).rev().collect();
        // Past the first few (scanned alone), many hits on several threads:
        // still the earliest in the list.
        assert_eq!(find_in_parallel(&pids, |p| p % 97 == 0), Some(1940));
        assert_eq!(find_in_parallel(&pids, |p| p == 1999), Some(1999));
        assert_eq!(find_in_parallel(&pids, |p| p == 3), Some(3));
        assert_eq!(find_in_parallel(&pids, |_| false), None);
        assert_eq!(find_in_parallel(&[], |_| true), None);
    }

    #[test]
    fn parses_ipv6_rows() {
        let rows = parse_proc_net_tcp(TCP6, 5173, true);
        assert_eq!(rows[0].local_address, "::");
        assert_eq!(rows[1].local_address, "::1");
        assert!(rows.iter().all(|r| r.ipv6 && r.state == TcpState::Listen));
    }
}
