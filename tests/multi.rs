//! `--multi=2`: two copies of a server share the port with `SO_REUSEPORT`, and a restart signal
//! to the launcher restarts both, one after another. This shows what `--multi` promises: under
//! continuous load no request fails, both copies end up running the new version, the port never
//! has fewer than one listener (capacity never drops to zero) and has its two once a restart has
//! settled, and SIGTERM to the launcher stops everything and exits 0. Needs
//! `cargo build --workspace`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use huptime_tests::control::private_dir;
use huptime_tests::{
    Load, SIGHUP, SIGTERM, Sandbox, ServerCommand, free_port, get, listening_sockets, wait_gone,
};

const COPIES: usize = 2;
const RESTARTS: usize = 3;
const LOAD_CLIENTS: usize = 6;
/// How long all copies may take to serve a new version after the signal.
const RESTART_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the load may take to see a version that already serves.
const SERVED_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a retired copy may take to exit after its successor serves.
const RETIRE_TIMEOUT: Duration = Duration::from_secs(15);
const EXIT_TIMEOUT: Duration = Duration::from_secs(15);
/// How often the listener count is sampled while the restarts run.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(2);
/// A restart takes about a hundred milliseconds here: the sampler sees it many times over.
const MIN_SAMPLES_PER_RESTART: u64 = 5;

/// Polls `GET` until `count` distinct pids have answered with `version`; returns those pids.
/// `SO_REUSEPORT` spreads connections over the copies by their source port, so polling reaches
/// every copy soon.
fn wait_for_copies(port: u16, version: &str, count: usize, timeout: Duration) -> BTreeSet<u32> {
    let deadline = Instant::now() + timeout;
    let mut pids = BTreeSet::new();
    let mut seen: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    loop {
        if let Ok(reply) = get(port) {
            seen.entry(reply.version.clone())
                .or_default()
                .insert(reply.pid);
            if reply.version == version {
                pids.insert(reply.pid);
                if pids.len() >= count {
                    return pids;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "within {timeout:?}, only pids {pids:?} answered with {version}; pids seen per version: {seen:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// Counts the TCP listeners (IPv4 and IPv6) on `port` through the kernel's `sock_diag`
/// netlink interface, asking for listening sockets only.
///
/// The harness's [`listening_sockets`] reads `/proc/net/tcp`, which lists every socket of the
/// machine: under load (and with other tests' TIME_WAIT sockets) that is over a hundred thousand
/// lines and takes a second or more per reading, too slow to sample a restart that takes a few
/// tens of milliseconds. It is still used to cross-check this count once each restart settled.
fn listeners_fast(port: u16) -> usize {
    [libc::AF_INET, libc::AF_INET6]
        .into_iter()
        .map(|family| diag::listeners(family, port).expect("sock_diag dump of TCP listeners"))
        .sum()
}

/// A minimal `NETLINK_SOCK_DIAG` client: one dump of TCP sockets in state LISTEN.
mod diag {
    use std::io;
    use std::mem::{size_of, zeroed};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    /// `SOCK_DIAG_BY_FAMILY` from `<linux/sock_diag.h>`.
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    /// `TCP_LISTEN` from `<netinet/tcp.h>`.
    const TCP_LISTEN: u8 = 10;

    /// `struct inet_diag_sockid` from `<linux/inet_diag.h>`; ports and addresses in network order.
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct SockId {
        sport: u16,
        dport: u16,
        src: [u32; 4],
        dst: [u32; 4],
        interface: u32,
        cookie: [u32; 2],
    }

    /// `struct inet_diag_req_v2`.
    #[repr(C)]
    struct ReqV2 {
        family: u8,
        protocol: u8,
        ext: u8,
        pad: u8,
        states: u32,
        id: SockId,
    }

    #[repr(C)]
    struct Request {
        header: libc::nlmsghdr,
        body: ReqV2,
    }

    /// The start of `struct inet_diag_msg`.
    #[repr(C)]
    struct Msg {
        family: u8,
        state: u8,
        timer: u8,
        retrans: u8,
        id: SockId,
    }

    fn check(ret: isize) -> io::Result<usize> {
        usize::try_from(ret).map_err(|_| io::Error::last_os_error())
    }

    /// How many sockets of `family` listen on TCP `port`.
    pub fn listeners(family: libc::c_int, port: u16) -> io::Result<usize> {
        // SAFETY: socket() has no memory-safety preconditions.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a descriptor we just opened and own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };

        // SAFETY: both are plain C structs for which all-zero bytes are valid.
        let mut request: Request = unsafe { zeroed() };
        request.header.nlmsg_len = size_of::<Request>() as u32;
        request.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
        request.header.nlmsg_flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
        request.header.nlmsg_seq = 1;
        request.body.family = family as u8;
        request.body.protocol = libc::IPPROTO_TCP as u8;
        request.body.states = 1 << TCP_LISTEN;
        // SAFETY: as above.
        let mut kernel: libc::sockaddr_nl = unsafe { zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: the pointers and lengths describe the two live structs above.
        check(unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                (&raw const request).cast(),
                size_of::<Request>(),
                0,
                (&raw const kernel).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        })?;

        let mut count = 0;
        // u32 elements keep the buffer aligned for the headers read out of it.
        let mut buffer = vec![0u32; 16 * 1024];
        loop {
            // SAFETY: the pointer and length describe `buffer`.
            let len = check(unsafe {
                libc::recv(
                    fd.as_raw_fd(),
                    buffer.as_mut_ptr().cast(),
                    buffer.len() * 4,
                    0,
                )
            })?;
            let bytes = buffer.as_ptr().cast::<u8>();
            let mut offset = 0;
            while offset + size_of::<libc::nlmsghdr>() <= len {
                // SAFETY: in bounds (checked above) and 4-aligned (netlink messages are).
                let header = unsafe { &*bytes.add(offset).cast::<libc::nlmsghdr>() };
                let msg_len = header.nlmsg_len as usize;
                if msg_len < size_of::<libc::nlmsghdr>() || offset + msg_len > len {
                    return Err(io::Error::other("malformed netlink message"));
                }
                match i32::from(header.nlmsg_type) {
                    libc::NLMSG_DONE => return Ok(count),
                    libc::NLMSG_ERROR => return Err(io::Error::other("netlink error reply")),
                    _ => {}
                }
                let payload = offset + size_of::<libc::nlmsghdr>();
                if msg_len >= size_of::<libc::nlmsghdr>() + size_of::<Msg>() {
                    // SAFETY: in bounds (checked just above) and 4-aligned.
                    let msg = unsafe { &*bytes.add(payload).cast::<Msg>() };
                    if msg.state == TCP_LISTEN && u16::from_be(msg.id.sport) == port {
                        count += 1;
                    }
                }
                offset += (msg_len + 3) & !3;
            }
        }
    }
}

/// Samples the listener count until stopped; returns how often each count was seen.
struct ListenerSampler {
    stop: Arc<AtomicBool>,
    taken: Arc<AtomicU64>,
    thread: thread::JoinHandle<BTreeMap<usize, u64>>,
}

impl ListenerSampler {
    fn start(port: u16) -> ListenerSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let taken = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, taken) = (Arc::clone(&stop), Arc::clone(&taken));
            thread::spawn(move || {
                let mut counts = BTreeMap::new();
                while !stop.load(Ordering::Relaxed) {
                    *counts.entry(listeners_fast(port)).or_insert(0) += 1;
                    taken.fetch_add(1, Ordering::Relaxed);
                    thread::sleep(SAMPLE_INTERVAL);
                }
                counts
            })
        };
        ListenerSampler {
            stop,
            taken,
            thread,
        }
    }

    /// How many samples were taken so far.
    fn taken(&self) -> u64 {
        self.taken.load(Ordering::Relaxed)
    }

    fn stop(self) -> BTreeMap<usize, u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the sampler thread panicked")
    }
}

#[test]
fn restarts_both_copies_under_load_and_stops_on_sigterm() {
    let sandbox = Sandbox::new("multi-2");
    let port = free_port();
    let version_file = sandbox.file("version");
    let runtime_dir = private_dir(&sandbox.file("run"));
    let write_version = |version: &str| {
        fs::write(&version_file, format!("{version}\n")).expect("write the version file");
    };

    write_version("v1");
    let server = ServerCommand::python("blocking.py")
        .arg("--port")
        .arg(port.to_string())
        .arg("--version-file")
        .arg(&version_file);
    let mut command = server.under_huptime(&sandbox, &[&format!("--multi={COPIES}")]);
    command.env("XDG_RUNTIME_DIR", &runtime_dir);
    let mut launcher = sandbox.start_server(command, port);
    let mut copies = wait_for_copies(port, "v1", COPIES, RESTART_TIMEOUT);
    assert!(
        !copies.contains(&launcher.pid()),
        "with --multi the launcher supervises; copies {copies:?} include it"
    );
    assert_eq!(listening_sockets(port), COPIES, "listeners of the copies");
    assert_eq!(
        listeners_fast(port),
        COPIES,
        "listeners of the copies, counted through sock_diag"
    );

    let sampler = ListenerSampler::start(port);
    let load = Load::start(port, LOAD_CLIENTS);
    load.wait_until_served_by("v1", SERVED_TIMEOUT);
    let mut settled_counts = Vec::new();
    for n in 2..=RESTARTS + 1 {
        let version = format!("v{n}");
        write_version(&version);
        let started = Instant::now();
        let samples_before = sampler.taken();
        launcher.signal(SIGHUP);
        let new_copies = wait_for_copies(port, &version, COPIES, RESTART_TIMEOUT);
        let samples_during = sampler.taken() - samples_before;
        assert!(
            samples_during >= MIN_SAMPLES_PER_RESTART,
            "only {samples_during} listener samples while restarting to {version}: cannot judge"
        );
        eprintln!(
            "restart to {version}: copies {copies:?} -> {new_copies:?} in {:?}",
            started.elapsed()
        );
        assert!(
            new_copies.is_disjoint(&copies),
            "{version} is served by pids {new_copies:?}, some of which served the old version ({copies:?})"
        );
        let old: Vec<u32> = copies.iter().copied().collect();
        if let Err(left) = wait_gone(&old, RETIRE_TIMEOUT) {
            panic!("old copies {left:?} still run {RETIRE_TIMEOUT:?} after {version} took over");
        }
        settled_counts.push((listeners_fast(port), listening_sockets(port)));
        load.wait_until_served_by(&version, SERVED_TIMEOUT);
        copies = new_copies;
    }
    let report = load.stop();
    let samples = sampler.stop();
    eprintln!("{report}");
    eprintln!("listening sockets seen during the restarts (count: samples): {samples:?}");
    report.assert_no_failures();
    let expected: BTreeSet<String> = (1..=RESTARTS + 1).map(|n| format!("v{n}")).collect();
    let seen: BTreeSet<String> = report.versions().into_iter().map(String::from).collect();
    assert_eq!(seen, expected, "versions the load saw:\n{report}");
    assert!(
        !samples.contains_key(&0),
        "the port had no listener at some moment: {samples:?}"
    );
    assert_eq!(
        settled_counts,
        vec![(COPIES, COPIES); RESTARTS],
        "listeners on the port after each restart settled (sock_diag, /proc/net/tcp)"
    );

    launcher.signal(SIGTERM);
    let Some(status) = launcher.wait_exit(EXIT_TIMEOUT) else {
        panic!("the launcher ignored SIGTERM for {EXIT_TIMEOUT:?}");
    };
    assert_eq!(
        status.code(),
        Some(0),
        "the launcher's exit status after SIGTERM: {status}"
    );
    if let Err(left) = sandbox.wait_no_processes(EXIT_TIMEOUT) {
        panic!("processes {left:?} outlived the launcher's SIGTERM");
    }
    assert_eq!(listening_sockets(port), 0, "listeners left after the stop");
}
