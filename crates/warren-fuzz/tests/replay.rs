//! Runs every committed seed (`corpus/<target>/`) and every input that once crashed a
//! fuzz target (`regressions/<target>/`) through the target's harness, so `cargo test`
//! keeps them passing without nightly or libFuzzer.

use std::path::{Path, PathBuf};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(kind: &str, min_seeds: usize) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (target, run) in warren_fuzz::TARGETS {
        let files = inputs(&root.join(kind).join(target));
        assert!(
            files.len() >= min_seeds,
            "{kind}/{target}: {} inputs, expected at least {min_seeds}",
            files.len()
        );
        for file in files {
            let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            eprintln!("{}", file.display());
            run(&data);
        }
    }
}

#[test]
fn every_seed_passes() {
    replay("corpus", 1);
}

#[test]
fn every_former_crash_passes() {
    replay("regressions", 0);
}
