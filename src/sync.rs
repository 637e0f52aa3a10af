//! The atomics and locks the lock-free protocols use, from `std` normally and from `loom` under
//! `cfg(loom)`, so the loom models check the protocol code exactly as it is written.
//!
//! `crossbeam_utils::CachePadded` is a plain wrapper and works around either kind of atomic.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};

/// The writers' half of the asymmetric fence pair (see [`crate::lease`]): a compiler fence,
/// free at run time, made a full fence on every running thread by the reader's
/// [`heavy_barrier`].
#[inline(always)]
pub(crate) fn light_barrier() {
    #[cfg(not(loom))]
    membarrier2::light();
    // loom checks the pair as what it stands for: a SeqCst fence on each side.
    #[cfg(loom)]
    loom::sync::atomic::fence(Ordering::SeqCst);
}

/// The reader's half: `membarrier(2)` (a system call; the reader may make them).
pub(crate) fn heavy_barrier() {
    #[cfg(not(loom))]
    membarrier2::heavy();
    #[cfg(loom)]
    loom::sync::atomic::fence(Ordering::SeqCst);
}

/// Locks `mutex`, ignoring poisoning: every structure a taskmeter lock guards is left valid at
/// every point where a panic could occur, so a panic elsewhere is no reason to stop reading.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Waits a little while a reader spins for writers to leave a phase.
///
/// loom must be told about every spin, or it explores the loop forever.
pub(crate) struct Spin {
    #[cfg(not(loom))]
    backoff: crossbeam_utils::Backoff,
}

impl Spin {
    pub(crate) fn new() -> Self {
        Spin {
            #[cfg(not(loom))]
            backoff: crossbeam_utils::Backoff::new(),
        }
    }

    pub(crate) fn wait(&self) {
        #[cfg(not(loom))]
        self.backoff.snooze();
        #[cfg(loom)]
        loom::thread::yield_now();
    }
}
