//! Table-driven tests of the whole decision before quotas: canonical view → credentials →
//! admission, one row per row of the README's error table and per bypass the hardening issue
//! found.

use super::*;
use crate::auth::{authenticate, key_hash};
use crate::client_headers::ClientHeaders;
use crate::config::load;
use crate::request_view::{canonicalize, RequestRules};
use http::{HeaderMap, HeaderName, Method};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};

const SECRET_ENV: &str = "TG_ADMISSION_TEST_SECRET";
const SECRET: &str = "admission-secret";
const ACME_KEY: &str = "tgk_acme_key";
const GLOBEX_KEY: &str = "tgk_globex_key";

const GATEWAY: &str = r#"
[server]
http_listen = ["127.0.0.1:0"]
base_domains = ["localhost"]
reserved_subdomains = ["www"]
[upstreams.shared]
addrs = ["127.0.0.1:3000"]
[auth.jwt]
hs256_secret_env = "TG_ADMISSION_TEST_SECRET"
[plans.basic]
features = ["chat"]
[plans.pro]
features = ["chat", "analytics"]
[[routes]]
path_prefix = "/api/secure"
require_auth = true
[[routes]]
path_prefix = "/api/analytics"
require_feature = "analytics"
[[routes]]
path_prefix = "/api/exact"
require_feature = "analytics"
case_sensitive = true
[[routes]]
path_prefix = "/api/admin"
require_role = "admin"
[[routes]]
path_prefix = "/api/messages"
methods = ["POST"]
require_feature = "analytics"
"#;

fn snapshot() -> Snapshot {
    std::env::set_var(SECRET_ENV, SECRET);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gateway.toml"), GATEWAY).unwrap();
    let tenants = dir.path().join("tenants");
    std::fs::create_dir(&tenants).unwrap();
    let key = |k: &str| hex::encode(key_hash(k.as_bytes()));
    let files = [
        (
            "acme",
            format!(
                "plan = \"basic\"\ncustom_domains = [\"support.acme.com\", \"new.acme.com\"]\n\
                 [[api_keys]]\nsha256 = \"{}\"\nname = \"ci\"\nroles = [\"admin\"]\n",
                key(ACME_KEY)
            ),
        ),
        (
            "globex",
            format!(
                "plan = \"pro\"\n[[api_keys]]\nsha256 = \"{}\"\nname = \"ci\"\n",
                key(GLOBEX_KEY)
            ),
        ),
        (
            "initech",
            "plan = \"pro\"\nstatus = \"suspended\"\n".to_string(),
        ),
    ];
    for (id, extra) in files {
        std::fs::write(
            tenants.join(format!("{id}.toml")),
            format!("id = \"{id}\"\nupstream = \"shared\"\n{extra}"),
        )
        .unwrap();
    }
    Snapshot::compile(load(&dir.path().join("gateway.toml")).unwrap())
}

fn token(tenant: &str) -> String {
    let claims = serde_json::json!({
        "tenant_id": tenant, "sub": "user-1", "exp": crate::quota::unix_now() + 600,
    });
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// Only `new.acme.com` is not verified yet.
struct OneUnverified;
impl DomainGate for OneUnverified {
    fn routable(&self, domain: &str) -> bool {
        domain != "new.acme.com"
    }
}

/// The decision for one request: `Ok((tenant, matched route prefix))` or the error code.
fn decide(
    s: &Snapshot,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    sni: Option<&str>,
) -> Result<(String, Option<String>), &'static str> {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let client = ClientHeaders::scan(&h);
    let view = canonicalize(
        &method,
        target.as_bytes(),
        None,
        &client,
        RequestRules::default(),
    )
    .map_err(|r| r.error().code())?;
    let auth = authenticate(
        &client,
        &s.api_keys,
        s.jwt.as_ref(),
        crate::quota::unix_now(),
    );
    let input = AdmissionInput {
        request: &view,
        credential: &auth.credential,
        sni,
        tenant_header: h.get("x-tenant-id").and_then(|v| v.to_str().ok()),
    };
    admit(s, &input, &OneUnverified)
        .map(|a| {
            (
                a.tenant.id.to_string(),
                a.route.map(|i| s.routes[i].path_prefix.to_string()),
            )
        })
        .map_err(|d| d.error.code())
}

fn ok(tenant: &str, route: Option<&str>) -> Result<(String, Option<String>), &'static str> {
    Ok((tenant.to_string(), route.map(str::to_string)))
}

/// Credentials the rows use, made once per table.
struct Creds {
    bearer_acme: String,
    bearer_globex: String,
    bearer_globex_key: String,
    upper_bearer: String,
    mixed_bearer: String,
}

fn creds() -> Creds {
    let acme_jwt = token("acme");
    let globex_jwt = token("globex");
    Creds {
        bearer_acme: format!("Bearer {acme_jwt}"),
        bearer_globex: format!("Bearer {globex_jwt}"),
        bearer_globex_key: format!("Bearer {GLOBEX_KEY}"),
        upper_bearer: format!("BEARER {ACME_KEY}"),
        mixed_bearer: format!("bEaReR   {ACME_KEY}"),
    }
}

/// One row: what it checks, method, target, headers, SNI, and the expected admission.
type Row<'a> = (
    &'a str,
    &'a str,
    &'a str,
    Vec<(&'a str, &'a str)>,
    Option<&'a str>,
    Result<(String, Option<String>), &'static str>,
);

/// Admits every row against the test snapshot; a failure names the row.
fn check_rows(rows: Vec<Row>) {
    let s = snapshot();
    for (what, method, target, headers, sni, want) in rows {
        assert_eq!(decide(&s, method, target, &headers, sni), want, "{what}");
    }
}

/// Which tenant a request is for: Host, custom domains, JWT, trusted header.
#[test]
fn tenant_resolution_rows() {
    let c = creds();
    check_rows(vec![
        (
            "plain",
            "GET",
            "/",
            vec![("host", "acme.localhost")],
            None,
            ok("acme", None),
        ),
        (
            "no tenant",
            "GET",
            "/",
            vec![("host", "localhost")],
            None,
            Err("TENANT_REQUIRED"),
        ),
        (
            "ip literal",
            "GET",
            "/",
            vec![("host", "127.0.0.1")],
            None,
            Err("TENANT_REQUIRED"),
        ),
        (
            "unknown subdomain",
            "GET",
            "/",
            vec![("host", "nobody.localhost")],
            None,
            Err("TENANT_NOT_FOUND"),
        ),
        (
            "unknown subdomain with a valid JWT",
            "GET",
            "/",
            vec![
                ("host", "nobody.localhost"),
                ("authorization", &c.bearer_acme),
            ],
            None,
            Err("TENANT_NOT_FOUND"),
        ),
        (
            "JWT names the tenant when the host does not",
            "GET",
            "/",
            vec![("host", "localhost"), ("authorization", &c.bearer_acme)],
            None,
            ok("acme", None),
        ),
        (
            "verified custom domain",
            "GET",
            "/",
            vec![("host", "support.acme.com")],
            None,
            ok("acme", None),
        ),
        (
            "unverified custom domain",
            "GET",
            "/",
            vec![("host", "new.acme.com")],
            None,
            Err("TENANT_NOT_FOUND"),
        ),
        (
            "untrusted tenant header is ignored",
            "GET",
            "/",
            vec![("host", "localhost"), ("x-tenant-id", "acme")],
            None,
            Err("TENANT_REQUIRED"),
        ),
    ]);
}

/// A suspended tenant, and plan features gating routes.
#[test]
fn tenant_state_and_feature_rows() {
    check_rows(vec![
        (
            "suspended",
            "GET",
            "/",
            vec![("host", "initech.localhost")],
            None,
            Err("TENANT_SUSPENDED"),
        ),
        (
            "feature gate",
            "GET",
            "/api/analytics",
            vec![("host", "acme.localhost")],
            None,
            Err("FEATURE_NOT_AVAILABLE"),
        ),
        (
            "feature granted",
            "GET",
            "/api/analytics/x",
            vec![("host", "globex.localhost")],
            None,
            ok("globex", Some("/api/analytics")),
        ),
    ]);
}

/// TLS SNI against the Host's tenant.
#[test]
fn strict_sni_rows() {
    check_rows(vec![
        (
            "strict SNI",
            "GET",
            "/",
            vec![("host", "acme.localhost")],
            Some("globex.localhost"),
            Err("MISDIRECTED_REQUEST"),
        ),
        (
            "SNI names the tenant",
            "GET",
            "/",
            vec![("host", "127.0.0.1")],
            Some("globex.localhost"),
            ok("globex", None),
        ),
    ]);
}

/// `require_auth` routes: missing, unknown, foreign and own credentials.
#[test]
fn require_auth_rows() {
    let c = creds();
    check_rows(vec![
        (
            "require_auth without credential",
            "GET",
            "/api/secure",
            vec![("host", "acme.localhost")],
            None,
            Err("UNAUTHORIZED"),
        ),
        (
            "require_auth with an unknown key",
            "GET",
            "/api/secure",
            vec![("host", "acme.localhost"), ("x-api-key", "nope")],
            None,
            Err("UNAUTHORIZED"),
        ),
        (
            "require_auth with the tenant's key",
            "GET",
            "/api/secure",
            vec![("host", "acme.localhost"), ("x-api-key", ACME_KEY)],
            None,
            ok("acme", Some("/api/secure")),
        ),
        (
            "key of another tenant",
            "GET",
            "/",
            vec![("host", "acme.localhost"), ("x-api-key", GLOBEX_KEY)],
            None,
            Err("TENANT_MISMATCH"),
        ),
        (
            "JWT of another tenant",
            "GET",
            "/",
            vec![
                ("host", "acme.localhost"),
                ("authorization", &c.bearer_globex),
            ],
            None,
            Err("TENANT_MISMATCH"),
        ),
    ]);
}

/// Bearer spellings, and several credentials at once: all are checked together.
#[test]
fn credential_spelling_and_mix_rows() {
    let c = creds();
    check_rows(vec![
        (
            "upper-case Bearer scheme",
            "GET",
            "/api/secure",
            vec![
                ("host", "acme.localhost"),
                ("authorization", &c.upper_bearer),
            ],
            None,
            ok("acme", Some("/api/secure")),
        ),
        (
            "mixed-case Bearer and extra spaces",
            "GET",
            "/api/secure",
            vec![
                ("host", "acme.localhost"),
                ("authorization", &c.mixed_bearer),
            ],
            None,
            ok("acme", Some("/api/secure")),
        ),
        (
            "acme key plus a globex Bearer key: never half-checked",
            "GET",
            "/api/secure",
            vec![
                ("host", "acme.localhost"),
                ("x-api-key", ACME_KEY),
                ("authorization", &c.bearer_globex_key),
            ],
            None,
            Err("TENANT_MISMATCH"),
        ),
        (
            "acme key plus an invalid Bearer",
            "GET",
            "/api/secure",
            vec![
                ("host", "acme.localhost"),
                ("x-api-key", ACME_KEY),
                ("authorization", "Bearer nope"),
            ],
            None,
            Err("UNAUTHORIZED"),
        ),
        (
            "acme key plus an acme JWT",
            "GET",
            "/api/secure",
            vec![
                ("host", "acme.localhost"),
                ("x-api-key", ACME_KEY),
                ("authorization", &c.bearer_acme),
            ],
            None,
            ok("acme", Some("/api/secure")),
        ),
        (
            "two X-API-Key headers are ambiguous",
            "GET",
            "/api/secure",
            vec![
                ("host", "acme.localhost"),
                ("x-api-key", ACME_KEY),
                ("x-api-key", ACME_KEY),
            ],
            None,
            Err("UNAUTHORIZED"),
        ),
        (
            "Basic is the backend's business",
            "GET",
            "/",
            vec![
                ("host", "acme.localhost"),
                ("authorization", "Basic dXNlcjpwdw=="),
            ],
            None,
            ok("acme", None),
        ),
    ]);
}

/// `require_role` routes.
#[test]
fn require_role_rows() {
    check_rows(vec![
        (
            "require_role with the role",
            "GET",
            "/api/admin",
            vec![("host", "acme.localhost"), ("x-api-key", ACME_KEY)],
            None,
            ok("acme", Some("/api/admin")),
        ),
        (
            "require_role without credential",
            "GET",
            "/api/admin",
            vec![("host", "acme.localhost")],
            None,
            Err("UNAUTHORIZED"),
        ),
        (
            "require_role without the role",
            "GET",
            "/api/admin",
            vec![("host", "globex.localhost"), ("x-api-key", GLOBEX_KEY)],
            None,
            Err("INSUFFICIENT_ROLE"),
        ),
        (
            "require_role, upper-case path",
            "GET",
            "/API/ADMIN",
            vec![("host", "globex.localhost")],
            None,
            Err("UNAUTHORIZED"),
        ),
    ]);
}

/// Targets refused before any route is matched (escaped slashes, backslash, non-origin forms).
#[test]
fn refused_target_rows() {
    check_rows(vec![
        // The bypasses: each must meet the gate or be refused.
        (
            "%2f",
            "GET",
            "/api%2fsecure",
            vec![("host", "acme.localhost")],
            None,
            Err("BAD_REQUEST_TARGET"),
        ),
        (
            "%2F",
            "GET",
            "/api%2Fsecure",
            vec![("host", "acme.localhost")],
            None,
            Err("BAD_REQUEST_TARGET"),
        ),
        (
            "..%2f",
            "GET",
            "/api/x/..%2fsecure",
            vec![("host", "acme.localhost")],
            None,
            Err("BAD_REQUEST_TARGET"),
        ),
        (
            "backslash",
            "GET",
            "/api\\secure",
            vec![("host", "acme.localhost")],
            None,
            Err("BAD_REQUEST_TARGET"),
        ),
        (
            "relative target",
            "GET",
            "api/secure",
            vec![("host", "acme.localhost")],
            None,
            Err("BAD_REQUEST_TARGET"),
        ),
        (
            "scheme-like target",
            "GET",
            "x:/api/secure",
            vec![("host", "acme.localhost")],
            None,
            Err("BAD_REQUEST_TARGET"),
        ),
        (
            "asterisk prefix",
            "GET",
            "*/api/secure",
            vec![("host", "acme.localhost")],
            None,
            Err("BAD_REQUEST_TARGET"),
        ),
        (
            "dot prefix",
            "GET",
            ".//api/secure",
            vec![("host", "acme.localhost")],
            None,
            Err("BAD_REQUEST_TARGET"),
        ),
        (
            "OPTIONS *",
            "OPTIONS",
            "*",
            vec![("host", "acme.localhost")],
            None,
            ok("acme", None),
        ),
    ]);
}

/// Spellings of a gated path are canonicalised first, so they meet the gate.
#[test]
fn canonical_path_meets_the_gate_rows() {
    check_rows(vec![
        (
            "dot segments meet the gate",
            "GET",
            "/x/../api/./secure",
            vec![("host", "acme.localhost")],
            None,
            Err("UNAUTHORIZED"),
        ),
        (
            "double slashes meet the gate",
            "GET",
            "//api//secure",
            vec![("host", "acme.localhost")],
            None,
            Err("UNAUTHORIZED"),
        ),
        (
            "encoded letters meet the gate",
            "GET",
            "/api/%73ecure",
            vec![("host", "acme.localhost")],
            None,
            Err("UNAUTHORIZED"),
        ),
        (
            "upper-case path meets the gate",
            "GET",
            "/API/analytics",
            vec![("host", "acme.localhost")],
            None,
            Err("FEATURE_NOT_AVAILABLE"),
        ),
        (
            "case-sensitive route opt-out",
            "GET",
            "/API/exact",
            vec![("host", "acme.localhost")],
            None,
            ok("acme", None),
        ),
        (
            "case-sensitive route, exact case",
            "GET",
            "/api/exact",
            vec![("host", "acme.localhost")],
            None,
            Err("FEATURE_NOT_AVAILABLE"),
        ),
        (
            "path parameter",
            "GET",
            "/api;x/secure",
            vec![("host", "acme.localhost")],
            None,
            Err("BAD_REQUEST_TARGET"),
        ),
        (
            "dot-dot parameter",
            "GET",
            "/..;/api/secure",
            vec![("host", "acme.localhost")],
            None,
            Err("BAD_REQUEST_TARGET"),
        ),
        (
            "percent before a multi-byte char",
            "GET",
            "/%\u{20ac}x",
            vec![("host", "acme.localhost")],
            None,
            Err("BAD_REQUEST_TARGET"),
        ),
    ]);
}

/// Methods: route methods, case, TRACE.
#[test]
fn method_rows() {
    check_rows(vec![
        (
            "method route, exact",
            "POST",
            "/api/messages",
            vec![("host", "acme.localhost")],
            None,
            Err("FEATURE_NOT_AVAILABLE"),
        ),
        (
            "lower-case method",
            "post",
            "/api/messages",
            vec![("host", "acme.localhost")],
            None,
            Err("BAD_METHOD"),
        ),
        (
            "mixed-case method",
            "pOST",
            "/api/messages",
            vec![("host", "acme.localhost")],
            None,
            Err("BAD_METHOD"),
        ),
        (
            "other method skips a POST route",
            "GET",
            "/api/messages",
            vec![("host", "acme.localhost")],
            None,
            ok("acme", None),
        ),
        (
            "TRACE",
            "TRACE",
            "/",
            vec![("host", "acme.localhost")],
            None,
            Err("METHOD_NOT_ALLOWED"),
        ),
    ]);
}

/// Host and Content-Length framing.
#[test]
fn framing_header_rows() {
    check_rows(vec![
        (
            "two Host headers",
            "GET",
            "/",
            vec![("host", "acme.localhost"), ("host", "globex.localhost")],
            None,
            Err("BAD_HEADER"),
        ),
        (
            "differing Content-Length list",
            "POST",
            "/",
            vec![("host", "acme.localhost"), ("content-length", "5, 6")],
            None,
            Err("BAD_HEADER"),
        ),
        (
            "equal Content-Length list",
            "POST",
            "/",
            vec![("host", "acme.localhost"), ("content-length", "5, 5")],
            None,
            ok("acme", None),
        ),
    ]);
}

#[test]
fn trusted_tenant_header_only_when_configured() {
    let mut s = snapshot();
    let h = [("host", "localhost"), ("x-tenant-id", "globex")];
    assert_eq!(decide(&s, "GET", "/", &h, None), Err("TENANT_REQUIRED"));
    s.settings.trust_tenant_header = true;
    assert_eq!(decide(&s, "GET", "/", &h, None), ok("globex", None));
    // A subdomain still wins over the header.
    let h = [("host", "acme.localhost"), ("x-tenant-id", "globex")];
    assert_eq!(decide(&s, "GET", "/", &h, None), ok("acme", None));
}

#[test]
fn dev_query_only_in_dev_mode() {
    let mut s = snapshot();
    let h = [("host", "localhost")];
    assert_eq!(
        decide(&s, "GET", "/?tenant=acme", &h, None),
        Err("TENANT_REQUIRED")
    );
    s.settings.dev_mode = true;
    assert_eq!(
        decide(&s, "GET", "/?tenant=acme", &h, None),
        ok("acme", None)
    );
}

#[test]
fn strict_sni_off_allows_other_names() {
    let mut s = snapshot();
    s.settings.strict_sni = false;
    let h = [("host", "acme.localhost")];
    assert_eq!(
        decide(&s, "GET", "/", &h, Some("globex.localhost")),
        ok("acme", None)
    );
}
