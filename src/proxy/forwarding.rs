//! What crosses to the upstream and back besides the body: reading Host and SNI, the canonical
//! target, the client headers that never cross (identity headers in any spelling, underscore
//! names, verified credentials, untrusted forwarding headers), the trusted `X-Tenant-*`
//! headers, `X-Request-Id`, `X-Forwarded-*`.

use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;

use crate::auth::StripCredentials;
use crate::client_headers::{is_forwarding_header, is_identity_header};
use crate::config::UnderscoreHeaders;
use crate::limits::connection::ConnState;
use crate::quota::RateLimitHeaders;
use crate::tenant::{normalize_host, Tenant};
use crate::tls::Sni;

/// Names the proxy reads from the client and writes upstream.
pub static X_TENANT_ID: HeaderName = HeaderName::from_static("x-tenant-id");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// An IP address as a header value, formatted on the stack (IPv4 digit by digit, without the
/// `fmt` machinery).
pub fn ip_header_value(ip: std::net::IpAddr) -> HeaderValue {
    let mut buf = [0u8; 48];
    let len = match ip {
        std::net::IpAddr::V4(v4) => crate::ipv4_text::write_ipv4(v4, &mut buf),
        std::net::IpAddr::V6(_) => {
            use std::io::Write;
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            let _ = write!(cursor, "{ip}");
            cursor.position() as usize
        }
    };
    HeaderValue::from_bytes(&buf[..len]).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// SNI of the TLS connection the request came on, if any.
pub fn connection_sni(session: &Session) -> Option<&str> {
    session
        .digest()
        .and_then(|d| d.ssl_digest.as_ref())
        .and_then(|s| s.extension.get::<Sni>())
        .map(|s| &*s.0)
}

pub fn is_tls(session: &Session) -> bool {
    session.digest().is_some_and(|d| d.ssl_digest.is_some())
}

/// `https://host[:port]/path?query` for the plain-HTTP redirect; `target` is the canonical
/// path and query.
pub fn https_location(host: &str, target: &str, https_port: Option<u16>) -> Option<String> {
    let host = normalize_host(host)?;
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.into_owned()
    };
    let port = match https_port {
        Some(443) | None => String::new(),
        Some(p) => format!(":{p}"),
    };
    Some(format!("https://{host}{port}{target}"))
}

/// What the client sent that must not reach the upstream.
#[derive(Debug, Clone, Copy)]
pub struct Sanitize {
    pub underscore_headers: UnderscoreHeaders,
    /// Keep client forwarding headers (behind a trusted load balancer).
    pub trust_forwarded: bool,
    /// Verified credentials to remove.
    pub strip: StripCredentials,
}

impl Sanitize {
    /// True when the header `name` (lower case, as `http` stores it) is removed.
    pub fn removes(&self, name: &str) -> bool {
        if name.contains('_') {
            if self.underscore_headers != UnderscoreHeaders::Allow {
                return true;
            }
            // Allowed underscores still never spell an identity or credential header: a
            // CGI-style backend reads `X_Tenant_Id` as `X-Tenant-Id`.
            let dashed = name.replace('_', "-");
            if self.removes_dashed(&dashed) || dashed == "x-api-key" || dashed == "authorization" {
                return true;
            }
        }
        self.removes_dashed(name)
    }

    /// Every combination of settings (for tests that must hold under all of them).
    #[cfg(test)]
    pub fn every_setting() -> impl Iterator<Item = Sanitize> {
        let underscores = [
            UnderscoreHeaders::Drop,
            UnderscoreHeaders::Reject,
            UnderscoreHeaders::Allow,
        ];
        underscores.into_iter().flat_map(|underscore_headers| {
            (0..8u8).map(move |bits| Sanitize {
                underscore_headers,
                trust_forwarded: bits & 1 != 0,
                strip: StripCredentials {
                    x_api_key: bits & 2 != 0,
                    authorization: bits & 4 != 0,
                },
            })
        })
    }

    fn removes_dashed(&self, name: &str) -> bool {
        is_identity_header(name)
            || (!self.trust_forwarded && is_forwarding_header(name))
            || (self.strip.x_api_key && name == "x-api-key")
            || (self.strip.authorization && name == "authorization")
    }
}

/// The gateway's view of the request, as upstream headers.
pub struct Injection<'a> {
    pub tenant: &'a Tenant,
    pub request_id: Option<&'a HeaderValue>,
    pub user_id: Option<&'a HeaderValue>,
    /// Sorted comma list of the verified roles.
    pub user_roles: Option<&'a HeaderValue>,
    pub sanitize: Sanitize,
    /// The canonical `path?query`, when it differs from what the client sent.
    pub target: Option<&'a str>,
    /// The one Content-Length of the request (a repeated or listed value goes out once).
    pub content_length: Option<u64>,
    /// The client's Host header (else the request's authority is used), for
    /// `X-Forwarded-Host`.
    pub host: Option<&'a HeaderValue>,
    /// The connection's state, which keeps the client address as a header value.
    pub connection: Option<&'a ConnState>,
    /// Whether the client sent any header [`Sanitize`] may remove
    /// ([`crate::client_headers::ClientHeaders::removable`]); when not, the name-by-name pass
    /// is skipped.
    pub removable: bool,
}

/// Names the gateway writes upstream, pre-built: inserting one is a hash and a refcount.
static X_ORGANIZATION_ID: HeaderName = HeaderName::from_static("x-organization-id");
static X_TENANT_PLAN: HeaderName = HeaderName::from_static("x-tenant-plan");
static X_TENANT_FEATURES: HeaderName = HeaderName::from_static("x-tenant-features");
static X_TENANT_SCHEMA: HeaderName = HeaderName::from_static("x-tenant-schema");
static X_USER_ID: HeaderName = HeaderName::from_static("x-user-id");
static X_USER_ROLES: HeaderName = HeaderName::from_static("x-user-roles");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Headers `inject` always adds: X-Tenant-Id, X-Organization-Id, X-Tenant-Plan,
/// X-Tenant-Features, X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host.
const ALWAYS_INJECTED: usize = 7;

/// Rewrites the upstream request: canonical target, client headers removed, one
/// Content-Length, the tenant's headers injected.
///
/// The request is rebuilt without pingora's case-preserving name map, so every edit is one
/// `HeaderMap` operation instead of two (and no name is copied and parsed again); pingora then
/// writes names lower case, except the few it title-cases (`Host`, `Content-Length`, ...).
/// Header names are case-insensitive (RFC 9110 section 5.1); HTTP/2 upstreams get lower case
/// names either way. The request keeps its version, method, URI, extensions, raw target and
/// HTTP/2 end-of-stream flag.
pub fn inject(
    session: &Session,
    upstream: &mut RequestHeader,
    inj: &Injection<'_>,
) -> pingora::Result<()> {
    rebuild_request(upstream, inj.target, |headers| {
        edit_headers(session, headers, inj)
    })
}

/// Rebuilds `upstream` from its `http` parts (dropping pingora's case map) after `edit` has
/// changed its headers; `target`, when given, becomes the raw target, else a target the URI
/// does not reproduce (absolute-form) is put back as it came.
fn rebuild_request(
    upstream: &mut RequestHeader,
    target: Option<&str>,
    edit: impl FnOnce(&mut HeaderMap),
) -> pingora::Result<()> {
    let verbatim_target = match target {
        Some(_) => None,
        None => {
            let raw = upstream.raw_path();
            let from_uri = upstream.uri.path_and_query().map(|p| p.as_str().as_bytes());
            (from_uri != Some(raw)).then(|| raw.to_vec())
        }
    };
    // Only an HTTP/2 request carries it (false for a gRPC-web bridge); the rebuild resets it.
    let send_end_stream = upstream.send_end_stream();
    let placeholder = RequestHeader::from(http::Request::new(()).into_parts().0);
    let mut parts: http::request::Parts = std::mem::replace(upstream, placeholder).into();
    edit(&mut parts.headers);
    *upstream = RequestHeader::from(parts);
    if let Some(end_stream) = send_end_stream {
        upstream.set_send_end_stream(end_stream);
    }
    match (target, verbatim_target) {
        (Some(target), _) => upstream.set_raw_path(target.as_bytes())?,
        (None, Some(raw)) => upstream.set_raw_path(&raw)?,
        (None, None) => {}
    }
    Ok(())
}

/// The header edits of [`inject`], on the plain value map.
fn edit_headers(session: &Session, headers: &mut HeaderMap, inj: &Injection<'_>) {
    let tenant = inj.tenant;
    let trust_forwarded = inj.sanitize.trust_forwarded;
    if inj.removable {
        // One pass to find what goes; nothing is allocated when none of it is there.
        let remove: Vec<HeaderName> = headers
            .keys()
            .filter(|n| inj.sanitize.removes(n.as_str()))
            .cloned()
            .collect();
        for name in &remove {
            headers.remove(name);
        }
    }
    if let Some(n) = inj.content_length {
        let mut values = headers.get_all(CONTENT_LENGTH).into_iter();
        let listed = match (values.next(), values.next()) {
            (Some(v), None) => v.as_bytes().contains(&b','),
            (Some(_), Some(_)) => true,
            (None, _) => false,
        };
        if listed {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
        }
    }
    let h = &tenant.headers;
    // Room for exactly what goes in below, reserved once: one growth of the map, as small as
    // it can be.
    let optional = [
        h.schema.is_some(),
        inj.request_id.is_some(),
        inj.user_id.is_some(),
        inj.user_roles.is_some(),
    ];
    headers.reserve(ALWAYS_INJECTED + optional.iter().filter(|&&o| o).count());
    headers.insert(X_TENANT_ID.clone(), h.id.clone());
    headers.insert(X_ORGANIZATION_ID.clone(), h.organization_id.clone());
    headers.insert(X_TENANT_PLAN.clone(), h.plan.clone());
    headers.insert(X_TENANT_FEATURES.clone(), h.features.clone());
    if let Some(schema) = &h.schema {
        headers.insert(X_TENANT_SCHEMA.clone(), schema.clone());
    }
    if let Some(rid) = inj.request_id {
        headers.insert(X_REQUEST_ID.clone(), rid.clone());
    }
    if let Some(user) = inj.user_id {
        headers.insert(X_USER_ID.clone(), user.clone());
    }
    if let Some(roles) = inj.user_roles {
        headers.insert(X_USER_ROLES.clone(), roles.clone());
    }

    if let Some(client) = session.client_addr().and_then(|a| a.as_inet()) {
        let make = || ip_header_value(client.ip());
        let ip = match inj.connection {
            Some(conn) => conn.client_ip_header(make),
            None => make(),
        };
        // Behind a trusted load balancer the chain is kept and extended.
        let previous = if trust_forwarded {
            headers.get(&X_FORWARDED_FOR)
        } else {
            None
        };
        let value = match previous {
            Some(prev) => {
                let mut chain = Vec::with_capacity(prev.len() + 2 + ip.len());
                chain.extend_from_slice(prev.as_bytes());
                chain.extend_from_slice(b", ");
                chain.extend_from_slice(ip.as_bytes());
                HeaderValue::from_bytes(&chain).unwrap_or(ip)
            }
            _ => ip,
        };
        headers.insert(X_FORWARDED_FOR.clone(), value);
    }
    let tls = is_tls(session);
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(if tls { "https" } else { "http" }),
    );
    let host = inj.host.cloned().or_else(|| {
        let auth = session.req_header().uri.authority()?;
        HeaderValue::from_str(auth.as_str()).ok()
    });
    if let Some(host) = host {
        headers.insert(X_FORWARDED_HOST.clone(), host);
    }
}

static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Adds `X-Request-Id` and the quota's `RateLimit-Policy` / `RateLimit` to the upstream's
/// response, rebuilt without the case map as in [`inject`] (the reason phrase is kept).
pub fn extend_response(
    resp: &mut ResponseHeader,
    request_id: Option<&HeaderValue>,
    rate_limit: Option<RateLimitHeaders>,
) -> pingora::Result<()> {
    if request_id.is_none() && rate_limit.is_none() {
        return Ok(());
    }
    // Only a custom reason phrase needs keeping: the canonical one is what a rebuilt header
    // reports anyway.
    let reason = resp
        .get_reason_phrase()
        .filter(|r| Some(*r) != resp.status.canonical_reason())
        .map(str::to_owned);
    let placeholder = ResponseHeader::from(http::Response::new(()).into_parts().0);
    let mut parts: http::response::Parts = std::mem::replace(resp, placeholder).into();
    if !parts.status.is_informational() {
        // The upstream's `Connection` is hop-by-hop (RFC 9110 section 7.6.1): pingora writes
        // its own on HTTP/1 and none on HTTP/2. Removed before the inserts, it also leaves the
        // map room for pingora's `Date` and `Connection`, so it does not grow for them. A 101
        // keeps it (`Connection: upgrade`, which pingora then leaves alone).
        parts.headers.remove(http::header::CONNECTION);
    }
    // A value that differs on every response is marked never-indexed for HTTP/2 (HPACK
    // section 6.2.3): indexed, each would be one more entry pushing the repeated ones (Date,
    // Content-Type, the policy) out of the connection's dynamic table, and searched on every
    // later response. HTTP/1 ignores the flag.
    if let Some(rid) = request_id {
        parts
            .headers
            .insert(X_REQUEST_ID.clone(), never_indexed(rid.clone()));
    }
    if let Some(h) = rate_limit {
        parts
            .headers
            .insert(RATELIMIT_POLICY.clone(), header_value(h.policy)?);
        parts
            .headers
            .insert(RATELIMIT.clone(), never_indexed(header_value(h.limit)?));
    }
    *resp = ResponseHeader::from(parts);
    if reason.is_some() {
        resp.set_reason_phrase(reason.as_deref())?;
    }
    Ok(())
}

fn never_indexed(mut v: HeaderValue) -> HeaderValue {
    v.set_sensitive(true);
    v
}

fn header_value(s: String) -> pingora::Result<HeaderValue> {
    use pingora::OrErr;
    HeaderValue::from_maybe_shared(bytes::Bytes::from(s)).or_err(
        pingora::ErrorType::InvalidHTTPHeader,
        "invalid RateLimit value",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn values<'h>(headers: &'h HeaderMap, name: &str) -> Vec<&'h str> {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    /// What a client may send more than once, in odd case, or as an absolute-form target
    /// survives the rebuild: every value in order, the raw target, method and version.
    #[test]
    fn rebuilt_request_keeps_repeated_headers_and_the_raw_target() {
        let mut req =
            RequestHeader::build("GET", b"http://acme.localhost/a%20b?q=1", None).unwrap();
        req.append_header("Cookie", "a=1").unwrap();
        req.append_header("cOOkie", "b=2").unwrap();
        req.append_header("Accept", "text/html").unwrap();
        req.append_header("accept", "*/*").unwrap();
        rebuild_request(&mut req, None, |h| {
            h.insert(X_TENANT_ID.clone(), HeaderValue::from_static("acme"));
        })
        .unwrap();
        assert_eq!(values(&req.headers, "cookie"), ["a=1", "b=2"]);
        assert_eq!(values(&req.headers, "accept"), ["text/html", "*/*"]);
        assert_eq!(values(&req.headers, "x-tenant-id"), ["acme"]);
        assert_eq!(req.raw_path(), b"http://acme.localhost/a%20b?q=1");
        assert_eq!(req.method, http::Method::GET);

        // A canonical target replaces the raw one.
        rebuild_request(&mut req, Some("/a/b"), |_| {}).unwrap();
        assert_eq!(req.raw_path(), b"/a/b");
        assert_eq!(values(&req.headers, "cookie"), ["a=1", "b=2"]);
    }

    /// The upstream's response keeps every repeated header (Set-Cookie), its status and its
    /// reason phrase when the gateway adds X-Request-Id and the RateLimit headers.
    #[test]
    fn extended_response_keeps_repeated_headers_and_the_reason() {
        let mut resp = ResponseHeader::build(299, None).unwrap();
        resp.set_reason_phrase(Some("Odd Reason")).unwrap();
        resp.append_header("Set-Cookie", "a=1").unwrap();
        resp.append_header("set-COOKIE", "b=2").unwrap();
        let rid = HeaderValue::from_static("rid-1");
        let limits = RateLimitHeaders {
            policy: "\"requests\";q=10;w=60".into(),
            limit: "\"requests\";r=9;t=60".into(),
        };
        extend_response(&mut resp, Some(&rid), Some(limits)).unwrap();
        assert_eq!(values(&resp.headers, "set-cookie"), ["a=1", "b=2"]);
        assert_eq!(resp.status.as_u16(), 299);
        assert_eq!(resp.get_reason_phrase(), Some("Odd Reason"));
        assert_eq!(resp.headers["x-request-id"], "rid-1");
        assert_eq!(resp.headers["ratelimit"], "\"requests\";r=9;t=60");
        // Per-response values stay out of HTTP/2's header table; the policy may be indexed.
        assert!(resp.headers["x-request-id"].is_sensitive());
        assert!(resp.headers["ratelimit"].is_sensitive());
        assert!(!resp.headers["ratelimit-policy"].is_sensitive());
        assert_eq!(resp.headers["ratelimit-policy"], "\"requests\";q=10;w=60");
    }

    /// The upstream's hop-by-hop `Connection` does not reach the client (pingora writes its
    /// own on HTTP/1), except on a 101, where it carries the upgrade; a canonical reason is
    /// reported as before.
    #[test]
    fn extended_response_drops_the_upstream_connection_header_except_on_101() {
        let rid = HeaderValue::from_static("rid-1");
        for (status, kept) in [(200, false), (404, false), (502, false), (101, true)] {
            let mut resp = ResponseHeader::build(status, None).unwrap();
            resp.append_header("Connection", "keep-alive").unwrap();
            resp.append_header("Content-Length", "3").unwrap();
            extend_response(&mut resp, Some(&rid), None).unwrap();
            assert_eq!(resp.headers.contains_key("connection"), kept, "{status}");
            assert_eq!(resp.headers["content-length"], "3");
            assert_eq!(
                resp.get_reason_phrase(),
                resp.status.canonical_reason(),
                "{status}"
            );
        }
    }

    fn sanitize(u: UnderscoreHeaders, trust: bool, strip: StripCredentials) -> Sanitize {
        Sanitize {
            underscore_headers: u,
            trust_forwarded: trust,
            strip,
        }
    }

    #[test]
    fn ipv4_edges_are_formatted_like_display() {
        for ip in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.100.9",
            "127.0.0.1",
            "1.20.199.250",
        ] {
            let addr: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(ip_header_value(addr).to_str().unwrap(), ip);
        }
    }

    #[test]
    fn identity_headers_in_every_spelling() {
        let s = sanitize(UnderscoreHeaders::Allow, false, StripCredentials::default());
        for name in [
            "x-tenant-id",
            "x-tenant-plan",
            "x-tenant-anything",
            "x-organization-id",
            "x-user-id",
            "x-user-roles",
            "x_tenant_id",
            "x_user_id",
            "x-tenant_id",
            "x_organization_id",
            "x-forwarded-for",
            "x-forwarded-host",
            "forwarded",
            "x-real-ip",
            "x_forwarded_for",
            "x_api_key",
        ] {
            assert!(s.removes(name), "{name}");
        }
        for name in ["accept", "x-api-key", "authorization", "x-custom_ok"] {
            assert!(!s.removes(name), "{name}");
        }
    }

    #[test]
    fn underscores_are_dropped_by_default() {
        let s = sanitize(UnderscoreHeaders::Drop, false, StripCredentials::default());
        assert!(s.removes("x_custom"));
        assert!(!s.removes("x-custom"));
        let s = sanitize(UnderscoreHeaders::Allow, false, StripCredentials::default());
        assert!(!s.removes("x_custom"));
    }

    #[test]
    fn trusted_balancer_keeps_forwarding_headers_not_identity() {
        let s = sanitize(UnderscoreHeaders::Drop, true, StripCredentials::default());
        assert!(!s.removes("x-forwarded-for"));
        assert!(s.removes("x-tenant-id"));
    }

    #[test]
    fn verified_credentials_are_stripped() {
        let strip = StripCredentials {
            x_api_key: true,
            authorization: true,
        };
        let s = sanitize(UnderscoreHeaders::Drop, false, strip);
        assert!(s.removes("x-api-key") && s.removes("authorization"));
        let s = sanitize(UnderscoreHeaders::Drop, false, StripCredentials::default());
        assert!(!s.removes("x-api-key") && !s.removes("authorization"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The hand-written formatting is `Display`'s, for every address.
        #[test]
        fn ip_header_value_is_the_displayed_address(v4 in any::<u32>(), v6 in any::<u128>()) {
            for ip in [std::net::IpAddr::from(v4.to_be_bytes()), std::net::IpAddr::from(v6.to_be_bytes())] {
                let value = ip_header_value(ip);
                prop_assert_eq!(value.to_str().unwrap(), ip.to_string());
            }
        }

        /// Whatever the spelling, a name that a CGI backend maps to an identity header is
        /// removed under every underscore policy.
        #[test]
        fn no_spelling_of_an_identity_header_survives(
            base in prop::sample::select(vec!["x-tenant-id", "x-user-id", "x-organization-id", "x-tenant-schema", "x-user-roles"]),
            mask in any::<u32>(),
            policy in prop::sample::select(vec![UnderscoreHeaders::Drop, UnderscoreHeaders::Reject, UnderscoreHeaders::Allow]),
        ) {
            let spelled: String = base
                .chars()
                .enumerate()
                .map(|(i, c)| if c == '-' && mask & (1 << (i % 32)) != 0 { '_' } else { c })
                .collect();
            let s = sanitize(policy, false, StripCredentials::default());
            prop_assert!(s.removes(&spelled), "{}", spelled);
        }
    }
}
