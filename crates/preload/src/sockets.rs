//! The bound sockets of this process and the inherited ones not yet claimed.
//!
//! The descriptor table says which descriptors are bound sockets, and for most sockets that is
//! all there is to know until a restart: a plain `bind` only marks the table, without a lock or
//! an allocation. This registry keeps a record for each socket with more to it (claimed from
//! the previous generation, served, duplicated, identity worked out); a bound descriptor without
//! a record is a socket with that one descriptor. Closing or duplicating a bound socket,
//! readiness and restarts come here, never the per-connection hot path, so a lock is fine.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};

use huptime_handoff::SocketIdentity;
use huptime_handoff::state::InheritedSocket;

use crate::fdtable::{self, Kind};
use crate::lock::ForkSafeLock;
use crate::{process, sys};

/// A socket the program bound (or claimed from the previous generation).
pub struct BoundSocket {
    /// What a bind must ask for to get it; worked out when first needed (see
    /// [`crate::binding::identity_of_bound`]).
    identity: Option<SocketIdentity>,
    /// One of the program's descriptors for it.
    fd: RawFd,
    /// More descriptors for it (a `dup` adds one); usually none, so nothing is allocated.
    aliases: Vec<RawFd>,
    /// Claimed from the previous generation rather than bound afresh.
    pub inherited: bool,
    /// The program serves it (accepted on it, polled it, put it in an epoll set).
    pub served: bool,
}

struct Registry {
    bound: Vec<BoundSocket>,
    unclaimed: Vec<InheritedSocket>,
}

/// How many inherited sockets wait to be claimed: read by every `bind`, without the lock.
static UNCLAIMED: AtomicUsize = AtomicUsize::new(0);

static REGISTRY: ForkSafeLock<Registry> = ForkSafeLock::new(Registry {
    bound: Vec::new(),
    unclaimed: Vec::new(),
});

/// Held across `fork` so the child never inherits it locked.
pub fn lock_for_fork() {
    REGISTRY.acquire();
}

/// Counterpart of [`lock_for_fork`] in parent and child.
pub fn unlock_after_fork() {
    REGISTRY.release();
}

/// Takes the sockets handed over by the previous generation (already validated).
pub fn inherit(sockets: Vec<InheritedSocket>) {
    for socket in &sockets {
        fdtable::set(socket.fd, Kind::Internal);
    }
    let mut registry = REGISTRY.lock();
    registry.unclaimed = sockets;
    UNCLAIMED.store(registry.unclaimed.len(), Ordering::Release);
}

/// Removes and returns the first unclaimed inherited socket with this identity: the k-th bind of
/// an identity gets the k-th socket of that identity.
pub fn claim(identity: &SocketIdentity) -> Option<RawFd> {
    let mut registry = REGISTRY.lock();
    let index = registry
        .unclaimed
        .iter()
        .position(|s| &s.identity == identity)?;
    let socket = registry.unclaimed.remove(index);
    UNCLAIMED.store(registry.unclaimed.len(), Ordering::Release);
    Some(socket.fd)
}

/// An unclaimed inherited socket moved from `from` to `to`; returns whether there was one.
pub fn renumber_unclaimed(from: RawFd, to: RawFd) -> bool {
    let mut registry = REGISTRY.lock();
    let found = registry.unclaimed.iter_mut().find(|s| s.fd == from);
    found.map(|socket| socket.fd = to).is_some()
}

/// Every descriptor of the program that refers to the same socket as `fd`.
pub fn aliases(fd: RawFd) -> Vec<RawFd> {
    let registry = REGISTRY.lock();
    registry.bound.iter().find(|s| s.holds(fd)).map_or_else(
        || vec![fd],
        |s| {
            std::iter::once(s.fd)
                .chain(s.aliases.iter().copied())
                .collect()
        },
    )
}

impl Registry {
    /// The record of the socket behind bound descriptor `fd`, made now if it has none.
    fn record(&mut self, fd: RawFd) -> &mut BoundSocket {
        let index = match self.bound.iter().position(|s| s.holds(fd)) {
            Some(index) => index,
            None => {
                self.bound.push(BoundSocket::new(fd, None, false));
                self.bound.len() - 1
            }
        };
        &mut self.bound[index]
    }

    /// Gives every bound descriptor without a record one, so that the records list every
    /// socket (a walk of the table: only for restarts and the instance record).
    fn record_all(&mut self) {
        fdtable::for_each(Kind::Bound, |fd| {
            self.record(fd);
        });
    }
}

impl BoundSocket {
    fn new(fd: RawFd, identity: Option<SocketIdentity>, inherited: bool) -> Self {
        Self {
            identity,
            fd,
            aliases: Vec::new(),
            inherited,
            served: false,
        }
    }

    fn holds(&self, fd: RawFd) -> bool {
        self.fd == fd || self.aliases.contains(&fd)
    }

    /// The identity, worked out now if it was not yet. `None` for a family we do not hand over.
    fn identity(&mut self) -> Option<&SocketIdentity> {
        if self.identity.is_none() {
            self.identity = crate::binding::identity_of_bound(self.fd);
        }
        self.identity.as_ref()
    }
}

/// `fd` was bound afresh: only the table says so until the socket needs a record.
/// Leaves `errno` alone.
#[inline]
pub fn add(fd: RawFd) {
    fdtable::set(fd, Kind::Bound);
}

/// `fd` was given the inherited socket with `identity`.
pub fn add_claimed(fd: RawFd, identity: SocketIdentity) {
    fdtable::set(fd, Kind::Bound);
    REGISTRY
        .lock()
        .bound
        .push(BoundSocket::new(fd, Some(identity), true));
}

/// `copy` now refers to the same socket as `original`, a bound descriptor.
pub fn add_alias(original: RawFd, copy: RawFd) {
    REGISTRY.lock().record(original).aliases.push(copy);
    fdtable::set(copy, Kind::Bound);
}

/// The program closed (or replaced) `fd`; a socket with no descriptor left is forgotten.
///
/// With `--revive` the socket is kept instead (our own copy, as if inherited and not yet
/// claimed): a program that closes its sockets on the way out (Python does, at finalisation)
/// must still find them when it is started again, and clients meanwhile wait in the queue.
pub fn remove_fd(fd: RawFd) {
    let keep = process::config().is_some_and(|c| c.options.revive) && process::is_master();
    let mut registry = REGISTRY.lock();
    let index = match registry.bound.iter().position(|s| s.holds(fd)) {
        Some(index) => index,
        // Its only descriptor.
        None if keep => {
            registry.bound.push(BoundSocket::new(fd, None, false));
            registry.bound.len() - 1
        }
        None => return,
    };
    let socket = &mut registry.bound[index];
    if socket.fd != fd {
        socket.aliases.retain(|&f| f != fd);
        return;
    }
    if let Some(next) = socket.aliases.pop() {
        socket.fd = next;
        return;
    }
    if !keep {
        registry.bound.remove(index);
        return;
    }
    let identity = socket.identity().cloned();
    registry.bound.remove(index);
    if let Some(identity) = identity
        && crate::retire::serves_clients(fd).is_some()
        && let Some(copy) = sys::duplicate_above(fd, 3)
    {
        fdtable::set(copy, Kind::Internal);
        registry
            .unclaimed
            .push(InheritedSocket { fd: copy, identity });
        UNCLAIMED.store(registry.unclaimed.len(), Ordering::Release);
    }
}

/// Outcome of marking a socket as served.
pub enum Served {
    /// Nothing changed (already served).
    Unchanged,
    /// Marked; other claimed sockets are still waiting to be served.
    Partly,
    /// Every claimed stream socket is served now: the generation is ready.
    All,
}

/// The program serves `fd`, a bound descriptor. Readiness: every claimed stream socket served
/// (datagram sockets count as soon as they are claimed), and at least one socket served.
pub fn mark_served(fd: RawFd) -> Served {
    let mut registry = REGISTRY.lock();
    let socket = registry.record(fd);
    if socket.served {
        return Served::Unchanged;
    }
    socket.served = true;
    let all = registry.bound.iter().all(|s| {
        let connection_oriented = s
            .identity
            .as_ref()
            .is_some_and(|i| i.kind.is_connection_oriented());
        s.served || !s.inherited || !connection_oriented
    });
    if all { Served::All } else { Served::Partly }
}

/// Closes the inherited sockets nobody claimed (a port dropped from the configuration stops
/// accepting rather than queueing clients nobody serves). Returns what was closed.
pub fn close_unclaimed() -> Vec<SocketIdentity> {
    let unclaimed = std::mem::take(&mut REGISTRY.lock().unclaimed);
    UNCLAIMED.store(0, Ordering::Release);
    unclaimed
        .into_iter()
        .map(|socket| {
            fdtable::clear(socket.fd);
            sys::close(socket.fd);
            socket.identity
        })
        .collect()
}

/// Whether `path` is the address of an inherited Unix socket not yet claimed. The usual
/// "unlink, then bind" idiom would otherwise cut that socket off from its clients.
pub fn is_unclaimed_path(path: &[u8]) -> bool {
    let registry = REGISTRY.lock();
    registry
        .unclaimed
        .iter()
        .any(|s| matches!(&s.identity.address, huptime_handoff::Address::UnixPath(p) if p == path))
}

/// Whether any inherited socket is waiting to be claimed.
pub fn has_unclaimed() -> bool {
    UNCLAIMED.load(Ordering::Acquire) > 0
}

/// The sockets to hand to the next generation: one descriptor per socket, for stream sockets
/// that listen and datagram sockets that are not connected (a socket bound only to pick the
/// local port of an outgoing connection is not a server socket). Unclaimed inherited sockets
/// go along too, so a restart before readiness loses nothing.
pub fn handover() -> Vec<InheritedSocket> {
    let mut registry = REGISTRY.lock();
    registry.record_all();
    let mut sockets: Vec<InheritedSocket> = registry
        .bound
        .iter_mut()
        .filter_map(|socket| {
            let fd = socket.fd;
            crate::retire::serves_clients(fd)?;
            let identity = socket.identity()?.clone();
            Some(InheritedSocket { fd, identity })
        })
        .collect();
    sockets.extend(registry.unclaimed.iter().cloned());
    sockets
}

/// Human-readable addresses of the bound sockets, for the instance record.
pub fn describe() -> Vec<String> {
    let mut registry = REGISTRY.lock();
    registry.record_all();
    registry
        .bound
        .iter_mut()
        .filter_map(|s| s.identity().map(ToString::to_string))
        .collect()
}

/// Whether this process has bound any socket (a walk of the table when none has a record).
pub fn any_bound() -> bool {
    !REGISTRY.lock().bound.is_empty() || fdtable::any(Kind::Bound)
}
