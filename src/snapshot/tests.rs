//! Unit tests of validation, compilation, route matching and tenant resolution.

use super::*;
use crate::config::Period;
use crate::config::{load, parse_toml, GatewayConfig, RawConfig};
use crate::tenant::{resolve, ResolveError, ResolveInput, TenantSource};
use crate::test_support::SHARED_POOL_AND_PLANS;

const SERVER: &str = r#"
[server]
http_listen = ["127.0.0.1:0"]
base_domains = ["localhost", "gw.example.com"]
reserved_subdomains = ["www", "api"]
"#;

const ROUTES: &str = r#"
[[routes]]
path_prefix = "/api"
require_feature = "chat"
[[routes]]
path_prefix = "/api/analytics"
methods = ["GET"]
require_feature = "analytics"
"#;

/// Two base domains, reserved names, [`SHARED_POOL_AND_PLANS`] and routes for `chat` (`/api`)
/// and `analytics` (`GET /api/analytics`).
static GATEWAY: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("{SERVER}{SHARED_POOL_AND_PLANS}{ROUTES}"));

fn tenant(id: &str, extra: &str) -> String {
    format!("id = \"{id}\"\nplan = \"free\"\nupstream = \"shared\"\n{extra}\n")
}

fn write_config(tenants: &[(&str, String)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gateway.toml"), &*GATEWAY).unwrap();
    std::fs::create_dir(dir.path().join("tenants")).unwrap();
    for (name, body) in tenants {
        std::fs::write(dir.path().join("tenants").join(name), body).unwrap();
    }
    dir
}

fn errors_of(tenants: &[(&str, String)]) -> Vec<String> {
    let dir = write_config(tenants);
    match load(&dir.path().join("gateway.toml")) {
        Ok(_) => vec![],
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

fn compiled(tenants: &[(&str, String)]) -> Snapshot {
    let dir = write_config(tenants);
    Snapshot::compile(load(&dir.path().join("gateway.toml")).unwrap())
}

#[test]
fn valid_config_compiles() {
    let s = compiled(&[
        (
            "acme.toml",
            tenant(
                "acme",
                "custom_domains = [\"support.acme.com\"]\nfeatures_enabled = [\"analytics\"]",
            ),
        ),
        (
            "globex.toml",
            tenant("globex", "subdomain = \"gx\"\nplan = \"pro\"").replace("plan = \"free\"\n", ""),
        ),
    ]);
    assert_eq!(s.hosts.len(), 2);
    let acme = s.hosts.by_id("acme").unwrap();
    assert_eq!(
        &*acme.features,
        &["analytics".into(), "chat".into()] as &[Box<str>]
    );
    assert_eq!(acme.headers.features, "analytics,chat");
    let route = s.route(&Method::GET, "/api/analytics/x").unwrap();
    assert_eq!(route.require_feature.as_deref(), Some("analytics"));
    assert_eq!(
        s.route(&Method::POST, "/api/analytics")
            .unwrap()
            .require_feature
            .as_deref(),
        Some("chat")
    );
    assert!(s.route(&Method::GET, "/other").is_none());
}

#[test]
fn tenants_naming_a_pool_share_it_and_inherit_their_plans_quotas() {
    let s = compiled(&[
        ("a.toml", tenant("a", "")),
        (
            "b.toml",
            tenant(
                "b",
                "plan = \"pro\"\nquotas.requests = { limit = 7, period = \"minute\" }",
            )
            .replace("plan = \"free\"\n", ""),
        ),
    ]);
    let (a, b) = (s.hosts.by_id("a").unwrap(), s.hosts.by_id("b").unwrap());
    assert!(Arc::ptr_eq(&a.upstream, &b.upstream), "one pool per name");
    assert!(Arc::ptr_eq(&a.upstream, &s.pools["shared"]));
    assert_eq!(a.quota("requests").map(|q| q.limit), Some(20), "the plan's");
    let own = b.quota("requests").unwrap();
    assert_eq!(
        (own.limit, own.period),
        (7, Period::Minute),
        "the tenant's override"
    );
    assert_eq!(
        b.quota("messages").map(|q| q.limit),
        Some(100000),
        "the rest: the plan's"
    );
}

#[test]
fn rejects_duplicates_and_unknown_names() {
    let errs = errors_of(&[
        ("a.toml", tenant("acme", "custom_domains = [\"x.com\"]")),
        ("b.toml", tenant("acme", "")),
        (
            "c.toml",
            tenant(
                "globex",
                "custom_domains = [\"X.com\"]\nsubdomain = \"acme\"",
            ),
        ),
        (
            "d.toml",
            tenant("initech", "features_enabled = [\"nope\"]").replace("\"shared\"", "\"missing\""),
        ),
        (
            "e.toml",
            tenant("umbrella", "").replace("\"free\"", "\"gold\""),
        ),
    ]);
    let joined = errs.join("\n");
    assert!(
        joined.contains("tenants/b.toml: id: duplicate tenant id \"acme\""),
        "{joined}"
    );
    assert!(
        joined.contains("tenants/c.toml: custom_domains[0]: already claimed by tenant \"acme\""),
        "{joined}"
    );
    assert!(
        joined.contains("tenants/c.toml: subdomain: subdomain \"acme\" already used"),
        "{joined}"
    );
    assert!(
        joined.contains("tenants/d.toml: features_enabled[0]: unknown feature \"nope\""),
        "{joined}"
    );
    assert!(
        joined.contains("tenants/d.toml: upstream: unknown upstream pool \"missing\""),
        "{joined}"
    );
    assert!(
        joined.contains("tenants/e.toml: plan: unknown plan \"gold\""),
        "{joined}"
    );
}

#[test]
fn rejects_unknown_keys_and_bad_values_naming_the_key() {
    let errs = errors_of(&[("a.toml", tenant("acme", "colour = 1"))]);
    assert!(errs[0].starts_with("tenants/a.toml: "), "{errs:?}");
    assert!(errs[0].contains("unknown field `colour`"), "{errs:?}");

    let bad_duration: Result<GatewayConfig, _> = parse_toml(
        "gateway.toml",
        "[upstreams.x]\naddrs=[\"127.0.0.1:1\"]\nconnect_timeout = \"2 parsecs\"",
    );
    let e = bad_duration.unwrap_err();
    assert_eq!(e.key, "upstreams.x.connect_timeout", "{e}");

    let bad_addr: GatewayConfig =
        parse_toml("gateway.toml", "[server]\nhttp_listen = [\"nope\"]").unwrap();
    let raw = RawConfig {
        dir: ".".into(),
        main_file: "gateway.toml".into(),
        gateway: bad_addr,
        tenants: vec![],
        content_hash: 0,
    };
    let errs = raw.validate().unwrap_err().0;
    assert!(
        errs.iter().any(|e| e.key == "server.http_listen[0]"),
        "{errs:?}"
    );
}

/// Rules of a tenant file, through the loader (file on disk → error line `file: key: message`).
#[test]
fn tenant_file_errors_read_from_disk_name_file_key_and_message() {
    let table: &[(&str, &[&str])] = &[
        (
            "subdomain = \"www\"\n[branding]\nprimary_color = \"red;}\"\n[[api_keys]]\nsha256 = \"xyz\"\nname = \"ci\"",
            &[
                "tenants/a.toml: subdomain: subdomain \"www\" is reserved",
                "tenants/a.toml: branding.primary_color: ",
                "tenants/a.toml: api_keys[0].sha256: ",
            ],
        ),
        (
            "custom_domains = [\"x.localhost\"]\n[quotas]\nwidgets = { limit = 1, period = \"day\" }",
            &[
                "tenants/a.toml: custom_domains[0]: ",
                "tenants/a.toml: quotas.widgets: ",
            ],
        ),
    ];
    for (extra, wants) in table {
        let joined = errors_of(&[("a.toml", tenant("acme", extra))]).join("\n");
        for want in *wants {
            assert!(joined.contains(want), "{want:?} not in {joined}");
        }
    }
}

#[test]
fn resolution_order() {
    let s = compiled(&[
        (
            "acme.toml",
            tenant("acme", "custom_domains = [\"support.acme.com\"]"),
        ),
        ("globex.toml", tenant("globex", "")),
    ]);
    type Want = Result<(&'static str, TenantSource), ResolveError>;
    /// Host, trusted `X-Tenant-Id`, dev query, and the outcome.
    type Row<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>, Want);
    let host = |t| Ok((t, TenantSource::Host));
    // (Host, trusted X-Tenant-Id, dev query) → the tenant and where it came from.
    let table: &[Row<'_>] = &[
        (Some("acme.localhost:8080"), None, None, host("acme")),
        (Some("ACME.gw.example.com."), None, None, host("acme")),
        (Some("support.acme.com"), None, None, host("acme")),
        // Host wins over the header.
        (Some("globex.localhost"), Some("acme"), None, host("globex")),
        (
            Some("localhost"),
            Some("acme"),
            None,
            Ok(("acme", TenantSource::Header)),
        ),
        (
            Some("www.localhost"),
            None,
            Some("tenant=globex"),
            Ok(("globex", TenantSource::Query)),
        ),
        (Some("localhost"), None, None, Err(ResolveError::Required)),
        (
            Some("127.0.0.1:8080"),
            None,
            None,
            Err(ResolveError::Required),
        ),
        (Some("[::1]:8080"), None, None, Err(ResolveError::Required)),
        (None, None, None, Err(ResolveError::Required)),
        (
            Some("nobody.localhost"),
            None,
            None,
            Err(ResolveError::NotFound),
        ),
        (
            Some("a.acme.localhost"),
            None,
            None,
            Err(ResolveError::NotFound),
        ),
        (
            Some("localhost"),
            Some("nobody"),
            None,
            Err(ResolveError::NotFound),
        ),
    ];
    for (host, header, query, want) in table {
        let input = ResolveInput {
            host: *host,
            trusted_header: *header,
            token_tenant: None,
            dev_query: *query,
        };
        let got = resolve(&s.hosts, &input).map(|(t, src)| (t.id.to_string(), src));
        let want = want.map(|(id, src)| (id.to_string(), src));
        assert_eq!(got, want, "{host:?} {header:?} {query:?}");
    }
}

#[test]
fn hosts_of_is_every_name_a_tenant_answers_on() {
    let s = crate::test_support::snapshot(
        &GATEWAY,
        &[(
            "acme.toml",
            &tenant("acme", "custom_domains = [\"Support.Acme.com\"]"),
        )],
    );
    let acme = s.hosts.by_id("acme").unwrap();
    let hosts: Vec<String> = s.hosts.hosts_of(acme).collect();
    assert_eq!(
        hosts,
        ["acme.localhost", "acme.gw.example.com", "support.acme.com"]
    );
    for h in &hosts {
        assert!(
            matches!(s.hosts.lookup(h), crate::tenant::HostMatch::Tenant(t) if t.id == acme.id)
        );
    }
    assert_eq!(s.settings.https_port, None);
}
