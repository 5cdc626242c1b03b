//! The restart-under-load scenario: a server runs under huptime while clients hammer it, and is
//! restarted several times with a new version each time. No client may notice, a request in
//! flight at each restart must be answered in full, and every old generation must go away.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use crate::client::{hold, wait_for_version};
use crate::load::Load;
use crate::process::{ServerProcess, pids_alive, read_pid_file, send_signal, wait_gone};
use crate::sandbox::Sandbox;
use crate::servers::ServerCommand;

/// Restarts per scenario.
pub const RESTARTS: usize = 3;
/// Load clients hammering the server throughout.
pub const LOAD_CLIENTS: usize = 6;
/// The request held open across each restart.
const HOLD_MS: u64 = 800;
/// Time for the held request to reach the server before the restart signal goes out.
const HOLD_HEAD_START: Duration = Duration::from_millis(200);
const START_TIMEOUT: Duration = Duration::from_secs(20);
const RESTART_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the load may wait for its first reply from a version that is already serving.
const SERVED_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an old generation may take to finish its connections and exit.
const RETIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// huptime's restart modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The default: the new generation is a new process, the old one drains and exits.
    Fork,
    /// `--exec`: the process re-executes itself and keeps its pid.
    Exec,
}

impl Mode {
    pub fn huptime_args(self) -> &'static [&'static str] {
        match self {
            Mode::Fork => &[],
            Mode::Exec => &["--exec"],
        }
    }

    /// The process a restart signal goes to: in fork mode the current `master`, in exec mode
    /// the `launched` process, in which every generation runs.
    pub fn restart_target(self, master: u32, launched: u32) -> u32 {
        match self {
            Mode::Fork => master,
            Mode::Exec => launched,
        }
    }
}

/// Sends SIGHUP to [`Mode::restart_target`]; `what` names the restart in the log.
///
/// # Panics
/// If the signal cannot be sent.
pub fn signal_restart(mode: Mode, master: u32, launched: u32, what: &str) {
    let target = mode.restart_target(master, launched);
    eprintln!("{what}: SIGHUP to pid {target}");
    send_signal(target, libc::SIGHUP).unwrap_or_else(|e| panic!("SIGHUP to {target}: {e}"));
}

/// What to run and how to watch it.
#[derive(Clone, Debug)]
pub struct RestartPlan {
    /// The server command line; it must listen on 127.0.0.1:`port` and write its main pid to
    /// `pid_file` at start-up.
    pub server: ServerCommand,
    pub mode: Mode,
    pub port: u16,
    pub pid_file: PathBuf,
    /// See [`crate::Style::replies_from_master`].
    pub replies_from_master: bool,
}

/// Runs the scenario; panics on the first broken promise.
///
/// `deploy(version)` makes the next start of the server answer with `version`: it writes a
/// version file, replaces the binary, ... It is called with `v1` before the first start and
/// with `v2`, `v3`, ... before each restart.
pub fn restart_under_load(sandbox: &Sandbox, plan: &RestartPlan, mut deploy: impl FnMut(&str)) {
    let versions: Vec<String> = (1..=RESTARTS + 1).map(|n| format!("v{n}")).collect();
    deploy(&versions[0]);
    let launched: ServerProcess = sandbox.start_server(
        plan.server.under_huptime(sandbox, plan.mode.huptime_args()),
        plan.port,
    );
    let first = wait_for_version(plan.port, &versions[0], START_TIMEOUT);
    let mut master = read_pid_file(&plan.pid_file);
    if plan.replies_from_master {
        assert_eq!(
            first.pid, master,
            "the reply should come from the pid in the pid file"
        );
    }
    let mut masters = vec![master];
    let mut held_replies = Vec::new();
    let load = Load::start(plan.port, LOAD_CLIENTS);
    load.wait_until_served_by(&versions[0], SERVED_TIMEOUT);

    for pair in versions.windows(2) {
        let (old, new) = (&pair[0], &pair[1]);
        let port = plan.port;
        let held = thread::spawn(move || hold(port, HOLD_MS));
        thread::sleep(HOLD_HEAD_START);

        deploy(new);
        signal_restart(
            plan.mode,
            master,
            launched.pid(),
            &format!("restart {old} -> {new}"),
        );
        let reply = wait_for_version(plan.port, new, RESTART_TIMEOUT);

        let held = held
            .join()
            .expect("the HOLD client panicked")
            .unwrap_or_else(|e| {
                panic!("HOLD request in flight at the restart {old} -> {new}: {e}")
            });
        eprintln!("restart {old} -> {new}: held request answered by {held:?}");
        held_replies.push(held);

        let new_master = read_pid_file(&plan.pid_file);
        match plan.mode {
            Mode::Fork => assert_ne!(
                new_master, master,
                "fork mode: {new} runs in the same process as {old}"
            ),
            Mode::Exec => {
                assert_eq!(
                    new_master, master,
                    "exec mode: {new} runs in another process than {old}"
                );
                assert_eq!(
                    pids_alive(&[launched.pid()]),
                    [launched.pid()],
                    "exec mode: the launched process is gone"
                );
            }
        }
        if plan.replies_from_master {
            assert_eq!(
                reply.pid, new_master,
                "the reply should come from the pid in the pid file"
            );
        }
        master = new_master;
        masters.push(master);
        // The load goes on being served after the restart, by the new version too.
        load.wait_until_served_by(new, SERVED_TIMEOUT);
    }

    let report = load.stop_without_failures();
    report.assert_versions(versions.iter().map(String::as_str));

    // Every process that answered for an old version, and every old master, must be gone; in
    // exec mode the master itself lives on as the current generation.
    let current = versions.last().expect("at least one version");
    let mut current_pids = report.pids_with(current);
    current_pids.insert(master);
    let old_pids: BTreeSet<u32> = versions[..RESTARTS]
        .iter()
        .flat_map(|version| report.pids_with(version))
        .chain(
            held_replies
                .iter()
                .filter(|reply| &reply.version != current)
                .map(|reply| reply.pid),
        )
        .chain(masters)
        .filter(|pid| !current_pids.contains(pid))
        .collect();
    let old_pids: Vec<u32> = old_pids.into_iter().collect();
    if let Err(left) = wait_gone(&old_pids, RETIRE_TIMEOUT) {
        panic!(
            "old generations' processes {left:?} still run {RETIRE_TIMEOUT:?} after the last restart"
        );
    }
}
