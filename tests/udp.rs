//! UDP sockets are handed over like TCP ones, without losing a datagram.
//!
//! `servers/udp_echo.py` answers each datagram `seq=<token>` to its sender with
//! `version=<v> pid=<pid> seq=<token>`. Client threads send numbered datagrams, one at a time,
//! each from its own socket, and wait for the answer. The server is restarted three times under
//! that load (fork and exec mode), and the datagrams are counted end to end: every datagram sent
//! got exactly one answer, with its own number, from the server's address (not from another
//! socket), and none came late or twice. The new version answers after each restart; in fork
//! mode the old generations go away. Needs `cargo build --workspace` first.

mod safe_handover;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::File;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use huptime_tests::{
    Mode, Sandbox, ServerCommand, free_port, read_pid_file, signal_restart, wait_gone, wait_until,
};
use safe_handover::write_file;

const RESTARTS: usize = 3;
const LOAD_CLIENTS: usize = 3;
/// How long a client waits for the answer to a datagram before counting it unanswered. A
/// datagram on the loopback is answered in well under a millisecond; a restart does not stop
/// the socket from being read for long.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);
/// After the load stops, each client listens this long for answers that come late or twice.
const STRAGGLER_WAIT: Duration = Duration::from_millis(500);
const START_TIMEOUT: Duration = Duration::from_secs(20);
const SERVED_TIMEOUT: Duration = Duration::from_secs(20);
const RETIRE_TIMEOUT: Duration = Duration::from_secs(20);
/// Load between restarts.
const SOAK: Duration = Duration::from_millis(500);
const POLL: Duration = Duration::from_millis(10);
/// Pause between one client's datagrams, so that on a small machine the clients leave CPU for
/// the server.
const PAUSE: Duration = Duration::from_millis(1);

/// A TCP-free UDP port (`free_port` checks TCP; the test needs both free for a clean start).
fn free_udp_port() -> u16 {
    for _ in 0..20 {
        let port = free_port();
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no free UDP port");
}

/// The answer to `seq=<token>`: `version=<v> pid=<pid> seq=<token>`.
fn parse_answer(data: &[u8]) -> Option<(String, u32, String)> {
    let text = std::str::from_utf8(data).ok()?.strip_suffix('\n')?;
    let mut fields = text.split(' ');
    let version = fields.next()?.strip_prefix("version=")?.to_owned();
    let pid = fields.next()?.strip_prefix("pid=")?.parse().ok()?;
    let seq = fields.next()?.strip_prefix("seq=")?.to_owned();
    fields.next().is_none().then_some((version, pid, seq))
}

/// Sends `seq=probe-<n>` from a fresh socket until an answer carries `version`.
fn wait_for_udp_version(server: SocketAddr, version: &str, timeout: Duration) -> (String, u32) {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a probe socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("set a read timeout");
    let deadline = Instant::now() + timeout;
    let mut n = 0u64;
    let mut last = String::from("nothing");
    loop {
        n += 1;
        socket
            .send_to(format!("seq=probe-{n}").as_bytes(), server)
            .expect("send a probe");
        let mut buffer = [0u8; 512];
        let until = Instant::now() + Duration::from_millis(200);
        while Instant::now() < until {
            match socket.recv_from(&mut buffer) {
                Ok((len, _)) => match parse_answer(&buffer[..len]) {
                    Some((v, pid, seq)) if v == version && seq == format!("probe-{n}") => {
                        return (v, pid);
                    }
                    Some(answer) => last = format!("{answer:?}"),
                    None => last = format!("{:?}", String::from_utf8_lossy(&buffer[..len])),
                },
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(e) => {
                    last = e.to_string();
                    thread::sleep(POLL);
                    break;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "udp {server}: no answer from {version} within {timeout:?}; last: {last}"
        );
    }
}

/// What the clients saw, all together.
#[derive(Default, Debug)]
struct Tally {
    sent: u64,
    answered: u64,
    /// Answers counted by (version, pid).
    answers: BTreeMap<(String, u32), u64>,
    unanswered: u64,
    /// Answers to a datagram already answered or given up on, or to none sent.
    stray: u64,
    /// Answers from another address than the server's.
    wrong_source: u64,
    malformed: u64,
    /// The first few problems, in words.
    samples: Vec<String>,
}

impl Tally {
    fn problem(&mut self, what: String) {
        if self.samples.len() < 20 {
            self.samples.push(what);
        }
    }

    /// Every answer was the one awaited, from the server's address, well-formed.
    fn assert_no_stray_answers(&self) {
        assert!(
            self.sent > 0 && self.stray == 0 && self.wrong_source == 0 && self.malformed == 0,
            "datagrams answered twice or late, from elsewhere, or garbled:\n{self}"
        );
    }

    /// ... and every datagram sent got its answer.
    fn assert_every_datagram_answered_once(&self) {
        self.assert_no_stray_answers();
        assert!(
            self.answered == self.sent && self.unanswered == 0,
            "datagrams lost:\n{self}"
        );
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} datagrams sent, {} answered, {} unanswered, {} stray answers, {} from another \
             address, {} malformed",
            self.sent,
            self.answered,
            self.unanswered,
            self.stray,
            self.wrong_source,
            self.malformed
        )?;
        for ((version, pid), count) in &self.answers {
            writeln!(f, "  version={version} pid={pid}: {count}")?;
        }
        for sample in &self.samples {
            writeln!(f, "  {sample}")?;
        }
        Ok(())
    }
}

fn lock(tally: &Mutex<Tally>) -> MutexGuard<'_, Tally> {
    tally.lock().unwrap_or_else(|e| e.into_inner())
}

/// Client threads sending numbered datagrams, one at a time, each waiting for its answer.
struct UdpLoad {
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    clients: Vec<JoinHandle<()>>,
}

impl UdpLoad {
    fn start(server: SocketAddr, clients: usize) -> UdpLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let clients = (0..clients)
            .map(|index| {
                let (stop, tally) = (Arc::clone(&stop), Arc::clone(&tally));
                thread::Builder::new()
                    .name(format!("udp-client-{index}"))
                    .spawn(move || client(index, server, &stop, &tally))
                    .expect("spawn a UDP client thread")
            })
            .collect();
        UdpLoad {
            stop,
            tally,
            clients,
        }
    }

    fn wait_until_answered_by(&self, version: &str, timeout: Duration) {
        let answered = wait_until(timeout, || {
            lock(&self.tally).answers.keys().any(|(v, _)| v == version)
        });
        assert!(
            answered,
            "the UDP load got no answer from {version} within {timeout:?}:\n{}",
            lock(&self.tally)
        );
    }

    fn stop(mut self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        for client in self.clients.drain(..) {
            client.join().expect("a UDP client thread panicked");
        }
        std::mem::take(&mut *lock(&self.tally))
    }
}

impl Drop for UdpLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn client(index: usize, server: SocketAddr, stop: &AtomicBool, tally: &Mutex<Tally>) {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a client socket");
    let mut buffer = [0u8; 512];
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let seq = format!("{index}-{n}");
        socket
            .send_to(format!("seq={seq}").as_bytes(), server)
            .expect("send a datagram");
        lock(tally).sent += 1;
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let mut tally = lock(tally);
                tally.unanswered += 1;
                tally.problem(format!("client {index}: no answer to seq={seq}"));
                break;
            }
            socket.set_read_timeout(Some(left)).expect("set a timeout");
            match socket.recv_from(&mut buffer) {
                Ok((len, from)) => {
                    let mut tally = lock(tally);
                    if from != server {
                        tally.wrong_source += 1;
                        tally.problem(format!("client {index}: an answer from {from}"));
                        continue;
                    }
                    match parse_answer(&buffer[..len]) {
                        Some((version, pid, got)) if got == seq => {
                            tally.answered += 1;
                            *tally.answers.entry((version, pid)).or_default() += 1;
                            break;
                        }
                        Some((version, pid, got)) => {
                            tally.stray += 1;
                            tally.problem(format!(
                                "client {index}: waiting for seq={seq}, got seq={got} from \
                                 version={version} pid={pid}"
                            ));
                        }
                        None => {
                            tally.malformed += 1;
                            let text = String::from_utf8_lossy(&buffer[..len]).into_owned();
                            tally.problem(format!("client {index}: malformed {text:?}"));
                        }
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    let mut tally = lock(tally);
                    tally.problem(format!("client {index}: recv: {e}"));
                    thread::sleep(POLL);
                }
            }
        }
        thread::sleep(PAUSE);
    }
    // Anything arriving now answers a datagram already answered or given up on.
    socket
        .set_read_timeout(Some(STRAGGLER_WAIT))
        .expect("set a timeout");
    while let Ok((len, from)) = socket.recv_from(&mut buffer) {
        let mut tally = lock(tally);
        tally.stray += 1;
        let text = String::from_utf8_lossy(&buffer[..len]).into_owned();
        tally.problem(format!(
            "client {index}: after the end, {text:?} from {from}"
        ));
    }
}

/// The launched process, with its output in the sandbox's logs (printed if the test fails).
struct Launched(Child);

impl Drop for Launched {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Three restarts under the datagram load. `count_every_datagram`: also require that none was
/// lost.
fn restart_udp(mode: Mode, count_every_datagram: bool) {
    let sandbox = Sandbox::new(&format!("udp-{mode:?}"));
    let port = free_udp_port();
    let server = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let version_file = sandbox.file("version");
    let pid_file = sandbox.file("server.pid");
    write_file(&version_file, "v1");
    let program =
        ServerCommand::python_direct("udp_echo.py").serving(port, &version_file, &pid_file);
    let mut args = vec!["--debug"];
    args.extend(mode.huptime_args());
    let mut command = program.under_huptime(&sandbox, &args);
    let log = |name: &str| File::create(sandbox.file(name)).expect("create a log");
    command
        .stdout(log("server.stdout.log"))
        .stderr(log("server.stderr.log"));
    let launched = Launched(
        command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {command:?}: {e}")),
    );
    let (_, first) = wait_for_udp_version(server, "v1", START_TIMEOUT);
    assert_eq!(first, launched.0.id(), "the launched process answers");
    let load = UdpLoad::start(server, LOAD_CLIENTS);
    load.wait_until_answered_by("v1", SERVED_TIMEOUT);

    let mut masters = vec![first];
    for n in 2..=RESTARTS + 1 {
        thread::sleep(SOAK);
        let version = format!("v{n}");
        write_file(&version_file, &version);
        signal_restart(
            mode,
            read_pid_file(&pid_file),
            launched.0.id(),
            &format!("restart to {version}"),
        );
        let (_, pid) = wait_for_udp_version(server, &version, SERVED_TIMEOUT);
        load.wait_until_answered_by(&version, SERVED_TIMEOUT);
        match mode {
            Mode::Fork => assert!(!masters.contains(&pid), "{version} answers from an old pid"),
            Mode::Exec => assert_eq!(pid, launched.0.id(), "exec mode keeps the pid"),
        }
        masters.push(pid);
    }
    thread::sleep(SOAK);
    let tally = load.stop();
    eprintln!("{mode:?}: {tally}");
    if count_every_datagram {
        tally.assert_every_datagram_answered_once();
    } else {
        tally.assert_no_stray_answers();
    }
    let versions: BTreeSet<&str> = tally.answers.keys().map(|(v, _)| v.as_str()).collect();
    assert!(
        versions.contains(format!("v{}", RESTARTS + 1).as_str()),
        "the last version never answered the load:\n{tally}"
    );
    if mode == Mode::Fork {
        if let Err(left) = wait_gone(&masters[..RESTARTS], RETIRE_TIMEOUT) {
            panic!("old generations {left:?} still run after the last restart");
        }
    }
    drop(launched);
}

/// The socket is handed over: each new version answers, no answer comes twice or from
/// another socket, the old generations go away.
#[test]
fn handover_fork() {
    restart_udp(Mode::Fork, false);
}

#[test]
fn handover_exec() {
    restart_udp(Mode::Exec, false);
}

/// Counted end to end: every datagram sent got exactly one answer.
#[test]
fn no_datagram_lost_fork() {
    restart_udp(Mode::Fork, true);
}

#[test]
fn no_datagram_lost_exec() {
    restart_udp(Mode::Exec, true);
}
