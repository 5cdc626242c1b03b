//! Links the unwinder statically: a `libgcc_s.so.1` dependency costs every process that loads
//! the library a second library to find, map and relocate (about 90 µs on `/bin/true`).
//! Its symbols stay hidden, so the host program's own unwinder is never interposed.
//!
//! Lays out the code with `layout.ld` so that code which never runs stays out of memory.

fn main() {
    println!(
        "cargo:rustc-link-arg-cdylib=-Wl,--push-state,--whole-archive,-l:libgcc_eh.a,--pop-state,--exclude-libs,libgcc_eh.a"
    );
    let layout = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("layout.ld");
    println!("cargo:rerun-if-changed={}", layout.display());
    println!("cargo:rustc-link-arg-cdylib=-Wl,-T,{}", layout.display());
}
