//! The sliding window: what the last [`Builder::window`](crate::Builder::window) of snapshots
//! recorded, for quantiles that follow a regression instead of averaging it into the whole
//! run.
//!
//! The window is split into [`WINDOW_AGE_BUCKETS`] age buckets, each covering a quarter of it
//! by the reader's monotonic clock. Each snapshot's interval is added to the bucket of the time
//! it is taken; when a bucket's time has passed, the oldest bucket is subtracted from the
//! window and reused. So a snapshot's window view is exactly the sum of the intervals of the
//! snapshots taken in the last three quarters of the window at least, and the whole window at
//! most, like the age buckets of the Go client's summaries. Counts stay exact: buckets are
//! added and subtracted, never estimated.
//!
//! Memory: one [`View`] per age bucket, kept by the reader, and one in each snapshot.

use std::time::{Duration, Instant};

use crate::snapshot::View;

/// How many age buckets a window is made of: the window view covers between
/// `(WINDOW_AGE_BUCKETS − 1) / WINDOW_AGE_BUCKETS` of the window and the whole window.
pub const WINDOW_AGE_BUCKETS: u32 = 4;

/// The age buckets of one engine's window, in the reader's state.
pub(crate) struct AgeBuckets {
    /// Ring of buckets; `current` receives the intervals of snapshots taken now. Empty until
    /// the first snapshot, so that an engine nobody snapshots keeps no window.
    buckets: Vec<View>,
    current: usize,
    /// When `current` began receiving.
    current_since: Instant,
    /// The time each bucket covers.
    span: Duration,
}

impl AgeBuckets {
    /// Empty buckets for a window of `window`, starting now.
    pub(crate) fn new(window: Duration, now: Instant) -> Self {
        AgeBuckets {
            buckets: Vec::new(),
            current: 0,
            current_since: now,
            span: window / WINDOW_AGE_BUCKETS,
        }
    }

    /// Moves the window to `now`, given `window`, the sum of every bucket: the buckets whose
    /// time has passed are subtracted from it and emptied, then `interval` (taken now) is added
    /// to the current bucket and to `window`. Afterwards `window` is again the sum of every
    /// bucket.
    pub(crate) fn slide(&mut self, now: Instant, interval: &View, window: &mut View) {
        if self.buckets.is_empty() {
            self.buckets = (0..WINDOW_AGE_BUCKETS)
                .map(|_| View::empty_like(interval))
                .collect();
        }
        let buckets = self.buckets.len();
        let mut expired = 0;
        while self
            .current_since
            .checked_add(self.span)
            .is_some_and(|end| now >= end)
        {
            if expired == buckets {
                // A gap longer than the whole window: every bucket is already empty.
                self.current_since = now;
                break;
            }
            self.current = (self.current + 1) % buckets;
            let oldest = &mut self.buckets[self.current];
            window.subtract(oldest);
            oldest.clear();
            self.current_since += self.span;
            expired += 1;
        }
        self.buckets[self.current].add(interval);
        window.add(interval);
    }
}
