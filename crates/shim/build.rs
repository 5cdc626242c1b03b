//! Builds `libhuptime.so` from src/lib.rs and puts it beside the other artifacts of this
//! profile (`target/<profile>/`), where the launcher and the engine are.
//!
//! A `no_std` cdylib must be built with `panic=abort` (there is no unwinder without std), and
//! a cargo profile sets the panic strategy for the whole workspace, where the engine needs
//! unwinding to keep panics from crossing into the host program. So rustc is run here, on
//! this one file, with the flags it needs whatever the profile.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const LIBRARY: &str = "libhuptime.so";

fn main() {
    println!("cargo::rerun-if-changed=src/lib.rs");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let built = out_dir.join(LIBRARY);
    let mut rustc = Command::new(env::var_os("RUSTC").expect("cargo sets RUSTC"));
    rustc
        .args(["--crate-name", "huptime", "--crate-type", "cdylib"])
        .args(["--edition", "2024", "--cap-lints", "warn"])
        .args([
            "-C",
            "panic=abort",
            "-C",
            "opt-level=2",
            "-C",
            "debug-assertions=off",
        ])
        .args([
            "-C",
            "overflow-checks=off",
            "-C",
            "debuginfo=0",
            "-C",
            "strip=symbols",
        ])
        .arg("--target")
        .arg(env::var("TARGET").expect("cargo sets TARGET"))
        .arg("-o")
        .arg(&built)
        .arg("src/lib.rs");
    if let Some(linker) = env::var_os("RUSTC_LINKER") {
        rustc
            .arg("-C")
            .arg(format!("linker={}", linker.to_string_lossy()));
    }
    let status = rustc.status().expect("cannot run rustc");
    assert!(status.success(), "rustc failed to build {LIBRARY}");
    install(&built, &profile_dir(&out_dir).join(LIBRARY));
}

/// `target/<profile>` (or `target/<triple>/<profile>`): OUT_DIR is `<that>/build/<pkg>-<hash>/out`.
fn profile_dir(out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .nth(3)
        .expect("OUT_DIR is inside the target directory")
        .to_path_buf()
}

/// Replaces `target` by renaming a copy over it: programs of a running test may have the old
/// file mapped, and writing into a mapped library crashes them.
fn install(built: &Path, target: &Path) {
    let staging = target.with_extension("so.new");
    fs::copy(built, &staging).expect("cannot copy libhuptime.so");
    fs::rename(&staging, target).expect("cannot install libhuptime.so");
}
