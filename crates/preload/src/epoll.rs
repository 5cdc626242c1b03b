//! The epoll registrations of our bound sockets, saved before they are removed for ghosting so a
//! failed exec-mode restart can put them back exactly (events and user data), as the kernel
//! reports them in `/proc/self/fdinfo/<epoll fd>`.

use std::os::fd::RawFd;

use crate::fdtable::{self, Kind};
use crate::real;

/// One registration: which epoll set, which descriptor, and its `epoll_event`.
pub struct Registration {
    epoll: RawFd,
    fd: RawFd,
    events: u32,
    data: u64,
}

/// Parses the `tfd:` lines of an epoll descriptor's fdinfo.
fn parse_fdinfo(text: &str) -> Vec<(RawFd, u32, u64)> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            if words.next()? != "tfd:" {
                return None;
            }
            let fd = words.next()?.parse().ok()?;
            let mut events = None;
            let mut data = None;
            while let Some(word) = words.next() {
                match word {
                    "events:" => events = u32::from_str_radix(words.next()?, 16).ok(),
                    "data:" => data = u64::from_str_radix(words.next()?, 16).ok(),
                    _ => {}
                }
            }
            Some((fd, events?, data?))
        })
        .collect()
}

/// The registrations of bound sockets in every epoll set of this process.
pub fn registrations_of_bound_sockets() -> Vec<Registration> {
    let mut epolls = Vec::new();
    fdtable::for_each(Kind::Epoll, |fd| epolls.push(fd));
    let mut found = Vec::new();
    for epoll in epolls {
        let Ok(text) = std::fs::read_to_string(format!("/proc/self/fdinfo/{epoll}")) else {
            continue;
        };
        for (fd, events, data) in parse_fdinfo(&text) {
            if fdtable::get(fd) == Kind::Bound {
                found.push(Registration {
                    epoll,
                    fd,
                    events,
                    data,
                });
            }
        }
    }
    found
}

/// Registers them again.
pub fn restore(registrations: &[Registration]) {
    for registration in registrations {
        let mut event = libc::epoll_event {
            events: registration.events,
            u64: registration.data,
        };
        // SAFETY: event is a valid epoll_event.
        unsafe {
            real::epoll_ctl(
                registration.epoll,
                libc::EPOLL_CTL_ADD,
                registration.fd,
                &mut event,
            )
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kernel_fdinfo() {
        let text = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\n\
                    tfd:        5 events:       19 data:                5  pos:0 ino:3a5e sdev:8\n\
                    tfd:       12 events: 80000001 data:     7f3a00001234  pos:0 ino:3a61 sdev:8\n";
        assert_eq!(
            parse_fdinfo(text),
            vec![(5, 0x19, 5), (12, 0x8000_0001, 0x7f3a_0000_1234)]
        );
    }
}
