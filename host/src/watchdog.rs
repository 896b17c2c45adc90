//! The last line against a hang, for short-lived processes (the CLI): a
//! plugin call whose host side blocks in a syscall that neither the epoch
//! nor a clamp can interrupt ends the process with exit status 2 and one
//! line on stderr once its budget (plus a grace) has passed. A timer on
//! pidman's runtime (`runtime.rs`), whose thread no blocked call holds.

use std::time::Duration;

use tokio::task::AbortHandle;

/// Disarms the watchdog when dropped.
pub struct Armed(AbortHandle);

/// End the process if the caller is still inside this call after `limit`.
pub fn arm(limit: Duration) -> Armed {
    let timer = crate::runtime::get().spawn(async move {
        tokio::time::sleep(limit).await;
        eprintln!(
            "pidman: a plugin call blocked past its time budget (a FIFO or a hung filesystem?); stopped"
        );
        std::process::exit(2);
    });
    Armed(timer.abort_handle())
}

impl Drop for Armed {
    fn drop(&mut self) {
        self.0.abort();
    }
}
