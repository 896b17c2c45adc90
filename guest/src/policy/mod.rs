//! The rules. Each module sees only the [`crate::host::Host`] trait.

pub mod identity;
pub mod kill;
pub mod pidfile;
pub mod port;
pub mod preflight;
pub mod stale;
