//! Embeds the guest component, so that `cargo build` alone produces a
//! working `pidman`.
//!
//! In the workspace it builds the guest (`../guest`, target
//! `wasm32-wasip2`) and embeds that build; it also keeps
//! `plugin/pidman.wasm`, the copy the published crate ships, equal to it
//! (CI fails when the committed copy differs from what the sources
//! produce). In the published crate, which has no `../guest`, it embeds the
//! shipped copy: `cargo install pidman` needs neither the wasm target nor a
//! second cargo build, and gets the same bytes (and so the same cache key)
//! as the workspace build.
//!
//! The nested cargo gets its own target directory (sharing the outer one
//! deadlocks on the artifact lock) and an environment without the outer
//! build's flags and wrappers; its stdout goes to our stderr, where cargo
//! does not read it as directives.

use std::env;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap();
    let guest = root.join("guest");
    let shipped = manifest.join("plugin").join("pidman.wasm");

    // A position-dependent executable: the linker resolves every pointer
    // in the binary's tables, so the dynamic loader relocates nothing at
    // start (as a PIE, it wrote ~115 pages of `.data.rel.ro` and `.got`, half
    // of `pidman --help`'s page faults).
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo::rustc-link-arg-bins=-no-pie");
    }

    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    let component = if guest.join("Cargo.toml").is_file() {
        for watched in [
            guest.join("src"),
            guest.join("wasi"),
            guest.join("Cargo.toml"),
            root.join("wit"),
            shipped.clone(),
        ] {
            println!("cargo::rerun-if-changed={}", watched.display());
        }
        let component = strip_names(&build_guest(&guest, &out));
        if std::fs::read(&shipped).ok().as_deref() != Some(&component[..]) {
            std::fs::create_dir_all(shipped.parent().unwrap()).expect("create plugin/");
            std::fs::write(&shipped, &component).expect("write plugin/pidman.wasm");
        }
        component
    } else {
        println!("cargo::rerun-if-changed={}", shipped.display());
        std::fs::read(&shipped).unwrap_or_else(|e| {
            panic!(
                "{}: {e}: the published crate ships its plugin there",
                shipped.display()
            )
        })
    };

    let embedded = out.join("pidman_guest.wasm");
    std::fs::write(&embedded, &component).expect("write the guest component");
    println!("cargo::rustc-env=PIDMAN_GUEST_WASM={}", embedded.display());
    // The cache key's half that depends on the component, computed here so
    // that a cold `pidman` does not hash 180 KB at every start.
    println!(
        "cargo::rustc-env=PIDMAN_GUEST_HASH={:016x}",
        component_hash(&component)
    );
}

/// Build the guest crate at `guest` for the wasm target; its component.
fn build_guest(guest: &Path, out: &Path) -> Vec<u8> {
    let target_dir = out.join("guest-target");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let stderr = std::io::stderr().as_fd().try_clone_to_owned().unwrap();
    let status = Command::new(&cargo)
        .args([
            "build",
            "--profile",
            "guest",
            "--target",
            TARGET,
            "--manifest-path",
        ])
        .arg(guest.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .stdout(Stdio::from(stderr))
        .status()
        .expect("could not run cargo to build the guest");
    if !status.success() {
        if !target_installed() {
            panic!(
                "the {TARGET} target is not installed: run `rustup target add {TARGET}`, \
                 then build again"
            );
        }
        panic!("building the guest component failed (see the errors above)");
    }
    let wasm = target_dir
        .join(TARGET)
        .join("guest")
        .join("pidman_guest.wasm");
    std::fs::read(&wasm).expect("read the guest component")
}

/// The component without its top-level `component-name` custom section
/// (about 10 KB of debugging names that `strip = true` leaves in place).
fn strip_names(component: &[u8]) -> Vec<u8> {
    fn leb(bytes: &[u8], at: &mut usize) -> usize {
        let (mut value, mut shift) = (0usize, 0);
        loop {
            let byte = bytes[*at];
            *at += 1;
            value |= usize::from(byte & 0x7f) << shift;
            shift += 7;
            if byte < 0x80 {
                return value;
            }
        }
    }
    let mut out = component[..8].to_vec();
    let mut at = 8;
    while at < component.len() {
        let start = at;
        let id = component[at];
        at += 1;
        let size = leb(component, &mut at);
        let body = at;
        at += size;
        if id == 0 {
            let mut name_at = body;
            let len = leb(component, &mut name_at);
            if &component[name_at..name_at + len] == b"component-name" {
                continue;
            }
        }
        out.extend_from_slice(&component[start..at]);
    }
    out
}

/// Must match `plugin::component_hash` (SipHash, fixed keys, same std).
fn component_hash(wasm: &[u8]) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    wasm.hash(&mut hasher);
    hasher.finish()
}

/// Whether rustc has the standard library for the wasm target.
fn target_installed() -> bool {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    Command::new(rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .is_some_and(|dir| Path::new(&dir).is_dir())
}
