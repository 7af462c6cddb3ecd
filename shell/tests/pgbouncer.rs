//! The PostgreSQL store through PgBouncer in transaction pooling mode, as Supabase's transaction
//! pooler runs it: consecutive statements land on different server connections, so anything that
//! relies on prepared statements surviving between transactions fails here.
//!
//! Needs `pgbouncer` on the PATH (Debian's package; `.ci/run` installs it). Without it the test
//! skips loudly, or fails with `ALICE_REQUIRE_SERVICES=1`.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use alice_core::{HistoryQuery, Millis, ReaderEvent};
use alice_shell::store::postgres::{PgSettings, PgStore};
use alice_shell::store::{EventStore, Session};
use common::*;

struct Bouncer {
    child: Child,
    _dir: tempfile::TempDir,
    port: u16,
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_bouncer(db: &str) -> Option<Bouncer> {
    if Command::new("pgbouncer").arg("--version").output().is_err() {
        assert!(!require_services(), "pgbouncer is required (apt-get install pgbouncer)");
        eprintln!("\n*** SKIPPED: pgbouncer is not installed; the transaction-pooler test did not run ***\n");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let ini = dir.path().join("pgbouncer.ini");
    let users = dir.path().join("users.txt");
    std::fs::write(&users, "\"root\" \"\"\n").unwrap();
    std::fs::write(
        &ini,
        format!(
            "[databases]\n{db} = host=127.0.0.1 port=5432 dbname={db} user=root\n\n\
             [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nauth_type = trust\n\
             auth_file = {}\npool_mode = transaction\ndefault_pool_size = 3\n\
             unix_socket_dir =\nlogfile = {}\n",
            users.display(),
            dir.path().join("pgbouncer.log").display()
        ),
    )
    .unwrap();
    // PgBouncer will not run as root; it drops to the postgres user the server package made.
    let mut perms = std::fs::metadata(dir.path()).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o777);
    std::fs::set_permissions(dir.path(), perms).unwrap();
    let child =
        Command::new("pgbouncer").arg("-u").arg("postgres").arg(&ini).stdout(Stdio::null()).spawn().unwrap();
    // From here the guard kills and reaps the process, whatever happens.
    let bouncer = Bouncer { child, _dir: dir, port };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(bouncer);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("pgbouncer did not start");
}

fn event(n: u64) -> Arc<ReaderEvent> {
    let mut ids = alice_core::ids::EventIds::default();
    let mut rng = <rand_chacha::ChaCha8Rng as rand_core::SeedableRng>::seed_from_u64(n);
    let ms = 1_767_225_600_000 + n;
    Arc::new(ReaderEvent {
        id: ids.next(Millis(ms), &mut rng),
        user_id: Arc::from(format!("user-{}", n % 3)),
        event_type: if n.is_multiple_of(2) { "PAGE_TURN".into() } else { "LOOKUP".into() },
        data: alice_core::replies::Json::from_text(format!(r#"{{"n":{n}}}"#)).unwrap(),
        reading: Default::default(),
        timestamp: Millis(ms),
        session_id: "s".into(),
        position: alice_core::LogPosition { ms, seq: 0 },
        sent_from: Default::default(),
    })
}

#[tokio::test]
async fn the_store_works_through_a_transaction_pooler() {
    let Some(db) = TestDb::create().await else { return };
    let Some(bouncer) = start_bouncer(&db.name) else {
        db.drop_db().await;
        return;
    };
    // Migrations apply directly first, then again through the pooler: there they find nothing to
    // do, but still take and release their advisory lock.
    let direct =
        PgStore::connect(&PgSettings { url: db.url.clone(), pool_size: 2, timeout: Duration::from_secs(5) })
            .unwrap();
    direct.migrate().await.unwrap();

    let pooled_url = format!("postgres://root@127.0.0.1:{}/{}", bouncer.port, db.name);
    let pooled =
        PgStore::connect(&PgSettings { url: pooled_url, pool_size: 6, timeout: Duration::from_secs(5) })
            .unwrap();
    pooled.migrate().await.unwrap();
    let store = pooled.inspect().await.unwrap();
    // Many statements of the same shapes over more client connections than server connections.
    let mut tasks = Vec::new();
    let store = Arc::new(store);
    for n in 0..12u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.insert(&[event(n * 10), event(n * 10 + 1)]).await.unwrap();
            let q = HistoryQuery {
                limit: 5,
                user_id: Some(format!("user-{}", n % 3)),
                since: None,
                event_types: vec![],
                readers: None,
            };
            store.recent(&q).await.unwrap();
            store.dashboard(Millis(0)).await.unwrap();
            let s = Session { user_id: format!("user-{n}"), session_id: format!("sid-{n}"), at: Millis(1) };
            store.session_opened(&s).await.unwrap();
            store.session_closed(&s).await.unwrap();
            store.ping().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let q = HistoryQuery { limit: 200, user_id: None, since: None, event_types: vec![], readers: None };
    let (all, more) = store.recent(&q).await.unwrap();
    assert_eq!((all.len(), more), (24, false));
    let rows = store.dashboard(Millis(0)).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.event_count).sum::<i64>(), 24);
    drop(bouncer);
    db.drop_db().await;
}
