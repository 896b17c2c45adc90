//! The per-store state: the WASI context with its one preopen, the resource
//! table, the store limits, and each capability's host-side state.

use std::path::Path;

use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

use crate::backend::Backend;
use crate::capabilities::log::LogSink;
use crate::gate::{Budget, Grant};

/// Everything a plugin instance's host functions can reach.
pub struct PluginState<B> {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: StoreLimits,
    pub(crate) grant: Grant,
    /// The wall-clock budget of the export call under way.
    pub(crate) budget: Budget,
    pub(crate) backend: B,
    pub(crate) log: LogSink,
}

impl<B: Backend> PluginState<B> {
    /// State for a plugin that may touch `dir` (and nothing else on the
    /// filesystem). `dir` must exist and be canonical.
    pub(crate) fn new(
        dir: &Path,
        backend: B,
        limits: StoreLimits,
        log: LogSink,
    ) -> anyhow::Result<Self> {
        // The plugin sees the directory by the path it knows it by.
        let guest_path = crate::paths::to_guest(dir)?;
        // allow_blocking_current_thread first: each preopen copies the flag,
        // and without it every file operation hops to a thread pool.
        let wasi = WasiCtx::builder()
            .allow_blocking_current_thread(true)
            .preopened_dir(dir, &guest_path, FsPerms::ReadWrite)?
            .build();
        Ok(Self {
            wasi,
            table: ResourceTable::new(),
            limits,
            grant: Grant::new(guest_path),
            budget: Budget::NONE,
            backend,
            log,
        })
    }
}

impl<B: Send + 'static> WasiView for PluginState<B> {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
