//! Helpers shared by the integration tests. Each test file does `mod util;`; not every file uses every
//! helper, hence the `dead_code` allowance.
#![allow(dead_code)]

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
    // SAFETY: `rusage` is plain old data, so all-zero is a valid value; getrusage only writes to it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, exclusive rusage for the call.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    assert_eq!(rc, 0, "getrusage: {}", std::io::Error::last_os_error());
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// How many file descriptors this process has open.
pub fn open_fds() -> usize {
    // The directory handle itself is one of the entries, in every call alike.
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count()
}

/// A close-on-exec pipe: `(read end, write end)`, both blocking until wrapped in `evloop::Async`.
pub fn pipe() -> (File, File) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
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
        if start.elapsed() > TEST_LIMIT {
            let _ = child.kill();
            panic!("child `{role}` of {test} did not finish within {TEST_LIMIT:?}");
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
