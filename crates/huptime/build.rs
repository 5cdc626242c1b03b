//! Links the launcher as a static PIE when the C toolchain has glibc's static libraries.
//!
//! Every start of a program under huptime pays the launcher's own start, and most of what a
//! dynamically linked launcher costs beyond its work is loading and relocating libc
//! (`huptime -- /bin/true`: 0.2 ms less and 30 page faults fewer when static). Cargo has no
//! way to give one binary of a workspace `-C target-feature=+crt-static` (the test servers
//! must stay dynamic, or `LD_PRELOAD` cannot enter them), so this links the binary with
//! `-static-pie` and a search directory in which each library rustc names (`-lc`, `-lgcc_s`,
//! ...) exists only as its static archive. Without those archives, or when building for
//! another target than a native glibc one, the launcher stays dynamic.
//!
//! The unwinder is linked in statically either way, as the engine's is
//! (crates/preload/build.rs): loading `libgcc_s.so.1` was a tenth of the launcher's start.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The libraries rustc links a std binary with on x86_64-linux-gnu, and glibc's archive for
/// each (`libgcc_s`, the shared unwinder, becomes the compiler's support library: the
/// unwinder itself is linked in whole below).
const ARCHIVES: [(&str, &str); 7] = [
    ("libc.a", "libc.a"),
    ("libm.a", "libm.a"),
    ("libdl.a", "libdl.a"),
    ("librt.a", "librt.a"),
    ("libpthread.a", "libpthread.a"),
    ("libutil.a", "libutil.a"),
    ("libgcc_s.a", "libgcc.a"),
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--push-state,--whole-archive,-l:libgcc_eh.a,--pop-state,--exclude-libs,libgcc_eh.a"
    );
    let var = |name| std::env::var(name).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") != "linux"
        || var("CARGO_CFG_TARGET_ENV") != "gnu"
        || var("TARGET") != var("HOST")
    {
        // The archives `cc` finds are the host's, and the list above is glibc's.
        return;
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    match static_archives(&out.join("static-libs")) {
        Ok(dir) => {
            println!("cargo:rustc-link-arg-bin=huptime=-static-pie");
            println!("cargo:rustc-link-arg-bin=huptime=-L{}", dir.display());
            // GNU ld takes archives in order, and rustc names libgcc_s before libc: libc's
            // own calls into the compiler's support library need it once more after it.
            println!("cargo:rustc-link-arg-bin=huptime=-Wl,--start-group,-lc,-lgcc,--end-group");
        }
        Err(why) => println!("cargo:warning=linking the huptime launcher dynamically: {why}"),
    }
}

/// Fills `dir` with links to the static archives, found the way the C compiler finds them.
fn static_archives(dir: &Path) -> Result<PathBuf, String> {
    // The start-up code of a static PIE, which not every glibc build ships.
    find_file("rcrt1.o")?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (name, archive) in ARCHIVES {
        let found = find_file(archive)?;
        let link = dir.join(name);
        std::os::unix::fs::symlink(&found, &link)
            .map_err(|e| format!("{}: {e}", link.display()))?;
    }
    Ok(dir.to_path_buf())
}

fn find_file(name: &str) -> Result<PathBuf, String> {
    let output = Command::new("cc")
        .arg(format!("-print-file-name={name}"))
        .output()
        .map_err(|e| format!("cannot run cc: {e}"))?;
    let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    // cc prints the bare name back when it finds no such file.
    if output.status.success() && path.is_absolute() && path.is_file() {
        Ok(path)
    } else {
        Err(format!("cc finds no {name} (Debian: libc6-dev)"))
    }
}
