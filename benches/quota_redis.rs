//! Quota decisions per second against a real redis-server (started here on a free loopback
//! port), 64 concurrent callers, in one run:
//!
//! * `multiplexed script` — what the gateway does: one EVALSHA per decision (check + increment
//!   of every resource, atomically) on one multiplexed connection, so concurrent decisions share
//!   round trips;
//! * `naive round trip` — the baseline: one unpipelined request/response per decision on a
//!   connection that waits for each reply before the next (a lock around a plain connection);
//! * `local` — the in-process backend.
//!
//! Run: `cargo bench --bench quota_redis` (needs `redis-server`: `bash scripts/deps.sh test`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tenant_gateway::config::{Period, QuotaBackendKind, QuotaConfig};
use tenant_gateway::quota::{
    unix_now, window_key, Demand, LocalQuotaStore, QuotaStore, RedisQuotaStore, Window,
};
use tenant_gateway::redis_client::{RedisClient, RedisTarget};

const CALLERS: usize = 64;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

struct RedisServer(std::process::Child);

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis(port: u16) -> RedisServer {
    let child = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server not found: bash scripts/deps.sh test (apt-get install redis-server)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    RedisServer(child)
}

fn demands(tenant: usize) -> Vec<Demand<'static>> {
    let now = unix_now();
    let w1 = Window::of(Period::Hour, now);
    let w2 = Window::of(Period::Month, now);
    let t = format!("t{tenant}");
    vec![
        Demand {
            resource: "requests",
            key: window_key(&t, "requests", &w1),
            amount: 1,
            limit: u64::MAX / 2,
            window: w1,
            handles: None,
        },
        Demand {
            resource: "messages",
            key: window_key(&t, "messages", &w2),
            amount: 1,
            limit: u64::MAX / 2,
            window: w2,
            handles: None,
        },
    ]
}

/// A decision function for [`run`]: true when `store` allows every demand.
fn allowed_by<S: QuotaStore + 'static>(
    store: Arc<S>,
) -> impl Fn(Vec<Demand<'static>>) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>
       + Send
       + Sync
       + Clone
       + 'static {
    move |d| {
        let s = store.clone();
        Box::pin(async move {
            s.check(&d)
                .await
                .map(|o| o.rejected.is_none())
                .unwrap_or(false)
        })
    }
}

async fn run<F, Fut>(name: &str, decisions: usize, decide: F) -> f64
where
    F: Fn(Vec<Demand<'static>>) -> Fut + Send + Sync + 'static + Clone,
    Fut: std::future::Future<Output = bool> + Send,
{
    let started = Instant::now();
    let per = decisions / CALLERS;
    let mut tasks = Vec::new();
    for c in 0..CALLERS {
        let decide = decide.clone();
        tasks.push(tokio::spawn(async move {
            let mut ok = 0usize;
            for _ in 0..per {
                if decide(demands(c % 16)).await {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.expect("task");
    }
    let secs = started.elapsed().as_secs_f64();
    let rate = (per * CALLERS) as f64 / secs;
    println!("{name:<22} {rate:>10.0} decisions/s  ({ok} admitted, {secs:.2} s)");
    rate
}

fn main() {
    // `cargo bench` passes --bench; under `cargo test` this runs once, small, as a smoke test.
    let full = std::env::args().any(|a| a == "--bench");
    let (rounds, decisions) = if full { (3, 100_000) } else { (1, 6_400) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let port = free_port();
    let _redis = start_redis(port);
    let url = format!("redis://127.0.0.1:{port}");
    rt.block_on(async {
        let cfg = QuotaConfig {
            backend: QuotaBackendKind::Redis,
            redis_url: url.clone(),
            timeout: Duration::from_secs(2),
            ..QuotaConfig::default()
        };
        let client = Arc::new(RedisClient::unregistered(RedisTarget {
            urls: vec![cfg.redis_url.clone()],
            cluster: false,
            request_deadline: cfg.timeout,
            probe_interval: cfg.probe_interval,
        }));
        // The health probe connects the client and keeps it marked up.
        tokio::spawn({
            let client = client.clone();
            async move { client.run_health_probe().await }
        });
        while !client.is_up() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let store = Arc::new(RedisQuotaStore::new(client));

        let naive_conn = redis::Client::open(url.as_str())
            .expect("client")
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        // One request at a time on the connection: each decision waits for the previous reply.
        let naive = Arc::new(tokio::sync::Mutex::new(naive_conn));

        let local = Arc::new(LocalQuotaStore::new());
        println!("{CALLERS} concurrent callers, {decisions} decisions of 2 resources each");
        for round in 0..rounds {
            println!("-- round {}", round + 1);
            let multiplexed = run("multiplexed script", decisions, allowed_by(store.clone())).await;
            let n = naive.clone();
            let naive_rate = run("naive round trip", decisions, move |d| {
                let n = n.clone();
                async move {
                    let mut c = n.lock().await;
                    let mut pipe_free = redis::cmd("INCRBY");
                    pipe_free.arg(&d[0].key).arg(1);
                    pipe_free.query_async::<i64>(&mut *c).await.is_ok()
                }
            })
            .await;
            run("local", decisions, allowed_by(local.clone())).await;
            println!("multiplexed / naive = {:.1}x", multiplexed / naive_rate);
        }
    });
}
