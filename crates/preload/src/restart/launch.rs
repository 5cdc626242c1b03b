//! Starting the next generation from a [`Plan`]: in a new process (fork mode) or in place of
//! this one (exec mode, and `--revive`).
//!
//! Fork mode uses `clone(CLONE_VM | CLONE_VFORK)` with its own stack, like `posix_spawn`: no
//! page tables are copied (a JVM with a large heap restarts as fast as a small program) and no
//! `pthread_atfork` handler of the program runs on our thread. Until it executes, the child
//! shares our memory and makes system calls only. (It is a "clone child" without exit signal
//! until then; `execve` makes it an ordinary child, so we wait for it with `__WALL`.)

use std::ffi::{c_int, c_void};
use std::os::fd::RawFd;

use crate::restart::plan::{Plan, write_pid};
use crate::{errno, real, sys};

/// How a start failed, sent by the child over the readiness channel.
pub const FAILED: u8 = b'E';

/// Which step failed.
#[derive(Clone, Copy)]
#[repr(u8)]
enum Step {
    Directory = b'c',
    Descriptors = b'd',
    Execute = b'x',
}

/// Describes a failure report from the child (`FAILED`, step, errno as 4 bytes).
pub fn describe_failure(report: &[u8], plan_path: &str) -> String {
    if report.len() < 6 {
        return "the new generation failed to start".into();
    }
    let code = i32::from_ne_bytes([report[2], report[3], report[4], report[5]]);
    let reason = std::io::Error::from_raw_os_error(code);
    match report[1] {
        b'c' => format!("cannot enter the working directory: {reason}"),
        b'd' => format!("cannot set up descriptors: {reason}"),
        _ => format!("cannot execute {plan_path}: {reason}"),
    }
}

/// A started next generation.
pub struct Child {
    pub pid: i32,
    /// Becomes readable when the child exits.
    pub pidfd: RawFd,
}

struct ChildArgs<'a> {
    plan: &'a Plan,
    report_fd: RawFd,
}

const STACK_SIZE: usize = 256 * 1024;

/// Starts the next generation in a new process; `report_fd` is its end of the readiness
/// channel, which also carries an `execve` failure back.
pub fn spawn(plan: &Plan, report_fd: RawFd) -> Result<Child, String> {
    let args = ChildArgs { plan, report_fd };
    // SAFETY: an anonymous private mapping for the child's stack, unmapped below.
    let stack = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            STACK_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if stack == libc::MAP_FAILED {
        return Err(format!(
            "cannot allocate a stack: {}",
            std::io::Error::last_os_error()
        ));
    }
    // No signal handler of ours may run on the child's stack while it shares our memory.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    let mut pidfd: c_int = -1;
    // SAFETY: the stack grows down from its top; args outlives the child's use of it because
    // CLONE_VFORK suspends us until the child has executed or exited.
    let pid = unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let pid = libc::clone(
            child_main,
            stack.cast::<u8>().add(STACK_SIZE).cast(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD,
            (&raw const args).cast_mut().cast(),
            &mut pidfd,
        );
        let clone_errno = errno::get();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        libc::munmap(stack, STACK_SIZE);
        errno::set(clone_errno);
        pid
    };
    if pid < 0 {
        return Err(format!(
            "cannot create a process: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(Child { pid, pidfd })
}

fn report(fd: RawFd, step: Step, code: c_int) {
    let code = code.to_ne_bytes();
    let message = [FAILED, step as u8, code[0], code[1], code[2], code[3]];
    // SAFETY: send on our own descriptor; MSG_NOSIGNAL: never SIGPIPE.
    unsafe {
        libc::send(
            fd,
            message.as_ptr().cast(),
            message.len(),
            libc::MSG_NOSIGNAL,
        )
    };
}

extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: arg points at the ChildArgs that spawn keeps alive while we run.
    let args = unsafe { &*(arg as *const ChildArgs<'_>) };
    let plan = args.plan;
    if let Some(slot) = plan.pid_slot {
        write_pid(slot, sys::getpid());
    }
    // Close-on-exec for every descriptor from 3 up, in one call that does not depend on the
    // descriptor limit; then clear it on the ones we keep.
    // SAFETY: raw system call with integer arguments.
    let marked = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    } == 0;
    if !marked || !plan.keep.iter().all(|&fd| sys::set_cloexec(fd, false)) {
        report(args.report_fd, Step::Descriptors, errno::get());
        // SAFETY: leaving the child.
        unsafe { libc::_exit(127) };
    }
    sys::set_cloexec(args.report_fd, false);
    let failure = apply_and_execute(plan);
    report(args.report_fd, failure.0, failure.1);
    // SAFETY: leaving the child.
    unsafe { libc::_exit(127) }
}

/// Stdio, directory, dispositions, mask, then `execve`. Returns only on failure.
fn apply_and_execute(plan: &Plan) -> (Step, c_int) {
    if let Some(stdio) = plan.stdio {
        for (target, &saved) in stdio.iter().enumerate() {
            // SAFETY: dup2 onto 0..2; clears close-on-exec on the target.
            if saved != target as RawFd && unsafe { real::dup2(saved, target as RawFd) } < 0 {
                return (Step::Descriptors, errno::get());
            }
        }
    }
    // SAFETY: cwd is NUL-terminated.
    if unsafe { libc::chdir(plan.cwd.as_ptr()) } != 0 {
        return (Step::Directory, errno::get());
    }
    set_dispositions(&plan.dispositions);
    // SAFETY: plan.sigmask is a valid set.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &plan.sigmask, std::ptr::null_mut()) };
    execute(plan);
    (Step::Execute, errno::get())
}

fn set_dispositions(dispositions: &[(c_int, libc::sighandler_t)]) {
    for &(sig, handler) in dispositions {
        // SAFETY: installing SIG_DFL or SIG_IGN.
        unsafe { libc::signal(sig, handler) };
    }
}

/// `execve`, and like `execvp`, `/bin/sh` for an executable text file without `#!`.
fn execute(plan: &Plan) {
    // SAFETY: all pointer arrays are NULL-terminated and point into the plan.
    unsafe {
        libc::execve(
            plan.path.as_ptr(),
            plan.argv_ptrs.as_ptr(),
            plan.env_ptrs.as_ptr(),
        );
        if errno::get() == libc::ENOEXEC {
            libc::execve(
                c"/bin/sh".as_ptr(),
                plan.shell_argv_ptrs.as_ptr(),
                plan.env_ptrs.as_ptr(),
            );
            errno::set(libc::ENOEXEC);
        }
    }
}

/// Replaces this process image with the next generation (exec mode, `--revive`). Everything it
/// changes is put back if `execve` fails, so the old image goes on serving. Returns the reason.
pub fn execute_in_place(plan: &Plan) -> String {
    let mut undo = Undo::default();
    let failure = undo.apply(plan);
    undo.revert();
    failure
}

/// What [`execute_in_place`] changed, to put back on failure.
#[derive(Default)]
struct Undo {
    cloexec_set: Vec<RawFd>,
    cloexec_cleared: Vec<RawFd>,
    async_cleared: Vec<RawFd>,
    stdio: Vec<(RawFd, RawFd)>,
    directory: Option<RawFd>,
    dispositions: Vec<(c_int, libc::sighandler_t)>,
    mask: Option<libc::sigset_t>,
}

impl Undo {
    fn apply(&mut self, plan: &Plan) -> String {
        for fd in open_descriptors() {
            if fd <= 2 || plan.keep.contains(&fd) {
                continue;
            }
            if sys::descriptor_flags(fd).is_some_and(|f| f & libc::FD_CLOEXEC == 0)
                && sys::set_cloexec(fd, true)
            {
                self.cloexec_set.push(fd);
            }
            // Closing both ends of a socket pair with O_ASYNC (nginx's channels) during the
            // exec would send SIGIO to this PID, killing the new program before it can have a
            // handler.
            if sys::status_flags(fd).is_some_and(|f| f & libc::O_ASYNC != 0)
                && sys::set_status_flag(fd, libc::O_ASYNC, false)
            {
                self.async_cleared.push(fd);
            }
        }
        for &fd in &plan.keep {
            if sys::descriptor_flags(fd).is_some_and(|f| f & libc::FD_CLOEXEC != 0) {
                if !sys::set_cloexec(fd, false) {
                    return format!(
                        "cannot keep descriptor {fd}: {}",
                        std::io::Error::last_os_error()
                    );
                }
                self.cloexec_cleared.push(fd);
            }
        }
        if let Some(stdio) = plan.stdio {
            for (target, &saved) in stdio.iter().enumerate() {
                let target = target as RawFd;
                if saved == target {
                    continue;
                }
                let Some(previous) = sys::duplicate_above(target, 3) else {
                    continue;
                };
                // SAFETY: dup2 of our saved copy onto a standard descriptor.
                if unsafe { real::dup2(saved, target) } < 0 {
                    sys::close(previous);
                    return format!(
                        "cannot restore descriptor {target}: {}",
                        std::io::Error::last_os_error()
                    );
                }
                self.stdio.push((previous, target));
            }
        }
        // SAFETY: open(".") for a directory handle to come back to.
        let here = unsafe {
            libc::open(
                c".".as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if here >= 0 {
            self.directory = Some(here);
        }
        // SAFETY: cwd is NUL-terminated.
        if unsafe { libc::chdir(plan.cwd.as_ptr()) } != 0 {
            return format!(
                "cannot enter {}: {}",
                plan.cwd.to_string_lossy(),
                std::io::Error::last_os_error()
            );
        }
        let mut old_mask: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid sets.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &plan.sigmask, &mut old_mask) };
        self.mask = Some(old_mask);
        for &(sig, handler) in &plan.dispositions {
            // SAFETY: installing SIG_DFL or SIG_IGN; the previous one is kept to restore.
            let previous = unsafe { libc::signal(sig, handler) };
            self.dispositions.push((sig, previous));
        }
        execute(plan);
        format!(
            "cannot execute {}: {}",
            plan.path.to_string_lossy(),
            std::io::Error::last_os_error()
        )
    }

    fn revert(self) {
        set_dispositions(&self.dispositions);
        if let Some(mask) = self.mask {
            // SAFETY: restoring our thread's previous mask.
            unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &mask, std::ptr::null_mut()) };
        }
        if let Some(dir) = self.directory {
            // SAFETY: dir is a directory handle we opened.
            unsafe { libc::fchdir(dir) };
            sys::close(dir);
        }
        for (previous, target) in self.stdio {
            sys::move_onto(previous, target, false);
            sys::close(previous);
        }
        for fd in self.cloexec_cleared {
            sys::set_cloexec(fd, true);
        }
        for fd in self.async_cleared {
            sys::set_status_flag(fd, libc::O_ASYNC, true);
        }
        for fd in self.cloexec_set {
            sys::set_cloexec(fd, false);
        }
    }
}

/// The open descriptors of this process, from `/proc/self/fd` (never a walk up to the limit).
pub fn open_descriptors() -> Vec<RawFd> {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}
