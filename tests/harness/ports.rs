//! TCP ports for test servers, and the listening sockets on them (TCP ports and Unix paths), as
//! the kernel shows them in `/proc/net`.

use std::collections::BTreeSet;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Mutex;

/// Ports already handed out in this process: tests run in parallel threads, and a port must not
/// go to two of them even after the first test's server closed it.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Lowest port picked. Ports are taken below the kernel's ephemeral range, so that the source
/// port of a client connection can never sit on a port a server is about to bind.
const LOWEST: u16 = 10_000;

/// A TCP port free on 127.0.0.1 and not handed out before in this process.
pub fn free_port() -> u16 {
    let (low, high) = candidate_range();
    let span = u32::from(high - low);
    // A random start keeps separate test processes (e.g. under nextest) apart.
    let start = (RandomState::new().hash_one(std::process::id()) % u64::from(span)) as u32;
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    for offset in 0..span {
        let port = low + ((start + offset) % span) as u16;
        if !handed_out.contains(&port) && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            handed_out.insert(port);
            return port;
        }
    }
    panic!("no free TCP port in {low}..{high}");
}

/// Ports from [`LOWEST`] up to the start of the ephemeral range.
fn candidate_range() -> (u16, u16) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    assert!(
        ephemeral_low > LOWEST + 1000,
        "the ephemeral port range starts at {ephemeral_low}, too low to pick test ports below it"
    );
    (LOWEST, ephemeral_low)
}

/// How many TCP sockets (IPv4 and IPv6) are listening on `port`.
pub fn listening_sockets(port: u16) -> usize {
    tcp_listeners(port).len()
}

/// The inodes of the TCP sockets (IPv4 and IPv6) listening on `port`.
///
/// A socket's inode names the kernel socket itself: it stays the same for as long as the socket
/// exists, whichever process or descriptor holds it, and a socket bound anew gets another one.
/// So an unchanged set across a restart shows the sockets were handed over, not re-bound.
pub fn listening_socket_inodes(port: u16) -> BTreeSet<u64> {
    tcp_listeners(port).into_iter().collect()
}

/// The inodes of the TCP listeners on `port`. Asks the kernel's `sock_diag` netlink interface
/// for listeners only: `/proc/net/tcp` also lists every connection, and after a few seconds of
/// load the tens of thousands of `TIME_WAIT` entries make reading it take seconds. Falls back to
/// `/proc/net/tcp*` where netlink is not available.
fn tcp_listeners(port: u16) -> Vec<u64> {
    match diag::tcp_listeners() {
        Ok(listeners) => listeners
            .into_iter()
            .filter(|&(p, _)| p == port)
            .map(|(_, inode)| inode)
            .collect(),
        Err(_) => proc_listener_rows(port)
            .iter()
            .map(|row| tcp_row_inode(row).unwrap_or_else(|| panic!("no inode in row {row:?}")))
            .collect(),
    }
}

/// The inode column (the tenth) of a `/proc/net/tcp` row.
fn tcp_row_inode(row: &str) -> Option<u64> {
    row.split_whitespace().nth(9)?.parse().ok()
}

/// The rows of `/proc/net/tcp` and `/proc/net/tcp6` that are listeners on `port`.
fn proc_listener_rows(port: u16) -> Vec<String> {
    let mut rows = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = match std::fs::read_to_string(table) {
            Ok(text) => text,
            // No tcp6 table when the kernel has no IPv6.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("read {table}: {e}"),
        };
        rows.extend(
            text.lines()
                .skip(1)
                .filter(|line| is_listener_on(line, port))
                .map(str::to_owned),
        );
    }
    rows
}

/// One row of `/proc/net/tcp`: `sl local_address rem_address st ... uid timeout inode ...`,
/// where `local_address` is `ADDR:PORT` in hex and state `0A` is LISTEN.
fn is_listener_on(row: &str, port: u16) -> bool {
    let fields: Vec<&str> = row.split_whitespace().collect();
    let local_port = fields
        .get(1)
        .and_then(|address| address.rsplit_once(':'))
        .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok());
    fields.get(3) == Some(&"0A") && local_port == Some(port)
}

/// Listing TCP listeners through `NETLINK_SOCK_DIAG` (see `sock_diag(7)`).
mod diag {
    use std::io;
    use std::mem::size_of;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    const NETLINK_SOCK_DIAG: libc::c_int = 4;
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const TCP_LISTEN: u32 = 10;
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    const NLM_F_REQUEST: u16 = 1;
    const NLM_F_DUMP: u16 = 0x300;
    /// A message of a dump that the kernel's tables changed under: dump again.
    const NLM_F_DUMP_INTR: u16 = 0x10;
    const ATTEMPTS: usize = 5;

    /// `struct inet_diag_sockid`.
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct SockId {
        sport: [u8; 2],
        dport: [u8; 2],
        src: [u32; 4],
        dst: [u32; 4],
        interface: u32,
        cookie: [u32; 2],
    }

    /// `struct nlmsghdr` followed by `struct inet_diag_req_v2`.
    #[repr(C)]
    struct Request {
        length: u32,
        kind: u16,
        flags: u16,
        sequence: u32,
        port_id: u32,
        family: u8,
        protocol: u8,
        extensions: u8,
        pad: u8,
        states: u32,
        id: SockId,
    }

    /// The start of `struct inet_diag_msg`, up to the inode.
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Message {
        family: u8,
        state: u8,
        timer: u8,
        retransmits: u8,
        id: SockId,
        expires: u32,
        receive_queue: u32,
        send_queue: u32,
        uid: u32,
        inode: u32,
    }

    const HEADER_LEN: usize = 16;

    /// Every listening TCP socket (IPv4 and IPv6) as (port, inode).
    pub fn tcp_listeners() -> io::Result<Vec<(u16, u64)>> {
        let mut listeners = Vec::new();
        for family in [libc::AF_INET, libc::AF_INET6] {
            let mut attempt = 0;
            loop {
                attempt += 1;
                match dump(family as u8) {
                    Ok(Some(found)) => {
                        listeners.extend(found);
                        break;
                    }
                    Ok(None) if attempt < ATTEMPTS => {}
                    Ok(None) => return Err(io::Error::other("sock_diag dumps kept changing")),
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(listeners)
    }

    /// One dump of the listeners of `family`; `None` if the kernel says it was interrupted.
    fn dump(family: u8) -> io::Result<Option<Vec<(u16, u64)>>> {
        // SAFETY: socket() has no memory-safety preconditions.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a new descriptor that nothing else owns.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        let request = Request {
            length: size_of::<Request>() as u32,
            kind: SOCK_DIAG_BY_FAMILY,
            flags: NLM_F_REQUEST | NLM_F_DUMP,
            sequence: 1,
            port_id: 0,
            family,
            protocol: libc::IPPROTO_TCP as u8,
            extensions: 0,
            pad: 0,
            states: 1 << TCP_LISTEN,
            id: SockId::default(),
        };
        // SAFETY: an all-zero sockaddr_nl is valid; the kernel is the peer (pid 0).
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: the request and the address are plain data of the sizes given.
        let sent = unsafe {
            libc::sendto(
                socket.as_raw_fd(),
                (&raw const request).cast(),
                size_of::<Request>(),
                0,
                (&raw const kernel).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut found = Vec::new();
        let mut interrupted = false;
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: the buffer is writable for its length.
            let received = unsafe {
                libc::recv(
                    socket.as_raw_fd(),
                    buffer.as_mut_ptr().cast(),
                    buffer.len(),
                    0,
                )
            };
            if received < 0 {
                let error = io::Error::last_os_error();
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(error);
            }
            let mut data = &buffer[..received as usize];
            while data.len() >= HEADER_LEN {
                let length = u32::from_ne_bytes(data[0..4].try_into().unwrap()) as usize;
                let kind = u16::from_ne_bytes(data[4..6].try_into().unwrap());
                let flags = u16::from_ne_bytes(data[6..8].try_into().unwrap());
                if length < HEADER_LEN || length > data.len() {
                    return Err(io::Error::other("malformed sock_diag reply"));
                }
                interrupted |= flags & NLM_F_DUMP_INTR != 0;
                let payload = &data[HEADER_LEN..length];
                match kind {
                    NLMSG_DONE => return Ok((!interrupted).then_some(found)),
                    NLMSG_ERROR => {
                        let code = payload
                            .get(..4)
                            .map_or(0, |b| i32::from_ne_bytes(b.try_into().unwrap()));
                        return Err(io::Error::from_raw_os_error(-code));
                    }
                    SOCK_DIAG_BY_FAMILY if payload.len() >= size_of::<Message>() => {
                        // SAFETY: the payload holds at least a Message, which is plain data.
                        let message: Message =
                            unsafe { std::ptr::read_unaligned(payload.as_ptr().cast()) };
                        if u32::from(message.state) == TCP_LISTEN {
                            let port = u16::from_be_bytes(message.id.sport);
                            found.push((port, u64::from(message.inode)));
                        }
                    }
                    _ => {}
                }
                // Messages are aligned to 4 bytes.
                let next = (length + 3) & !3;
                data = &data[next.min(data.len())..];
            }
        }
    }
}

/// `__SO_ACCEPTCON` in the flags column of `/proc/net/unix`: the socket is listening.
const UNIX_ACCEPTCON: u32 = 1 << 16;

/// The inodes of the Unix stream sockets listening on `path`, from `/proc/net/unix` (where a
/// socket shows the path exactly as it was bound). The inode names the kernel socket, not the
/// file at `path`: see [`listening_socket_inodes`].
pub fn unix_listening_inodes(path: &Path) -> BTreeSet<u64> {
    let text = std::fs::read_to_string("/proc/net/unix")
        .unwrap_or_else(|e| panic!("read /proc/net/unix: {e}"));
    let path = path.as_os_str().as_bytes();
    text.lines()
        .skip(1)
        .filter_map(|row| unix_listener_inode(row, path))
        .collect()
}

/// One row of `/proc/net/unix`: `Num RefCount Protocol Flags Type St Inode [Path]`, numbers in
/// hex but the inode in decimal; an accepted connection shows its listener's path too, but not
/// the listening flag.
fn unix_listener_inode(row: &str, path: &[u8]) -> Option<u64> {
    let mut rest = row.trim_start();
    let mut fields = Vec::with_capacity(7);
    for _ in 0..7 {
        let (field, tail) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        fields.push(field);
        rest = tail.trim_start();
    }
    // A path that ends in spaces keeps them; only the line's end is not part of it.
    let row_path = rest.trim_end_matches(['\n', '\r']);
    let flags = u32::from_str_radix(fields[3], 16).ok()?;
    let stream = fields[4] == "0001";
    if flags & UNIX_ACCEPTCON != 0 && stream && row_path.as_bytes() == path {
        fields[6].parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tcp_listener_rows() {
        let listen = "   3: 0100007F:2710 00000000:0000 0A 00000000:00000000 00:00000000 \
                      00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0";
        let connected = "   4: 0100007F:2710 0100007F:D431 01 00000000:00000000 00:00000000 \
                         00000000  1000        0 4343 1 0000000000000000 20 4 30 10 -1";
        assert!(is_listener_on(listen, 10_000));
        assert!(!is_listener_on(listen, 10_001));
        assert!(!is_listener_on(connected, 10_000));
        assert_eq!(tcp_row_inode(listen), Some(4242));
    }

    /// The inode of the socket behind a descriptor, as `fstat` tells it.
    fn socket_inode(fd: &impl std::os::fd::AsRawFd) -> u64 {
        use std::os::unix::fs::MetadataExt;
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        std::fs::metadata(path)
            .expect("stat a socket descriptor")
            .ino()
    }

    #[test]
    fn finds_listeners_through_netlink_and_proc() {
        let v4 = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        let port = v4.local_addr().unwrap().port();
        // A connection on the port is not a listener.
        let _client = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
        let expected = BTreeSet::from([socket_inode(&v4)]);
        let through_netlink: BTreeSet<u64> = diag::tcp_listeners()
            .expect("sock_diag")
            .into_iter()
            .filter(|&(p, _)| p == port)
            .map(|(_, inode)| inode)
            .collect();
        assert_eq!(through_netlink, expected);
        let through_proc: BTreeSet<u64> = proc_listener_rows(port)
            .iter()
            .filter_map(|row| tcp_row_inode(row))
            .collect();
        assert_eq!(through_proc, expected);
        assert_eq!(listening_socket_inodes(port), expected);
        assert_eq!(listening_sockets(port), 1);
        drop(v4);
        assert_eq!(listening_sockets(port), 0);

        if let Ok(v6) = TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, 0)) {
            let port = v6.local_addr().unwrap().port();
            assert_eq!(
                listening_socket_inodes(port),
                BTreeSet::from([socket_inode(&v6)])
            );
        }
    }

    #[test]
    fn finds_unix_listeners() {
        let dir = std::env::temp_dir().join(format!("huptime-ports-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("listener sock");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind a Unix socket");
        let _client = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let _accepted = listener.accept().unwrap();
        assert_eq!(
            unix_listening_inodes(&path),
            BTreeSet::from([socket_inode(&listener)])
        );
        drop(listener);
        assert_eq!(unix_listening_inodes(&path), BTreeSet::new());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn reads_unix_listener_rows() {
        let path = b"/tmp/x y.sock";
        let listen = "0000000000000000: 00000002 00000000 00010000 0001 01 5151 /tmp/x y.sock";
        let accepted = "0000000000000000: 00000003 00000000 00000000 0001 03 5252 /tmp/x y.sock";
        let other = "0000000000000000: 00000002 00000000 00010000 0001 01 5353 /tmp/x";
        let unnamed = "0000000000000000: 00000002 00000000 00000000 0001 01 5454";
        assert_eq!(unix_listener_inode(listen, path), Some(5151));
        assert_eq!(unix_listener_inode(accepted, path), None);
        assert_eq!(unix_listener_inode(other, path), None);
        assert_eq!(unix_listener_inode(unnamed, path), None);
    }
}
