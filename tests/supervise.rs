//! `--supervise`: the launcher stays the parent with a stable PID, keeps copies of the program's
//! listening sockets, and starts the program again on them when it crashes.
//!
//! - The program is killed with SIGKILL ten times under load: no connection is refused, every
//!   request is answered (a request the killed process had accepted is reset and retried, at
//!   most one per kill for this one-client-at-a-time server), each new start is the next
//!   generation on the same kernel socket, and the supervisor's PID (in the pid file) never
//!   changes; SIGTERM to the supervisor stops everything and it exits 0.
//! - A program that keeps failing at start-up is started again after growing delays (the
//!   crash-loop back-off), and a program that exits with status 0 on its own ends the
//!   supervisor with status 0.
//! - As PID 1 of a new PID namespace (`unshare --pid --fork --mount-proc`), an orphaned
//!   grandchild of the program is adopted and reaped when it exits: no zombie is left. Skipped
//!   (with a message) where unshare is not permitted.
//!
//! Needs `cargo build --workspace`.

mod ops;

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use huptime_tests::control::Controller;
use huptime_tests::json::Json;
use huptime_tests::{
    SIGKILL, SIGTERM, Sandbox, ServerCommand, free_port, get, huptime_binary,
    listening_socket_inodes, pids_alive, proc_stat, processes, send_signal, wait_for,
    zombie_children,
};

use ops::{RetryLoad, socket_inodes};

const KILLS: usize = 10;
const CLIENTS: usize = 4;
const TIMEOUT: Duration = Duration::from_secs(10);

fn server(sandbox: &Sandbox, port: u16, extra: &[&str]) -> ServerCommand {
    let version_file = sandbox.file("version");
    fs::write(&version_file, "v1\n").unwrap();
    let mut command = ServerCommand::python_direct("blocking.py")
        .arg("--port")
        .arg(port.to_string())
        .arg("--version-file")
        .arg(&version_file);
    for arg in extra {
        command = command.arg(arg);
    }
    command
}

#[test]
fn sigkill_ten_times_under_load_refuses_nothing() {
    let sandbox = Sandbox::new("supervise-kill");
    let control = Controller::new(&sandbox);
    let port = free_port();
    let pidfile = sandbox.file("sup.pid");
    let pidfile_arg = format!("--pidfile={}", pidfile.display());
    let mut command = server(&sandbox, port, &[]).under_huptime(
        &sandbox,
        &[
            "--supervise",
            "--max-backoff=0.2",
            "--timeout=5",
            &pidfile_arg,
        ],
    );
    command.env("XDG_RUNTIME_DIR", control.runtime_dir());
    let mut supervisor = sandbox.start_server(command, port);
    let supervisor_pid = supervisor.pid();
    let read_pidfile = || fs::read_to_string(&pidfile).unwrap_or_default();
    assert_eq!(read_pidfile().trim(), supervisor_pid.to_string());
    let listener = wait_for("one listener on the port", TIMEOUT, || {
        let inodes = listening_socket_inodes(port);
        (inodes.len() == 1).then(|| *inodes.iter().next().unwrap())
    });
    wait_for("the supervisor keeps a copy of the socket", TIMEOUT, || {
        socket_inodes(supervisor_pid)
            .contains(&listener)
            .then_some(())
    });

    let load = RetryLoad::start(port, CLIENTS);
    load.wait_for_more(20, TIMEOUT);
    let mut killed = Vec::new();
    let mut master = get(port).expect("served").pid;
    assert_ne!(
        master, supervisor_pid,
        "the program runs under the supervisor"
    );
    for n in 1..=KILLS {
        send_signal(master, SIGKILL).expect("kill the program");
        killed.push(master);
        let next = wait_for(&format!("a new start after kill {n}"), TIMEOUT, || {
            get(port)
                .ok()
                .map(|r| r.pid)
                .filter(|pid| !killed.contains(pid))
        });
        assert_eq!(
            listening_socket_inodes(port)
                .into_iter()
                .collect::<Vec<_>>(),
            [listener],
            "the new start serves the same socket"
        );
        assert!(
            pids_alive(&[supervisor_pid]).len() == 1,
            "the supervisor lives"
        );
        assert_eq!(read_pidfile().trim(), supervisor_pid.to_string());
        master = next;
        load.wait_for_more(5, TIMEOUT);
    }
    let report = load.stop();
    assert_eq!(
        report.refused, 0,
        "no connection may be refused: {report:#?}"
    );
    assert_eq!(
        report.unanswered, 0,
        "every request is answered: {report:#?}"
    );
    assert!(
        report.resets <= KILLS as u64,
        "only a request in flight at a kill may be reset: {report:#?}"
    );
    let stderr = supervisor.stderr();
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.contains("was killed by signal 9 (SIGKILL); starting it again"))
            .count(),
        KILLS,
        "{stderr}"
    );

    // The newest start is generation KILLS, supervised by the same launcher.
    let status = control.run(&["--status", "--json", &pidfile_arg]);
    let document = Json::parse(&status.stdout);
    let instance = &document.get("instances").array()[0];
    assert_eq!(instance.get("generation").int(), KILLS as i64);
    assert_eq!(instance.get("pid").int(), i64::from(master));
    let supervised_by = instance.get("supervisor");
    assert_eq!(supervised_by.get("pid").int(), i64::from(supervisor_pid));
    assert!(supervised_by.get("revives").bool());

    // SIGTERM: the supervisor stops the program and exits 0.
    send_signal(supervisor_pid, SIGTERM).unwrap();
    let status = supervisor.wait_exit(TIMEOUT).expect("the supervisor exits");
    assert_eq!(status.code(), Some(0), "{}", supervisor.stderr());
    assert!(pids_alive(&[master]).is_empty(), "the program was stopped");
    assert!(!pidfile.exists(), "the supervisor removes its pid file");
}

#[test]
fn crash_loop_backs_off_and_a_clean_exit_ends_the_supervisor() {
    let sandbox = Sandbox::new("supervise-backoff");
    let control = Controller::new(&sandbox);
    let starts = sandbox.file("starts");
    let script = format!("date +%s.%N >> '{}'; exit 3", starts.display());
    let log_path = sandbox.file("backoff.log");
    let mut command = control.huptime();
    command
        .args(["--supervise", "--", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log_path).unwrap());
    let mut supervisor = command.spawn().unwrap();
    let read_starts = || -> Vec<f64> {
        fs::read_to_string(&starts)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect()
    };
    let times = wait_for("five starts", TIMEOUT, || {
        let times = read_starts();
        (times.len() >= 5).then_some(times)
    });
    // Waits of 0.1 + 0.2 + 0.4 + 0.8 s at least between the first and the fifth start.
    assert!(
        times[4] - times[0] >= 1.5,
        "the starts came too fast for a back-off: {times:?}"
    );
    send_signal(supervisor.id(), SIGTERM).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = supervisor.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the supervisor does not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    let log = fs::read_to_string(&log_path).unwrap();
    let delays: Vec<&str> = log
        .lines()
        .filter_map(|line| line.split_once("exited with status 3; starting it again in "))
        .filter_map(|(_, rest)| rest.split_whitespace().next())
        .collect();
    assert!(delays.len() >= 4, "{log}");
    assert_eq!(&delays[..4], ["0.1s", "0.2s", "0.4s", "0.8s"], "{log}");

    // A program that exits with status 0 on its own: the supervisor ends with 0 too.
    let port = free_port();
    let mut command =
        server(&sandbox, port, &["--exit-after", "2"]).under_huptime(&sandbox, &["--supervise"]);
    command.env("XDG_RUNTIME_DIR", control.runtime_dir());
    let mut supervisor = sandbox.start_server(command, port);
    get(port).expect("the second request is answered");
    let status = supervisor.wait_exit(TIMEOUT).expect("the supervisor ends");
    assert_eq!(status.code(), Some(0), "{}", supervisor.stderr());
    assert!(!supervisor.stderr().contains("starting it again"));
}

fn unshare_permitted() -> bool {
    Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

#[test]
fn as_pid_1_orphans_are_reaped() {
    if !unshare_permitted() {
        eprintln!("SKIPPED: `unshare --pid --fork --mount-proc` is not permitted here");
        return;
    }
    let sandbox = Sandbox::new("supervise-pid1");
    let control = Controller::new(&sandbox);
    let port = free_port();
    let program = server(&sandbox, port, &[]);
    // The program's start script leaves an orphan behind: the subshell exits at once, so its
    // `sleep` is handed to the namespace's PID 1, the supervisor.
    let program_line: Vec<String> = program
        .bare(&sandbox)
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let program_exe = program
        .bare(&sandbox)
        .get_program()
        .to_string_lossy()
        .into_owned();
    let mut command = sandbox.command("unshare");
    command
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(huptime_binary())
        .args(["--supervise", "--timeout=5", "--", "sh", "-c"])
        .arg(r#"(sleep 1 &); exec "$@""#)
        .arg("sh")
        .arg(program_exe)
        .args(program_line)
        .env("XDG_RUNTIME_DIR", control.runtime_dir());
    let mut unshare = sandbox.start_server(command, port);
    let supervisor = wait_for("the supervisor runs", TIMEOUT, || {
        processes()
            .into_iter()
            .find(|stat| stat.ppid == unshare.pid())
            .map(|stat| stat.pid)
    });
    let nspid = fs::read_to_string(format!("/proc/{supervisor}/status"))
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("NSpid:").map(str::to_owned))
        .unwrap_or_default();
    assert_eq!(
        nspid.split_whitespace().last(),
        Some("1"),
        "the supervisor is PID 1 of the namespace: {nspid}"
    );
    let orphan = wait_for("the orphaned sleep is adopted by PID 1", TIMEOUT, || {
        processes()
            .into_iter()
            .find(|stat| stat.ppid == supervisor && stat.comm == "sleep")
            .map(|stat| stat.pid)
    });
    // It exits after a second: reaped, not left a zombie.
    wait_for("the orphan is reaped", TIMEOUT, || {
        proc_stat(orphan).is_none().then_some(())
    });
    let zombies = zombie_children(supervisor);
    assert!(zombies.is_empty(), "zombies under PID 1: {zombies:?}");
    get(port).expect("the program still serves");

    send_signal(supervisor, SIGTERM).unwrap();
    let status = unshare.wait_exit(TIMEOUT).expect("the namespace ends");
    assert_eq!(status.code(), Some(0), "{}", unshare.stderr());
}
