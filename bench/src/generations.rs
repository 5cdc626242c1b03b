//! `acceptbench` started and restarted, timed the way a client sees it: from the start (or the
//! restart signal) until a client is served by the new process. Its greeting names the process
//! and the start (`<pid> <token>`), so a probe can tell the new generation from the old one,
//! even in exec mode where the PID stays.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::load::greet;
use crate::servers::{self, Server};

/// How often the probe connects: the resolution of the times measured here.
const PROBE_EVERY: Duration = Duration::from_micros(100);

/// How long a start or a restart may take before it counts as failed (debug builds are slow).
const RESTART_TIMEOUT: Duration = Duration::from_secs(20);

/// acceptbench's greeting on `port`: its PID and start token, or `None` while nobody serves.
fn probe(port: u16) -> Option<(i32, String)> {
    let greeting = greet(port).ok()?;
    let (pid, token) = greeting.trim_end().split_once(' ')?;
    Some((pid.parse().ok()?, token.to_string()))
}

/// acceptbench arguments for one accepting thread on `port`.
pub fn args(port: u16) -> [String; 4] {
    [
        "--port".into(),
        port.to_string(),
        "--threads".into(),
        "1".into(),
    ]
}

/// Starts `command` (acceptbench on `port`) and returns how long it took until it served a
/// client, stopping it afterwards.
pub fn time_to_serve(mut command: Command, port: u16) -> Result<Duration, String> {
    let start = Instant::now();
    let child = command
        .spawn()
        .map_err(|e| format!("cannot start acceptbench: {e}"))?;
    let pid = child.id() as i32;
    let served = loop {
        if probe(port).is_some() {
            break Ok(start.elapsed());
        }
        if servers::has_exited(pid) {
            break Err("acceptbench exited before serving".to_string());
        }
        if start.elapsed() > RESTART_TIMEOUT {
            break Err(format!(
                "acceptbench did not serve within {RESTART_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(PROBE_EVERY);
    };
    servers::stop(pid);
    served
}

/// How long a retired generation may take to exit once its successor serves: it has nothing
/// to drain but the probe's connections, which are closed at once.
const EXIT_TIMEOUT: Duration = Duration::from_secs(1);

/// A restart as the probe saw it.
pub struct Restart {
    /// From the signal until a client was served by the new generation.
    pub serving: Duration,
    /// The longest time no client was served: from the old generation's last reply (or the
    /// signal) until the new generation's first.
    pub pause: Duration,
}

/// acceptbench running under huptime.
pub struct Instance {
    server: Server,
    token: String,
    /// Retired generations that did not exit in time; stopped with the instance.
    lingering: Vec<i32>,
}

impl Instance {
    /// Stops the serving generation until its next [`Instance::restart_paused`].
    pub fn pause(&self) {
        self.server.pause();
    }

    /// Starts `command` (acceptbench under huptime, on `port`) and waits until it serves.
    pub fn start(command: Command, port: u16, log: std::path::PathBuf) -> Result<Self, String> {
        let server = Server::start(command, port, log)?;
        let (_, token) = probe(port).ok_or("acceptbench does not greet")?;
        Ok(Self {
            server,
            token,
            lingering: Vec::new(),
        })
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// How many retired generations did not exit within [`EXIT_TIMEOUT`] of their successor
    /// serving.
    pub fn lingering(&self) -> usize {
        self.lingering.len()
    }

    /// [`Instance::restart`] for an instance kept stopped outside its own rounds (see
    /// [`Server::pause`]): resumed for the restart, and its new generation stopped after it.
    pub fn restart_paused(&mut self) -> Result<Restart, String> {
        self.server.resume();
        let restart = self.restart();
        self.server.pause();
        restart
    }

    /// Sends the restart signal and times the restart with a probe that keeps connecting. Then
    /// waits a little for the old generation to exit (fork mode), so that the next restart does
    /// not share the machine with its drain.
    pub fn restart(&mut self) -> Result<Restart, String> {
        let old = self.server.pid;
        let start = Instant::now();
        // SAFETY: signalling the process we run.
        unsafe { libc::kill(old, libc::SIGHUP) };
        let mut last_old_reply = start;
        let restart = loop {
            match probe(self.server.port) {
                Some((pid, token)) if token != self.token => {
                    let restart = Restart {
                        serving: start.elapsed(),
                        pause: last_old_reply.elapsed(),
                    };
                    self.server.pid = pid;
                    self.token = token;
                    break restart;
                }
                Some(_) => last_old_reply = Instant::now(),
                None => {}
            }
            if start.elapsed() > RESTART_TIMEOUT {
                return Err(format!(
                    "no new generation served within {RESTART_TIMEOUT:?}: {}",
                    self.server.log_tail()
                ));
            }
            std::thread::sleep(PROBE_EVERY);
        };
        if self.server.pid != old && !servers::wait_exit(old, EXIT_TIMEOUT) {
            self.lingering.push(old);
        }
        Ok(restart)
    }
}

/// A note for the report when retired generations of `instances` lingered after `restarts`
/// restarts in all.
pub fn lingering_note(instances: &[&Instance], restarts: usize) -> Option<String> {
    let lingering: usize = instances.iter().map(|i| i.lingering()).sum();
    (lingering > 0).then(|| {
        format!(
            "**{lingering} of {restarts} retired generations did not exit within {EXIT_TIMEOUT:?} \
             of their successor serving**"
        )
    })
}

impl Drop for Instance {
    fn drop(&mut self) {
        for &pid in &self.lingering {
            servers::stop(pid);
        }
    }
}
