//! `evloop::fs`: files and directories on the blocking pool. Big files round-trip byte for byte, many
//! files are written at once, seeks and read-ahead agree, a directory of 10,000 entries is listed,
//! errors name their paths, no write is lost (dropped mid-write, or failing), on both runtime flavors
//! and outside any runtime.

mod util;

use std::collections::HashSet;
use std::future::Future;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::time::{Duration, Instant};

use futures::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, StreamExt};

use evloop::fs::{self, File};
use evloop::Runtime;
use util::{os_code, pattern_byte, with_deadline, TempDir, TEST_LIMIT};

/// Runs the test body on the current-thread runtime, then on a two-worker multi-thread runtime.
fn on_both_flavors<F, Fut>(limit: Duration, body: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    with_deadline(limit, move || {
        evloop::block_on(body());
        let rt = Runtime::builder()
            .worker_threads(2)
            .build()
            .expect("multi-thread runtime");
        rt.block_on(body());
    });
}

/// `len` bytes of test stream `seed`.
fn pattern(seed: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| pattern_byte(seed, i)).collect()
}

/// Block `i` of the big file: a fixed 1 MiB pattern with the block and page number stamped at the start
/// of every 4 KiB page, so that a block or page out of place is caught.
fn stamped_block(base: &[u8], i: usize) -> Vec<u8> {
    let mut block = base.to_vec();
    for (page, chunk) in block.chunks_mut(4096).enumerate() {
        chunk[..8].copy_from_slice(&((i << 16 | page) as u64).to_le_bytes());
    }
    block
}

#[test]
fn a_256_mib_file_round_trips_byte_for_byte() {
    const MIB: usize = 1 << 20;
    const BLOCKS: usize = 256;
    // Written in 1 MiB writes, read back in 64 KiB reads (read-ahead grows to 2 MiB per hop); every
    // byte is compared (slice equality, a memcmp, fast even in debug builds).
    on_both_flavors(Duration::from_secs(120), || async {
        let dir = TempDir::new("fs-big");
        let path = dir.join("big");
        let base = pattern(7, MIB);
        let mut file = File::create(&path).await.unwrap();
        for i in 0..BLOCKS {
            file.write_all(&stamped_block(&base, i)).await.unwrap();
        }
        file.close().await.unwrap();
        assert_eq!(
            fs::metadata(&path).await.unwrap().len(),
            (BLOCKS * MIB) as u64
        );

        let mut file = File::open(&path).await.unwrap();
        let mut piece = vec![0; 64 * 1024];
        for i in 0..BLOCKS {
            let expected = stamped_block(&base, i);
            for (k, want) in expected.chunks(piece.len()).enumerate() {
                file.read_exact(&mut piece).await.unwrap();
                assert!(piece == want, "block {i}, piece {k} differs");
            }
        }
        assert_eq!(
            file.read(&mut piece).await.unwrap(),
            0,
            "bytes past the end"
        );
    });
}

#[test]
fn whole_file_write_and_read_of_more_than_a_chunk() {
    // `fs::write` above `CHUNK_SIZE` goes through a `File`, chunk by chunk.
    on_both_flavors(TEST_LIMIT, || async {
        let dir = TempDir::new("fs-whole");
        let path = dir.join("whole");
        let data = pattern(9, 2 * fs::CHUNK_SIZE + 3);
        fs::write(&path, &data).await.unwrap();
        assert!(fs::read(&path).await.unwrap() == data);
        fs::write(&path, b"short").await.unwrap();
        assert_eq!(fs::read(&path).await.unwrap(), b"short", "not truncated");
        let e = fs::write(dir.join("no/such/dir"), &data).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().contains("no/such/dir"), "{e}");
    });
}

#[test]
fn a_hundred_files_written_concurrently() {
    on_both_flavors(TEST_LIMIT, || async {
        let dir = TempDir::new("fs-hundred");
        let tasks: Vec<_> = (0..100)
            .map(|n| {
                let path = dir.join(&format!("f{n}"));
                evloop::spawn(async move {
                    let data = pattern(n, 50_000 + n * 1_000);
                    let mut file = File::create(&path).await.unwrap();
                    // Several writes each, so that the writes of different files interleave.
                    for part in data.chunks(7_000) {
                        file.write_all(part).await.unwrap();
                    }
                    file.flush().await.unwrap();
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        for n in 0..100 {
            let got = fs::read(dir.join(&format!("f{n}"))).await.unwrap();
            assert!(got == pattern(n, 50_000 + n * 1_000), "file {n} differs");
        }
    });
}

#[test]
fn seek_and_read_agree_with_read_ahead() {
    on_both_flavors(TEST_LIMIT, || async {
        let dir = TempDir::new("fs-seek");
        let path = dir.join("seek");
        let data = pattern(3, 1 << 20);
        fs::write(&path, &data).await.unwrap();

        let mut file = File::options()
            .read(true)
            .write(true)
            .open(&path)
            .await
            .unwrap();
        let mut ten = [0; 10];
        file.read_exact(&mut ten).await.unwrap();
        file.read_exact(&mut ten).await.unwrap(); // served from the read-ahead buffer
        assert_eq!(ten, data[10..20]);
        assert_eq!(
            file.stream_position().await.unwrap(),
            20,
            "read-ahead leaks into the position"
        );
        assert_eq!(file.seek(SeekFrom::Current(1_000)).await.unwrap(), 1_020);
        file.read_exact(&mut ten).await.unwrap();
        assert_eq!(ten, data[1_020..1_030]);
        assert_eq!(file.seek(SeekFrom::Current(-30)).await.unwrap(), 1_000);
        file.read_exact(&mut ten).await.unwrap();
        assert_eq!(ten, data[1_000..1_010]);
        assert_eq!(file.seek(SeekFrom::End(-10)).await.unwrap(), (1 << 20) - 10);
        let mut tail = Vec::new();
        file.read_to_end(&mut tail).await.unwrap();
        assert_eq!(tail, data[data.len() - 10..]);
        assert_eq!(file.seek(SeekFrom::Start(5)).await.unwrap(), 5);
        file.read_exact(&mut ten).await.unwrap();
        assert_eq!(ten, data[5..15]);

        // A write after a read lands at the reader's position, not past the read-ahead.
        file.write_all(b"XYZ").await.unwrap();
        assert_eq!(file.stream_position().await.unwrap(), 18);
        file.read_exact(&mut ten).await.unwrap();
        assert_eq!(ten, data[18..28]);
        file.close().await.unwrap();
        let back = fs::read(&path).await.unwrap();
        assert_eq!(&back[15..18], b"XYZ");
        assert_eq!(back[..15], data[..15]);
        assert_eq!(back[18..], data[18..]);

        let err = file.seek(SeekFrom::Current(-1_000_000)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains(path.to_str().unwrap()), "{err}");
    });
}

#[test]
fn read_dir_lists_ten_thousand_entries() {
    with_deadline(Duration::from_secs(60), || {
        evloop::block_on(async {
            let dir = TempDir::new("fs-dir");
            for n in 0..10_000 {
                std::fs::File::create(dir.join(&format!("e{n}"))).unwrap();
            }
            std::fs::create_dir(dir.join("sub")).unwrap();
            let mut entries = fs::read_dir(dir.path()).await.unwrap();
            let mut names = HashSet::new();
            let mut dirs = 0;
            while let Some(entry) = entries.next().await {
                let entry = entry.unwrap();
                let name = entry.file_name().into_string().unwrap();
                assert_eq!(entry.path(), dir.join(&name));
                if entry.file_type().await.unwrap().is_dir() {
                    dirs += 1;
                }
                assert!(names.insert(name), "an entry came twice");
            }
            assert_eq!(names.len(), 10_001);
            assert_eq!(dirs, 1);
            assert!((0..10_000).all(|n| names.contains(&format!("e{n}"))));

            // `next_entry`, tokio's shape, and `DirEntry::metadata`.
            let mut entries = fs::read_dir(dir.path()).await.unwrap();
            let first = entries.next_entry().await.unwrap().unwrap();
            assert!(first.metadata().await.is_ok());
            let mut rest = 1;
            while entries.next_entry().await.unwrap().is_some() {
                rest += 1;
            }
            assert_eq!(rest, 10_001);
        })
    });
}

#[test]
fn errors_name_the_path() {
    util::block_on(async {
        let dir = TempDir::new("fs-errors");
        let missing = dir.join("no-such-file");
        let name = missing.to_str().unwrap().to_string();
        let check = |e: std::io::Error, kind: ErrorKind, name: &str| {
            assert_eq!(e.kind(), kind, "{e}");
            assert!(
                e.to_string().contains(&format!("`{name}`")),
                "no path in: {e}"
            );
            e
        };
        let e = check(
            fs::read(&missing).await.unwrap_err(),
            ErrorKind::NotFound,
            &name,
        );
        assert_eq!(
            os_code(&e),
            Some(libc::ENOENT),
            "the OS error is the source"
        );
        assert!(e.to_string().starts_with("could not read `"), "{e}");
        check(
            File::open(&missing).await.unwrap_err(),
            ErrorKind::NotFound,
            &name,
        );
        check(
            fs::metadata(&missing).await.unwrap_err(),
            ErrorKind::NotFound,
            &name,
        );
        check(
            fs::read_dir(&missing).await.unwrap_err(),
            ErrorKind::NotFound,
            &name,
        );
        check(
            fs::remove_file(&missing).await.unwrap_err(),
            ErrorKind::NotFound,
            &name,
        );
        check(
            fs::read_to_string(&missing).await.unwrap_err(),
            ErrorKind::NotFound,
            &name,
        );
        check(
            fs::canonicalize(&missing).await.unwrap_err(),
            ErrorKind::NotFound,
            &name,
        );
        let other = dir.join("elsewhere");
        let e = check(
            fs::rename(&missing, &other).await.unwrap_err(),
            ErrorKind::NotFound,
            &name,
        );
        assert!(
            e.to_string().contains(other.to_str().unwrap()),
            "both paths: {e}"
        );
        let e = check(
            fs::copy(&missing, &other).await.unwrap_err(),
            ErrorKind::NotFound,
            &name,
        );
        assert!(
            e.to_string().contains(other.to_str().unwrap()),
            "both paths: {e}"
        );
        assert!(!fs::try_exists(&missing).await.unwrap());

        fs::create_dir(dir.join("d")).await.unwrap();
        let d = dir.join("d");
        check(
            fs::create_dir(&d).await.unwrap_err(),
            ErrorKind::AlreadyExists,
            d.to_str().unwrap(),
        );
        let f = dir.join("f");
        fs::write(&f, "x").await.unwrap();
        let e = File::options()
            .write(true)
            .create_new(true)
            .open(&f)
            .await
            .unwrap_err();
        check(e, ErrorKind::AlreadyExists, f.to_str().unwrap());
        fs::write(&f, [0xff, 0xfe]).await.unwrap();
        check(
            fs::read_to_string(&f).await.unwrap_err(),
            ErrorKind::InvalidData,
            f.to_str().unwrap(),
        );
    });
}

#[test]
fn the_free_functions_do_what_std_does() {
    util::block_on(async {
        let dir = TempDir::new("fs-free");
        let a = dir.join("a");
        fs::write(&a, "hello").await.unwrap();
        assert_eq!(fs::read_to_string(&a).await.unwrap(), "hello");
        assert_eq!(fs::copy(&a, dir.join("b")).await.unwrap(), 5);
        fs::rename(dir.join("b"), dir.join("c")).await.unwrap();
        assert!(!fs::try_exists(dir.join("b")).await.unwrap());
        assert_eq!(fs::read(dir.join("c")).await.unwrap(), b"hello");
        fs::hard_link(&a, dir.join("h")).await.unwrap();
        assert_eq!(fs::metadata(&a).await.unwrap().nlink(), 2);
        fs::symlink(&a, dir.join("s")).await.unwrap();
        assert_eq!(fs::read_link(dir.join("s")).await.unwrap(), a);
        assert!(fs::symlink_metadata(dir.join("s"))
            .await
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(fs::metadata(dir.join("s")).await.unwrap().is_file());
        let canon = fs::canonicalize(dir.join("s")).await.unwrap();
        assert_eq!(canon, std::fs::canonicalize(&a).unwrap());
        fs::create_dir_all(dir.join("x/y/z")).await.unwrap();
        fs::remove_dir(dir.join("x/y/z")).await.unwrap();
        fs::remove_dir_all(dir.join("x")).await.unwrap();
        assert!(!fs::try_exists(dir.join("x")).await.unwrap());
        fs::remove_file(dir.join("c")).await.unwrap();
        assert!(!fs::try_exists(dir.join("c")).await.unwrap());

        let mut perm = fs::metadata(&a).await.unwrap().permissions();
        perm.set_readonly(true);
        fs::set_permissions(&a, perm).await.unwrap();
        assert!(fs::metadata(&a).await.unwrap().permissions().readonly());
    });
}

// `Metadata::nlink` is unix-only, like the rest of evloop.
use std::os::unix::fs::MetadataExt;

#[test]
fn a_file_dropped_mid_write_keeps_all_its_bytes() {
    on_both_flavors(TEST_LIMIT, || async {
        let dir = TempDir::new("fs-drop");
        let path = dir.join("dropped");
        let data = pattern(11, 9 << 20);
        let mut file = File::create(&path).await.unwrap();
        // 9 MiB is five chunks: `write_all` returns as soon as the last is handed to the pool.
        file.write_all(&data).await.unwrap();
        drop(file);
        // The last chunk is written by the pool after the drop.
        assert_written_after_drop(&path, &data);
    });
}

/// Waits (bounded) until the file a dropped `File` was writing reaches `expected`'s length, its pool job
/// having finished the writes after the drop, then compares the bytes.
fn assert_written_after_drop(path: &std::path::Path, expected: &[u8]) {
    let start = Instant::now();
    while std::fs::metadata(path).unwrap().len() < expected.len() as u64 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "bytes were lost with the dropped file {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut back = Vec::new();
    std::fs::File::open(path)
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
    assert!(
        back == expected,
        "the bytes on disk differ from those written"
    );
}

#[test]
fn small_writes_queued_behind_the_one_in_flight_keep_their_order() {
    on_both_flavors(TEST_LIMIT, || async {
        let dir = TempDir::new("fs-queue");
        // Odd sizes, so that pieces straddle the queue's limit and the chunk size.
        let sizes = [1, 4093, 65_536, 7, 300_001, 12_289];
        let mut expected = Vec::new();
        let path = dir.join("pieces");
        let mut file = File::create(&path).await.unwrap();
        for i in 0..400 {
            let piece = pattern(i, sizes[i % sizes.len()]);
            file.write_all(&piece).await.unwrap();
            expected.extend_from_slice(&piece);
        }
        file.close().await.unwrap();
        assert!(
            expected.len() > 3 * fs::CHUNK_SIZE,
            "the test must outrun the queue"
        );
        let back = fs::read(&path).await.unwrap();
        assert_eq!(back.len(), expected.len());
        assert!(
            back == expected,
            "the pieces came back out of order or changed"
        );

        // Dropped with pieces still queued: the pool writes them all.
        let path = dir.join("dropped-pieces");
        let mut file = File::create(&path).await.unwrap();
        for piece in expected.chunks(65_536) {
            file.write_all(piece).await.unwrap();
        }
        drop(file);
        assert_written_after_drop(&path, &expected);
    });
}

/// Writing to /dev/full fails with ENOSPC. Linux-only: macOS and OpenBSD have no /dev/full (FreeBSD and
/// NetBSD have one).
#[cfg(target_os = "linux")]
#[test]
fn flush_and_the_next_write_report_a_failed_write() {
    on_both_flavors(TEST_LIMIT, || async {
        let mut full = File::options().write(true).open("/dev/full").await.unwrap();
        // The write returns once its bytes are buffered: its failure comes with the flush.
        assert_eq!(full.write(b"lost?").await.unwrap(), 5);
        let e = full.flush().await.unwrap_err();
        assert_eq!(os_code(&e), Some(libc::ENOSPC), "{e}");
        assert!(e.to_string().contains("`/dev/full`"), "{e}");
        assert!(e.to_string().starts_with("could not write to"), "{e}");
        full.flush().await.unwrap(); // reported once

        // Without a flush, a later operation reports it: the next write, unless that write was queued
        // behind the failing one (then its bytes are dropped with it and the flush reports it), or a sync.
        full.write_all(b"again").await.unwrap();
        let e = match full.write_all(b"and again").await {
            Err(e) => e,
            Ok(()) => full.flush().await.unwrap_err(),
        };
        assert_eq!(os_code(&e), Some(libc::ENOSPC), "{e}");
        full.flush().await.unwrap(); // reported once, for both writes
        full.write_all(b"once more").await.unwrap();
        let e = full.sync_all().await.unwrap_err();
        assert_eq!(os_code(&e), Some(libc::ENOSPC), "{e}");
        full.write_all(b"closing").await.unwrap();
        assert_eq!(
            os_code(&full.close().await.unwrap_err()),
            Some(libc::ENOSPC)
        );
    });
}

#[test]
fn into_std_set_len_and_metadata_see_the_logical_position() {
    on_both_flavors(TEST_LIMIT, || async {
        let dir = TempDir::new("fs-std");
        let path = dir.join("f");
        let data = pattern(5, 300_000);
        fs::write(&path, &data).await.unwrap();

        let mut file = File::options()
            .read(true)
            .write(true)
            .open(&path)
            .await
            .unwrap();
        let mut ten = [0; 10];
        file.read_exact(&mut ten).await.unwrap();
        file.read_exact(&mut ten).await.unwrap();
        // Read-ahead is buffered: `try_into_std` cannot hand the file over without a seek.
        let file = file.try_into_std().unwrap_err();
        let mut std = file.into_std().await;
        assert_eq!(std.stream_position().unwrap(), 20);
        std.seek(SeekFrom::Start(100)).unwrap();

        let mut file = File::from_std(std);
        file.read_exact(&mut ten).await.unwrap();
        assert_eq!(ten, data[100..110]);
        file.set_len(105).await.unwrap();
        assert_eq!(file.metadata().await.unwrap().len(), 105);
        let mut rest = Vec::new();
        file.read_to_end(&mut rest).await.unwrap();
        assert!(
            rest.is_empty(),
            "read-ahead survived set_len: {} bytes",
            rest.len()
        );
        file.write_all(b"tail").await.unwrap();
        file.sync_data().await.unwrap();
        assert_eq!(file.metadata().await.unwrap().len(), 114);
        let std = file.try_into_std().expect("idle, nothing buffered");
        drop(std);
        let back = fs::read(&path).await.unwrap();
        assert_eq!(back[..105], data[..105]);
        assert_eq!(&back[105..110], &[0; 5], "the hole set_len left");
        assert_eq!(&back[110..], b"tail");
    });
}

#[test]
fn files_work_outside_any_runtime() {
    // The blocking pool is process-wide and its handles wake any executor's tasks.
    with_deadline(TEST_LIMIT, || {
        futures::executor::block_on(async {
            let dir = TempDir::new("fs-outside");
            let path = dir.join("f");
            let mut file = File::create(&path).await.unwrap();
            file.write_all(b"no runtime").await.unwrap();
            file.close().await.unwrap();
            assert_eq!(fs::read(&path).await.unwrap(), b"no runtime");
        })
    });
}

/// Reads of a file evicted from the page cache go to the pool (with read-ahead), reads of cached parts
/// are served on the spot (`RWF_NOWAIT`); mixed, they must still give every byte in order.
/// Linux-only: `posix_fadvise(DONTNEED)` is how the test evicts the file, and the cached-read path is
/// Linux's.
#[cfg(target_os = "linux")]
#[test]
fn reads_of_an_uncached_file_mix_both_paths() {
    use std::os::fd::AsRawFd;
    on_both_flavors(TEST_LIMIT, || async {
        let dir = TempDir::new("fs-cold");
        let path = dir.join("cold");
        let data = pattern(13, 8 << 20);
        fs::write(&path, &data).await.unwrap();
        let std = std::fs::File::open(&path).unwrap();
        std.sync_all().unwrap();
        // SAFETY: a plain advice call on a descriptor this test owns.
        let rc = unsafe { libc::posix_fadvise(std.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(
            rc,
            0,
            "posix_fadvise: {}",
            std::io::Error::from_raw_os_error(rc)
        );
        // Bring back one stretch in the middle, so the reader meets cached and uncached parts.
        let mut middle = vec![0; 1 << 20];
        (&std).seek(SeekFrom::Start(3 << 20)).unwrap();
        (&std).read_exact(&mut middle).unwrap();

        let mut file = File::open(&path).await.unwrap();
        let mut got = Vec::with_capacity(data.len());
        let mut piece = vec![0; 48 * 1024];
        loop {
            match file.read(&mut piece).await.unwrap() {
                0 => break,
                n => got.extend_from_slice(&piece[..n]),
            }
        }
        assert_eq!(got.len(), data.len());
        assert!(got == data, "the bytes read differ from those written");
    });
}

/// Cached reads never wait, so they spend the thread's I/O budget: a task reading a cached file end to
/// end still lets the other tasks on its thread run. Linux-only: elsewhere every read goes to the pool
/// (and waits for it).
#[cfg(target_os = "linux")]
#[test]
fn a_task_reading_a_cached_file_lets_others_run() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    util::block_on(async {
        let dir = TempDir::new("fs-coop");
        let path = dir.join("cached");
        fs::write(&path, pattern(17, 16 << 20)).await.unwrap();
        let ticks = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let ticker = {
            let (ticks, done) = (ticks.clone(), done.clone());
            evloop::spawn(async move {
                while !done.load(Ordering::Relaxed) {
                    ticks.fetch_add(1, Ordering::Relaxed);
                    evloop::task::yield_now().await;
                }
            })
        };
        let mut file = File::open(&path).await.unwrap();
        let mut piece = vec![0; 4096];
        file.read_exact(&mut piece).await.unwrap(); // the first read goes to the pool
        let before = ticks.load(Ordering::Relaxed);
        // To the last byte but not past it: the read that finds the end goes to the pool, and waiting
        // for it would give the ticker a turn anyway.
        for _ in 1..(16 << 20) / piece.len() {
            file.read_exact(&mut piece).await.unwrap();
        }
        let during = ticks.load(Ordering::Relaxed) - before;
        done.store(true, Ordering::Relaxed);
        ticker.await.unwrap();
        // 16 MiB in 4 KiB reads is about 4,000 reads; almost all are served from the read-ahead buffer
        // or the page cache without waiting, so only the budget gives the ticker a turn.
        assert!(during > 0, "the reader kept the thread for the whole file");
    });
}
