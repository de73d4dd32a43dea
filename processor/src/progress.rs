//! Progress of long work (checkpoint, restore, rebuild, DLQ replay): a bar with rate and ETA
//! on a terminal, a plain line every few seconds otherwise (logs, CI, `| tee`), and a closing
//! line either way. Goes to stderr, so stdout stays for results.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a plain (non-terminal) progress line is printed, at most.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

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
            let style = ProgressStyle::with_template(template).expect("progress template is valid").progress_chars("=> ");
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
                if self.last_line.elapsed() >= PLAIN_EVERY {
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

    /// Ends the display with a last line saying how much was done and how fast.
    pub fn finish(self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let seconds = self.started.elapsed().as_secs_f64();
        eprintln!("{}: {} {} in {:.1} s ({}/s)", self.what, self.done, self.unit, seconds, rate(self.done, seconds));
    }

    /// `rebuild: 12000 of 50000 messages (24 %), 5100/s, ETA 7 s`.
    fn line(&self) -> String {
        let seconds = self.started.elapsed().as_secs_f64();
        let per_sec = rate(self.done, seconds);
        match self.total {
            Some(total) if total > 0 => {
                let percent = self.done.saturating_mul(100) / total;
                let eta = eta_secs(self.done, total, seconds).map(|s| format!("{s} s")).unwrap_or_else(|| "unknown".into());
                format!("{}: {} of {} {} ({percent} %), {per_sec}/s, ETA {eta}", self.what, self.done, total, self.unit)
            }
            _ => format!("{}: {} {}, {per_sec}/s", self.what, self.done, self.unit),
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
}
