//! `libhuptime.so`, the library `huptime` preloads into the program: the libc symbols we hook,
//! and nothing else.
//!
//! Every process the program starts inherits `LD_PRELOAD`, so this library is also loaded into
//! the shell commands, compilers and health checks it runs, which never bind a socket. It is
//! built to cost them nothing measurable: no std, no unwinder, a handful of imports (each
//! import is a symbol lookup at every process start). Only a process that takes part in an
//! instance loads the engine, `libhuptime_engine.so` from the same directory; from then on
//! every hook calls the engine's. Everywhere else a hook calls libc's function, looked up on
//! first use.
//!
//! build.rs compiles this file into the cdylib with `panic=abort`: nothing here can panic
//! (no indexing, no arithmetic that can overflow), and the panic handler only aborts.

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

use core::ffi::{CStr, c_char, c_int, c_long, c_uint, c_ulong, c_void};
use core::sync::atomic::{AtomicUsize, Ordering};

#[link(name = "c")]
unsafe extern "C" {
    fn dlsym(handle: *mut c_void, name: *const c_char) -> *mut c_void;
    fn dlopen(path: *const c_char, flags: c_int) -> *mut c_void;
    fn dladdr(address: *const c_void, info: *mut DlInfo) -> c_int;
    fn dlerror() -> *const c_char;
    fn getpid() -> c_int;
    fn write(fd: c_int, buf: *const c_void, count: usize) -> isize;
    fn __errno_location() -> *mut c_int;
    fn abort() -> !;
}

#[repr(C)]
struct DlInfo {
    file: *const c_char,
    base: *mut c_void,
    symbol: *const c_char,
    address: *mut c_void,
}

const RTLD_NEXT: *mut c_void = -1isize as *mut c_void;
const RTLD_NOW: c_int = 2;
const ENOSYS: c_int = 38;

/// The engine's file name; it is built beside this library.
const ENGINE: &[u8] = b"libhuptime_engine.so";

/// The variables the launcher hands a program (`huptime_handoff::{STATE_ENV, OPTIONS_ENV}`),
/// and the state format whose `pid=` field says which process they are for.
const STATE_ENV: &[u8] = b"HUPTIME_STATE";
const OPTIONS_ENV: &[u8] = b"HUPTIME_OPTIONS";
const STATE_FORMAT: &[u8] = b"huptime/1";

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // SAFETY: abort has no preconditions.
    unsafe { abort() }
}

// The precompiled `core` brings unwind tables that name the unwinding personality, though
// nothing here unwinds. A hidden definition satisfies the loader without exporting one that
// could capture the unwinding of a Rust library in the host program.
#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".globl rust_eh_personality",
    ".hidden rust_eh_personality",
    "rust_eh_personality:",
    "ud2",
);
#[cfg(target_arch = "aarch64")]
core::arch::global_asm!(
    ".globl rust_eh_personality",
    ".hidden rust_eh_personality",
    "rust_eh_personality:",
    "udf #0",
);

macro_rules! cstr {
    ($text:expr) => {
        const {
            match CStr::from_bytes_with_nul(concat!($text, "\0").as_bytes()) {
                Ok(name) => name,
                Err(_) => panic!("a symbol name with a NUL in it"),
            }
        }
    };
}

/// Looks up libc's `name` (the next definition after ours), caching it in `slot`; 0 if none.
fn resolve(slot: &AtomicUsize, name: &CStr) -> usize {
    let cached = slot.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    // SAFETY: dlsym with a NUL-terminated name.
    let found = unsafe { dlsym(RTLD_NEXT, name.as_ptr()) } as usize;
    slot.store(found, Ordering::Relaxed);
    found
}

/// What a hook returns when libc has no such function: the C failure value, with `ENOSYS`.
trait Missing {
    const FAILED: Self;
}
impl Missing for c_int {
    const FAILED: Self = -1;
}
impl Missing for c_long {
    const FAILED: Self = -1;
}
impl Missing for usize {
    const FAILED: Self = usize::MAX; // SIG_ERR
}
impl Missing for () {
    const FAILED: Self = ();
}

fn missing<T: Missing>() -> T {
    // SAFETY: errno is this thread's.
    unsafe { *__errno_location() = ENOSYS };
    T::FAILED
}

macro_rules! hooks {
    ($( fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty; )*) => {
        /// Where each hook goes: the engine's function once it is loaded, else libc's.
        #[allow(non_upper_case_globals)]
        mod route {
            pub mod engine {
                use core::sync::atomic::AtomicUsize;
                $( pub static $name: AtomicUsize = AtomicUsize::new(0); )*
            }
            pub mod libc {
                use core::sync::atomic::AtomicUsize;
                $( pub static $name: AtomicUsize = AtomicUsize::new(0); )*
            }
        }

        /// The engine's symbol for each hook.
        const ENGINE_HOOKS: &[(&AtomicUsize, &CStr)] = &[
            $( (&route::engine::$name, cstr!(concat!("huptime_hook_", stringify!($name)))), )*
            (&ENGINE_EXIT, cstr!("huptime_hook_exit")),
        ];

        $(
            /// # Safety
            /// Same contract as the libc function of that name.
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
                let mut target = route::engine::$name.load(Ordering::Acquire);
                if target == 0 {
                    target = resolve(&route::libc::$name, cstr!(stringify!($name)));
                    if target == 0 {
                        return missing();
                    }
                }
                // SAFETY: `target` is the engine's hook for this symbol or libc's definition
                // of it, both with the C signature spelled out here.
                let function: unsafe extern "C" fn($($ty),*) -> $ret =
                    unsafe { core::mem::transmute(target) };
                unsafe { function($($arg),*) }
            }
        )*
    };
}

hooks! {
    fn bind(fd: c_int, addr: *const c_void, len: u32) -> c_int;
    fn listen(fd: c_int, backlog: c_int) -> c_int;
    fn accept(fd: c_int, addr: *mut c_void, len: *mut u32) -> c_int;
    fn accept4(fd: c_int, addr: *mut c_void, len: *mut u32, flags: c_int) -> c_int;
    fn close(fd: c_int) -> c_int;
    fn dup(fd: c_int) -> c_int;
    fn dup2(old: c_int, new: c_int) -> c_int;
    fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int;
    fn fcntl(fd: c_int, cmd: c_int, arg: c_long) -> c_int;
    fn fcntl64(fd: c_int, cmd: c_int, arg: c_long) -> c_int;
    fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int;
    fn closefrom(first: c_int) -> ();
    fn fork() -> c_int;
    fn sigaction(sig: c_int, act: *const c_void, old: *mut c_void) -> c_int;
    fn signal(sig: c_int, handler: usize) -> usize;
    fn setsid() -> c_int;
    fn unlink(path: *const c_char) -> c_int;
    fn unlinkat(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int;
    fn sendto(fd: c_int, buf: *const c_void, len: usize, flags: c_int, addr: *const c_void, addrlen: u32) -> c_long;
    fn sendmsg(fd: c_int, msg: *const c_void, flags: c_int) -> c_long;
    fn sendmmsg(fd: c_int, msgs: *mut c_void, count: c_uint, flags: c_int) -> c_int;
    fn epoll_create(size: c_int) -> c_int;
    fn epoll_create1(flags: c_int) -> c_int;
    fn epoll_ctl(epfd: c_int, op: c_int, fd: c_int, event: *mut c_void) -> c_int;
    fn poll(fds: *mut c_void, nfds: c_ulong, timeout: c_int) -> c_int;
    fn __poll_chk(fds: *mut c_void, nfds: c_ulong, timeout: c_int, length: usize) -> c_int;
    fn ppoll(fds: *mut c_void, nfds: c_ulong, timeout: *const c_void, mask: *const c_void) -> c_int;
    fn select(nfds: c_int, r: *mut c_void, w: *mut c_void, e: *mut c_void, timeout: *mut c_void) -> c_int;
    fn pselect(nfds: c_int, r: *mut c_void, w: *mut c_void, e: *mut c_void, timeout: *const c_void, mask: *const c_void) -> c_int;
    fn syscall(n: c_long, a1: c_long, a2: c_long, a3: c_long, a4: c_long, a5: c_long, a6: c_long) -> c_long;
}

// `exit` never returns, so it is routed by hand.
static ENGINE_EXIT: AtomicUsize = AtomicUsize::new(0);
static LIBC_EXIT: AtomicUsize = AtomicUsize::new(0);

/// # Safety
/// Same contract as libc's `exit`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn exit(status: c_int) -> ! {
    let mut target = ENGINE_EXIT.load(Ordering::Acquire);
    if target == 0 {
        target = resolve(&LIBC_EXIT, c"exit");
    }
    if target == 0 {
        // SAFETY: no libc exit to call (cannot happen in a process libc started).
        unsafe { abort() }
    }
    // SAFETY: the engine's `exit` hook or libc's `exit`.
    let function: unsafe extern "C" fn(c_int) -> ! = unsafe { core::mem::transmute(target) };
    unsafe { function(status) }
}

#[used]
#[unsafe(link_section = ".init_array")]
static START: extern "C" fn(c_int, *const *const c_char, *const *const c_char) = start;

extern "C" fn start(_argc: c_int, _argv: *const *const c_char, envp: *const *const c_char) {
    // SAFETY: the loader passes constructors the process's NULL-terminated environment.
    if unsafe { takes_part(envp) } {
        load_engine();
    }
}

/// The value of `name` in a NULL-terminated `envp`.
///
/// # Safety
/// `envp` is NULL or a NULL-terminated array of C strings that outlive the result.
unsafe fn env_value<'a>(envp: *const *const c_char, name: &[u8]) -> Option<&'a [u8]> {
    if envp.is_null() {
        return None;
    }
    let mut entry = envp;
    // SAFETY: the caller's contract.
    unsafe {
        while !(*entry).is_null() {
            let bytes = CStr::from_ptr(*entry).to_bytes();
            if let Some(value) = bytes
                .strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(b"="))
            {
                return Some(value);
            }
            entry = entry.add(1);
        }
    }
    None
}

/// Whether this process is one `huptime` runs: both variables set, and a state that does not
/// name another process (commands the program runs inherit the variables). A state this build
/// cannot read is the engine's to report.
///
/// # Safety
/// As [`env_value`].
unsafe fn takes_part(envp: *const *const c_char) -> bool {
    // SAFETY: the caller's contract.
    let (state, options) = unsafe { (env_value(envp, STATE_ENV), env_value(envp, OPTIONS_ENV)) };
    let (Some(state), Some(_)) = (state, options) else {
        return false;
    };
    // SAFETY: getpid has no preconditions.
    named_pid(state).is_none_or(|pid| pid == unsafe { getpid() })
}

/// The `pid=` field of a state in the format this build writes.
fn named_pid(state: &[u8]) -> Option<c_int> {
    let mut fields = state.split(|&byte| byte == b';');
    if fields.next() != Some(STATE_FORMAT) {
        return None;
    }
    let digits = fields.find_map(|field| field.strip_prefix(b"pid="))?;
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0 as c_int, |pid, &digit| {
        if !digit.is_ascii_digit() {
            return None;
        }
        pid.checked_mul(10)?.checked_add(c_int::from(digit - b'0'))
    })
}

/// Loads the engine beside this library and routes every hook to it; on any failure the
/// program runs on without restarts, and says why on stderr.
fn load_engine() {
    let mut path = Line::new();
    let Some(directory) = own_directory() else {
        warn(&[b"cannot tell where libhuptime.so is; restarts are disabled"]);
        return;
    };
    path.push(directory);
    path.push(ENGINE);
    let Some(path) = path.as_c_str() else {
        warn(&[b"the library's path is too long; restarts are disabled"]);
        return;
    };
    // SAFETY: dlopen with a NUL-terminated path; the engine's constructor runs here.
    let handle = unsafe { dlopen(path.as_ptr(), RTLD_NOW) };
    if handle.is_null() {
        // SAFETY: dlerror describes the failed dlopen of this thread.
        let reason = unsafe { dlerror() };
        let reason = if reason.is_null() {
            &b"unknown error"[..]
        } else {
            // SAFETY: dlerror returns a C string.
            unsafe { CStr::from_ptr(reason) }.to_bytes()
        };
        warn(&[
            b"cannot load ",
            path.to_bytes(),
            b": ",
            reason,
            b"; restarts are disabled",
        ]);
        return;
    }
    let mut found = [0usize; ENGINE_HOOKS.len()];
    for ((_, name), slot) in ENGINE_HOOKS.iter().zip(found.iter_mut()) {
        // SAFETY: dlsym on a handle dlopen returned.
        *slot = unsafe { dlsym(handle, name.as_ptr()) } as usize;
        if *slot == 0 {
            warn(&[
                path.to_bytes(),
                b" has no ",
                name.to_bytes(),
                b" (not the engine of this libhuptime.so); restarts are disabled",
            ]);
            return;
        }
    }
    for ((route, _), address) in ENGINE_HOOKS.iter().zip(found) {
        route.store(address, Ordering::Release);
    }
}

/// The directory this library was loaded from, with its trailing `/`; empty when the loader
/// found it by name alone.
fn own_directory() -> Option<&'static [u8]> {
    let mut info = DlInfo {
        file: core::ptr::null(),
        base: core::ptr::null_mut(),
        symbol: core::ptr::null(),
        address: core::ptr::null_mut(),
    };
    // SAFETY: dladdr fills `info` for an address inside this library.
    if unsafe { dladdr(start as *const c_void, &mut info) } == 0 || info.file.is_null() {
        return None;
    }
    // SAFETY: the loader's name for this library lives as long as the library.
    let file = unsafe { CStr::from_ptr(info.file) }.to_bytes();
    let end = file
        .iter()
        .rposition(|&byte| byte == b'/')
        .map_or(0, |slash| slash + 1);
    file.get(..end)
}

/// Writes `huptime[PID]: <parts>` as one line on stderr.
fn warn(parts: &[&[u8]]) {
    let mut line = Line::new();
    line.push(b"huptime[");
    // SAFETY: getpid has no preconditions.
    line.push_number(unsafe { getpid() }.unsigned_abs());
    line.push(b"]: ");
    for part in parts {
        line.push(part);
    }
    line.push(b"\n");
    let bytes = line.to_bytes();
    // SAFETY: writing our own buffer; a failed warning changes nothing.
    unsafe { write(2, bytes.as_ptr().cast(), bytes.len()) };
}

/// A fixed buffer for a path or a message (no allocator here); longer text is cut.
struct Line {
    bytes: [u8; 4096],
    len: usize,
}

impl Line {
    const fn new() -> Self {
        Self {
            bytes: [0; 4096],
            len: 0,
        }
    }

    fn push(&mut self, text: &[u8]) {
        // One byte stays free for the NUL of `as_c_str`.
        let room = self.bytes.len() - 1 - self.len;
        let take = text.len().min(room);
        if let (Some(target), Some(source)) = (
            self.bytes.get_mut(self.len..self.len + take),
            text.get(..take),
        ) {
            target.copy_from_slice(source);
            self.len += take;
        }
    }

    fn push_number(&mut self, mut number: u32) {
        let mut digits = [0u8; 10];
        let mut start = digits.len();
        loop {
            start -= 1;
            if let Some(slot) = digits.get_mut(start) {
                *slot = b'0' + (number % 10) as u8;
            }
            number /= 10;
            if number == 0 || start == 0 {
                break;
            }
        }
        self.push(digits.get(start..).unwrap_or_default());
    }

    fn to_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }

    /// The text as a C string, unless it was cut or holds a NUL.
    fn as_c_str(&mut self) -> Option<&CStr> {
        if self.len >= self.bytes.len() - 1 {
            return None;
        }
        *self.bytes.get_mut(self.len)? = 0;
        CStr::from_bytes_with_nul(self.bytes.get(..=self.len)?).ok()
    }
}
