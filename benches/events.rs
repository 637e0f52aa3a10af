//! The event path of a solti 0.0.8 application, side by side: taskmeter's `TaskvisorMetrics`
//! against solti-prometheus 0.0.8's `PrometheusTaskvisorSubscriber`, each alone.
//!
//! `cargo bench --bench events` prints one table (and `--quick` a smaller one):
//! - **handling**: events a subscriber handles per second, called in a loop on one thread with
//!   a prepared stream of a task mix's events (start, close by outcome, backoffs, task end):
//!   what its worker can keep up with; its time per event is CPU time, one thread busy;
//! - **a real supervisor**: taskvisor 0.9 running short tasks that succeed, fail and are
//!   retried, and time out, all at once on one runtime thread, with the subscriber's default
//!   queue (2,048): the events the subscriber received and the events taskvisor reported lost
//!   to it (`SubscriberOverflow`);
//! - **memory**: the heap the subscriber holds with 10,000 attempts open, counted by the
//!   allocator.
//!
//! Each figure is the median of five runs, both subscribers measured in the same process.

use std::alloc::{GlobalAlloc, Layout, System};
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use taskmeter::AtomicMetrics;
use taskmeter::solti::TaskvisorMetrics;
use taskvisor::{
    BackoffPolicy, Event, EventKind, RestartPolicy, Subscribe, Supervisor, SupervisorConfig,
    TaskContext, TaskError, TaskFn, TaskId, TaskOutcomeKind, TaskRef, TaskSpec,
};

struct Counting;

static HELD: AtomicI64 = AtomicI64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HELD.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        // SAFETY: as above; `ptr` came from this allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Makes a fresh subscriber.
type MakeSubscriber = fn() -> Arc<dyn Subscribe>;

/// The two subscribers, each made fresh for every run.
fn subscribers() -> [(&'static str, MakeSubscriber); 2] {
    [
        ("taskmeter TaskvisorMetrics", || {
            Arc::new(TaskvisorMetrics::new(Arc::new(AtomicMetrics::new())))
        }),
        ("solti-prometheus 0.0.8", || {
            let registry = prometheus::Registry::new();
            Arc::new(solti_prometheus::PrometheusTaskvisorSubscriber::new(&registry).unwrap())
        }),
    ]
}

/// The events of `tasks` tasks: per task, its attempts (one in ten fails once and is retried
/// after a backoff; one in twenty times out), then its end.
fn event_stream(tasks: u32) -> Vec<Event> {
    let mut events = Vec::with_capacity(tasks as usize * 4);
    for task in 0..tasks {
        let id = TaskId::for_tests();
        let name: Arc<str> = Arc::from(format!("task-{}", task % 64));
        let event = |kind| Event::new(kind).with_task(Arc::clone(&name)).with_id(id);
        let duration = Duration::from_millis(u64::from(task % 997) + 1);
        let mut attempt = 1;
        if task % 10 == 3 {
            events.push(event(EventKind::AttemptStarting).with_attempt(attempt));
            events.push(
                event(EventKind::AttemptFailed)
                    .with_attempt(attempt)
                    .with_duration(duration),
            );
            events.push(
                event(EventKind::BackoffScheduled)
                    .with_attempt(attempt)
                    .with_delay(Duration::from_millis(100))
                    .with_backoff_failure(),
            );
            attempt += 1;
        }
        events.push(event(EventKind::AttemptStarting).with_attempt(attempt));
        let close = if task % 20 == 7 {
            EventKind::AttemptTimedOut
        } else {
            EventKind::AttemptSucceeded
        };
        events.push(event(close).with_attempt(attempt).with_duration(duration));
        events.push(event(EventKind::TaskFinished).with_outcome_kind(TaskOutcomeKind::Completed));
    }
    events
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Events per second one subscriber handles, called in a loop on this thread.
fn handling(make: MakeSubscriber, events: &[Event]) -> f64 {
    let subscriber = make();
    let start = Instant::now();
    for event in events {
        subscriber.on_event(event);
    }
    events.len() as f64 / start.elapsed().as_secs_f64()
}

/// Counts what reaches the subscriber it wraps, and the losses taskvisor reports to it.
struct Observed {
    inner: Arc<dyn Subscribe>,
    received: AtomicU64,
    lost: AtomicU64,
}

impl Subscribe for Observed {
    fn on_event(&self, event: &Event) {
        self.received.fetch_add(1, Ordering::Relaxed);
        if event.kind == EventKind::SubscriberOverflow
            && event.task.as_deref() == Some(self.inner.name())
        {
            self.lost
                .fetch_add(event.dropped.unwrap_or(1), Ordering::Relaxed);
        }
        self.inner.on_event(event);
    }
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn queue_capacity(&self) -> NonZeroUsize {
        self.inner.queue_capacity()
    }
}

/// A supervisor running `tasks` short tasks at once: `(events received, events lost, seconds)`.
fn supervised(make: MakeSubscriber, tasks: u32) -> (u64, u64, f64) {
    let observed = Arc::new(Observed {
        inner: make(),
        received: AtomicU64::new(0),
        lost: AtomicU64::new(0),
    });
    // One runtime thread per CPU, as a runner's service would run: the tasks' events come
    // faster than on one thread, and the subscriber's worker competes for the CPUs.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let start = Instant::now();
    runtime.block_on(async {
        // Room for every task at once; the bus and the subscriber's queue stay at their
        // defaults.
        let room = NonZeroUsize::new(tasks as usize).expect("some tasks");
        let config = SupervisorConfig::default()
            .with_max_registered_tasks(None)
            .with_ownership_capacity(None)
            .with_registry_queue_capacity(room);
        let supervisor = Supervisor::new(config, vec![Arc::clone(&observed) as Arc<dyn Subscribe>]);
        let ok: TaskRef = TaskFn::arc(|_ctx: TaskContext| async move { Ok(()) });
        // Fails its first attempt, succeeds on the retry.
        let flaky = || -> TaskRef {
            let failed = Arc::new(AtomicBool::new(false));
            TaskFn::arc(move |_ctx: TaskContext| {
                let failed = Arc::clone(&failed);
                async move {
                    if failed.swap(true, Ordering::Relaxed) {
                        Ok(())
                    } else {
                        Err(TaskError::fail("first attempt fails"))
                    }
                }
            })
        };
        let slow: TaskRef = TaskFn::arc(|_ctx: TaskContext| async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        });
        let specs = (0..tasks)
            .map(|task| match task % 20 {
                3 | 13 => TaskSpec::once(format!("flaky-{task}"), flaky())
                    .with_restart(RestartPolicy::OnFailure)
                    .with_max_retries(NonZeroU32::new(1))
                    .with_backoff(BackoffPolicy::constant(Duration::from_millis(1))),
                7 => TaskSpec::once(format!("slow-{task}"), Arc::clone(&slow))
                    .with_timeout(Duration::from_millis(5)),
                _ => TaskSpec::once(format!("ok-{task}"), Arc::clone(&ok)),
            })
            .collect();
        supervisor.run(specs).await.unwrap();
    });
    let seconds = start.elapsed().as_secs_f64();
    (
        observed.received.load(Ordering::Relaxed),
        observed.lost.load(Ordering::Relaxed),
        seconds,
    )
}

/// Heap bytes the subscriber holds with `open` attempts open (its engine's excluded).
fn memory_with_open(make: MakeSubscriber, open: u32) -> i64 {
    let subscriber = make();
    let events: Vec<Event> = (0..open)
        .map(|_| {
            Event::new(EventKind::AttemptStarting)
                .with_task("task")
                .with_id(TaskId::for_tests())
                .with_attempt(1)
        })
        .collect();
    let before = HELD.load(Ordering::Relaxed);
    for event in &events {
        subscriber.on_event(event);
    }
    let held = HELD.load(Ordering::Relaxed) - before;
    drop(subscriber);
    held
}

/// Median and range of `values`.
fn spread(values: &[f64]) -> (f64, f64, f64) {
    let low = values.iter().copied().fold(f64::INFINITY, f64::min);
    let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (median(values.to_vec()), low, high)
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    // Only the handling loop: for a profiler.
    let handling_only = std::env::args().any(|arg| arg == "--handling");
    let (stream_tasks, supervised_tasks, runs) = if quick {
        (20_000, 2_000, 3)
    } else {
        (200_000, 20_000, 15)
    };
    let events = event_stream(stream_tasks);
    let subscribers = subscribers();
    // Every measure alternates between the subscribers, run after run, so that a slow moment
    // of the machine falls on both.
    let mut handled = [Vec::new(), Vec::new()];
    let mut supervised_runs = [Vec::new(), Vec::new()];
    let mut memory = [Vec::new(), Vec::new()];
    for _ in 0..runs {
        for (which, (_, make)) in subscribers.iter().enumerate() {
            handled[which].push(handling(*make, &events));
            if !handling_only {
                supervised_runs[which].push(supervised(*make, supervised_tasks));
                memory[which].push(memory_with_open(*make, 10_000) as f64);
            }
        }
    }
    if handling_only {
        for (which, (name, _)) in subscribers.iter().enumerate() {
            println!(
                "{name}: {:.0} ns per event",
                1e9 / median(handled[which].clone())
            );
        }
        return;
    }
    println!(
        "{runs} runs of each, alternating; median (range)\n\n\
         | subscriber | events handled per second, one thread | CPU per event | a supervisor, \
         {supervised_tasks} tasks on one runtime thread per CPU: events received | events lost \
         to the subscriber's queue (2,048) | run time | heap with 10,000 attempts open |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut medians = Vec::new();
    for (which, (name, _)) in subscribers.iter().enumerate() {
        let runs = &supervised_runs[which];
        let per_second = spread(&handled[which]);
        let received = spread(&runs.iter().map(|run| run.0 as f64).collect::<Vec<_>>());
        let lost = spread(&runs.iter().map(|run| run.1 as f64).collect::<Vec<_>>());
        let seconds = spread(&runs.iter().map(|run| run.2 * 1e3).collect::<Vec<_>>());
        let heap = median(memory[which].clone()) / f64::from(1 << 20);
        println!(
            "| {name} | {:.2} M ({:.2}–{:.2}) | {:.0} ns | {:.0} ({:.0}–{:.0}) | {:.0} ({:.0}–{:.0}) | {:.0} ms ({:.0}–{:.0}) | {heap:.2} MiB |",
            per_second.0 / 1e6,
            per_second.1 / 1e6,
            per_second.2 / 1e6,
            1e9 / per_second.0,
            received.0,
            received.1,
            received.2,
            lost.0,
            lost.1,
            lost.2,
            seconds.0,
            seconds.1,
            seconds.2,
        );
        medians.push((per_second.0, lost.0, heap));
    }
    let [ours, theirs] = &medians[..] else {
        return;
    };
    println!(
        "\ntaskmeter / solti-prometheus (medians): events per second {:.2}, events lost {:.0} against {:.0}, heap {:.2}",
        ours.0 / theirs.0,
        ours.1,
        theirs.1,
        ours.2 / theirs.2,
    );
}
