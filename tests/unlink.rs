//! `--unlink=FILE`: files removed as a restart begins.
//!
//! Daemons refuse to start while a pid file of theirs exists; a deploy that restarts one under
//! huptime names that file with `--unlink`, so the new generation finds it gone. The test starts
//! a server with two such files (one relative, resolved against the directory huptime was
//! started in), restarts it under load, and checks that both are gone by the time the new
//! version answers, that a file not named stays, and that no request failed.
//! Needs `cargo build --workspace` first.

use std::fs;
use std::time::Duration;

use huptime_tests::{
    Load, Sandbox, ServerCommand, Style, free_port, send_signal, wait_for_version,
};

const RESTART_TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn named_files_are_removed_when_a_restart_begins() {
    let sandbox = Sandbox::new("unlink");
    let port = free_port();
    let version_file = sandbox.file("version");
    fs::write(&version_file, "v1\n").unwrap();
    let absolute = sandbox.file("absolute.pid");
    let relative = sandbox.file("relative.pid");
    let bystander = sandbox.file("bystander.pid");
    for file in [&absolute, &relative, &bystander] {
        fs::write(file, "12345\n").unwrap();
    }
    let unlink_absolute = format!("--unlink={}", absolute.display());
    let mut command = ServerCommand::python(Style::Blocking.script())
        .arg("--port")
        .arg(port.to_string())
        .arg("--version-file")
        .arg(&version_file)
        .under_huptime(&sandbox, &[&unlink_absolute, "--unlink=relative.pid"]);
    command.current_dir(sandbox.file("."));
    let server = sandbox.start_server(command, port);

    let load = Load::start(port, 4);
    assert!(
        absolute.exists() && relative.exists(),
        "removed before any restart"
    );
    fs::write(&version_file, "v2\n").unwrap();
    send_signal(server.pid(), libc::SIGHUP).unwrap();
    wait_for_version(port, "v2", RESTART_TIMEOUT);
    let report = load.stop();
    report.assert_no_failures();

    assert!(!absolute.exists(), "{} was not removed", absolute.display());
    assert!(!relative.exists(), "{} was not removed", relative.display());
    assert!(bystander.exists(), "{} was removed", bystander.display());
}
