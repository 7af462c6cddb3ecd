//! loom explores every interleaving of these threads (run with `--cfg loom`; see the crate docs).
#![cfg(loom)]

use alice_handoff::{Counter, Gate, Ids};
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
