//! Callbacks and async tasks in one loop: a libevent-style echo server (`Listener` + `BufferEvent`)
//! whose callbacks spawn async tasks, and an async client task that adds a callback event.
//!
//! ```text
//! cargo run --example mixed
//! ```
//!
//! The program connects to itself, sends a few lines, prints what comes back, and exits.

use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use evloop::event::{BufferEvent, Event, EventBase, Flags, Listener};
use futures::{AsyncReadExt, AsyncWriteExt};

/// This example takes no flags.
const USAGE: &str = "usage: mixed";

fn main() -> io::Result<()> {
    if let Some(flag) = std::env::args().nth(1) {
        if flag == "--help" {
            println!("{USAGE}");
            return Ok(());
        }
        eprintln!("mixed: unknown flag {flag}\n{USAGE}");
        std::process::exit(2);
    }
    let base = EventBase::new()?;
    let handle = base.handle().clone();
    let served = Rc::new(Cell::new(0));
    let s = served.clone();
    // The server, in callbacks.
    let listener = Listener::bind(
        &base,
        "127.0.0.1:0".parse().unwrap(),
        move |stream, peer| {
            let bev = BufferEvent::socket(&handle, stream, true).expect("register the connection");
            let s = s.clone();
            bev.set_read_cb(move |bev| {
                while let Some(line) = bev.input().read_line() {
                    s.set(s.get() + 1);
                    // A callback can start async work: here, a task that answers after a short delay.
                    let bev = bev.clone();
                    evloop::spawn_local(async move {
                        evloop::time::sleep(Duration::from_millis(5)).await;
                        let mut reply = b"echo: ".to_vec();
                        reply.extend_from_slice(&line);
                        reply.push(b'\n');
                        bev.write(&reply); // outside the callback: the write happens by itself
                    });
                }
            });
            bev.set_event_cb(|bev, _| bev.free());
            bev.enable(Flags::READ);
            println!("server: {peer} connected");
        },
    )?;
    let addr = listener.local_addr();

    // The client, as an async task; when done it adds a callback event that ends the loop.
    let handle = base.handle().clone();
    base.spawn_local(async move {
        let mut stream = evloop::net::TcpStream::connect(addr).await?;
        stream.write_all(b"one\ntwo\nthree\n").await?;
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while got.iter().filter(|&&b| b == b'\n').count() < 3 {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        print!("client got:\n{}", String::from_utf8_lossy(&got));
        let bye = Event::timer(&handle, |ctx, _| {
            println!("callback from the task: exiting");
            ctx.base().loopexit(None);
        });
        bye.add(Some(Duration::from_millis(1)))?;
        std::mem::forget(bye); // kept alive until the base goes
        Ok::<(), io::Error>(())
    });

    base.dispatch();
    println!("served {} lines", served.get());
    Ok(())
}
