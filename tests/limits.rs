//! Restarts with unusual `RLIMIT_NOFILE` limits: the largest this machine allows (containers set
//! it to 2^30, and work at start-up or restart that walks every possible descriptor number would
//! then take minutes) and the classic 1024. Start-up and two restarts under light load must
//! work as always: zero failed requests, the new version served, each restart quick. The limit
//! is set, soft and hard, on the `huptime` launcher before it runs, and checked on the server.
//! Needs `cargo build --workspace`.

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use huptime_tests::{
    Load, Mode, Sandbox, Style, free_port, read_pid_file, signal_restart, wait_for_version,
    wait_gone,
};

const RESTARTS: usize = 2;
const LOAD_CLIENTS: usize = 2;
const START_TIMEOUT: Duration = Duration::from_secs(20);
const SERVED_TIMEOUT: Duration = Duration::from_secs(10);
/// A restart takes well under a second here; one that scaled with the limit would take far
/// longer than this at the largest limits.
const RESTART_TIMEOUT: Duration = Duration::from_secs(10);
const RETIRE_TIMEOUT: Duration = Duration::from_secs(15);

fn getrlimit_nofile() -> libc::rlimit {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid place for the result.
    let ret = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(ret, 0, "getrlimit: {}", io::Error::last_os_error());
    limit
}

/// The kernel's ceiling for `RLIMIT_NOFILE`, which only a privileged process may raise its hard
/// limit to.
fn nr_open() -> libc::rlim_t {
    let text = fs::read_to_string("/proc/sys/fs/nr_open").expect("read /proc/sys/fs/nr_open");
    text.trim().parse().expect("parse /proc/sys/fs/nr_open")
}

/// Whether this process may raise its hard limit (as root or with `CAP_SYS_RESOURCE`).
fn may_raise_hard_limit() -> bool {
    // Try in a child, so that this process keeps its limits.
    let wanted = nr_open();
    let mut command = std::process::Command::new("true");
    // SAFETY: the closure only calls setrlimit, which is async-signal-safe.
    unsafe { command.pre_exec(move || set_nofile(wanted)) };
    command.status().is_ok_and(|status| status.success())
}

fn set_nofile(value: libc::rlim_t) -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: `limit` is a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The soft and hard "Max open files" of `pid`, from `/proc/<pid>/limits`.
fn nofile_of(pid: u32) -> (String, String) {
    let text = fs::read_to_string(format!("/proc/{pid}/limits"))
        .unwrap_or_else(|e| panic!("read the limits of pid {pid}: {e}"));
    let line = text
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("no Max open files in the limits of pid {pid}:\n{text}"));
    let fields: Vec<&str> = line["Max open files".len()..].split_whitespace().collect();
    (fields[0].to_owned(), fields[1].to_owned())
}

fn restart_with_nofile(name: &str, limit: libc::rlim_t, mode: Mode) {
    let sandbox = Sandbox::new(&format!("limits-{name}-{mode:?}"));
    let port = free_port();
    let version_file = sandbox.file("version");
    let pid_file = sandbox.file("server.pid");
    let write_version = |version: &str| {
        fs::write(&version_file, format!("{version}\n")).expect("write the version file");
    };
    write_version("v1");
    let mut command = Style::Threaded
        .command(port, &version_file, &pid_file)
        .under_huptime(&sandbox, mode.huptime_args());
    // SAFETY: the closure only calls setrlimit, which is async-signal-safe.
    unsafe { command.pre_exec(move || set_nofile(limit)) };
    eprintln!("RLIMIT_NOFILE {limit} ({name}), {mode:?} mode");
    let launched = sandbox.start_server(command, port);
    wait_for_version(port, "v1", START_TIMEOUT);
    let expected = (limit.to_string(), limit.to_string());
    let mut master = read_pid_file(&pid_file);
    assert_eq!(nofile_of(master), expected, "the server's RLIMIT_NOFILE");

    let load = Load::start(port, LOAD_CLIENTS);
    load.wait_until_served_by("v1", SERVED_TIMEOUT);
    let mut old_masters = Vec::new();
    for n in 2..=RESTARTS + 1 {
        let version = format!("v{n}");
        write_version(&version);
        let started = Instant::now();
        signal_restart(
            mode,
            master,
            launched.pid(),
            &format!("restart to {version}"),
        );
        let reply = wait_for_version(port, &version, RESTART_TIMEOUT);
        eprintln!("restart to {version} took {:?}", started.elapsed());
        let new_master = read_pid_file(&pid_file);
        assert_eq!(reply.pid, new_master, "{version} answers from its master");
        match mode {
            Mode::Fork => {
                assert_ne!(new_master, master, "fork mode: a new process");
                old_masters.push(master);
            }
            Mode::Exec => assert_eq!(new_master, master, "exec mode: the same process"),
        }
        assert_eq!(nofile_of(new_master), expected, "{version}'s RLIMIT_NOFILE");
        master = new_master;
        load.wait_until_served_by(&version, SERVED_TIMEOUT);
    }
    let report = load.stop_without_failures();
    assert_eq!(
        report.versions().len(),
        RESTARTS + 1,
        "versions the load saw:\n{report}"
    );
    if let Err(left) = wait_gone(&old_masters, RETIRE_TIMEOUT) {
        panic!("old generations {left:?} did not exit");
    }
}

#[test]
fn hard_limit_of_this_process() {
    let hard = getrlimit_nofile().rlim_max;
    let hard = if hard == libc::RLIM_INFINITY {
        nr_open()
    } else {
        hard
    };
    restart_with_nofile("hard", hard, Mode::Fork);
}

#[test]
fn kernel_maximum_fork_mode() {
    if !may_raise_hard_limit() {
        eprintln!(
            "SKIPPED: this process may not raise RLIMIT_NOFILE to nr_open; \
             hard_limit_of_this_process covers the largest limit it may set"
        );
        return;
    }
    restart_with_nofile("nr_open", nr_open(), Mode::Fork);
}

#[test]
fn kernel_maximum_exec_mode() {
    if !may_raise_hard_limit() {
        eprintln!("SKIPPED: this process may not raise RLIMIT_NOFILE to nr_open");
        return;
    }
    restart_with_nofile("nr_open", nr_open(), Mode::Exec);
}

#[test]
fn classic_1024() {
    restart_with_nofile("1024", 1024, Mode::Fork);
}
