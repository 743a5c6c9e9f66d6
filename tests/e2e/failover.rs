//! Quota continuity through Redis failures (issue 17) and Redis under a deadline (issue 11,
//! item 13): two gateway processes per failure policy (`allow`, `local`, `deny`) under steady
//! load while the Redis that holds their tenants' counters dies — the master of their slot in a
//! Redis Cluster of 3 masters + 3 replicas (SIGKILL, replica promoted), or a standalone Redis
//! (SIGKILL, restarted from its append-only file). Asserted for every policy:
//!
//! (a) once the breaker is open, decisions stop waiting for Redis (requests stay fast);
//! (b) `local` admits at most the limit plus the documented staleness allowance;
//! (c) `allow` (and `local`): after recovery, Redis and the usage API count every admission;
//! (d) `deny` stays exact;
//! (e) no request takes longer than `quota.timeout` + 100 ms.
//!
//! Each run prints the figures the README's "Redis failures" table shows.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::quota::{backend_errors, clear_of_hour_boundary, used, QuotaSettings, Store};
use crate::harness::redis::redis_cli;
use crate::harness::{eventually, Echo, Gateway, GatewayConfig, Redis, RedisCluster, TenantToml};

/// Requests an hour each tenant may make.
const LIMIT: u64 = 300;
/// `quota.timeout` of every gateway here.
const TIMEOUT: Duration = Duration::from_millis(100);
/// Load: clients per gateway, each sending one request per `PACE`.
const CLIENTS_PER_NODE: usize = 1;
const PACE: Duration = Duration::from_millis(20);
/// `quota.fallback_share` for two nodes.
const SHARE: &str = "0.5";
/// What `local` may admit beyond the limit (README, "Redis failures"): the other node's
/// admissions this node had not seen at its last look (its in-flight requests then), plus, when
/// the nodes resume Redis at different moments, what the other node admitted locally and had
/// not written back yet when this node resumed — at most its fallback allowance,
/// `fallback_share × room`, room ≤ the limit.
const LOCAL_STALENESS_ALLOWANCE: u64 = 2 * CLIENTS_PER_NODE as u64 + LIMIT / 2;

/// Load before the failure and after recovery.
const STEADY: Duration = Duration::from_millis(1500);

const POLICIES: [&str; 3] = ["allow", "local", "deny"];

/// One request as the load client saw it.
#[derive(Debug, Clone, Copy)]
struct Sample {
    started: Instant,
    latency: Duration,
    status: u16,
}

/// The two gateways of one policy and the tenant they serve.
struct PolicyNodes {
    policy: &'static str,
    tenant: String,
    nodes: Vec<Gateway>,
    samples: Arc<Mutex<Vec<Sample>>>,
}

fn settings(store: &Store, policy: &'static str) -> QuotaSettings {
    QuotaSettings::new(store.clone())
        .on_backend_error(policy)
        .timeout("100ms")
        .line(&format!("fallback_share = {SHARE}"))
        .line("breaker_failures = 3")
        .line("probe_interval = \"100ms\"")
}

fn config(echo: &Echo, store: &Store, policy: &'static str, tenant: &str) -> GatewayConfig {
    GatewayConfig::with_echo(echo)
        .extra(&settings(store, policy).to_toml())
        .extra(&format!(
            "[plans.failover]\nquotas.requests = {{ limit = {LIMIT}, period = \"hour\" }}\n"
        ))
        .tenant(TenantToml::new(tenant).plan("failover"))
}

/// Waits until the gateway's Redis health probe succeeds.
async fn wait_redis_up(gw: &Gateway, within: Duration) {
    eventually(within, "gateway_redis_up = 1", || async {
        gw.metric_value("gateway_redis_up").await == Some(1.0)
    })
    .await;
}

/// Sends `GET /` as `tenant` every `PACE` until `stop`, recording every answer.
fn spawn_load(
    gw: &Gateway,
    tenant: &str,
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..CLIENTS_PER_NODE)
        .map(|_| {
            let client = gw.client().clone();
            let url = format!("{}/", gw.http_url());
            let host = format!("{tenant}.localhost");
            let stop = stop.clone();
            let samples = samples.clone();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let status = client
                        .get(&url)
                        .header("host", &host)
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await
                        .map_or(0, |r| r.status().as_u16());
                    let latency = started.elapsed();
                    samples.lock().expect("samples").push(Sample {
                        started,
                        latency,
                        status,
                    });
                    tokio::time::sleep(PACE.saturating_sub(latency)).await;
                }
            })
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The figures of one policy through one failure.
#[derive(Debug)]
struct Figures {
    policy: &'static str,
    outage: Duration,
    admitted: u64,
    admitted_during_outage: u64,
    refused_during_outage: (u64, u64),
    counted: u64,
    p50_before: Duration,
    p50_open: Duration,
    p99_open: Duration,
    slowest: Duration,
    /// Decisions that asked Redis and failed (each waited at most the timeout), both nodes.
    failed_calls: f64,
    /// Decisions made without Redis (breaker open, or after a failed call), both nodes.
    unbacked: f64,
    /// Failed calls that hit their deadline: a script may still have run late (within the
    /// clock-skew allowance) and counted a request answered by the policy.
    timed_out: u64,
    /// Quota decisions that took longer than `quota.timeout` + 100 ms, both nodes.
    slow_decisions: f64,
}

/// How the Redis of a run fails and comes back.
enum Failure {
    /// SIGKILL of the master of the tenants' slots (`victim`, chosen by the run); a replica
    /// takes over; the killed node is started again afterwards and rejoins as a replica.
    ClusterMaster {
        cluster: RedisCluster,
        victim: usize,
    },
    /// SIGKILL, 2 s down, restart on the same port from the append-only file.
    Standalone(Redis),
}

/// `gateway_redis_up` and `gateway_quota_breaker_state` of `gw` (0 = closed), as sampled now.
async fn redis_health(gw: &Gateway) -> (Option<f64>, Option<f64>) {
    let text = gw.metrics().await;
    (
        crate::harness::find_sample(&text, "gateway_redis_up"),
        crate::harness::find_sample(&text, "gateway_quota_breaker_state"),
    )
}

/// Three tenant ids whose counters live on the same cluster master (the one to kill).
async fn tenants_on_one_master(cluster: &RedisCluster) -> (usize, Vec<String>) {
    let first = "fo0".to_string();
    let victim = cluster.master_of(&format!("{{{first}}}")).await;
    let mut ids = vec![first];
    for i in 1..200 {
        let id = format!("fo{i}");
        if cluster.master_of(&format!("{{{id}}}")).await == victim {
            ids.push(id);
            if ids.len() == POLICIES.len() {
                return (victim, ids);
            }
        }
    }
    panic!("no three tenant ids on one master");
}

async fn run(mut failure: Failure, label: &str) -> Vec<Figures> {
    // The hour window must not roll over during the run.
    clear_of_hour_boundary(Duration::from_secs(90)).await;
    let echo = Echo::start().await;
    let (store, tenants) = match &mut failure {
        Failure::ClusterMaster { cluster, victim } => {
            let (master, ids) = tenants_on_one_master(cluster).await;
            *victim = master;
            (Store::Cluster(cluster.urls()), ids)
        }
        Failure::Standalone(node) => (
            Store::Redis(node.url()),
            POLICIES.iter().map(|p| format!("fo-{p}")).collect(),
        ),
    };
    let mut runs = Vec::new();
    for (policy, tenant) in POLICIES.iter().zip(&tenants) {
        let mut nodes = Vec::new();
        for _ in 0..2 {
            nodes.push(config(&echo, &store, policy, tenant).start().await);
        }
        runs.push(PolicyNodes {
            policy,
            tenant: tenant.clone(),
            nodes,
            samples: Arc::new(Mutex::new(Vec::new())),
        });
    }
    for r in &runs {
        for gw in &r.nodes {
            wait_redis_up(gw, Duration::from_secs(20)).await;
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for r in &runs {
        for gw in &r.nodes {
            load.extend(spawn_load(gw, &r.tenant, stop.clone(), r.samples.clone()));
        }
    }
    tokio::time::sleep(STEADY).await;

    let killed_at = Instant::now();
    match &mut failure {
        Failure::ClusterMaster { cluster, victim } => cluster.nodes[*victim].kill(),
        Failure::Standalone(node) => {
            node.kill();
            tokio::time::sleep(Duration::from_secs(2)).await;
            node.restart().await;
        }
    }
    // Every gateway notices (its probe fails or its breaker opens) …
    for gw in runs.iter().flat_map(|r| &r.nodes) {
        eventually(
            Duration::from_secs(10),
            "the gateway notices the failure",
            || async {
                let (up, breaker) = redis_health(gw).await;
                up == Some(0.0) || breaker != Some(0.0)
            },
        )
        .await;
    }
    // … and recovers: its probe succeeds and its breaker has closed again.
    let mut recovered_at = Instant::now();
    for gw in runs.iter().flat_map(|r| &r.nodes) {
        eventually(
            Duration::from_secs(45),
            "gateway_redis_up = 1 and breaker closed after the failure",
            || async { redis_health(gw).await == (Some(1.0), Some(0.0)) },
        )
        .await;
        recovered_at = Instant::now();
    }
    tokio::time::sleep(STEADY).await;
    stop.store(true, Ordering::Relaxed);
    for h in load {
        h.await.expect("load task");
    }
    if let Failure::ClusterMaster { cluster, victim } = &mut failure {
        // The killed master comes back as a replica of the promoted one, no gateway restart.
        cluster.nodes[*victim].restart().await;
        cluster.wait_ok(Duration::from_secs(20)).await;
    }

    let mut figures = Vec::new();
    for r in &runs {
        for gw in &r.nodes {
            eventually(
                Duration::from_secs(10),
                "every admission without Redis written back",
                || async { gw.metric_value("gateway_quota_pending_keys").await == Some(0.0) },
            )
            .await;
        }
        let samples = r.samples.lock().expect("samples").clone();
        for s in &samples {
            assert!(
                matches!(s.status, 200 | 429 | 503),
                "{label}/{}: unexpected status {}",
                r.policy,
                s.status
            );
        }
        let admitted = samples.iter().filter(|s| s.status == 200).count() as u64;
        let in_outage = |s: &&Sample| s.started >= killed_at && s.started <= recovered_at;
        let outage: Vec<&Sample> = samples.iter().filter(in_outage).collect();
        let admitted_during_outage = outage.iter().filter(|s| s.status == 200).count() as u64;
        let refused = (
            outage.iter().filter(|s| s.status == 429).count() as u64,
            outage.iter().filter(|s| s.status == 503).count() as u64,
        );
        // (a) Once the breaker has had time to open (a few failed decisions, each at most one
        // timeout), requests no longer wait for Redis.
        let open_from = killed_at + Duration::from_millis(500);
        let mut open: Vec<Duration> = samples
            .iter()
            .filter(|s| s.started >= open_from && s.started <= recovered_at)
            .map(|s| s.latency)
            .collect();
        open.sort();
        let mut before: Vec<Duration> = samples
            .iter()
            .filter(|s| s.started < killed_at)
            .map(|s| s.latency)
            .collect();
        before.sort();
        let mut failed_calls = 0.0;
        let mut unbacked = 0.0;
        let mut timed_out = 0;
        let mut slow_decisions = 0.0;
        for gw in &r.nodes {
            failed_calls += backend_errors(gw).await;
            timed_out += gw
                .metric("gateway_quota_backend_errors_total{kind=\"timeout\"}")
                .await as u64;
            slow_decisions += gw
                .metric("gateway_quota_backend_duration_seconds_count")
                .await
                - gw.metric("gateway_quota_backend_duration_seconds_bucket{le=\"0.2\"}")
                    .await;
            unbacked += gw
                .metric(&format!(
                    "gateway_quota_decisions_total{{tenant=\"{}\",resource=\"requests\",decision=\"backend_error\"}}",
                    r.tenant
                ))
                .await;
        }
        // (e) is about the failure and the recovery; the warm-up before is the baseline.
        let slowest_sample = samples
            .iter()
            .filter(|s| s.started >= killed_at)
            .max_by_key(|s| s.latency)
            .copied();
        let slowest = slowest_sample.map_or(Duration::ZERO, |s| s.latency);
        if let Some(s) = slowest_sample {
            println!(
                "{label}/{}: slowest request after the kill {:?} (status {}) started +{:?}",
                r.policy,
                s.latency,
                s.status,
                s.started - killed_at
            );
        }
        let counted = used(&r.nodes[0], &r.tenant, "requests").await;
        let f = Figures {
            policy: r.policy,
            outage: recovered_at - killed_at,
            admitted,
            admitted_during_outage,
            refused_during_outage: refused,
            counted,
            p50_before: percentile(&before, 0.5),
            p50_open: percentile(&open, 0.5),
            p99_open: percentile(&open, 0.99),
            slowest,
            failed_calls,
            unbacked,
            timed_out,
            slow_decisions,
        };
        println!("{label}: {f:?}");
        figures.push(f);
    }
    println!("| {label} | policy | outage | admitted / limit | during outage: 200 / 429 / 503 | counted after | waited / decided without Redis | p50 before / while open / p99 while open | slowest after the kill |");
    for f in &figures {
        println!(
            "| {label} | {} | {:.1} s | {} / {LIMIT} | {} / {} / {} | {} | {} / {} | {:.1} / {:.1} / {:.1} ms | {} ms |",
            f.policy,
            f.outage.as_secs_f64(),
            f.admitted,
            f.admitted_during_outage,
            f.refused_during_outage.0,
            f.refused_during_outage.1,
            f.counted,
            f.failed_calls,
            f.unbacked,
            f.p50_before.as_secs_f64() * 1e3,
            f.p50_open.as_secs_f64() * 1e3,
            f.p99_open.as_secs_f64() * 1e3,
            f.slowest.as_millis()
        );
    }
    for f in &figures {
        // (a) Once open, the breaker keeps decisions from Redis: only the few that opened it
        // and at most one trial per probe interval waited; the rest were decided at once, and
        // requests were no slower than with a healthy Redis.
        let trials = f.outage.as_millis() as f64 / 100.0;
        assert!(
            f.failed_calls <= 2.0 * (3.0 + trials),
            "{label}/{}: {} decisions waited for a failing Redis: {f:?}",
            f.policy,
            f.failed_calls
        );
        assert!(
            f.unbacked > 2.0 * f.failed_calls,
            "{label}/{}: too few decisions made without waiting: {f:?}",
            f.policy
        );
        assert!(
            f.p50_open <= f.p50_before + Duration::from_millis(5),
            "{label}/{}: median {:?} while the breaker is open vs {:?} before",
            f.policy,
            f.p50_open,
            f.p50_before
        );
        // (e) No decision waited past its deadline; end to end (a debug build on a shared
        // 2-core box) nothing hung either.
        assert_eq!(
            f.slow_decisions, 0.0,
            "{label}/{}: quota decisions took longer than {TIMEOUT:?} + 100 ms: {f:?}",
            f.policy
        );
        assert!(
            f.slowest < Duration::from_secs(1),
            "{label}/{}: a request took {:?}: {f:?}",
            f.policy,
            f.slowest
        );
        // (c)/(d): every admission is counted, none lost. A call whose reply was lost (deadline
        // passed, or the connection died with the node) may still have run: answered by the
        // policy and counted by Redis — at most one extra count per failed call.
        assert!(
            f.counted >= f.admitted && f.counted as f64 <= f.admitted as f64 + f.failed_calls,
            "{label}/{}: counter {} vs {} admitted ({} failed calls, {} timed out): {f:?}",
            f.policy,
            f.counted,
            f.admitted,
            f.failed_calls,
            f.timed_out
        );
        match f.policy {
            // (c) every admission is in the counter, including those made without Redis.
            "allow" => {
                assert!(
                    f.admitted_during_outage > 0,
                    "{label}/allow admitted nothing during the outage: {f:?}"
                );
            }
            // (b) bounded, and (c) counted too.
            "local" => {
                assert!(
                    f.admitted <= LIMIT + LOCAL_STALENESS_ALLOWANCE,
                    "{label}/local admitted {} (limit {LIMIT}): {f:?}",
                    f.admitted
                );
                assert!(
                    f.admitted_during_outage > 0,
                    "{label}/local admitted nothing during the outage: {f:?}"
                );
            }
            // (d) exact: nothing admitted without Redis, every admission counted.
            _ => {
                assert!(f.admitted <= LIMIT, "{label}/deny over the limit: {f:?}");
                assert!(f.refused_during_outage.1 > 0, "{label}/deny: no 503: {f:?}");
            }
        }
    }
    figures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_master_killed_under_load() {
    let cluster = RedisCluster::start_with(1, 1000).await;
    run(
        Failure::ClusterMaster { cluster, victim: 0 },
        "cluster failover",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standalone_redis_killed_and_restarted_under_load() {
    let node = Redis::start_durable().await;
    run(Failure::Standalone(node), "standalone restart").await;
}

/// Issue 11, item 13: with ACME on, `GET /.well-known/acme-challenge/<token>` answers within
/// `quota.timeout` plus a margin when Redis is frozen (SIGSTOP) or down, and the first quota
/// decision after Redis returns on a node that saw no traffic during the outage is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_or_dead_redis_never_hangs_the_challenge_path_and_recovery_counts() {
    let echo = Echo::start().await;
    let mut redis = Redis::start().await;
    let store = Store::Redis(redis.url());
    let gw = GatewayConfig::with_echo(&echo)
        .extra(&settings(&store, "deny").to_toml())
        .extra("[acme]\nenabled = true\ndirectory_url = \"https://127.0.0.1:9/dir\"\n")
        .extra("[plans.failover]\nquotas.requests = { limit = 50, period = \"hour\" }\n")
        .tenant(TenantToml::new("idle").plan("failover"))
        .start()
        .await;
    wait_redis_up(&gw, Duration::from_secs(20)).await;
    let port = redis.port().to_string();
    let (ok, out) = redis_cli(&[
        "-p",
        &port,
        "SET",
        "tg:acme:http01:sharedtoken",
        "sharedtoken.thumb",
    ])
    .await;
    assert!(ok, "{out}");
    let challenge = |token: &'static str| {
        let req = gw
            .get(
                "anything.example",
                &format!("/.well-known/acme-challenge/{token}"),
            )
            .timeout(Duration::from_secs(30));
        async move {
            let started = Instant::now();
            let resp = req.send().await.expect("challenge answer");
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            (status, body, started.elapsed())
        }
    };
    let (status, body, _) = challenge("sharedtoken").await;
    assert_eq!((status, body.as_str()), (200, "sharedtoken.thumb"));
    assert_eq!(challenge("unknowntoken").await.0, 404);

    let bound = TIMEOUT + Duration::from_millis(150);
    redis.signal("STOP");
    for token in ["sharedtoken", "unknowntoken"] {
        for _ in 0..5 {
            let (status, _, took) = challenge(token).await;
            assert_eq!(status, 503, "frozen Redis: {token}");
            assert!(
                took < bound,
                "frozen Redis: {token} answered after {took:?}"
            );
        }
    }
    redis.signal("CONT");
    wait_redis_up(&gw, Duration::from_secs(10)).await;
    assert_eq!(challenge("sharedtoken").await.0, 200);

    redis.kill();
    eventually(Duration::from_secs(5), "gateway_redis_up = 0", || async {
        gw.metric_value("gateway_redis_up").await == Some(0.0)
    })
    .await;
    let (status, _, took) = challenge("sharedtoken").await;
    assert_eq!(status, 503, "dead Redis");
    assert!(took < bound, "dead Redis: answered after {took:?}");

    // No traffic during the outage; Redis comes back empty. The probe reconnects, so the first
    // decision is made by Redis (deny: a 200, not a 503) and counted.
    redis.restart().await;
    wait_redis_up(&gw, Duration::from_secs(10)).await;
    let first = gw.status("idle.localhost", "/first").await;
    assert_eq!(
        first,
        200,
        "first decision after Redis returned\n{}",
        gw.logs()
    );
    assert_eq!(used(&gw, "idle", "requests").await, 1);
}
