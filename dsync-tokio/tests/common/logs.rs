//! Capturing one test's log lines: a subscriber for the test's thread (`#[tokio::test]` runs every task of
//! the test on that thread) that keeps INFO and above.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::subscriber::DefaultGuard;

/// The log lines of one test.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

impl Logs {
    /// Captures INFO and above on this thread until the guard drops.
    pub fn capture() -> (Logs, DefaultGuard) {
        let logs = Logs::default();
        let sub = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(logs.clone())
            .finish();
        (logs.clone(), tracing::subscriber::set_default(sub))
    }

    pub fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap()).lines().map(str::to_owned).collect()
    }

    /// Every line that contains `text`.
    pub fn with(&self, text: &str) -> Vec<String> {
        self.lines().into_iter().filter(|l| l.contains(text)).collect()
    }

    /// Lines at `level` ("WARN", "ERROR"; "" for any) logged by node `node`'s transport that contain `text`.
    pub fn of(&self, node: usize, level: &str, text: &str) -> Vec<String> {
        let tag = format!("dsync-tcp{{node={node}}}");
        self.lines().into_iter().filter(|l| l.contains(&tag) && l.contains(level) && l.contains(text)).collect()
    }

    /// Waits until node `node` logged a line at `level` ("" for any) containing `text`.
    pub async fn wait_for(&self, node: usize, level: &str, text: &str) {
        let seen = async {
            while self.of(node, level, text).is_empty() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        if tokio::time::timeout(super::PATIENCE, seen).await.is_err() {
            panic!("node {node} did not log {level} {text:?} within {:?}; the log:\n{}", super::PATIENCE, self.dump());
        }
    }

    pub fn dump(&self) -> String {
        self.lines().join("\n")
    }
}
