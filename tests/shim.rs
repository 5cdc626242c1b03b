//! `libhuptime.so` loads the engine only into a process that takes part in an instance: every
//! command the program runs inherits `LD_PRELOAD` and must not pay for it (see crates/shim).
//!
//! - Under `huptime`, the program has the engine mapped; a command it runs has `libhuptime.so`
//!   but not the engine, and so has a process that merely preloads the library.
//! - Without its engine, the library says so in one line and the program runs unchanged.
//!
//! Needs `cargo build --workspace` first. Runs the interpreter `python3` ends up in, so that
//! a wrapper script (pyenv's) adds no process images of its own.

use std::path::Path;
use std::time::Duration;

use huptime_tests::control::run_bounded;
use huptime_tests::servers::python_executable;
use huptime_tests::{Sandbox, huptime_binary};

const RUN_TIMEOUT: Duration = Duration::from_secs(30);
const ENGINE: &str = "libhuptime_engine.so";

/// Prints which of our libraries its own process and a child it runs have mapped.
const REPORT_MAPPINGS: &str = "\
import subprocess
def libraries(maps):
    return sorted({line.rsplit('/', 1)[-1] for line in maps.splitlines() if 'libhuptime' in line})
print('program', *libraries(open('/proc/self/maps').read()))
print('child', *libraries(subprocess.run(['cat', '/proc/self/maps'], capture_output=True, text=True).stdout))
";

fn library() -> std::path::PathBuf {
    huptime_binary().with_file_name("libhuptime.so")
}

#[test]
fn only_the_program_huptime_runs_loads_the_engine() {
    let sandbox = Sandbox::new("shim-engine");
    let mut command = sandbox.command(huptime_binary());
    command
        .arg("--")
        .arg(python_executable())
        .args(["-c", REPORT_MAPPINGS]);
    let outcome = run_bounded(&sandbox, command, RUN_TIMEOUT);
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    assert_eq!(
        outcome.stdout,
        format!("program libhuptime.so {ENGINE}\nchild libhuptime.so\n"),
        "{outcome:#?}"
    );
}

#[test]
fn a_process_that_only_preloads_the_library_does_not_load_the_engine() {
    let sandbox = Sandbox::new("shim-passive");
    let mut command = sandbox.command(python_executable());
    command
        .args(["-c", REPORT_MAPPINGS])
        .env("LD_PRELOAD", library());
    let outcome = run_bounded(&sandbox, command, RUN_TIMEOUT);
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    assert_eq!(
        outcome.stdout, "program libhuptime.so\nchild libhuptime.so\n",
        "{outcome:#?}"
    );
    assert_eq!(outcome.stderr, "", "a passive library says nothing");
}

#[test]
fn without_its_engine_the_library_warns_once_and_the_program_runs_unchanged() {
    let sandbox = Sandbox::new("shim-no-engine");
    let alone = sandbox.file("libhuptime.so");
    std::fs::copy(library(), &alone).expect("copy libhuptime.so");
    let program = "import sys; print('hello'); sys.stderr.write('oops\\n'); sys.exit(3)";
    // The interpreter itself, not a `python3` wrapper script: one process image, one warning.
    let mut command = sandbox.command(python_executable());
    command
        .args(["-c", program])
        .env("LD_PRELOAD", &alone)
        // A state this build cannot read is the engine's to report, so the library loads it.
        .env("HUPTIME_STATE", "not a state")
        .env("HUPTIME_OPTIONS", "not options");
    let outcome = run_bounded(&sandbox, command, RUN_TIMEOUT);
    assert_eq!(outcome.code, Some(3), "{outcome:#?}");
    assert_eq!(outcome.stdout, "hello\n", "{outcome:#?}");
    let warnings: Vec<&str> = outcome
        .stderr
        .lines()
        .filter(|l| l.starts_with("huptime["))
        .collect();
    let missing = Path::new(&alone).with_file_name(ENGINE);
    assert_eq!(warnings.len(), 1, "{outcome:#?}");
    assert!(
        warnings[0].contains(&format!("cannot load {}", missing.display()))
            && warnings[0].ends_with("; restarts are disabled"),
        "{outcome:#?}"
    );
    assert!(outcome.stderr.ends_with("oops\n"), "{outcome:#?}");
}
