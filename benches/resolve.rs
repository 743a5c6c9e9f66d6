//! Hot-path micro-benchmarks: tenant resolution at 10 / 10,000 / 100,000 tenants, snapshot
//! compile time and memory, local quota decisions, request-id generation. Before criterion runs,
//! a counting allocator reports allocations per resolution and the memory of a compiled snapshot.

use std::alloc::System;
use std::hint::black_box;
use std::path::PathBuf;

use criterion::{BenchmarkId, Criterion};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use tenant_gateway::config::{
    parse_toml, BrandingConfig, GatewayConfig, Period, RawConfig, TenantConfig, TenantFile,
    TenantStatus, TenantUpstreamConfig,
};
use tenant_gateway::quota::{window_key, Demand, LocalQuotaStore, Window};
use tenant_gateway::snapshot::Snapshot;
use tenant_gateway::tenant::{resolve, ResolveInput};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const GATEWAY: &str = r#"
[server]
http_listen = ["127.0.0.1:8080"]
base_domains = ["localhost", "gateway.example.com"]
[upstreams.shared]
addrs = ["127.0.0.1:3000"]
[plans.free]
features = ["chat", "analytics"]
quotas.requests = { limit = 20, period = "second" }
quotas.messages = { limit = 1000, period = "month" }
"#;

fn raw_config(tenants: usize) -> RawConfig {
    let gateway: GatewayConfig = parse_toml("gateway.toml", GATEWAY).expect("bench config");
    let tenants = (0..tenants)
        .map(|i| TenantFile {
            file: format!("tenants/t{i}.toml"),
            tenant: TenantConfig {
                id: format!("t{i}"),
                organization_id: format!("org_{i:08x}"),
                name: format!("Tenant {i}"),
                plan: "free".into(),
                status: TenantStatus::Active,
                subdomain: None,
                custom_domains: vec![format!("app.customer{i}.com")],
                features_enabled: vec![],
                features_disabled: vec![],
                upstream: TenantUpstreamConfig::Named("shared".into()),
                schema: Some(format!("tenant_{i}")),
                quotas: Default::default(),
                branding: BrandingConfig::default(),
                api_keys: vec![],
            },
        })
        .collect();
    RawConfig {
        dir: PathBuf::from("."),
        main_file: "gateway.toml".into(),
        gateway,
        tenants,
        content_hash: 0,
    }
}

fn hosts(n: usize) -> Vec<String> {
    // A spread of names: subdomains (with port, as browsers send them) and custom domains.
    (0..1024)
        .map(|k| {
            let i = (k * 7919) % n;
            if k % 4 == 0 {
                format!("app.customer{i}.com")
            } else {
                format!("t{i}.localhost:8080")
            }
        })
        .collect()
}

/// Allocation and memory facts, printed once.
fn report() {
    println!("== allocation report ==");
    for n in [10usize, 10_000, 100_000] {
        let raw = raw_config(n);
        let region = Region::new(GLOBAL);
        // What a reload does: validate (the clone is dropped inside the region), then compile.
        let snapshot = Snapshot::compile(raw.clone().validate().expect("valid"));
        let stats = region.change();
        let live = stats.bytes_allocated as i64 - stats.bytes_deallocated as i64
            + stats.bytes_reallocated as i64;
        let hosts = hosts(n);
        let region = Region::new(GLOBAL);
        for h in &hosts {
            let input = ResolveInput {
                host: Some(h),
                ..Default::default()
            };
            black_box(resolve(&snapshot.hosts, &input).is_ok());
        }
        let per = region.change().allocations as f64 / hosts.len() as f64;
        println!(
            "tenants={n:>6}: snapshot {:.1} MiB ({:.0} bytes/tenant), {:.2} allocations per resolve",
            live as f64 / 1048576.0,
            live as f64 / n as f64,
            per
        );
        drop(snapshot);
    }
    // Other hot-path pieces, per call.
    let now = 1_800_000_000;
    let store = LocalQuotaStore::new();
    let demand = [unlimited_demand("requests", Window::of(Period::Hour, now))];
    black_box(store.check_at(&demand, now));
    allocations_per_call("local quota decision (key built)", || {
        black_box(store.check_at(&demand, now));
    });
    allocations_per_call("quota key for the current window", || {
        black_box(window_key(
            "acme",
            "requests",
            &Window::of(Period::Hour, black_box(now)),
        ));
    });
    allocations_per_call("request id generation", || {
        black_box(tenant_gateway::request_id::generate());
    });
}

/// Prints the allocations of one call of `f`, averaged over 1000 calls.
fn allocations_per_call(what: &str, mut f: impl FnMut()) {
    let region = Region::new(GLOBAL);
    for _ in 0..1000 {
        f();
    }
    println!(
        "{what}: {:.2} allocations",
        region.change().allocations as f64 / 1000.0
    );
}

/// One unit of `resource` for tenant `acme` in `window`, never over its limit.
fn unlimited_demand(resource: &'static str, window: Window) -> Demand<'static> {
    Demand {
        resource,
        key: window_key("acme", resource, &window),
        amount: 1,
        limit: u64::MAX,
        window,
        handles: None,
    }
}

fn bench_resolve(c: &mut Criterion) {
    let mut group = c.benchmark_group("resolve");
    for n in [10usize, 10_000, 100_000] {
        let snapshot = Snapshot::compile(raw_config(n).validate().expect("valid"));
        let hosts = hosts(n);
        let mut i = 0usize;
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) & 1023;
                let input = ResolveInput {
                    host: Some(&hosts[i]),
                    ..Default::default()
                };
                black_box(resolve(&snapshot.hosts, &input).map(|(t, _)| t.id.len()))
            })
        });
    }
    group.finish();
}

fn bench_compile(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    for n in [10_000usize, 100_000] {
        let raw = raw_config(n);
        group.bench_with_input(BenchmarkId::from_parameter(n), &raw, |b, raw| {
            // Validation and compilation, as on a reload (plus the clone validation consumes).
            b.iter(|| {
                let valid = raw.clone().validate().expect("valid");
                black_box(Snapshot::compile(valid).hosts.len())
            })
        });
    }
    group.finish();
}

fn bench_quota(c: &mut Criterion) {
    let store = LocalQuotaStore::new();
    let now = 1_800_000_000;
    let one = [unlimited_demand("requests", Window::of(Period::Hour, now))];
    let two = [
        one[0].clone(),
        unlimited_demand("messages", Window::of(Period::Month, now)),
    ];
    c.bench_function("quota/local_one_resource", |b| {
        b.iter(|| black_box(store.check_at(&one, now)))
    });
    c.bench_function("quota/local_two_resources", |b| {
        b.iter(|| black_box(store.check_at(&two, now)))
    });
    c.bench_function("quota/window_label_and_key", |b| {
        b.iter(|| {
            black_box(window_key(
                "acme",
                "requests",
                &Window::of(Period::Minute, black_box(now)),
            ))
        })
    });
    c.bench_function("request_id/generate", |b| {
        b.iter(|| black_box(tenant_gateway::request_id::generate()))
    });
}

fn main() {
    report();
    let mut c = Criterion::default().configure_from_args();
    bench_resolve(&mut c);
    bench_compile(&mut c);
    bench_quota(&mut c);
    c.final_summary();
}
