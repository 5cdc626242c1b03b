//! Signal storms: 50 restart signals within a second, under load.
//!
//! Before each signal the test deploys a new version (`s1` ... `s50`), then signals the master
//! the way an operator's script would: `kill -HUP $(cat server.pid)` in fork mode (the pid file
//! names the newest generation's master as soon as it started; a signal to a process that just
//! exited is sent again to the pid the file names then), the one pid in exec mode. Signals that
//! arrive while a restart is under way are coalesced, never lost and never overlapping. Then:
//!
//! - no request failed;
//! - one generation is left: one live instance record, in phase `serving`, naming the master,
//!   which is the sandbox's only process;
//! - it serves the last version deployed, `s50`: a signal was sent after that deploy, so a
//!   generation must have started after it.
//!
//! Then single signals at the moments a coalescing restart is most easily lost, each followed
//! by a check that the version deployed before the last signal is served in the end and that
//! one generation is left:
//!
//! - fork mode, a signal to the old master while the new generation is still starting (a slow
//!   start of `servers/flaky.py`, after it read its version);
//! - fork mode, a signal to the new master just as it becomes ready: it restarts only once the
//!   old generation heard that it is ready, so that the old one retires;
//! - fork mode, two signals to the old master while it drains (a `HOLD` request keeps it): the
//!   first is passed on to the new master, and so must the second be, which arrives while that
//!   master's own restart is under way;
//! - exec mode, a signal while the process drains before executing the new generation.
//!
//! Needs `cargo build --workspace` first.

mod safe_handover;

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use huptime_tests::{
    Load, Mode, SIGHUP, Sandbox, ServerCommand, Style, free_port, get, hold, pids_alive,
    read_pid_file, send_signal, wait_for, wait_for_version, wait_until,
};
use safe_handover::{
    Flaky, Instance, Record, start, start_with_stderr, threads_waiting, write_file,
};

const SIGNALS: usize = 50;
/// The storm lasts under a second: signal n goes out this long after the first (as near as the
/// machine allows).
const INTERVAL: Duration = Duration::from_millis(19);
const LOAD_CLIENTS: usize = 4;
const SERVED_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the storm may take to settle into one generation serving the last version. Each
/// restart takes a fraction of a second, and coalescing keeps their number small.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a signal to a process that has just exited is sent again to the newest master.
const RETRIES: usize = 100;
const RETRY_PAUSE: Duration = Duration::from_millis(5);
/// What `--debug` logs when a master starts a restart.
const RESTART_LINE: &str = "restart signal: starting generation";
/// How long a step of the single-signal tests may take to show (a start, a phase).
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// The request that keeps an old generation draining: longer than the steps it spans.
const DRAIN_HOLD_MS: u64 = 4000;
const HOLD_HEAD_START: Duration = Duration::from_millis(200);
/// How long a restart thread gets to take up a signal (and block on a full stderr, as the
/// program's thread does) before the test lets the output flow again.
const TAKE_UP_TIME: Duration = Duration::from_millis(500);
const COPY_PAUSE: Duration = Duration::from_millis(5);

/// What `--debug` logs when a retiring master passes a restart request on to its successor.
const PASSED_ON_LINE: &str = "restart signal while retiring: passed on to pid";

/// Whether `master` (the pid file's) is left alone: the one live record, in phase `serving`,
/// and the sandbox's only process, with no restart request passed on to it. A retiring master
/// passes a signal on with `kill` and exits; until `master`'s restart thread takes the request
/// up, nothing but that log line shows that one more restart is due, and a master that was
/// passed a request restarts (or passes it on), so it cannot be the last one.
fn one_generation_left(sandbox: &Sandbox, instance: &Instance, master: u32) -> bool {
    let records = instance.records();
    let passed_on = format!("{PASSED_ON_LINE} {master}");
    records.len() == 1
        && records[0].phase == "serving"
        && records[0].pid == master
        && sandbox.processes() == [master]
        && !instance
            .launched
            .stderr()
            .lines()
            .any(|line| line.ends_with(&passed_on))
}

/// Waits until `instance` is one generation again, serving `version` from the pid in
/// `pid_file` and alone in the sandbox; panics if it does not within [`SETTLE_TIMEOUT`].
fn assert_settles(
    sandbox: &Sandbox,
    instance: &Instance,
    port: u16,
    pid_file: &std::path::Path,
    version: &str,
) {
    let settled = Instant::now();
    let mut last = String::new();
    let served = wait_until(SETTLE_TIMEOUT, || {
        last = match get(port) {
            Ok(reply) => format!("{reply:?}"),
            Err(e) => e.to_string(),
        };
        last.contains(&format!("version: \"{version}\""))
    });
    assert!(
        served,
        "{version}, deployed before the last signal, is not served {SETTLE_TIMEOUT:?} later (last \
         reply: {last}): a restart signal was lost"
    );
    let one_generation = wait_until(SETTLE_TIMEOUT, || {
        one_generation_left(sandbox, instance, read_pid_file(pid_file))
    });
    assert!(
        one_generation,
        "more than one generation is left: records {:#?}, processes {:?}",
        instance.records(),
        sandbox.processes()
    );
    eprintln!(
        "{version} alone serves {:?} after the last signal",
        settled.elapsed()
    );
}

fn storm(mode: Mode) {
    let sandbox = Sandbox::new(&format!("storm-{mode:?}"));
    let port = free_port();
    let version_file = sandbox.file("version");
    let pid_file = sandbox.file("server.pid");
    write_file(&version_file, "s0");
    let server = ServerCommand::python_direct(Style::Threaded.script()).serving(
        port,
        &version_file,
        &pid_file,
    );
    let mut args = vec!["--debug"];
    args.extend(mode.huptime_args());
    let instance = start(&sandbox, &args, server, port);
    let launched = instance.launched.pid();
    let load = Load::start(port, LOAD_CLIENTS);
    load.wait_until_served_by("s0", SERVED_TIMEOUT);

    let started = Instant::now();
    let mut targets = Vec::new();
    for n in 1..=SIGNALS {
        write_file(&version_file, &format!("s{n}"));
        let mut attempt = 0;
        loop {
            let target = mode.restart_target(read_pid_file(&pid_file), launched);
            match send_signal(target, SIGHUP) {
                Ok(()) => {
                    targets.push(target);
                    break;
                }
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) && attempt < RETRIES => {
                    attempt += 1;
                    thread::sleep(RETRY_PAUSE);
                }
                Err(e) => panic!("signal {n} to pid {target}: {e}"),
            }
        }
        let next = started + INTERVAL * n as u32;
        thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let storm_took = started.elapsed();
    let mut distinct = targets.clone();
    distinct.dedup();
    eprintln!("{SIGNALS} signals in {storm_took:?}, to the pids {distinct:?}");

    let settled = Instant::now();
    let last = format!("s{SIGNALS}");
    let reply = wait_for_version(port, &last, SETTLE_TIMEOUT);
    let one_generation = wait_until(SETTLE_TIMEOUT, || {
        one_generation_left(&sandbox, &instance, read_pid_file(&pid_file))
    });
    let records: Vec<Record> = instance.records();
    let master = read_pid_file(&pid_file);
    assert!(
        one_generation,
        "{:?} after the storm, more than one generation is left: records {records:#?}, \
         processes {:?}, master {master}",
        settled.elapsed(),
        sandbox.processes()
    );
    eprintln!(
        "settled {:?} after the storm: generation {} (pid {master}) serves {last}",
        settled.elapsed(),
        records[0].generation
    );
    // Signals passed on during the storm may have made one more restart after `reply` came:
    // what answers now is the one generation left.
    let now = wait_for_version(port, &last, SETTLE_TIMEOUT);
    assert_eq!(now.pid, master, "first {reply:?}, now {now:?}");
    if mode == Mode::Exec {
        assert_eq!(master, launched, "exec mode keeps the pid");
    }
    // Still the last version, and still one generation, a moment later.
    thread::sleep(Duration::from_millis(500));
    let reply = get(port).unwrap_or_else(|e| panic!("GET after the storm: {e}"));
    assert_eq!((reply.version.as_str(), reply.pid), (last.as_str(), master));
    assert_eq!(instance.records().len(), 1, "{:#?}", instance.records());

    load.wait_until_served_by(&last, SERVED_TIMEOUT);
    let report = load.stop_without_failures();
    let restarts = instance.launched.stderr().matches(RESTART_LINE).count();
    eprintln!(
        "{SIGNALS} signals made {restarts} restarts; the load saw {} versions",
        report.versions().len()
    );
    assert!(
        (1..=SIGNALS).contains(&restarts),
        "{restarts} restarts for {SIGNALS} signals"
    );
}

#[test]
fn fifty_signals_fork() {
    storm(Mode::Fork);
}

#[test]
fn fifty_signals_exec() {
    storm(Mode::Exec);
}

/// Fork mode: a signal to the old master while the new generation is starting (it has read
/// its version and is slow to bind) is acted on once that generation is ready.
#[test]
fn a_signal_while_the_new_generation_starts_is_not_lost() {
    let sandbox = Sandbox::new("storm-while-starting");
    let flaky = Flaky::new(&sandbox);
    let port = flaky.port;
    flaky.deploy("good", "v1");
    let instance = start(&sandbox, &["--debug"], flaky.command(), port);
    let master = instance.launched.pid();
    let load = Load::start(port, LOAD_CLIENTS);
    load.wait_until_served_by("v1", SERVED_TIMEOUT);

    flaky.deploy("slow", "v2");
    send_signal(master, SIGHUP).expect("SIGHUP to the master");
    assert!(
        wait_until(STEP_TIMEOUT, || flaky.started("slow", "v2")),
        "the slow start of v2 did not begin"
    );
    // As `kill -HUP $(cat server.pid)` would: the new generation has not written it yet.
    assert_eq!(
        read_pid_file(&flaky.pid),
        master,
        "v2 wrote its pid file early"
    );
    flaky.deploy("good", "v3");
    send_signal(master, SIGHUP).expect("SIGHUP to the master");

    assert_settles(&sandbox, &instance, port, &flaky.pid, "v3");
    load.stop_without_failures();
}

/// Fork mode: a signal to the new master just as it becomes ready, after its program thread
/// saw it serve its socket and before its restart thread heard of it. The restart that signal
/// asks for must wait until the old generation was told that this one is ready: begun earlier,
/// it swallowed the news, the old generation never heard it, took the new one's retiring for a
/// failed start and went on serving beside the newest. A full stderr pipe holds the program's
/// thread at that moment (on its `ready` line), so the moment is wide open.
#[test]
fn a_signal_as_the_new_generation_becomes_ready_is_not_taken_up_first() {
    let sandbox = Sandbox::new("storm-as-ready");
    let flaky = Flaky::new(&sandbox);
    let port = flaky.port;
    flaky.deploy("good", "v1");
    let (stderr, server_end) = StderrPipe::new(&sandbox);
    let instance = start_with_stderr(
        &sandbox,
        &["--debug"],
        flaky.command(),
        port,
        server_end,
        stderr.log.clone(),
    );
    let old = instance.launched.pid();

    flaky.deploy("paused", "v2");
    send_signal(old, SIGHUP).expect("SIGHUP to the master");
    let new = wait_for("the paused start of v2", STEP_TIMEOUT, || {
        flaky.started_as("paused").first().copied()
    });
    let listening = format!("huptime[{new}] gen 1: listen on fd");
    assert!(
        wait_until(STEP_TIMEOUT, || instance
            .launched
            .stderr()
            .contains(&listening)),
        "v2 does not listen"
    );
    flaky.deploy("good", "v3");
    {
        let _held = stderr.stop_reading_and_fill();
        write_file(&flaky.go, "go");
        assert!(
            wait_until(STEP_TIMEOUT, || threads_writing(new) == 1),
            "v2 is not held writing its ready line: {}",
            threads_waiting(new)
        );
        send_signal(new, SIGHUP).expect("SIGHUP to the new master");
        // A restart thread that takes the signal up at once blocks writing too.
        wait_until(TAKE_UP_TIME, || threads_writing(new) > 1);
    }

    assert_settles(&sandbox, &instance, port, &flaky.pid, "v3");
    let log = instance.launched.stderr();
    assert!(
        log.contains(&format!("generation 1 (pid {new}) is ready")),
        "generation 0 never heard that generation 1 is ready"
    );
    assert!(!log.contains("restart failed"), "a restart failed");
}

/// How many threads of `pid` are in `write` (held by a full pipe, here).
fn threads_writing(pid: u32) -> usize {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|task| fs::read_to_string(task.ok()?.path().join("syscall")).ok())
        .filter(|syscall| {
            syscall.split_whitespace().next() == Some(libc::SYS_write.to_string().as_str())
        })
        .count()
}

/// The instance's stderr through a FIFO that the test copies to [`StderrPipe::log`], and can
/// stop copying and fill, so that the next line a process writes there blocks.
struct StderrPipe {
    log: PathBuf,
    /// Held while the copy must not read.
    gate: Arc<Mutex<()>>,
    /// The test's own write end, non-blocking (its own open file description).
    filler: File,
    stop: Arc<AtomicBool>,
    copier: Option<JoinHandle<()>>,
}

impl StderrPipe {
    /// The pipe, and the write end to give the instance as its stderr.
    fn new(sandbox: &Sandbox) -> (StderrPipe, Stdio) {
        let fifo = sandbox.file("stderr.fifo");
        let path = CString::new(fifo.as_os_str().as_bytes()).expect("a path without NUL");
        // SAFETY: mkfifo with a NUL-terminated path.
        assert_eq!(
            unsafe { libc::mkfifo(path.as_ptr(), 0o600) },
            0,
            "mkfifo {}: {}",
            fifo.display(),
            std::io::Error::last_os_error()
        );
        let open = |write: bool, nonblocking: bool| {
            OpenOptions::new()
                .read(!write)
                .write(write)
                .custom_flags(if nonblocking { libc::O_NONBLOCK } else { 0 })
                .open(&fifo)
                .unwrap_or_else(|e| panic!("open {}: {e}", fifo.display()))
        };
        // The reader first: opening a write end waits for one.
        let mut reader = open(false, true);
        let server_end = open(true, false);
        let filler = open(true, true);
        let log = sandbox.file("server-1.stderr-copy.log");
        let mut copy =
            File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let gate = Arc::new(Mutex::new(()));
        let stop = Arc::new(AtomicBool::new(false));
        let copier = {
            let (gate, stop) = (Arc::clone(&gate), Arc::clone(&stop));
            thread::spawn(move || {
                let mut buffer = [0u8; 8192];
                loop {
                    let read = {
                        let _open = gate.lock().unwrap_or_else(|e| e.into_inner());
                        reader.read(&mut buffer)
                    };
                    match read {
                        Ok(n) if n > 0 => {
                            let _ = copy.write_all(&buffer[..n]);
                            continue;
                        }
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        _ if stop.load(Ordering::SeqCst) => return,
                        _ => thread::sleep(COPY_PAUSE),
                    }
                }
            })
        };
        let pipe = StderrPipe {
            log,
            gate,
            filler,
            stop,
            copier: Some(copier),
        };
        (pipe, Stdio::from(server_end))
    }

    /// Stops the copy and fills the pipe up; the copy goes on when the guard is dropped.
    fn stop_reading_and_fill(&self) -> MutexGuard<'_, ()> {
        let held = self.gate.lock().unwrap_or_else(|e| e.into_inner());
        // Newlines: the log gets empty lines, no line gets garbled. A byte at a time at the end,
        // so that no room is left.
        let chunk = [b'\n'; 4096];
        for size in [chunk.len(), 1] {
            loop {
                match (&self.filler).write(&chunk[..size]) {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("fill the stderr pipe: {e}"),
                }
            }
        }
        held
    }
}

impl Drop for StderrPipe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(copier) = self.copier.take() {
            let _ = copier.join();
        }
    }
}

/// Fork mode: two signals to the old master while it drains. The first is passed on to the new
/// master, which starts v3 (slowly); the second arrives during that restart and must lead to
/// one more, to v4.
#[test]
fn signals_to_a_draining_master_are_not_lost() {
    let sandbox = Sandbox::new("storm-while-draining-fork");
    let flaky = Flaky::new(&sandbox);
    let port = flaky.port;
    flaky.deploy("good", "v1");
    let instance = start(&sandbox, &["--debug"], flaky.command(), port);
    let old = instance.launched.pid();
    let load = Load::start(port, LOAD_CLIENTS);
    load.wait_until_served_by("v1", SERVED_TIMEOUT);
    let held = thread::spawn(move || hold(port, DRAIN_HOLD_MS));
    thread::sleep(HOLD_HEAD_START);

    flaky.deploy("good", "v2");
    send_signal(old, SIGHUP).expect("SIGHUP to the master");
    wait_for_version(port, "v2", STEP_TIMEOUT);
    flaky.deploy("slow", "v3");
    assert_eq!(pids_alive(&[old]), [old], "the old master no longer drains");
    send_signal(old, SIGHUP).expect("SIGHUP to the draining master");
    assert!(
        wait_until(STEP_TIMEOUT, || flaky.started("slow", "v3")),
        "the signal to the draining master was not passed on: no start of v3"
    );
    flaky.deploy("good", "v4");
    assert_eq!(pids_alive(&[old]), [old], "the old master no longer drains");
    send_signal(old, SIGHUP).expect("SIGHUP to the draining master");

    assert_settles(&sandbox, &instance, port, &flaky.pid, "v4");
    let held = held
        .join()
        .expect("the HOLD client panicked")
        .unwrap_or_else(|e| panic!("the HOLD request across the restarts: {e}"));
    assert_eq!(held.version, "v1", "{held:?}");
    load.stop_without_failures();
}

/// Exec mode: a signal while the process drains before executing v2 leads to one more restart,
/// to v3.
#[test]
fn a_signal_while_draining_in_exec_mode_is_not_lost() {
    let sandbox = Sandbox::new("storm-while-draining-exec");
    let flaky = Flaky::new(&sandbox);
    let port = flaky.port;
    flaky.deploy("good", "v1");
    let instance = start(&sandbox, &["--debug", "--exec"], flaky.command(), port);
    let pid = instance.launched.pid();
    let load = Load::start(port, LOAD_CLIENTS);
    load.wait_until_served_by("v1", SERVED_TIMEOUT);
    let held = thread::spawn(move || hold(port, DRAIN_HOLD_MS));
    thread::sleep(HOLD_HEAD_START);

    flaky.deploy("good", "v2");
    send_signal(pid, SIGHUP).expect("SIGHUP to the server");
    assert!(
        wait_until(STEP_TIMEOUT, || instance
            .records()
            .iter()
            .any(|record| record.phase == "draining")),
        "the server did not start draining: {:#?}",
        instance.records()
    );
    flaky.deploy("good", "v3");
    send_signal(pid, SIGHUP).expect("SIGHUP to the draining server");

    assert_settles(&sandbox, &instance, port, &flaky.pid, "v3");
    assert_eq!(read_pid_file(&flaky.pid), pid, "exec mode keeps the pid");
    let held = held
        .join()
        .expect("the HOLD client panicked")
        .unwrap_or_else(|e| panic!("the HOLD request across the restarts: {e}"));
    // Answered in full; by v1 unless it still waited in the queue when v1 stopped accepting.
    eprintln!("held request answered by {held:?}");
    load.stop_without_failures();
}
