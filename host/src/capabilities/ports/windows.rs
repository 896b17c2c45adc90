//! Ports on Windows: `GetExtendedTcpTable` with owning PIDs
//! (`TCP_TABLE_OWNER_PID_ALL`), for IPv4 and IPv6: the owner comes with
//! each row. Sockets have no owner uid here: the row's is the caller's.

use std::net::{Ipv4Addr, Ipv6Addr};

use windows_sys::Win32::Foundation::{ERROR_INSUFFICIENT_BUFFER, NO_ERROR};
use windows_sys::Win32::NetworkManagement::IpHelper::{
    GetExtendedTcpTable, MIB_TCP_STATE_ESTAB, MIB_TCP_STATE_LISTEN, MIB_TCP_STATE_TIME_WAIT,
    MIB_TCP6ROW_OWNER_PID, MIB_TCPROW_OWNER_PID, TCP_TABLE_OWNER_PID_ALL,
};
use windows_sys::Win32::Networking::WinSock::{AF_INET, AF_INET6};

use super::Owned;
use crate::bindings::bengal::pid_manager::ports::{TcpSocket, TcpState};
use crate::bindings::bengal::pid_manager::types::Error;

/// The TCP sockets on local `port`, with their owners. A connection in
/// TIME_WAIT is left out: it belongs to no process any more (its row says
/// PID 0) and does not keep a server from listening on the port. A row's
/// PID 0 otherwise (Wine lists every socket so) is an owner unknown.
pub fn sockets(port: u16, listening: bool) -> Result<Vec<Owned>, Error> {
    let uid = crate::capabilities::process_table::own_uid();
    let mut found = Vec::new();
    for row in rows::<MIB_TCPROW_OWNER_PID>(&table(u32::from(AF_INET))?) {
        let address = Ipv4Addr::from(row.dwLocalAddr.to_ne_bytes()).to_string();
        let row = (row.dwLocalPort, row.dwState, row.dwOwningPid);
        found.extend(owned(row, false, address, port, listening, uid));
    }
    for row in rows::<MIB_TCP6ROW_OWNER_PID>(&table(u32::from(AF_INET6))?) {
        let address = Ipv6Addr::from(row.ucLocalAddr).to_string();
        let row = (row.dwLocalPort, row.dwState, row.dwOwningPid);
        found.extend(owned(row, true, address, port, listening, uid));
    }
    Ok(found)
}

/// One table row `(port in network order, state, owning PID)` as a socket
/// on `port` that is (or, with `listening` false, is not) a listener; none
/// for another port, the other kind, or TIME_WAIT.
fn owned(
    (row_port, state, pid): (u32, u32, u32),
    ipv6: bool,
    local_address: String,
    port: u16,
    listening: bool,
    uid: u32,
) -> Option<Owned> {
    let state = match state as i32 {
        MIB_TCP_STATE_TIME_WAIT => return None,
        MIB_TCP_STATE_LISTEN => TcpState::Listen,
        MIB_TCP_STATE_ESTAB => TcpState::Established,
        _ => TcpState::Other,
    };
    // The port is in network byte order in the low 16 bits.
    if u16::from_be(row_port as u16) != port || (state == TcpState::Listen) != listening {
        return None;
    }
    let socket = TcpSocket {
        ipv6,
        local_address,
        state,
        uid,
        handle: 0,
    };
    Some(Owned { socket, pid })
}

/// The whole owner-PID table of `family`, as the bytes of a
/// `MIB_TCP(6)TABLE_OWNER_PID` (8-aligned).
fn table(family: u32) -> Result<Vec<u64>, Error> {
    let mut size = 0u32;
    let mut buf: Vec<u64> = Vec::new();
    loop {
        // SAFETY: the buffer is valid for `size` bytes (none at first).
        let rc = unsafe {
            GetExtendedTcpTable(
                buf.as_mut_ptr().cast(),
                &mut size,
                0,
                family,
                TCP_TABLE_OWNER_PID_ALL,
                0,
            )
        };
        match rc {
            NO_ERROR => return Ok(buf),
            // The table grew between the two calls: ask again.
            ERROR_INSUFFICIENT_BUFFER => buf = vec![0u64; (size as usize).div_ceil(8) + 64],
            code => {
                let e = std::io::Error::from_raw_os_error(code as i32);
                return Err(crate::capabilities::io_error("read the TCP table", &e));
            }
        }
        size = (buf.len() * 8) as u32;
    }
}

/// The rows after the table's `dwNumEntries`.
fn rows<Row: Copy>(table: &[u64]) -> Vec<Row> {
    let Some(&first) = table.first() else {
        return Vec::new();
    };
    let count = (first & 0xffff_ffff) as usize;
    let bytes = table.len() * 8;
    // Rows start after the count, at the row type's alignment (4).
    let start = 4usize.next_multiple_of(std::mem::align_of::<Row>());
    let fits = (bytes - start) / std::mem::size_of::<Row>();
    let base = table.as_ptr().cast::<u8>();
    (0..count.min(fits))
        // SAFETY: inside the buffer; unaligned reads of plain-data rows.
        .map(|i| unsafe {
            base.add(start + i * std::mem::size_of::<Row>())
                .cast::<Row>()
                .read_unaligned()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row for `port` in `state`, owned by `pid`, as the table has it.
    fn row(port: u16, state: i32, pid: u32) -> (u32, u32, u32) {
        (u32::from(port.to_be()), state as u32, pid)
    }

    #[test]
    fn time_wait_rows_belong_to_no_one_and_are_left_out() {
        let rows = [
            row(5173, MIB_TCP_STATE_TIME_WAIT, 0),
            row(5173, MIB_TCP_STATE_LISTEN, 4242),
            row(5173, MIB_TCP_STATE_ESTAB, 4343),
            row(5174, MIB_TCP_STATE_LISTEN, 4444),
        ];
        let take = |listening| -> Vec<(TcpState, u32)> {
            rows.iter()
                .filter_map(|&r| owned(r, false, "127.0.0.1".into(), 5173, listening, 1000))
                .map(|o| (o.socket.state, o.pid))
                .collect()
        };
        assert_eq!(take(true), [(TcpState::Listen, 4242)]);
        assert_eq!(take(false), [(TcpState::Established, 4343)]);
    }

    #[test]
    fn a_listener_with_pid_0_is_kept_for_its_owner_to_read_as_unknown() {
        let found = owned(
            row(5173, MIB_TCP_STATE_LISTEN, 0),
            true,
            "::1".into(),
            5173,
            true,
            7,
        )
        .expect("a listener");
        assert_eq!(
            (found.pid, found.socket.uid, found.socket.ipv6),
            (0, 7, true)
        );
    }
}
