//! The published pointer: the one place where readers pick up the latest snapshot.
//!
//! Normally an [`arc_swap::ArcSwap`]: `load` is wait-free and never blocks on a `store`. loom
//! cannot look inside `arc-swap`, so under `cfg(loom)` the same interface is a
//! `loom::sync::Mutex<Arc<T>>`, which gives the models the same happens-before edge (a store
//! happens before every load that returns it) without claiming arc-swap's progress guarantee.

use std::sync::Arc;

pub(crate) struct Published<T> {
    #[cfg(not(loom))]
    current: arc_swap::ArcSwap<T>,
    #[cfg(loom)]
    current: loom::sync::Mutex<Arc<T>>,
}

impl<T> Published<T> {
    pub(crate) fn new(initial: Arc<T>) -> Self {
        Published {
            #[cfg(not(loom))]
            current: arc_swap::ArcSwap::new(initial),
            #[cfg(loom)]
            current: loom::sync::Mutex::new(initial),
        }
    }

    /// The last stored value. Wait-free outside loom: a few atomic operations and an `Arc`
    /// clone. A thread's first call allocates arc-swap's per-thread debt node once.
    pub(crate) fn load(&self) -> Arc<T> {
        #[cfg(not(loom))]
        return self.current.load_full();
        #[cfg(loom)]
        return Arc::clone(&self.current.lock().unwrap());
    }

    pub(crate) fn store(&self, value: Arc<T>) {
        #[cfg(not(loom))]
        self.current.store(value);
        #[cfg(loom)]
        {
            *self.current.lock().unwrap() = value;
        }
    }
}
