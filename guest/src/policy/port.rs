//! Who holds a TCP port: listeners first, any other socket only when
//! nothing listens.

use crate::host::Host;
use crate::wit::bengal::pid_manager::ports::TcpSocket;
use crate::wit::bengal::pid_manager::types::Error;
use crate::wit::exports::bengal::pid_manager::manager::PortOwner;

/// `get-process-on-port`.
pub fn process_on_port(host: &impl Host, port: u16) -> Result<PortOwner, Error> {
    if port == 0 {
        return Err(Error::Invalid(
            "port 0 is not a port one can listen on".into(),
        ));
    }
    let listeners = host.sockets(port, true)?;
    if !listeners.is_empty() {
        return owner_of(host, &listeners, PortOwner::Listener);
    }
    // A socket no process holds (handle 0: time-wait, a closed
    // connection's remains) does not keep a server from binding.
    let held: Vec<TcpSocket> = host
        .sockets(port, false)?
        .into_iter()
        .filter(|s| s.handle != 0)
        .collect();
    if !held.is_empty() {
        return owner_of(host, &held, PortOwner::Holder);
    }
    Ok(PortOwner::Free)
}

/// The first socket whose owner is visible, else "in use, owner unknown".
fn owner_of(
    host: &impl Host,
    sockets: &[TcpSocket],
    found: fn(u32) -> PortOwner,
) -> Result<PortOwner, Error> {
    for socket in sockets {
        if let Some(pid) = host.socket_owner(socket.handle)? {
            return Ok(found(pid));
        }
    }
    Ok(PortOwner::Unknown(sockets[0].uid))
}
