//! Progress of long work (checkpoint, restore, rebuild, DLQ replay): a bar with rate and ETA
//! on a terminal, a plain line every few seconds otherwise (logs, CI, `| tee`), and a closing
//! line either way. Goes to stderr, so stdout stays for results.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a plain (non-terminal) progress line is printed, at most, unless the command line
/// says otherwise (`--progress-every`).
pub const PLAIN_EVERY_DEFAULT: Duration = Duration::from_secs(5);
/// The process-wide interval of plain lines, in milliseconds: a display preference of the whole
/// command, like whether stderr is a terminal, so every piece of work follows it.
static PLAIN_EVERY_MS: AtomicU64 = AtomicU64::new(PLAIN_EVERY_DEFAULT.as_millis() as u64);

/// Sets how often plain progress lines are printed (0: at every update).
pub fn set_plain_every(every: Duration) {
    PLAIN_EVERY_MS.store(u64::try_from(every.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
}

fn plain_every() -> Duration {
    Duration::from_millis(PLAIN_EVERY_MS.load(Ordering::Relaxed))
}

/// One piece of long work, counted in `unit`s (e.g. "messages", "bytes").
pub struct Progress {
    what: String,
    unit: &'static str,
    total: Option<u64>,
    done: u64,
    started: Instant,
    bar: Option<ProgressBar>,
    last_line: Instant,
}

impl Progress {
    /// Starts reporting `what` (e.g. "rebuild"); a bar on a terminal, plain lines otherwise.
    pub fn new(what: &str, unit: &'static str, total: Option<u64>) -> Progress {
        Progress::with_terminal(what, unit, total, std::io::stderr().is_terminal())
    }

    /// As `new`, deciding bar or plain lines explicitly (tests, `--no-progress`).
    pub fn with_terminal(what: &str, unit: &'static str, total: Option<u64>, terminal: bool) -> Progress {
        let bar = terminal.then(|| {
            let bar = match total {
                Some(total) => ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()),
                None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            };
            let template = match (total.is_some(), unit == "bytes") {
                (true, true) => "{prefix}: [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec}, ETA {eta}",
                (true, false) => "{prefix}: [{bar:30}] {human_pos}/{human_len} {msg} {per_sec}, ETA {eta}",
                (false, true) => "{prefix}: {spinner} {bytes} {binary_bytes_per_sec}",
                (false, false) => "{prefix}: {spinner} {human_pos} {msg} {per_sec}",
            };
            // The templates above are fixed and valid; a bad one would be a programmer error.
            let style =
                ProgressStyle::with_template(template).expect("progress template is valid").progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(what.to_string());
            if unit != "bytes" {
                bar.set_message(unit);
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress { what: what.into(), unit, total, done: 0, started: Instant::now(), bar, last_line: Instant::now() }
    }

    /// The total became known (or changed, e.g. the stream grew during a rebuild).
    pub fn set_total(&mut self, total: u64) {
        self.total = Some(total);
        if let Some(bar) = &self.bar {
            bar.set_length(total);
        }
    }

    /// Sets the amount done so far.
    pub fn set(&mut self, done: u64) {
        self.done = done;
        match &self.bar {
            Some(bar) => bar.set_position(done),
            None => {
                if self.last_line.elapsed() >= plain_every() {
                    self.last_line = Instant::now();
                    eprintln!("{}", self.line());
                }
            }
        }
    }

    /// Adds `n` to the amount done.
    pub fn add(&mut self, n: u64) {
        self.set(self.done + n);
    }

    pub fn done(&self) -> u64 {
        self.done
    }

    /// Ends the display with a last line saying how much was done and how fast:
    /// `rebuild: 5712 messages in 3.1 s (1842/s)`.
    pub fn finish(self) {
        self.finish_with("");
    }

    /// As `finish`, with a note after the figures (e.g. how many files were hard-linked).
    pub fn finish_with(self, note: &str) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let seconds = self.started.elapsed().as_secs_f64();
        let per_sec = self.per_sec(rate(self.done, seconds));
        let note = if note.is_empty() { String::new() } else { format!("; {note}") };
        eprintln!("{}: {} in {seconds:.1} s ({per_sec}){note}", self.what, self.amount(self.done));
    }

    /// `rebuild: 12000 of 50000 messages (24 %), 5100/s, ETA 7 s`.
    fn line(&self) -> String {
        let seconds = self.started.elapsed().as_secs_f64();
        let per_sec = self.per_sec(rate(self.done, seconds));
        match self.total {
            Some(total) if total > 0 => {
                let percent = self.done.saturating_mul(100) / total;
                let eta =
                    eta_secs(self.done, total, seconds).map(|s| format!("{s} s")).unwrap_or_else(|| "unknown".into());
                let done = self.count(self.done);
                format!("{}: {done} of {} ({percent} %), {per_sec}, ETA {eta}", self.what, self.amount(total))
            }
            _ => format!("{}: {}, {per_sec}", self.what, self.amount(self.done)),
        }
    }

    /// `n` with its unit: `5712 messages`, `1.50 GiB`.
    fn amount(&self, n: u64) -> String {
        if self.unit == "bytes" {
            HumanBytes(n).to_string()
        } else {
            format!("{n} {}", self.unit)
        }
    }

    /// `n` alone where the unit follows (`12000` of `50000 messages`); bytes keep theirs.
    fn count(&self, n: u64) -> String {
        if self.unit == "bytes" {
            HumanBytes(n).to_string()
        } else {
            n.to_string()
        }
    }

    fn per_sec(&self, n: u64) -> String {
        if self.unit == "bytes" {
            format!("{}/s", HumanBytes(n))
        } else {
            format!("{n}/s")
        }
    }
}

fn rate(done: u64, seconds: f64) -> u64 {
    if seconds <= 0.0 {
        return 0;
    }
    (done as f64 / seconds) as u64
}

/// Seconds left at the rate so far; unknown before anything was done.
fn eta_secs(done: u64, total: u64, seconds: f64) -> Option<u64> {
    if done == 0 || seconds <= 0.0 {
        return None;
    }
    let left = total.saturating_sub(done) as f64;
    Some((left * seconds / done as f64).ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the ETA is the time left at the rate so far, and unknown before any progress.
    #[test]
    fn eta_follows_the_rate_so_far() {
        assert_eq!(eta_secs(0, 100, 5.0), None);
        assert_eq!(eta_secs(25, 100, 5.0), Some(15));
        assert_eq!(eta_secs(100, 100, 5.0), Some(0));
    }

    // Proves the plain line names the work, the share done, the rate and the ETA.
    #[test]
    fn plain_line_reads_as_a_sentence() {
        let mut progress = Progress::with_terminal("rebuild", "messages", Some(200), false);
        progress.done = 50;
        let line = progress.line();
        assert!(line.starts_with("rebuild: 50 of 200 messages (25 %), "), "{line}");
        assert!(line.contains("/s, ETA "), "{line}");
    }

    // Proves byte counts and rates read as sizes, not as long numbers.
    #[test]
    fn bytes_read_as_sizes() {
        let mut progress = Progress::with_terminal("restore", "bytes", Some(4 << 20), false);
        progress.done = 1 << 20;
        let line = progress.line();
        assert!(line.starts_with("restore: 1.00 MiB of 4.00 MiB (25 %), "), "{line}");
        assert!(line.contains("B/s, ETA "), "{line}");
    }
}
