//! Quota slice: exact limits across gateway nodes sharing Redis (standalone and Cluster),
//! all-or-nothing decisions, window roll-over, content-length consumption, tenant overrides,
//! the Redis outage policy, and the usage/billing admin API. Every case that does not need
//! several nodes runs on both backends (`local` and `redis`).

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::harness::quota::{
    admin_json, billing, clear_of_hour_boundary, get, host, next_second, post, send, start_gateway,
    unix_now_f64, usage, used, QuotaSettings, Reply, Store,
};
use crate::harness::{
    eventually, family_sum, find_sample, raw_http, Echo, Gateway, Redis, RedisCluster, TenantToml,
};

/// Limit of the `exact` plan (requests an hour) and how many requests the load sends.
const EXACT_LIMIT: u64 = 500;
const EXACT_TOTAL: usize = 1000;
const CLIENTS: usize = 64;

/// Exact-count tests must not see an hour (or day, or month) window roll over.
const BOUNDARY_MARGIN: Duration = Duration::from_secs(90);

/// Generous per-request bound during a Redis outage (the configured timeout is far lower).
const OUTAGE_BOUND: Duration = Duration::from_secs(1);

/// `"name";a=1;b=2` → (name, 1, 2) for each comma-separated item of a `header` value `v`,
/// whose two parameters are `keys` in that order.
fn parse_items(header: &str, v: &str, keys: [&str; 2]) -> Vec<(String, u64, u64)> {
    v.split(',')
        .map(|item| {
            let parts: Vec<&str> = item.trim().split(';').collect();
            assert_eq!(parts.len(), 3, "{header} item {item:?} of {v:?}");
            let num = |p: &str, key: &str| -> u64 {
                p.strip_prefix(key)
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("{key}… expected in {item:?} of {v:?}"))
            };
            (
                parts[0].trim_matches('"').to_string(),
                num(parts[1], keys[0]),
                num(parts[2], keys[1]),
            )
        })
        .collect()
}

/// `"requests";r=12;t=345` → (resource, remaining, reset) for each comma-separated item.
fn parse_ratelimit(v: &str) -> Vec<(String, u64, u64)> {
    parse_items("RateLimit", v, ["r=", "t="])
}

/// `"messages";q=3;w=2592000` → resource → (quota, window) for each comma-separated item.
fn parse_policy(v: &str) -> BTreeMap<String, (u64, u64)> {
    parse_items("RateLimit-Policy", v, ["q=", "w="])
        .into_iter()
        .map(|(resource, quota, window)| (resource, (quota, window)))
        .collect()
}

/// Resource → remaining units of a parsed `RateLimit` header.
fn remaining_of(limits: &[(String, u64, u64)]) -> BTreeMap<&str, u64> {
    limits.iter().map(|(n, r, _)| (n.as_str(), *r)).collect()
}

#[track_caller]
fn header<'a>(r: &'a Reply, name: &str) -> &'a str {
    r.header(name)
        .unwrap_or_else(|| panic!("no {name} on {} {:?} {}", r.status, r.headers, r.body))
}

/// Length of a calendar month in seconds (28..=31 days).
fn is_month_length(w: u64) -> bool {
    (28..=31).any(|d| w == d * 86_400)
}

#[track_caller]
fn assert_status(r: &Reply, status: u16, what: &str) {
    assert_eq!(
        r.status, status,
        "{what}: got {} {:?} {}",
        r.status, r.headers, r.body
    );
}

// ---------------------------------------------------------------------------------------------
// One gateway per backend

#[derive(Debug, Clone, Copy)]
enum Backend {
    Local,
    Redis,
}

/// Settings of the exactness gateways: deny and a long timeout, so that a slow decision under
/// load is a visible failure and never a silent extra admission.
fn exact_settings(store: Store) -> QuotaSettings {
    QuotaSettings::new(store)
        .on_backend_error("deny")
        .timeout("2s")
}

/// A gateway on the quota config, with its echo upstream and (for `redis`) its own Redis.
/// Fields drop in order: gateway first.
struct Fixture {
    gw: Gateway,
    _redis: Option<Redis>,
    _echo: Echo,
}

impl Fixture {
    /// Starts it clear of an hour boundary, so that exact counts see no window roll over.
    async fn start(backend: Backend) -> Fixture {
        clear_of_hour_boundary(BOUNDARY_MARGIN).await;
        Fixture::start_any_time(backend).await
    }

    /// Starts it at once (for tests whose windows are shorter than an hour).
    async fn start_any_time(backend: Backend) -> Fixture {
        let echo = Echo::start().await;
        let redis = match backend {
            Backend::Local => None,
            Backend::Redis => Some(Redis::start().await),
        };
        let store = redis
            .as_ref()
            .map_or(Store::Local, |r| Store::Redis(r.url()));
        let gw = start_gateway(&echo, &exact_settings(store)).await;
        Fixture {
            gw,
            _redis: redis,
            _echo: echo,
        }
    }
}

/// The two tests of a scenario `async fn(Backend)`: `$redis` on Redis, `$local` in memory.
macro_rules! on_both_backends {
    ($scenario:ident => $redis:ident, $local:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $redis() {
            $scenario(Backend::Redis).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $local() {
            $scenario(Backend::Local).await;
        }
    };
}

/// Posts `count` messages as `tenant`, each of which must be admitted.
async fn send_messages(gw: &Gateway, tenant: &str, count: usize) {
    for i in 0..count {
        assert_status(
            &post(gw, tenant, "/api/messages", 0).await,
            200,
            &format!("message {i}"),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 1 and 8: exactness across two gateway nodes

/// Sends `EXACT_TOTAL` requests as tenant `acme` from `CLIENTS` concurrent tasks, alternating
/// between the two gateways, and checks that exactly `EXACT_LIMIT` were admitted, with the
/// contract headers on every answer, the shared count on both nodes, and the metrics.
async fn admits_exactly_the_limit(gateways: &[Gateway; 2]) {
    let clients = (0..CLIENTS).map(|task| async move {
        let mut out = Vec::new();
        for i in (task..EXACT_TOTAL).step_by(CLIENTS) {
            let node = i % 2;
            let path = format!("/work/{i}");
            out.push((
                node,
                send(&gateways[node], Method::GET, "acme", &path, None).await,
            ));
        }
        out
    });
    let replies: Vec<(usize, Reply)> = futures_util::future::join_all(clients)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(replies.len(), EXACT_TOTAL);

    let others: Vec<String> = replies
        .iter()
        .filter(|(_, r)| r.status != 200 && r.status != 429)
        .take(5)
        .map(|(n, r)| format!("node {n}: {} {}", r.status, r.body))
        .collect();
    assert!(others.is_empty(), "answers other than 200/429: {others:?}");

    let admitted: Vec<&(usize, Reply)> = replies.iter().filter(|(_, r)| r.status == 200).collect();
    let per_node = [0, 1].map(|n| admitted.iter().filter(|(node, _)| *node == n).count());
    assert_eq!(
        admitted.len() as u64,
        EXACT_LIMIT,
        "admitted across both nodes (node 0: {}, node 1: {})",
        per_node[0],
        per_node[1]
    );
    assert!(
        per_node.iter().all(|&n| n > 0),
        "both nodes should have admitted some requests: {per_node:?}"
    );

    let policy = format!("\"requests\";q={EXACT_LIMIT};w=3600");
    // Every admission took one distinct unit of the shared counter: remaining 499 … 0.
    let mut remaining: Vec<u64> = Vec::with_capacity(admitted.len());
    for (_, r) in &admitted {
        assert_eq!(header(r, "ratelimit-policy"), policy);
        let limit = parse_ratelimit(header(r, "ratelimit"));
        assert_eq!(limit.len(), 1, "{limit:?}");
        let (resource, left, reset) = &limit[0];
        assert_eq!(resource, "requests");
        assert!((1..=3600).contains(reset), "t={reset}");
        remaining.push(*left);
    }
    remaining.sort_unstable();
    assert_eq!(
        remaining,
        (0..EXACT_LIMIT).collect::<Vec<_>>(),
        "each admitted request must see its own counter value"
    );

    for (_, r) in replies.iter().filter(|(_, r)| r.status == 429) {
        r.assert_quota_exceeded("requests");
        let retry = r.retry_after();
        assert!((1..=3600).contains(&retry), "Retry-After {retry}");
        assert_eq!(header(r, "ratelimit-policy"), policy);
        let limit = parse_ratelimit(header(r, "ratelimit"));
        assert_eq!(limit.len(), 1, "{limit:?}");
        assert_eq!(limit[0].0, "requests");
        assert_eq!(limit[0].1, 0, "r= on a rejection");
        assert!((1..=3600).contains(&limit[0].2), "t={}", limit[0].2);
    }

    // Both nodes report the shared count, and keep rejecting.
    for gw in gateways {
        let u = usage(gw, "acme").await;
        assert_eq!(u["requests"]["used"], EXACT_LIMIT, "{u}");
        assert_eq!(u["requests"]["limit"], EXACT_LIMIT, "{u}");
        assert_eq!(u["requests"]["period"], "hour", "{u}");
        let resets = u["requests"]["resets_at"].as_str().expect("resets_at");
        assert!(
            resets.ends_with(":00:00Z"),
            "hour window resets on the hour: {resets}"
        );
        get(gw, "acme", "/after")
            .await
            .assert_quota_exceeded("requests");
    }

    // Metrics: the decisions add up across nodes, and no decision failed.
    let mut allowed = 0.0;
    let mut rejected = 0.0;
    for gw in gateways {
        let text = gw.metrics().await;
        assert!(
            text.contains(
                "gateway_quota_decisions_total{decision=\"rejected\",resource=\"requests\",tenant=\"acme\"}"
            ),
            "rejection sample missing from /metrics:\n{text}"
        );
        allowed += find_sample(
            &text,
            "gateway_quota_decisions_total{tenant=\"acme\",resource=\"requests\",decision=\"allowed\"}",
        )
        .unwrap_or(0.0);
        rejected += find_sample(
            &text,
            "gateway_quota_decisions_total{tenant=\"acme\",resource=\"requests\",decision=\"rejected\"}",
        )
        .unwrap_or(0.0);
        assert_eq!(
            family_sum(&text, "gateway_quota_backend_errors_total"),
            0.0,
            "no backend errors expected"
        );
    }
    assert_eq!(allowed, EXACT_LIMIT as f64);
    // The load's rejections plus one follow-up request per node.
    assert_eq!(rejected, (EXACT_TOTAL as u64 - EXACT_LIMIT + 2) as f64);
}

/// Two gateway nodes on `store`, clear of an hour boundary, admit exactly the limit.
async fn exact_limit_across_two_gateways(store: Store) {
    clear_of_hour_boundary(BOUNDARY_MARGIN).await;
    let echo = Echo::start().await;
    let settings = exact_settings(store);
    let gateways = [
        start_gateway(&echo, &settings).await,
        start_gateway(&echo, &settings).await,
    ];
    admits_exactly_the_limit(&gateways).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_limit_across_two_gateways_on_redis() {
    let redis = Redis::start().await;
    exact_limit_across_two_gateways(Store::Redis(redis.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_limit_across_two_gateways_on_redis_cluster() {
    let cluster = RedisCluster::start().await;
    exact_limit_across_two_gateways(Store::Cluster(cluster.urls())).await;

    // The counter is `tg:{acme}:requests:<hour label>`, readable through the cluster.
    let label = chrono::Utc::now().format("%Y-%m-%dT%H").to_string();
    let key = format!("tg:{{acme}}:requests:{label}");
    assert_eq!(
        cluster.get(&key).await,
        EXACT_LIMIT.to_string(),
        "GET {key}"
    );
    // Every key the gateways wrote carries the tenant hash tag, so all of acme's keys sit in
    // the slot of "acme", on one node.
    let acme_slot = cluster.keyslot("acme").await;
    let by_node = cluster.keys_by_node().await;
    let holders: Vec<u16> = by_node
        .iter()
        .filter(|(_, keys)| !keys.is_empty())
        .map(|(port, _)| *port)
        .collect();
    assert_eq!(holders.len(), 1, "keys on more than one node: {by_node:?}");
    for (_, keys) in &by_node {
        for k in keys {
            assert!(
                k.starts_with("tg:{acme}:"),
                "key without the tenant hash tag: {k}"
            );
            assert_eq!(cluster.keyslot(k).await, acme_slot, "slot of {k}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2: all-or-nothing

async fn all_or_nothing(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let gw = &fx.gw;
    send_messages(gw, "aon", 2).await;
    assert_eq!(used(gw, "aon", "requests").await, 2);
    assert_eq!(used(gw, "aon", "messages").await, 2);

    // A batch needs 2 messages; 1 is left. Requests have room, yet neither counter moves.
    let r = post(gw, "aon", "/api/batch", 0).await;
    r.assert_quota_exceeded("messages");
    let policy = parse_policy(header(&r, "ratelimit-policy"));
    assert_eq!(policy["requests"], (100, 3600), "{policy:?}");
    assert_eq!(policy["messages"].0, 3, "{policy:?}");
    assert!(is_month_length(policy["messages"].1), "{policy:?}");
    let limits = parse_ratelimit(header(&r, "ratelimit"));
    let left = remaining_of(&limits);
    assert_eq!(left["requests"], 98, "{limits:?}");
    assert_eq!(left["messages"], 1, "{limits:?}");
    let retry = r.retry_after();
    assert!(
        retry >= 1 && retry <= policy["messages"].1,
        "Retry-After {retry}"
    );
    assert_eq!(
        used(gw, "aon", "requests").await,
        2,
        "a rejected request consumed `requests`"
    );
    assert_eq!(used(gw, "aon", "messages").await, 2);

    // The last message fills the quota; the next one is rejected and consumes nothing.
    assert_status(
        &post(gw, "aon", "/api/messages", 0).await,
        200,
        "third message",
    );
    post(gw, "aon", "/api/messages", 0)
        .await
        .assert_quota_exceeded("messages");
    let u = usage(gw, "aon").await;
    assert_eq!(u["requests"]["used"], 3, "{u}");
    assert_eq!(u["messages"]["used"], 3, "{u}");
    assert_eq!(u["messages"]["limit"], 3, "{u}");
    assert_eq!(u["messages"]["period"], "month", "{u}");

    // Requests that do not consume messages still pass.
    assert_status(&get(gw, "aon", "/plain").await, 200, "plain GET");
    assert_eq!(used(gw, "aon", "requests").await, 4);
}

on_both_backends!(all_or_nothing => all_or_nothing_redis, all_or_nothing_local);

// ---------------------------------------------------------------------------------------------
// 3: a one-second window rolls over

async fn second_window_rolls_over(backend: Backend) {
    let fx = Fixture::start_any_time(backend).await;
    let gw = &fx.gw;
    // Four requests within one wall-clock second (checked on our clock: the gateway decides
    // between our send and our receive), so all four fall in one window.
    let mut attempt = 0;
    let (second, replies) = loop {
        attempt += 1;
        next_second().await;
        let start = unix_now_f64();
        let mut replies = Vec::with_capacity(4);
        for i in 0..4 {
            replies.push(get(gw, "roll", &format!("/tick/{attempt}/{i}")).await);
        }
        if unix_now_f64().floor() == start.floor() {
            break (start.floor(), replies);
        }
        assert!(attempt < 10, "4 requests never fitted in one second");
    };
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 200, 429], "{replies:#?}");
    for (r, left) in replies.iter().zip([2, 1, 0]) {
        assert_eq!(header(r, "ratelimit-policy"), "\"requests\";q=3;w=1");
        assert_eq!(header(r, "ratelimit"), format!("\"requests\";r={left};t=1"));
    }
    let rejected = &replies[3];
    rejected.assert_quota_exceeded("requests");
    assert_eq!(rejected.retry_after(), 1);
    assert_eq!(header(rejected, "ratelimit"), "\"requests\";r=0;t=1");

    // The next window admits again.
    let received = eventually(
        Duration::from_secs(5),
        "admitted again after the one-second window was full",
        || async {
            let r = get(gw, "roll", "/tick/next").await;
            let received = unix_now_f64();
            match r.status {
                200 => return Some(received),
                429 => r.assert_quota_exceeded("requests"),
                _ => assert_status(&r, 200, "after the window"),
            }
            None
        },
    )
    .await;
    assert!(
        received >= second + 1.0,
        "admitted again within the full second {second}"
    );
}

on_both_backends!(second_window_rolls_over => second_window_rolls_over_redis, second_window_rolls_over_local);

// ---------------------------------------------------------------------------------------------
// 4: consumption by Content-Length

async fn content_length_consumption(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let gw = &fx.gw;
    let first = post(gw, "uploads", "/api/uploads", 600).await;
    assert_status(&first, 200, "first 600-byte upload");
    let echoed: Value = serde_json::from_str(&first.body).expect("echo JSON");
    assert!(
        echoed.to_string().contains("600"),
        "the upstream should have received the body: {echoed}"
    );

    let r = post(gw, "uploads", "/api/uploads", 600).await;
    r.assert_quota_exceeded("storage_bytes");
    let policy = parse_policy(header(&r, "ratelimit-policy"));
    assert_eq!(policy["storage_bytes"], (1000, 86_400), "{policy:?}");
    let limits = parse_ratelimit(header(&r, "ratelimit"));
    let left = remaining_of(&limits);
    assert_eq!(left["storage_bytes"], 400, "{limits:?}");
    let retry = r.retry_after();
    assert!((1..=86_400).contains(&retry), "Retry-After {retry}");

    assert_status(
        &post(gw, "uploads", "/api/uploads", 300).await,
        200,
        "300-byte upload",
    );
    let u = usage(gw, "uploads").await;
    assert_eq!(u["storage_bytes"]["used"], 900, "{u}");
    assert_eq!(u["storage_bytes"]["limit"], 1000, "{u}");
    assert_eq!(u["storage_bytes"]["period"], "day", "{u}");
    assert_eq!(
        u["requests"]["used"], 2,
        "the rejected upload consumed a request: {u}"
    );
}

on_both_backends!(content_length_consumption => content_length_consumption_redis, content_length_consumption_local);

// ---------------------------------------------------------------------------------------------
// 5: a tenant's override beats its plan

async fn tenant_override_beats_plan(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let gw = &fx.gw;
    for (i, left) in [1, 0].into_iter().enumerate() {
        let r = get(gw, "tight", "/o").await;
        assert_status(&r, 200, &format!("request {i}"));
        assert_eq!(header(&r, "ratelimit-policy"), "\"requests\";q=2;w=3600");
        let limit = parse_ratelimit(header(&r, "ratelimit"));
        assert_eq!(limit[0].1, left, "{limit:?}");
    }
    let r = get(gw, "tight", "/o").await;
    r.assert_quota_exceeded("requests");
    assert_eq!(header(&r, "ratelimit-policy"), "\"requests\";q=2;w=3600");
    let u = usage(gw, "tight").await;
    assert_eq!(u["requests"]["limit"], 2, "{u}");
    assert_eq!(u["requests"]["used"], 2, "{u}");
    // The plan's own limit (5) still applies to a tenant without an override.
    for i in 0..3 {
        assert_status(&get(gw, "open", "/o").await, 200, &format!("open {i}"));
    }
}

on_both_backends!(tenant_override_beats_plan => tenant_override_beats_plan_redis, tenant_override_beats_plan_local);

// ---------------------------------------------------------------------------------------------
// 7: Redis dies and comes back

/// Requests as `tenant` until the first 429 (up to 15 s); the statuses seen before it.
async fn until_rejected(gw: &Gateway, tenant: &str, allowed: &[u16]) -> Vec<u16> {
    let seen = std::cell::RefCell::new(Vec::new());
    let what = format!("{tenant}: limits enforced again after Redis came back");
    eventually(Duration::from_secs(15), &what, || async {
        let r = get(gw, tenant, "/recovering").await;
        if r.status == 429 {
            r.assert_quota_exceeded("requests");
            return true;
        }
        let mut seen = seen.borrow_mut();
        assert!(
            allowed.contains(&r.status),
            "{tenant}: unexpected {} {} while recovering (seen {seen:?})",
            r.status,
            r.body
        );
        seen.push(r.status);
        false
    })
    .await;
    seen.into_inner()
}

/// Decisions of `tenant` made without Redis (`decision="backend_error"`).
async fn unbacked(gw: &Gateway, tenant: &str) -> f64 {
    let sample = format!(
        "gateway_quota_decisions_total{{tenant=\"{tenant}\",resource=\"requests\",decision=\"backend_error\"}}"
    );
    find_sample(&gw.metrics().await, &sample).unwrap_or(0.0)
}

/// Sends `count` requests as `tenant` while Redis is away: each is answered within
/// `OUTAGE_BOUND` and passes `check`, and the tenant's decisions made without Redis rise above
/// `unbacked_before`.
async fn requests_during_outage(
    gw: &Gateway,
    tenant: &str,
    count: usize,
    unbacked_before: f64,
    check: impl Fn(&Reply),
) {
    for i in 0..count {
        let r = get(gw, tenant, &format!("/down/{i}")).await;
        check(&r);
        assert!(
            r.elapsed < OUTAGE_BOUND,
            "{tenant}: request {i} took {:?} during the outage",
            r.elapsed
        );
    }
    let unbacked_after = unbacked(gw, tenant).await;
    assert!(
        unbacked_after > unbacked_before,
        "gateway_quota_decisions_total{{decision=\"backend_error\"}} of {tenant} did not rise: \
         {unbacked_before} → {unbacked_after}"
    );
}

/// How Redis goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outage {
    /// SIGKILL, then a fresh (empty) Redis on the same port.
    Kill,
    /// SIGSTOP, then SIGCONT: connections stay open and nothing answers, so only the
    /// gateway's `timeout` bounds a decision; the counters survive.
    Freeze,
}

async fn redis_outage(outage: Outage) {
    clear_of_hour_boundary(BOUNDARY_MARGIN).await;
    let echo = Echo::start().await;
    let mut redis = Redis::start().await;
    let store = Store::Redis(redis.url());
    // A short timeout, as in production, but not so short that a loaded test box times out
    // while Redis is healthy.
    let open = start_gateway(
        &echo,
        &QuotaSettings::new(store.clone())
            .on_backend_error("allow")
            .timeout("200ms"),
    )
    .await;
    let closed = start_gateway(
        &echo,
        &QuotaSettings::new(store)
            .on_backend_error("deny")
            .timeout("200ms"),
    )
    .await;

    // Healthy: counted (plan `small`: 5 requests an hour).
    for i in 0..3 {
        assert_status(&get(&open, "open", "/up").await, 200, &format!("open {i}"));
        assert_status(
            &get(&closed, "closed", "/up").await,
            200,
            &format!("closed {i}"),
        );
    }
    assert_eq!(used(&open, "open", "requests").await, 3);
    assert_eq!(used(&closed, "closed", "requests").await, 3);
    // Decisions made without Redis (a failed call, or the breaker already open because the
    // health probe saw Redis go: then no decision waits at all).
    let open_errors = unbacked(&open, "open").await;
    let closed_errors = unbacked(&closed, "closed").await;

    match outage {
        Outage::Kill => redis.kill(),
        Outage::Freeze => redis.signal("STOP"),
    }

    // allow: every request answered 2xx, promptly, and counted as a backend error.
    requests_during_outage(&open, "open", 20, open_errors, |r| {
        assert!(
            (200..300).contains(&r.status),
            "allow policy during the outage: {} {}",
            r.status,
            r.body
        );
    })
    .await;
    // deny: 503 QUOTA_BACKEND_UNAVAILABLE, promptly.
    requests_during_outage(&closed, "closed", 10, closed_errors, |r| {
        assert_eq!(
            (r.status, r.body.as_str()),
            (
                503,
                r#"{"success":false,"error":"Quota backend unavailable","code":"QUOTA_BACKEND_UNAVAILABLE"}"#
            ),
            "deny policy during the outage"
        );
    })
    .await;
    // The usage report cannot read counters either.
    let (status, body) = admin_json(&closed, "/admin/v1/tenants/closed/usage")
        .await
        .expect("usage during the outage");
    assert_eq!(status, 503, "usage during the outage: {body}");
    assert_eq!(body["code"], "QUOTA_BACKEND_UNAVAILABLE", "{body}");

    // Redis is back: the gateways use it again without a restart and enforce the limits.
    match outage {
        Outage::Kill => redis.restart().await,
        Outage::Freeze => {
            // Scripts sent during the freeze must run past their deadline (quota.timeout +
            // the 50 ms clock-skew allowance) to count nothing: hold the freeze that long after
            // the last one (a script resumed within the allowance may count; see the README).
            tokio::time::sleep(Duration::from_millis(400)).await;
            redis.signal("CONT")
        }
    }
    // allow: the 20 admissions made without Redis are written back before anything else
    // counts, so the counter is over the limit and the first request is refused.
    open.wait_metric("gateway_quota_pending_keys", 0.0).await;
    let open_seen = until_rejected(&open, "open", &[200]).await;
    let closed_seen = until_rejected(&closed, "closed", &[200, 503]).await;
    let closed_admitted = closed_seen.iter().filter(|&&s| s == 200).count();
    let open_used = used(&open, "open", "requests").await;
    let closed_used = used(&closed, "closed", "requests").await;
    assert!(
        open_seen.is_empty(),
        "allow: the written-back admissions fill the limit: {open_seen:?}"
    );
    assert_eq!(closed_used, 5, "deny: counter at the limit");
    match outage {
        Outage::Kill => {
            // A fresh, empty Redis (the 3 counted before the kill are lost with it) holds
            // exactly the 20 admitted during the outage.
            assert_eq!(open_used, 20, "allow: written back after the restart");
            assert_eq!(
                closed_admitted, 5,
                "deny policy: every admission after the restart is counted: {closed_seen:?}"
            );
        }
        Outage::Freeze => {
            assert_eq!(
                open_used,
                3 + 20,
                "allow: 3 before the freeze + 20 written back"
            );
            // The counters survived at 3; requests answered 503 during the freeze must not
            // have consumed anything, so 2 are left.
            assert_eq!(
                closed_admitted, 2,
                "deny policy: requests refused with 503 while Redis was frozen consumed \
                 quota once Redis resumed (statuses after resume: {closed_seen:?})"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_follows_policy_and_recovers() {
    redis_outage(Outage::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_redis_is_cut_off_by_the_timeout() {
    redis_outage(Outage::Freeze).await;
}

// ---------------------------------------------------------------------------------------------
// Limits raised by a reload, and uploads without a Content-Length

async fn raised_limit_applies_at_once(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let gw = &fx.gw;
    send_messages(gw, "aon", 3).await;
    post(gw, "aon", "/api/messages", 0)
        .await
        .assert_quota_exceeded("messages");

    // The tenant upgrades: 10 messages a month from now on.
    gw.write_tenant(
        &TenantToml::new("aon")
            .plan("metered")
            .line("[quotas]")
            .line("messages = { limit = 10, period = \"month\" }"),
    );
    let (status, body) = gw.reload().await;
    assert_eq!(status, 200, "reload: {body}");
    eventually(
        Duration::from_secs(10),
        "override of aon loaded",
        || async { usage(gw, "aon").await["messages"]["limit"] == 10 },
    )
    .await;
    let r = post(gw, "aon", "/api/messages", 0).await;
    assert_status(
        &r,
        200,
        "4th message after the limit was raised from 3 to 10 (same month)",
    );
    assert_eq!(used(gw, "aon", "messages").await, 4);
}

on_both_backends!(raised_limit_applies_at_once => raised_limit_applies_at_once_redis, raised_limit_applies_at_once_local);

/// A rejection decided from the local "known full" cache still reports the other resources'
/// remaining units truthfully (or leaves them out), never more than there are.
async fn ratelimit_never_overstates_remaining(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let gw = &fx.gw;
    send_messages(gw, "aon", 3).await;
    // messages is full now (and known to be): 3 of 100 requests are used, 97 left.
    let full = post(gw, "aon", "/api/messages", 0).await;
    full.assert_quota_exceeded("messages");
    let limits = parse_ratelimit(header(&full, "ratelimit"));
    if let Some((_, left, _)) = limits.iter().find(|(n, _, _)| n == "requests") {
        assert!(
            *left <= 97,
            "RateLimit claims {left} requests left, 97 are: {}",
            header(&full, "ratelimit")
        );
    }
}

on_both_backends!(ratelimit_never_overstates_remaining => ratelimit_never_overstates_remaining_redis, ratelimit_never_overstates_remaining_local);

async fn chunked_upload_cannot_bypass_storage_quota(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let gw = &fx.gw;
    assert_status(
        &post(gw, "uploads", "/api/uploads", 1000).await,
        200,
        "1000-byte upload fills the quota",
    );
    // 600 more bytes, chunked: no Content-Length to consume from.
    let body = "x".repeat(600);
    let head = format!(
        "POST /api/uploads HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        host("uploads"),
        body.len()
    );
    let r = raw_http(gw.http_addr(), &head).await;
    assert!(
        !(200..300).contains(&r.status),
        "a chunked 600-byte upload was admitted with the 1000-byte storage quota full ({} {})",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
}

on_both_backends!(chunked_upload_cannot_bypass_storage_quota => chunked_upload_cannot_bypass_storage_quota_redis, chunked_upload_cannot_bypass_storage_quota_local);

// ---------------------------------------------------------------------------------------------
// 9: usage and billing report what was consumed

async fn usage_and_billing(backend: Backend) {
    let fx = Fixture::start(backend).await;
    let gw = &fx.gw;
    // The tenant's override (10 a month) allows more than the plan includes (2).
    send_messages(gw, "bill", 5).await;
    let month = chrono::Utc::now().format("%Y-%m").to_string();
    let u = usage(gw, "bill").await;
    assert_eq!(u["messages"]["used"], 5, "{u}");
    assert_eq!(u["messages"]["limit"], 10, "{u}");
    assert_eq!(u["messages"]["period"], "month", "{u}");
    let resets = u["messages"]["resets_at"].as_str().expect("resets_at");
    assert!(
        resets.ends_with("-01T00:00:00Z") && resets > month.as_str(),
        "month window resets on the 1st of next month: {resets}"
    );
    assert_eq!(u["requests"]["used"], 5, "{u}");
    assert_eq!(u["requests"]["limit"], 100, "{u}");

    let (status, b) = billing(gw, "bill", &month).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["tenant"], "bill", "{b}");
    assert_eq!(b["plan"], "billed", "{b}");
    assert_eq!(b["month"], month.as_str(), "{b}");
    assert_eq!(b["base_price"].as_f64(), Some(29.0), "{b}");
    let lines = b["resources"].as_array().expect("resources");
    assert_eq!(lines.len(), 1, "only monthly resources are billed: {b}");
    let m = &lines[0];
    assert_eq!(m["resource"], "messages", "{b}");
    assert_eq!(m["used"], 5, "{b}");
    assert_eq!(m["limit"], 10, "{b}");
    assert_eq!(m["included"], 2, "{b}");
    assert_eq!(m["overage_units"], 3, "{b}");
    assert_eq!(m["unit_price"].as_f64(), Some(0.5), "{b}");
    assert_eq!(m["overage_cost"].as_f64(), Some(1.5), "{b}");
    assert_eq!(b["total"].as_f64(), Some(30.5), "{b}");

    // Without `month`: the current month.
    let (status, current) = admin_json(gw, "/admin/v1/tenants/bill/billing")
        .await
        .expect("billing answers");
    assert_eq!(status, 200, "{current}");
    assert_eq!(current["total"].as_f64(), Some(30.5), "{current}");

    // A month long past: nothing used, base price only.
    let (status, past) = billing(gw, "bill", "2020-01").await;
    assert_eq!(status, 200, "{past}");
    assert_eq!(past["resources"][0]["used"], 0, "{past}");
    assert_eq!(past["resources"][0]["overage_units"], 0, "{past}");
    assert_eq!(past["total"].as_f64(), Some(29.0), "{past}");

    for bad in ["2026-13", "2026-00", "garbage", "2026-1"] {
        let (status, body) = billing(gw, "bill", bad).await;
        assert_eq!(status, 400, "month={bad}: {body}");
        assert_eq!(body["success"], false, "month={bad}: {body}");
    }
    let (status, body) = billing(gw, "nobody", &month).await;
    assert_eq!(status, 404, "unknown tenant: {body}");

    // The admin API needs the token.
    let resp = gw
        .admin(Method::GET, "/admin/v1/tenants/bill/usage", None)
        .send()
        .await
        .expect("usage without token");
    assert_eq!(resp.status(), 401);
}

on_both_backends!(usage_and_billing => usage_and_billing_report_consumption_redis, usage_and_billing_report_consumption_local);
