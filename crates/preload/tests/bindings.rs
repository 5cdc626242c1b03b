//! Symbol binding: every function the library interposes must be bound to our hook when a
//! program calls it through the symbol its libc exports (`accept4@GLIBC_2.10`, `exit@GLIBC_2.2.5`,
//! `epoll_create1@GLIBC_2.9`, `close_range@GLIBC_2.34`…). A hook exported under a version that
//! callers do not reference is silently skipped — what happened to the original huptime's
//! `accept4` and `exit` on x86_64. The dynamic loader's own trace (`LD_DEBUG=bindings`) shows,
//! for each call the compiled test program makes, which library the symbol was bound to.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Every function the library interposes (the exported hooks).
const HOOKS: &[&str] = &[
    "bind",
    "listen",
    "accept",
    "accept4",
    "close",
    "dup",
    "dup2",
    "dup3",
    "fcntl",
    "fcntl64",
    "close_range",
    "closefrom",
    "fork",
    "setsid",
    "exit",
    "unlink",
    "unlinkat",
    "sendto",
    "sendmsg",
    "sendmmsg",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "poll",
    "__poll_chk",
    "ppoll",
    "select",
    "pselect",
    "sigaction",
    "signal",
    "syscall",
];

fn library() -> PathBuf {
    // Integration tests run from target/<profile>/deps.
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let library = profile_dir.join("libhuptime.so");
    assert!(
        library.exists(),
        "{} is missing: run `cargo build --workspace` first",
        library.display()
    );
    library
}

fn compile(dir: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bindings.c");
    let program = dir.join("bindings");
    let status = Command::new("cc")
        .args(["-O0", "-o"])
        .arg(&program)
        .arg(&source)
        .status()
        .expect("a C compiler (cc) is needed for this test");
    assert!(status.success(), "compiling {} failed", source.display());
    program
}

#[test]
fn every_hook_is_bound_to_the_library() {
    let dir = std::env::temp_dir().join(format!("huptime-bindings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let program = compile(&dir);
    let library = library();
    let output = Command::new(&program)
        .env("LD_PRELOAD", &library)
        .env("LD_DEBUG", "bindings")
        .env("LD_BIND_NOW", "")
        .output()
        .expect("run the test program");
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(output.status.success(), "test program failed: {output:?}");
    let trace = String::from_utf8_lossy(&output.stderr);
    let program_name = program.file_name().unwrap().to_string_lossy().into_owned();
    let library_name = library.file_name().unwrap().to_string_lossy().into_owned();

    let mut unbound = Vec::new();
    for hook in HOOKS {
        // e.g. "binding file /tmp/x/bindings [0] to /…/libhuptime.so [0]: normal symbol `accept4' [GLIBC_2.10]"
        let symbol = format!("symbol `{hook}'");
        let bound_to_us = trace.lines().any(|line| {
            line.contains("binding file")
                && line.contains(&program_name)
                && line.contains(&symbol)
                && line.contains(&library_name)
        });
        if !bound_to_us {
            let elsewhere: Vec<&str> = trace.lines().filter(|l| l.contains(&symbol)).collect();
            unbound.push(format!("{hook}: {elsewhere:?}"));
        }
    }
    assert!(
        unbound.is_empty(),
        "calls that did not reach libhuptime.so:\n{}",
        unbound.join("\n")
    );
}
