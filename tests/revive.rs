//! `--revive`: a program that exits on its own is started again on its sockets.
//!
//! `blocking.py --exit-after N` serves N requests and then leaves through `sys.exit(0)`, like a
//! server that recycles itself or stops on an error. Under `huptime --revive`, with clients
//! hammering it, it must come back again and again with no client noticing: no connection is
//! refused or reset while the program is away (clients wait in the listening socket's queue,
//! which never closes), the listening socket stays the same kernel socket throughout, and every
//! generation runs in the same process (revive re-executes in place). Generations are told apart
//! by their version, which each reads from a file that the test rewrites all the time, and by
//! the `--debug` line of each revival.
//!
//! Without `--revive`, the program's exit ends it: the launched process exits with the program's
//! status and the port refuses connections afterwards. Needs `cargo build --workspace` first.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use huptime_tests::{
    FailureKind, Load, Sandbox, ServerCommand, Style, free_port, get, listening_socket_inodes,
    listening_sockets, pids_alive,
};

const LOAD_CLIENTS: usize = 4;
/// Requests each generation serves before it exits. With the load below, a generation lives well
/// under a second, so huptime waits its 1 s back-off before each revival: clients wait ~1 s for
/// their reply then, far less than the harness's 10 s timeouts.
const EXIT_AFTER: u32 = 200;
/// The load runs at least this long, and until this many revivals happened, ...
const RUN_AT_LEAST: Duration = Duration::from_secs(6);
const REVIVALS_WANTED: usize = 3;
/// ... but no longer than this.
const RUN_AT_MOST: Duration = Duration::from_secs(25);
/// How often the test writes a new version and samples the listening socket.
const TICK: Duration = Duration::from_millis(50);
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// What `--debug` logs when `--revive` starts the program again.
const REVIVAL_LINE: &str = "--revive starts generation";

/// Writes `version` so that a starting server never reads half of it.
fn write_version(path: &Path, version: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, format!("{version}\n")).expect("write the version file");
    fs::rename(&tmp, path).expect("rename the version file into place");
}

fn command(port: u16, version_file: &Path, exit_after: u32) -> ServerCommand {
    ServerCommand::python(Style::Blocking.script())
        .arg("--port")
        .arg(port.to_string())
        .arg("--version-file")
        .arg(version_file)
        .arg("--exit-after")
        .arg(exit_after.to_string())
}

#[test]
fn revive_restarts_a_program_that_exits() {
    let sandbox = Sandbox::new("revive");
    let port = free_port();
    let version_file = sandbox.file("version");
    let mut tick = 0u32;
    write_version(&version_file, &format!("t{tick}"));
    let mut launched = sandbox.start_server(
        command(port, &version_file, EXIT_AFTER).under_huptime(&sandbox, &["--revive", "--debug"]),
        port,
    );
    let pid = launched.pid();
    let inodes = listening_socket_inodes(port);
    assert_eq!(
        inodes.len(),
        1,
        "listening sockets on port {port}: {inodes:?}"
    );

    let load = Load::start(port, LOAD_CLIENTS);
    let started = Instant::now();
    loop {
        thread::sleep(TICK);
        tick += 1;
        write_version(&version_file, &format!("t{tick}"));
        assert_eq!(
            listening_socket_inodes(port),
            inodes,
            "the listening socket changed {:?} into the run",
            started.elapsed()
        );
        if let Some(status) = launched.try_exit_status() {
            panic!("the launched process exited ({status}) although --revive was given");
        }
        let revivals = launched.stderr().matches(REVIVAL_LINE).count();
        let elapsed = started.elapsed();
        if (elapsed >= RUN_AT_LEAST && revivals >= REVIVALS_WANTED) || elapsed >= RUN_AT_MOST {
            break;
        }
    }
    let report = load.stop();
    // Counted again now that the load stopped: a generation may have started since.
    let revivals = launched.stderr().matches(REVIVAL_LINE).count();
    eprintln!("{report}");
    eprintln!("{revivals} revivals in {:?}", started.elapsed());

    // A generation lost while the program was away would show as refused or reset requests.
    report.assert_no_failures();
    assert!(
        revivals >= REVIVALS_WANTED,
        "only {revivals} revivals in {RUN_AT_MOST:?}; stderr:\n{}",
        launched.stderr()
    );
    let versions = report.versions();
    assert!(
        versions.len() >= 3,
        "the load saw only the generations {versions:?}:\n{report}"
    );
    // Each generation reads the version once, when it starts: no more versions than starts.
    assert!(
        versions.len() <= revivals + 1,
        "{} versions from {} generations:\n{report}",
        versions.len(),
        revivals + 1
    );
    assert_eq!(
        report.pids(),
        BTreeSet::from([pid]),
        "revived generations must run in the launched process"
    );
    assert_eq!(pids_alive(&[pid]), [pid], "the launched process is gone");
    assert_eq!(listening_socket_inodes(port), inodes);
}

#[test]
fn without_revive_the_exit_ends_it() {
    const EXIT_AFTER: u32 = 5;
    let sandbox = Sandbox::new("no-revive");
    let port = free_port();
    let version_file = sandbox.file("version");
    write_version(&version_file, "only");
    // Starting the server takes one request: the harness waits for its first reply.
    let mut launched = sandbox.start_server(
        command(port, &version_file, EXIT_AFTER).under_huptime(&sandbox, &[]),
        port,
    );
    for _ in 2..EXIT_AFTER {
        get(port).expect("GET before the last request");
    }
    assert!(
        launched.try_exit_status().is_none(),
        "exited before its last request"
    );
    let last = get(port).expect("the last request is answered");
    assert_eq!(last.pid, launched.pid());
    let status = launched
        .wait_exit(EXIT_TIMEOUT)
        .unwrap_or_else(|| panic!("still running {EXIT_TIMEOUT:?} after its last request"));
    assert_eq!(
        status.code(),
        Some(0),
        "exit status {status}; stderr:\n{}",
        launched.stderr()
    );
    let after = get(port).expect_err("the port still answers after the program exited");
    assert_eq!(after.kind, FailureKind::Refused, "{after}");
    assert_eq!(listening_sockets(port), 0);
}
