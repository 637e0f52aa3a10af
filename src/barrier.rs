//! The asymmetric fence pair that lets a leased writer go without a fence (see
//! `recording::leased`): the writer's *light* barrier, free at run time, and the reader's
//! *heavy* barrier, which makes every light barrier a full fence after the fact.
//!
//! # Guarantees
//!
//! - Nothing here panics, and nothing runs before `main`: the process registers for
//!   `membarrier(2)` when its first engine is built ([`prepare`]).
//! - Each engine is in one of two modes, carried by its lease words (the `FENCED` bit of
//!   `recording::leased`), so that writers and reader always agree:
//!   - **membarrier**: the light barrier is a compiler fence; the heavy one is
//!     `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`, which runs a full barrier on every CPU
//!     running a thread of this process.
//!   - **fenced**: both are `fence(SeqCst)`, one locked instruction for the writer. An engine
//!     is built fenced when the process could not register (a kernel without the command, a
//!     sandbox that answers the call with an error), and becomes fenced for good when a heavy
//!     barrier fails later (a seccomp filter installed after start, `ENOMEM`): the reader
//!     then hands the leases held at that moment back by acknowledgment instead (see
//!     `LeasedStripe::revoke`).
//!
//! A sandbox that *kills* on `membarrier` (seccomp `SECCOMP_RET_KILL`) kills the process when
//! its first engine is built: there is no error to fall back on.
//!
//! # Why `rustix`
//!
//! It makes the system call and returns its error, with no unsafe code here and nothing run
//! at load time; the fallback is this module's own. (`membarrier2`, the crate made for the
//! pair, registers in a load-time constructor and panics or aborts when the call fails.)

#[cfg(not(loom))]
use std::sync::atomic::{AtomicU8, Ordering, compiler_fence, fence};

/// Whether this process registered for `membarrier`: decided once, by [`prepare`].
#[cfg(not(loom))]
static REGISTERED: AtomicU8 = AtomicU8::new(UNDECIDED);
#[cfg(not(loom))]
const UNDECIDED: u8 = 0;
#[cfg(not(loom))]
const YES: u8 = 1;
#[cfg(not(loom))]
const NO: u8 = 2;

/// Registers the process for `membarrier` once; returns whether new engines may use it
/// (`false`: they are built fenced). Called by every engine's construction.
#[cfg(not(loom))]
pub(crate) fn prepare() -> bool {
    // Relaxed: registration is the kernel's state; any thread may repeat it harmlessly.
    match REGISTERED.load(Ordering::Relaxed) {
        YES => true,
        NO => false,
        _ => {
            let registered = register();
            REGISTERED.store(if registered { YES } else { NO }, Ordering::Relaxed);
            registered
        }
    }
}

/// Under Miri, which cannot make the system call, the pair is what it stands for: a `SeqCst`
/// fence on each side.
#[cfg(all(not(loom), miri))]
fn register() -> bool {
    true
}

#[cfg(all(not(loom), not(miri), any(target_os = "linux", target_os = "android")))]
fn register() -> bool {
    use rustix::thread::{MembarrierCommand, membarrier, membarrier_query};
    membarrier_query().contains_command(MembarrierCommand::PrivateExpedited)
        && membarrier(MembarrierCommand::RegisterPrivateExpedited).is_ok()
        // One call proves the sandbox lets the command through, not only the registration.
        && membarrier(MembarrierCommand::PrivateExpedited).is_ok()
}

#[cfg(all(
    not(loom),
    not(miri),
    not(any(target_os = "linux", target_os = "android"))
))]
fn register() -> bool {
    false
}

/// The writer's half, between its odd sequence store and its load of the lease word.
/// `fenced`: the engine's mode, as the writer's remembered lease word says.
#[inline(always)]
pub(crate) fn light(fenced: bool) {
    #[cfg(all(test, not(loom)))]
    tests::count_light(fenced);
    #[cfg(not(loom))]
    if fenced || cfg!(miri) {
        fence(Ordering::SeqCst);
    } else {
        compiler_fence(Ordering::SeqCst);
    }
    #[cfg(loom)]
    loom_model::light(fenced);
}

/// The heavy barrier failed: the engine must become fenced.
#[derive(Debug)]
pub(crate) struct Lapsed;

/// The reader's half, after it switched every lease word. A fenced engine fences; one that
/// uses `membarrier` makes the call, and on failure fences and reports [`Lapsed`].
pub(crate) fn heavy(fenced: bool) -> Result<(), Lapsed> {
    #[cfg(all(test, not(loom)))]
    if !fenced && tests::failing_here() {
        return Err(Lapsed);
    }
    #[cfg(not(loom))]
    {
        if fenced || cfg!(miri) {
            fence(Ordering::SeqCst);
            return Ok(());
        }
        #[cfg(all(not(miri), any(target_os = "linux", target_os = "android")))]
        if rustix::thread::membarrier(rustix::thread::MembarrierCommand::PrivateExpedited).is_ok() {
            return Ok(());
        }
        fence(Ordering::SeqCst);
        Err(Lapsed)
    }
    #[cfg(loom)]
    loom_model::heavy(fenced)
}

/// Under loom, engines start in membarrier mode, modelled as a `SeqCst` fence on each side,
/// unless a model makes the heavy barrier fail: then a membarrier-mode light barrier is the
/// bare compiler fence it is at run time, with nothing to pair with.
#[cfg(loom)]
mod loom_model {
    use loom::sync::atomic::{Ordering, fence};
    use std::cell::Cell;

    // loom runs a model's threads on the OS thread of its test: this is per model.
    std::thread_local! {
        static FAILING: Cell<bool> = const { Cell::new(false) };
    }

    /// Makes every membarrier-mode heavy barrier of this model fail (for the loom models).
    pub fn fail_barriers(fail: bool) {
        FAILING.set(fail);
    }

    fn failing() -> bool {
        FAILING.get()
    }

    pub(super) fn light(fenced: bool) {
        if fenced || !failing() {
            fence(Ordering::SeqCst);
        }
    }

    pub(super) fn heavy(fenced: bool) -> Result<(), super::Lapsed> {
        if !fenced && failing() {
            return Err(super::Lapsed);
        }
        fence(Ordering::SeqCst);
        Ok(())
    }
}

#[cfg(loom)]
pub use loom_model::fail_barriers;

#[cfg(all(test, not(loom)))]
pub(crate) mod tests {
    use std::cell::Cell;

    std::thread_local! {
        static FAILING: Cell<bool> = const { Cell::new(false) };
    }

    /// Makes every membarrier-mode heavy barrier on this thread fail, as a seccomp filter
    /// installed on it would.
    pub(crate) fn fail_heavy_barriers_here(fail: bool) {
        FAILING.set(fail);
    }

    pub(super) fn failing_here() -> bool {
        FAILING.get()
    }

    std::thread_local! {
        static LIGHT: Cell<[u64; 2]> = const { Cell::new([0; 2]) };
    }

    pub(super) fn count_light(fenced: bool) {
        let mut counts = LIGHT.get();
        counts[usize::from(fenced)] += 1;
        LIGHT.set(counts);
    }

    /// The light barriers this thread has made so far: `[compiler fences, real fences]`.
    pub(crate) fn light_barriers_here() -> [u64; 2] {
        LIGHT.get()
    }
}

/// Under loom every engine starts in membarrier mode.
#[cfg(loom)]
pub(crate) fn prepare() -> bool {
    true
}
