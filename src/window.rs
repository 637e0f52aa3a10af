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
//! The reader keeps, per age bucket, the cumulative view at the moment the bucket began
//! receiving intervals, so the window is the latest cumulative view minus the oldest live
//! bucket's start: the same exact integers as a sum of intervals. A roll is a pointer swap.
//! The window view itself follows use: when the previous snapshot's window was read, the
//! reader adds the interval to it (between two rolls), for the cost of the interval's
//! blocks; otherwise, and after a roll, the snapshot computes it when the window is first
//! read: the intervals' lists pending on the cumulative view since the start, taken as they
//! are, when at most one fold of pending intervals came between the two (see
//! `snapshot::durations`); else the start subtracted from the cumulative view, which costs the
//! blocks that changed since the last fold the two views share (blocks left alone since are
//! shared by both and dropped unread). A process whose exporters never read the window pays nothing for it.
//!
//! Memory: four cumulative views, sharing with the latest one every block that did not
//! change within the window; a snapshot keeps the one its window is computed from, so a
//! snapshot held past a roll keeps that start alive too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::snapshot::{View, WindowView};

/// How many age buckets a window is made of: the window view covers between
/// `(WINDOW_AGE_BUCKETS − 1) / WINDOW_AGE_BUCKETS` of the window and the whole window.
pub const WINDOW_AGE_BUCKETS: u32 = 4;

/// The age buckets of one engine's window, in the reader's state.
pub(crate) struct AgeBuckets {
    /// Ring of the cumulative views at which each bucket began receiving; `current` receives
    /// the intervals of snapshots taken now, and the one after it is the oldest.
    starts: Vec<Arc<View>>,
    current: usize,
    /// When `current` began receiving.
    current_since: Instant,
    /// The time each bucket covers.
    span: Duration,
}

impl AgeBuckets {
    /// Buckets for a window of `window`, every one starting now, at `cumulative`.
    pub(crate) fn new(window: Duration, now: Instant, cumulative: &Arc<View>) -> Self {
        AgeBuckets {
            starts: (0..WINDOW_AGE_BUCKETS)
                .map(|_| Arc::clone(cumulative))
                .collect(),
            current: 0,
            current_since: now,
            span: window / WINDOW_AGE_BUCKETS,
        }
    }

    /// When the current bucket began: before the first snapshot, the origin of every roll.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn origin(&self) -> Instant {
        self.current_since
    }

    /// The start of the oldest bucket in the window.
    fn oldest_start(&self) -> &Arc<View> {
        &self.starts[(self.current + 1) % self.starts.len()]
    }

    /// Moves the window to `now`: the buckets whose time has passed begin again at `before`,
    /// the previous snapshot's cumulative view. Returns the oldest start and, when it comes
    /// for the cost of the interval alone, the window view: as long as the oldest start is
    /// `previous`'s, the previous snapshot's window itself when nothing was recorded since
    /// (if it was computed), or grown by `interval` (with `after` the cumulative view with it)
    /// when it was read. Otherwise the snapshot computes it when first read.
    pub(crate) fn slide(
        &mut self,
        now: Instant,
        before: &Arc<View>,
        previous: &WindowView,
        interval: &View,
        after: &Arc<View>,
    ) -> (Arc<View>, Option<Arc<View>>) {
        let buckets = self.starts.len();
        let mut expired = 0;
        while self
            .current_since
            .checked_add(self.span)
            .is_some_and(|end| now >= end)
        {
            if expired == buckets {
                // A gap longer than the whole window: every bucket already starts at `before`.
                self.current_since = now;
                break;
            }
            self.current = (self.current + 1) % buckets;
            self.starts[self.current] = Arc::clone(before);
            self.current_since += self.span;
            expired += 1;
        }
        let oldest = Arc::clone(self.oldest_start());
        if !Arc::ptr_eq(&oldest, previous.start()) {
            return (oldest, None);
        }
        let view = if interval.is_empty() {
            previous.computed().map(Arc::clone)
        } else {
            previous.read().map(|window| {
                let mut grown = View::clone(window);
                grown.add_since(interval, after, &oldest);
                Arc::new(grown)
            })
        };
        (oldest, view)
    }
}
