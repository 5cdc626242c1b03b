//! Descriptor calls in a loop, with a given number of descriptors open: `close(dup(fd))`,
//! `dup2(fd, other)` (each on an untracked descriptor and on an accepted connection, which the
//! preload library tracks), and `bind()` of a fresh TCP socket to 127.0.0.1:0 and of a fresh
//! Unix socket to an abstract address (no file: the filesystem's own cost would drown the
//! call's). The open descriptors are a mix like a busy server's: listening
//! sockets bound to 127.0.0.1:0, connections accepted from them (and their client ends), and
//! files.
//!
//! Usage: fdbench --fds 10,1000,15000 --iterations N [--idle-threads N]. Idle threads make a
//! bare run multi-threaded like one under huptime (its restart thread), which costs the
//! kernel's side of some calls: the figure reports that share separately.
//! Prints one line per measurement: `<operation> <open descriptors> <ns per call>`.

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// `bind` costs far more than `dup`: fewer iterations take about as long.
const BIND_SHARE: usize = 10;

/// Each measurement is split in batches and the fastest batch counts: on a shared machine, a
/// batch that another process interrupted says nothing about the call.
const BATCHES: usize = 5;

fn usage() -> ! {
    eprintln!("usage: fdbench --fds N[,N...] --iterations N [--idle-threads N]");
    std::process::exit(2);
}

struct Args {
    fds: Vec<usize>,
    iterations: usize,
    idle_threads: usize,
}

fn parse_args() -> Args {
    let (mut fds, mut iterations, mut idle_threads) = (None, None, Some(0));
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--fds" => fds = value.split(',').map(|n| n.parse().ok()).collect(),
            "--iterations" => iterations = value.parse().ok(),
            "--idle-threads" => idle_threads = value.parse().ok(),
            _ => usage(),
        }
    }
    match (fds, iterations, idle_threads) {
        (Some(fds), Some(iterations), Some(idle_threads)) => Args {
            fds,
            iterations,
            idle_threads,
        },
        _ => usage(),
    }
}

fn fail(what: &str) -> ! {
    eprintln!("fdbench: {what}: {}", std::io::Error::last_os_error());
    std::process::exit(1);
}

/// The descriptors held open while measuring.
#[derive(Default)]
struct Population {
    listeners: Vec<TcpListener>,
    /// Accepted connections (tracked by the library) and their client ends (not tracked).
    connections: Vec<(TcpStream, TcpStream)>,
    files: Vec<File>,
}

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count().saturating_sub(1))
}

impl Population {
    /// Opens descriptors until `total` are open in the process: one listening socket per 100,
    /// one accepted connection per 8 (two descriptors each), and files for the rest.
    fn grow_to(&mut self, total: usize) {
        while self.listeners.len() < (total / 100).max(1) {
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .unwrap_or_else(|_| fail("cannot bind a listening socket"));
            self.listeners.push(listener);
        }
        while self.connections.len() < (total / 8).max(1) {
            let listener = &self.listeners[self.connections.len() % self.listeners.len()];
            let address = listener
                .local_addr()
                .unwrap_or_else(|_| fail("getsockname"));
            let client = TcpStream::connect(address).unwrap_or_else(|_| fail("cannot connect"));
            let (accepted, _) = listener.accept().unwrap_or_else(|_| fail("cannot accept"));
            self.connections.push((accepted, client));
        }
        for _ in open_descriptors()..total {
            let file = File::open("/dev/null").unwrap_or_else(|_| fail("cannot open /dev/null"));
            self.files.push(file);
        }
    }
}

/// Raises the soft descriptor limit to the hard one.
fn raise_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
}

/// Nanoseconds per iteration of `body` in the fastest of [`BATCHES`] batches that make up
/// `iterations`, after a warm-up of one batch.
fn per_call(iterations: usize, mut body: impl FnMut()) -> f64 {
    let batch = (iterations / BATCHES).max(1);
    for _ in 0..batch {
        body();
    }
    (0..BATCHES)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..batch {
                body();
            }
            start.elapsed().as_nanos() as f64 / batch as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// `close(dup(fd))`, and `dup2(fd, spare)` onto a spare descriptor that it keeps replacing.
fn duplication(fd: RawFd, iterations: usize) -> (f64, f64) {
    // SAFETY: duplicating and closing descriptors this process owns; `spare` is ours alone.
    unsafe {
        let close_dup = per_call(iterations, || {
            libc::close(libc::dup(fd));
        });
        let spare = libc::dup(fd);
        let dup2 = per_call(iterations, || {
            libc::dup2(fd, spare);
        });
        libc::close(spare);
        (close_dup, dup2)
    }
}

/// Nanoseconds of `bind` alone (creating and closing the socket are not counted), as in
/// [`per_call`]: a fresh socket of `family` bound to `address` each time, then closed.
fn bind_per_call(family: libc::c_int, address: &[u8], iterations: usize) -> f64 {
    let once = || {
        // SAFETY: a socket we own, bound to a valid address of `address.len()` bytes.
        unsafe {
            let fd = libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            if fd < 0 {
                fail("cannot create a socket");
            }
            let start = Instant::now();
            let bound = libc::bind(
                fd,
                address.as_ptr().cast(),
                address.len() as libc::socklen_t,
            );
            let spent = start.elapsed();
            if bound != 0 {
                fail("cannot bind");
            }
            libc::close(fd);
            spent
        }
    };
    let batch = (iterations / BATCHES).max(1);
    for _ in 0..batch {
        once();
    }
    (0..BATCHES)
        .map(|_| {
            let spent: Duration = (0..batch).map(|_| once()).sum();
            spent.as_nanos() as f64 / batch as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn as_bytes<T>(value: &T) -> &[u8] {
    // SAFETY: viewing a plain C struct as its bytes.
    unsafe { std::slice::from_raw_parts((value as *const T).cast(), size_of::<T>()) }
}

fn tcp_address() -> libc::sockaddr_in {
    // SAFETY: an all-zero sockaddr_in is valid.
    let mut address: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    address.sin_family = libc::AF_INET as libc::sa_family_t;
    address.sin_addr.s_addr = u32::from(Ipv4Addr::LOCALHOST).to_be();
    address
}

/// An abstract Unix address of our own, and its length.
fn unix_address() -> (libc::sockaddr_un, usize) {
    // SAFETY: an all-zero sockaddr_un is valid.
    let mut address: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    address.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let name = format!("huptime-fdbench-{}", std::process::id());
    // sun_path[0] stays 0: the name is abstract.
    for (slot, &byte) in address.sun_path[1..].iter_mut().zip(name.as_bytes()) {
        *slot = byte as libc::c_char;
    }
    let length = size_of::<libc::sa_family_t>() + 1 + name.len();
    (address, length)
}

fn main() {
    let args = parse_args();
    for _ in 0..args.idle_threads {
        std::thread::spawn(|| {
            loop {
                std::thread::park();
            }
        });
    }
    raise_limit();
    let (unix, unix_length) = unix_address();
    let subject = File::open("/dev/null").unwrap_or_else(|_| fail("cannot open /dev/null"));
    let mut population = Population::default();
    let mut counts = args.fds.clone();
    counts.sort_unstable();
    for total in counts {
        population.grow_to(total);
        let untracked = subject.as_raw_fd();
        let tracked = population.connections[0].0.as_raw_fd();
        let (close_dup, dup2) = duplication(untracked, args.iterations);
        let (close_dup_tracked, dup2_tracked) = duplication(tracked, args.iterations);
        let binds = args.iterations / BIND_SHARE;
        let bind_tcp = bind_per_call(libc::AF_INET, as_bytes(&tcp_address()), binds);
        let bind_unix = bind_per_call(libc::AF_UNIX, &as_bytes(&unix)[..unix_length], binds);
        for (operation, ns) in [
            ("close-dup", close_dup),
            ("dup2", dup2),
            ("close-dup-tracked", close_dup_tracked),
            ("dup2-tracked", dup2_tracked),
            ("bind-tcp", bind_tcp),
            ("bind-unix", bind_unix),
        ] {
            println!("{operation} {total} {ns:.1}");
        }
    }
}
