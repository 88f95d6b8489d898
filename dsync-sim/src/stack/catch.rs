//! Panics of application tasks become violations.
//!
//! turmoil (without `--cfg tokio_unstable`, which nothing here may require of its users) runs each host on a
//! tokio `LocalSet` that swallows a spawned task's panic: an `assert!` in a scenario's application code, or
//! an `expect` on a lock that failed, would vanish and the run would pass. Every task the harness spawns for
//! application code runs inside [`Caught`], which turns the panic into a violation of the run.

use super::app::now;
use super::record::Recorder;
use crate::Kind;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

/// `fut`, polled under `catch_unwind`; a panic is recorded as a violation of `kind` naming `what`.
pub(crate) struct Caught<F> {
    fut: Pin<Box<F>>,
    rec: Recorder,
    what: String,
    kind: Kind,
}

impl<F: Future<Output = ()>> Caught<F> {
    pub(crate) fn new(fut: F, rec: Recorder, what: String, kind: Kind) -> Self {
        Caught { fut: Box::pin(fut), rec, what, kind }
    }
}

impl<F: Future<Output = ()>> Future for Caught<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        match catch_unwind(AssertUnwindSafe(|| this.fut.as_mut().poll(cx))) {
            Ok(p) => p,
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(a non-string panic)".into());
                this.rec.violation(this.kind, now(), format!("{} panicked: {msg}", this.what));
                Poll::Ready(())
            }
        }
    }
}
