//! The rules. Each module sees only the [`crate::host::Host`] trait.
//!
//! - [`pidfile`]: where the file lives, what it holds, what is garbage;
//! - [`identity`]: the Bengal argv rule and the PID-reuse rule;
//! - [`lock`]: the sibling lock and the claimant it names;
//! - [`stale`]: whether a file still belongs to a live server (judging only);
//! - [`write`]: every change to the file (write, remove, stale removal);
//! - [`claim`]: the claim for a server's life (acquire, hand over, release);
//! - [`tree`]: which processes form a server's tree (one snapshot);
//! - [`kill`]: which PIDs are never signalled, and TERM/wait/KILL for a tree;
//! - [`port`]: listener first, then any holder, and the server above it;
//! - [`preflight`]: the dev-server start check.

pub mod claim;
pub mod identity;
pub mod kill;
pub mod lock;
pub mod pidfile;
pub mod port;
pub mod preflight;
pub mod stale;
pub mod tree;
pub mod write;
