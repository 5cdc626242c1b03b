//! Links the unwinder statically, as the engine does (crates/preload/build.rs): loading
//! `libgcc_s.so.1` and running its constructor is a tenth of the launcher's own start-up,
//! which every start of the program under huptime pays.

fn main() {
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--push-state,--whole-archive,-l:libgcc_eh.a,--pop-state,--exclude-libs,libgcc_eh.a"
    );
}
