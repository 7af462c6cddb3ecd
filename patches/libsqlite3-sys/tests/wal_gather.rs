//! Our change to SQLite (`../libsqlite3-sys-wal-gather.diff`): a transaction's frames reach the
//! write-ahead log in one write per run of up to 32 frames, where the release writes each frame's
//! header and page separately (two writes a page). These tests count the writes, and check that
//! every commit is whole for another connection and in a copy of the files as a crash leaves
//! them: through commits of many sizes, a transaction that spills its cache into the log before
//! it commits (and then rewrites frames it spilled), and a log that starts again from its head.

use libsqlite3_sys as ffi;
use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};

/// One connection, closed on drop.
struct Db(*mut ffi::sqlite3);

impl Db {
    fn open(path: &Path) -> Db {
        let name = CString::new(path.to_str().unwrap()).unwrap();
        let mut db = std::ptr::null_mut();
        let rc = unsafe { ffi::sqlite3_open(name.as_ptr(), &mut db) };
        assert_eq!(rc, ffi::SQLITE_OK, "open {}", path.display());
        Db(db)
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
            let value = CStr::from_ptr(ffi::sqlite3_column_text(stmt, 0).cast()).to_string_lossy().into_owned();
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

/// A database in write-ahead-log mode with 1 KiB pages (the embedded store's), that never
/// checkpoints by itself, and a table whose rows fill a page each.
fn database(dir: &Path) -> Db {
    let db = Db::open(&dir.join("t.db"));
    db.exec(
        "PRAGMA page_size = 1024; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         PRAGMA wal_autocheckpoint = 0; CREATE TABLE t (batch INTEGER NOT NULL, body BLOB NOT NULL);",
    );
    db
}

/// Commits `rows` rows of batch `batch`, one page each.
fn commit(db: &Db, batch: u32, rows: u32) {
    db.exec(&format!(
        "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
         INSERT INTO t SELECT {batch}, randomblob(800) FROM n; COMMIT;"
    ));
}

/// Write system calls (`write`, `pwrite64`, ...) made by this thread so far.
fn writes_by_this_thread() -> u64 {
    let io = std::fs::read_to_string("/proc/thread-self/io").expect("Linux's per-thread I/O counts");
    let line = io.lines().find(|l| l.starts_with("syscw:")).expect("a syscw line");
    line["syscw:".len()..].trim().parse().unwrap()
}

/// What each batch holds, as `batch:rows` pairs in order, in the database at `path`.
fn batches(db: &Db) -> String {
    db.text("SELECT coalesce(group_concat(batch || ':' || n, ' '), '') FROM (SELECT batch, count(*) AS n FROM t GROUP BY batch ORDER BY batch)")
}

/// Copies the database and its log as they are on disk now, without the shared-memory index, so
/// that opening the copy rebuilds the index from the log's frames and their checksums alone.
fn copy_as_a_crash_leaves_it(dir: &Path, into: &Path) -> PathBuf {
    std::fs::create_dir_all(into).unwrap();
    for file in ["t.db", "t.db-wal"] {
        let _ = std::fs::remove_file(into.join(file));
        std::fs::copy(dir.join(file), into.join(file)).unwrap();
    }
    let _ = std::fs::remove_file(into.join("t.db-shm"));
    into.join("t.db")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wal-gather-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_commit_takes_one_write_per_run_of_32_frames_not_two_per_page() {
    let dir = scratch("writes");
    let db = database(&dir);
    commit(&db, 0, 1); // the log's header is written with the first commit

    for (rows, at_most) in [(1, 1), (5, 1), (100, 5)] {
        let before = writes_by_this_thread();
        commit(&db, rows, rows);
        let writes = writes_by_this_thread() - before;
        // The release makes two writes per frame: 2 for one row, over 200 for a hundred.
        assert!(
            writes <= at_most,
            "a commit of {rows} rows (and their table's pages) took {writes} writes, at most {at_most} expected"
        );
    }
    drop(db);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_commit_is_whole_for_a_reader_and_in_the_files_a_crash_leaves() {
    let dir = scratch("whole");
    let db = database(&dir);
    let reader = Db::open(&dir.join("t.db"));
    let mut expected = Vec::new();
    // Around the 32 frames one write gathers, and a log started again from its head halfway.
    for (batch, rows) in [1, 2, 30, 31, 32, 33, 64, 100, 7].into_iter().enumerate() {
        let batch = batch as u32 + 1;
        if batch == 6 {
            db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
        }
        commit(&db, batch, rows);
        expected.push(format!("{batch}:{rows}"));
        let expected = expected.join(" ");
        assert_eq!(batches(&reader), expected, "another connection sees commit {batch} whole");
        let copy = Db::open(&copy_as_a_crash_leaves_it(&dir, &dir.join("copy")));
        assert_eq!(copy.text("PRAGMA integrity_check"), "ok");
        assert_eq!(batches(&copy), expected, "the files on disk hold commit {batch} whole");
    }
    drop((db, reader));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_transaction_that_spills_into_the_log_before_its_commit_is_whole_after_it() {
    let dir = scratch("spill");
    let db = database(&dir);
    commit(&db, 1, 3);
    let log_size = || std::fs::metadata(dir.join("t.db-wal")).unwrap().len();
    let committed = log_size();
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
    assert!(log_size() > committed + 100 * 1024, "the open transaction spilled into the log");
    let uncommitted = Db::open(&copy_as_a_crash_leaves_it(&dir, &dir.join("before")));
    assert_eq!(batches(&uncommitted), "1:3", "spilled frames of an open transaction are not committed");
    db.exec("COMMIT");
    let copy = Db::open(&copy_as_a_crash_leaves_it(&dir, &dir.join("after")));
    assert_eq!(copy.text("PRAGMA integrity_check"), "ok");
    assert_eq!(batches(&copy), "1:3 2:300 3:30");
    drop((db, uncommitted, copy));
    std::fs::remove_dir_all(&dir).unwrap();
}
