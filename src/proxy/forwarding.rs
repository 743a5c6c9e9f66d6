//! What crosses to the upstream and back besides the body: reading Host and SNI, the canonical
//! target, the client headers that never cross (identity headers in any spelling, underscore
//! names, verified credentials, untrusted forwarding headers), the trusted `X-Tenant-*`
//! headers, `X-Request-Id`, `X-Forwarded-*`.

use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, HOST};
use pingora::http::RequestHeader;
use pingora::proxy::Session;

use crate::auth::StripCredentials;
use crate::config::UnderscoreHeaders;
use crate::tenant::{normalize_host, Tenant};
use crate::tls::Sni;

/// Names the proxy reads from the client; the ones it writes are `&'static str` (see `inject`).
pub static X_TENANT_ID: HeaderName = HeaderName::from_static("x-tenant-id");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// An IP address as a header value, formatted on the stack.
pub fn ip_header_value(ip: std::net::IpAddr) -> HeaderValue {
    use std::io::Write;
    let mut buf = [0u8; 48];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(cursor, "{ip}");
    let len = cursor.position() as usize;
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

/// Names only the gateway may send upstream: client copies are removed whatever their case or
/// count (`X-Tenant-*`, `X-Organization-*`, `X-User-*`).
pub fn is_identity_header(name: &str) -> bool {
    name.starts_with("x-tenant-")
        || name.starts_with("x-organization-")
        || name.starts_with("x-user-")
}

/// Client-address and proxy-chain headers, which only a trusted load balancer may send.
fn is_forwarding_header(name: &str) -> bool {
    name.starts_with("x-forwarded-") || name == "forwarded" || name == "x-real-ip"
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
}

/// Rewrites the upstream request: canonical target, client headers removed, one
/// Content-Length, the tenant's headers injected.
pub fn inject(
    session: &Session,
    upstream: &mut RequestHeader,
    inj: &Injection<'_>,
) -> pingora::Result<()> {
    let tenant = inj.tenant;
    let trust_forwarded = inj.sanitize.trust_forwarded;
    if let Some(target) = inj.target {
        upstream.set_raw_path(target.as_bytes())?;
    }
    // One pass to find what goes; nothing is allocated when the client sent none of it.
    let remove: Vec<HeaderName> = upstream
        .headers
        .keys()
        .filter(|n| inj.sanitize.removes(n.as_str()))
        .cloned()
        .collect();
    for name in &remove {
        upstream.remove_header(name);
    }
    if let Some(n) = inj.content_length {
        let mut values = upstream.headers.get_all(CONTENT_LENGTH).into_iter();
        let listed = match (values.next(), values.next()) {
            (Some(v), None) => v.as_bytes().contains(&b','),
            (Some(_), Some(_)) => true,
            (None, _) => false,
        };
        if listed {
            upstream.insert_header(CONTENT_LENGTH, n)?;
        }
    }
    // `&'static str` names: pingora copies and re-parses a `HeaderName` (measured with
    // benches/insn.sh).
    let h = &tenant.headers;
    upstream.insert_header("x-tenant-id", h.id.clone())?;
    upstream.insert_header("x-organization-id", h.organization_id.clone())?;
    upstream.insert_header("x-tenant-plan", h.plan.clone())?;
    upstream.insert_header("x-tenant-features", h.features.clone())?;
    if let Some(schema) = &h.schema {
        upstream.insert_header("x-tenant-schema", schema.clone())?;
    }
    if let Some(rid) = inj.request_id {
        upstream.insert_header("x-request-id", rid.clone())?;
    }
    if let Some(user) = inj.user_id {
        upstream.insert_header("x-user-id", user.clone())?;
    }
    if let Some(roles) = inj.user_roles {
        upstream.insert_header("x-user-roles", roles.clone())?;
    }

    if let Some(client) = session.client_addr().and_then(|a| a.as_inet()) {
        let ip = ip_header_value(client.ip());
        match upstream.headers.get(&X_FORWARDED_FOR) {
            // Behind a trusted load balancer the chain is kept and extended.
            Some(prev) if trust_forwarded => {
                let mut chain = Vec::with_capacity(prev.len() + 2 + ip.len());
                chain.extend_from_slice(prev.as_bytes());
                chain.extend_from_slice(b", ");
                chain.extend_from_slice(ip.as_bytes());
                let v = HeaderValue::from_bytes(&chain).unwrap_or(ip);
                upstream.insert_header("x-forwarded-for", v)?;
            }
            _ => {
                upstream.insert_header("x-forwarded-for", ip)?;
            }
        }
    }
    let tls = is_tls(session);
    upstream.insert_header(
        "x-forwarded-proto",
        HeaderValue::from_static(if tls { "https" } else { "http" }),
    )?;
    if let Some(host) = session.req_header().headers.get(HOST).cloned() {
        upstream.insert_header("x-forwarded-host", host)?;
    } else if let Some(auth) = session.req_header().uri.authority() {
        if let Ok(v) = HeaderValue::from_str(auth.as_str()) {
            upstream.insert_header("x-forwarded-host", v)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sanitize(u: UnderscoreHeaders, trust: bool, strip: StripCredentials) -> Sanitize {
        Sanitize {
            underscore_headers: u,
            trust_forwarded: trust,
            strip,
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
