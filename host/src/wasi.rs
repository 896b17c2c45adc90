//! The WASI a plugin gets: the interfaces Rust's standard library imports
//! on `wasm32-wasip2` (cli, clocks, filesystem, io, insecure-seed random)
//! and nothing else: no sockets, no name lookup. A plugin that imports more
//! does not fit the world and is refused when it loads. (Linking only these
//! also spares a cold start about half of what linking all of WASI costs.)
//!
//! The monotonic clock has the call's budget applied: a sleep the plugin
//! asks for through WASI (`subscribe-duration`, `subscribe-instant`) ends no
//! later than the budget does. Everything else about it is wasmtime-wasi's
//! own clock, to which each function forwards.

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksCtxView, WasiClocksView};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock::{self, Duration, Instant};
use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random, sync};
use wasmtime_wasi::random::{WasiRandom, WasiRandomView};

use crate::backend::Backend;
use crate::gate::Budget;
use crate::state::PluginState;

/// The clock as the plugin sees it during one call.
pub struct BudgetedClock<'a> {
    inner: WasiClocksCtxView<'a>,
    budget: Budget,
}

impl BudgetedClock<'_> {
    fn clamp(&self, nanos: u64) -> u64 {
        let left = u64::try_from(self.budget.left().as_nanos()).unwrap_or(u64::MAX);
        nanos.min(left)
    }
}

impl monotonic_clock::Host for BudgetedClock<'_> {
    fn now(&mut self) -> wasmtime::Result<Instant> {
        self.inner.now()
    }

    fn resolution(&mut self) -> wasmtime::Result<Duration> {
        self.inner.resolution()
    }

    fn subscribe_instant(&mut self, when: Instant) -> wasmtime::Result<Resource<DynPollable>> {
        let now = self.inner.now()?;
        let nanos = self.clamp(when.saturating_sub(now));
        self.inner.subscribe_duration(nanos)
    }

    fn subscribe_duration(&mut self, nanos: Duration) -> wasmtime::Result<Resource<DynPollable>> {
        let nanos = self.clamp(nanos);
        self.inner.subscribe_duration(nanos)
    }
}

struct Budgeted;

impl HasData for Budgeted {
    type Data<'a> = BudgetedClock<'a>;
}

struct Io;

impl HasData for Io {
    type Data<'a> = &'a mut ResourceTable;
}

/// Add the plugin's WASI to `linker`, synchronous (see the module's doc).
pub fn add_to_linker<B: Backend>(linker: &mut Linker<PluginState<B>>) -> wasmtime::Result<()> {
    type T<B> = PluginState<B>;
    let l = linker;
    sync::io::error::add_to_linker::<T<B>, Io>(l, |t| t.ctx().table)?;
    sync::io::poll::add_to_linker::<T<B>, Io>(l, |t| t.ctx().table)?;
    sync::io::streams::add_to_linker::<T<B>, Io>(l, |t| t.ctx().table)?;
    sync::filesystem::types::add_to_linker::<T<B>, WasiFilesystem>(l, T::<B>::filesystem)?;
    filesystem::preopens::add_to_linker::<T<B>, WasiFilesystem>(l, T::<B>::filesystem)?;
    clocks::wall_clock::add_to_linker::<T<B>, WasiClocks>(l, T::<B>::clocks)?;
    monotonic_clock::add_to_linker::<T<B>, Budgeted>(l, |state: &mut T<B>| {
        let budget = state.budget;
        BudgetedClock {
            inner: state.clocks(),
            budget,
        }
    })?;
    random::insecure_seed::add_to_linker::<T<B>, WasiRandom>(l, T::<B>::random)?;
    cli::exit::add_to_linker::<T<B>, WasiCli>(l, T::<B>::cli)?;
    cli::environment::add_to_linker::<T<B>, WasiCli>(l, T::<B>::cli)?;
    cli::stdin::add_to_linker::<T<B>, WasiCli>(l, T::<B>::cli)?;
    cli::stdout::add_to_linker::<T<B>, WasiCli>(l, T::<B>::cli)?;
    cli::stderr::add_to_linker::<T<B>, WasiCli>(l, T::<B>::cli)?;
    cli::terminal_input::add_to_linker::<T<B>, WasiCli>(l, T::<B>::cli)?;
    cli::terminal_output::add_to_linker::<T<B>, WasiCli>(l, T::<B>::cli)?;
    cli::terminal_stdin::add_to_linker::<T<B>, WasiCli>(l, T::<B>::cli)?;
    cli::terminal_stdout::add_to_linker::<T<B>, WasiCli>(l, T::<B>::cli)?;
    cli::terminal_stderr::add_to_linker::<T<B>, WasiCli>(l, T::<B>::cli)?;
    Ok(())
}
