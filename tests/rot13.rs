//! The three ROT13 servers of `examples/` (`rot13_callback_raw`, `rot13_callback`, `rot13_async`),
//! each run as its program on a free port, driven by the same client with the same cases; every case
//! checks that the three answer byte for byte the same, and that the answer is the ROT13 of the input
//! (the protocol, in `docs/from-libevent.md`: answers are exactly the ROT13 of what was sent).
//! Also the timing the protocol promises: a line is answered when its `\n` arrives, not before and
//! not only at EOF, and a long line in 16 KiB pieces before its `\n`.

mod util;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use evloop::net::TcpStream;
use futures::{AsyncReadExt, AsyncWriteExt};

use util::{with_deadline, ExampleServer, TEST_LIMIT};

const SERVERS: [&str; 3] = ["rot13_callback_raw", "rot13_callback", "rot13_async"];
/// The servers' piece size for long lines.
const MAX_LINE: usize = 16 * 1024;
/// How long one case may take against all three servers (debug builds on a loaded 2-core machine).
const CASE_LIMIT: Duration = Duration::from_secs(60);

fn rot13(input: &[u8]) -> Vec<u8> {
    input
        .iter()
        .map(|&b| match b {
            b'a'..=b'm' | b'A'..=b'M' => b + 13,
            b'n'..=b'z' | b'N'..=b'Z' => b - 13,
            other => other,
        })
        .collect()
}

/// Sends `input` in writes of `piece` bytes (pausing a millisecond after each one when `piece` is 1),
/// half-closes, and reads the answer until the server closes; reading runs alongside writing.
async fn exchange(addr: SocketAddr, input: &[u8], piece: usize) -> io::Result<Vec<u8>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut reader, mut writer) = (&stream, &stream);
    let write = async {
        for p in input.chunks(piece) {
            writer.write_all(p).await?;
            if piece == 1 {
                evloop::time::sleep(Duration::from_millis(1)).await;
            }
        }
        stream.shutdown(Shutdown::Write)
    };
    let read = async {
        let mut answer = Vec::new();
        reader.read_to_end(&mut answer).await?;
        Ok(answer)
    };
    let (w, r) = futures::join!(write, read);
    w?;
    r
}

/// Runs `case` against each server (a fresh one per case) and checks that all three answers are the
/// same bytes, and equal to `expect`.
fn against_all<F>(what: &str, expect: &[u8], case: F)
where
    F: Fn(&ExampleServer) -> Vec<u8> + Send + Sync + 'static,
{
    let expect = expect.to_vec();
    let what = what.to_string();
    util::build_examples(&SERVERS); // outside the time limit: the first build may take a while
    with_deadline(CASE_LIMIT, move || {
        let answers: Vec<(&str, Vec<u8>)> = SERVERS
            .iter()
            .map(|name| {
                let server = ExampleServer::start(name);
                (*name, case(&server))
            })
            .collect();
        for (name, answer) in &answers {
            assert_eq!(
                answer.len(),
                expect.len(),
                "{what}: {name}'s answer has another length"
            );
            if let Some(i) = answer.iter().zip(&expect).position(|(a, b)| a != b) {
                panic!("{what}: {name}'s answer differs from the ROT13 of the input at byte {i}");
            }
        }
        assert!(
            answers.windows(2).all(|w| w[0].1 == w[1].1),
            "{what}: the three servers' answers are not byte-identical"
        );
    });
}

/// [`against_all`] for the plain exchange of `input` in `piece`-byte writes.
fn exchange_with_all(what: &str, input: Vec<u8>, piece: usize) {
    let expect = rot13(&input);
    against_all(what, &expect, move |server| {
        evloop::block_on(exchange(server.addr, &input, piece)).expect("exchange")
    });
}

#[test]
fn one_line() {
    exchange_with_all(
        "one line",
        b"Hello, World! Why did the chicken cross the road?\n".to_vec(),
        4096,
    );
}

#[test]
fn ten_thousand_lines_in_one_write() {
    let input: Vec<u8> = (0..10_000)
        .flat_map(|i| {
            format!("line {i}: The Quick Brown Fox Jumps Over the Lazy Dog\n").into_bytes()
        })
        .collect();
    let len = input.len();
    exchange_with_all("10,000 lines in one write", input, len);
}

#[test]
fn lines_split_byte_by_byte() {
    exchange_with_all(
        "lines split byte by byte",
        b"Split me\nacross\r\nmany writes\n".to_vec(),
        1,
    );
}

#[test]
fn empty_lines() {
    exchange_with_all("empty lines", b"\n\n\nabc\n\n\r\n\n".to_vec(), 4096);
}

#[test]
fn bytes_from_0x80_up_pass_through() {
    let mut input: Vec<u8> = (0..=255u8).filter(|&b| b != b'\n').collect();
    input.extend_from_slice("\nÄrger über Öl, ça va? ✓\n".as_bytes());
    input.extend((0x80..=0xFFu8).rev());
    input.push(b'\n');
    exchange_with_all("bytes >= 0x80", input, 4096);
}

#[test]
fn a_last_line_without_newline_is_answered_at_eof() {
    exchange_with_all(
        "a last line without \\n",
        b"first\nno newline at the end".to_vec(),
        4096,
    );
}

/// A 1 MiB line (plus 100 bytes) is answered in 16 KiB pieces before its `\n` is sent: the server
/// holds less than 16 KiB of it. Then the `\n`, and the rest at EOF.
#[test]
fn a_one_mib_line_is_answered_in_pieces_as_it_arrives() {
    let line: Vec<u8> = (0..(1 << 20) + 100).map(|i| b"abcXYZ -~"[i % 9]).collect();
    let mut input = line.clone();
    input.push(b'\n');
    let expect = rot13(&input);
    against_all("a 1 MiB line", &expect, move |server| {
        let mut s = std::net::TcpStream::connect(server.addr).unwrap();
        let mut reader = s.try_clone().unwrap();
        reader
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let want_early = line.len() - (MAX_LINE - 1);
        let early = std::thread::spawn(move || {
            let mut got = vec![0; want_early];
            reader.read_exact(&mut got).map(|()| (got, reader))
        });
        s.write_all(&line).unwrap();
        // Before the `\n` is sent, all but less than 16 KiB must come back.
        let (mut got, mut reader) = early
            .join()
            .unwrap()
            .expect("the pieces before the newline");
        s.write_all(b"\n").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        reader.read_to_end(&mut got).unwrap();
        got
    });
}

/// A line is answered as soon as its `\n` arrives (not at EOF), and not before.
#[test]
fn a_line_is_answered_when_its_newline_arrives() {
    let expect = rot13(b"abcdef\n");
    against_all("answer timing", &expect, |server| {
        let mut s = std::net::TcpStream::connect(server.addr).unwrap();
        s.set_nodelay(true).unwrap();
        s.write_all(b"abc").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            other => panic!("{}: a partial line was answered: {other:?}", server.name),
        }
        s.write_all(b"def\n").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = vec![0; 7];
        s.read_exact(&mut got).expect("the answer, before EOF");
        s.shutdown(Shutdown::Write).unwrap();
        assert_eq!(
            s.read(&mut buf).unwrap(),
            0,
            "{}: closes after EOF",
            server.name
        );
        got
    });
}

/// 200 clients at once, each with its own lines; every answer is checked (the combined answers are
/// compared across servers).
#[test]
fn two_hundred_concurrent_clients() {
    const CLIENTS: usize = 200;
    let input_of = |c: usize| -> Vec<u8> {
        (0..50)
            .flat_map(|i| format!("client {c} line {i} {}\n", "Zz".repeat(c % 40)).into_bytes())
            .collect()
    };
    let expect: Vec<u8> = (0..CLIENTS).flat_map(|c| rot13(&input_of(c))).collect();
    against_all("200 concurrent clients", &expect, move |server| {
        let addr = server.addr;
        let answers = evloop::block_on(async move {
            let tasks: Vec<_> = (0..CLIENTS)
                .map(|c| evloop::spawn(async move { exchange(addr, &input_of(c), 512).await }))
                .collect();
            let mut all = Vec::new();
            for t in tasks {
                all.push(t.await.expect("client task").expect("exchange"));
            }
            all
        });
        answers.concat()
    });
}

/// Half-close with answers still pending in the server: 4 MiB of lines and a last line without `\n`
/// are sent and the write side shut at once, but the client reads only after a pause, so the server
/// has stopped reading (backpressure) before it sees the EOF. Every answer must still arrive, then EOF.
#[test]
fn half_close_with_pending_answers() {
    let mut input: Vec<u8> = (0..65_536)
        .flat_map(|i| format!("{i:08} pending answer for a half-closed peer...\n").into_bytes())
        .collect();
    input.extend_from_slice(b"and a tail without newline");
    let expect = rot13(&input);
    against_all("half-close", &expect, move |server| {
        let mut s = std::net::TcpStream::connect(server.addr).unwrap();
        let mut reader = s.try_clone().unwrap();
        let input = input.clone();
        let writer = std::thread::spawn(move || {
            s.write_all(&input)?;
            s.shutdown(Shutdown::Write)
        });
        std::thread::sleep(Duration::from_millis(300));
        let mut got = Vec::new();
        reader.read_to_end(&mut got).unwrap();
        writer
            .join()
            .unwrap()
            .expect("send everything, then shut down");
        got
    });
}

/// A client that sends and never reads: the server stops reading once its answers back up, so the
/// client's writes stall, and the server's resident memory stays bounded. Afterwards the client
/// reads, and gets every answer. Linux only: resident memory is read from /proc.
#[cfg(target_os = "linux")]
#[test]
fn a_client_that_never_reads_cannot_grow_the_server() {
    /// Kernel socket buffers on loopback hold a few MiB each way; a server that kept reading would
    /// take all of this.
    const MAX_SENT: usize = 128 << 20;
    /// Generous: the servers hold about 300 KiB for such a client.
    const RSS_GROWTH_LIMIT_KIB: u64 = 32 * 1024;
    let line = b"Never read: the quick brown fox jumps over the lazy dog, again.\n";
    util::build_examples(&SERVERS);
    for name in SERVERS {
        with_deadline(CASE_LIMIT, move || {
            let server = ExampleServer::start(name);
            // Warm the server up (allocator arenas, first connection) before the baseline.
            evloop::block_on(exchange(server.addr, &line.repeat(100), 4096)).unwrap();
            let before = server.rss_kib();
            let mut s = std::net::TcpStream::connect(server.addr).unwrap();
            s.set_nonblocking(true).unwrap();
            let chunk = line.repeat(1024);
            let (mut sent, mut last_progress) = (0, std::time::Instant::now());
            while sent < MAX_SENT && last_progress.elapsed() < Duration::from_millis(500) {
                match s.write(&chunk[sent % chunk.len()..]) {
                    Ok(n) => {
                        sent += n;
                        last_progress = std::time::Instant::now();
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("{name}: write: {e}"),
                }
            }
            let after = server.rss_kib();
            eprintln!(
                "{name}: {sent} bytes taken before writes stalled; RSS {before} -> {after} KiB"
            );
            assert!(
                sent < MAX_SENT,
                "{name} kept reading from a client that never reads"
            );
            if util::rss_is_meaningful() {
                assert!(
                    after.saturating_sub(before) < RSS_GROWTH_LIMIT_KIB,
                    "{name}'s resident memory grew from {before} to {after} KiB for a client that never reads"
                );
            }
            // Now read: the server resumes, sees the EOF, and answers everything sent, the last
            // (cut) line included.
            s.set_nonblocking(false).unwrap();
            s.shutdown(Shutdown::Write).unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            let stream = chunk
                .iter()
                .cycle()
                .take(sent)
                .copied()
                .collect::<Vec<u8>>();
            assert!(
                got == rot13(&stream),
                "{name}: the answers after the stall ({} of {sent} bytes)",
                got.len()
            );
        });
    }
}

/// `--help` prints the usage on stdout and exits 0; a bad flag prints one line and the usage on
/// stderr and exits 2.
#[test]
fn help_and_bad_flags() {
    util::build_examples(&SERVERS);
    for name in SERVERS {
        let help = util::run_example(name, &["--help"], TEST_LIMIT);
        assert_eq!(help.status.code(), Some(0), "{name} --help");
        let out = String::from_utf8_lossy(&help.stdout);
        assert!(
            out.starts_with(&format!("usage: {name}")),
            "{name} --help printed {out:?}"
        );
        assert!(help.stderr.is_empty(), "{name} --help wrote to stderr");
        for bad in [&["--bogus"][..], &["--addr"], &["--addr", "nowhere"]] {
            let run = util::run_example(name, bad, TEST_LIMIT);
            assert_eq!(run.status.code(), Some(2), "{name} {bad:?}");
            let err = String::from_utf8_lossy(&run.stderr);
            let mut lines = err.lines();
            assert!(
                lines
                    .next()
                    .is_some_and(|l| l.starts_with(&format!("{name}: "))),
                "{name} {bad:?}: {err:?}"
            );
            assert!(
                lines.next().is_some_and(|l| l.starts_with("usage: ")),
                "{name} {bad:?}: {err:?}"
            );
            assert!(run.stdout.is_empty(), "{name} {bad:?} wrote to stdout");
        }
    }
}
