//! What a descriptor the launcher holds is, as a socket huptime can hand over: systemd's
//! activated sockets, and the copies a supervisor keeps of its program's sockets.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;

use huptime_handoff::{Address, SockKind, SocketIdentity};

fn int_option(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `value`.
    let ret = unsafe { libc::getsockopt(fd, level, name, (&raw mut value).cast(), &mut len) };
    if ret == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The identity of the socket behind `fd` (as a bind of the program would ask for it), or why
/// it has none: not open, not a socket, a type or family huptime does not hand over, unbound.
pub fn identity_of(fd: RawFd) -> Result<SocketIdentity, String> {
    let mut stat = MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: fstat fills the struct.
    if unsafe { libc::fstat(fd, stat.as_mut_ptr()) } != 0 {
        let error = io::Error::last_os_error();
        return Err(if error.raw_os_error() == Some(libc::EBADF) {
            "not an open descriptor".to_owned()
        } else {
            error.to_string()
        });
    }
    // SAFETY: filled by the successful fstat.
    if unsafe { stat.assume_init() }.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err("not a socket".into());
    }
    let so_type = int_option(fd, libc::SOL_SOCKET, libc::SO_TYPE)
        .map_err(|e| format!("cannot read its type: {e}"))?;
    let kind = SockKind::from_so_type(so_type)
        .ok_or_else(|| format!("a socket of type {so_type}, not stream, datagram or seqpacket"))?;
    let mut storage = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: getsockname writes at most `len` bytes into the storage.
    if unsafe { libc::getsockname(fd, storage.as_mut_ptr().cast(), &mut len) } != 0 {
        return Err(format!(
            "cannot read its address: {}",
            io::Error::last_os_error()
        ));
    }
    // SAFETY: the kernel initialized `len` bytes (the rest is zeroed).
    let raw = unsafe {
        std::slice::from_raw_parts(
            storage.as_ptr().cast::<u8>(),
            (len as usize).min(size_of::<libc::sockaddr_storage>()),
        )
    };
    let address = Address::from_sockaddr(raw).ok_or_else(|| {
        "not bound to an address (or of a family huptime does not keep)".to_owned()
    })?;
    if address.is_ephemeral() {
        return Err("not bound to a port".into());
    }
    let inet = matches!(address, Address::V4(..) | Address::V6(..));
    let v6only = matches!(address, Address::V6(..))
        && int_option(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY).is_ok_and(|v| v == 1);
    let reuseport =
        inet && int_option(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT).is_ok_and(|v| v == 1);
    Ok(SocketIdentity {
        kind,
        address,
        v6only,
        reuseport,
    })
}

/// Sets or clears `FD_CLOEXEC`.
pub fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor number with integer arguments.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let wanted = if on {
        flags | libc::FD_CLOEXEC
    } else {
        flags & !libc::FD_CLOEXEC
    };
    // SAFETY: as above.
    if wanted != flags && unsafe { libc::fcntl(fd, libc::F_SETFD, wanted) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, UdpSocket};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn identities() {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        let identity = identity_of(tcp.as_raw_fd()).unwrap();
        assert_eq!(identity.to_string(), format!("tcp 127.0.0.1:{port}"));
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(
            identity_of(udp.as_raw_fd()).unwrap().kind,
            SockKind::Datagram
        );
        let (unnamed, _) = UnixDatagram::pair().unwrap();
        assert!(identity_of(unnamed.as_raw_fd()).is_err());
        let file = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(identity_of(file.as_raw_fd()).unwrap_err(), "not a socket");
        assert!(identity_of(-1).is_err());
    }

    #[test]
    fn cloexec() {
        let file = std::fs::File::open("/dev/null").unwrap();
        let fd = file.as_raw_fd();
        let get = || unsafe { libc::fcntl(fd, libc::F_GETFD) } & libc::FD_CLOEXEC != 0;
        assert!(get());
        set_cloexec(fd, false).unwrap();
        assert!(!get());
        set_cloexec(fd, true).unwrap();
        assert!(get());
    }
}
