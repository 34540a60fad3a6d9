//! [`Buffer`]: a byte queue made of chunks (libevent's `evbuffer`).

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;

use crate::sys::{self, syscall};

/// The size of a new chunk when data is appended or read.
const CHUNK: usize = 4096;
/// Emptied chunks up to this capacity are kept for the next append, so a steady echo allocates nothing.
const KEEP: usize = 16 * 1024;
/// Appending a buffer shorter than this copies it (into spare room) instead of moving its chunks.
const COPY_BELOW: usize = 2048;
/// Chunks written by one `writev`.
const MAX_IOV: usize = 64;

/// How a line ends, for [`Buffer::read_line_with`], [`Buffer::read_line_into`] and
/// [`Buffer::search_eol`] (libevent's `enum evbuffer_eol_style`, `EVBUFFER_EOL_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Eol {
    /// Any run of `\r` and `\n` bytes, however long (`EVBUFFER_EOL_ANY`). The run is cut where the
    /// buffered bytes end, so a `\r\n` split across two reads can end one line and start an empty
    /// one; prefer another style for network protocols.
    Any,
    /// `\n`, or `\r\n` (`EVBUFFER_EOL_CRLF`): what text protocols that prescribe CRLF should accept.
    CrLf,
    /// Exactly `\r\n` (`EVBUFFER_EOL_CRLF_STRICT`); a lone `\n` is part of the line.
    CrLfStrict,
    /// `\n` only (`EVBUFFER_EOL_LF`); a `\r` before it stays in the line.
    Lf,
    /// A NUL byte (`EVBUFFER_EOL_NUL`).
    Nul,
}

/// A queue of bytes: data is appended at the back and drained from the front, in chunks, so that
/// appending another buffer moves chunks instead of copying bytes.
///
/// # Examples
/// ```
/// use evloop::event::Buffer;
///
/// let mut b = Buffer::new();
/// b.append(b"GET / HTTP/1.1\r\nHost: x\r\n");
/// assert_eq!(b.find(b"\r\n"), Some(14));
/// assert_eq!(b.read_line().as_deref(), Some(&b"GET / HTTP/1.1"[..]));
/// let mut other = Buffer::new();
/// other.append_buffer(&mut b);
/// assert!(b.is_empty());
/// assert_eq!(other.to_vec(), b"Host: x\r\n");
/// ```
#[derive(Default)]
pub struct Buffer {
    /// Each chunk's bytes are `data[start..]`; no chunk is empty except a kept last one.
    chunks: VecDeque<Chunk>,
    /// Total readable bytes.
    len: usize,
}

struct Chunk {
    data: Vec<u8>,
    /// Bytes before `start` have been drained.
    start: usize,
}

impl Chunk {
    fn with_capacity(n: usize) -> Chunk {
        Chunk {
            data: Vec::with_capacity(n),
            start: 0,
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.data[self.start..]
    }

    fn len(&self) -> usize {
        self.data.len() - self.start
    }

    fn spare(&self) -> usize {
        self.data.capacity() - self.data.len()
    }
}

impl Buffer {
    /// An empty buffer (allocates on first append).
    pub fn new() -> Buffer {
        Buffer::default()
    }

    /// Readable bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no bytes are readable.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `data` to the back.
    pub fn append(&mut self, mut data: &[u8]) {
        self.len += data.len();
        if let Some(last) = self.chunks.back_mut() {
            let n = last.spare().min(data.len());
            last.data.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
        if !data.is_empty() {
            let mut c = Chunk::with_capacity(data.len().max(CHUNK));
            c.data.extend_from_slice(data);
            self.chunks.push_back(c);
        }
    }

    /// Moves all of `other`'s bytes to the back of `self`, leaving `other` empty: its chunks are moved,
    /// not copied (short data is copied into spare room instead, which keeps both buffers' chunks for
    /// reuse).
    pub fn append_buffer(&mut self, other: &mut Buffer) {
        if other.is_empty() {
            return;
        }
        if self.is_empty() {
            // We hold at most a kept empty chunk: trade chunk lists, so no byte is copied and each
            // buffer still has a chunk to reuse (an echo moves its input to its output this way).
            std::mem::swap(&mut self.chunks, &mut other.chunks);
            self.len = std::mem::take(&mut other.len);
            return;
        }
        let spare = self.chunks.back().map_or(0, Chunk::spare);
        if other.len <= COPY_BELOW && other.len <= spare {
            for c in &other.chunks {
                self.chunks
                    .back_mut()
                    .expect("spare implies a chunk")
                    .data
                    .extend_from_slice(c.bytes());
            }
            self.len += other.len;
            other.drain(other.len);
            return;
        }
        // Drop a kept empty chunk at our back so no empty chunk sits in the middle.
        if self.chunks.back().is_some_and(|c| c.len() == 0) {
            self.chunks.pop_back();
        }
        self.len += other.len;
        other.len = 0;
        self.chunks
            .extend(other.chunks.drain(..).filter(|c| c.len() > 0));
    }

    /// Drops up to `n` bytes from the front; returns how many.
    #[inline]
    pub fn drain(&mut self, n: usize) -> usize {
        if n >= self.len {
            let n = self.len;
            self.drain_all();
            return n;
        }
        self.drain_part(n);
        n
    }

    /// `drain` of fewer than `len` bytes.
    fn drain_part(&mut self, n: usize) {
        let mut left = n;
        while left > 0 {
            let front = self.chunks.front_mut().expect("len counts chunk bytes");
            let take = front.len().min(left);
            front.start += take;
            left -= take;
            if front.len() == 0 {
                self.pop_empty_front();
            }
        }
        self.len -= n;
    }

    /// Drops every byte, keeping the last chunk (reset) when it is small, as draining chunk by chunk
    /// would: the common case (a write that took all the output, of one chunk) touches that chunk only.
    #[inline]
    fn drain_all(&mut self) {
        self.len = 0;
        match self.chunks.len() {
            0 => {}
            1 => {
                let c = &mut self.chunks[0];
                if c.data.capacity() <= KEEP {
                    c.data.clear();
                    c.start = 0;
                } else {
                    self.chunks.clear();
                }
            }
            _ => self.drain_chunks(),
        }
    }

    /// `drain_all` of several chunks.
    #[cold]
    fn drain_chunks(&mut self) {
        let last = self.chunks.pop_back().filter(|c| c.data.capacity() <= KEEP);
        self.chunks.clear();
        if let Some(mut c) = last {
            c.data.clear();
            c.start = 0;
            self.chunks.push_back(c);
        }
    }

    /// Drops an emptied front chunk, or keeps it (reset) as the only chunk when it is small.
    fn pop_empty_front(&mut self) {
        let c = self.chunks.pop_front().expect("a front chunk");
        if self.chunks.is_empty() && c.data.capacity() <= KEEP {
            let mut c = c;
            c.data.clear();
            c.start = 0;
            self.chunks.push_back(c);
        }
    }

    /// Copies up to `out.len()` bytes from the front into `out` without draining them.
    pub fn copy_out(&self, out: &mut [u8]) -> usize {
        let mut n = 0;
        for c in &self.chunks {
            if n == out.len() {
                break;
            }
            let b = c.bytes();
            let take = b.len().min(out.len() - n);
            out[n..n + take].copy_from_slice(&b[..take]);
            n += take;
        }
        n
    }

    /// Moves up to `out.len()` bytes from the front into `out`; returns how many.
    pub fn remove(&mut self, out: &mut [u8]) -> usize {
        let n = self.copy_out(out);
        self.drain(n);
        n
    }

    /// The position of the first occurrence of `needle`, searching across chunk boundaries.
    pub fn find(&self, needle: &[u8]) -> Option<usize> {
        if needle.is_empty() {
            return Some(0);
        }
        if needle.len() > self.len {
            return None;
        }
        for (ci, c) in self.chunks.iter().enumerate() {
            let b = c.bytes();
            let mut off = 0;
            while let Some(i) = b[off..].iter().position(|&x| x == needle[0]) {
                if self.matches_at(ci, off + i, needle) {
                    let before: usize = self.chunks.iter().take(ci).map(Chunk::len).sum();
                    return Some(before + off + i);
                }
                off += i + 1;
            }
        }
        None
    }

    /// True when `needle` starts at byte `off` of chunk `ci` (possibly running into later chunks).
    fn matches_at(&self, ci: usize, off: usize, needle: &[u8]) -> bool {
        let mut rest = needle;
        let mut off = off;
        for c in self.chunks.iter().skip(ci) {
            let b = &c.bytes()[off..];
            let n = b.len().min(rest.len());
            if b[..n] != rest[..n] {
                return false;
            }
            rest = &rest[n..];
            if rest.is_empty() {
                return true;
            }
            off = 0;
        }
        false
    }

    /// Removes and returns the first line, without its terminator (`\n` or `\r\n`); `None` (and
    /// nothing removed) if no complete line is buffered. The same as
    /// [`read_line_with(Eol::CrLf)`](Self::read_line_with).
    pub fn read_line(&mut self) -> Option<Vec<u8>> {
        self.read_line_with(Eol::CrLf)
    }

    /// Removes and returns the first line ending as `eol` says, without its terminator; `None` (and
    /// nothing removed) if no complete line is buffered (libevent's `evbuffer_readln`). Allocates the
    /// returned `Vec`; [`read_line_into`](Self::read_line_into) reuses one instead.
    ///
    /// # Examples
    /// ```
    /// use evloop::event::{Buffer, Eol};
    ///
    /// let mut b = Buffer::new();
    /// b.append(b"one\r\ntwo\nthree");
    /// // `Lf` keeps the `\r`; `CrLf` would strip it.
    /// assert_eq!(b.read_line_with(Eol::Lf).as_deref(), Some(&b"one\r"[..]));
    /// assert_eq!(b.read_line_with(Eol::Lf).as_deref(), Some(&b"two"[..]));
    /// assert_eq!(b.read_line_with(Eol::Lf), None); // "three" has no terminator yet
    /// assert_eq!(b.len(), 5);
    /// ```
    pub fn read_line_with(&mut self, eol: Eol) -> Option<Vec<u8>> {
        let mut line = Vec::new();
        self.read_line_into(eol, &mut line).then_some(line)
    }

    /// Moves the first line ending as `eol` says onto the end of `out`, without its terminator (which
    /// is dropped), and returns true; returns false, and moves nothing, if no complete line is
    /// buffered. With one `out` cleared and reused for every line, reading lines allocates nothing
    /// once `out` has grown to the longest line.
    pub fn read_line_into(&mut self, eol: Eol, out: &mut Vec<u8>) -> bool {
        let Some((at, terminator)) = self.search_eol(eol) else {
            return false;
        };
        self.remove_to_vec(at, out);
        self.drain(terminator);
        true
    }

    /// Where the first line terminator of style `eol` starts, and its length in bytes; `None` if the
    /// buffer holds none (libevent's `evbuffer_search_eol`). The bytes before the terminator are the
    /// line.
    pub fn search_eol(&self, eol: Eol) -> Option<(usize, usize)> {
        let is_crlf = |b: &u8| *b == b'\r' || *b == b'\n';
        match eol {
            Eol::Lf => self.position(|b| b == b'\n').map(|at| (at, 1)),
            Eol::Nul => self.position(|b| b == 0).map(|at| (at, 1)),
            Eol::CrLfStrict => self.find(b"\r\n").map(|at| (at, 2)),
            Eol::CrLf => {
                let nl = self.position(|b| b == b'\n')?;
                let cr_before = nl > 0 && self.chunks().flatten().nth(nl - 1) == Some(&b'\r');
                Some(if cr_before { (nl - 1, 2) } else { (nl, 1) })
            }
            Eol::Any => {
                let at = self.position(|b| is_crlf(&b))?;
                let run = self.chunks().flatten().skip(at).take_while(|b| is_crlf(b));
                Some((at, run.count()))
            }
        }
    }

    /// The position of the first byte for which `pred` is true.
    fn position(&self, pred: impl Fn(u8) -> bool) -> Option<usize> {
        let mut before = 0;
        for c in self.chunks() {
            if let Some(i) = c.iter().position(|&b| pred(b)) {
                return Some(before + i);
            }
            before += c.len();
        }
        None
    }

    /// Moves up to `max` bytes from the front onto the end of `out` (copied chunk by chunk: `out` is
    /// not zero-filled first, unlike a slice for [`remove`](Self::remove)); returns how many.
    pub fn remove_to_vec(&mut self, max: usize, out: &mut Vec<u8>) -> usize {
        let n = max.min(self.len);
        out.reserve(n);
        let mut left = n;
        for c in self.chunks() {
            if left == 0 {
                break;
            }
            let take = c.len().min(left);
            out.extend_from_slice(&c[..take]);
            left -= take;
        }
        self.drain(n)
    }

    /// The readable bytes, chunk by chunk.
    pub fn chunks(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.chunks
            .iter()
            .map(Chunk::bytes)
            .filter(|b| !b.is_empty())
    }

    /// A copy of all readable bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len);
        for c in self.chunks() {
            v.extend_from_slice(c);
        }
        v
    }

    /// Drops every byte.
    pub fn clear(&mut self) {
        self.drain(self.len);
    }

    /// One `recv` (or `read`, for a non-socket) of up to `max` bytes from `fd` into spare room at the back (a new chunk if the last
    /// one has less than `max` free). Returns the count (0 at end-of-file). EINTR is retried.
    pub(crate) fn read_from_fd(&mut self, fd: RawFd, max: usize) -> io::Result<usize> {
        let fits = match self.chunks.back() {
            Some(c) => c.spare() >= max,
            None => false,
        };
        if !fits {
            self.make_room(max);
        }
        let last = self.chunks.back_mut().expect("just ensured");
        let room = last.spare().min(max);
        let spare = last.data.spare_capacity_mut();
        let ptr = spare.as_mut_ptr().cast::<libc::c_void>();
        // `recv` takes the socket path, cheaper than `read`'s trip through the VFS; anything else
        // that is not a socket gets `read` (in `transfer_failed`, with EINTR's retry and the errors).
        // SAFETY: `ptr` is writable, uninitialised memory of at least `room` bytes owned by
        // `last.data`; recv writes at most `room` bytes into it.
        let n = match syscall(unsafe { sys::recv(fd, ptr, room, 0) }) {
            Ok(n) => n as usize,
            Err(e) => transfer_failed(
                e,
                // SAFETY: as above.
                || unsafe { sys::recv(fd, ptr, room, 0) },
                // SAFETY: as above; read writes at most `room` bytes.
                || unsafe { libc::read(fd, ptr, room) },
            )?,
        };
        // SAFETY: read initialised the first `n` bytes of the spare capacity.
        unsafe { last.data.set_len(last.data.len() + n) };
        self.len += n;
        Ok(n)
    }

    /// `read_from_fd`'s new chunk when the last one has less than `max` free (out of line: a buffer
    /// that is drained between reads keeps its chunk and never gets here).
    #[cold]
    #[inline(never)]
    fn make_room(&mut self, max: usize) {
        // A read shorter than asked must mean "drained", so the whole `max` gets room.
        if self.chunks.back().is_some_and(|c| c.len() == 0) {
            self.chunks.pop_back();
        }
        self.chunks.push_back(Chunk::with_capacity(max.max(CHUNK)));
    }

    /// One `sendmsg` (or `writev`, for a non-socket) of the front chunks (at most `MAX_IOV` of them)
    /// to `fd`; drains what was written. Returns the count and how many bytes were offered: only a
    /// count below the offer proves the socket's buffer full (an offer cut at `MAX_IOV` chunks is not).
    pub(crate) fn write_to_fd(&mut self, fd: RawFd) -> io::Result<(usize, usize)> {
        if self.chunks.len() == 1 {
            return self.write_front_to_fd(fd);
        }
        self.write_chunks_to_fd(fd)
    }

    /// `write_to_fd` of more than one chunk (or none), out of line: the common case of one chunk
    /// then saves no registers for the iovec array and the message header.
    #[inline(never)]
    fn write_chunks_to_fd(&mut self, fd: RawFd) -> io::Result<(usize, usize)> {
        // Left uninitialised beyond `cnt`: zeroing all 64 entries (1 KiB) cost more than the rest of
        // this function when there is one chunk to send, the common case.
        let mut iov = [const { MaybeUninit::<libc::iovec>::uninit() }; MAX_IOV];
        let (mut cnt, mut offered) = (0, 0);
        for c in self.chunks() {
            if cnt == MAX_IOV {
                break;
            }
            iov[cnt].write(libc::iovec {
                iov_base: c.as_ptr() as *mut libc::c_void,
                iov_len: c.len(),
            });
            offered += c.len();
            cnt += 1;
        }
        let iov = iov.as_mut_ptr().cast::<libc::iovec>();
        if cnt == 0 {
            return Ok((0, 0));
        }
        // SAFETY: an all-zero msghdr is valid (no address, no control data).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov;
        msg.msg_iovlen = cnt as _;
        let n = sys::retry(|| {
            // `sendmsg` with the no-SIGPIPE flag: a peer that reset gives EPIPE, never a signal; it
            // also takes the socket path, cheaper than `writev`'s. Non-sockets get `writev`.
            // SAFETY: the first `cnt` iovecs, initialised above, which `msg` points at, point at live chunk bytes that
            // are not modified during the call; sendmsg only reads them.
            match syscall(unsafe { libc::sendmsg(fd, &msg, crate::net::socket::SEND_FLAGS) }) {
                Err(e) if e.raw_os_error() == Some(libc::ENOTSOCK) => {
                    // SAFETY: as for sendmsg above.
                    syscall(unsafe { libc::writev(fd, iov, cnt as libc::c_int) })
                }
                res => res,
            }
        })? as usize;
        self.drain(n);
        Ok((n, offered))
    }
}

impl Buffer {
    /// `write_to_fd` of a buffer of one chunk: one `send` (or `write`, for a non-socket), without the
    /// iovec array and the message header.
    fn write_front_to_fd(&mut self, fd: RawFd) -> io::Result<(usize, usize)> {
        let bytes = self.chunks[0].bytes();
        let (ptr, len) = (bytes.as_ptr().cast::<libc::c_void>(), bytes.len());
        if len == 0 {
            return Ok((0, 0));
        }
        // The no-SIGPIPE flag, as for sendmsg in `write_to_fd`; non-sockets (`write`), EINTR and the
        // errors in `transfer_failed`.
        // SAFETY: `ptr` points at `len` live bytes of the chunk, which is not modified during the
        // call; send only reads them.
        let n = match syscall(unsafe { sys::send(fd, ptr, len, crate::net::socket::SEND_FLAGS) }) {
            Ok(n) => n as usize,
            Err(e) => transfer_failed(
                e,
                // SAFETY: as above.
                || unsafe { sys::send(fd, ptr, len, crate::net::socket::SEND_FLAGS) },
                // SAFETY: as above; write only reads the `len` bytes.
                || unsafe { libc::write(fd, ptr, len) },
            )?,
        };
        self.drain(n);
        Ok((n, len))
    }
}

/// A buffer's `recv` or `send` (`socket_call`) failed with `e`: a descriptor that is not a socket
/// gets `fallback` (`read` or `write`) instead; EINTR tries again; any other error is returned. Out of
/// line, so that the common case saves no registers for it. Both calls return what the C call does.
#[cold]
#[inline(never)]
fn transfer_failed(
    e: io::Error,
    mut socket_call: impl FnMut() -> isize,
    mut fallback: impl FnMut() -> isize,
) -> io::Result<usize> {
    let mut first = Some(e);
    sys::retry(|| {
        let res = match first.take() {
            Some(e) => Err(e),
            None => syscall(socket_call()),
        };
        match res {
            Err(e) if e.raw_os_error() == Some(libc::ENOTSOCK) => syscall(fallback()),
            res => res,
        }
    })
    .map(|n| n as usize)
}

impl fmt::Debug for Buffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buffer")
            .field("len", &self.len)
            .field("chunks", &self.chunks.len())
            .finish()
    }
}
