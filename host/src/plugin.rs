//! Loading the plugin: the engine, the linker, the precompiled cache, and
//! the per-call limits (fuel, memory, a wall-clock budget enforced by an
//! epoch deadline and by clamping every blocking import) that keep a broken
//! plugin from hanging or crashing the host.

use std::fs::OpenOptions;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, Store, StoreLimitsBuilder, UpdateDeadline};

use crate::backend::{Backend, Native};
use crate::bindings;
use crate::cache;
use crate::capabilities::log::LogSink;
use crate::gate::Budget;
use crate::state::PluginState;
use crate::watchdog;

/// The plugin built from `guest/` and embedded at build time.
pub const EMBEDDED_GUEST: &[u8] = include_bytes!(env!("PIDMAN_GUEST_WASM"));

/// [`component_hash`] of [`EMBEDDED_GUEST`], computed by build.rs.
const EMBEDDED_GUEST_HASH: &str = env!("PIDMAN_GUEST_HASH");

/// Fuel for one call: plenty for any real decision (a `check` burns about
/// a hundred thousand), and about a second of a runaway loop.
pub const FUEL_PER_CALL: u64 = 1_000_000_000;

/// The most linear memory a plugin instance may grow to.
pub const MEMORY_LIMIT: usize = 64 << 20;

/// The largest plugin file read (the embedded one is about 150 KiB).
pub const MAX_PLUGIN_BYTES: u64 = 16 << 20;

/// The wall-clock budget of an export call that takes no timeout, and the
/// margin added to a call's own timeout (`kill`, `clear-stale`).
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(10);

/// How often the epoch advances: the precision of the budget in guest code.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// A compiled plugin, ready to instantiate cheaply as often as needed, on
/// backend `B` (the real OS by default).
pub struct Plugin<B: Backend = Native> {
    engine: Engine,
    pre: bindings::PluginPre<PluginState<B>>,
    exit_on_overrun: bool,
    cache_refused: Option<String>,
}

impl<B: Backend> Plugin<B> {
    /// The plugin embedded in this binary, through the default cache
    /// (`$PIDMAN_CACHE_DIR`, else `~/.cache/pidman`).
    pub fn embedded() -> Result<Self> {
        Self::embedded_cached_in(cache::default_dir().as_deref())
    }

    /// The embedded plugin, cached in `cache` (none: compiled in memory).
    pub fn embedded_cached_in(cache: Option<&Path>) -> Result<Self> {
        let hash = u64::from_str_radix(EMBEDDED_GUEST_HASH, 16)?;
        Self::load(EMBEDDED_GUEST, hash, cache)
    }

    /// Another build of the plugin, from a `.wasm` component file: a
    /// regular file of at most [`MAX_PLUGIN_BYTES`] (a FIFO, device or
    /// directory is refused without blocking).
    pub fn from_file(path: &Path) -> Result<Self> {
        Self::from_file_cached_in(path, cache::default_dir().as_deref())
    }

    /// [`Plugin::from_file`], cached in `cache` (none: compiled in memory).
    pub fn from_file_cached_in(path: &Path, cache: Option<&Path>) -> Result<Self> {
        let bytes = read_plugin_file(path)
            .with_context(|| format!("cannot read the plugin {}", path.display()))?;
        Self::load(&bytes, component_hash(&bytes), cache)
            .with_context(|| format!("cannot load the plugin {}", path.display()))
    }

    /// A plugin from component bytes, through the default cache.
    pub fn from_bytes(wasm: &[u8]) -> Result<Self> {
        Self::load(wasm, component_hash(wasm), cache::default_dir().as_deref())
    }

    /// For a short-lived process (the CLI): a call whose host side blocks
    /// past its budget (a syscall no epoch can interrupt) ends the process
    /// with exit status 2 and a one-line message, instead of hanging.
    pub fn exit_on_overrun(mut self) -> Self {
        self.exit_on_overrun = true;
        self
    }

    fn load(wasm: &[u8], wasm_hash: u64, cache: Option<&Path>) -> Result<Self> {
        let mut config = Config::new();
        config.consume_fuel(true);
        config.epoch_interruption(true);
        // Errors stay one line, and traps stay cheap.
        config.wasm_backtrace_max_frames(None);
        // The engine that runs the plugin compiles nothing: Cranelift is
        // set up (about 0.1 ms) only when the cache misses (`load_component`).
        let engine =
            Engine::new(config.clone().enable_compiler(false)).map_err(anyhow::Error::from)?;
        start_epoch_ticker(&engine);
        let (component, cache_refused) = load_component(&engine, config, wasm, wasm_hash, cache)?;
        let mut linker = Linker::<PluginState<B>>::new(&engine);
        crate::wasi::add_to_linker(&mut linker)?;
        bindings::Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .context("the plugin does not fit pidman's WIT world (bengal:pid-manager/plugin)")?;
        let pre = bindings::PluginPre::new(pre)?;
        Ok(Self {
            engine,
            pre,
            exit_on_overrun: false,
            cache_refused,
        })
    }

    /// Why the precompiled-plugin cache was not used, and how to fix it:
    /// each start then compiles the plugin in memory (tens of milliseconds
    /// instead of one). None when the cache was used, or none was asked for.
    pub fn cache_refused(&self) -> Option<&str> {
        self.cache_refused.as_deref()
    }

    /// A fresh instance on `backend` that may use the filesystem only inside
    /// `dir`.
    pub fn instantiate(&self, dir: &Path, backend: B, verbose: bool) -> Result<Session<B>> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(MEMORY_LIMIT)
            .instances(16)
            .trap_on_grow_failure(true)
            .build();
        let log = LogSink::new(verbose);
        let state = PluginState::new(dir, backend, limits, log)?;
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        store.set_fuel(FUEL_PER_CALL)?;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|store| {
            if store.data().budget.spent() {
                wasmtime::bail!("the plugin ran past its time budget; stopped")
            }
            Ok(UpdateDeadline::Continue(1))
        });
        let instance = self.pre.instantiate(&mut store).map_err(explain_trap)?;
        Ok(Session {
            store,
            instance,
            poisoned: false,
            exit_on_overrun: self.exit_on_overrun,
        })
    }
}

/// Advance `engine`'s epoch every [`EPOCH_TICK`] for as long as it lives
/// (a task on pidman's runtime, not a thread of its own).
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    crate::runtime::get().spawn(async move {
        let mut ticks = tokio::time::interval(EPOCH_TICK);
        loop {
            ticks.tick().await;
            match weak.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => return,
            }
        }
    });
}

/// Read a plugin file: a regular file (opened without blocking, so a FIFO
/// cannot hang the host), at most [`MAX_PLUGIN_BYTES`].
fn read_plugin_file(path: &Path) -> Result<Vec<u8>> {
    let file = crate::capabilities::files::nonblocking(OpenOptions::new().read(true)).open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        bail!("it is not a regular file (a directory, FIFO, socket or device)");
    }
    if meta.len() > MAX_PLUGIN_BYTES {
        bail!(
            "it is {} bytes, over the limit of {} MiB for a plugin",
            meta.len(),
            MAX_PLUGIN_BYTES >> 20
        );
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_PLUGIN_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_PLUGIN_BYTES {
        bail!(
            "it grew past the limit of {} MiB while being read",
            MAX_PLUGIN_BYTES >> 20
        );
    }
    Ok(bytes)
}

/// One plugin instance and its store.
pub struct Session<B: Backend> {
    store: Store<PluginState<B>>,
    instance: bindings::Plugin,
    poisoned: bool,
    exit_on_overrun: bool,
}

/// The manager interface's export calls, as the generated bindings name it.
pub(crate) type Exports = bindings::exports::bengal::pid_manager::manager::Guest;

impl<B: Backend> Session<B> {
    /// Run one export call with fresh fuel and a wall-clock `budget`. A trap
    /// (a plugin bug; fuel, memory or time exhausted) poisons the instance:
    /// later calls fail fast.
    pub(crate) fn call<R>(
        &mut self,
        budget: Duration,
        f: impl FnOnce(&Exports, &mut Store<PluginState<B>>) -> wasmtime::Result<R>,
    ) -> Result<R> {
        anyhow::ensure!(
            !self.poisoned,
            "the plugin failed earlier in this session; start a new one"
        );
        self.store.set_fuel(FUEL_PER_CALL)?;
        self.store.set_epoch_deadline(1);
        let state = self.store.data_mut();
        state.log.messages.clear();
        state.budget = Budget::starting_now(budget);
        let _armed = self
            .exit_on_overrun
            .then(|| watchdog::arm(budget + Duration::from_secs(1)));
        let guest = self.instance.bengal_pid_manager_manager();
        let answer = {
            let _runtime = crate::runtime::enter();
            f(guest, &mut self.store)
        };
        self.store.data_mut().budget = Budget::NONE;
        answer.map_err(|e| {
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

    /// The backend, to act on.
    pub(crate) fn backend_mut(&mut self) -> &mut B {
        &mut self.store.data_mut().backend
    }

    /// The directory the plugin may use, as this OS writes it.
    pub fn grant(&self) -> std::path::PathBuf {
        crate::paths::from_guest(self.store.data().grant.dir())
    }

    /// Forget a resource the guest handed out (a lock the host lets go).
    pub(crate) fn drop_lock(&mut self, lock: wasmtime::component::Resource<bindings::HeldLock>) {
        let _ = self.store.data_mut().table.delete(lock);
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
        None if format!("{e:#}").contains("time budget") => {
            return anyhow::anyhow!("the plugin ran past its time budget and was stopped");
        }
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

/// Load the precompiled form of `wasm` from the cache (see [`cache`] for
/// what makes an entry trusted) into `engine`, which has no compiler; or
/// compile it with an engine of the same `config` that has one, and cache
/// it. The key is the component's hash, the target, and the engine's
/// compatibility hash (wasmtime version, tunables, features); wasmtime
/// checks the CPU features an entry was compiled for as it loads it. An
/// untrusted, corrupt or incompatible entry is recompiled. A cache
/// directory that is not trusted is not used; the second value says why.
fn load_component(
    engine: &Engine,
    mut config: Config,
    wasm: &[u8],
    wasm_hash: u64,
    cache: Option<&Path>,
) -> Result<(Component, Option<String>)> {
    let mut compile = |wasm: &[u8]| -> Result<Vec<u8>> {
        let compiler = Engine::new(config.enable_compiler(true)).map_err(anyhow::Error::from)?;
        compiler
            .precompile_component(wasm)
            .map_err(anyhow::Error::from)
    };
    let in_memory = |compile: &mut dyn FnMut(&[u8]) -> Result<Vec<u8>>| -> Result<Component> {
        let compiled = compile(wasm)?;
        // SAFETY: compiled a moment ago, for this host, with this config.
        unsafe { Component::deserialize(engine, &compiled) }.map_err(anyhow::Error::from)
    };
    let Some(dir) = cache else {
        return Ok((in_memory(&mut compile)?, None));
    };
    let dir = match cache::trusted_dir(dir) {
        Ok(dir) => dir,
        Err(why) => {
            let note = format!(
                "the plugin cache {why}, so it is not used and each start compiles the \
                 plugin: make it a directory of your own that only you can write \
                 (chmod 700), or set PIDMAN_CACHE_DIR to one"
            );
            return Ok((in_memory(&mut compile)?, Some(note)));
        }
    };
    let path = dir.join(format!("{:016x}.cwasm", cache_key(engine, wasm_hash)));
    if cache::verify(&path) {
        // SAFETY: a file only this user can write, in a directory only this
        // user can write, checksummed just now, produced for this engine's
        // compatibility hash; wasmtime checks the header as well. (Mapped,
        // not copied: only the pages a run touches are faulted in.)
        if let Ok(component) = unsafe { Component::deserialize_file(engine, &path) } {
            return Ok((component, None));
        }
    }
    let compiled = compile(wasm)?;
    cache::write(&path, &compiled);
    // SAFETY: compiled a moment ago, for this host, with this config.
    let component =
        unsafe { Component::deserialize(engine, &compiled) }.map_err(anyhow::Error::from)?;
    Ok((component, None))
}

/// The component half of the cache key (build.rs computes the same for the
/// embedded plugin).
fn component_hash(wasm: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    wasm.hash(&mut hasher);
    hasher.finish()
}

fn cache_key(engine: &Engine, wasm_hash: u64) -> u64 {
    let mut hasher = DefaultHasher::new();
    wasm_hash.hash(&mut hasher);
    (std::env::consts::ARCH, std::env::consts::OS).hash(&mut hasher);
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size budget: the embedded plugin stays within 230 KiB (150 KiB
    /// until the lock's claimant record, the file-kind checks and the
    /// hand-over/release exports added about 16 KB; 170 KiB until the
    /// server became a tree: the tree walk and stop, the port holder's
    /// ancestry, and the bindings of their new WIT types added about 55 KB).
    #[test]
    fn the_embedded_plugin_fits_its_budget() {
        assert!(
            EMBEDDED_GUEST.len() <= 230 * 1024,
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
