//! pidman's integration tests: the real `pidman` binary (and its embedded
//! plugin) against real processes and real sockets on loopback. Every test
//! reaps what it starts and signals only PIDs it started.

mod support;

mod check;
mod claims;
mod cli;
mod kill;
mod limits;
mod ports;
mod real;
mod simulated;
mod terminal;
mod tree;
mod trust;
