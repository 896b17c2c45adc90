//! Loading the plugin: the engine, the linker, the precompiled-component
//! cache, and the per-call limits (fuel and memory) that keep a broken
//! plugin from hanging or crashing the host.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, Store, StoreLimitsBuilder};

use crate::backend::{Backend, Native};
use crate::capabilities::log::LogSink;
use crate::state::PluginState;

/// The host bindings of the WIT package.
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "plugin",
        imports: { default: trappable },
        with: {
            "bengal:pid-manager/files.lock": crate::backend::HeldLock,
        },
    });
}

/// The plugin built from `guest/` and embedded at build time.
pub const EMBEDDED_GUEST: &[u8] = include_bytes!(env!("PIDMAN_GUEST_WASM"));

/// [`component_hash`] of [`EMBEDDED_GUEST`], computed by build.rs.
const EMBEDDED_GUEST_HASH: &str = env!("PIDMAN_GUEST_HASH");

/// Fuel for one call: plenty for any real decision (a `check` burns about
/// a hundred thousand), and about a second of a runaway loop.
pub const FUEL_PER_CALL: u64 = 1_000_000_000;

/// The most linear memory a plugin instance may grow to.
pub const MEMORY_LIMIT: usize = 64 << 20;

/// A compiled plugin, ready to instantiate cheaply as often as needed, on
/// backend `B` (the real OS by default).
pub struct Plugin<B: Backend = Native> {
    engine: Engine,
    pre: bindings::PluginPre<PluginState<B>>,
}

impl<B: Backend> Plugin<B> {
    /// The plugin embedded in this binary.
    pub fn embedded() -> Result<Self> {
        let hash = u64::from_str_radix(EMBEDDED_GUEST_HASH, 16)?;
        Self::load(EMBEDDED_GUEST, hash)
    }

    /// Another build of the plugin, from a `.wasm` component file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read the plugin {}", path.display()))?;
        Self::from_bytes(&bytes)
            .with_context(|| format!("cannot load the plugin {}", path.display()))
    }

    /// A plugin from component bytes, through the precompiled cache.
    pub fn from_bytes(wasm: &[u8]) -> Result<Self> {
        Self::load(wasm, component_hash(wasm))
    }

    fn load(wasm: &[u8], wasm_hash: u64) -> Result<Self> {
        let mut config = Config::new();
        config.consume_fuel(true);
        // Errors stay one line, and traps stay cheap.
        config.wasm_backtrace_max_frames(None);
        let engine = Engine::new(&config).map_err(anyhow::Error::from)?;
        let component = load_component(&engine, wasm, wasm_hash)?;
        let mut linker = Linker::<PluginState<B>>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        bindings::Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .context("the plugin does not fit pidman's WIT world (bengal:pid-manager/plugin)")?;
        let pre = bindings::PluginPre::new(pre)?;
        Ok(Self { engine, pre })
    }

    /// A fresh instance on `backend` that may use the filesystem only inside
    /// `dir`.
    pub fn instantiate(&self, dir: &Path, backend: B, verbose: bool) -> Result<Session<B>> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(MEMORY_LIMIT)
            .instances(16)
            .trap_on_grow_failure(true)
            .build();
        let state = PluginState::new(
            dir,
            backend,
            limits,
            LogSink {
                verbose,
                messages: Vec::new(),
            },
        )?;
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        store.set_fuel(FUEL_PER_CALL)?;
        let instance = self.pre.instantiate(&mut store).map_err(explain_trap)?;
        Ok(Session {
            store,
            instance,
            poisoned: false,
        })
    }
}

/// One plugin instance and its store.
pub struct Session<B: Backend> {
    pub(crate) store: Store<PluginState<B>>,
    pub(crate) instance: bindings::Plugin,
    poisoned: bool,
}

impl<B: Backend> Session<B> {
    /// Run one export call with fresh fuel. A trap (a plugin bug, fuel or
    /// memory exhausted) poisons the instance: later calls fail fast.
    pub(crate) fn call<R>(
        &mut self,
        f: impl FnOnce(
            &bindings::exports::bengal::pid_manager::manager::Guest,
            &mut Store<PluginState<B>>,
        ) -> wasmtime::Result<R>,
    ) -> Result<R> {
        anyhow::ensure!(
            !self.poisoned,
            "the plugin failed earlier in this session; start a new one"
        );
        self.store.set_fuel(FUEL_PER_CALL)?;
        self.store.data_mut().log.messages.clear();
        let guest = self.instance.bengal_pid_manager_manager();
        f(guest, &mut self.store).map_err(|e| {
            self.poisoned = true;
            explain_trap(e)
        })
    }

    /// The guest's messages during the last call.
    pub fn log(&self) -> &[String] {
        &self.store.data().log.messages
    }

    /// The backend, for a look at what it saw.
    pub fn backend(&self) -> &B {
        &self.store.data().backend
    }

    /// End the session and take its backend back.
    pub fn into_backend(self) -> B {
        self.store.into_data().backend
    }
}

/// Turn a trap into an error that says what happened.
fn explain_trap(e: wasmtime::Error) -> anyhow::Error {
    let e = anyhow::Error::from(e);
    let message = match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::OutOfFuel) => {
            format!("the plugin was stopped after {FUEL_PER_CALL} units of fuel (an endless loop?)")
        }
        Some(trap) => format!("the plugin crashed ({trap})"),
        None if format!("{e:#}").contains("memory") => {
            format!(
                "the plugin was stopped at its memory limit of {} MiB",
                MEMORY_LIMIT >> 20
            )
        }
        None => return e.context("the plugin failed"),
    };
    e.context(message)
}

/// Compile `wasm`, or load its precompiled form from the cache. The key is
/// the component's hash and the engine's compatibility hash (wasmtime
/// version and features); a corrupt or incompatible entry is recompiled.
fn load_component(engine: &Engine, wasm: &[u8], wasm_hash: u64) -> Result<Component> {
    let Some(path) = cache_path(engine, wasm_hash) else {
        return Component::new(engine, wasm).map_err(anyhow::Error::from);
    };
    if path.is_file() {
        // SAFETY: the file is our own precompiled artifact in the user's
        // cache directory, keyed by this engine's compatibility hash;
        // wasmtime still checks its header and rejects a mismatch.
        if let Ok(component) = unsafe { Component::deserialize_file(engine, &path) } {
            return Ok(component);
        }
    }
    let compiled = engine
        .precompile_component(wasm)
        .map_err(anyhow::Error::from)?;
    store_in_cache(&path, &compiled);
    // SAFETY: `compiled` was produced by this engine a moment ago.
    unsafe { Component::deserialize(engine, &compiled) }.map_err(anyhow::Error::from)
}

/// `$PIDMAN_CACHE_DIR`, else `$XDG_CACHE_HOME/pidman`, else
/// `~/.cache/pidman`; none when there is no such place.
fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PIDMAN_CACHE_DIR") {
        return (!dir.is_empty()).then(|| PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("pidman"))
}

/// The component half of the cache key (build.rs computes the same for the
/// embedded plugin).
fn component_hash(wasm: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    wasm.hash(&mut hasher);
    hasher.finish()
}

fn cache_path(engine: &Engine, wasm_hash: u64) -> Option<PathBuf> {
    let mut hasher = DefaultHasher::new();
    wasm_hash.hash(&mut hasher);
    engine.precompile_compatibility_hash().hash(&mut hasher);
    Some(cache_dir()?.join(format!("{:016x}.cwasm", hasher.finish())))
}

/// Best effort: a cache that cannot be written only costs a compile.
fn store_in_cache(path: &Path, compiled: &[u8]) {
    let Some(dir) = path.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let tmp = dir.join(format!(".{}.tmp", std::process::id()));
    if std::fs::write(&tmp, compiled).is_ok() && std::fs::rename(&tmp, path).is_ok() {
        return;
    }
    let _ = std::fs::remove_file(&tmp);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size budget of issue 4: the embedded plugin stays within 150 KiB.
    #[test]
    fn the_embedded_plugin_fits_its_budget() {
        assert!(
            EMBEDDED_GUEST.len() <= 150 * 1024,
            "{} bytes",
            EMBEDDED_GUEST.len()
        );
        assert_eq!(&EMBEDDED_GUEST[..8], b"\0asm\x0d\0\x01\0", "a component");
        assert_eq!(
            component_hash(EMBEDDED_GUEST),
            u64::from_str_radix(EMBEDDED_GUEST_HASH, 16).unwrap()
        );
    }
}
