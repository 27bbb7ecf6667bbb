//! Shared measurement code: latency histograms and the two load drivers (a
//! closed loop of async callers, and a blocking loop for raw I/O). Results
//! are printed by [`crate::record`].
//!
//! Both drivers run a warm-up phase whose operations are not recorded, then
//! a measured window. Only operations that start *and* finish inside the
//! window count, so throughput is never inflated by work begun during
//! warm-up; at most one operation per caller is lost at each edge.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU8, Ordering},
    },
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng, rngs::SmallRng};

pub use crate::record::{Record, ratio};

/// Any error a benchmark operation can fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Runs shorter than this get no progress bar: it would only flicker.
const PROGRESS_MIN: Duration = Duration::from_secs(3);

/// How often the async driver's coordinator wakes to update progress and
/// look for failed callers.
const TICK: Duration = Duration::from_millis(100);

/// Warm-up and measured durations of one run.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Unrecorded time first: caches, allocators and the disk settle.
    pub warmup: Duration,
    /// The measured time.
    pub duration: Duration,
}

/// Latencies in nanoseconds, 3 significant digits, up to one minute.
#[derive(Debug, Clone)]
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    /// An empty histogram.
    pub fn new() -> Latencies {
        let histogram = Histogram::new_with_bounds(1, 60_000_000_000, 3)
            .expect("constant histogram bounds are valid");
        Latencies(histogram)
    }

    /// Records one latency (saturated to the histogram's range).
    pub fn record(&mut self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.0.saturating_record(nanos.max(1));
    }

    /// Adds another histogram's samples.
    pub fn merge(&mut self, other: &Latencies) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.0.add(&other.0);
    }

    /// The number of samples.
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The mean latency, in milliseconds.
    pub fn mean_ms(&self) -> f64 {
        self.0.mean() / 1e6
    }

    /// The latency at quantile `q` (0..=1), in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.0.value_at_quantile(q) as f64 / 1e6
    }
}

/// What a measured window produced.
#[derive(Debug, Clone)]
pub struct Summary {
    /// One sample per completed operation inside the window.
    pub latencies: Latencies,
    /// The window's actual length.
    pub elapsed: Duration,
}

impl Summary {
    /// Completed operations per second.
    pub fn ops_per_s(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// Driver phases, shared with the callers through an atomic.
const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

/// Runs `callers` tokio tasks in a closed loop (each awaits its operation,
/// then starts the next one at once) and records every latency.
///
/// `op` gets a fresh random number per operation (each caller has its own
/// seeded generator, so runs are repeatable) and returns the future to time;
/// picking the key synchronously keeps that future free of borrows.
///
/// # Errors
///
/// The first error any operation returns; the run stops there.
pub async fn closed_loop<F, Fut>(
    callers: usize,
    window: Window,
    label: &str,
    op: F,
) -> Result<Summary, BoxError>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    closed_loop_per_caller(callers, window, label, move |_caller, random| op(random)).await
}

/// [`closed_loop`] whose `op` also gets the caller's index (`0..callers`),
/// for callers that own a resource, such as the HTTP load generator's one
/// keep-alive connection per caller.
///
/// # Errors
///
/// The first error any operation returns; the run stops there.
pub async fn closed_loop_per_caller<F, Fut>(
    callers: usize,
    window: Window,
    label: &str,
    op: F,
) -> Result<Summary, BoxError>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    let op = Arc::new(op);
    let phase = Arc::new(AtomicU8::new(WARMUP));
    let failed = Arc::new(AtomicBool::new(false));
    let tasks = (0..callers.max(1))
        .map(|caller| {
            let (op, phase, failed) = (Arc::clone(&op), Arc::clone(&phase), Arc::clone(&failed));
            tokio::spawn(async move {
                let mut rng = SmallRng::seed_from_u64(caller as u64);
                let mut latencies = Latencies::new();
                loop {
                    let started_in = phase.load(Ordering::Relaxed);
                    if started_in == STOP {
                        return Ok(latencies);
                    }
                    let start = Instant::now();
                    if let Err(e) = op(caller, rng.random()).await {
                        failed.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                    let latency = start.elapsed();
                    if started_in == MEASURE && phase.load(Ordering::Relaxed) == MEASURE {
                        latencies.record(latency);
                    }
                }
            })
        })
        .collect::<Vec<_>>();

    let progress = Progress::start(label, window);
    let sleep = |until: Instant| {
        let (failed, progress) = (&failed, &progress);
        async move {
            while Instant::now() < until && !failed.load(Ordering::Relaxed) {
                tokio::time::sleep(TICK.min(until.saturating_duration_since(Instant::now()))).await;
                progress.tick();
            }
        }
    };
    sleep(Instant::now() + window.warmup).await;
    phase.store(MEASURE, Ordering::Relaxed);
    let start = Instant::now();
    sleep(start + window.duration).await;
    phase.store(STOP, Ordering::Relaxed);
    let elapsed = start.elapsed();
    progress.finish();

    let mut latencies = Latencies::new();
    for task in tasks {
        let caller = task
            .await
            .map_err(|e| format!("a caller task failed: {e}"))??;
        latencies.merge(&caller);
    }
    Ok(Summary { latencies, elapsed })
}

/// Runs the blocking `op` over and over on this thread and records each
/// call's latency: for raw I/O, where an async runtime would only add noise.
///
/// # Errors
///
/// The first error `op` returns.
pub fn blocking_loop(
    window: Window,
    label: &str,
    mut op: impl FnMut() -> Result<(), BoxError>,
) -> Result<Summary, BoxError> {
    let progress = Progress::start(label, window);
    let mut latencies = Latencies::new();
    let warmup_end = Instant::now() + window.warmup;
    let mut last_tick = Instant::now();
    let mut measure_start = None;
    loop {
        let start = Instant::now();
        if start.duration_since(last_tick) >= TICK {
            progress.tick();
            last_tick = start;
        }
        let window_start = match measure_start {
            Some(s) => s,
            None if start >= warmup_end => *measure_start.insert(start),
            None => {
                op()?;
                continue;
            }
        };
        if start.duration_since(window_start) >= window.duration {
            progress.finish();
            return Ok(Summary {
                latencies,
                elapsed: start.duration_since(window_start),
            });
        }
        op()?;
        latencies.record(start.elapsed());
    }
}

/// A progress bar on stderr for runs longer than [`PROGRESS_MIN`], so that
/// stdout stays a clean table and JSON stream.
struct Progress {
    bar: Option<(ProgressBar, Instant)>,
}

impl Progress {
    fn start(label: &str, window: Window) -> Progress {
        let total = window.warmup + window.duration;
        if total < PROGRESS_MIN {
            return Progress { bar: None };
        }
        let millis = u64::try_from(total.as_millis()).unwrap_or(u64::MAX);
        let bar = ProgressBar::new(millis);
        if let Ok(style) = ProgressStyle::with_template("{msg:40} [{bar:30}] {elapsed}/{duration}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(label.to_owned());
        Progress {
            bar: Some((bar, Instant::now())),
        }
    }

    fn tick(&self) {
        if let Some((bar, start)) = &self.bar {
            bar.set_position(u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX));
        }
    }

    fn finish(&self) {
        if let Some((bar, _)) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
