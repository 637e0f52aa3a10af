//! Replays every committed fuzz corpus file (`fuzz/corpus/TARGET/*`) through the fuzz targets'
//! own code, on stable, so CI exercises what the fuzzers found without a nightly toolchain.
#![cfg(all(feature = "json", not(loom)))]

#[path = "../fuzz/harness.rs"]
mod harness;

fn replay(target: &str, run: fn(&[u8]) -> arbitrary::Result<()>) {
    let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files = 0;
    for entry in std::fs::read_dir(&directory).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        // A panic names the file that caused it.
        let outcome = std::panic::catch_unwind(|| run(&bytes));
        assert!(outcome.is_ok(), "{target}: {} panicked", path.display());
        files += 1;
    }
    assert!(files > 0, "no corpus in {}", directory.display());
}

#[test]
fn ops_corpus() {
    replay("ops", harness::ops);
}

#[test]
fn config_corpus() {
    replay("config", harness::config);
}

#[test]
fn export_corpus() {
    replay("export", harness::export);
}
