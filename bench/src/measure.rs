//! What the end-to-end run reads off the machine: the committed position over time, memory
//! (VmHWM/VmRSS), CPU time per process and per thread name, bytes on disk, percentiles and
//! tally's own Prometheus figures. Linux only (procfs); elsewhere the figures read as absent.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tally_processor::memory::status_bytes;
use tally_processor::partitions;
use tally_state::{Overlay, Store};
use tally_topologies::topology::committed_position;

/// How often the poller reads the committed position. It bounds the resolution of
/// publish→commit latencies, so it is part of what the figure means.
pub const POLL_EVERY: Duration = Duration::from_millis(1);

/// One partition's advances: (position, when it was first seen), positions strictly increasing.
type Advances = Vec<(u64, Instant)>;

/// Reads every partition's committed stream position from its state every [`POLL_EVERY`] on
/// its own thread, so the processor's runtime does not delay the observation, and records each
/// advance. A partition's position is the last *stream* sequence it applied, so with several
/// partitions no single position reaches the stream's last sequence: a message is committed
/// once its own partition's position reaches it, and the input is caught up when every
/// partition has reached its own last sequence (`partitions::behind`).
pub struct PositionPoller {
    latest: Arc<Vec<AtomicU64>>,
    advances: Arc<Mutex<Vec<Advances>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PositionPoller {
    /// Polls `stores`, one per partition in partition order.
    pub fn start(stores: Vec<Arc<dyn Store>>) -> PositionPoller {
        let latest: Arc<Vec<AtomicU64>> = Arc::new(stores.iter().map(|_| AtomicU64::new(0)).collect());
        let advances = Arc::new(Mutex::new(vec![Vec::new(); stores.len()]));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("bench-poller".into())
            .spawn({
                let (latest, advances, stop) = (latest.clone(), advances.clone(), stop.clone());
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        poll_once(&stores, &latest, &advances);
                        std::thread::sleep(POLL_EVERY);
                    }
                }
            })
            .expect("spawning a thread only fails when the process is out of resources");
        PositionPoller { latest, advances, stop, thread: Some(thread) }
    }

    /// Every partition's latest committed position, in partition order.
    pub fn positions(&self) -> Vec<u64> {
        self.latest.iter().map(|at| at.load(Ordering::Relaxed)).collect()
    }

    /// The lowest position of the partitions that have not reached their `lasts` (the stream's
    /// last sequence of each, `partitions::last_sequences`); `None` once all have.
    pub fn behind(&self, lasts: &[u64]) -> Option<u64> {
        partitions::behind(&self.positions(), lasts)
    }

    /// When `partition`'s position first reached `seq` or beyond, if it has.
    pub fn reached(&self, partition: u32, seq: u64) -> Option<Instant> {
        let advances = self.advances.lock().unwrap_or_else(|e| e.into_inner());
        let seen = advances.get(partition as usize)?;
        let i = seen.partition_point(|(position, _)| *position < seq);
        seen.get(i).map(|(_, at)| *at)
    }

    /// When the last partition with messages reached its last sequence: the moment the whole
    /// input was committed. `None` before that, or when no partition has messages.
    pub fn caught_up_at(&self, lasts: &[u64]) -> Option<Instant> {
        let mut latest = None;
        for (partition, last) in (0u32..).zip(lasts).filter(|(_, last)| **last > 0) {
            let at = self.reached(partition, *last)?;
            latest = latest.max(Some(at));
        }
        latest
    }

    /// The first commit of each partition, in partition order (`None` for one that has not
    /// committed yet).
    pub fn first_commits(&self) -> Vec<Option<Instant>> {
        let advances = self.advances.lock().unwrap_or_else(|e| e.into_inner());
        advances.iter().map(|seen| seen.first().map(|(_, at)| *at)).collect()
    }

    /// Waits (async) until every partition has reached its `lasts`; false after `timeout`.
    pub async fn wait_until_caught_up(&self, lasts: &[u64], timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.behind(lasts).is_some() {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        true
    }

    /// Waits (async) until some partition has committed; false after `timeout`.
    pub async fn wait_for_first_commit(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.positions().iter().all(|at| *at == 0) {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        true
    }
}

/// One reading of every partition's position, recording those that advanced.
fn poll_once(stores: &[Arc<dyn Store>], latest: &[AtomicU64], advances: &Mutex<Vec<Advances>>) {
    for (partition, store) in stores.iter().enumerate() {
        // A failed read is a corrupt or closed store; the run's timeout reports it.
        let Ok(position) = committed_position(&Overlay::new(store.as_ref())) else { continue };
        if position > latest[partition].load(Ordering::Relaxed) {
            latest[partition].store(position, Ordering::Relaxed);
            advances.lock().unwrap_or_else(|e| e.into_inner())[partition].push((position, Instant::now()));
        }
    }
}

impl Drop for PositionPoller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A `Vm…` line of /proc/self/status, in bytes.
fn proc_status_bytes(field: &str) -> Option<u64> {
    status_bytes(Path::new("/proc/self/status"), field)
}

/// Peak resident set size of this process since start or the last [`reset_peak_rss`].
pub fn peak_rss_bytes() -> Option<u64> {
    proc_status_bytes("VmHWM:")
}

pub fn rss_bytes() -> Option<u64> {
    proc_status_bytes("VmRSS:")
}

/// Peak resident set size of another process since it started.
pub fn process_peak_rss_bytes(pid: u32) -> Option<u64> {
    status_bytes(&Path::new("/proc").join(pid.to_string()).join("status"), "VmHWM:")
}

pub fn process_rss_bytes(pid: u32) -> Option<u64> {
    status_bytes(&Path::new("/proc").join(pid.to_string()).join("status"), "VmRSS:")
}

/// Resets VmHWM to the current RSS (Linux ≥ 4.0), so a phase's peak excludes earlier phases.
/// Returns false when the kernel refused.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// (apparent bytes, bytes allocated on disk) of every file under `dir`, like `du -b` / `du`.
pub fn dir_size(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt as _;
    let mut total = (0, 0);
    let Ok(entries) = std::fs::read_dir(dir) else { return total };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            let (a, d) = dir_size(&entry.path());
            total = (total.0 + a, total.1 + d);
        } else {
            total = (total.0 + meta.len(), total.1 + meta.blocks() * 512);
        }
    }
    total
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// (comm, user + system CPU seconds) from a /proc/…/stat file.
fn stat_cpu(path: &Path) -> Option<(String, f64)> {
    let text = std::fs::read_to_string(path).ok()?;
    // comm is in parentheses and may hold spaces; the fields after it are space-separated.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_string();
    let fields: Vec<&str> = text[close + 2..].split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the state field (3).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((comm, (utime + stime) / ticks_per_second()))
}

/// CPU seconds a process has used so far (user + system).
pub fn process_cpu_secs(pid: u32) -> Option<f64> {
    stat_cpu(&Path::new("/proc").join(pid.to_string()).join("stat")).map(|(_, secs)| secs)
}

/// CPU seconds the calling thread has used (`CLOCK_THREAD_CPUTIME_ID`, nanosecond resolution):
/// what one core spent on the work it ran, whatever else the machine was doing meanwhile.
pub fn thread_cpu_secs() -> f64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into the pointer it is given, which is valid.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    if status != 0 {
        return 0.0;
    }
    now.tv_sec as f64 + now.tv_nsec as f64 * 1e-9
}

/// CPU seconds of this process's live threads, summed by thread name with digits dropped
/// (`rocksdb:low0` and `rocksdb:low1` count together). Threads that ended are not counted.
pub fn threads_cpu_secs() -> BTreeMap<String, f64> {
    let mut by_name = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return by_name };
    for task in tasks.flatten() {
        if let Some((comm, secs)) = stat_cpu(&task.path().join("stat")) {
            let name: String = comm.chars().filter(|c| !c.is_ascii_digit()).collect();
            *by_name.entry(name).or_insert(0.0) += secs;
        }
    }
    by_name
}

/// The difference of two [`threads_cpu_secs`] readings; names with under 10 ms are dropped.
pub fn cpu_delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> Vec<(String, f64)> {
    let mut delta: Vec<(String, f64)> = after
        .iter()
        .map(|(name, secs)| (name.clone(), secs - before.get(name).copied().unwrap_or(0.0)))
        .filter(|(_, secs)| *secs >= 0.01)
        .collect();
    delta.sort_by(|a, b| b.1.total_cmp(&a.1));
    delta
}

/// The nearest-rank percentile `p` (0–100) of sorted `values`.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The sum of every sample of metric `name` (any labels) in Prometheus text.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.strip_prefix(name).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' ')))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves nearest-rank percentiles on a small sample, including the edges.
    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&v, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&v, 0.0), Some(Duration::from_millis(1)));
        assert_eq!(percentile(&[], 50.0), None);
    }

    // Proves metric_sum adds labelled series of one name and ignores longer names.
    #[test]
    fn metric_sum_matches_the_exact_name() {
        let text = "# HELP x\nm_sum 2\nm_sum{a=\"1\"} 3\nm_sum_total 100\nm 7\n";
        assert_eq!(metric_sum(text, "m_sum"), 5.0);
        assert_eq!(metric_sum(text, "m"), 7.0);
    }
}
