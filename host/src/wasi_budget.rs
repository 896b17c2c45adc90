//! WASI's monotonic clock with the call's budget applied: a sleep the
//! plugin asks for through WASI (`subscribe-duration`, `subscribe-instant`)
//! ends no later than the budget does. Everything else is wasmtime-wasi's
//! own clock, to which each function forwards.

use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::clocks::{WasiClocksCtxView, WasiClocksView};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock::{self, Duration, Instant};

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

/// Replace the monotonic clock that `wasmtime_wasi::p2::add_to_linker_sync`
/// put in `linker` with the budgeted one.
pub fn shadow_clock<B: Backend>(linker: &mut Linker<PluginState<B>>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    monotonic_clock::add_to_linker::<_, Budgeted>(linker, |state: &mut PluginState<B>| {
        let budget = state.budget;
        BudgetedClock {
            inner: state.clocks(),
            budget,
        }
    })?;
    linker.allow_shadowing(false);
    Ok(())
}
