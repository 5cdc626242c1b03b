//! One restart of one instance, seen from outside: signal its master, then judge from the
//! records whether the new generation took over, the attempt failed, or time ran out.

use std::cell::Cell;
use std::time::{Duration, Instant};

use huptime_handoff::{InstanceRecord, Mode, Phase};

use crate::display;
use crate::process::Target;
use crate::signal_name;

/// How long the old master may be gone with no newer generation in the records before the
/// restart counts as failed: the new generation reports readiness (and the old one retires and
/// exits) a moment before it writes its first record.
const VANISHED_GRACE: Duration = Duration::from_secs(2);

/// A restart that has been asked for and is being watched.
#[derive(Debug)]
pub struct RestartWatch {
    instance: String,
    mode: Mode,
    old: Target,
    old_generation: u64,
    /// The master's attempt counter before the signal: a higher one reports on our attempt.
    old_attempt: u64,
    started: Instant,
    timeout: Duration,
    /// When (time since the start) the old master was first seen gone with no newer generation.
    vanished_at: Cell<Option<Duration>>,
}

/// How a restart went.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    Waiting,
    Done(Restarted),
    Failed(String),
}

/// A completed restart.
#[derive(Debug, PartialEq, Eq)]
pub struct Restarted {
    pub old_pid: i32,
    pub old_generation: u64,
    pub new_pid: i32,
    pub new_generation: u64,
    pub elapsed: Duration,
}

impl std::fmt::Display for Restarted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} (generation {}) -> pid {} (generation {}) in {} ms",
            self.old_pid,
            self.old_generation,
            self.new_pid,
            self.new_generation,
            self.elapsed.as_millis()
        )
    }
}

impl RestartWatch {
    /// Sends the restart signal to `master` and starts watching.
    pub fn begin(master: &InstanceRecord, timeout: Duration) -> Result<Self, String> {
        let old = Target::from(master);
        old.signal(master.signal).map_err(|e| {
            format!(
                "cannot send {} to pid {}: {e}",
                signal_name::name(master.signal),
                master.pid
            )
        })?;
        Ok(Self {
            instance: master.instance.clone(),
            mode: master.mode,
            old,
            old_generation: master.generation,
            old_attempt: master.last.as_ref().map_or(0, |last| last.attempt),
            started: Instant::now(),
            timeout,
            vanished_at: Cell::new(None),
        })
    }

    /// Judges progress from the live records (of any instance) and whether the old master is
    /// still running.
    pub fn check(&self, live: &[InstanceRecord]) -> Progress {
        self.judge(live, self.old.alive(), self.started.elapsed())
    }

    fn judge(&self, live: &[InstanceRecord], old_alive: bool, elapsed: Duration) -> Progress {
        let ours = || live.iter().filter(|r| r.instance == self.instance);
        let old_record = ours().find(|r| r.pid == self.old.pid);
        // In fork mode the old master must also have stepped back, so that "restarted"
        // means the old generation no longer accepts.
        let old_retired = self.mode == Mode::Exec
            || old_record.is_none_or(|record| record.phase == Phase::Draining);
        let newest = ours()
            .filter(|r| r.generation > self.old_generation)
            .max_by_key(|r| r.generation);
        if let Some(new) = newest.filter(|new| new.phase == Phase::Serving && old_retired) {
            return Progress::Done(Restarted {
                old_pid: self.old.pid,
                old_generation: self.old_generation,
                new_pid: new.pid,
                new_generation: new.generation,
                elapsed,
            });
        }
        if let Some(last) = old_record
            .and_then(|record| record.last.as_ref())
            .filter(|last| last.attempt > self.old_attempt && !last.ok)
        {
            let reason = if last.detail.is_empty() {
                "the new generation did not take over"
            } else {
                &last.detail
            };
            return Progress::Failed(format!(
                "rolled back after {} ms: {reason}; pid {} (generation {}) goes on serving",
                last.millis, self.old.pid, self.old_generation
            ));
        }
        if !old_alive && newest.is_none() {
            let since = *self.vanished_at.get().get_or_insert(elapsed);
            self.vanished_at.set(Some(since));
            if elapsed.saturating_sub(since) >= VANISHED_GRACE {
                return Progress::Failed(format!(
                    "pid {} exited and no new generation is running",
                    self.old.pid
                ));
            }
        } else {
            self.vanished_at.set(None);
        }
        if elapsed >= self.timeout {
            return Progress::Failed(format!(
                "timed out after {} waiting for the new generation to serve (it may still; \
                 see huptime --status)",
                display::seconds(self.timeout)
            ));
        }
        Progress::Waiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use huptime_handoff::record::Outcome;

    const SECOND: Duration = Duration::from_secs(1);

    fn record(pid: i32, generation: u64, phase: Phase) -> InstanceRecord {
        InstanceRecord {
            instance: "1-1".into(),
            pid,
            starttime: 7,
            generation,
            mode: Mode::Fork,
            phase,
            since: 1,
            generation_since: 1,
            signal: libc::SIGHUP,
            command: vec!["srv".into()],
            sockets: vec![],
            listeners: vec![],
            connections: 0,
            last: None,
        }
    }

    fn watch(mode: Mode) -> RestartWatch {
        RestartWatch {
            instance: "1-1".into(),
            mode,
            old: Target {
                pid: 100,
                starttime: 7,
            },
            old_generation: 2,
            old_attempt: 1,
            started: Instant::now(),
            timeout: Duration::from_secs(5),
            vanished_at: Cell::new(None),
        }
    }

    fn failed(attempt: u64, detail: &str) -> Option<Outcome> {
        Some(Outcome {
            attempt,
            ok: false,
            new_pid: None,
            detail: detail.into(),
            millis: 3,
        })
    }

    #[test]
    fn fork_mode_waits_for_the_old_master_to_retire() {
        let watch = watch(Mode::Fork);
        let old = record(100, 2, Phase::Restarting);
        let starting = record(200, 3, Phase::Starting);
        let serving = record(200, 3, Phase::Serving);
        assert_eq!(
            watch.judge(std::slice::from_ref(&old), true, SECOND),
            Progress::Waiting
        );
        assert_eq!(
            watch.judge(&[old.clone(), starting], true, SECOND),
            Progress::Waiting
        );
        assert_eq!(
            watch.judge(&[old, serving.clone()], true, SECOND),
            Progress::Waiting
        );
        let draining = record(100, 2, Phase::Draining);
        let done = Progress::Done(Restarted {
            old_pid: 100,
            old_generation: 2,
            new_pid: 200,
            new_generation: 3,
            elapsed: SECOND,
        });
        assert_eq!(
            watch.judge(&[draining, serving.clone()], true, SECOND),
            done
        );
        assert_eq!(watch.judge(&[serving], false, SECOND), done);
    }

    #[test]
    fn exec_mode_keeps_the_pid() {
        let watch = watch(Mode::Exec);
        let restarting = record(100, 2, Phase::Draining);
        assert_eq!(watch.judge(&[restarting], true, SECOND), Progress::Waiting);
        let serving = record(100, 3, Phase::Serving);
        assert!(matches!(
            watch.judge(&[serving], true, SECOND),
            Progress::Done(Restarted {
                new_pid: 100,
                new_generation: 3,
                ..
            })
        ));
    }

    #[test]
    fn other_instances_do_not_count() {
        let watch = watch(Mode::Exec);
        let mut elsewhere = record(300, 9, Phase::Serving);
        elsewhere.instance = "2-2".into();
        assert_eq!(watch.judge(&[elsewhere], true, SECOND), Progress::Waiting);
    }

    #[test]
    fn failures() {
        let watch = watch(Mode::Fork);
        let mut old = record(100, 2, Phase::Serving);
        old.last = failed(1, "an earlier failure");
        assert_eq!(watch.judge(&[old.clone()], true, SECOND), Progress::Waiting);
        old.last = failed(
            2,
            "new generation exited with status 1, before it was ready",
        );
        assert_eq!(
            watch.judge(&[old.clone()], true, SECOND),
            Progress::Failed(
                "rolled back after 3 ms: new generation exited with status 1, before it was \
                 ready; pid 100 (generation 2) goes on serving"
                    .into()
            )
        );
        old.last = failed(2, "");
        assert!(matches!(
            watch.judge(&[old], true, SECOND),
            Progress::Failed(detail) if detail.contains("rolled back")
        ));
        // Gone with no successor in sight: a failure once the grace has passed (the new
        // generation may not have written its record yet).
        assert_eq!(watch.judge(&[], false, SECOND), Progress::Waiting);
        assert!(matches!(
            watch.judge(&[], false, SECOND + VANISHED_GRACE),
            Progress::Failed(detail) if detail.contains("pid 100 exited")
        ));
        assert!(matches!(
            watch.judge(&[record(100, 2, Phase::Restarting)], true, 5 * SECOND),
            Progress::Failed(detail) if detail.starts_with("timed out after 5s")
        ));
    }
}
