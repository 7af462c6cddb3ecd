//! Criterion benchmark of the embedded store's commit. On a single node every event is
//! acknowledged once the SQLite commit that holds it returns, and at a light load a commit holds
//! one event: this measures that commit, with and without a client key (`clientEventId`), in a
//! file that grows as it runs. The store starts a checkpoint every 1,000 commits, as it does in
//! the server; it runs on another thread, so the commits measured share the file with it but do
//! not include its cost. Making each entry (a few small strings, its JSON) is inside the timing.

use std::sync::Arc;

use alice_core::replies::Json;
use alice_core::{ConnId, LogEntry, LogPosition, Millis, ReaderEvent, ReadingPosition};
use alice_shell::store::sqlite::SqliteStore;
use alice_shell::store::EventStore;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const START_MS: u64 = 1_767_225_600_000;
const TYPES: [&str; 3] = ["PAGE_TURN", "WORD_LOOKUP", "HELP_REQUEST"];

/// The `n`th event of 500 readers, one a millisecond, as the load generator sends them.
fn entry(n: u64, keyed: bool) -> Arc<LogEntry> {
    let at = START_MS + n;
    let user = format!("reader-{:03}", n % 500);
    let data = Json::from_text(format!(r#"{{"bookId":"book-{}","page":{},"seq":{n}}}"#, n % 40, n % 300))
        .expect("valid JSON");
    let event = ReaderEvent {
        id: uuid::Uuid::from_u128(u128::from(at) << 80 | 0x7000_8000_0000_0000_0000 | u128::from(n)),
        user_id: Arc::from(user.as_str()),
        event_type: TYPES[(n % 3) as usize].into(),
        reading: ReadingPosition::of_json(&data),
        data,
        timestamp: Millis(at),
        session_id: format!("session-{}", n % 500),
        position: LogPosition { ms: at, seq: 0 },
        sent_from: Default::default(),
    };
    Arc::new(LogEntry {
        event: Arc::new(event),
        origin: Arc::from("bench"),
        incarnation: 1,
        seq: n,
        sender: ConnId(n % 500),
        key: keyed.then(|| Arc::from(format!("client-{n}").as_str())),
    })
}

fn one_event_commits(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let dir = tempfile::tempdir().expect("a scratch directory");
    let store = runtime.block_on(SqliteStore::open(None, dir.path())).expect("the embedded store");
    let mut n = 0;
    let mut g = c.benchmark_group("sqlite-append");
    g.throughput(Throughput::Elements(1));
    for (name, keyed) in [("one event per commit", false), ("one keyed event per commit", true)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                n += 1;
                runtime.block_on(store.append(&[entry(n, keyed)], 60_000)).expect("a commit")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, one_event_commits);
criterion_main!(benches);
