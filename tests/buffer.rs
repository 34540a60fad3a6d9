//! `evloop::event::Buffer`: appends, drains, searches and line reads, across chunk boundaries.

use evloop::event::{Buffer, Eol};

/// A buffer holding `text` split across two chunks after its first `k` bytes: a filler fills the first
/// chunk (4 KiB) up to `k` bytes before its end, then is drained away.
fn split_at(text: &[u8], k: usize) -> Buffer {
    let mut b = Buffer::new();
    b.append(&vec![b'-'; 4096 - k]);
    b.append(text);
    b.drain(4096 - k);
    assert_eq!(
        b.chunks().next().map(<[u8]>::len),
        Some(k),
        "the test relies on 4 KiB chunks"
    );
    b
}

#[test]
fn append_drain_remove_and_len() {
    let mut b = Buffer::new();
    assert!(b.is_empty());
    b.append(b"hello ");
    b.append(b"world");
    assert_eq!(b.len(), 11);
    assert_eq!(b.drain(6), 6);
    let mut out = [0; 3];
    assert_eq!(b.copy_out(&mut out), 3);
    assert_eq!(&out, b"wor");
    assert_eq!(b.remove(&mut out), 3);
    assert_eq!(&out, b"wor");
    assert_eq!(b.to_vec(), b"ld");
    assert_eq!(b.drain(100), 2);
    assert!(b.is_empty());
    let mut big = [0; 10];
    assert_eq!(b.remove(&mut big), 0);
}

#[test]
fn large_appends_span_chunks() {
    let mut b = Buffer::new();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    for piece in data.chunks(777) {
        b.append(piece);
    }
    assert_eq!(b.len(), data.len());
    assert!(b.chunks().count() > 1);
    assert_eq!(b.to_vec(), data);
    b.drain(50_000);
    assert_eq!(b.to_vec(), &data[50_000..]);
}

#[test]
fn append_buffer_moves_everything() {
    let mut a = Buffer::new();
    a.append(b"abc");
    let mut big = Buffer::new();
    big.append(&vec![1u8; 10_000]);
    a.append_buffer(&mut big);
    assert!(big.is_empty());
    assert_eq!(a.len(), 10_003);
    let mut small = Buffer::new();
    small.append(b"xyz");
    a.append_buffer(&mut small);
    assert!(small.is_empty());
    let v = a.to_vec();
    assert_eq!(&v[..3], b"abc");
    assert_eq!(&v[v.len() - 3..], b"xyz");
    // Both buffers stay usable.
    small.append(b"again");
    assert_eq!(small.to_vec(), b"again");
}

#[test]
fn find_across_chunk_boundaries() {
    let b = split_at(b"GET / HTTP/1.1\r\nHost: a\r\n", 8);
    assert_eq!(b.to_vec(), b"GET / HTTP/1.1\r\nHost: a\r\n");
    assert_eq!(b.find(b"HTTP"), Some(6));
    assert_eq!(b.find(b"\r\n"), Some(14));
    assert_eq!(b.find(b"Host"), Some(16));
    assert_eq!(b.find(b"nope"), None);
    assert_eq!(b.find(b""), Some(0));
    assert_eq!(b.find(&[b'x'; 100]), None);

    // Every needle at every position agrees with a plain search, over many chunk boundaries.
    let data: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 27) as u8)
        .collect();
    let mut big = Buffer::new();
    for piece in data.chunks(1000) {
        big.append(piece);
    }
    for p in (0..data.len() - 8).step_by(97) {
        let needle = &data[p..p + 5];
        let naive = data.windows(5).position(|w| w == needle);
        assert_eq!(big.find(needle), naive, "needle at {p}");
    }
}

#[test]
fn read_line_handles_lf_and_crlf() {
    let mut b = split_at(b"one\r\ntwo\nthree", 4);
    assert_eq!(b.read_line().as_deref(), Some(&b"one"[..]));
    assert_eq!(b.read_line().as_deref(), Some(&b"two"[..]));
    assert_eq!(b.read_line(), None, "an incomplete line stays buffered");
    assert_eq!(b.to_vec(), b"three");
    b.append(b"\n\n");
    assert_eq!(b.read_line().as_deref(), Some(&b"three"[..]));
    assert_eq!(b.read_line().as_deref(), Some(&b""[..]));
    assert!(b.is_empty());
}

#[test]
fn eol_styles_find_their_terminators() {
    // Every style on the same bytes, split across two chunks right inside the "\r\n".
    let text = b"a\r\nb\nc\0d\r\r\n\ne";
    let cases: [(Eol, Option<(usize, usize)>); 5] = [
        (Eol::Lf, Some((2, 1))),
        (Eol::CrLf, Some((1, 2))),
        (Eol::CrLfStrict, Some((1, 2))),
        (Eol::Nul, Some((6, 1))),
        (Eol::Any, Some((1, 2))),
    ];
    for (eol, want) in cases {
        let b = split_at(text, 2);
        assert_eq!(b.search_eol(eol), want, "{eol:?}");
    }
    // The lines each style reads from the whole text.
    let lines = |eol| {
        let mut b = split_at(text, 2);
        let mut got = Vec::new();
        while let Some(line) = b.read_line_with(eol) {
            got.push(String::from_utf8(line).unwrap());
        }
        (got, String::from_utf8(b.to_vec()).unwrap())
    };
    assert_eq!(
        lines(Eol::Lf),
        (
            vec!["a\r".into(), "b".into(), "c\0d\r\r".into(), "".into()],
            "e".into()
        )
    );
    assert_eq!(
        lines(Eol::CrLf),
        (
            vec!["a".into(), "b".into(), "c\0d\r".into(), "".into()],
            "e".into()
        )
    );
    assert_eq!(
        lines(Eol::CrLfStrict),
        (vec!["a".into(), "b\nc\0d\r".into()], "\ne".into())
    );
    assert_eq!(
        lines(Eol::Nul),
        (vec!["a\r\nb\nc".into()], "d\r\r\n\ne".into())
    );
    assert_eq!(
        lines(Eol::Any),
        (vec!["a".into(), "b".into(), "c\0d".into()], "e".into())
    );
}

#[test]
fn read_line_into_reuses_its_vec_and_remove_to_vec_appends() {
    let mut b = Buffer::new();
    let mut line = Vec::with_capacity(64);
    let cap = line.capacity();
    for i in 0..1000 {
        b.append(format!("line {i}\n").as_bytes());
        line.clear();
        assert!(b.read_line_into(Eol::Lf, &mut line));
        assert_eq!(line, format!("line {i}").as_bytes());
    }
    assert_eq!(line.capacity(), cap, "a reused Vec does not reallocate");
    assert!(!b.read_line_into(Eol::Lf, &mut line), "nothing buffered");
    b.append(b"no newline");
    assert!(!b.read_line_into(Eol::Lf, &mut line));
    assert_eq!(b.len(), 10, "an incomplete line stays buffered");
    // A long line across many chunks, then a piece of a line with no terminator.
    let long: Vec<u8> = (0..20_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut b = Buffer::new();
    for piece in long.chunks(3000) {
        b.append(piece);
    }
    b.append(b"\nrest");
    line.clear();
    assert!(b.read_line_into(Eol::Lf, &mut line));
    assert_eq!(line, long);
    let mut out = b"x".to_vec();
    assert_eq!(b.remove_to_vec(2, &mut out), 2);
    assert_eq!(out, b"xre");
    assert_eq!(b.remove_to_vec(100, &mut out), 2);
    assert_eq!(out, b"xrest");
    assert!(b.is_empty());
}
