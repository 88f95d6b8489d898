//! Runs every fuzz target's body over its checked-in corpus (`fuzz/corpus/<target>/`), on stable, as part
//! of `cargo test --workspace`: each file is a seed or a minimised fuzzer finding, crashes included.

use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no inputs", dir.display());
    files
}

/// Runs `body` on every file, naming the file whose input fails.
fn run_all(target: &str, body: fn(&[u8])) -> usize {
    let files = corpus(target);
    for path in &files {
        let data = std::fs::read(path).expect("a readable corpus file");
        if let Err(panic) = std::panic::catch_unwind(|| body(&data)) {
            eprintln!("{target}: input {} fails", path.display());
            std::panic::resume_unwind(panic);
        }
    }
    files.len()
}

#[test]
fn wire_decode_corpus() {
    run_all("wire_decode", dsync_fuzz::wire_decode::run);
}

#[cfg(feature = "tcp")]
#[test]
fn tcp_frames_corpus() {
    run_all("tcp_frames", dsync_fuzz::tcp_frames::run);
}

#[test]
fn core_inputs_corpus() {
    run_all("core_inputs", dsync_fuzz::core_inputs::run);
}

#[test]
fn the_wire_corpus_decodes_every_message_kind() {
    let mut kinds: Vec<&str> = corpus("wire_decode")
        .iter()
        .filter_map(|p| {
            let data = std::fs::read(p).ok()?;
            dsync_core::wire::decode(data.get(1..)?, usize::MAX).ok().map(|m| m.kind())
        })
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    let mut all: Vec<&str> = dsync_fuzz::seeds::every_message().iter().map(|m| m.kind()).collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(kinds, all, "the wire_decode corpus misses a message kind");
}

#[test]
fn the_seeds_are_checked_in() {
    #[allow(unused_mut)]
    let mut targets = vec![("wire_decode", dsync_fuzz::seeds::wire_decode())];
    #[cfg(feature = "tcp")]
    targets.push(("tcp_frames", dsync_fuzz::seeds::tcp_frames()));
    for (target, seeds) in targets {
        for (name, bytes) in seeds {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target).join(format!("seed-{name}"));
            let stored = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (run the write_seeds example)", path.display()));
            assert_eq!(stored, bytes, "{} is stale (run the write_seeds example)", path.display());
        }
    }
}
