//! A server that only accepts: N threads all block in `accept()` on one listening socket on
//! 127.0.0.1, and each client gets a one-line greeting and is closed. The greeting names the
//! process and this start of it (`<pid> <start token>`), so a client can tell which generation
//! served it. It logs and reads nothing: what is measured around it is the accept path, the
//! start of a process and restarts, not a program's own work.
//!
//! Usage: acceptbench --port PORT [--threads N]. Exits (through `exit`, so the preload library
//! sees the end) on SIGTERM.

use std::io::Write;
use std::net::TcpListener;
use std::os::fd::FromRawFd;
use std::time::{SystemTime, UNIX_EPOCH};

/// Deep enough that a burst of connections waits instead of being refused.
const BACKLOG: libc::c_int = 4096;

fn usage() -> ! {
    eprintln!("usage: acceptbench --port PORT [--threads N]");
    std::process::exit(2);
}

fn parse_args() -> (u16, usize) {
    let mut port = None;
    let mut threads = 1;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--port" => port = value.parse().ok(),
            "--threads" => threads = value.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    (port.unwrap_or_else(|| usage()), threads.max(1))
}

/// A listening TCP socket on 127.0.0.1:`port`, made with plain libc calls (so through the
/// preload library's `bind` and `listen`) and a deep backlog.
fn listen(port: u16) -> std::io::Result<TcpListener> {
    let error = std::io::Error::last_os_error;
    // SAFETY: plain socket calls on a descriptor we own; the address is a valid sockaddr_in.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(error());
        }
        let listener = TcpListener::from_raw_fd(fd);
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
        let mut address: libc::sockaddr_in = std::mem::zeroed();
        address.sin_family = libc::AF_INET as libc::sa_family_t;
        address.sin_port = port.to_be();
        address.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        if libc::bind(fd, (&address as *const libc::sockaddr_in).cast(), len) != 0
            || libc::listen(fd, BACKLOG) != 0
        {
            return Err(error());
        }
        Ok(listener)
    }
}

/// Ends the process through `exit` on SIGTERM. The signal is blocked in every thread and taken
/// by this one, since the accepting threads never return to look at a flag.
fn exit_on_sigterm() {
    // SAFETY: signal-set calls on a local set; sigwait in a thread of our own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        std::thread::spawn(move || {
            let mut signal = 0;
            libc::sigwait(&set, &mut signal);
            std::process::exit(0);
        });
    }
}

fn serve(listener: &TcpListener, greeting: &[u8]) -> ! {
    loop {
        // Errors (a client that reset before we accepted it) concern one client only.
        if let Ok((mut client, _)) = listener.accept() {
            let _ = client.write_all(greeting);
        }
    }
}

fn main() {
    let (port, threads) = parse_args();
    exit_on_sigterm();
    let token = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let greeting = format!("{} {token}\n", std::process::id()).into_bytes();
    let listener = listen(port).unwrap_or_else(|e| {
        eprintln!("acceptbench: cannot listen on 127.0.0.1:{port}: {e}");
        std::process::exit(1);
    });
    std::thread::scope(|scope| {
        for _ in 1..threads {
            scope.spawn(|| serve(&listener, &greeting));
        }
        serve(&listener, &greeting)
    })
}
