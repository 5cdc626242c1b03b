//! Allocation-free walks of `/proc`, for the retire path that may run in a signal handler:
//! the threads of this process, and the children of a process.

use std::ffi::{CStr, c_int};
use std::os::fd::RawFd;

use crate::sys;

/// Calls `visit` with every numeric entry of the directory at `path`.
fn for_each_numeric_entry(path: &CStr, mut visit: impl FnMut(i32)) {
    // SAFETY: path is NUL-terminated.
    let dir = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if dir < 0 {
        return;
    }
    let mut buffer = [0u8; 4096];
    loop {
        // SAFETY: buffer is writable for its length.
        let n =
            unsafe { libc::syscall(libc::SYS_getdents64, dir, buffer.as_mut_ptr(), buffer.len()) };
        if n <= 0 {
            break;
        }
        let mut offset = 0usize;
        while offset + 19 < n as usize {
            // linux_dirent64: u64 ino, i64 off, u16 reclen, u8 type, name...
            let reclen = u16::from_ne_bytes([buffer[offset + 16], buffer[offset + 17]]) as usize;
            if reclen == 0 {
                break;
            }
            let name = &buffer[offset + 19..offset + reclen];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if let Some(number) = parse_decimal(name) {
                visit(number);
            }
            offset += reclen;
        }
    }
    sys::close(dir);
}

fn parse_decimal(text: &[u8]) -> Option<i32> {
    if text.is_empty() || text.len() > 10 {
        return None;
    }
    let mut value: i64 = 0;
    for &b in text {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + i64::from(b - b'0');
    }
    i32::try_from(value).ok()
}

/// Writes `prefix`, `number`, `suffix` and a NUL into `out`; returns the C string.
fn format_path<'a>(out: &'a mut [u8; 64], prefix: &[u8], number: i32, suffix: &[u8]) -> &'a CStr {
    let mut digits = [0u8; 12];
    let mut len = 0;
    let mut n = number.unsigned_abs();
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut at = 0;
    for &b in prefix
        .iter()
        .chain(digits[..len].iter().rev())
        .chain(suffix)
    {
        out[at] = b;
        at += 1;
    }
    out[at] = 0;
    // SAFETY: exactly one NUL, at the end; the parts contain none.
    unsafe { CStr::from_bytes_with_nul_unchecked(&out[..=at]) }
}

/// The threads of this process.
pub fn for_each_thread(visit: impl FnMut(i32)) {
    for_each_numeric_entry(c"/proc/self/task", visit);
}

/// The parent PID and state letter of `pid`, from `/proc/<pid>/stat`.
fn parent_and_state(pid: i32) -> Option<(i32, u8)> {
    let mut path = [0u8; 64];
    let path = format_path(&mut path, b"/proc/", pid, b"/stat");
    // SAFETY: path is NUL-terminated.
    let fd: RawFd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let mut buffer = [0u8; 512];
    // SAFETY: buffer is writable for its length.
    let n = unsafe { libc::read(fd, buffer.as_mut_ptr().cast(), buffer.len()) };
    sys::close(fd);
    let text = &buffer[..usize::try_from(n).ok()?];
    // "pid (comm) S ppid ...": comm may contain spaces and ')', so parse after the last ')'.
    let close = text.iter().rposition(|&b| b == b')')?;
    let mut fields = text[close + 1..]
        .split(|&b| b == b' ')
        .filter(|f| !f.is_empty());
    let state = *fields.next()?.first()?;
    let ppid = parse_decimal(fields.next()?)?;
    Some((ppid, state))
}

/// Whether `pid` is a live (not zombie) child of `parent`.
pub fn is_live_child(pid: i32, parent: i32) -> bool {
    parent_and_state(pid)
        .is_some_and(|(ppid, state)| ppid == parent && state != b'Z' && state != b'X')
}

/// Calls `visit` for every live (not zombie) child of `parent`.
pub fn for_each_child(parent: i32, mut visit: impl FnMut(i32)) {
    for_each_numeric_entry(c"/proc", |pid| {
        if is_live_child(pid, parent) {
            visit(pid);
        }
    });
}

/// Every process with a descriptor for the socket whose inode is `inode` (`socket:[inode]` in
/// `/proc/<pid>/fd`). Not for signal handlers: it allocates.
pub fn holders_of_socket(inode: u64) -> Vec<i32> {
    let wanted = format!("socket:[{inode}]");
    let mut holders = Vec::new();
    for_each_numeric_entry(c"/proc", |pid| {
        let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            return;
        };
        let holds = entries.flatten().any(|entry| {
            std::fs::read_link(entry.path())
                .is_ok_and(|target| target.as_os_str() == wanted.as_str())
        });
        if holds {
            holders.push(pid);
        }
    });
    holders
}

/// Sends `sig` with an integer payload to a process (`sigqueue`).
pub fn queue_signal(pid: i32, sig: c_int, value: usize) -> bool {
    let payload = libc::sigval {
        sival_ptr: value as *mut libc::c_void,
    };
    // SAFETY: plain system call wrapper.
    unsafe { libc::sigqueue(pid, sig, payload) == 0 }
}

/// Sends `sig` with an integer payload to one thread of this process.
pub fn queue_thread_signal(tid: i32, sig: c_int, value: usize) -> bool {
    // The kernel's siginfo layout for SI_QUEUE on 64-bit Linux.
    #[repr(C)]
    struct QueuedInfo {
        signo: c_int,
        errno: c_int,
        code: c_int,
        _pad: c_int,
        pid: libc::pid_t,
        uid: libc::uid_t,
        value: usize,
        _rest: [u8; 96],
    }
    let info = QueuedInfo {
        signo: sig,
        errno: 0,
        code: libc::SI_QUEUE,
        _pad: 0,
        pid: sys::getpid(),
        // SAFETY: no preconditions.
        uid: unsafe { libc::getuid() },
        value,
        _rest: [0; 96],
    };
    // SAFETY: info has the size and layout the kernel reads for rt_tgsigqueueinfo.
    let ret = unsafe {
        crate::real::syscall(
            libc::SYS_rt_tgsigqueueinfo,
            sys::getpid().into(),
            tid.into(),
            sig.into(),
            (&raw const info) as libc::c_long,
            0,
            0,
        )
    };
    ret == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal() {
        assert_eq!(parse_decimal(b"1234"), Some(1234));
        assert_eq!(parse_decimal(b"self"), None);
        assert_eq!(parse_decimal(b""), None);
        assert_eq!(parse_decimal(b"99999999999"), None);
    }

    #[test]
    fn path() {
        let mut out = [0u8; 64];
        assert_eq!(
            format_path(&mut out, b"/proc/", 42, b"/stat"),
            c"/proc/42/stat"
        );
    }
}
