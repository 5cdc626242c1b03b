//! Links the unwinder statically: a `libgcc_s.so.1` dependency costs every process that loads
//! the library a second library to find, map and relocate (about 90 µs on `/bin/true`).
//! Its symbols stay hidden, so the host program's own unwinder is never interposed.

fn main() {
    println!(
        "cargo:rustc-link-arg-cdylib=-Wl,--push-state,--whole-archive,-l:libgcc_eh.a,--pop-state,--exclude-libs,libgcc_eh.a"
    );
}
