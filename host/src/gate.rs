//! The host's own rules, applied to every request of the plugin whatever it
//! asks and whatever the backend: the one directory it may touch
//! ([`Grant`]), the processes it may never signal ([`signal_refusal`]), and
//! the time a call may take ([`Budget`]). Pure checks, with their own
//! tests; [`crate::host_impl`] applies them before a backend acts, so no
//! backend repeats them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::bindings::bengal::pid_manager::types::{Error, Pid};

/// The directory the plugin may use, and nothing outside it. Paths are
/// compared as the plugin writes them ([`crate::paths::to_guest`]: `/`
/// between components, whatever the OS), one component at a time.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The granted directory, as the plugin sees it.
    dir: String,
}

impl Grant {
    /// Grant `dir`, as the plugin sees it (absolute and canonical).
    pub fn new(dir: impl Into<String>) -> Self {
        Self { dir: dir.into() }
    }

    /// The granted directory, as the plugin sees it.
    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// `path` (as this OS writes it) if it names the granted directory
    /// itself, for a look at its owner (never a lock, a read or a write);
    /// else as [`Self::check`].
    pub fn check_or_self(&self, path: &str) -> Result<PathBuf, Error> {
        if components(path).is_some() && components(path) == components(&self.dir) {
            return Ok(crate::paths::from_guest(path));
        }
        self.check(path)
    }

    /// `path` (as this OS writes it) if it names an entry of the granted
    /// directory (or below it): absolute, with plain components only (no
    /// `..`, `.` or empty step); else the `denied` error.
    pub fn check(&self, path: &str) -> Result<PathBuf, Error> {
        match (components(path), components(&self.dir)) {
            (Some(steps), Some(granted))
                if steps.len() > granted.len() && steps[..granted.len()] == granted[..] =>
            {
                Ok(crate::paths::from_guest(path))
            }
            _ => Err(Error::Denied(format!(
                "{path} is outside the directory granted to the plugin ({})",
                self.dir
            ))),
        }
    }
}

/// The components of an absolute plugin path (`/a/b`, or `//host/share/a`
/// for a Windows share): none for a relative path or one with a `.`, `..`
/// or empty step. A trailing `/` is allowed (a drive's root, `/C:/`).
fn components(path: &str) -> Option<Vec<&str>> {
    // The root is a component: `//host/share` is never `/host/share`.
    let (root, rest) = match path.strip_prefix("//") {
        Some(rest) => ("//", rest),
        None => ("/", path.strip_prefix('/')?),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let mut steps = vec![root];
    if rest.is_empty() {
        return Some(steps);
    }
    for step in rest.split('/') {
        if matches!(step, "" | "." | "..") {
            return None;
        }
        steps.push(step);
    }
    Some(steps)
}

/// Who is asking: the host process.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// Its PID.
    pub pid: Pid,
    /// Its parent's PID.
    pub parent: Pid,
    /// Its effective user id.
    pub uid: u32,
}

/// Why the host refuses to signal `pid` (owned by `owner`, when known),
/// whatever the plugin asks: PID 0 (a process group), PID 1, itself, its
/// parent, a number beyond any PID and, unless the host runs as root,
/// another user's process.
pub fn signal_refusal(caller: &Caller, pid: Pid, owner: Option<u32>) -> Option<String> {
    match pid {
        0 => Some("PID 0 is a process group, not a process".into()),
        1 => Some("PID 1 is the init process".into()),
        p if p == caller.pid => Some(format!("PID {p} is pidman itself")),
        p if p == caller.parent => Some(format!("PID {p} is pidman's parent (the caller)")),
        p if p > i32::MAX as u32 => Some(format!("{p} is not a PID")),
        p => match owner {
            Some(uid) if caller.uid != 0 && uid != caller.uid => Some(format!(
                "PID {p} belongs to uid {uid}, and pidman (uid {}) signals only its own user's processes",
                caller.uid
            )),
            _ => None,
        },
    }
}

/// The wall-clock budget of one export call: every blocking import is
/// clamped to what is left of it, and guest code is interrupted past it.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    deadline: Option<Instant>,
}

impl Budget {
    /// No call under way: nothing is clamped.
    pub const NONE: Budget = Budget { deadline: None };

    /// A budget of `length` from now.
    pub fn starting_now(length: Duration) -> Self {
        Self {
            deadline: Instant::now().checked_add(length),
        }
    }

    /// What is left of it (all the time in the world with no call under way).
    pub fn left(&self) -> Duration {
        self.deadline.map_or(Duration::MAX, |d| {
            d.saturating_duration_since(Instant::now())
        })
    }

    /// Whether it is spent.
    pub fn spent(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// A wait of `ms` milliseconds, clamped to what is left.
    pub fn clamp_ms(&self, ms: u64) -> u64 {
        ms.min(u64::try_from(self.left().as_millis()).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grant_admits_only_its_directory() {
        let grant = Grant::new("/srv/site");
        assert!(grant.check("/srv/site/.bengal.pid").is_ok());
        assert!(grant.check("/srv/site/run/x.pid").is_ok());
        for outside in [
            "/srv/site",
            "/srv/other/.bengal.pid",
            "/srv/site/../x",
            "relative",
            "/srv/sitex/a",
            "",
        ] {
            assert!(
                matches!(grant.check(outside), Err(Error::Denied(_))),
                "{outside}"
            );
        }
        // Its own owner may be looked at; nothing outside it, still.
        assert!(grant.check_or_self("/srv/site").is_ok());
        assert!(grant.check_or_self("/srv/site/").is_ok());
        assert!(grant.check_or_self("/srv/site/.bengal.pid").is_ok());
        for outside in ["/srv", "/srv/sitex", "/srv/site/..", "relative"] {
            assert!(grant.check_or_self(outside).is_err(), "{outside}");
        }
    }

    #[test]
    fn windows_paths_are_compared_as_the_plugin_writes_them() {
        let grant = Grant::new("/C:/Users/me/proj");
        assert!(grant.check("/C:/Users/me/proj/.bengal.pid").is_ok());
        for outside in [
            "/C:/Users/me/proj2/.bengal.pid",
            "/D:/Users/me/proj/.bengal.pid",
            "/C:/Users/me/proj//x",
            "/C:/Users/me/proj/./x",
            "C:/Users/me/proj/x",
        ] {
            assert!(grant.check(outside).is_err(), "{outside}");
        }
        let root = Grant::new("/D:/");
        assert!(root.check("/D:/.bengal.pid").is_ok());
        assert!(root.check_or_self("/D:/").is_ok());
        let share = Grant::new("//server/share/proj");
        assert!(share.check("//server/share/proj/.bengal.pid").is_ok());
        assert!(share.check("/server/share/proj/.bengal.pid").is_err());
    }

    const ME: Caller = Caller {
        pid: 4000,
        parent: 3999,
        uid: 1000,
    };

    #[test]
    fn the_floor_refuses_0_1_self_parent_and_non_pids() {
        for pid in [0, 1, 4000, 3999, i32::MAX as u32 + 1, u32::MAX] {
            assert!(signal_refusal(&ME, pid, Some(1000)).is_some(), "{pid}");
            assert!(signal_refusal(&ME, pid, None).is_some(), "{pid}");
        }
        assert_eq!(signal_refusal(&ME, 4242, Some(1000)), None);
        assert_eq!(
            signal_refusal(&ME, 4242, None),
            None,
            "unknown owner: the OS decides"
        );
    }

    #[test]
    fn only_root_signals_another_users_process() {
        let refusal = signal_refusal(&ME, 4242, Some(0)).expect("root's process");
        assert!(refusal.contains("uid 0"), "{refusal}");
        assert!(signal_refusal(&ME, 4242, Some(2000)).is_some());
        let root = Caller { uid: 0, ..ME };
        assert_eq!(signal_refusal(&root, 4242, Some(2000)), None);
        assert!(
            signal_refusal(&root, 1, Some(0)).is_some(),
            "not even root signals init"
        );
    }

    #[test]
    fn a_budget_clamps_waits_to_what_is_left() {
        assert_eq!(Budget::NONE.clamp_ms(u64::MAX), u64::MAX);
        assert!(!Budget::NONE.spent());
        let budget = Budget::starting_now(Duration::from_millis(200));
        assert!(budget.clamp_ms(u64::MAX) <= 200);
        assert_eq!(budget.clamp_ms(5), 5);
        let spent = Budget::starting_now(Duration::ZERO);
        assert!(spent.spent());
        assert_eq!(spent.clamp_ms(1_000), 0);
    }
}
