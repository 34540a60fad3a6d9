//! `evloop::signal`: every listener sees every delivery, and the default disposition comes back when
//! the last listener goes. The tests share process-wide signal state, so they run one at a time.

mod util;

use std::sync::Mutex;
use std::time::Duration;

use evloop::signal::{signal, SignalKind};
use futures::StreamExt;
use util::block_on;

/// Serialises the tests of this file: they install and restore process-wide handlers.
static SERIAL: Mutex<()> = Mutex::new(());

/// The current handler of `sig` (`SIG_DFL`, `SIG_IGN` or a function address).
fn disposition(sig: i32) -> libc::sighandler_t {
    // SAFETY: all-zero is a valid sigaction for sigaction to overwrite.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action only queries; `old` is a live, exclusive sigaction.
    let rc = unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) };
    assert_eq!(rc, 0);
    old.sa_sigaction
}

fn raise(sig: i32) {
    // SAFETY: raise has no preconditions; the tests install a handler first.
    assert_eq!(unsafe { libc::raise(sig) }, 0);
}

#[test]
fn every_listener_sees_every_delivery() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    block_on(async {
        let mut a = signal(SignalKind::user_defined1()).unwrap();
        let mut b = signal(SignalKind::user_defined1()).unwrap();
        let mut c = signal(SignalKind::from_raw(libc::SIGUSR1)).unwrap();
        for _ in 0..3 {
            raise(libc::SIGUSR1);
            for s in [&mut a, &mut b, &mut c] {
                let got = evloop::time::timeout(Duration::from_secs(2), s.next()).await;
                assert_eq!(got, Ok(Some(())));
            }
        }
    });
}

#[test]
fn listeners_on_two_runtimes_both_hear_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (tx, rx) = std::sync::mpsc::channel();
    let other = std::thread::spawn(move || {
        evloop::block_on(async move {
            let mut s = signal(SignalKind::user_defined2()).unwrap();
            tx.send(()).unwrap();
            evloop::time::timeout(Duration::from_secs(2), s.recv()).await
        })
    });
    block_on(async move {
        let mut s = signal(SignalKind::user_defined2()).unwrap();
        rx.recv().unwrap();
        raise(libc::SIGUSR2);
        let got = evloop::time::timeout(Duration::from_secs(2), s.recv()).await;
        assert_eq!(got, Ok(Some(())));
    });
    assert_eq!(other.join().unwrap(), Ok(Some(())));
}

#[test]
fn default_disposition_restored_after_last_listener() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    assert_eq!(disposition(libc::SIGWINCH), libc::SIG_DFL);
    block_on(async {
        let a = signal(SignalKind::from_raw(libc::SIGWINCH)).unwrap();
        let b = signal(SignalKind::from_raw(libc::SIGWINCH)).unwrap();
        assert_ne!(disposition(libc::SIGWINCH), libc::SIG_DFL);
        drop(a);
        assert_ne!(
            disposition(libc::SIGWINCH),
            libc::SIG_DFL,
            "one listener is left"
        );
        drop(b);
        assert_eq!(disposition(libc::SIGWINCH), libc::SIG_DFL);
    });
}

#[test]
fn uncatchable_signals_and_no_runtime_are_errors() {
    assert!(evloop::block_on(async { signal(SignalKind::from_raw(libc::SIGKILL)) }).is_err());
    assert!(evloop::block_on(async { signal(SignalKind::from_raw(0)) }).is_err());
    let e = signal(SignalKind::user_defined1()).unwrap_err();
    assert!(e.to_string().contains("block_on"), "{e}");
}
