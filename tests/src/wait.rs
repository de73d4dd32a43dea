//! Polling with a deadline: tests wait for an observable condition, never for a fixed time.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often [`wait_until`] re-checks its condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Polls `condition` every [`POLL_INTERVAL`] until it returns true (→ `true`) or `timeout` has
/// passed (→ `false`). The condition is always checked at least once, and once more at the
/// deadline, so a slow machine never loses a last chance.
///
/// Capture references with `move`, so the future does not borrow from the closure:
/// `let js = &js; wait_until(t, move || async move { js.count("S").await == 3 }).await`.
pub async fn wait_until<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
