//! WebSocket on evloop with async-tungstenite's futures-io API (no tokio, no adapter): evloop's
//! `TcpStream` is handed to `accept_async` / `client_async` as it is. An echo server, 1,000 messages
//! (text and binary, in lock-step and pipelined), ping/pong, the close handshake, and many connections
//! at once, on both runtime flavors.

mod util;

use async_tungstenite::tungstenite::Message;
use async_tungstenite::WebSocketStream;
use evloop::net::{TcpListener, TcpStream};
use futures::{SinkExt, StreamExt, TryStreamExt};

use util::{on_each_flavor, pattern_byte};

/// Message `i` of a run: text and binary alternately, 0 to ~4 KiB, every byte derived from `i`.
fn message(i: usize) -> Message {
    let len = (i * 997) % 4_000;
    if i.is_multiple_of(2) {
        // Text must be UTF-8: letters chosen by the pattern.
        let text: String = (0..len)
            .map(|j| char::from(b'a' + pattern_byte(i, j) % 26))
            .collect();
        Message::text(text)
    } else {
        Message::binary((0..len).map(|j| pattern_byte(i, j)).collect::<Vec<u8>>())
    }
}

/// Accepts WebSocket connections on `listener` and echoes every text and binary message; returns after
/// `conns` connections have each finished with a clean close handshake.
async fn serve(listener: TcpListener, conns: usize) {
    let mut handlers = Vec::new();
    for _ in 0..conns {
        let (stream, _) = listener.accept().await.expect("accept");
        stream.set_nodelay(true).expect("nodelay");
        handlers.push(evloop::spawn(async move {
            let ws = async_tungstenite::accept_async(stream)
                .await
                .expect("server handshake");
            let (sink, stream) = ws.split();
            // Pings are answered and the close frame is echoed by tungstenite itself; the stream ends
            // after the close handshake.
            stream
                .try_filter(|m| futures::future::ready(m.is_text() || m.is_binary()))
                .forward(sink)
                .await
                .expect("echo until the close handshake");
        }));
    }
    for h in handlers {
        h.await.unwrap();
    }
}

async fn connect(addr: std::net::SocketAddr) -> WebSocketStream<TcpStream> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (ws, response) = async_tungstenite::client_async(format!("ws://{addr}/echo"), stream)
        .await
        .expect("client handshake");
    assert_eq!(response.status(), 101, "the server switches protocols");
    ws
}

/// Sends a close frame and waits for the server's: the stream must then end.
async fn close(mut ws: WebSocketStream<TcpStream>) {
    ws.close(None).await.expect("send close");
    while let Some(m) = ws.next().await {
        let m = m.expect("read until the close reply");
        assert!(m.is_close(), "unexpected message after close: {m:?}");
    }
}

#[test]
fn a_thousand_messages_are_echoed_in_order() {
    on_each_flavor(|| async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let server = evloop::spawn(serve(listener, 1));
        let mut ws = connect(addr).await;

        // 500 in lock-step: each echo arrives before the next message is sent.
        for i in 0..500 {
            ws.send(message(i)).await.expect("send");
            let echo = ws.next().await.expect("an echo").expect("read");
            assert_eq!(echo, message(i), "echo of message {i}");
        }

        // A ping is answered by the server's WebSocket layer with the same payload.
        ws.send(Message::Ping(b"are you there".to_vec().into()))
            .await
            .unwrap();
        let pong = ws.next().await.expect("a pong").expect("read");
        assert_eq!(pong, Message::Pong(b"are you there".to_vec().into()));

        // 500 pipelined: all sent while the echoes are read, on the two halves of one connection.
        let (mut sink, mut stream) = ws.split();
        let send = async move {
            for i in 500..1000 {
                sink.feed(message(i)).await.expect("send");
            }
            sink.flush().await.expect("flush");
            sink
        };
        let receive = async move {
            for i in 500..1000 {
                let echo = stream.next().await.expect("an echo").expect("read");
                assert_eq!(echo, message(i), "echo of message {i}");
            }
            stream
        };
        let (sink, stream) = futures::join!(send, receive);
        let ws = WebSocketStream::reunite(sink, stream).expect("halves of one stream");

        close(ws).await;
        server.await.unwrap();
    });
}

#[test]
fn many_connections_echo_at_once() {
    on_each_flavor(|| async {
        const CONNS: usize = 32;
        const MESSAGES: usize = 50;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let server = evloop::spawn(serve(listener, CONNS));
        let clients: Vec<_> = (0..CONNS)
            .map(|c| {
                evloop::spawn(async move {
                    let mut ws = connect(addr).await;
                    for i in 0..MESSAGES {
                        let m = message(c * MESSAGES + i);
                        ws.send(m.clone()).await.expect("send");
                        assert_eq!(ws.next().await.expect("an echo").expect("read"), m);
                    }
                    close(ws).await;
                })
            })
            .collect();
        for c in clients {
            c.await.unwrap();
        }
        server.await.unwrap();
    });
}
