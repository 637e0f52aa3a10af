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

/// Locks `mutex`, ignoring poisoning: every structure a taskmeter lock guards is left valid at
/// every point where a panic could occur, so a panic elsewhere is no reason to stop reading.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How a reader waits for writers to leave a phase: a few spins, then yields, then sleeps
/// that double up to about a millisecond, so that a wait behind a descheduled writer gives
/// the writer the CPU instead of competing with it. The caller bounds the wait.
///
/// loom must be told about every wait, or it explores the loop forever.
pub(crate) struct Backoff {
    #[cfg(not(loom))]
    step: u32,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff {
            #[cfg(not(loom))]
            step: 0,
        }
    }

    pub(crate) fn wait(&mut self) {
        #[cfg(not(loom))]
        {
            const SPINS: u32 = 6;
            const YIELDS: u32 = 10;
            match self.step {
                step if step <= SPINS => (0..1 << step).for_each(|_| std::hint::spin_loop()),
                step if step <= YIELDS => std::thread::yield_now(),
                step => std::thread::sleep(std::time::Duration::from_micros(
                    16 << (step - YIELDS - 1).min(6),
                )),
            }
            self.step = self.step.saturating_add(1);
        }
        #[cfg(loom)]
        loom::thread::yield_now();
    }
}
