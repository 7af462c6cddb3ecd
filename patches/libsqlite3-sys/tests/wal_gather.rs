//! Our change to SQLite (`../libsqlite3-sys-wal-gather.diff`): a transaction's frames reach the
//! write-ahead log in one write per run of up to 32 frames (and 64 KiB), where the release writes
//! each frame's header and page separately (two writes a page). These tests count the writes,
//! and check that every commit is whole for another connection and in a copy of the files taken
//! after it, and that a log cut off anywhere inside a commit (as a crash while it was written
//! leaves it) recovers to the state before that commit: through commits of many sizes, several
//! page sizes, `synchronous=FULL` with its padding frames, a transaction that spills its cache
//! into the log before it commits (and then rewrites frames it spilled), and a log started again
//! from its head.

use libsqlite3_sys as ffi;
use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};

/// One connection, closed on drop.
struct Db(*mut ffi::sqlite3);

impl Db {
    /// Opens `uri` (a `file:` URI, so that options such as `psow` can be given).
    fn open(uri: &str) -> Db {
        let name = CString::new(uri).unwrap();
        let flags = ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE | ffi::SQLITE_OPEN_URI;
        let mut db = std::ptr::null_mut();
        let rc = unsafe { ffi::sqlite3_open_v2(name.as_ptr(), &mut db, flags, std::ptr::null()) };
        assert_eq!(rc, ffi::SQLITE_OK, "open {uri}");
        Db(db)
    }

    fn open_file(path: &Path) -> Db {
        Db::open(&format!("file:{}", path.display()))
    }

    fn exec(&self, sql: &str) {
        let sql = CString::new(sql).unwrap();
        let mut error = std::ptr::null_mut();
        let rc = unsafe { ffi::sqlite3_exec(self.0, sql.as_ptr(), None, std::ptr::null_mut(), &mut error) };
        if rc != ffi::SQLITE_OK {
            let message = unsafe { CStr::from_ptr(error) }.to_string_lossy().into_owned();
            unsafe { ffi::sqlite3_free(error.cast()) };
            panic!("{sql:?}: {message}");
        }
    }

    /// The first column of the first row of `sql`, as text.
    fn text(&self, sql: &str) -> String {
        let sql = CString::new(sql).unwrap();
        let mut stmt = std::ptr::null_mut();
        unsafe {
            assert_eq!(ffi::sqlite3_prepare_v2(self.0, sql.as_ptr(), -1, &mut stmt, std::ptr::null_mut()), 0);
            assert_eq!(ffi::sqlite3_step(stmt), ffi::SQLITE_ROW, "{sql:?} gave no row");
            let value =
                CStr::from_ptr(ffi::sqlite3_column_text(stmt, 0).cast()).to_string_lossy().into_owned();
            ffi::sqlite3_finalize(stmt);
            value
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        unsafe { ffi::sqlite3_close(self.0) };
    }
}

/// How a database is set up: its page size, and `synchronous=FULL` on a file system that is not
/// assumed power-safe (`psow=0`), which makes a commit pad its last frame to a sector boundary.
#[derive(Clone, Copy, Debug)]
struct Setup {
    page_size: u32,
    full_sync: bool,
}

/// The embedded store's setup: 1 KiB pages, `synchronous=NORMAL`.
const STORE: Setup = Setup { page_size: 1024, full_sync: false };

/// A database in write-ahead-log mode that never checkpoints by itself, with a table for rows
/// of three quarters of a page each.
fn database(dir: &Path, setup: Setup) -> Db {
    let psow = if setup.full_sync { "?psow=0" } else { "" };
    let db = Db::open(&format!("file:{}{psow}", dir.join("t.db").display()));
    let sync = if setup.full_sync { "FULL" } else { "NORMAL" };
    db.exec(&format!(
        "PRAGMA page_size = {}; PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync};
         PRAGMA wal_autocheckpoint = 0; CREATE TABLE t (batch INTEGER NOT NULL, body BLOB NOT NULL);",
        setup.page_size
    ));
    db
}

/// Commits `rows` rows of batch `batch`.
fn commit(db: &Db, setup: Setup, batch: u32, rows: u32) {
    db.exec(&format!(
        "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
         INSERT INTO t SELECT {batch}, randomblob({}) FROM n; COMMIT;",
        setup.page_size * 3 / 4
    ));
}

/// What each batch holds, as `batch:rows` pairs in order.
fn batches(db: &Db) -> String {
    db.text(
        "SELECT coalesce(group_concat(batch || ':' || n, ' '), '')
         FROM (SELECT batch, count(*) AS n FROM t GROUP BY batch ORDER BY batch)",
    )
}

/// Copies the database and the first `log_bytes` of its log (all of it with `None`) as they are
/// on disk now, without the shared-memory index, so that opening the copy rebuilds the index
/// from the log's frames and their checksums alone, as after a crash.
fn copy_as_a_crash_leaves_it(dir: &Path, into: &Path, log_bytes: Option<u64>) -> Db {
    std::fs::create_dir_all(into).unwrap();
    for file in ["t.db", "t.db-wal", "t.db-shm"] {
        let _ = std::fs::remove_file(into.join(file));
    }
    std::fs::copy(dir.join("t.db"), into.join("t.db")).unwrap();
    let mut log = std::fs::read(dir.join("t.db-wal")).unwrap();
    if let Some(n) = log_bytes {
        log.truncate(n as usize);
    }
    std::fs::write(into.join("t.db-wal"), log).unwrap();
    Db::open_file(&into.join("t.db"))
}

fn log_size(dir: &Path) -> u64 {
    std::fs::metadata(dir.join("t.db-wal")).unwrap().len()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wal-gather-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Write system calls (`write`, `pwrite64`, ...) made by this thread so far.
#[cfg(target_os = "linux")]
fn writes_by_this_thread() -> u64 {
    let io = std::fs::read_to_string("/proc/thread-self/io").expect("Linux's per-thread I/O counts");
    let line = io.lines().find(|l| l.starts_with("syscw:")).expect("a syscw line");
    line["syscw:".len()..].trim().parse().unwrap()
}

#[cfg(target_os = "linux")]
#[test]
fn a_commit_takes_one_write_per_run_of_32_frames_not_two_per_page() {
    let dir = scratch("writes");
    let db = database(&dir, STORE);
    commit(&db, STORE, 0, 1); // the log's header is written with the first commit

    for (rows, at_most) in [(1, 1), (5, 1), (100, 5)] {
        let before = writes_by_this_thread();
        commit(&db, STORE, rows, rows);
        let writes = writes_by_this_thread() - before;
        // The release makes two writes per frame: 8 for one row, over 200 for a hundred.
        assert!(
            writes <= at_most,
            "a commit of {rows} rows (and their table's pages) took {writes} writes, at most {at_most} expected"
        );
    }
    drop(db);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_commit_is_whole_for_a_reader_and_in_the_files_it_leaves() {
    let setups =
        [STORE, Setup { page_size: 4096, full_sync: true }, Setup { page_size: 65536, full_sync: false }];
    for setup in setups {
        let dir = scratch(&format!("whole-{}", setup.page_size));
        let db = database(&dir, setup);
        let reader = Db::open_file(&dir.join("t.db"));
        let mut expected = Vec::new();
        // Around the 32 frames one write gathers, and a log started again from its head halfway.
        for (batch, rows) in [1, 2, 30, 31, 32, 33, 64, 100, 7].into_iter().enumerate() {
            let batch = batch as u32 + 1;
            if batch == 6 {
                assert_eq!(db.text("PRAGMA wal_checkpoint(TRUNCATE)"), "0", "the checkpoint was not blocked");
                assert_eq!(log_size(&dir), 0, "the log starts again from its head");
            }
            commit(&db, setup, batch, rows);
            expected.push(format!("{batch}:{rows}"));
            let expected = expected.join(" ");
            assert_eq!(batches(&reader), expected, "{setup:?}: another connection sees commit {batch} whole");
            let copy = copy_as_a_crash_leaves_it(&dir, &dir.join("copy"), None);
            assert_eq!(copy.text("PRAGMA integrity_check"), "ok", "{setup:?}");
            assert_eq!(batches(&copy), expected, "{setup:?}: the files hold commit {batch} whole");
        }
        drop((db, reader));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn a_log_cut_off_anywhere_inside_a_commit_recovers_to_the_state_before_it() {
    let dir = scratch("cut");
    let db = database(&dir, STORE);
    commit(&db, STORE, 1, 10);
    let before = log_size(&dir);
    // Forty rows and their table's pages: more frames than one write gathers.
    commit(&db, STORE, 2, 40);
    let after = log_size(&dir);
    let frame = u64::from(STORE.page_size) + 24;
    assert!(after - before > 32 * frame, "the commit spans two gathered writes");

    let mut cuts = Vec::new();
    let mut at = before;
    while at < after {
        cuts.extend([at, at + 10, at + 24 + 500]); // at a frame, in its header, in its page
        at += frame;
    }
    for cut in cuts.into_iter().filter(|&c| c < after) {
        let copy = copy_as_a_crash_leaves_it(&dir, &dir.join("cut"), Some(cut));
        assert_eq!(batches(&copy), "1:10", "a log cut at byte {cut} of {after} holds only the first commit");
        assert_eq!(copy.text("PRAGMA integrity_check"), "ok");
    }
    let copy = copy_as_a_crash_leaves_it(&dir, &dir.join("cut"), Some(after));
    assert_eq!(batches(&copy), "1:10 2:40");
    drop((db, copy));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_transaction_that_spills_into_the_log_before_its_commit_is_whole_after_it() {
    let dir = scratch("spill");
    let db = database(&dir, STORE);
    commit(&db, STORE, 1, 3);
    let committed = log_size(&dir);
    // A cache of 20 pages makes the transaction write frames before its commit, then write some
    // of those pages again (SQLite rewrites their frames and their checksums at the commit).
    db.exec("PRAGMA cache_size = 20");
    db.exec(
        "BEGIN;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
         INSERT INTO t SELECT 2, randomblob(800) FROM n;
         UPDATE t SET body = randomblob(800) WHERE batch = 2 AND rowid % 3 = 0;
         INSERT INTO t SELECT 3, randomblob(800) FROM t WHERE batch = 2 AND rowid % 10 = 0;",
    );
    assert!(log_size(&dir) > committed + 100 * 1024, "the open transaction spilled into the log");
    let uncommitted = copy_as_a_crash_leaves_it(&dir, &dir.join("before"), None);
    assert_eq!(batches(&uncommitted), "1:3", "spilled frames of an open transaction are not committed");
    db.exec("COMMIT");
    let copy = copy_as_a_crash_leaves_it(&dir, &dir.join("after"), None);
    assert_eq!(copy.text("PRAGMA integrity_check"), "ok");
    assert_eq!(batches(&copy), "1:3 2:300 3:30");
    drop((db, uncommitted, copy));
    std::fs::remove_dir_all(&dir).unwrap();
}
