//! The OS poller, one file per backend.
//!
//! # Backend contract
//!
//! Every backend file defines the same three types with the same inherent methods; `reactor.rs` is written
//! against this list and nothing else:
//!
//! - `Poller`: one kernel event queue (an epoll instance, a kqueue) plus a notifier.
//!   - `Poller::new() -> io::Result<Poller>`: creates the queue and the notifier, both close-on-exec.
//!   - `add(fd, key, Interest)`: starts watching `fd`; events come back carrying `key`.
//!   - `modify(fd, key, Interest)`: changes what is watched.
//!   - `delete(fd)`: stops watching `fd`; must be called before `fd` is closed.
//!   - `wait(&mut Events, deadline: Option<Instant>)`: blocks until an event, a `notify`, or the deadline
//!     (`None`: no deadline; a deadline in the past: do not block). The deadline is honoured to well under
//!     a millisecond. An interrupted wait (EINTR) returns `Ok` with no events.
//!   - `notify()`: makes a blocked or the next `wait` return, from any thread. Cheap to call repeatedly.
//! - `Events`: a reusable buffer of returned events; `Events::with_capacity(n)`, `iter()`.
//! - `Event`: `key`, and `ready`: the flags [`READABLE`], [`WRITABLE`], [`READ_CLOSED`],
//!   [`WRITE_CLOSED`] and [`ERROR`] or'ed together, the same bits the reactor keeps in a source's state, so
//!   that an event reaches the state without a translation. The notifier's own events never reach the
//!   caller.
//!
//! Registrations use [`Interest`], defined here since it is the same on every backend: which directions to
//! watch and whether the kernel reports edges (each new readiness once) or levels (as long as it lasts).
//! The async side registers every source once, for both directions, edge-triggered, so that changing what a
//! task waits for never costs a syscall; the level-triggered mode serves the callback API's non-`ET` events.
//!
//! Syscalls go through [`syscall`], which turns `-1` into `io::Error::last_os_error()`, and [`retry`],
//! the one place where EINTR is retried. Code that must save and restore `errno` itself (the signal
//! handler) uses [`errno`] and [`set_errno`], the one place that knows each platform's errno symbol.

use std::io;
use std::os::fd::RawFd;

/// `Event::ready`: data, a connection to accept, or EOF can be read.
pub(crate) const READABLE: u8 = 1 << 0;
/// `Event::ready`: there is room to write.
pub(crate) const WRITABLE: u8 = 1 << 1;
/// `Event::ready`: the peer will send nothing more.
pub(crate) const READ_CLOSED: u8 = 1 << 2;
/// `Event::ready`: writing can no longer succeed.
pub(crate) const WRITE_CLOSED: u8 = 1 << 3;
/// `Event::ready`: the kernel reported an error on the descriptor.
pub(crate) const ERROR: u8 = 1 << 4;

#[cfg(any(target_os = "linux", target_os = "android"))]
mod epoll;
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) use epoll::{Events, Poller};

#[cfg(any(
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
))]
mod kqueue;
#[cfg(any(
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
))]
pub(crate) use kqueue::{Events, Poller};

#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
)))]
compile_error!("evloop supports Linux/Android (epoll) and macOS/iOS/BSD (kqueue) only");

/// `recv(2)`: the hot read of every stream socket. Returns what the C call returns (`-1` with `errno`
/// set on failure), so that [`syscall`] handles it like any other.
///
/// On Linux x86_64 and aarch64 it is the `recvfrom` system call itself ([`raw_syscall6`]) rather than
/// libc's `recv`, which is a pthread cancellation point: in a process with more than one thread (every
/// multi-thread runtime, and any program that ever used the blocking pool) glibc brackets each call
/// with `__pthread_enable_asynccancel`/`__pthread_disable_asynccancel`, about 60 instructions, for a
/// cancellation that Rust code cannot use safely anyway. The kernel does the same work either way.
///
/// # Safety
/// `buf` must be valid for writes of `len` bytes.
#[inline]
pub(crate) unsafe fn recv(
    fd: RawFd,
    buf: *mut libc::c_void,
    len: usize,
    flags: libc::c_int,
) -> isize {
    #[cfg(all(
        any(target_os = "linux", target_os = "android"),
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    {
        let args = [fd as usize, buf as usize, len, flags as usize, 0, 0];
        // SAFETY: recvfrom with a null address writes only `buf[..len]`, valid by the caller's contract.
        unsafe { raw_syscall6(libc::SYS_recvfrom, args) }
    }
    #[cfg(not(all(
        any(target_os = "linux", target_os = "android"),
        any(target_arch = "x86_64", target_arch = "aarch64")
    )))]
    // SAFETY: as above.
    unsafe {
        libc::recv(fd, buf, len, flags)
    }
}

/// `send(2)`, made like [`recv`] (the `sendto` system call itself on Linux x86_64 and aarch64).
///
/// # Safety
/// `buf` must be valid for reads of `len` bytes.
#[inline]
pub(crate) unsafe fn send(
    fd: RawFd,
    buf: *const libc::c_void,
    len: usize,
    flags: libc::c_int,
) -> isize {
    #[cfg(all(
        any(target_os = "linux", target_os = "android"),
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    {
        let args = [fd as usize, buf as usize, len, flags as usize, 0, 0];
        // SAFETY: sendto with a null address reads only `buf[..len]`, valid by the caller's contract.
        unsafe { raw_syscall6(libc::SYS_sendto, args) }
    }
    #[cfg(not(all(
        any(target_os = "linux", target_os = "android"),
        any(target_arch = "x86_64", target_arch = "aarch64")
    )))]
    // SAFETY: as above.
    unsafe {
        libc::send(fd, buf, len, flags)
    }
}

/// Makes Linux system call `nr` with six arguments, as libc's `syscall(2)` does but inline: the kernel
/// returns `-errno` on failure, which is stored in `errno` and turned into `-1`, the C convention that
/// [`syscall`] expects.
///
/// # Safety
/// `nr` and `args` must form a system call that is sound to make: any pointer among the arguments must
/// be valid for what that call does with it.
#[cfg(all(
    any(target_os = "linux", target_os = "android"),
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
#[inline]
unsafe fn raw_syscall6(nr: libc::c_long, args: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the caller vouches for the call itself. The asm follows the kernel's calling convention:
    // on x86_64 the number in rax, the arguments in rdi, rsi, rdx, r10, r8, r9, the result in rax, and
    // rcx and r11 clobbered by `syscall`; on aarch64 the number in x8, the arguments in x0–x5, the
    // result in x0. Neither touches the stack.
    unsafe {
        #[cfg(target_arch = "x86_64")]
        std::arch::asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") args[0], in("rsi") args[1], in("rdx") args[2],
            in("r10") args[3], in("r8") args[4], in("r9") args[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
        #[cfg(target_arch = "aarch64")]
        std::arch::asm!(
            "svc 0",
            in("x8") nr,
            inlateout("x0") args[0] as isize => ret,
            in("x1") args[1], in("x2") args[2], in("x3") args[3], in("x4") args[4], in("x5") args[5],
            options(nostack),
        );
    }
    // The kernel's errors are -4095..=-1; anything else is a result.
    if (-4095..0).contains(&ret) {
        set_errno(-ret as libc::c_int);
        return -1;
    }
    ret
}

/// What a registration watches, and how the kernel reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Interest {
    pub(crate) read: bool,
    pub(crate) write: bool,
    /// Report each new readiness once (epoll `EPOLLET`, kqueue `EV_CLEAR`) instead of while it lasts.
    pub(crate) edge: bool,
}

impl Interest {
    /// Both directions, edge-triggered: what every async source uses.
    pub(crate) const BOTH_EDGE: Interest = Interest {
        read: true,
        write: true,
        edge: true,
    };
}

/// Turns a C-style `-1` return into `io::Error::last_os_error()`.
#[inline]
pub(crate) fn syscall<T: IsMinusOne>(ret: T) -> io::Result<T> {
    if ret.is_minus_one() {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Runs `f` until it fails with something other than EINTR: the one place where EINTR is retried.
#[inline]
pub(crate) fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// The integer types syscalls return.
pub(crate) trait IsMinusOne {
    fn is_minus_one(&self) -> bool;
}

macro_rules! impl_is_minus_one {
    ($($t:ty)*) => {$(
        impl IsMinusOne for $t {
            #[inline]
            fn is_minus_one(&self) -> bool {
                *self == -1
            }
        }
    )*};
}
impl_is_minus_one! { i32 i64 isize }

/// Puts `fd` in non-blocking mode.
pub(crate) fn set_nonblocking(fd: std::os::fd::RawFd) -> io::Result<()> {
    // SAFETY: fcntl with F_GETFL/F_SETFL takes no pointers; an invalid fd yields EBADF.
    let flags = syscall(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    if flags & libc::O_NONBLOCK == 0 {
        // SAFETY: as above.
        syscall(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    }
    Ok(())
}

/// This thread's `errno` slot. Each libc names the accessor differently; std (`sys/io/error/unix.rs`)
/// and nix (`src/errno.rs`) use the same table. On DragonFly errno is a thread-local variable and
/// `__error` only a `static inline` in the C header, not a symbol: the libc crate declares
/// `__errno_location` there instead (its old `__error` shim is deprecated in favour of it), as nix uses.
fn errno_location() -> *mut libc::c_int {
    #[cfg(any(target_os = "linux", target_os = "dragonfly"))]
    // SAFETY: returns this thread's errno slot; no preconditions.
    let slot = unsafe { libc::__errno_location() };
    #[cfg(any(target_os = "android", target_os = "netbsd", target_os = "openbsd"))]
    // SAFETY: as above.
    let slot = unsafe { libc::__errno() };
    #[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
    // SAFETY: as above.
    let slot = unsafe { libc::__error() };
    slot
}

/// The calling thread's `errno`. To turn a failed call into an error, use [`syscall`] instead.
pub(crate) fn errno() -> libc::c_int {
    // SAFETY: the errno slot is valid, and only this thread's, for the thread's lifetime.
    unsafe { *errno_location() }
}

/// Sets the calling thread's `errno` (a signal handler restores the value it interrupted).
pub(crate) fn set_errno(value: libc::c_int) {
    // SAFETY: as in `errno`.
    unsafe { *errno_location() = value };
}
