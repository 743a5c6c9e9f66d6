//! The gateway's one Redis client: quotas, ACME (http-01 tokens, issuance locks, certificates,
//! domain state) and the admin API all reach Redis through it. Standalone Redis or Redis Cluster.
//!
//! Every call carries a deadline chosen by the caller: [`RedisClient::request_deadline`]
//! (`quota.timeout`) on the request path, [`BACKGROUND_DEADLINE`] for ACME and admin work. A
//! background health probe ([`RedisClient::run_health_probe`]) pings on an interval, so a
//! broken connection is found and re-established by the probe rather than by the first request
//! after an outage; it exports `gateway_redis_up`. While the probe sees Redis down, calls fail at
//! once instead of waiting for their deadline.
//!
//! It is not a connection pool: both connection kinds are multiplexed and reconnect by
//! themselves once established.

mod failure;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use prometheus::{IntGauge, Registry};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};

pub use failure::{FailureKind, RedisCallError};

/// Deadline of every call made off the request path (ACME storage and locks, admin reads,
/// quota write-back). Long enough for a loaded Redis, short enough that a stalled one never
/// holds a background loop or an admin request for long.
pub const BACKGROUND_DEADLINE: Duration = Duration::from_secs(2);

/// Longest a health probe PING may take before Redis counts as down.
const PROBE_DEADLINE_FLOOR: Duration = Duration::from_millis(500);

/// Where the client connects.
#[derive(Debug, Clone)]
pub struct RedisTarget {
    /// One URL (standalone) or the seed nodes of a cluster.
    pub urls: Vec<String>,
    pub cluster: bool,
    /// Deadline of request-path calls (`quota.timeout`).
    pub request_deadline: Duration,
    /// How often the health probe pings (`quota.probe_interval`).
    pub probe_interval: Duration,
}

/// A live connection: multiplexed, reconnecting on its own once established.
#[derive(Clone)]
enum Connection {
    Single(Box<ConnectionManager>),
    Cluster(redis::cluster_async::ClusterConnection),
}

/// Commands and scripts run on either kind the same way (the cluster one routes by key).
impl ConnectionLike for Connection {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(cmd, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

/// See the module docs.
pub struct RedisClient {
    target: RedisTarget,
    conn: ArcSwapOption<Connection>,
    /// What the last health probe saw; false until the first successful PING.
    up: AtomicBool,
    /// Start (ms since `epoch`) of the newest successful probe: a breaker opened before it may
    /// try Redis again.
    last_ok_started_ms: AtomicU64,
    /// When the current outage began (ms since `epoch`; 0 = none seen yet).
    down_since_ms: AtomicU64,
    epoch: Instant,
    up_gauge: IntGauge,
    /// A key whose calls failed while the probe's PING succeeds (a cluster slot whose master
    /// moved): the probe reads it once under the long background deadline, which gives the
    /// cluster client time to follow the failure, refresh its slot map and reach the new
    /// master — request-path calls are cut off by their short deadline before that.
    route_check: std::sync::Mutex<Option<String>>,
}

impl RedisClient {
    /// A disconnected client; [`RedisClient::run_health_probe`] connects it. Registers
    /// `gateway_redis_up` on `registry`.
    pub fn new(target: RedisTarget, registry: &Registry) -> prometheus::Result<Self> {
        let up_gauge = IntGauge::new(
            "gateway_redis_up",
            "1 while the Redis health probe succeeds, 0 while it fails or before the first connection",
        )?;
        registry.register(Box::new(up_gauge.clone()))?;
        Ok(Self::with_gauge(target, up_gauge))
    }

    /// A client whose `gateway_redis_up` is not registered anywhere (unit tests).
    pub fn unregistered(target: RedisTarget) -> Self {
        let gauge = IntGauge::new("gateway_redis_up", "unregistered").unwrap_or_else(|_| {
            // Only fails for an invalid name, which this constant is not.
            unreachable!("valid metric name")
        });
        Self::with_gauge(target, gauge)
    }

    fn with_gauge(target: RedisTarget, up_gauge: IntGauge) -> Self {
        Self {
            target,
            conn: ArcSwapOption::empty(),
            up: AtomicBool::new(false),
            last_ok_started_ms: AtomicU64::new(0),
            down_since_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            up_gauge,
            route_check: std::sync::Mutex::new(None),
        }
    }

    /// `quota.timeout`: the deadline of calls a client request waits for.
    pub fn request_deadline(&self) -> Duration {
        self.target.request_deadline
    }

    /// Whether the last health probe succeeded.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Milliseconds since this client was created (the clock of [`Self::last_ok_started_ms`]).
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Start time ([`Self::now_ms`] clock) of the newest successful health probe; 0 if none.
    pub fn last_ok_started_ms(&self) -> u64 {
        self.last_ok_started_ms.load(Ordering::Acquire)
    }

    /// Asks the health probe to reach `key`'s node under the background deadline at its next
    /// round (see `route_check`). For callers whose calls fail while the probe's PING succeeds.
    pub fn check_route_of(&self, key: &str) {
        let mut slot = self.route_check.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(key.to_string());
        }
    }

    /// Runs one command under `deadline`.
    pub async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
        deadline: Duration,
    ) -> Result<T, RedisCallError> {
        let mut conn = self.usable()?;
        within(deadline, async move { cmd.query_async(&mut conn).await }).await
    }

    /// Runs a script (EVALSHA, falling back to EVAL once after a Redis restart) under `deadline`.
    pub async fn invoke<T: redis::FromRedisValue>(
        &self,
        inv: &redis::ScriptInvocation<'_>,
        deadline: Duration,
    ) -> Result<T, RedisCallError> {
        let mut conn = self.usable()?;
        within(deadline, async move { inv.invoke_async(&mut conn).await }).await
    }

    /// The connection, unless there is none yet or the probe sees Redis down (fail fast: no
    /// caller should wait out its deadline against a Redis known to be unreachable).
    fn usable(&self) -> Result<Connection, RedisCallError> {
        let conn = self
            .conn
            .load()
            .as_deref()
            .cloned()
            .ok_or(RedisCallError::NotConnected)?;
        if !self.is_up() {
            return Err(RedisCallError::Down);
        }
        Ok(conn)
    }

    async fn connect(&self) -> Result<Connection, redis::RedisError> {
        let urls = &self.target.urls;
        let deadline = self.probe_deadline();
        if self.target.cluster {
            let client = redis::cluster::ClusterClient::builder(urls.clone())
                .connection_timeout(deadline)
                .response_timeout(deadline)
                // Retries inside one call stay well under any caller's deadline; the caller's
                // deadline cuts the rest.
                .retries(3)
                .retry_wait_formula(10, 2)
                .build()?;
            Ok(Connection::Cluster(client.get_async_connection().await?))
        } else {
            let client = redis::Client::open(urls.first().map_or("", String::as_str))?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(deadline)
                // Reconnect quickly once Redis is back: 10ms, 20ms, … capped at 500ms.
                .set_exponent_base(2)
                .set_factor(10)
                .set_max_delay(500)
                .set_number_of_retries(2);
            Ok(Connection::Single(Box::new(
                ConnectionManager::new_with_config(client, config).await?,
            )))
        }
    }

    fn probe_deadline(&self) -> Duration {
        (self.target.request_deadline * 4).max(PROBE_DEADLINE_FLOOR)
    }

    /// Connects, then PINGs every `probe_interval`, forever (stop it by dropping the future,
    /// e.g. in a `select!` with the shutdown signal): keeps `gateway_redis_up` and
    /// [`Self::is_up`] current and makes the client find (and replace) a broken connection
    /// before a request does. Logs each transition once.
    pub async fn run_health_probe(&self) {
        let mut logged_connect_failure = false;
        loop {
            let started = self.now_ms();
            let route = self
                .route_check
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            if let Some(key) = route {
                let read: Result<redis::Value, _> = self
                    .query(redis::cmd("EXISTS").arg(&key), BACKGROUND_DEADLINE)
                    .await;
                tracing::debug!(key, ok = read.is_ok(), "redis route check");
            }
            let ok = match self.conn.load_full() {
                None => match tokio::time::timeout(self.probe_deadline(), self.connect()).await {
                    Ok(Ok(c)) => {
                        self.conn.store(Some(Arc::new(c)));
                        tracing::info!(urls = ?self.target.urls, cluster = self.target.cluster, "redis connected");
                        self.ping().await.is_ok()
                    }
                    Ok(Err(e)) => {
                        if !logged_connect_failure {
                            tracing::warn!(urls = ?self.target.urls, error = %e, "redis not reachable; retrying in the background");
                            logged_connect_failure = true;
                        }
                        false
                    }
                    Err(_) => false,
                },
                Some(_) => self.ping().await.is_ok(),
            };
            self.record_probe(ok, started);
            tokio::time::sleep(self.target.probe_interval).await;
        }
    }

    /// PING on the current connection (on a cluster: every master must answer).
    async fn ping(&self) -> Result<(), RedisCallError> {
        let mut conn = self
            .conn
            .load()
            .as_deref()
            .cloned()
            .ok_or(RedisCallError::NotConnected)?;
        let ping = async move { redis::cmd("PING").query_async::<String>(&mut conn).await };
        within(self.probe_deadline(), ping).await.map(|_| ())
    }

    /// Applies one probe result.
    fn record_probe(&self, ok: bool, started_ms: u64) {
        if ok {
            self.last_ok_started_ms.store(started_ms, Ordering::Release);
            if !self.up.swap(true, Ordering::AcqRel) {
                self.up_gauge.set(1);
                let since = self.down_since_ms.swap(0, Ordering::AcqRel);
                if since > 0 {
                    let outage = Duration::from_millis(self.now_ms().saturating_sub(since));
                    tracing::info!(outage = ?outage, "redis up again");
                }
            }
        } else if self.up.swap(false, Ordering::AcqRel) {
            self.up_gauge.set(0);
            self.down_since_ms
                .store(self.now_ms().max(1), Ordering::Release);
            tracing::warn!(urls = ?self.target.urls, "redis down: health probe failed");
        }
    }

    /// Marks the client up as if a probe had just succeeded (tests of the callers' logic).
    #[cfg(test)]
    pub fn mark_probe(&self, ok: bool) {
        self.record_probe(ok, self.now_ms());
    }
}

/// Runs a Redis future under a deadline.
async fn within<T>(
    deadline: Duration,
    call: impl Future<Output = Result<T, redis::RedisError>>,
) -> Result<T, RedisCallError> {
    match tokio::time::timeout(deadline, call).await {
        Ok(r) => r.map_err(RedisCallError::Redis),
        Err(_) => Err(RedisCallError::Timeout(deadline)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead_target() -> RedisTarget {
        RedisTarget {
            urls: vec!["redis://127.0.0.1:1".into()],
            cluster: false,
            request_deadline: Duration::from_millis(25),
            probe_interval: Duration::from_millis(50),
        }
    }

    #[tokio::test]
    async fn calls_fail_at_once_before_connecting() {
        let c = RedisClient::unregistered(dead_target());
        let started = Instant::now();
        let r: Result<Option<String>, _> = c
            .query(redis::cmd("GET").arg("k"), Duration::from_secs(5))
            .await;
        assert!(matches!(r, Err(RedisCallError::NotConnected)));
        assert!(started.elapsed() < Duration::from_millis(50));
        assert!(!c.is_up());
    }

    #[tokio::test]
    async fn probe_transitions_move_the_gauge_and_the_recovery_clock() {
        let c = RedisClient::unregistered(dead_target());
        assert_eq!(c.up_gauge.get(), 0);
        c.mark_probe(true);
        assert!(c.is_up());
        assert_eq!(c.up_gauge.get(), 1);
        let first_ok = c.last_ok_started_ms();
        c.mark_probe(false);
        assert!(!c.is_up());
        assert_eq!(c.up_gauge.get(), 0);
        tokio::time::sleep(Duration::from_millis(5)).await;
        c.mark_probe(true);
        assert!(c.last_ok_started_ms() > first_ok);
    }

    #[tokio::test]
    async fn probe_against_a_dead_port_stays_down() {
        let c = RedisClient::unregistered(dead_target());
        let probed = tokio::time::timeout(Duration::from_millis(300), c.run_health_probe()).await;
        assert!(probed.is_err(), "the probe runs until dropped");
        assert!(!c.is_up());
        assert_eq!(c.up_gauge.get(), 0);
    }
}
