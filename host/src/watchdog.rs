//! The last line against a hang, for short-lived processes (the CLI): a
//! plugin call whose host side blocks in a syscall that neither the epoch
//! nor a clamp can interrupt ends the process with exit status 2 and one
//! line on stderr once its budget (plus a grace) has passed.

use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

struct Watch {
    deadline: Mutex<Option<Instant>>,
    changed: Condvar,
}

fn watch() -> &'static Watch {
    static WATCH: OnceLock<Watch> = OnceLock::new();
    WATCH.get_or_init(|| {
        std::thread::Builder::new()
            .name("pidman-watchdog".into())
            .spawn(run)
            .expect("start the watchdog thread");
        Watch {
            deadline: Mutex::new(None),
            changed: Condvar::new(),
        }
    })
}

fn run() {
    let watch = watch();
    let mut deadline = watch.deadline.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        deadline = match *deadline {
            None => watch
                .changed
                .wait(deadline)
                .unwrap_or_else(|e| e.into_inner()),
            Some(at) if Instant::now() >= at => {
                eprintln!(
                    "pidman: a plugin call blocked past its time budget (a FIFO or a hung filesystem?); stopped"
                );
                std::process::exit(2);
            }
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                match watch.changed.wait_timeout(deadline, left) {
                    Ok((guard, _)) => guard,
                    Err(e) => e.into_inner().0,
                }
            }
        };
    }
}

/// Disarms the watchdog when dropped.
pub struct Armed(());

/// End the process if the caller is still inside this call after `limit`.
pub fn arm(limit: Duration) -> Armed {
    let watch = watch();
    *watch.deadline.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now().checked_add(limit);
    watch.changed.notify_one();
    Armed(())
}

impl Drop for Armed {
    fn drop(&mut self) {
        let watch = watch();
        *watch.deadline.lock().unwrap_or_else(|e| e.into_inner()) = None;
        watch.changed.notify_one();
    }
}
