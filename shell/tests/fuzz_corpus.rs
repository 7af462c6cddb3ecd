//! Replays the committed `event_packet` fuzz corpus (fuzz/corpus/event_packet/) through the entry
//! point the cargo-fuzz target uses, so CI runs it on the stable toolchain.

#[test]
fn event_packet_corpus() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/event_packet");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(!files.is_empty(), "the event_packet corpus has seed files");
    for f in files {
        alice_shell::fuzzing::event_packet(&std::fs::read(&f).unwrap());
    }
}
