//! Runs a test's scenario in a child process of its own (the test binary, run again with the
//! scenario named in an environment variable), killed past a deadline: a scenario that hangs
//! fails its test instead of hanging the suite, and what it installs (a signal handler, a
//! seccomp filter) dies with the child.
#![allow(dead_code)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Set in a child: the scenario to run.
const SCENARIO_VAR: &str = "TASKMETER_FAULT_SCENARIO";

/// Runs `scenario` in a child process and asserts it succeeded within `deadline`.
fn in_child(test_name: &str, scenario: &str, deadline: Duration) {
    if std::env::var(SCENARIO_VAR).is_ok() {
        return;
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env(SCENARIO_VAR, scenario)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{scenario}: the child failed: {status}");
            return;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{scenario}: the child ran past {deadline:?} and was killed (a hang)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether this process is the child that runs `scenario`; in the parent, first runs test
/// `test_name` as that child and asserts it succeeded within `deadline`.
pub fn is_child_for(test_name: &str, scenario: &str, deadline: Duration) -> bool {
    in_child(test_name, scenario, deadline);
    std::env::var(SCENARIO_VAR).is_ok_and(|value| value == scenario)
}

/// Forks: the child runs `child` under an alarm of `alarm_secs` (so that a hang kills it) and
/// leaves with `_exit` and the code `child` returned (1 if it panicked); the parent waits for
/// it and returns its wait status (`libc::WIFEXITED`, `libc::WEXITSTATUS` read it).
#[cfg(target_os = "linux")]
pub fn fork_and_wait(alarm_secs: u32, child: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child only runs `child` (recording and snapshots, which allocate: glibc's
    // malloc is safe after fork) and leaves with `_exit`; the alarm bounds it.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        unsafe { libc::alarm(alarm_secs) };
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child));
        unsafe { libc::_exit(code.unwrap_or(1)) };
    }
    let mut status = 0;
    // SAFETY: waiting for the child just forked.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    status
}

/// Whether a wait status is an exit with code 0.
#[cfg(target_os = "linux")]
pub fn succeeded(status: i32) -> bool {
    libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
}

/// A child's exit code for whether it saw what it should: 0 if so, 1 if not.
pub fn exit_code(passed: bool) -> i32 {
    i32::from(!passed)
}
