//! Helpers shared by the integration tests. Each test file does `mod util;`; not every file uses every
//! helper, hence the `dead_code` allowance (which covers the submodules too).
#![allow(dead_code)]

/// The hyper server and client of the HTTP tests (tests/http.rs, tests/tls.rs); feature `hyper`.
#[cfg(feature = "hyper")]
pub mod http;

// Re-exported flat, so every test names a helper `util::NAME` wherever it lives; a test file that uses
// none of a submodule's helpers would otherwise warn about the re-export.
mod echo;
#[allow(unused_imports)]
pub use echo::*;
mod examples;
#[allow(unused_imports)]
pub use examples::*;

use std::any::Any;
use std::fs::File;
use std::future::Future;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Wake, Waker};
use std::time::Duration;

/// How long any one test may run before it is failed as hung.
pub const TEST_LIMIT: Duration = Duration::from_secs(10);

/// How much longer than normal a hang bound is under ThreadSanitizer (`scripts/sanitize.sh tsan` sets
/// `EVLOOP_SANITIZER=thread`), which runs every memory access through its runtime: a million tasks
/// take minutes there. The bounds still catch a hang; only their length changes.
pub fn slowdown() -> u32 {
    match std::env::var("EVLOOP_SANITIZER").as_deref() {
        Ok("thread") => 20,
        _ => 1,
    }
}

/// Runs `f` on a fresh thread and fails the test (instead of hanging it) if `f` takes longer than
/// `limit`. A panic in `f` is re-raised here with its original payload.
pub fn with_deadline<T, F>(limit: Duration, f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::Builder::new()
        .name("test-body".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .expect("spawn the test thread");
    let limit = limit * slowdown();
    match rx.recv_timeout(limit) {
        Ok(out) => out,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("the test did not finish within {limit:?}: the runtime is probably stuck")
        }
        // The sender was dropped without sending: `f` panicked.
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(payload) => std::panic::resume_unwind(payload),
            Ok(()) => unreachable!("the test thread ended without a result or a panic"),
        },
    }
}

/// `evloop::block_on(future)` on a fresh thread, failed after [`TEST_LIMIT`].
pub fn block_on<F>(future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    with_deadline(TEST_LIMIT, move || evloop::block_on(future))
}

/// A runtime with `workers` worker threads; 0 makes a current-thread runtime.
pub fn runtime(workers: usize) -> evloop::Runtime {
    match workers {
        0 => evloop::Runtime::new(),
        n => evloop::Runtime::builder().worker_threads(n).build(),
    }
    .expect("build the runtime")
}

/// Runs `body()` to completion on each runtime flavor in turn, a current-thread runtime and a
/// multi-thread one with two workers, each on a fresh thread failed after [`TEST_LIMIT`]. A failure
/// names the flavor. The future need not be `Send` (it is made on the thread that runs it); what it
/// `evloop::spawn`s must be, as on any multi-thread runtime.
pub fn on_each_flavor<F, Fut>(body: F)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()>,
{
    on_each_flavor_within(TEST_LIMIT, body)
}

/// [`on_each_flavor`] with a time limit of its own per flavor, for cases that outlast [`TEST_LIMIT`].
pub fn on_each_flavor_within<F, Fut>(limit: Duration, body: F)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()>,
{
    on_each_runtime(limit, move |rt| rt.block_on(body()))
}

/// Calls `f` with a current-thread runtime, then with a 2-worker one, each on a fresh thread failed
/// after `limit`; for a case that asks the runtime itself (e.g. `timer_count`). A failure names the
/// flavor.
pub fn on_each_runtime<F>(limit: Duration, f: F)
where
    F: Fn(&evloop::Runtime) + Clone + Send + 'static,
{
    for workers in [0, 2] {
        let flavor = if workers == 0 {
            "current-thread"
        } else {
            "multi-thread (2 workers)"
        };
        let f = f.clone();
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            with_deadline(limit, move || f(&runtime(workers)))
        }));
        if let Err(payload) = run {
            panic!("on the {flavor} runtime: {}", panic_message(&*payload));
        }
    }
}

/// The text of a panic payload (`&str` or `String`), or a placeholder.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "<non-string panic payload>".into())
}

/// Runs `f`, which must panic, and returns its panic message.
#[track_caller]
pub fn expect_panic<R>(f: impl FnOnce() -> R) -> String {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(_) => panic!("expected a panic, but the call returned"),
        Err(payload) => panic_message(&*payload),
    }
}

/// CPU time (user + system) consumed so far by the calling thread.
pub fn cpu_time_thread() -> Duration {
    // The thread CPU clock exists on every supported OS (RUSAGE_THREAD does not: macOS, NetBSD and
    // DragonFly lack it); the libc crate leaves NetBSD's out, so it is copied from its <time.h>.
    #[cfg(target_os = "netbsd")]
    const CLOCK_THREAD_CPUTIME_ID: libc::clockid_t = 0x2000_0000;
    #[cfg(not(target_os = "netbsd"))]
    use libc::CLOCK_THREAD_CPUTIME_ID;
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, exclusive timespec for the call.
    let rc = unsafe { libc::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime: {}", std::io::Error::last_os_error());
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// The descriptors this process has open, in increasing order.
pub fn open_fd_list() -> Vec<i32> {
    let mut fds = fd_numbers();
    fds.sort_unstable();
    fds
}

/// Linux and Android list them in /proc; the directory handle itself is one of the entries, in every
/// call alike. Under a sanitizer, the pipes to its symbolizer are left out (see [`symbolizer_pipes`]).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn fd_numbers() -> Vec<i32> {
    let skip = symbolizer_pipes();
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| {
            // Our own stdio is never the symbolizer's, even when the child inherited it.
            skip.is_empty()
                || fd <= 2
                || std::fs::read_link(format!("/proc/self/fd/{fd}"))
                    .map_or(true, |target| !skip.contains(&target))
        })
        .collect()
}

/// The pipes this process shares with a sanitizer's symbolizer. ThreadSanitizer (and ASan) start
/// `llvm-symbolizer` (or `addr2line`) as a child, talking to it over two pipes, the first time they
/// symbolize a stack — which can happen in the middle of a test, to match a suppression
/// (scripts/tsan.supp) — so a descriptor count taken before would see two "leaked" pipes that are the
/// sanitizer's, not evloop's. Only the pipes that are a symbolizer child's stdin and stdout are listed
/// (its stderr is ours, inherited: a pipe too when the test harness captures output, and counted
/// before the child existed); outside a sanitizer (`EVLOOP_SANITIZER` unset) the list is empty and
/// nothing is skipped.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn symbolizer_pipes() -> Vec<std::path::PathBuf> {
    if std::env::var_os("EVLOOP_SANITIZER").is_none() {
        return Vec::new();
    }
    let me = std::process::id().to_string();
    let mut pipes = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return pipes;
    };
    for entry in procs.flatten() {
        let dir = entry.path();
        // /proc/PID/stat: "PID (comm) state PPID ..."; comm may hold spaces, so split after the ')'.
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        let Some((head, tail)) = stat.rsplit_once(')') else {
            continue;
        };
        let ppid = tail.split_whitespace().nth(1);
        let is_symbolizer = head.contains("symbolizer") || head.contains("addr2line");
        if ppid != Some(me.as_str()) || !is_symbolizer {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(dir.join("fd")) else {
            continue;
        };
        for fd in fds
            .flatten()
            .filter(|fd| matches!(fd.file_name().to_str(), Some("0" | "1")))
        {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                if target.to_string_lossy().starts_with("pipe:") {
                    pipes.push(target);
                }
            }
        }
    }
    pipes
}

/// Elsewhere there is no complete listing (FreeBSD's /dev/fd shows only 0-2 without fdescfs), so every
/// number under the descriptor limit is asked with `poll`, which flags a closed one with POLLNVAL.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn fd_numbers() -> Vec<i32> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a live rlimit that getrlimit writes.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    // Bounded, in case the limit is "unlimited"; no test opens that many.
    let end = lim.rlim_cur.min(1 << 20) as i32;
    let mut open = Vec::new();
    let mut start = 0;
    while start < end {
        let mut chunk: Vec<libc::pollfd> = (start..end.min(start + 128))
            .map(|fd| libc::pollfd {
                fd,
                events: 0,
                revents: 0,
            })
            .collect();
        // SAFETY: `chunk` is a live array of `chunk.len()` pollfds; a zero timeout never blocks.
        let rc = unsafe { libc::poll(chunk.as_mut_ptr(), chunk.len() as libc::nfds_t, 0) };
        assert!(rc >= 0, "poll: {}", std::io::Error::last_os_error());
        open.extend(
            chunk
                .iter()
                .filter(|p| p.revents & libc::POLLNVAL == 0)
                .map(|p| p.fd),
        );
        start += 128;
    }
    open
}

/// How many file descriptors this process has open.
pub fn open_fds() -> usize {
    fd_numbers().len()
}

/// The highest open descriptor.
pub fn highest_fd() -> u64 {
    open_fd_list().last().copied().unwrap_or(0) as u64
}

/// A close-on-exec pipe: `(read end, write end)`, both blocking until wrapped in `evloop::Async`.
pub fn pipe() -> (File, File) {
    let mut fds = [0; 2];
    // macOS has no pipe2: the descriptors are made close-on-exec right after (a child spawned in
    // between by another test thread could inherit them, which no test depends on).
    #[cfg(any(target_os = "macos", target_os = "ios"))]
    // SAFETY: `fds` has room for the two descriptors pipe writes; F_SETFD takes no pointers.
    let rc = unsafe {
        let mut rc = libc::pipe(fds.as_mut_ptr());
        for fd in fds {
            if rc == 0 {
                rc = libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
        rc
    };
    #[cfg(not(any(target_os = "macos", target_os = "ios")))]
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe: {}", std::io::Error::last_os_error());
    // SAFETY: the pipe was made, so both descriptors are open and owned by nobody else.
    unsafe {
        (
            File::from(OwnedFd::from_raw_fd(fds[0])),
            File::from(OwnedFd::from_raw_fd(fds[1])),
        )
    }
}

/// A waker that counts its wakes; `Arc::strong_count` on it tells how many clones are still held.
#[derive(Default)]
pub struct CountingWaker {
    pub wakes: AtomicUsize,
}

impl CountingWaker {
    /// A new counter and a `Waker` that increments it.
    pub fn new() -> (Arc<CountingWaker>, Waker) {
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(counter.clone());
        (counter, waker)
    }

    pub fn wakes(&self) -> usize {
        self.wakes.load(Ordering::SeqCst)
    }
}

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
    }
}

// ---- Networking helpers (tests/tcp.rs, tests/unix.rs, tests/udp.rs, tests/async_fd.rs) ----

/// The environment variable that tells a re-run test binary which child role to play.
pub const CHILD_ROLE_VAR: &str = "EVLOOP_TEST_CHILD";

/// The role this process was started for by [`run_in_child`], if any.
pub fn child_role() -> Option<String> {
    std::env::var(CHILD_ROLE_VAR).ok()
}

/// Re-runs this test binary with only `test` selected and [`CHILD_ROLE_VAR`] set to `role`, for bodies
/// that change process-wide state (rlimits, signal dispositions) or count descriptors. Fails if the
/// child fails, dies of a signal, or runs longer than [`TEST_LIMIT`].
pub fn run_in_child(test: &str, role: &str) {
    use std::process::{Command, Stdio};
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ROLE_VAR, role)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child test process");
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if start.elapsed() > TEST_LIMIT * slowdown() {
            let _ = child.kill();
            panic!(
                "child `{role}` of {test} did not finish within {TEST_LIMIT:?} (x{})",
                slowdown()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let out = child
        .wait_with_output()
        .expect("collect the child's output");
    assert!(
        status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "child `{role}` of {test} failed ({status}):\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The OS error code behind `e`, looking through evloop's explained errors (whose `source()` is the
/// original OS error).
pub fn os_code(e: &std::io::Error) -> Option<i32> {
    use std::error::Error;
    e.raw_os_error().or_else(|| {
        e.source()
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .and_then(|s| s.raw_os_error())
    })
}

/// CPU time (user + system) consumed so far by the whole process.
pub fn cpu_time_process() -> Duration {
    // SAFETY: all-zero is a valid rusage; getrusage only writes to it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, exclusive rusage for the call.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    assert_eq!(rc, 0, "getrusage: {}", std::io::Error::last_os_error());
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The byte at offset `i` of test stream number `seed`: varied, so a misplaced byte is caught.
pub fn pattern_byte(seed: usize, i: usize) -> u8 {
    ((i.wrapping_mul(31) ^ (i >> 8)).wrapping_add(seed) % 251) as u8
}

// ---- Reliability helpers (tests/load.rs, tests/faults.rs, tests/bad_input.rs) ----

/// [`run_in_child`] with a time limit of its own (for load tests that outlast [`TEST_LIMIT`]); the
/// child's output is echoed to stderr on success too, so its figures show with `--nocapture`.
pub fn run_in_child_for(test: &str, role: &str, limit: Duration) {
    let limit = limit * slowdown();
    use std::process::{Command, Stdio};
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .args(
            std::env::args()
                .any(|a| a == "--ignored")
                .then_some("--ignored"),
        )
        .env(CHILD_ROLE_VAR, role)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child test process");
    // Drain both pipes while waiting, so a chatty child cannot block on a full pipe.
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "child `{role}` of {test} did not finish within {limit:?}:\n--- stdout\n{}\n--- stderr\n{}",
                out.join().unwrap_or_default(),
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (out, err) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    assert!(
        status.success() && out.contains("1 passed"),
        "child `{role}` of {test} failed ({status}):\n--- stdout\n{out}\n--- stderr\n{err}"
    );
    eprintln!("--- child `{role}` of {test}:\n{out}{err}");
}

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a live rlimit that getrlimit writes.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: `lim` is a live rlimit that setrlimit reads.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());
    #[allow(clippy::unnecessary_cast)] // rlim_t is u64 on Linux, i64 on FreeBSD
    let soft = lim.rlim_cur as u64;
    soft
}

/// Sets the soft RLIMIT_NOFILE (the hard limit is kept).
pub fn set_nofile_soft_limit(soft: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a live rlimit that getrlimit writes.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    #[allow(clippy::unnecessary_cast)] // rlim_t is u64 on Linux, i64 on FreeBSD
    let soft = soft as libc::rlim_t;
    lim.rlim_cur = soft.min(lim.rlim_max);
    // SAFETY: `lim` is a live rlimit that setrlimit reads.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());
}

/// Resident memory of this process, in KiB (`VmRSS` of /proc/self/status); 0 where there is no /proc,
/// where [`rss_is_meaningful`] is false and the bounds using it are skipped.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn vm_rss_kib() -> u64 {
    vm_rss_kib_in("/proc/self/status")
}

/// The `VmRSS` line of a /proc/PID/status file, in KiB.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn vm_rss_kib_in(path: &str) -> u64 {
    let status = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in {path}"))
}

/// See the Linux version: no /proc here.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn vm_rss_kib() -> u64 {
    0
}

/// Gives freed heap back to the OS (glibc keeps it per arena otherwise), so RSS shows what the program
/// still holds rather than what the allocator caches.
/// Only glibc has `malloc_trim`; elsewhere this does nothing (and RSS is only read on Linux).
pub fn trim_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator's own arenas.
    unsafe {
        libc::malloc_trim(0)
    };
}

/// What each open descriptor of this process points at (`fd -> target`; only the numbers where there is
/// no /proc), for failure messages.
pub fn fd_targets() -> Vec<String> {
    open_fd_list()
        .into_iter()
        .map(
            |fd| match std::fs::read_link(format!("/proc/self/fd/{fd}")) {
                Ok(target) => format!("{fd} -> {}", target.display()),
                Err(_) => format!("{fd}"),
            },
        )
        .collect()
}

/// False under a sanitizer (`scripts/sanitize.sh` sets `EVLOOP_SANITIZER`): its allocator quarantines
/// freed memory, so resident-memory bounds say nothing there. False where [`vm_rss_kib`] cannot read it.
pub fn rss_is_meaningful() -> bool {
    cfg!(any(target_os = "linux", target_os = "android"))
        && std::env::var_os("EVLOOP_SANITIZER").is_none()
}

/// Makes the kernel answer with RST instead of FIN when the socket `fd` is closed.
pub fn set_linger_zero(fd: i32) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: passes a live `linger` and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
}

// ---- Files (tests/fs.rs) ----

/// A fresh directory under `std::env::temp_dir()`, removed with everything in it when dropped.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    /// `<tmp>/evloop-<tag>-<pid>-<n>`, created empty.
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("evloop-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the test's temporary directory");
        TempDir(dir)
    }

    /// `name` inside the directory.
    pub fn join(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
