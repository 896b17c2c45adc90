//! The one small Tokio runtime pidman keeps beside its plugins: a single
//! worker thread, started on first use, that drives what wasmtime-wasi
//! does asynchronously (the timers behind a plugin's sleeps), advances each
//! engine's epoch, and times the CLI's watchdog.
//!
//! Without it, wasmtime-wasi starts a runtime of its own on the first file
//! operation, with a worker thread per core (ten on a ten-core laptop, for
//! a command that lasts two milliseconds), and pidman started two threads
//! of its own besides: each thread costs about 75 us to start here.

use std::sync::OnceLock;

use tokio::runtime::{Builder, EnterGuard, Runtime};

/// The runtime, started on first use.
pub fn get() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("pidman-runtime")
            .enable_time()
            .enable_io()
            .build()
            .expect("start pidman's runtime (one thread)")
    })
}

/// Make it the current runtime of this thread until the guard drops, so
/// that wasmtime-wasi uses it instead of starting its own.
pub fn enter() -> EnterGuard<'static> {
    get().enter()
}
