//! Ordinals and tokens: taken lowest first, given back at the thread's exit, and how the
//! reader learns that a token's holder is gone. Scenarios that need the pool to themselves
//! run alone, in a child process.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{Identity, exits_of, identity, token_gone_since};
use crate::recording::leased::{FIRST_TOKEN, TOKENS};
use crate::recording::tests::{
    Worker, assert_whole, no_lease, one_lease, snapshot_with_a_failing_barrier, tasks,
};

/// Runs `body` only in a child process (this test binary again, running test `name` alone),
/// where no other test's threads take ordinals: the first thread to record takes ordinal 0,
/// the next 1. In the parent, asserts the child ran that one test and passed within a minute.
pub(crate) fn alone_in_a_child_process(name: &str, body: impl FnOnce()) {
    const ALONE: &str = "TASKMETER_TEST_ALONE";
    if std::env::var(ALONE).is_ok_and(|alone| alone == name) {
        return body();
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--test-threads=1", "--nocapture"])
        .env(ALONE, name)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read as the child writes, so that a full pipe cannot stop it.
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().unwrap()));
    let stderr = read_all(Box::new(child.stderr.take().unwrap()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    let Some(status) = status else {
        panic!("{name}: the child ran past a minute and was killed (a hang):\n{stdout}\n{stderr}");
    };
    assert!(
        status.success() && stdout.contains("test result: ok. 1 passed"),
        "{name}: the child failed or ran no test:\n{stdout}\n{stderr}"
    );
}

#[test]
fn a_token_is_gone_once_its_thread_exits_or_while_no_thread_holds_it() {
    // The last token of the pool: no test holds that many threads.
    let unheld = FIRST_TOKEN + TOKENS as u64 - 1;
    assert!(token_gone_since(unheld, exits_of(unheld)));
    std::thread::scope(|scope| {
        // Enough live threads that their ordinals span more than one word of the pool.
        let threads: Vec<(Worker, u64)> = (0..80)
            .map(|_| {
                let thread = Worker::spawn(scope);
                let token = thread.run(|| identity().token.unwrap());
                (thread, token)
            })
            .collect();
        let distinct: std::collections::HashSet<u64> =
            threads.iter().map(|(_, token)| *token).collect();
        assert_eq!(distinct.len(), threads.len(), "live threads share a token");
        for (_, token) in &threads {
            assert!(!token_gone_since(*token, exits_of(*token)), "token {token}");
        }
        for (thread, token) in threads {
            let exits = exits_of(token);
            thread.exit();
            // Gone whether or not another thread has taken the ordinal since.
            assert!(token_gone_since(token, exits), "token {token}");
        }
    });
}

#[test]
fn a_thread_local_destructor_after_the_exit_keeps_the_ordinal_but_not_the_token() {
    struct ReportAtExit(mpsc::Sender<Identity>);
    impl Drop for ReportAtExit {
        fn drop(&mut self) {
            let _ = self.0.send(identity());
        }
    }
    std::thread_local! {
        static REPORT: std::cell::RefCell<Option<ReportAtExit>> =
            const { std::cell::RefCell::new(None) };
    }
    let (report, reported) = mpsc::channel();
    let had = std::thread::spawn(move || {
        // Set before the thread takes its ordinal: thread-locals are torn down in the reverse
        // order of their first use, so this one after the ordinal's guard.
        REPORT.with(|cell| *cell.borrow_mut() = Some(ReportAtExit(report)));
        identity()
    })
    .join()
    .unwrap();
    assert!(had.token.is_some(), "{had:?}");
    let late = reported
        .recv_timeout(Duration::from_secs(10))
        .expect("the thread-local destructor ran");
    assert_eq!(late.ordinal, had.ordinal, "{late:?}");
    assert_eq!(late.token, None, "a token given back is still used");
}

#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn a_holder_that_exited_before_its_lease_was_revoked_is_not_waited_for() {
    const NAME: &str = "recording::route::tests::\
        a_holder_that_exited_before_its_lease_was_revoked_is_not_waited_for";
    // Fenced engines make no barrier to fail: the scenario needs `membarrier`, which this
    // process and its child have or lack alike.
    if one_lease().is_fenced() {
        eprintln!("skipped: the engine is fenced here (no membarrier)");
        return;
    }
    alone_in_a_child_process(NAME, || {
        let (metrics, elsewhere) = (one_lease(), no_lease());
        assert!(!metrics.is_fenced(), "fenced in the child only");
        std::thread::scope(|scope| {
            // Ordinal 0 stays held throughout, by a thread that records elsewhere.
            let first = Worker::spawn(scope);
            let ordinal = first.run(|| {
                tasks(&elsewhere, 1);
                identity().ordinal
            });
            assert_eq!(ordinal, 0, "not alone in this process");
            let holder = Worker::spawn(scope);
            let ordinal = holder.run(|| {
                tasks(&metrics, 10);
                identity().ordinal
            });
            assert_eq!(ordinal, 1);
            holder.exit();
            // The lease still names the token, free since: the exit was counted before the
            // revoke read the count, so only the pool tells the reader the holder is gone. A
            // revoked stripe is drained by the next snapshot, before it reads the counters.
            let revoking = snapshot_with_a_failing_barrier(&metrics);
            assert_eq!(revoking.carried_stripes(), 1);
            assert_whole(
                &metrics.snapshot(),
                10,
                "the reader waited for a holder that had exited",
            );
            first.exit();
        });
    });
}
