//! Polling for a condition: [`eventually`] retries a probe until it yields a value, which it
//! returns, or panics naming what it waited for.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often [`eventually`] probes.
const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// What a probe of [`eventually`] returns: `Option<T>` (done with `Some(value)`) or `bool`
/// (done with `true`, value `()`).
pub trait Probe {
    type Value;
    fn into_value(self) -> Option<Self::Value>;
}

impl<T> Probe for Option<T> {
    type Value = T;
    fn into_value(self) -> Option<T> {
        self
    }
}

impl Probe for bool {
    type Value = ();
    fn into_value(self) -> Option<()> {
        self.then_some(())
    }
}

/// Runs `probe` every 25 ms until it yields a value and returns that value; panics with `what`
/// after `timeout`.
pub async fn eventually<F, Fut, P>(timeout: Duration, what: &str, mut probe: F) -> P::Value
where
    F: FnMut() -> Fut,
    Fut: Future<Output = P>,
    P: Probe,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await.into_value() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
