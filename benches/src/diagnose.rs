//! Where the time goes in one run, without a profiler: CPU time per thread
//! (from `/proc/self/task`, Linux only) and, for durable runs, how many
//! invocations each `fdatasync` covered (a [`FaultyFs`] with no faults
//! configured counts syncs and appends and otherwise passes through).
//!
//! A thread near 100% of a core is the bottleneck; few invocations per
//! fsync mean group commit is not batching.

use std::{collections::BTreeMap, sync::Arc, time::Instant};

use statefn_store::{Faults, FaultyFs, StdFs};

/// Per-thread CPU seconds, by thread name, at one moment.
#[derive(Debug, Clone)]
pub struct ThreadTimes {
    at: Instant,
    seconds: BTreeMap<String, f64>,
}

/// Clock ticks per second of `/proc` times (`USER_HZ`, 100 on Linux).
const TICKS_PER_S: f64 = 100.0;

impl ThreadTimes {
    /// Reads every thread's user+system time; threads of one name (tokio
    /// workers) are summed.
    pub fn now() -> ThreadTimes {
        Self::of_tasks("/proc/self/task")
    }

    /// As [`now`](Self::now), for the threads of process `pid` (a child:
    /// a server under load).
    pub fn of_process(pid: u32) -> ThreadTimes {
        Self::of_tasks(&format!("/proc/{pid}/task"))
    }

    fn of_tasks(dir: &str) -> ThreadTimes {
        let mut seconds = BTreeMap::new();
        if let Ok(tasks) = std::fs::read_dir(dir) {
            for task in tasks.flatten() {
                let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                    continue;
                };
                if let Some((name, ticks)) = parse_stat(&stat) {
                    *seconds.entry(name).or_insert(0.0) += ticks / TICKS_PER_S;
                }
            }
        }
        ThreadTimes {
            at: Instant::now(),
            seconds,
        }
    }

    /// Each thread name's CPU seconds since `earlier`.
    pub fn seconds_since(&self, earlier: &ThreadTimes) -> BTreeMap<String, f64> {
        self.seconds
            .iter()
            .map(|(name, &s)| {
                let before = earlier.seconds.get(name).copied().unwrap_or(0.0);
                (name.clone(), s - before)
            })
            .collect()
    }

    /// Each thread name's share of one core since `earlier` (1.0 = a core
    /// fully busy), busiest first.
    pub fn busy_since(&self, earlier: &ThreadTimes) -> Vec<(String, f64)> {
        let wall = self.at.duration_since(earlier.at).as_secs_f64().max(1e-9);
        let mut busy: Vec<(String, f64)> = self
            .seconds
            .iter()
            .map(|(name, &s)| {
                let before = earlier.seconds.get(name).copied().unwrap_or(0.0);
                (name.clone(), (s - before) / wall)
            })
            .filter(|(_, share)| *share > 0.005)
            .collect();
        busy.sort_by(|a, b| b.1.total_cmp(&a.1));
        busy
    }
}

/// `(comm, utime + stime)` from a `/proc/.../stat` line; `comm` may hold
/// spaces, so fields are counted after its closing parenthesis.
fn parse_stat(stat: &str) -> Option<(String, f64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?;
    // A trailing number (`statefn-worker-1`) is folded so workers sum up.
    let name = name
        .trim_end_matches(|c: char| c.is_ascii_digit())
        .to_owned();
    let fields: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
    // After comm: state is field 3, utime 14, stime 15 (1-based).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

/// CPU seconds (user + system, all threads) of process `pid` so far; 0 if
/// it cannot be read.
pub fn process_cpu_s(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| parse_stat(&stat))
        .map_or(0.0, |(_, ticks)| ticks / TICKS_PER_S)
}

/// A pass-through file system that counts the log's appends and syncs
/// (counting only: recording writes for power cuts would add a read per
/// write to every commit).
pub fn counting_fs() -> (Arc<FaultyFs>, Faults) {
    let fs = Arc::new(FaultyFs::counting_only(Arc::new(StdFs)));
    let faults = fs.faults();
    (fs, faults)
}

/// `name=0.93 other=0.40`, for the table's extra column.
pub fn format_busy(busy: &[(String, f64)]) -> String {
    busy.iter()
        .map(|(name, share)| format!("{name}={share:.2}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::parse_stat;

    #[test]
    fn parses_names_with_spaces_and_folds_numbers() {
        let stat = "42 (statefn-worker-1) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0";
        assert_eq!(parse_stat(stat), Some(("statefn-worker-".into(), 300.0)));
        let spaced = "7 (a b) R 1 2 3 4 5 6 7 8 9 10 1 2 0";
        assert_eq!(parse_stat(spaced), Some(("a b".into(), 3.0)));
    }
}
