//! loom explores every interleaving of these threads (run with `--cfg loom`; see the crate docs).
#![cfg(loom)]

use alice_handoff::{Counter, Gate, Ids, Snapshot};
use loom::sync::Arc;
use loom::thread;

#[test]
fn concurrent_handshakes_get_distinct_socket_numbers() {
    loom::model(|| {
        let ids = Arc::new(Ids::starting_at(1));
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let ids = ids.clone();
                thread::spawn(move || ids.next())
            })
            .collect();
        let mut got: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        got.sort();
        assert_eq!(got, vec![1, 2, 3]);
        assert_eq!(ids.next(), 4);
    });
}

#[test]
fn only_one_concurrent_caller_refetches() {
    loom::model(|| {
        let gate = Arc::new(Gate::new(30_000));
        let handles: Vec<_> = (0..3)
            .map(|i| {
                let gate = gate.clone();
                // Callers arrive within the same interval, in any order.
                thread::spawn(move || gate.try_claim(100 + i))
            })
            .collect();
        let winners = handles.into_iter().map(|h| h.join().unwrap()).filter(|w| *w).count();
        assert_eq!(winners, 1);
        assert!(!gate.try_claim(200));
        assert!(gate.try_claim(40_000), "the next interval opens the gate again");
    });
}

#[test]
fn counters_lose_no_increment() {
    loom::model(|| {
        let c = Arc::new(Counter::default());
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let c = c.clone();
                thread::spawn(move || {
                    c.add(1);
                    c.add(2);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(c.get(), 6);
    });
}

#[test]
fn a_key_set_being_replaced_is_read_whole_and_its_replacement_seen_after() {
    loom::model(|| {
        // Two keys that a refetch replaces together (a rotation): a handshake reading meanwhile
        // sees both old or both new, never one of each.
        let keys = Arc::new(Snapshot::new(("old-a", "old-b")));
        let refetch = {
            let keys = keys.clone();
            thread::spawn(move || keys.publish(("new-a", "new-b")))
        };
        let handshake = {
            let keys = keys.clone();
            thread::spawn(move || *keys.load())
        };
        let seen = handshake.join().unwrap();
        assert!(seen == ("old-a", "old-b") || seen == ("new-a", "new-b"), "{seen:?}");
        refetch.join().unwrap();
        assert_eq!(*keys.load(), ("new-a", "new-b"), "once published, every later read sees it");
    });
}

#[test]
fn a_refetch_under_its_turn_happens_once_for_callers_who_arrive_together() {
    loom::model(|| {
        // As `Jwks::key` does: look, take the turn, look again, claim the gate, fetch, publish.
        let keys = Arc::new(Snapshot::new(Vec::<&str>::new()));
        let turn = Arc::new(loom::sync::Mutex::new(()));
        let gate = Arc::new(Gate::new(30_000));
        let fetches = Arc::new(Counter::default());
        let callers: Vec<_> = (0..2)
            .map(|_| {
                let (keys, turn, gate, fetches) = (keys.clone(), turn.clone(), gate.clone(), fetches.clone());
                thread::spawn(move || {
                    if keys.load().contains(&"rotated") {
                        return true;
                    }
                    let _turn = turn.lock().unwrap();
                    if keys.load().contains(&"rotated") {
                        return true;
                    }
                    if !gate.try_claim(100) {
                        return false;
                    }
                    fetches.add(1);
                    keys.publish(vec!["rotated"]);
                    true
                })
            })
            .collect();
        let found = callers.into_iter().map(|h| h.join().unwrap()).filter(|f| *f).count();
        assert_eq!(fetches.get(), 1, "one fetch");
        assert_eq!(found, 2, "both callers find the new key");
    });
}
