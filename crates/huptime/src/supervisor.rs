//! The launcher that stays the parent: `--multi=N` and `--supervise`.
//!
//! - `--multi=N`: N copies sharing their ports with `SO_REUSEPORT`. The restart signal restarts
//!   them one after another, so capacity never drops to zero.
//! - `--supervise`: one copy, under a launcher whose PID never changes (what systemd
//!   `Type=simple`, Docker and Kubernetes expect, even in fork mode). It keeps a copy of every
//!   listening socket of the current master (`pidfd_getfd`), so when the program crashes it is
//!   started again on the same sockets, as the next generation, and clients wait in the
//!   kernel's accept queue meanwhile instead of being refused. A crash loop backs off: 0.1 s,
//!   doubling up to `--max-backoff`, back to 0.1 s once a start has run for 30 s.
//!
//! Both forward the restart signal to the current masters, stop them on SIGTERM/SIGINT/SIGQUIT
//! (SIGKILL after `--timeout`), reap every child, and, as child subreaper (or PID 1 in a
//! container), every orphan of the program: no zombie is left behind. They exit when no process
//! of the program is left: with status 0 when the program's last master exited with 0 (or when
//! told to stop).

use std::collections::HashMap;
use std::io;
use std::num::NonZeroU32;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use huptime_handoff::state::InheritedSocket;
use huptime_handoff::{InstanceRecord, Mode, Phase, SocketIdentity};

use crate::error::{EXIT_FAILURE, Error};
use crate::instances;
use crate::launch::{self, Launch, Start};
use crate::process::{self, POLL_INTERVAL, Target};
use crate::records::{RuntimeDir, SupervisorMark};
use crate::restart::{Progress, RestartWatch};
use crate::signalfd::SignalFd;
use crate::sockinfo;

/// How often the records are checked while nothing else happens: a generation that is not
/// our child (its parent is the generation before it) exits without telling us.
const IDLE_INTERVAL: Duration = Duration::from_millis(500);
/// `--supervise` looks at the records this often, to keep copies of the current master's
/// sockets.
const WATCH_INTERVAL: Duration = Duration::from_millis(100);
/// Added to `--ready-timeout` to bound one copy's restart.
const RESTART_SLACK: Duration = Duration::from_secs(30);
/// The first delay before a crashed program is started again.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// A start that ran this long was no crash loop: the next crash waits [`MIN_BACKOFF`] again.
const STABLE_RUN: Duration = Duration::from_secs(30);
/// How long a master that vanished without an exit status we could collect (its parent, an
/// older generation, reaped it) may stay unexplained while processes are left.
const UNEXPLAINED_GRACE: Duration = Duration::from_secs(1);

/// Which kind of staying parent.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// `--multi=N`.
    Multi(NonZeroU32),
    /// `--supervise`.
    Supervise { max_backoff: Duration },
}

/// Runs the program under this process until no process of it is left.
pub fn run(
    launch: &Launch,
    dir: RuntimeDir,
    kind: Kind,
    stop_timeout: Duration,
) -> Result<ExitCode, Error> {
    // Generations forked by a master outlive it, and the program's orphans are ours too: as
    // subreaper we reap them all.
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
    let since = process::unix_now();
    let base = launch::instance_name(pid, since);
    let instances: Vec<String> = match kind {
        Kind::Multi(copies) => (1..=copies.get()).map(|i| format!("{base}.{i}")).collect(),
        Kind::Supervise { .. } => vec![base],
    };
    let starttime = process::starttime(pid)
        .map_err(|e| Error::io("cannot read the launcher's start time", e))?;
    let marks: Vec<SupervisorMark> = instances
        .iter()
        .map(|instance| SupervisorMark {
            instance: instance.clone(),
            pid,
            starttime,
            revives: matches!(kind, Kind::Supervise { .. }),
        })
        .collect();
    for mark in &marks {
        dir.write_supervisor(mark)?;
    }
    let revival = match kind {
        Kind::Multi(_) => None,
        Kind::Supervise { max_backoff } => Some(Revival::new(
            max_backoff,
            Keeper::adopt(launch.activated(), options.debug),
        )),
    };
    let mut supervisor = Supervisor {
        dir,
        pid,
        since,
        debug: options.debug,
        restart_signal: options.signal,
        restart_timeout: options.ready_timeout + RESTART_SLACK,
        stop_timeout,
        copies: instances
            .into_iter()
            .map(|instance| Copy {
                instance,
                exit: None,
            })
            .collect(),
        masters: HashMap::new(),
        children: Vec::new(),
        restart: None,
        revival,
    };
    let result = supervisor.start_all(launch, &signals);
    for mark in &marks {
        supervisor.dir.remove_supervisor(mark);
    }
    result
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    fn from_wait_status(status: i32) -> Self {
        if libc::WIFEXITED(status) {
            Self::Code(libc::WEXITSTATUS(status))
        } else {
            Self::Signal(libc::WTERMSIG(status))
        }
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Code(code) => write!(f, "exited with status {code}"),
            Self::Signal(signal) => write!(
                f,
                "was killed by signal {signal} ({})",
                crate::signal_name::name(*signal)
            ),
        }
    }
}

/// One copy: an instance of its own, across all its generations.
struct Copy {
    instance: String,
    /// How its newest master that has exited ended: (generation, exit).
    exit: Option<(u64, Exit)>,
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
    /// When the instance started: kept by every generation, also one started after a crash.
    since: u64,
    debug: bool,
    restart_signal: i32,
    restart_timeout: Duration,
    stop_timeout: Duration,
    copies: Vec<Copy>,
    /// Masters seen in the records or started by us: PID to (copy index, generation).
    masters: HashMap<i32, (usize, u64)>,
    /// The processes we forked.
    children: Vec<Target>,
    restart: Option<Round>,
    /// `--supervise`: what starts the program again when it crashes.
    revival: Option<Revival>,
}

impl Supervisor {
    fn log(&self, message: &str) {
        if self.debug {
            eprintln!("huptime[{}] supervisor: {message}", self.pid);
        }
    }

    fn start_all(&mut self, launch: &Launch, signals: &SignalFd) -> Result<ExitCode, Error> {
        for index in 0..self.copies.len() {
            let instance = self.copies[index].instance.clone();
            let start = Start {
                instance: &instance,
                generation: 0,
                since: self.since,
                sockets: launch.activated(),
            };
            if let Err(e) = self.spawn(launch, index, &start) {
                eprintln!("huptime: cannot start copy {}: {e}", index + 1);
                self.shutdown()?;
                return Ok(ExitCode::from(EXIT_FAILURE));
            }
        }
        self.run(launch, signals)
    }

    /// Forks copy `index`, which records itself and executes the program.
    fn spawn(&mut self, launch: &Launch, index: usize, start: &Start<'_>) -> io::Result<i32> {
        let pid = launch.spawn(&self.dir, start)?;
        self.masters.insert(pid, (index, start.generation));
        if let Ok(starttime) = process::starttime(pid) {
            self.children.push(Target { pid, starttime });
        }
        self.log(&format!(
            "started {} generation {} as pid {pid} with {} socket(s)",
            start.instance,
            start.generation,
            start.sockets.len()
        ));
        Ok(pid)
    }

    fn run(&mut self, launch: &Launch, signals: &SignalFd) -> Result<ExitCode, Error> {
        loop {
            for signal in signals.wait(self.wait_time())? {
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
            let reviving = self.watch_for_crash(launch, &live, children_left);
            if live.is_empty() && !children_left && !reviving {
                return Ok(self.outcome());
            }
        }
    }

    fn wait_time(&self) -> Duration {
        let mut wait = if self.restart.is_some() {
            POLL_INTERVAL
        } else {
            IDLE_INTERVAL
        };
        if let Some(revival) = &self.revival {
            wait = wait.min(WATCH_INTERVAL);
            if let Some(due) = revival.due {
                wait = wait.min(due.saturating_duration_since(Instant::now()));
            }
        }
        wait
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
                if let Some(revival) = &mut self.revival {
                    revival.saw(record);
                }
            }
        }
        Ok(scan
            .live
            .into_iter()
            .filter(|r| self.copy_of(&r.instance).is_some())
            .collect())
    }

    /// Collects every exited child (ours, and orphans handed to us); returns whether any child
    /// is left.
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
                    self.children.retain(|child| child.pid != pid);
                    let exit = Exit::from_wait_status(status);
                    let Some((index, generation)) = self.masters.remove(&pid) else {
                        continue;
                    };
                    self.log(&format!(
                        "{} pid {pid} (generation {generation}) {exit}",
                        self.copies[index].instance
                    ));
                    let last = &mut self.copies[index].exit;
                    if last.is_none_or(|(newest, _)| generation >= newest) {
                        *last = Some((generation, exit));
                    }
                }
            }
        }
    }

    /// 0 when every copy's last master exited with status 0.
    fn outcome(&self) -> ExitCode {
        if self
            .copies
            .iter()
            .all(|c| matches!(c.exit, Some((_, Exit::Code(0)))))
        {
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
                    Progress::Failed(failure) => {
                        eprintln!("huptime: restart of copy {} failed: {failure}", index + 1);
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

    /// `--supervise`: keeps copies of the current master's sockets, notices when the program
    /// crashed, and starts it again when the back-off has passed. Returns whether a start is
    /// pending (the supervisor must not end meanwhile).
    fn watch_for_crash(
        &mut self,
        launch: &Launch,
        live: &[InstanceRecord],
        children_left: bool,
    ) -> bool {
        let Some(revival) = &mut self.revival else {
            return false;
        };
        let now = Instant::now();
        let copy = &self.copies[0];
        // The master that serves (or will): a retired fork-mode generation still draining is
        // not one; an exec-mode one is about to be the next generation in the same process.
        let current = live
            .iter()
            .filter(|r| r.instance == copy.instance)
            .filter(|r| r.phase != Phase::Draining || r.mode == Mode::Exec)
            .max_by_key(|r| r.generation);
        if let Some(master) = current {
            revival.keeper.refresh(master);
            revival.unexplained_since = None;
            return revival.due.is_some();
        }
        if let Some(due) = revival.due {
            if now < due {
                return true;
            }
            self.start_again(launch);
            // Started (a child to wait for), or to be tried again.
            return true;
        }
        let Some(newest) = revival.newest else {
            return false;
        };
        let exit = copy
            .exit
            .filter(|(generation, _)| *generation >= newest.generation)
            .map(|(_, exit)| exit);
        let cause = match exit {
            // Ended on its own: the supervisor ends once no process of it is left.
            Some(Exit::Code(0)) => return false,
            Some(exit) => exit.to_string(),
            None => {
                if newest.target.alive() {
                    return false;
                }
                let since = *revival.unexplained_since.get_or_insert(now);
                if children_left && now.duration_since(since) < UNEXPLAINED_GRACE {
                    return false;
                }
                "ended (its exit status went to its parent generation)".to_owned()
            }
        };
        revival.unexplained_since = None;
        let delay = revival.schedule(now);
        eprintln!(
            "huptime: the program (pid {}, generation {}) {cause}; starting it again in {} \
             with {} kept socket(s)",
            newest.target.pid,
            newest.generation,
            crate::display::seconds(delay),
            revival.keeper.kept.len()
        );
        true
    }

    /// Starts the program again as the next generation, on the kept sockets.
    fn start_again(&mut self, launch: &Launch) {
        let Some(mut revival) = self.revival.take() else {
            return;
        };
        revival.due = None;
        let generation = revival.newest.map_or(0, |n| n.generation + 1);
        let sockets = revival.keeper.sockets();
        let instance = self.copies[0].instance.clone();
        let start = Start {
            instance: &instance,
            generation,
            since: self.since,
            sockets: &sockets,
        };
        match self.spawn(launch, 0, &start) {
            Ok(pid) => {
                revival.last_start = Instant::now();
                if let Ok(starttime) = process::starttime(pid) {
                    revival.newest = Some(Newest {
                        target: Target { pid, starttime },
                        generation,
                    });
                }
            }
            Err(e) => {
                let delay = revival.schedule(Instant::now());
                eprintln!(
                    "huptime: cannot start the program again: {e}; trying again in {}",
                    crate::display::seconds(delay)
                );
            }
        }
        self.revival = Some(revival);
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

/// The newest master of the supervised instance we know of.
#[derive(Clone, Copy, Debug)]
struct Newest {
    target: Target,
    generation: u64,
}

/// `--supervise`: the kept sockets and the crash back-off.
struct Revival {
    keeper: Keeper,
    max_backoff: Duration,
    /// The delay before the next start after a crash.
    backoff: Duration,
    /// When the program is to be started again.
    due: Option<Instant>,
    last_start: Instant,
    newest: Option<Newest>,
    /// Since when no master serves and we cannot tell how the last one ended.
    unexplained_since: Option<Instant>,
}

impl Revival {
    fn new(max_backoff: Duration, keeper: Keeper) -> Self {
        Self {
            keeper,
            max_backoff,
            backoff: MIN_BACKOFF,
            due: None,
            last_start: Instant::now(),
            newest: None,
            unexplained_since: None,
        }
    }

    /// Learns of a master from the records.
    fn saw(&mut self, record: &InstanceRecord) {
        if self
            .newest
            .is_none_or(|newest| record.generation >= newest.generation)
        {
            self.newest = Some(Newest {
                target: Target::from(record),
                generation: record.generation,
            });
        }
    }

    /// Schedules the next start after a crash; returns the delay.
    fn schedule(&mut self, now: Instant) -> Duration {
        if self.last_start.elapsed() >= STABLE_RUN {
            self.backoff = MIN_BACKOFF;
        }
        let delay = self.backoff.min(self.max_backoff);
        self.due = Some(now + delay);
        self.backoff = (self.backoff * 2).min(self.max_backoff.max(MIN_BACKOFF));
        delay
    }
}

/// Copies of the current master's listening sockets, taken with `pidfd_getfd` (the supervisor
/// is the program's ancestor, so the kernel allows it) whenever its record changes.
struct Keeper {
    kept: Vec<Kept>,
    /// The record the copies were taken from.
    source: Option<Source>,
    warned: bool,
    debug: bool,
}

struct Kept {
    identity: SocketIdentity,
    fd: OwnedFd,
}

#[derive(PartialEq, Eq)]
struct Source {
    pid: i32,
    starttime: u64,
    generation: u64,
    listeners: Vec<InheritedSocket>,
}

impl Keeper {
    /// Starts with the sockets systemd passed, if any: they are the program's first sockets.
    fn adopt(activated: &[InheritedSocket], debug: bool) -> Self {
        let kept = activated
            .iter()
            .map(|socket| Kept {
                identity: socket.identity.clone(),
                // SAFETY: the activated descriptors are the launcher's and nothing else in it
                // closes them; from here on the keeper owns them.
                fd: unsafe { OwnedFd::from_raw_fd(socket.fd) },
            })
            .collect();
        Self {
            kept,
            source: None,
            warned: false,
            debug,
        }
    }

    /// The sockets for a new start (close-on-exec here; the child clears that).
    fn sockets(&self) -> Vec<InheritedSocket> {
        self.kept
            .iter()
            .map(|kept| InheritedSocket {
                fd: kept.fd.as_raw_fd(),
                identity: kept.identity.clone(),
            })
            .collect()
    }

    /// Takes copies of `master`'s sockets if its record changed since the last copies. The
    /// new copies replace the old ones; an old copy stays only for a socket the master still
    /// lists but could not be copied.
    fn refresh(&mut self, master: &InstanceRecord) {
        // A draining (exec-mode) master lists no sockets, its descriptors being ghosts; one
        // starting may not have bound them yet: keep what we have.
        if master.phase == Phase::Draining
            || (master.listeners.is_empty() && master.phase == Phase::Starting)
        {
            return;
        }
        let source = Source {
            pid: master.pid,
            starttime: master.starttime,
            generation: master.generation,
            listeners: master.listeners.clone(),
        };
        if self.source.as_ref() == Some(&source) {
            return;
        }
        self.source = Some(source);
        match copies_of(master) {
            Ok(mut fresh) => {
                for old in self.kept.drain(..) {
                    let listed = master.listeners.iter().any(|l| l.identity == old.identity);
                    let copied = fresh.iter().any(|k| k.identity == old.identity);
                    if listed && !copied {
                        fresh.push(old);
                    }
                }
                self.kept = fresh;
                if self.debug {
                    let names: Vec<String> =
                        self.kept.iter().map(|k| k.identity.to_string()).collect();
                    eprintln!(
                        "huptime supervisor: keeping {} socket(s) of pid {} (generation {}): {}",
                        self.kept.len(),
                        master.pid,
                        master.generation,
                        names.join(", ")
                    );
                }
            }
            Err(e) if !self.warned => {
                self.warned = true;
                crate::warn(&format!(
                    "cannot keep copies of the sockets of pid {} ({e}); if the program crashes, \
                     clients are refused until it has bound them again",
                    master.pid
                ));
            }
            Err(_) => {}
        }
    }
}

fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a PID and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn pidfd_getfd(pidfd: &OwnedFd, target: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_getfd takes descriptors and flags and returns a new (close-on-exec)
    // descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Copies of the sockets `master`'s record lists, each checked to be the socket it says (the
/// descriptor number may have been reused since the record was written).
fn copies_of(master: &InstanceRecord) -> io::Result<Vec<Kept>> {
    let pidfd = pidfd_open(master.pid)?;
    // The PID could have been recycled before the pidfd pinned it.
    if !Target::from(master).alive() {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    let mut copies = Vec::new();
    for listener in &master.listeners {
        let fd = match pidfd_getfd(&pidfd, listener.fd) {
            Ok(fd) => fd,
            // Closed since the record was written: the next record will say.
            Err(e) if e.raw_os_error() == Some(libc::EBADF) => continue,
            Err(e) => return Err(e),
        };
        if sockinfo::identity_of(fd.as_raw_fd()).is_ok_and(|id| id == listener.identity) {
            copies.push(Kept {
                identity: listener.identity.clone(),
                fd,
            });
        }
    }
    Ok(copies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_limit() {
        let mut revival = Revival::new(Duration::from_millis(500), Keeper::adopt(&[], false));
        let now = Instant::now();
        let delays: Vec<u128> = (0..6).map(|_| revival.schedule(now).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500, 500]);
        revival.last_start = now - STABLE_RUN;
        assert_eq!(revival.schedule(now), MIN_BACKOFF);
        let mut none = Revival::new(Duration::ZERO, Keeper::adopt(&[], false));
        assert_eq!(none.schedule(now), Duration::ZERO);
        assert_eq!(none.schedule(now), Duration::ZERO);
    }

    #[test]
    fn exits_are_described() {
        assert_eq!(Exit::Code(3).to_string(), "exited with status 3");
        assert_eq!(
            Exit::Signal(libc::SIGKILL).to_string(),
            "was killed by signal 9 (SIGKILL)"
        );
    }

    #[test]
    fn copies_of_our_own_sockets() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let pid = std::process::id() as i32;
        let identity = sockinfo::identity_of(listener.as_raw_fd()).unwrap();
        let mut record = InstanceRecord {
            instance: "1-1".into(),
            pid,
            starttime: process::starttime(pid).unwrap(),
            generation: 0,
            mode: Mode::Fork,
            phase: Phase::Serving,
            since: 1,
            generation_since: 1,
            signal: libc::SIGHUP,
            command: vec!["srv".into()],
            sockets: vec![],
            listeners: vec![InheritedSocket {
                fd: listener.as_raw_fd(),
                identity: identity.clone(),
            }],
            connections: 0,
            last: None,
        };
        let mut keeper = Keeper::adopt(&[], false);
        keeper.refresh(&record);
        assert_eq!(keeper.kept.len(), 1, "copied our own listener");
        assert_eq!(keeper.kept[0].identity, identity);
        // A record whose descriptor is now something else is not believed.
        let file = std::fs::File::open("/dev/null").unwrap();
        record.listeners[0].fd = file.as_raw_fd();
        record.generation = 1;
        keeper.refresh(&record);
        assert_eq!(
            keeper.kept.len(),
            1,
            "kept the older copy of a listed socket"
        );
        record.listeners.clear();
        record.generation = 2;
        keeper.refresh(&record);
        assert!(
            keeper.kept.is_empty(),
            "a socket no longer listed is let go"
        );
    }
}
