//! Table-driven tests of validation: one test per section, one row per rule, each row naming
//! the file and key its error must carry; and what a valid config turns into. The rules of
//! tenant files are in `tests/tenants.rs`.

use std::net::SocketAddr;

use http::Method;

use crate::config::{ConfigError, Consume, ValidConfig, ValidTenantUpstream};
use crate::test_support::raw_config;

/// A valid config that rows add tables to.
const BASE: &str = r#"
[upstreams.s]
addrs = ["127.0.0.1:3000"]
[plans.p]
features = ["chat"]
quotas.requests = { limit = 10, period = "hour" }
"#;

/// A valid tenant of [`BASE`].
const TENANT: &str = "id = \"t\"\nplan = \"p\"\nupstream = \"s\"\n";

fn validate(extra: &str, tenants: &[(&str, &str)]) -> Result<ValidConfig, Vec<ConfigError>> {
    raw_config(&format!("{extra}\n{BASE}"), tenants)
        .validate()
        .map_err(|e| e.0)
}

fn errors(extra: &str, tenants: &[(&str, &str)]) -> Vec<ConfigError> {
    validate(extra, tenants).err().unwrap_or_default()
}

/// One rule: the config text added to [`BASE`], the tenant files, and the file and key the
/// error must name.
type Row<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, &'a str);

fn assert_rows(rows: &[Row<'_>]) {
    for (extra, tenants, file, key) in rows {
        let errs = errors(extra, tenants);
        assert!(
            errs.iter().any(|e| e.file == *file && e.key == *key),
            "{extra:?} {tenants:?}: want {file}: {key}, got {errs:?}"
        );
    }
}

/// Rows of one tenant file `t.toml` (next to the base config) and the key of `tenants/t.toml`
/// its error must name.
fn assert_tenant_rows(rows: &[(&str, &str)]) {
    for (text, key) in rows {
        assert_rows(&[("", &[("t.toml", text)], T, key)]);
    }
}

const MAIN: &str = "gateway.toml";
const T: &str = "tenants/t.toml";

fn tenant(extra: &str) -> String {
    format!("{TENANT}{extra}\n")
}

#[test]
fn the_base_config_is_valid() {
    let v = validate("", &[("t.toml", TENANT)]).expect("valid");
    assert_eq!(v.tenants.len(), 1);
}

#[test]
fn server_listeners_are_socket_addresses() {
    assert_rows(&[
        (
            "[server]\nhttp_listen = [\"nope\"]",
            &[],
            MAIN,
            "server.http_listen[0]",
        ),
        (
            "[server]\nhttps_listen = [\"x:1\"]",
            &[],
            MAIN,
            "server.https_listen[0]",
        ),
        (
            "[server]\nadmin_listen = \"localhost\"",
            &[],
            MAIN,
            "server.admin_listen",
        ),
        (
            "[server]\nhttp_listen = []",
            &[],
            MAIN,
            "server.http_listen",
        ),
        ("[server]\nthreads = 0", &[], MAIN, "server.threads"),
        ("[server]\nthreads = 2000", &[], MAIN, "server.threads"),
    ]);
    let v = validate(
        "[server]\nhttp_listen = [\"127.0.0.1:8080\", \"[::1]:8081\"]\nhttps_listen = [\"0.0.0.0:8443\"]",
        &[],
    )
    .expect("valid");
    let want: Vec<SocketAddr> = vec![
        "127.0.0.1:8080".parse().unwrap(),
        "[::1]:8081".parse().unwrap(),
    ];
    assert_eq!(v.startup.server.http_listen, want);
    assert_eq!(v.startup.server.https_listen[0].port(), 8443);
}

#[test]
fn server_names_are_lower_case_dns() {
    assert_rows(&[
        (
            "[server]\nbase_domains = [\"Upper.com\"]",
            &[],
            MAIN,
            "server.base_domains[0]",
        ),
        (
            "[server]\nbase_domains = [\"a..b\"]",
            &[],
            MAIN,
            "server.base_domains[0]",
        ),
        (
            "[server]\nbase_domains = [\"a.com\", \"a.com\"]",
            &[],
            MAIN,
            "server.base_domains[1]",
        ),
        (
            "[server]\nreserved_subdomains = [\"-x\"]",
            &[],
            MAIN,
            "server.reserved_subdomains[0]",
        ),
    ]);
}

#[test]
fn upstream_pools_resolve_and_check_their_keys() {
    assert_rows(&[
        ("[upstreams.b]\naddrs = []", &[], MAIN, "upstreams.b.addrs"),
        (
            "[upstreams.b]\naddrs = [\"no-port\"]",
            &[],
            MAIN,
            "upstreams.b.addrs[0]",
        ),
        (
            "[upstreams.b]\naddrs = [\"127.0.0.1:1\"]\nconnect_timeout = \"0s\"",
            &[],
            MAIN,
            "upstreams.b.connect_timeout",
        ),
        (
            "[upstreams.b]\naddrs = [\"127.0.0.1:1\"]\nread_timeout = \"0s\"",
            &[],
            MAIN,
            "upstreams.b.read_timeout",
        ),
        (
            "[upstreams.b]\naddrs = [\"127.0.0.1:1\"]\nsni = \"x.com\"",
            &[],
            MAIN,
            "upstreams.b.sni",
        ),
        (
            "[upstreams.b]\naddrs = [\"127.0.0.1:1\"]\ntls = true\nsni = \"a b\"",
            &[],
            MAIN,
            "upstreams.b.sni",
        ),
        (
            "[upstreams.b]\naddrs = [\"127.0.0.1:1\"]\ntls = true\nca_file = \"missing-ca.pem\"",
            &[],
            MAIN,
            "upstreams.b.ca_file",
        ),
    ]);
    let v = validate(
        "[upstreams.named]\naddrs = [\"localhost:3000\"]\ntls = true",
        &[],
    )
    .expect("valid");
    let pool = &v.upstreams["named"].config;
    assert!(
        pool.addrs[0].ip().is_loopback(),
        "resolved once: {:?}",
        pool.addrs
    );
    assert_eq!(pool.sni, "localhost", "default SNI is the address host");
}

#[test]
fn a_dedicated_upstream_follows_the_same_rules_in_its_tenant_file() {
    let empty = "id = \"t\"\nplan = \"p\"\n[upstream]\naddrs = []\n";
    let no_ca = "id = \"t\"\nplan = \"p\"\n[upstream]\naddrs = [\"127.0.0.1:1\"]\ntls = true\nca_file = \"missing-ca.pem\"\n";
    let unknown = "id = \"t\"\nplan = \"p\"\nupstream = \"nope\"\n";
    assert_rows(&[
        ("", &[("t.toml", empty)], T, "upstream.addrs"),
        ("", &[("t.toml", no_ca)], T, "upstream.ca_file"),
        ("", &[("t.toml", unknown)], T, "upstream"),
    ]);
    let own = "id = \"t\"\nplan = \"p\"\n[upstream]\naddrs = [\"127.0.0.1:4000\"]\n";
    let v = validate("", &[("t.toml", own)]).expect("valid");
    assert!(matches!(
        &v.tenants[0].upstream,
        ValidTenantUpstream::Dedicated(u) if u.addrs[0].port() == 4000
    ));
}

#[test]
fn quota_settings_are_range_checked() {
    assert_rows(&[
        (
            "[quota]\nfallback_share = 0.0",
            &[],
            MAIN,
            "quota.fallback_share",
        ),
        (
            "[quota]\nfallback_share = 1.5",
            &[],
            MAIN,
            "quota.fallback_share",
        ),
        (
            "[quota]\nfallback_share = nan",
            &[],
            MAIN,
            "quota.fallback_share",
        ),
        (
            "[quota]\nbreaker_failures = 0",
            &[],
            MAIN,
            "quota.breaker_failures",
        ),
        (
            "[quota]\nprobe_interval = \"1ms\"",
            &[],
            MAIN,
            "quota.probe_interval",
        ),
        (
            "[quota]\nprobe_interval = \"2m\"",
            &[],
            MAIN,
            "quota.probe_interval",
        ),
        (
            "[quota]\nmax_pending_keys = 0",
            &[],
            MAIN,
            "quota.max_pending_keys",
        ),
        ("[quota]\ntimeout = \"0s\"", &[], MAIN, "quota.timeout"),
        (
            "[quota]\nbackend = \"redis\"\nredis_url = \"http://x\"",
            &[],
            MAIN,
            "quota.redis_url",
        ),
        (
            "[quota]\nbackend = \"redis\"\nredis_cluster_urls = [\"redis://a:1\", \"b:2\"]",
            &[],
            MAIN,
            "quota.redis_cluster_urls[1]",
        ),
    ]);
    let local = "[quota]\non_backend_error = \"local\"\nfallback_share = 0.5";
    assert!(errors(local, &[]).is_empty());
}

#[test]
fn acme_settings_are_checked_when_enabled() {
    const ON: &str = "[acme]\nenabled = true\n";
    assert_rows(&[
        (
            "[acme]\nrenew_before_ratio = 1.5",
            &[],
            MAIN,
            "acme.renew_before_ratio",
        ),
        (
            "[acme]\nrenew_before_ratio = 0.0",
            &[],
            MAIN,
            "acme.renew_before_ratio",
        ),
        (
            &format!("{ON}directory_url = \"ftp://x\""),
            &[],
            MAIN,
            "acme.directory_url",
        ),
        (
            &format!("{ON}dns_servers = [\"dns\"]"),
            &[],
            MAIN,
            "acme.dns_servers[0]",
        ),
        (
            &format!("{ON}ca_roots = [\"missing-root.pem\"]"),
            &[],
            MAIN,
            "acme.ca_roots[0]",
        ),
        (
            &format!("{ON}check_interval = \"0s\""),
            &[],
            MAIN,
            "acme.check_interval",
        ),
        (
            &format!("{ON}retry_base = \"0s\""),
            &[],
            MAIN,
            "acme.retry_base",
        ),
        (
            &format!("{ON}[server]\nhttp_listen = []\nhttps_listen = [\"127.0.0.1:1\"]"),
            &[],
            MAIN,
            "server.http_listen",
        ),
    ]);
    // Disabled, the same values are not looked at.
    assert!(errors("[acme]\ndirectory_url = \"ftp://x\"", &[]).is_empty());
}

#[test]
fn jwt_keys_are_loaded_and_checked_by_validation() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a key").unwrap();
    let bad_jwks = dir.path().join("jwks.json");
    std::fs::write(&bad_jwks, "{\"keys\": 1}").unwrap();
    let pem_row = format!(
        "[auth.jwt]\npublic_key_files = [{:?}]",
        garbage.display().to_string()
    );
    let jwks_row = format!(
        "[auth.jwt]\njwks_file = {:?}",
        bad_jwks.display().to_string()
    );
    assert_rows(&[
        (
            "[auth.jwt]\npublic_key_files = [\"missing.pem\"]",
            &[],
            MAIN,
            "auth.jwt.public_key_files[0]",
        ),
        (&pem_row, &[], MAIN, "auth.jwt.public_key_files[0]"),
        (
            "[auth.jwt]\njwks_file = \"missing.json\"",
            &[],
            MAIN,
            "auth.jwt.jwks_file",
        ),
        (&jwks_row, &[], MAIN, "auth.jwt.jwks_file"),
    ]);
    std::env::set_var("TG_VALIDATE_TEST_SECRET", "s");
    let v = validate(
        "[auth.jwt]\nhs256_secret_env = \"TG_VALIDATE_TEST_SECRET\"",
        &[],
    )
    .expect("valid");
    let jwt = v.jwt.expect("[auth.jwt]");
    assert_eq!(
        jwt.keys.len(),
        1,
        "the HS256 secret read from the environment"
    );
    assert_eq!(v.secrets.jwt_hs256.as_deref(), Some("s"));
}

#[test]
fn the_feature_catalogue_names_every_reference() {
    assert_rows(&[
        ("features = [\"bad name\"]", &[], MAIN, "features[0]"),
        ("features = [\"other\"]", &[], MAIN, "plans.p.features[0]"),
        (
            "features = [\"chat\"]\n[[routes]]\npath_prefix = \"/x\"\nrequire_feature = \"nope\"",
            &[],
            MAIN,
            "routes[0].require_feature",
        ),
    ]);
}

#[test]
fn plans_check_names_limits_and_pricing() {
    let too_big = crate::quota::MAX_QUOTA_VALUE + 1;
    let big = format!("[plans.q]\nquotas.requests = {{ limit = {too_big}, period = \"hour\" }}");
    assert_rows(&[
        ("[plans.\"a b\"]", &[], MAIN, "plans.a b"),
        ("[plans.q]\nquotas.\"a b\" = { limit = 1, period = \"day\" }", &[], MAIN, "plans.q.quotas.a b"),
        (&big, &[], MAIN, "plans.q.quotas.requests.limit"),
        ("[plans.q]\npricing.base = -1.0", &[], MAIN, "plans.q.pricing.base"),
        ("[plans.q]\npricing.overage.requests = 0.1", &[], MAIN, "plans.q.pricing.overage.requests"),
        ("[plans.q]\nquotas.requests = { limit = 1, period = \"day\" }\npricing.overage.requests = -0.1", &[], MAIN, "plans.q.pricing.overage.requests"),
    ]);
}

#[test]
fn routes_check_prefix_methods_roles_and_consumption() {
    let too_big = crate::quota::MAX_QUOTA_VALUE + 1;
    let big = format!("[[routes]]\npath_prefix = \"/x\"\nconsumes = {{ requests = {too_big} }}");
    let route = |body: &str| format!("[[routes]]\npath_prefix = \"/x\"\n{body}");
    assert_rows(&[
        (
            "[[routes]]\npath_prefix = \"x\"",
            &[],
            MAIN,
            "routes[0].path_prefix",
        ),
        (
            "[[routes]]\npath_prefix = \"/a/../b\"",
            &[],
            MAIN,
            "routes[0].path_prefix",
        ),
        (
            "[[routes]]\npath_prefix = \"/a%2Fb\"",
            &[],
            MAIN,
            "routes[0].path_prefix",
        ),
        (
            &route("methods = [\"get\"]"),
            &[],
            MAIN,
            "routes[0].methods[0]",
        ),
        (
            &route("methods = [\"GET\", \"G T\"]"),
            &[],
            MAIN,
            "routes[0].methods[1]",
        ),
        (
            &route("require_role = []"),
            &[],
            MAIN,
            "routes[0].require_role",
        ),
        (
            &route("require_role = \"bad role\""),
            &[],
            MAIN,
            "routes[0].require_role",
        ),
        (
            &route("consumes = { requests = \"body\" }"),
            &[],
            MAIN,
            "routes[0].consumes.requests",
        ),
        (
            &route("consumes = { widgets = 1 }"),
            &[],
            MAIN,
            "routes[0].consumes.widgets",
        ),
        (&big, &[], MAIN, "routes[0].consumes.requests"),
    ]);
}

#[test]
fn route_values_are_typed() {
    let v = validate(
        "[[routes]]\npath_prefix = \"/x\"\nmethods = [\"GET\", \"PURGE\"]\nconsumes = { requests = \"content-length\" }\n[[routes]]\npath_prefix = \"/y\"\nconsumes = { requests = 3 }\nrequire_role = [\"admin\", \"owner\"]",
        &[],
    )
    .expect("valid");
    let purge = Method::from_bytes(b"PURGE").unwrap();
    assert_eq!(v.routes[0].methods, vec![Method::GET, purge]);
    assert_eq!(
        v.routes[0].consumes,
        vec![("requests".to_string(), Consume::ContentLength)]
    );
    assert_eq!(
        v.routes[1].consumes,
        vec![("requests".to_string(), Consume::Fixed(3))]
    );
    assert_eq!(
        v.routes[1].require_role.as_deref(),
        Some(&["admin".to_string(), "owner".to_string()][..])
    );
}

#[test]
fn provisioning_hooks_name_a_program_and_a_timeout() {
    assert_rows(&[
        (
            "[provisioning]\non_create = [\" \"]",
            &[],
            MAIN,
            "provisioning.on_create[0]",
        ),
        (
            "[provisioning]\non_delete = [\"\", \"x\"]",
            &[],
            MAIN,
            "provisioning.on_delete[0]",
        ),
        (
            "[provisioning]\ntimeout = \"0s\"",
            &[],
            MAIN,
            "provisioning.timeout",
        ),
    ]);
}

#[test]
fn client_limits_are_range_checked() {
    assert_rows(&[
        (
            "[limits]\nmax_request_header_bytes = 1",
            &[],
            MAIN,
            "limits.max_request_header_bytes",
        ),
        (
            "[limits]\nmax_request_headers = 0",
            &[],
            MAIN,
            "limits.max_request_headers",
        ),
    ]);
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let errs = errors(
        "[server]\nthreads = 0\n[quota]\ntimeout = \"0s\"",
        &[("t.toml", "id = \"t\"\nplan = \"gold\"\nupstream = \"nope\"")],
    );
    let keys: Vec<(&str, &str)> = errs
        .iter()
        .map(|e| (e.file.as_str(), e.key.as_str()))
        .collect();
    for want in [
        (MAIN, "server.threads"),
        (MAIN, "quota.timeout"),
        (T, "plan"),
        (T, "upstream"),
    ] {
        assert!(keys.contains(&want), "{want:?} not in {keys:?}");
    }
}

mod tenants;
