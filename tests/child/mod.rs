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
