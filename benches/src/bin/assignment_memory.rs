//! What consultant assignments cost the core in memory: loads tables of increasing size into a
//! fresh `Core` under `CONSULTANT_SCOPE=assigned` and prints the bytes the heap grew by, per
//! assignment, counted by a global allocator that tallies every allocation and free.
//!
//! `cargo run --release -p alice-benches --bin assignment_memory`

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicIsize, Ordering};

use alice_core::{AssignmentTable, Config, ConsultantScope, Core, Input, Millis};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's layout goes to the system allocator as it came.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// `consultants` consultants with `per` readers each, every reader assigned to two consultants;
/// ids shaped like Supabase's (UUIDs, 36 characters).
fn table(consultants: usize, per: usize) -> AssignmentTable {
    let id = |kind: u128, n: usize| uuid::Uuid::from_u128(kind << 64 | n as u128).to_string();
    (0..consultants)
        .map(|c| {
            let readers: BTreeSet<String> = (0..per).map(|r| id(2, (c / 2) * per + r)).collect();
            (id(1, c), readers)
        })
        .collect()
}

fn main() {
    println!("assignments  heap growth  bytes per assignment");
    for (consultants, per) in [(100, 100), (500, 200), (1_000, 1_000)] {
        let config = Config { consultant_scope: ConsultantScope::Assigned, ..Config::default() };
        let mut core = Core::new(config, "measure", 1);
        core.handle(Millis(1), Input::Tick);
        while core.poll_output().is_some() {}
        let t = table(consultants, per);
        let before = LIVE.load(Ordering::Relaxed);
        core.handle(Millis(2), Input::AssignmentsLoaded { table: Some(t.clone()) });
        while core.poll_output().is_some() {}
        let grew = LIVE.load(Ordering::Relaxed) - before;
        let n = consultants * per;
        println!("{n:>11}  {:>8.1} MiB  {:>20.0}", grew as f64 / 1_048_576.0, grew as f64 / n as f64);
        drop(t);
        drop(core);
    }
}
