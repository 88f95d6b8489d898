//! The engine's building blocks: reconnection backoff, the hand-over of a peer's newest inbound connection,
//! and admission of frames into a peer's bounded outgoing queue.

use crate::entropy::Entropy;
use dsync_core::rng::SplitMix64;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;

/// The newest authenticated inbound connection from one peer, handed from the accept loop to that peer's
/// connection task. A newer connection replaces one still waiting (a restarted peer's last dial wins), and
/// the task serving an older one learns of it through [`Newest::arrived`] and gives way.
#[derive(Debug)]
pub struct Newest<T> {
    slot: Mutex<Option<T>>,
    ready: Notify,
}

impl<T> Default for Newest<T> {
    fn default() -> Self {
        Newest { slot: Mutex::new(None), ready: Notify::new() }
    }
}

impl<T> Newest<T> {
    /// Leaves `conn` for the peer's task, replacing any connection still waiting, and wakes the task.
    pub fn put(&self, conn: T) {
        *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn);
        self.ready.notify_one();
    }

    /// Resolves once a connection is waiting (cancel-safe).
    ///
    /// Only a waiting connection counts: two quick puts leave a second wake-up behind after the first was
    /// taken, and a task that took it for a replacement would drop its live connection for nothing — with
    /// two dialers, each drop brings a redial and another put, a storm of replacements.
    pub async fn arrived(&self) {
        loop {
            let notified = self.ready.notified();
            if self.slot.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
                return;
            }
            notified.await;
        }
    }

    /// The waiting connection, if any.
    pub fn take(&self) -> Option<T> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Wakes the task again, for a connection that arrived while it was busy giving way to it.
    pub fn rewake(&self) {
        self.ready.notify_one();
    }
}

/// Capped exponential backoff with jitter, for reconnecting to a peer.
///
/// Each wait is drawn uniformly from the upper half of the current step (so peers that lost each other at
/// the same moment do not redial in lock-step), and the step doubles up to the cap; a successful connection
/// resets it.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    step: Duration,
    rng: SplitMix64,
}

impl Backoff {
    /// Steps from `min` doubling up to `max`, with jitter seeded from `entropy`.
    pub fn new(min: Duration, max: Duration, entropy: &Entropy) -> Self {
        Backoff { min, max: max.max(min), step: min, rng: SplitMix64::new(entropy.next_u64()) }
    }

    /// How long to wait before the next attempt; the step after it is twice as long (up to the cap).
    pub fn next_wait(&mut self) -> Duration {
        let unit = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let wait = self.step.mul_f64(0.5 + 0.5 * unit);
        self.step = (self.step * 2).min(self.max);
        wait
    }

    /// Back to the first step (after a connection succeeded).
    pub fn reset(&mut self) {
        self.step = self.min;
    }
}

/// Appends the length-prefixed frames of `batch` (as written by [`super::encode_frame`]) to a peer's
/// outgoing `queue` of at most `max` bytes, and returns how many frames did not fit and were dropped.
///
/// Whole frames only: a frame is kept if it fits, and an empty queue takes one frame whatever its size, so
/// no frame the limits allow can never be sent; the rest are dropped — the protocol tolerates loss, and
/// this is what keeps a peer that stops reading from growing our memory.
pub fn queue_frames(queue: &mut Vec<u8>, batch: &[u8], max: usize) -> u64 {
    if queue.len() + batch.len() <= max {
        queue.extend_from_slice(batch);
        return 0;
    }
    let mut dropped = 0;
    let mut at = 0;
    while batch.len() - at >= 4 {
        let len = 4 + u32::from_le_bytes([batch[at], batch[at + 1], batch[at + 2], batch[at + 3]]) as usize;
        let frame = &batch[at..(at + len).min(batch.len())];
        if queue.is_empty() || queue.len() + frame.len() <= max {
            queue.extend_from_slice(frame);
        } else {
            dropped += 1;
        }
        at += len;
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::encode_frame;
    use dsync_core::Message;

    #[test]
    fn a_full_queue_keeps_whole_frames_that_fit_and_drops_the_rest() {
        let mut batch = Vec::new();
        encode_frame(&Message::Wake { ticket: 1 }, &mut batch);
        let one = batch.len();
        encode_frame(&Message::Wake { ticket: 2 }, &mut batch);
        encode_frame(&Message::Wake { ticket: 3 }, &mut batch);
        let mut queue = vec![0; 10];
        assert_eq!(queue_frames(&mut queue, &batch, 10 + one), 2);
        assert_eq!(queue.len(), 10 + one, "exactly one whole frame was admitted");
        let mut empty = Vec::new();
        assert_eq!(queue_frames(&mut empty, &batch[..one], 1), 0, "an empty queue takes one frame of any size");
        assert_eq!(empty.len(), one);
    }

    #[tokio::test]
    async fn a_stale_wake_up_is_not_an_arrival() {
        let newest = Newest::default();
        newest.put(1);
        newest.put(2);
        newest.arrived().await;
        assert_eq!(newest.take(), Some(2), "the newest wins");
        // The second put's wake-up is still pending, but nothing is waiting.
        let waited = tokio::time::timeout(Duration::from_millis(50), newest.arrived()).await;
        assert!(waited.is_err(), "a stale wake-up counted as an arrival");
        newest.put(3);
        newest.arrived().await;
        assert_eq!(newest.take(), Some(3));
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter_and_resets() {
        let (min, max) = (Duration::from_millis(20), Duration::from_millis(100));
        let mut b = Backoff::new(min, max, &Entropy::os());
        let waits: Vec<_> = (0..6).map(|_| b.next_wait()).collect();
        assert!(waits[0] >= min / 2 && waits[0] <= min);
        assert!(waits[5] >= max / 2 && waits[5] <= max, "capped: {waits:?}");
        b.reset();
        assert!(b.next_wait() <= min);
    }
}
