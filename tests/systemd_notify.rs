//! systemd notifications: a datagram Unix socket standing in for systemd (`NOTIFY_SOCKET`)
//! receives exactly the expected messages, in order and from the expected process (the
//! sender's PID comes with each datagram, `SO_PASSCRED`, as systemd reads it), for a start,
//! two restarts and a stop:
//!
//! - fork mode: `READY=1` from the first master; per restart `RELOADING=1` +
//!   `MONOTONIC_USEC=` from the old master, then `MAINPID=<new>` + `READY=1` from it as it hands
//!   over; `STOPPING=1` from the last master on `huptime --stop`.
//! - exec mode: the same without `MAINPID=`, every message from the one PID, `READY=1` after
//!   each `RELOADING=1`.
//!
//! The program itself never sees `NOTIFY_SOCKET`. Needs `cargo build --workspace`.

use std::fs;
use std::mem::{MaybeUninit, size_of};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use huptime_tests::control::Controller;
use huptime_tests::{
    Sandbox, ServerCommand, environ, free_port, wait_for, wait_for_version, wait_gone,
};

const TIMEOUT: Duration = Duration::from_secs(10);

/// One notification: the sender's PID, the text, and our monotonic clock when it came.
#[derive(Clone, Debug)]
struct Message {
    pid: u32,
    text: String,
    received_usec: u64,
}

fn monotonic_usec() -> u64 {
    let mut now = MaybeUninit::<libc::timespec>::zeroed();
    // SAFETY: clock_gettime fills the struct.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, now.as_mut_ptr()) };
    // SAFETY: filled above.
    let now = unsafe { now.assume_init() };
    now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1000
}

/// Receives one datagram with the sender's credentials.
fn receive(socket: &UnixDatagram) -> Option<Message> {
    let mut data = [0u8; 4096];
    let mut control = [0u8; 64];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain data; every pointer set below is valid for the call.
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_iov = &mut iov;
    header.msg_iovlen = 1;
    header.msg_control = control.as_mut_ptr().cast();
    header.msg_controllen = control.len();
    // SAFETY: recvmsg into the buffers described by `header`.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut header, 0) };
    if n < 0 {
        return None;
    }
    let received_usec = monotonic_usec();
    let mut pid = 0;
    // SAFETY: walking the control messages the kernel wrote into `control`.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&header);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_CREDENTIALS
            {
                let creds: libc::ucred =
                    std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::ucred>());
                pid = creds.pid as u32;
            }
            cmsg = libc::CMSG_NXTHDR(&header, cmsg);
        }
    }
    Some(Message {
        pid,
        text: String::from_utf8_lossy(&data[..n as usize]).into_owned(),
        received_usec,
    })
}

/// The stand-in for systemd: collects every notification in a thread.
struct FakeSystemd {
    messages: Arc<Mutex<Vec<Message>>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl FakeSystemd {
    fn bind(path: &Path) -> FakeSystemd {
        let socket = UnixDatagram::bind(path).expect("bind the notification socket");
        let on: libc::c_int = 1;
        // SAFETY: setsockopt with a valid int.
        let ret = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PASSCRED,
                (&raw const on).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(ret, 0, "SO_PASSCRED");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (messages, stop) = (Arc::clone(&messages), Arc::clone(&stop));
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(message) = receive(&socket) {
                        messages.lock().unwrap().push(message);
                    }
                }
            })
        };
        FakeSystemd {
            messages,
            stop,
            thread: Some(thread),
        }
    }

    fn count(&self) -> usize {
        self.messages.lock().unwrap().len()
    }

    /// Waits until `n` messages came.
    fn wait_for(&self, n: usize) {
        wait_for(&format!("{n} notifications"), TIMEOUT, || {
            (self.count() >= n).then_some(())
        });
    }

    fn finish(mut self) -> Vec<Message> {
        // Anything late or duplicated would come now.
        thread::sleep(Duration::from_millis(500));
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        self.messages.lock().unwrap().clone()
    }
}

fn pid_in(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Starts the server under huptime (the `select()` style: a retiring generation of the
/// blocking-accept styles may wait for a client before it finishes draining, and no client comes
/// here) with a notification socket, restarts it twice, stops it;
/// returns the messages and the masters, first to last.
fn start_restart_twice_stop(name: &str, script: &str, mode: &[&str]) -> (Vec<Message>, Vec<u32>) {
    let sandbox = Sandbox::new(name);
    let control = Controller::new(&sandbox);
    let systemd = FakeSystemd::bind(&sandbox.file("notify.sock"));
    let port = free_port();
    let version_file = sandbox.file("version");
    fs::write(&version_file, "v1\n").unwrap();
    let pidfile = sandbox.file("app.pid");
    let pidfile_arg = format!("--pidfile={}", pidfile.display());
    let mut args = mode.to_vec();
    args.push(&pidfile_arg);
    let mut command = ServerCommand::python(script)
        .arg("--port")
        .arg(port.to_string())
        .arg("--version-file")
        .arg(&version_file)
        .under_huptime(&sandbox, &args);
    command
        .env("XDG_RUNTIME_DIR", control.runtime_dir())
        .env("NOTIFY_SOCKET", sandbox.file("notify.sock"));
    let mut launched = sandbox.start_server(command, port);
    systemd.wait_for(1);
    let mut masters = vec![launched.pid()];
    assert!(
        !environ(launched.pid())
            .iter()
            .any(|var| var.starts_with("NOTIFY_SOCKET=")),
        "the program must not see NOTIFY_SOCKET"
    );
    for n in 2..=3 {
        fs::write(&version_file, format!("v{n}\n")).unwrap();
        let outcome = control.run(&["--restart", "--timeout=30", &pidfile_arg]);
        assert_eq!(outcome.code, Some(0), "{outcome:#?}");
        wait_for_version(port, &format!("v{n}"), TIMEOUT);
        let master = wait_for("the pid file names the new master", TIMEOUT, || {
            pid_in(&pidfile).filter(|pid| mode.contains(&"--exec") || !masters.contains(pid))
        });
        systemd.wait_for(1 + 2 * (n - 1));
        // The old master has drained and gone: only the current one can be stopped.
        if master != *masters.last().unwrap() {
            wait_gone(&[*masters.last().unwrap()], TIMEOUT).expect("the old generation exits");
        }
        masters.push(master);
    }
    let outcome = control.run(&["--stop", "--timeout=10", &pidfile_arg]);
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    launched.wait_exit(TIMEOUT);
    (systemd.finish(), masters)
}

fn check(messages: &[Message], expected: &[(u32, String)]) {
    let got: Vec<(u32, String)> = messages
        .iter()
        .map(|m| {
            // The time is checked below; compare the rest exactly.
            let text = match m.text.split_once("\nMONOTONIC_USEC=") {
                Some((head, _)) => format!("{head}\nMONOTONIC_USEC=*"),
                None => m.text.clone(),
            };
            (m.pid, text)
        })
        .collect();
    assert_eq!(got, expected, "the notifications, in order, by sender pid");
    for message in messages {
        if let Some((_, usec)) = message.text.split_once("MONOTONIC_USEC=") {
            let usec: u64 = usec.trim().parse().expect("MONOTONIC_USEC is a number");
            assert!(
                usec <= message.received_usec && message.received_usec - usec < 10_000_000,
                "MONOTONIC_USEC={usec} is not the monotonic clock of the restart (received at \
                 {})",
                message.received_usec
            );
        }
    }
}

const RELOADING: &str = "RELOADING=1\nMONOTONIC_USEC=*";

#[test]
fn fork_mode_announces_each_new_main_pid() {
    let (messages, masters) = start_restart_twice_stop("notify-fork", "select_server.py", &[]);
    let [first, second, third] = masters[..] else {
        panic!("three masters expected: {masters:?}");
    };
    assert!(first != second && second != third && first != third);
    check(
        &messages,
        &[
            (first, "READY=1".into()),
            (first, RELOADING.into()),
            (first, format!("MAINPID={second}\nREADY=1")),
            (second, RELOADING.into()),
            (second, format!("MAINPID={third}\nREADY=1")),
            (third, "STOPPING=1".into()),
        ],
    );
}

#[test]
fn exec_mode_keeps_the_main_pid() {
    let (messages, masters) =
        start_restart_twice_stop("notify-exec", "select_server.py", &["--exec"]);
    let [pid, _, _] = masters[..] else {
        panic!("three masters expected: {masters:?}");
    };
    assert!(
        masters.iter().all(|&m| m == pid),
        "exec mode keeps the pid: {masters:?}"
    );
    check(
        &messages,
        &[
            (pid, "READY=1".into()),
            (pid, RELOADING.into()),
            (pid, "READY=1".into()),
            (pid, RELOADING.into()),
            (pid, "READY=1".into()),
            (pid, "STOPPING=1".into()),
        ],
    );
}
