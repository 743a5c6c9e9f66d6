//! Tenants as the proxy sees them, host normalisation, and the resolution order that maps a
//! request to exactly one tenant (or to the error that says why not).

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use serde::Serialize;

use crate::config::names::{has_label_shape, is_valid_label, is_valid_label_ci};
use crate::config::{BrandingConfig, TenantStatus};
use crate::metrics::TenantMetrics;
use crate::quota::QuotaLimit;
use crate::upstream::UpstreamPool;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A compiled tenant: everything the request path needs, pre-built once per snapshot.
#[derive(Debug)]
pub struct Tenant {
    pub id: Box<str>,
    pub organization_id: Box<str>,
    pub name: Box<str>,
    pub plan: Box<str>,
    pub status: TenantStatus,
    pub subdomain: Box<str>,
    pub custom_domains: Vec<Box<str>>,
    /// Effective features (plan + enabled − disabled), sorted.
    pub features: Vec<Box<str>>,
    pub schema: Option<Box<str>>,
    pub upstream: Arc<UpstreamPool>,
    /// Effective quotas (plan, overridden per tenant), by resource name, sorted.
    pub quotas: Vec<(Box<str>, QuotaLimit)>,
    pub branding: Branding,
    /// Hex-decoded SHA-256 hashes of the tenant's API keys, with their names and roles.
    pub api_keys: Vec<([u8; 32], Box<str>, Arc<crate::roles::Roles>)>,
    /// Values of the injected `X-Tenant-*` headers, built once so a request copies no strings.
    pub headers: TenantHeaders,
    /// Tenant file the tenant came from (relative to the config dir).
    pub file: Box<str>,
    /// Per-tenant metric handles, resolved on first use so a config of 100k tenants does not
    /// create 100k label sets that were never hit.
    pub metrics: OnceLock<TenantMetrics>,
}

impl Tenant {
    pub fn has_feature(&self, feature: &str) -> bool {
        self.features
            .binary_search_by(|f| f.as_ref().cmp(feature))
            .is_ok()
    }

    pub fn quota(&self, resource: &str) -> Option<&QuotaLimit> {
        self.quotas
            .binary_search_by(|(r, _)| r.as_ref().cmp(resource))
            .ok()
            .map(|i| &self.quotas[i].1)
    }
}

pub use crate::config::TenantHeaders;

/// A tenant's look on the gateway's own pages (error pages, the console): validated colours
/// (`#rrggbb`) and an `https://` logo URL.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Branding {
    pub logo: Option<Box<str>>,
    pub primary_color: Option<Box<str>>,
    pub secondary_color: Option<Box<str>>,
}

impl From<BrandingConfig> for Branding {
    fn from(b: BrandingConfig) -> Self {
        let BrandingConfig {
            logo,
            primary_color,
            secondary_color,
        } = b;
        Self {
            logo: logo.map(String::into_boxed_str),
            primary_color: primary_color.map(String::into_boxed_str),
            secondary_color: secondary_color.map(String::into_boxed_str),
        }
    }
}

/// What the Host (or SNI) alone says about the tenant.
#[derive(Debug)]
pub enum HostMatch<'s> {
    Tenant(&'s Arc<Tenant>),
    /// A name that carries no tenant: a base domain, a reserved subdomain, an IP literal.
    NoTenant,
    /// `<label>.<base_domain>` that no tenant owns: 404 whatever else the request says.
    UnknownSubdomain,
    /// Any other name no tenant owns (an unverified or unknown custom domain).
    Unknown,
}

/// Host → tenant lookup tables, built once per snapshot.
#[derive(Debug, Default)]
pub struct HostIndex {
    /// `<subdomain>.<base>` and every custom domain, normalised.
    hosts: FastMap<Box<str>, Arc<Tenant>>,
    by_id: FastMap<Box<str>, Arc<Tenant>>,
    base_domains: Vec<Box<str>>,
    reserved: Vec<Box<str>>,
}

impl HostIndex {
    pub fn new(base_domains: &[String], reserved: &[String]) -> Self {
        Self {
            hosts: FastMap::default(),
            by_id: FastMap::default(),
            base_domains: base_domains.iter().map(|b| b.as_str().into()).collect(),
            reserved: reserved.iter().map(|r| r.as_str().into()).collect(),
        }
    }

    pub fn with_capacity(mut self, tenants: usize) -> Self {
        self.hosts.reserve(tenants * (self.base_domains.len() + 1));
        self.by_id.reserve(tenants);
        self
    }

    pub fn insert(&mut self, tenant: Arc<Tenant>) {
        let names: Vec<String> = self.hosts_of(&tenant).collect();
        for host in names {
            self.hosts.insert(host.into_boxed_str(), tenant.clone());
        }
        self.by_id.insert(tenant.id.clone(), tenant);
    }

    /// `<subdomain>.<base>` for every base domain, in config order.
    pub fn subdomain_hosts_of<'a>(&'a self, t: &'a Tenant) -> impl Iterator<Item = String> + 'a {
        self.base_domains
            .iter()
            .map(move |base| format!("{}.{}", t.subdomain, base))
    }

    /// Every name the tenant answers on: its subdomain under each base domain, then its custom
    /// domains. The one list of a tenant's names (routing, admin API, certificates).
    pub fn hosts_of<'a>(&'a self, t: &'a Tenant) -> impl Iterator<Item = String> + 'a {
        self.subdomain_hosts_of(t)
            .chain(t.custom_domains.iter().map(|d| d.to_string()))
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn by_id(&self, id: &str) -> Option<&Arc<Tenant>> {
        self.by_id.get(id)
    }

    pub fn tenants(&self) -> impl Iterator<Item = &Arc<Tenant>> {
        self.by_id.values()
    }

    /// Looks up an already normalised host name.
    pub fn lookup(&self, host: &str) -> HostMatch<'_> {
        if let Some(t) = self.hosts.get(host) {
            return HostMatch::Tenant(t);
        }
        if host.parse::<IpAddr>().is_ok() || self.base_domains.iter().any(|b| **b == *host) {
            return HostMatch::NoTenant;
        }
        if let Some((label, rest)) = host.split_once('.') {
            if self.reserved.iter().any(|r| **r == *label)
                && self.base_domains.iter().any(|b| **b == *rest)
            {
                return HostMatch::NoTenant;
            }
        }
        let under_base = |b: &str| {
            host.len() > b.len() + 1
                && host.ends_with(b)
                && host.as_bytes()[host.len() - b.len() - 1] == b'.'
        };
        if self.base_domains.iter().any(|b| under_base(b)) {
            return HostMatch::UnknownSubdomain;
        }
        HostMatch::Unknown
    }
}

/// Why a request has no tenant to go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolveError {
    /// Nothing in the request names a tenant (400 TENANT_REQUIRED).
    Required,
    /// Something names a tenant that does not exist (404 TENANT_NOT_FOUND).
    NotFound,
}

/// Which step of [`resolve`] found the tenant. Admission reads it to hold back a custom domain
/// whose ownership is not verified yet (only a `Host` match can be one); it is not logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantSource {
    Host,
    Header,
    Token,
    Query,
}

/// The inputs of resolution, borrowed from the request.
#[derive(Debug, Default, Clone, Copy)]
pub struct ResolveInput<'a> {
    /// Raw `Host` header (or `:authority`).
    pub host: Option<&'a str>,
    /// Value of `X-Tenant-Id`, only passed when the config trusts it.
    pub trusted_header: Option<&'a str>,
    /// Tenant id claimed by an already verified token.
    pub token_tenant: Option<&'a str>,
    /// Raw query string, only passed in dev mode.
    pub dev_query: Option<&'a str>,
}

/// Resolution order: (1) the Host (port stripped, lower-cased, trailing dot removed, IDNA →
/// punycode, IPv6 literals understood) as a custom domain or `<subdomain>.<base_domain>`; when the
/// Host names no tenant (bare base domain, reserved label, IP literal, unknown custom domain):
/// (2) `X-Tenant-Id` if `trust_tenant_header`, (3) a verified JWT's tenant claim, (4) `?tenant=` in
/// `dev_mode`; (5) the TLS SNI, only when nothing else named a tenant (an unknown custom domain as
/// Host is 404, not a reason to fall back to the SNI). Nested names (`a.b.localhost`) and unknown
/// subdomains are 404, whatever a header, token or query says: a name under a base domain decides
/// the tenant on its own.
///
/// This function takes steps 1–4; step 5 is `admission::admit`'s, on [`ResolveError::Required`].
pub fn resolve<'s>(
    index: &'s HostIndex,
    input: &ResolveInput<'_>,
) -> Result<(&'s Arc<Tenant>, TenantSource), ResolveError> {
    let mut named_unknown = false;
    if let Some(host) = input.host.and_then(normalize_host) {
        match index.lookup(&host) {
            HostMatch::Tenant(t) => return Ok((t, TenantSource::Host)),
            HostMatch::NoTenant => {}
            // A subdomain names the tenant; a token or header cannot make it another one.
            HostMatch::UnknownSubdomain => return Err(ResolveError::NotFound),
            HostMatch::Unknown => named_unknown = true,
        }
    }
    let by_id = |id: &str| index.by_id(id.trim());
    let query_tenant = input.dev_query.and_then(query_param_tenant);
    for (candidate, source) in [
        (input.trusted_header, TenantSource::Header),
        (input.token_tenant, TenantSource::Token),
        (query_tenant, TenantSource::Query),
    ] {
        if let Some(id) = candidate.filter(|s| !s.trim().is_empty()) {
            return by_id(id).map(|t| (t, source)).ok_or(ResolveError::NotFound);
        }
    }
    Err(if named_unknown {
        ResolveError::NotFound
    } else {
        ResolveError::Required
    })
}

/// The value of `tenant=` in a raw query string, without decoding (ids are DNS labels).
pub fn query_param_tenant(query: &str) -> Option<&str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("tenant="))
        .filter(|v| !v.is_empty())
}

/// Normalises a Host header or SNI value: strips the port (IPv6-aware), one trailing dot and
/// case; converts IDNA to punycode. Borrows when nothing changes (the common case), so the
/// lookup of a well-formed host allocates nothing. `None` for anything that is not a host name
/// or IP literal. Idempotent: the output normalises to itself.
pub fn normalize_host(raw: &str) -> Option<Cow<'_, str>> {
    match normalize_plain_host(raw) {
        Some(decided) => decided,
        None => normalize_any_host(raw),
    }
}

/// The common case: `name[:port]` of ASCII letters, digits, `-`, `_` and `.`. `None` when
/// `raw` holds any other byte (whitespace, brackets, a second colon, non-ASCII):
/// [`normalize_any_host`] decides those. Agrees with it on every input it decides (a proptest
/// checks).
///
/// One table load per byte finds the port and the classes of byte present; the label rules
/// (1–63 bytes, no `-` at either end) are checked once per label, at its dot.
fn normalize_plain_host(raw: &str) -> Option<Option<Cow<'_, str>>> {
    let bytes = raw.as_bytes();
    let mut end = bytes.len();
    let mut seen = 0u8;
    let mut labels_valid = true;
    let mut label_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let class = HOST_BYTE[b as usize];
        if class & (DOT | COLON) != 0 {
            if class == COLON {
                end = i;
                break;
            }
            labels_valid &= has_label_shape(&bytes[label_start..i]);
            label_start = i + 1;
        }
        seen |= class;
    }
    if seen & OTHER != 0 {
        return None;
    }
    if end < bytes.len() {
        let port = &raw[end + 1..];
        if port.contains(':') {
            return None;
        }
        if !is_port(port) {
            return Some(None);
        }
    }
    // One trailing dot goes (its label was checked at the dot); otherwise the last label is
    // checked here.
    let host = match raw[..end].strip_suffix('.') {
        Some(stripped) => stripped,
        None => {
            labels_valid &= has_label_shape(&bytes[label_start..end]);
            &raw[..end]
        }
    };
    if !labels_valid || host.is_empty() || host.len() > 253 {
        return Some(None);
    }
    Some(Some(if seen & UPPER != 0 {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }))
}

/// Byte classes of [`HOST_BYTE`], as bits so a host's classes can be or-ed together.
const LABEL: u8 = 1;
const UPPER: u8 = 2;
const DASH: u8 = 4;
const DOT: u8 = 8;
const COLON: u8 = 16;
const OTHER: u8 = 32;

/// What each byte is to [`normalize_plain_host`]: one table load per byte.
static HOST_BYTE: [u8; 256] = {
    let mut t = [OTHER; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = match b as u8 {
            b'a'..=b'z' | b'0'..=b'9' | b'_' => LABEL,
            b'A'..=b'Z' => UPPER,
            b'-' => DASH,
            b'.' => DOT,
            b':' => COLON,
            _ => OTHER,
        };
        b += 1;
    }
    t
};

/// [`normalize_host`] for every input: whitespace, IPv6 literals, IDNA.
fn normalize_any_host(raw: &str) -> Option<Cow<'_, str>> {
    let raw = raw.trim();
    let host = if let Some(rest) = raw.strip_prefix('[') {
        // `[v6]` or `[v6]:port`
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return normalize_ipv6(inside);
    } else if raw.bytes().filter(|&b| b == b':').count() > 1 {
        return normalize_ipv6(raw);
    } else if let Some((h, port)) = raw.rsplit_once(':') {
        if !is_port(port) {
            return None;
        }
        h
    } else {
        raw
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > 253 {
        return None;
    }
    if host.is_ascii() {
        if !host.split('.').all(is_valid_label_ci) {
            return None;
        }
        if host.bytes().any(|b| b.is_ascii_uppercase()) {
            Some(Cow::Owned(host.to_ascii_lowercase()))
        } else {
            Some(Cow::Borrowed(host))
        }
    } else {
        let ascii = idna::domain_to_ascii(host).ok()?;
        let ascii = ascii.strip_suffix('.').map(str::to_owned).unwrap_or(ascii);
        if ascii.is_empty() || ascii.len() > 253 || !ascii.split('.').all(is_valid_label) {
            return None;
        }
        Some(Cow::Owned(ascii))
    }
}

fn normalize_ipv6(s: &str) -> Option<Cow<'_, str>> {
    let ip: std::net::Ipv6Addr = s.parse().ok()?;
    let canonical = ip.to_string();
    if canonical == s {
        Some(Cow::Borrowed(s))
    } else {
        Some(Cow::Owned(canonical))
    }
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalises_port_case_dots_ipv6_and_idna() {
        for (raw, want) in [
            ("Acme.LocalHost:8080", Some("acme.localhost")),
            ("acme.localhost.", Some("acme.localhost")),
            ("acme.localhost.:443", Some("acme.localhost")),
            ("[::1]:8080", Some("::1")),
            ("[::1]", Some("::1")),
            ("::1", Some("::1")),
            ("[0:0::1]", Some("::1")),
            ("[::1]:x", None),
            ("[zz]", None),
            ("Bücher.example", Some("xn--bcher-kva.example")),
            ("xn--bcher-kva.example", Some("xn--bcher-kva.example")),
        ] {
            assert_eq!(normalize_host(raw).as_deref(), want, "{raw:?}");
        }
        // A well-formed host is borrowed, not copied.
        assert!(matches!(
            normalize_host("acme.localhost"),
            Some(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "", ":", "a..b", "a b", "a/b", "-a.com", "a:port", "a:123456", ".", "..", "a..",
        ] {
            assert_eq!(normalize_host(bad), None, "{bad:?}");
        }
    }

    /// The label and length rules at their edges, in lower and upper case and with a port or a
    /// trailing dot: each decided the same way by the fast path and the general one.
    #[test]
    fn label_and_length_edges() {
        let l63 = "a".repeat(63);
        let l64 = "a".repeat(64);
        // 4 labels of 63 and separators: 255 bytes; cut to 253 and 254.
        let long = [l63.as_str(); 4].join(".");
        let (n253, n254) = (&long[..253], &long[..254]);
        let cases: Vec<(String, bool)> = vec![
            (format!("{l63}.example"), true),
            (format!("{l64}.example"), false),
            (format!("example.{l64}"), false),
            (n253.to_string(), true),
            (n254.to_string(), false),
            (format!("{n253}."), true),
            ("a-b.c-d".into(), true),
            ("a-.example".into(), false),
            ("example.-a".into(), false),
            ("example.a-".into(), false),
            ("-".into(), false),
            ("a.-".into(), false),
            ("a_b.example".into(), true),
        ];
        for (host, ok) in cases {
            for raw in [
                host.clone(),
                host.to_ascii_uppercase(),
                format!("{host}:8080"),
                format!("{}:8080", host.to_ascii_uppercase()),
            ] {
                let got = normalize_host(&raw);
                assert_eq!(got.is_some(), ok, "{raw:?}");
                assert_eq!(
                    normalize_plain_host(&raw),
                    Some(normalize_any_host(&raw)),
                    "{raw:?}"
                );
                if let Some(n) = got {
                    assert_eq!(n, host.trim_end_matches('.'), "{raw:?}");
                }
            }
        }
    }

    /// A normalised host is a well-formed name that normalises to itself.
    fn check_normalised(raw: &str) -> Result<(), TestCaseError> {
        if let Some(n) = normalize_host(raw) {
            prop_assert!(!n.is_empty() && n.len() <= 253);
            prop_assert!(!n
                .bytes()
                .any(|b| b.is_ascii_uppercase() || b == b'/' || b == b' '));
            let again = normalize_host(&n).map(Cow::into_owned);
            prop_assert_eq!(again.as_deref(), Some(n.as_ref()));
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn printable_text_normalises_idempotently(s in "\\PC{0,80}") {
            check_normalised(&s)?;
        }

        #[test]
        fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..80)) {
            check_normalised(&String::from_utf8_lossy(&raw))?;
        }

        #[test]
        fn host_like_inputs_are_idempotent(s in "[A-Za-z0-9.\\-:\\[\\]]{0,40}") {
            check_normalised(&s)?;
        }

        #[test]
        fn one_pass_agrees_with_the_general_path(
            s in "[A-Za-z0-9._\\-:]{0,70}|([a-z0-9\\-]{1,66}\\.){2,5}[a-z\\-]{1,66}\\.?|[a-z]{1,64}(\\.[a-z0-9\\-]{1,64}){0,5}\\.?(:[0-9]{0,6})?|\\PC{0,20}"
        ) {
            if let Some(decided) = normalize_plain_host(&s) {
                prop_assert_eq!(decided, normalize_any_host(&s), "{:?}", s);
            }
        }
    }

    #[test]
    fn query_tenant() {
        assert_eq!(query_param_tenant("a=1&tenant=acme"), Some("acme"));
        assert_eq!(query_param_tenant("tenant="), None);
        assert_eq!(query_param_tenant("xtenant=a"), None);
    }
}
