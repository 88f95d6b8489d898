//! The dsync rows: runs the `bench` example as a subprocess (so the workload code exists once) and reads its
//! summary lines and `--latency-out` histogram.

use crate::hist::{self, LatencyFile};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One bench run's figures.
#[derive(Debug)]
pub struct BenchRun {
    /// Locks per second, as the bench printed it.
    pub locks_per_sec: f64,
    /// The latency histograms.
    pub latencies: LatencyFile,
}

/// Why a bench run gave no figures.
#[derive(Debug)]
pub enum BenchError {
    /// The bench does not offer this transport (yet): skip its rows.
    Unsupported(String),
    /// It ran and failed.
    Failed(String),
}

/// What to ask the bench for.
pub struct Request<'a> {
    /// `tcp` or `quic`.
    pub transport: &'a str,
    /// Nodes.
    pub nodes: usize,
    /// Loops per node.
    pub loops: usize,
    /// Measured seconds.
    pub seconds: f64,
    /// Warm-up seconds.
    pub warmup: f64,
    /// All loops on one resource.
    pub hot: bool,
    /// A node per OS process.
    pub processes: bool,
}

/// Finds the bench binary: `explicit`, or else (re)builds it with the cargo that runs us and takes the one
/// beside our own executable (same target directory and profile).
pub fn locate(explicit: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return Ok(p);
    }
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let bin = exe.with_file_name(format!("bench{}", std::env::consts::EXE_SUFFIX));
    if let Some(cargo) = std::env::var_os("CARGO") {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let mut cmd = std::process::Command::new(cargo);
        cmd.arg("build").arg("--manifest-path").arg(&manifest).args(["--example", "bench", "--features", "compare"]);
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        eprintln!("compare: building the bench example ...");
        let status = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
        if !status.success() {
            return Err(format!("building the bench example failed ({status})"));
        }
    }
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!("{} not found: run through `cargo run` or pass --bench-bin", bin.display()))
    }
}

/// Runs the bench once; `scratch` is a file path it may overwrite with its histogram.
pub async fn run(bin: &Path, r: &Request<'_>, scratch: &Path) -> Result<BenchRun, BenchError> {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(["--transport", r.transport, "--nodes", &r.nodes.to_string(), "--loops", &r.loops.to_string()])
        .args(["--seconds", &r.seconds.to_string(), "--warmup", &r.warmup.to_string()])
        .arg("--latency-out")
        .arg(scratch)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    if r.hot {
        cmd.arg("--hot");
    }
    if r.processes {
        cmd.arg("--processes");
    }
    let _ = std::fs::remove_file(scratch);
    // Generous: start-up of 16 nodes on a busy 2-core machine can take seconds.
    let limit = Duration::from_secs_f64(r.seconds + r.warmup + 120.0);
    let out = match tokio::time::timeout(limit, cmd.output()).await {
        Err(_) => return Err(BenchError::Failed(format!("no result within {limit:?}"))),
        Ok(Err(e)) => return Err(BenchError::Failed(format!("cannot run {}: {e}", bin.display()))),
        Ok(Ok(out)) => out,
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let msg = stderr.lines().last().unwrap_or("").to_string();
        // Exit 2 is the bench's "bad arguments"; naming the transport means this build lacks it.
        return Err(if out.status.code() == Some(2) && msg.contains("transport") {
            BenchError::Unsupported(msg)
        } else {
            BenchError::Failed(format!("bench exited with {}: {msg}", out.status))
        });
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout.lines().last().unwrap_or("");
    let locks_per_sec = field(summary, "locks_per_sec")
        .ok_or_else(|| BenchError::Failed(format!("unexpected last line from the bench: {summary:?}")))?;
    let text = std::fs::read_to_string(scratch)
        .map_err(|e| BenchError::Failed(format!("bench wrote no --latency-out file ({e}): is it current?")))?;
    let latencies = hist::parse(&text).map_err(|e| BenchError::Failed(format!("{}: {e}", scratch.display())))?;
    let _ = std::fs::remove_file(scratch);
    Ok(BenchRun { locks_per_sec, latencies })
}

/// The number after `key=` in a `key=value key=value` line.
fn field(line: &str, key: &str) -> Option<f64> {
    line.split_whitespace().find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_bench_summary_line() {
        let line = "nodes=4 locks_per_sec=141972 p50_us=116 p99_us=385";
        assert_eq!(super::field(line, "locks_per_sec"), Some(141972.0));
        assert_eq!(super::field(line, "p99_us"), Some(385.0));
        assert_eq!(super::field(line, "locks"), None);
    }
}
