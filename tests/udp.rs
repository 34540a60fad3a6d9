//! UDP: send_to/recv_from, connected send/recv, peek, socket options, multicast membership, and errors
//! that name the fix.

mod util;

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use evloop::net::UdpSocket;

use util::{block_on, os_code};

const LOCALHOST: (Ipv4Addr, u16) = (Ipv4Addr::LOCALHOST, 0);

#[test]
fn send_to_and_recv_from_echo_many_datagrams() {
    block_on(async {
        let server = UdpSocket::bind(LOCALHOST).await?;
        let server_addr = server.local_addr()?;
        let echo = evloop::spawn(async move {
            let mut buf = [0; 1500];
            for _ in 0..100 {
                let (n, from) = server.recv_from(&mut buf).await?;
                server.send_to(&buf[..n], from).await?;
            }
            Ok::<(), io::Error>(())
        });
        let client = UdpSocket::bind("127.0.0.1:0").await?;
        let mut buf = [0; 1500];
        for i in 0..100u32 {
            let msg = i.to_be_bytes();
            client.send_to(&msg, server_addr).await?;
            let (n, from) = client.recv_from(&mut buf).await?;
            assert_eq!((&buf[..n], from), (&msg[..], server_addr));
        }
        echo.await.expect("echo task")
    })
    .unwrap();
}

#[test]
fn connected_sockets_send_recv_and_peek() {
    block_on(async {
        let a = UdpSocket::bind(LOCALHOST).await?;
        let b = UdpSocket::bind(LOCALHOST).await?;
        a.connect(b.local_addr()?).await?;
        b.connect(a.local_addr()?).await?;
        assert_eq!(a.peer_addr()?, b.local_addr()?);
        a.send(b"first").await?;
        let mut buf = [0; 16];
        let (n, from) = b.peek_from(&mut buf).await?;
        assert_eq!((&buf[..n], from), (&b"first"[..], a.local_addr()?));
        let n = b.recv(&mut buf).await?; // the peeked datagram is still there
        assert_eq!(&buf[..n], b"first");
        b.send(b"reply").await?;
        let n = a.recv(&mut buf).await?;
        assert_eq!(&buf[..n], b"reply");
        Ok::<(), io::Error>(())
    })
    .unwrap();
}

#[test]
fn sending_to_a_closed_port_surfaces_connection_refused() {
    block_on(async {
        let gone = UdpSocket::bind(LOCALHOST).await?.local_addr()?; // bound, then closed at once
        let a = UdpSocket::bind(LOCALHOST).await?;
        a.connect(gone).await?;
        a.send(b"anyone?").await?;
        // The ICMP "port unreachable" comes back as an error on the next receive.
        let err = a
            .recv(&mut [0; 8])
            .await
            .expect_err("nothing listens there");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
        Ok::<(), io::Error>(())
    })
    .unwrap();
}

#[test]
fn options_and_port_in_use() {
    block_on(async {
        let s = UdpSocket::bind(LOCALHOST).await?;
        s.set_broadcast(true)?;
        assert!(s.broadcast()?);
        s.set_ttl(7)?;
        assert_eq!(s.ttl()?, 7);
        s.set_multicast_loop_v4(true)?;
        s.set_multicast_ttl_v4(1)?;
        assert!(s.take_error()?.is_none());
        let err = UdpSocket::bind(s.local_addr()?)
            .await
            .expect_err("the port is taken");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        assert_eq!(os_code(&err), Some(libc::EADDRINUSE));
        assert!(err.to_string().contains("pick another port"), "{err}");
        let s = UdpSocket::from_std(s.into_std()?)?;
        assert_eq!(s.local_addr()?.ip(), Ipv4Addr::LOCALHOST);
        Ok::<(), io::Error>(())
    })
    .unwrap();
}

#[test]
fn multicast_v4_join_receive_leave() {
    block_on(async {
        let group = Ipv4Addr::new(239, 255, 42, 99);
        let receiver = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await?;
        let port = receiver.local_addr()?.port();
        // On the loopback interface: works without a network.
        receiver.join_multicast_v4(group, Ipv4Addr::LOCALHOST)?;
        let sender = UdpSocket::bind(LOCALHOST).await?;
        sender.set_multicast_loop_v4(true)?;
        let sent = sender.send_to(b"to the group", (group, port)).await;
        if let Err(e) = sent {
            // Some sandboxes have no multicast route at all; membership itself was still tested.
            eprintln!("skipping multicast delivery: {e}");
        } else {
            let mut buf = [0; 32];
            let got = evloop::time::timeout(
                std::time::Duration::from_secs(2),
                receiver.recv_from(&mut buf),
            )
            .await;
            match got {
                Ok(r) => assert_eq!(&buf[..r?.0], b"to the group"),
                Err(_) => eprintln!("skipping multicast delivery: not looped back here"),
            }
        }
        receiver.leave_multicast_v4(group, Ipv4Addr::LOCALHOST)?;
        assert!(
            receiver
                .leave_multicast_v4(group, Ipv4Addr::LOCALHOST)
                .is_err(),
            "left twice"
        );
        Ok::<(), io::Error>(())
    })
    .unwrap();
}

#[test]
fn multicast_v6_join_and_leave() {
    block_on(async {
        let Ok(s) = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)).await else {
            eprintln!("skipping: no IPv6 on this machine");
            return Ok(());
        };
        let group: Ipv6Addr = "ff02::1:3".parse().unwrap();
        // Interface 1 is loopback on Linux.
        match s.join_multicast_v6(group, 1) {
            Ok(()) => s.leave_multicast_v6(group, 1)?,
            Err(e) => eprintln!("skipping: IPv6 multicast unavailable: {e}"),
        }
        Ok::<(), io::Error>(())
    })
    .unwrap();
}

#[test]
fn literal_and_resolved_addresses() {
    block_on(async {
        let a = UdpSocket::bind("127.0.0.1:0").await?;
        let port = a.local_addr()?.port();
        let b = UdpSocket::bind(LOCALHOST).await?;
        let targets: [SocketAddr; 1] = [a.local_addr()?];
        b.send_to(b"1", &targets[..]).await?;
        b.send_to(b"2", format!("127.0.0.1:{port}")).await?;
        b.send_to(b"3", ("localhost", port)).await?; // resolved on the blocking pool
        let mut buf = [0; 4];
        for want in [b"1", b"2", b"3"] {
            let (n, _) = a.recv_from(&mut buf).await?;
            assert_eq!(&buf[..n], want);
        }
        Ok::<(), io::Error>(())
    })
    .unwrap();
}
