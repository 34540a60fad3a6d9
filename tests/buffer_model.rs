//! `event::Buffer` against a `VecDeque<u8>` model: random sequences of append, drain, remove, copy_out,
//! find, read_line, the line readers of every `Eol` style (search_eol, read_line_with, read_line_into),
//! remove_to_vec, append_buffer (in both directions, with a second buffer that has its own history),
//! clear and len. After every step the two must agree on the length and on every byte, so a chunk
//! boundary handled wrongly (a kept empty chunk, a copy into spare room, a find that runs across chunks)
//! shows up as the shortest failing sequence proptest can shrink to.

use std::collections::VecDeque;

use evloop::event::{Buffer, Eol};
use proptest::prelude::*;

/// One operation on the pair (buffer, model). Sizes straddle the 4 KiB chunk and the 2 KiB copy
/// threshold of `append_buffer`, which is where the chunk bookkeeping changes.
#[derive(Debug, Clone)]
enum Op {
    Append(Vec<u8>),
    /// Appends `n` bytes of a fixed pattern (large appends without a large strategy).
    AppendBig(usize),
    Drain(usize),
    Remove(usize),
    CopyOut(usize),
    /// A needle cut out of the current contents at (start, len), as fractions of the length.
    FindPresent(u16, u8),
    FindAbsent(Vec<u8>),
    ReadLine,
    /// `read_line_into` (into a non-empty Vec, which must only grow) or `read_line_with`, and
    /// `search_eol` before it.
    ReadLineWith(Eol, bool),
    RemoveToVec(usize),
    /// Moves the other buffer into this one.
    AppendOther,
    /// Moves this buffer into the other one, then swaps roles back (so both directions are covered).
    AppendIntoOther,
    /// Feeds the other buffer some bytes and drains some, so its chunks have a history.
    FeedOther(Vec<u8>, usize),
    Clear,
}

/// Small alphabet with line terminators, so finds and lines actually match.
fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(b"abc".to_vec()),
            1 => Just(b'\n'),
            1 => Just(b'\r'),
            1 => Just(0u8),
            1 => any::<u8>(),
        ],
        0..max,
    )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => bytes(64).prop_map(Op::Append),
        2 => (0usize..9000).prop_map(Op::AppendBig),
        3 => (0usize..6000).prop_map(Op::Drain),
        2 => (0usize..6000).prop_map(Op::Remove),
        2 => (0usize..6000).prop_map(Op::CopyOut),
        2 => (any::<u16>(), 1u8..40).prop_map(|(s, l)| Op::FindPresent(s, l)),
        1 => bytes(6).prop_map(Op::FindAbsent),
        2 => Just(Op::ReadLine),
        3 => (eol(), any::<bool>()).prop_map(|(e, into)| Op::ReadLineWith(e, into)),
        1 => (0usize..6000).prop_map(Op::RemoveToVec),
        2 => Just(Op::AppendOther),
        1 => Just(Op::AppendIntoOther),
        2 => (bytes(3000), 0usize..3000).prop_map(|(b, d)| Op::FeedOther(b, d)),
        1 => Just(Op::Clear),
    ]
}

fn eol() -> impl Strategy<Value = Eol> {
    prop::sample::select(vec![
        Eol::Any,
        Eol::CrLf,
        Eol::CrLfStrict,
        Eol::Lf,
        Eol::Nul,
    ])
}

/// The terminator `Buffer::search_eol` must find: (start, length), written from the styles' definitions.
fn model_search_eol(model: &VecDeque<u8>, eol: Eol) -> Option<(usize, usize)> {
    let v: Vec<u8> = model.iter().copied().collect();
    let crlf = |b: &u8| *b == b'\r' || *b == b'\n';
    match eol {
        Eol::Lf => v.iter().position(|&b| b == b'\n').map(|p| (p, 1)),
        Eol::Nul => v.iter().position(|&b| b == 0).map(|p| (p, 1)),
        Eol::CrLfStrict => v.windows(2).position(|w| w == b"\r\n").map(|p| (p, 2)),
        Eol::CrLf => v.iter().position(|&b| b == b'\n').map(|p| {
            if p > 0 && v[p - 1] == b'\r' {
                (p - 1, 2)
            } else {
                (p, 1)
            }
        }),
        Eol::Any => v
            .iter()
            .position(crlf)
            .map(|p| (p, v[p..].iter().take_while(|b| crlf(b)).count())),
    }
}

fn big(n: usize, seed: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 7 + seed) % 253) as u8).collect()
}

/// The first position of `needle` in `hay` (empty needle: 0, as `Buffer::find`).
fn model_find(hay: &VecDeque<u8>, needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    let hay: Vec<u8> = hay.iter().copied().collect();
    hay.windows(needle.len()).position(|w| w == needle)
}

fn model_take(model: &mut VecDeque<u8>, n: usize) -> Vec<u8> {
    let n = n.min(model.len());
    model.drain(..n).collect()
}

fn check(buf: &Buffer, model: &VecDeque<u8>, what: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(buf.len(), model.len(), "len after {}", what);
    prop_assert_eq!(buf.is_empty(), model.is_empty(), "is_empty after {}", what);
    let contents: Vec<u8> = model.iter().copied().collect();
    prop_assert!(buf.to_vec() == contents, "contents differ after {}", what);
    let joined: Vec<u8> = buf.chunks().flatten().copied().collect();
    prop_assert!(joined == contents, "chunks() differ after {}", what);
    prop_assert!(
        buf.chunks().all(|c| !c.is_empty()),
        "chunks() yielded an empty chunk after {}",
        what
    );
    Ok(())
}

fn apply(
    op: &Op,
    step: usize,
    buf: &mut Buffer,
    model: &mut VecDeque<u8>,
    other: &mut Buffer,
    other_model: &mut VecDeque<u8>,
) -> Result<(), TestCaseError> {
    match op {
        Op::Append(data) => {
            buf.append(data);
            model.extend(data);
        }
        Op::AppendBig(n) => {
            let data = big(*n, step);
            buf.append(&data);
            model.extend(&data);
        }
        Op::Drain(n) => {
            let expect = (*n).min(model.len());
            prop_assert_eq!(buf.drain(*n), expect);
            model_take(model, *n);
        }
        Op::Remove(n) => {
            let mut out = vec![0xEE; *n];
            let got = buf.remove(&mut out);
            let expect = model_take(model, *n);
            prop_assert_eq!(got, expect.len());
            prop_assert!(out[..got] == expect[..], "remove returned other bytes");
            prop_assert!(
                out[got..].iter().all(|&b| b == 0xEE),
                "remove wrote past its count"
            );
        }
        Op::CopyOut(n) => {
            let mut out = vec![0xEE; *n];
            let got = buf.copy_out(&mut out);
            let expect: Vec<u8> = model.iter().take(*n).copied().collect();
            prop_assert_eq!(got, expect.len());
            prop_assert!(out[..got] == expect[..], "copy_out returned other bytes");
            prop_assert!(
                out[got..].iter().all(|&b| b == 0xEE),
                "copy_out wrote past its count"
            );
        }
        Op::FindPresent(start, len) => {
            if !model.is_empty() {
                let s = *start as usize % model.len();
                let l = (*len as usize).min(model.len() - s);
                let needle: Vec<u8> = model.iter().skip(s).take(l).copied().collect();
                let expect = model_find(model, &needle);
                prop_assert!(expect.is_some_and(|p| p <= s));
                prop_assert_eq!(buf.find(&needle), expect, "find {:?}", needle);
            }
        }
        Op::FindAbsent(needle) => {
            prop_assert_eq!(
                buf.find(needle),
                model_find(model, needle),
                "find {:?}",
                needle
            );
        }
        Op::ReadLine => {
            let expect = model.iter().position(|&b| b == b'\n').map(|nl| {
                let mut line = model_take(model, nl + 1);
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                line
            });
            prop_assert_eq!(buf.read_line(), expect);
        }
        Op::ReadLineWith(eol, into) => {
            let found = model_search_eol(model, *eol);
            prop_assert_eq!(buf.search_eol(*eol), found, "search_eol {:?}", eol);
            let expect = found.map(|(at, len)| {
                let line = model_take(model, at);
                model_take(model, len);
                line
            });
            if *into {
                let mut out = b"kept".to_vec();
                let got = buf.read_line_into(*eol, &mut out);
                prop_assert_eq!(got, expect.is_some());
                prop_assert!(
                    out.starts_with(b"kept"),
                    "read_line_into replaced what out held"
                );
                prop_assert_eq!(&out[4..], expect.as_deref().unwrap_or_default());
            } else {
                prop_assert_eq!(buf.read_line_with(*eol), expect);
            }
        }
        Op::RemoveToVec(n) => {
            let mut out = vec![7u8];
            let got = buf.remove_to_vec(*n, &mut out);
            let expect = model_take(model, *n);
            prop_assert_eq!(got, expect.len());
            prop_assert_eq!(&out[1..], &expect[..]);
        }
        Op::AppendOther => {
            buf.append_buffer(other);
            model.extend(other_model.drain(..));
        }
        Op::AppendIntoOther => {
            other.append_buffer(buf);
            other_model.extend(model.drain(..));
            check(other, other_model, "append_buffer into the other buffer")?;
        }
        Op::FeedOther(data, d) => {
            other.append(data);
            other_model.extend(data);
            other.drain(*d);
            model_take(other_model, *d);
        }
        Op::Clear => {
            buf.clear();
            model.clear();
        }
    }
    check(other, other_model, "the other buffer")?;
    check(buf, model, &format!("step {step}: {op:?}"))
}

/// `PROPTEST_CASES` if set, else 128.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128)
}

proptest! {
    // 128 sequences keep the debug suite quick; `PROPTEST_CASES=10000` runs a long search.
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn buffer_matches_a_vecdeque_model(ops in prop::collection::vec(op(), 1..80)) {
        let (mut buf, mut model) = (Buffer::new(), VecDeque::new());
        let (mut other, mut other_model) = (Buffer::new(), VecDeque::new());
        for (step, op) in ops.iter().enumerate() {
            apply(op, step, &mut buf, &mut model, &mut other, &mut other_model)?;
        }
    }
}

/// The model test must be able to fail: a deliberately wrong model (dropping one byte too many) is
/// caught by the same comparison.
#[test]
fn the_comparison_catches_a_wrong_model() {
    let mut buf = Buffer::new();
    let mut model = VecDeque::new();
    buf.append(b"abcdef");
    model.extend(b"abcdef");
    buf.drain(2);
    model_take(&mut model, 3);
    assert!(check(&buf, &model, "a wrong drain").is_err());
}
