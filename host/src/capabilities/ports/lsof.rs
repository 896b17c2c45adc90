//! Ports from the `lsof` command (the Unix systems' shared path): the PIDs
//! of the processes with a TCP socket on the port, in the state asked for.
//! `lsof` lists only the processes this user may read (all of them for
//! root): another user's listener is found by `super::unseen_listener`.
//! An `lsof` that fails (not its "nothing found", exit 1 with no output)
//! is an error, never a free port.

use std::process::Command;

use super::Owned;
use crate::bindings::bengal::pid_manager::ports::{TcpSocket, TcpState};
use crate::bindings::bengal::pid_manager::types::{Error, Pid};

/// `lsof -nP -iTCP:<port> -sTCP:LISTEN -t` (or `^LISTEN`: every other
/// state).
pub fn sockets(port: u16, listening: bool) -> Result<Vec<Owned>, Error> {
    let state = if listening {
        "-sTCP:LISTEN"
    } else {
        "-sTCP:^LISTEN"
    };
    let output = Command::new("lsof")
        .args(["-nP", &format!("-iTCP:{port}"), state, "-t"])
        .output()
        .map_err(|e| Error::Unsupported(format!("no socket table here and no lsof: {e}")))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    // Exit 1 with nothing on stdout is "no such socket"; anything else
    // unsuccessful is lsof failing.
    let nothing_found = output.status.code() == Some(1) && stdout.trim().is_empty();
    if !output.status.success() && !nothing_found {
        return Err(Error::Io(format!(
            "lsof failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let uid = crate::capabilities::process_table::own_uid();
    Ok(stdout
        .lines()
        .filter_map(|l| l.trim().parse::<Pid>().ok())
        .map(|pid| Owned {
            pid,
            socket: TcpSocket {
                ipv6: false,
                local_address: "*".into(),
                state: if listening {
                    TcpState::Listen
                } else {
                    TcpState::Other
                },
                uid,
                handle: 0,
            },
        })
        .collect())
}
