//! The echo servers the reliability tests load (tests/load.rs, tests/faults.rs, tests/bad_input.rs):
//! [`EchoServer`] runs examples/echo_async.rs's or examples/echo_callback.rs's server on its own thread,
//! and [`echo_and_check`] drives one connection through it with every byte checked.

use super::*;

/// Which echo server [`EchoServer::start`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EchoKind {
    /// `examples/echo_async.rs`'s server on `evloop::block_on`.
    AsyncCurrent,
    /// The same on a multi-thread runtime with this many workers.
    AsyncMulti(usize),
    /// `examples/echo_callback.rs`'s server (`Listener` + `BufferEvent`, backpressure above 256 KiB).
    Callback,
}

/// Counters an [`EchoServer`] keeps, readable from the test thread.
#[derive(Debug, Default)]
pub struct EchoStats {
    /// Connections accepted so far.
    pub accepted: AtomicUsize,
    /// Connections being served now.
    pub live: AtomicUsize,
    /// Accept errors reported (e.g. EMFILE).
    pub accept_errors: AtomicUsize,
    /// Connections closed because they were idle longer than the idle timeout.
    pub idle_closed: AtomicUsize,
}

/// One of the example echo servers, reproduced here, on a thread of its own at a free loopback port.
/// [`stop`](Self::stop) ends it and joins its thread, after which its runtime and sockets are gone.
pub struct EchoServer {
    pub addr: std::net::SocketAddr,
    pub stats: Arc<EchoStats>,
    stop: Box<dyn FnOnce() + Send>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Buffer of one async echo connection (as in `examples/echo_async.rs`).
const ECHO_BUF: usize = 16 * 1024;
/// Output a callback echo connection may queue before it stops reading (as in `examples/echo_callback.rs`).
pub const CALLBACK_OUTPUT_HIGH: usize = 256 * 1024;

impl EchoServer {
    /// Starts a `kind` echo server; connections silent for `idle` are closed.
    pub fn start(kind: EchoKind, idle: Option<Duration>) -> EchoServer {
        let stats = Arc::new(EchoStats::default());
        let (addr_tx, addr_rx) = mpsc::channel();
        let s = stats.clone();
        let (stop, thread): (Box<dyn FnOnce() + Send>, _) = match kind {
            EchoKind::Callback => {
                let thread = std::thread::spawn(move || callback_echo(idle, s, addr_tx));
                let exit: evloop::event::ExitHandle = addr_rx_exit(&addr_rx);
                (Box::new(move || exit.exit()), thread)
            }
            EchoKind::AsyncCurrent | EchoKind::AsyncMulti(_) => {
                let (stop_tx, stop_rx) = futures::channel::oneshot::channel::<()>();
                let threads = match kind {
                    EchoKind::AsyncMulti(n) => n,
                    _ => 0,
                };
                let thread =
                    std::thread::spawn(move || async_echo(threads, idle, s, addr_tx, stop_rx));
                (
                    Box::new(move || {
                        let _ = stop_tx.send(());
                    }),
                    thread,
                )
            }
        };
        let addr = match addr_rx
            .recv_timeout(TEST_LIMIT)
            .expect("the echo server started")
        {
            ServerMsg::Addr(a) => a,
            ServerMsg::Exit(_) => unreachable!("the exit handle comes first"),
        };
        EchoServer {
            addr,
            stats,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the server and waits (at most [`TEST_LIMIT`]) for its thread to end.
    pub fn stop(mut self) {
        (std::mem::replace(&mut self.stop, Box::new(|| {})))();
        let thread = self.thread.take().expect("stopped once");
        let start = std::time::Instant::now();
        while !thread.is_finished() {
            assert!(start.elapsed() < TEST_LIMIT, "the echo server did not stop");
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Err(payload) = thread.join() {
            std::panic::resume_unwind(payload);
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        (std::mem::replace(&mut self.stop, Box::new(|| {})))();
    }
}

/// What a server thread sends back while starting.
enum ServerMsg {
    Exit(evloop::event::ExitHandle),
    Addr(std::net::SocketAddr),
}

fn addr_rx_exit(rx: &mpsc::Receiver<ServerMsg>) -> evloop::event::ExitHandle {
    match rx
        .recv_timeout(TEST_LIMIT)
        .expect("the callback server started")
    {
        ServerMsg::Exit(e) => e,
        ServerMsg::Addr(_) => unreachable!("the exit handle comes first"),
    }
}

/// Counts a connection as live until dropped.
struct LiveGuard(Arc<EchoStats>);

impl LiveGuard {
    fn new(stats: &Arc<EchoStats>) -> LiveGuard {
        stats.accepted.fetch_add(1, Ordering::SeqCst);
        stats.live.fetch_add(1, Ordering::SeqCst);
        LiveGuard(stats.clone())
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
    }
}

fn async_echo(
    threads: usize,
    idle: Option<Duration>,
    stats: Arc<EchoStats>,
    addr_tx: mpsc::Sender<ServerMsg>,
    stop: futures::channel::oneshot::Receiver<()>,
) {
    use evloop::net::TcpListener;
    let server = async move {
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind the echo server");
        let _ = addr_tx.send(ServerMsg::Addr(listener.local_addr().unwrap()));
        let accept = async {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let guard = LiveGuard::new(&stats);
                        evloop::spawn(async move {
                            let _guard = guard;
                            async_serve(stream, idle, &_guard.0).await
                        });
                    }
                    Err(_) => {
                        stats.accept_errors.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        };
        futures::pin_mut!(accept);
        futures::future::select(accept, stop).await;
    };
    match threads {
        0 => evloop::block_on(server),
        n => {
            let rt = evloop::Runtime::builder()
                .worker_threads(n)
                .build()
                .expect("build the runtime");
            rt.block_on(server);
            drop(rt);
        }
    }
}

/// `examples/echo_async.rs`'s `serve`: echoes until EOF, an error, or `idle` without data.
async fn async_serve(
    mut stream: evloop::net::TcpStream,
    idle: Option<Duration>,
    stats: &EchoStats,
) {
    use futures::{AsyncReadExt, AsyncWriteExt};
    if stream.set_nodelay(true).is_err() {
        return;
    }
    let mut buf = Vec::new();
    loop {
        let read = async {
            if buf.is_empty() {
                stream.readable().await?;
                buf.resize(ECHO_BUF, 0);
            }
            stream.read(&mut buf).await
        };
        let n = match idle {
            None => read.await,
            Some(limit) => match evloop::time::timeout(limit, read).await {
                Ok(n) => n,
                Err(_) => {
                    stats.idle_closed.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            },
        };
        match n {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn callback_echo(idle: Option<Duration>, stats: Arc<EchoStats>, tx: mpsc::Sender<ServerMsg>) {
    use evloop::event::{BevFlags, BufferEvent, EventBase, Flags, Listener};
    let base = EventBase::new().expect("make the event base");
    let _ = tx.send(ServerMsg::Exit(base.exit_handle()));
    let handle = base.handle().clone();
    let st = stats.clone();
    let listener = Listener::bind(
        &base,
        (std::net::Ipv4Addr::LOCALHOST, 0).into(),
        move |stream, _| {
            if stream.set_nodelay(true).is_err() {
                return;
            }
            let bev = match BufferEvent::socket(&handle, stream, true) {
                Ok(bev) => bev,
                Err(_) => return,
            };
            let guard = LiveGuard::new(&st);
            bev.set_read_cb(|bev| {
                let mut input = bev.input();
                bev.output().append_buffer(&mut input);
                drop(input);
                if bev.output().len() > CALLBACK_OUTPUT_HIGH {
                    bev.disable(Flags::READ);
                }
            });
            bev.set_watermark(Flags::WRITE, CALLBACK_OUTPUT_HIGH / 2, 0);
            // Set at EOF while echoes are still queued: the connection is freed once they are sent.
            // (`examples/echo_callback.rs` frees at once and so loses them; see RELIABILITY.md.)
            let closing = std::rc::Rc::new(std::cell::Cell::new(false));
            let closing_w = closing.clone();
            bev.set_write_cb(move |bev| {
                if closing_w.get() {
                    if bev.output().is_empty() {
                        bev.free();
                    }
                } else if !bev.enabled().contains(Flags::READ) {
                    bev.enable(Flags::READ);
                }
            });
            let mut guard = Some(guard);
            bev.set_event_cb(move |bev, what| {
                if what == BevFlags::EOF | BevFlags::READING && !bev.output().is_empty() {
                    closing.set(true);
                    bev.disable(Flags::READ);
                    bev.set_timeouts(None, None);
                    bev.set_watermark(Flags::WRITE, 0, 0);
                    return;
                }
                if what.contains(BevFlags::TIMEOUT) {
                    if let Some(g) = &guard {
                        g.0.idle_closed.fetch_add(1, Ordering::SeqCst);
                    }
                }
                guard.take();
                bev.free();
            });
            bev.set_timeouts(idle, None);
            bev.enable(Flags::READ);
        },
    )
    .expect("bind the callback echo server");
    let s = stats.clone();
    listener.set_error_cb(move |_| {
        s.accept_errors.fetch_add(1, Ordering::SeqCst);
    });
    let _ = tx.send(ServerMsg::Addr(listener.local_addr()));
    base.dispatch();
}

/// The byte at offset `i` of the stream that starts at offset `start` of `table`, wrapping around.
fn table_slice_eq(table: &[u8], start: usize, got: &[u8]) -> bool {
    let mut pos = start % table.len();
    let mut got = got;
    while !got.is_empty() {
        let n = got.len().min(table.len() - pos);
        if got[..n] != table[pos..pos + n] {
            return false;
        }
        got = &got[n..];
        pos = (pos + n) % table.len();
    }
    true
}

/// A table of `len` pattern bytes; connection `c` sends it rotated by [`rotation`]`(c, len)`.
pub fn pattern_table(len: usize) -> Arc<Vec<u8>> {
    Arc::new((0..len).map(|i| pattern_byte(0, i)).collect())
}

/// Connection `c`'s starting offset in a pattern table of `len` bytes.
pub fn rotation(c: usize, len: usize) -> usize {
    c.wrapping_mul(4099) % len.max(1)
}

/// Sends `table` rotated by `rotation(c)` on `stream`, half-closes, and checks that exactly the same
/// bytes come back, in order, followed by EOF. Writes and reads run concurrently.
pub async fn echo_and_check(
    stream: &evloop::net::TcpStream,
    table: &[u8],
    c: usize,
) -> std::io::Result<()> {
    use futures::{AsyncReadExt, AsyncWriteExt};
    use std::io::{Error, ErrorKind};
    let len = table.len();
    let off = rotation(c, len);
    let (mut reader, mut writer) = stream.split();
    let write = async {
        writer.write_all(&table[off..]).await?;
        writer.write_all(&table[..off]).await?;
        stream.shutdown(std::net::Shutdown::Write)
    };
    let read = async {
        let mut buf = vec![0u8; 8 * 1024];
        let mut got = 0;
        loop {
            let n = reader.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            if got + n > len {
                return Err(Error::new(
                    ErrorKind::InvalidData,
                    format!("connection {c}: {} bytes echoed, {len} sent", got + n),
                ));
            }
            if !table_slice_eq(table, off + got, &buf[..n]) {
                return Err(Error::new(
                    ErrorKind::InvalidData,
                    format!("connection {c}: bytes {got}..{} differ", got + n),
                ));
            }
            got += n;
        }
        if got != len {
            return Err(Error::new(
                ErrorKind::UnexpectedEof,
                format!("connection {c}: EOF after {got} of {len} bytes"),
            ));
        }
        Ok(())
    };
    let (w, r) = futures::join!(write, read);
    w.and(r)
}
