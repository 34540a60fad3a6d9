//! `evloop::process`: spawning, pipes, waiting (pidfd / kqueue and the `SIGCHLD` fallback), killing,
//! orphan reaping, errors, descriptors, and both runtime flavors.
//!
//! Tests that count descriptors or zombies, or force the `SIGCHLD` fallback, run in a child process of
//! their own (`util::run_in_child`), where no other test spawns or opens anything meanwhile.

mod util;

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use evloop::process::{Command, Stdio};
use futures::{AsyncReadExt, AsyncWriteExt};

/// `sh -c script`.
fn sh(script: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script);
    cmd
}

#[test]
fn exit_codes_and_death_by_signal() {
    util::block_on(async {
        let ok = Command::new("true").status().await.unwrap();
        assert!(ok.success());
        let three = sh("exit 3").status().await.unwrap();
        assert_eq!(three.code(), Some(3));
        let killed = sh("kill -TERM $$").status().await.unwrap();
        assert_eq!(killed.code(), None);
        assert_eq!(killed.signal(), Some(libc::SIGTERM));
    });
}

#[test]
fn output_collects_stdout_and_stderr() {
    util::block_on(async {
        let out = sh("echo out; echo err >&2; exit 4").output().await.unwrap();
        assert_eq!(out.status.code(), Some(4));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
        // stdin is /dev/null for `output`, as with std: `cat` ends at once.
        let cat = Command::new("cat").output().await.unwrap();
        assert!(cat.status.success() && cat.stdout.is_empty());
    });
}

#[test]
fn two_hundred_children_at_once() {
    util::block_on(async {
        let mut children = Vec::new();
        for i in 0..200 {
            let child = sh(&format!("sleep 0.2; exit {}", i % 50)).spawn().unwrap();
            children.push((i, child));
        }
        // Every child has been started before any is waited for: they all run at once.
        let tasks: Vec<_> = children
            .into_iter()
            .map(|(i, mut child)| evloop::spawn(async move { (i, child.wait().await) }))
            .collect();
        for task in tasks {
            let (i, status) = task.await.unwrap();
            assert_eq!(status.unwrap().code(), Some(i % 50), "child {i}");
        }
    });
}

#[test]
fn thirty_two_mib_through_cat() {
    const LEN: usize = 32 << 20;
    // A longer limit than usual: 32 MiB through a pipe twice, checked, in a debug build on a busy machine.
    util::with_deadline(Duration::from_secs(60), || {
        evloop::block_on(async {
            let mut child = Command::new("cat")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            let mut stdout = child.stdout.take().unwrap();
            let table = util::pattern_table(LEN);
            let sent = table.clone();
            let writer = evloop::spawn(async move {
                // Uneven chunks, so that writes and pipe-buffer boundaries do not line up.
                for chunk in sent.chunks(100_003) {
                    stdin.write_all(chunk).await.unwrap();
                }
                // Dropping stdin closes the pipe: cat sees the end of its input.
            });
            let reader = evloop::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut got = 0;
                loop {
                    let n = stdout.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    assert!(got + n <= LEN, "more bytes than were sent");
                    assert!(
                        buf[..n] == table[got..got + n],
                        "bytes {got}..{} differ",
                        got + n
                    );
                    got += n;
                }
                got
            });
            writer.await.unwrap();
            assert_eq!(reader.await.unwrap(), LEN);
            assert!(child.wait().await.unwrap().success());
        })
    });
}

#[test]
fn kill_ends_a_running_child() {
    util::block_on(async {
        let mut child = Command::new("sleep").arg("100").spawn().unwrap();
        assert!(child.try_wait().unwrap().is_none());
        let start = Instant::now();
        child.kill().await.unwrap();
        assert!(start.elapsed() < Duration::from_secs(5));
        let status = child.try_wait().unwrap().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert_eq!(child.id(), None, "no pid once the exit is collected");
        // Killing an exited child is not an error.
        child.start_kill().unwrap();
    });
}

/// Whether `pid` still exists (as a process or a zombie); `kill(pid, 0)` probes without signalling.
fn exists(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

/// Spawns a `kill_on_drop` child that would sleep for 100 s and drops it at once (killed, then left
/// to the orphan reaper); its pid.
fn drop_a_sleeper() -> u32 {
    let child = Command::new("sleep")
        .arg("100")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    drop(child);
    pid
}

/// [`drop_a_sleeper`], then waits (at most 5 s) until its pid is gone: killed, then reaped by the
/// orphan reaper, zombie and all. A failure says "pid N {what}".
async fn drop_a_sleeper_and_see_it_gone(what: &str) {
    let pid = drop_a_sleeper();
    let start = Instant::now();
    while exists(pid) {
        assert!(start.elapsed() < Duration::from_secs(5), "pid {pid} {what}");
        evloop::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn kill_on_drop_kills_and_reaps() {
    util::block_on(drop_a_sleeper_and_see_it_gone("still exists"));
}

#[test]
fn dropped_child_runs_on() {
    util::block_on(async {
        let dir = std::env::temp_dir().join(format!("evloop-process-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let child = sh(&format!("sleep 0.2; echo done > {}", dir.display()))
            .spawn()
            .unwrap();
        drop(child); // without kill_on_drop: it finishes its work
        let start = Instant::now();
        while std::fs::read_to_string(&dir).ok().as_deref() != Some("done\n") {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "the dropped child did not finish"
            );
            evloop::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = std::fs::remove_file(&dir);
    });
}

#[test]
fn child_that_exited_before_wait() {
    util::block_on(async {
        let mut child = sh("exit 7").spawn().unwrap();
        // Let it exit and become a zombie before anyone waits.
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert_eq!(status.code(), Some(7));
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(5));
            evloop::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(child.wait().await.unwrap().code(), Some(7));

        // Exited, not yet collected, then waited for.
        let mut child = sh("exit 8").spawn().unwrap();
        evloop::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(child.wait().await.unwrap().code(), Some(8));
    });
}

#[test]
fn program_that_does_not_exist() {
    util::block_on(async {
        let err = Command::new("evloop-no-such-program").spawn().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        let msg = err.to_string();
        assert!(msg.contains("evloop-no-such-program"), "{msg}");
        let err = Command::new("true")
            .current_dir("/evloop/no/such/dir")
            .spawn()
            .unwrap_err();
        assert!(err.to_string().contains("/evloop/no/such/dir"), "{err}");
    });
}

#[test]
fn spawn_outside_a_runtime_fails_cleanly() {
    let err = Command::new("true").spawn().unwrap_err();
    assert!(err.to_string().contains("block_on"), "{err}");
}

#[test]
fn pipe_from_one_child_to_the_next() {
    util::block_on(async {
        let mut first = sh("printf 'b\\nc\\na\\n'")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let pipe = Stdio::try_from(first.stdout.take().unwrap()).unwrap();
        let sorted = Command::new("sort").stdin(pipe).output().await.unwrap();
        assert_eq!(sorted.stdout, b"a\nb\nc\n");
        assert!(first.wait().await.unwrap().success());
    });
}

#[test]
fn wait_is_cancel_safe() {
    util::block_on(async {
        let mut child = sh("sleep 0.3; exit 5").spawn().unwrap();
        let early = evloop::time::timeout(Duration::from_millis(20), child.wait()).await;
        assert!(early.is_err(), "the child cannot have exited yet");
        assert_eq!(child.wait().await.unwrap().code(), Some(5));
    });
}

#[test]
fn process_on_the_multi_thread_runtime() {
    util::with_deadline(util::TEST_LIMIT, || {
        let rt = evloop::Runtime::builder()
            .worker_threads(2)
            .build()
            .unwrap();
        rt.block_on(async {
            let tasks: Vec<_> = (0..50)
                .map(|i| {
                    evloop::spawn(async move {
                        let out = Command::new("echo").arg(i.to_string()).output().await;
                        (i, out.unwrap())
                    })
                })
                .collect();
            for t in tasks {
                let (i, out) = t.await.unwrap();
                assert!(out.status.success());
                assert_eq!(out.stdout, format!("{i}\n").as_bytes());
            }
            // Waited for from the `block_on` thread, which runs no tasks.
            let status = sh("exit 9").status().await.unwrap();
            assert_eq!(status.code(), Some(9));
            // An orphan on this flavor is reaped too.
            drop_a_sleeper_and_see_it_gone("not reaped").await;
        });
    });
}

/// Zombies whose parent is this process, from /proc (Linux only: other systems have no /proc).
#[cfg(target_os = "linux")]
fn our_zombies() -> usize {
    let me = std::process::id().to_string();
    let mut n = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces, so split after its closing parenthesis.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        if fields.next() == Some("Z") && fields.next() == Some(me.as_str()) {
            n += 1;
        }
    }
    n
}

/// The targets of this process's descriptors that are pidfds (Linux: `anon_inode:[pidfd]`).
#[cfg(target_os = "linux")]
fn pidfds() -> usize {
    util::fd_targets()
        .iter()
        .filter(|t| t.contains("pidfd"))
        .count()
}

// Linux only: zombies are counted in /proc.
#[cfg(target_os = "linux")]
#[test]
fn a_thousand_dropped_children_leave_no_zombie() {
    if util::child_role().as_deref() != Some("zombies") {
        return util::run_in_child_for(
            "a_thousand_dropped_children_leave_no_zombie",
            "zombies",
            Duration::from_secs(60),
        );
    }
    evloop::block_on(async {
        for i in 0..1000 {
            // A mix of children that have exited by the time they are dropped and ones still running.
            let child = if i % 2 == 0 {
                Command::new("true").spawn()
            } else {
                Command::new("sleep").arg("0.05").spawn()
            };
            drop(child.unwrap());
        }
        let start = Instant::now();
        loop {
            let zombies = our_zombies();
            if zombies == 0 {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{zombies} zombies left after 20 s"
            );
            evloop::time::sleep(Duration::from_millis(20)).await;
        }
        // The children themselves may still run (the sleeps); once they exit, no zombie either.
        evloop::time::sleep(Duration::from_millis(300)).await;
        let start = Instant::now();
        while our_zombies() != 0 {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "zombies after exit"
            );
            evloop::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

// Linux only: descriptors are counted in /proc/self/fd.
#[cfg(target_os = "linux")]
#[test]
fn descriptors_back_to_baseline() {
    if util::child_role().as_deref() != Some("fds") {
        return util::run_in_child("descriptors_back_to_baseline", "fds");
    }
    evloop::block_on(async {
        // Warm up: the runtime's own descriptors, and the signal self-pipe that the orphan reaper's
        // SIGCHLD listener creates (kept for the life of the process), exist from here on.
        sh("exit 0").output().await.unwrap();
        let pid = drop_a_sleeper();
        while exists(pid) {
            evloop::time::sleep(Duration::from_millis(5)).await;
        }
        let baseline = util::open_fds();
        for _ in 0..50 {
            let mut child = Command::new("cat")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            // While it is waited for, a pidfd is open (the SIGCHLD test below checks the opposite).
            let stdin = child.stdin.take();
            let stdout = child.stdout.take();
            let waiting = evloop::spawn(async move { child.wait().await.unwrap() });
            evloop::time::sleep(Duration::from_millis(2)).await;
            assert_eq!(pidfds(), 1, "a pidfd while waiting");
            drop(stdin); // cat's end of input
            assert!(waiting.await.unwrap().success());
            drop(stdout);
        }
        for _ in 0..50 {
            let child = Command::new("sleep")
                .arg("100")
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            drop(child);
        }
        let start = Instant::now();
        while util::open_fds() != baseline || our_zombies() != 0 {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{} descriptors open, {baseline} at the start: {:?}",
                util::open_fds(),
                util::fd_targets()
            );
            evloop::time::sleep(Duration::from_millis(10)).await;
        }
    });
}

/// The `SIGCHLD` fallback (forced with `EVLOOP_PROCESS_WAIT=sigchld`), in a process of its own since
/// the setting is read once.
#[test]
fn sigchld_fallback() {
    if util::child_role().as_deref() != Some("sigchld") {
        return util::run_in_child("sigchld_fallback", "sigchld");
    }
    // Set before this process first waits for a child; no other thread runs yet.
    std::env::set_var("EVLOOP_PROCESS_WAIT", "sigchld");
    evloop::block_on(async {
        let mut sleeper = Command::new("sleep").arg("0.3").spawn().unwrap();
        let waiting = evloop::spawn(async move { sleeper.wait().await.unwrap() });
        evloop::time::sleep(Duration::from_millis(50)).await;
        #[cfg(target_os = "linux")]
        assert_eq!(pidfds(), 0, "no pidfd on the SIGCHLD path");
        let tasks: Vec<_> = (0..100)
            .map(|i| {
                evloop::spawn(async move {
                    let status = sh(&format!("exit {}", i % 10)).status().await.unwrap();
                    assert_eq!(status.code(), Some(i % 10));
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert!(waiting.await.unwrap().success());
        let mut child = Command::new("sleep").arg("100").spawn().unwrap();
        child.kill().await.unwrap();
        let out = sh("echo fallback").output().await.unwrap();
        assert_eq!(out.stdout, b"fallback\n");
    });
}

/// A reaper on a current-thread runtime runs only while that runtime is driven: an orphan dropped on
/// another runtime must be reaped there all the same. In a process of its own, so that no other
/// test's reaper does the work.
#[test]
fn orphans_reaped_while_another_runtime_idles() {
    if util::child_role().as_deref() != Some("idle-runtime") {
        return util::run_in_child("orphans_reaped_while_another_runtime_idles", "idle-runtime");
    }
    let idle = evloop::Runtime::new().unwrap();
    // Starts a reaper on `idle`, which is not driven after this block_on.
    let first = idle.block_on(async { drop_a_sleeper() });
    evloop::block_on(async {
        let pid = drop_a_sleeper();
        let start = Instant::now();
        while exists(pid) || exists(first) {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "orphans {first} and {pid}: not both reaped"
            );
            evloop::time::sleep(Duration::from_millis(10)).await;
        }
    });
    drop(idle);
}
