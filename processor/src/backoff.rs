//! Waiting before trying again. Every retry loop in tally (the commit, the outbox publisher, the
//! ERP webhook and each of its stores, the Alertmanager pusher, the DLQ replay) backs off the
//! same way: the first wait is `min`, each failure doubles it up to `max`, a success starts over.
//! A failing dependency is then retried quickly at first and at most every `max` later, without
//! a loop spinning against it.

use std::time::Duration;

use tokio::sync::watch;

/// Capped exponential backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Waits from `min` doubling to `max`; a `max` below `min` is taken as `min`.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff { min, max: max.max(min), next: min }
    }

    /// A failure: how long to wait before the next try. The wait after it doubles, up to `max`.
    pub fn failed(&mut self) -> Duration {
        let wait = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        wait
    }

    /// A success: the next failure waits `min` again.
    pub fn succeeded(&mut self) {
        self.next = self.min;
    }

    /// The wait the next failure will get.
    pub fn next_wait(&self) -> Duration {
        self.next
    }

    /// A failure, waited out: sleeps for [`Backoff::failed`], or returns true early when
    /// shutdown is requested.
    pub async fn wait_or_shutdown(&mut self, shutdown: &mut watch::Receiver<bool>) -> bool {
        wait_or_shutdown(shutdown, self.failed()).await
    }
}

/// Sleeps, or returns true early when shutdown is requested.
pub async fn wait_or_shutdown(shutdown: &mut watch::Receiver<bool>, wait: Duration) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(wait) => *shutdown.borrow(),
        _ = shutdown.changed() => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    // Waits double from min, stop at max, and a success starts over from min.
    #[test]
    fn doubles_to_the_cap_and_resets() {
        let mut backoff = Backoff::new(100 * MS, 500 * MS);
        let waits: Vec<_> = (0..5).map(|_| backoff.failed()).collect();
        assert_eq!(waits, [100 * MS, 200 * MS, 400 * MS, 500 * MS, 500 * MS]);
        backoff.succeeded();
        assert_eq!(backoff.next_wait(), 100 * MS);
        assert_eq!(backoff.failed(), 100 * MS);
    }

    // A cap below the first wait (Alertmanager's is its resend interval) never waits less than min.
    #[test]
    fn cap_below_min_is_min() {
        let mut backoff = Backoff::new(500 * MS, 100 * MS);
        assert_eq!([backoff.failed(), backoff.failed()], [500 * MS, 500 * MS]);
    }

    // Doubling a huge wait saturates instead of panicking on overflow.
    #[test]
    fn huge_waits_saturate() {
        let mut backoff = Backoff::new(Duration::MAX / 2 + MS, Duration::MAX);
        backoff.failed();
        assert_eq!(backoff.failed(), Duration::MAX);
    }

    // Shutdown cuts a wait short; without it the wait runs out and reports no shutdown.
    #[tokio::test]
    async fn shutdown_cuts_the_wait_short() {
        let (tx, mut rx) = watch::channel(false);
        assert!(!wait_or_shutdown(&mut rx, 10 * MS).await);
        let waiting = tokio::spawn(async move {
            Backoff::new(Duration::from_secs(3600), Duration::MAX).wait_or_shutdown(&mut rx).await
        });
        tx.send(true).expect("the waiting task holds the receiver");
        assert!(waiting.await.expect("the wait does not panic"));
    }
}
