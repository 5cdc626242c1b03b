//! A deploy that replaces the server's binary on disk and then restarts it: the new generation
//! runs the new file. The Rust test server answers with a version trailer appended to its own
//! executable, so each "build" is a copy with another trailer. Needs `cargo build --workspace`.

use huptime_tests::{
    Mode, RestartPlan, Sandbox, ServerCommand, free_port, restart_under_load,
    write_versioned_testserver,
};
use std::path::Path;

const TESTSERVER: &str = env!("CARGO_BIN_EXE_hup-testserver");

fn restart_replaced_binary(mode: Mode) {
    let sandbox = Sandbox::new(&format!("replaced-binary-{mode:?}"));
    let port = free_port();
    let binary = sandbox.file("hup-testserver");
    let pid_file = sandbox.file("server.pid");
    let plan = RestartPlan {
        server: ServerCommand::new(&binary)
            .arg("--port")
            .arg(port.to_string())
            .arg("--pid-file")
            .arg(&pid_file),
        mode,
        port,
        pid_file,
        replies_from_master: true,
    };
    restart_under_load(&sandbox, &plan, |version| {
        write_versioned_testserver(Path::new(TESTSERVER), &binary, version);
    });
}

#[test]
fn fork_mode_runs_the_new_binary() {
    restart_replaced_binary(Mode::Fork);
}

#[test]
fn exec_mode_runs_the_new_binary() {
    restart_replaced_binary(Mode::Exec);
}
