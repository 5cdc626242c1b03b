//! `--multi=N`: the launcher stays as the parent of N copies sharing their ports with
//! `SO_REUSEPORT`. It restarts them one after another on the restart signal, so capacity never
//! drops to zero, stops them on SIGTERM/SIGINT/SIGQUIT, and exits when none is left.
//!
//! Signals arrive through a signalfd, so no work happens in a signal handler.

use std::collections::HashMap;
use std::io;
use std::mem::MaybeUninit;
use std::num::NonZeroU32;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::ptr;
use std::time::Duration;

use huptime_handoff::InstanceRecord;

use crate::error::{EXIT_FAILURE, Error};
use crate::instances;
use crate::launch::{self, Launch};
use crate::process::{self, POLL_INTERVAL, Target};
use crate::records::RuntimeDir;
use crate::restart::{Progress, RestartWatch};

/// How often the records are checked while nothing else happens: a generation that is not
/// our child (its parent is the generation before it) exits without telling us.
const IDLE_INTERVAL: Duration = Duration::from_millis(500);
/// Added to `--ready-timeout` to bound one copy's restart.
const RESTART_SLACK: Duration = Duration::from_secs(30);

/// Runs `copies` copies of the program and supervises them until none is left.
pub fn supervise(
    launch: &Launch,
    dir: RuntimeDir,
    copies: NonZeroU32,
    stop_timeout: Duration,
) -> Result<ExitCode, Error> {
    // Generations forked by a copy's master outlive it: as subreaper we still reap them.
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(Error::io(
            "cannot become a child subreaper",
            io::Error::last_os_error(),
        ));
    }
    let options = launch.options();
    let signals = SignalFd::new(&[
        libc::SIGCHLD,
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGQUIT,
        options.signal,
    ])?;
    // SAFETY: getpid cannot fail.
    let pid = unsafe { libc::getpid() };
    let base = launch::instance_name(pid, process::unix_now());
    let mut supervisor = Supervisor {
        dir,
        pid,
        debug: options.debug,
        restart_signal: options.signal,
        restart_timeout: options.ready_timeout + RESTART_SLACK,
        stop_timeout,
        copies: (1..=copies.get())
            .map(|i| Copy {
                instance: format!("{base}.{i}"),
                exit: None,
            })
            .collect(),
        masters: HashMap::new(),
        children: Vec::new(),
        restart: None,
    };
    for index in 0..supervisor.copies.len() {
        if let Err(e) = supervisor.spawn(launch, index) {
            eprintln!("huptime: cannot start copy {}: {e}", index + 1);
            supervisor.shutdown()?;
            return Ok(ExitCode::from(EXIT_FAILURE));
        }
    }
    supervisor.run(&signals)
}

/// One of the N copies: an instance of its own, across all its generations.
struct Copy {
    instance: String,
    /// Exit status of its newest master that has exited: (generation, status).
    exit: Option<(u64, i32)>,
}

/// A restart of all copies, one after another.
#[derive(Default)]
struct Round {
    /// Index of the next copy to restart.
    next: usize,
    /// The copy being restarted now.
    current: Option<(usize, RestartWatch)>,
    /// Another restart signal came during this round: run one more afterwards.
    again: bool,
}

struct Supervisor {
    dir: RuntimeDir,
    pid: i32,
    debug: bool,
    restart_signal: i32,
    restart_timeout: Duration,
    stop_timeout: Duration,
    copies: Vec<Copy>,
    /// Masters seen in the records: PID to (copy index, generation).
    masters: HashMap<i32, (usize, u64)>,
    /// The processes we forked.
    children: Vec<Target>,
    restart: Option<Round>,
}

impl Supervisor {
    fn log(&self, message: &str) {
        if self.debug {
            eprintln!("huptime[{}] supervisor: {message}", self.pid);
        }
    }

    /// Forks copy `index`, which records itself and execs the program.
    fn spawn(&mut self, launch: &Launch, index: usize) -> io::Result<()> {
        // SAFETY: the launcher is single-threaded, so the child may run ordinary code until it
        // execs or exits, and it never returns from this branch.
        match unsafe { libc::fork() } {
            -1 => Err(io::Error::last_os_error()),
            0 => {
                let err = launch.exec(&self.dir, &self.copies[index].instance);
                eprintln!("huptime: {err}");
                // SAFETY: leaves the forked child without running the parent's destructors.
                unsafe { libc::_exit(i32::from(err.exit_status())) }
            }
            pid => {
                self.masters.insert(pid, (index, 0));
                if let Ok(starttime) = process::starttime(pid) {
                    self.children.push(Target { pid, starttime });
                }
                self.log(&format!(
                    "started copy {} as pid {pid} ({})",
                    index + 1,
                    self.copies[index].instance
                ));
                Ok(())
            }
        }
    }

    fn run(&mut self, signals: &SignalFd) -> Result<ExitCode, Error> {
        loop {
            let wait = if self.restart.is_some() {
                POLL_INTERVAL
            } else {
                IDLE_INTERVAL
            };
            for signal in signals.wait(wait)? {
                if signal == self.restart_signal {
                    self.request_restart();
                } else if signal != libc::SIGCHLD {
                    self.log(&format!("{}: stopping", crate::signal_name::name(signal)));
                    return self.shutdown();
                }
            }
            // Scan before reaping, so a master that just exited is known by its record.
            let live = self.refresh()?;
            let children_left = self.reap();
            self.advance_restart(&live);
            if live.is_empty() && !children_left {
                return Ok(self.outcome());
            }
        }
    }

    fn copy_of(&self, instance: &str) -> Option<usize> {
        self.copies.iter().position(|c| c.instance == instance)
    }

    /// Reads the records (removing stale ones), learns the masters of our copies, and returns
    /// the live records of our copies.
    fn refresh(&mut self) -> Result<Vec<InstanceRecord>, Error> {
        let scan = self.dir.scan()?;
        for record in scan.live.iter().chain(&scan.stale) {
            if let Some(index) = self.copy_of(&record.instance) {
                self.masters.insert(record.pid, (index, record.generation));
            }
        }
        Ok(scan
            .live
            .into_iter()
            .filter(|r| self.copy_of(&r.instance).is_some())
            .collect())
    }

    /// Collects every exited child; returns whether any child is left.
    fn reap(&mut self) -> bool {
        loop {
            let mut status = 0;
            // SAFETY: `status` is a valid place for the exit status.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            match pid {
                0 => return true,
                -1 if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
                -1 => return false,
                pid => {
                    let code = if libc::WIFEXITED(status) {
                        libc::WEXITSTATUS(status)
                    } else {
                        128 + libc::WTERMSIG(status)
                    };
                    let Some((index, generation)) = self.masters.remove(&pid) else {
                        continue;
                    };
                    self.log(&format!(
                        "copy {} pid {pid} (generation {generation}) exited with status {code}",
                        index + 1
                    ));
                    let exit = &mut self.copies[index].exit;
                    if exit.is_none_or(|(newest, _)| generation >= newest) {
                        *exit = Some((generation, code));
                    }
                }
            }
        }
    }

    /// 0 when every copy's last master exited with status 0.
    fn outcome(&self) -> ExitCode {
        if self.copies.iter().all(|c| matches!(c.exit, Some((_, 0)))) {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(EXIT_FAILURE)
        }
    }

    fn request_restart(&mut self) {
        match &mut self.restart {
            Some(round) => round.again = true,
            None => self.restart = Some(Round::default()),
        }
    }

    /// Moves the restart round on: judges the copy being restarted, then signals the next.
    fn advance_restart(&mut self, live: &[InstanceRecord]) {
        while let Some(mut round) = self.restart.take() {
            if let Some((index, watch)) = &round.current {
                match watch.check(live) {
                    Progress::Waiting => {
                        self.restart = Some(round);
                        return;
                    }
                    Progress::Done(done) => {
                        self.log(&format!("restarted copy {}: {done}", index + 1));
                    }
                    Progress::Failed(detail) => {
                        eprintln!("huptime: restart of copy {} failed: {detail}", index + 1);
                    }
                }
                round.current = None;
            }
            if round.next == self.copies.len() {
                self.restart = round.again.then(Round::default);
                continue;
            }
            let index = round.next;
            round.next += 1;
            round.current = self.begin_restart(index, live).map(|watch| (index, watch));
            self.restart = Some(round);
        }
    }

    /// Signals copy `index`'s current master, or says why it cannot.
    fn begin_restart(&self, index: usize, live: &[InstanceRecord]) -> Option<RestartWatch> {
        let instance = &self.copies[index].instance;
        let current = instances::group(live.to_vec())
            .into_iter()
            .find(|i| i.master().instance == *instance);
        let Some(current) = current else {
            eprintln!(
                "huptime: restart of copy {} failed: it is not running",
                index + 1
            );
            return None;
        };
        match RestartWatch::begin(current.master(), self.restart_timeout) {
            Ok(watch) => {
                self.log(&format!(
                    "restarting copy {}: pid {}",
                    index + 1,
                    current.master().pid
                ));
                Some(watch)
            }
            Err(detail) => {
                eprintln!("huptime: restart of copy {} failed: {detail}", index + 1);
                None
            }
        }
    }

    /// SIGTERM to every process of every copy, SIGKILL to those left after the stop timeout.
    fn shutdown(&mut self) -> Result<ExitCode, Error> {
        let live = self.refresh()?;
        let mut targets: Vec<Target> = live.iter().map(Target::from).collect();
        // A copy that has not written its record yet is still one of our children.
        for child in &self.children {
            if !targets.iter().any(|t| t.pid == child.pid) {
                targets.push(*child);
            }
        }
        let survivors = process::terminate(&targets, self.stop_timeout, || {
            self.reap();
        });
        for target in survivors {
            eprintln!("huptime: pid {} did not exit after SIGKILL", target.pid);
        }
        self.reap();
        self.dir.scan()?;
        Ok(ExitCode::SUCCESS)
    }
}

/// Signals delivered as readable events instead of to handlers.
struct SignalFd {
    fd: OwnedFd,
}

impl SignalFd {
    /// Blocks `signals` and opens a descriptor that reports them. SIGCHLD gets its default
    /// disposition: ignored, the kernel would reap children without telling us. (The copies
    /// get the launcher's original mask and dispositions back before they exec.)
    fn new(signals: &[i32]) -> Result<Self, Error> {
        let mut set = MaybeUninit::<libc::sigset_t>::zeroed();
        // SAFETY: the set is initialized by sigemptyset before use; the other calls take
        // valid pointers or plain integers.
        let fd = unsafe {
            libc::sigemptyset(set.as_mut_ptr());
            for signal in signals {
                libc::sigaddset(set.as_mut_ptr(), *signal);
            }
            libc::signal(libc::SIGCHLD, libc::SIG_DFL);
            if libc::sigprocmask(libc::SIG_BLOCK, set.as_ptr(), ptr::null_mut()) != 0 {
                return Err(Error::io(
                    "cannot block signals",
                    io::Error::last_os_error(),
                ));
            }
            libc::signalfd(-1, set.as_ptr(), libc::SFD_CLOEXEC | libc::SFD_NONBLOCK)
        };
        if fd < 0 {
            return Err(Error::io(
                "cannot create signalfd",
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        Ok(Self {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Waits up to `timeout` and returns the signals that arrived, if any.
    fn wait(&self, timeout: Duration) -> Result<Vec<i32>, Error> {
        let mut poll = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut poll, 1, millis) } < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                return Ok(Vec::new());
            }
            return Err(Error::io("cannot wait for signals", err));
        }
        let mut signals = Vec::new();
        loop {
            let mut info = MaybeUninit::<libc::signalfd_siginfo>::zeroed();
            let size = size_of::<libc::signalfd_siginfo>();
            // SAFETY: reads at most `size` bytes into `info`.
            let read = unsafe { libc::read(self.fd.as_raw_fd(), info.as_mut_ptr().cast(), size) };
            // Anything but a whole record (EAGAIN when drained) ends the batch.
            if usize::try_from(read) != Ok(size) {
                return Ok(signals);
            }
            // SAFETY: the kernel filled the whole record.
            let signal = unsafe { info.assume_init() }.ssi_signo;
            signals.push(i32::try_from(signal).unwrap_or_default());
        }
    }
}
