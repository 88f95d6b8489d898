//! Writes the hand-written seeds ([`dsync_fuzz::seeds`]) into `fuzz/corpus/<target>/seed-*`.
//! (`core_inputs` has none: its corpus comes from fuzzing, minimised with `cargo fuzz cmin`.)

use std::path::Path;

fn main() -> std::io::Result<()> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    #[allow(unused_mut)]
    let mut targets = vec![("wire_decode", dsync_fuzz::seeds::wire_decode())];
    #[cfg(feature = "tcp")]
    targets.push(("tcp_frames", dsync_fuzz::seeds::tcp_frames()));
    for (target, seeds) in targets {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir)?;
        for (name, bytes) in seeds {
            std::fs::write(dir.join(format!("seed-{name}")), bytes)?;
        }
        println!("{}: seeds written", dir.display());
    }
    Ok(())
}
