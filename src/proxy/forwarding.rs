//! What crosses to the upstream and back besides the body: reading Host and SNI, the trusted
//! `X-Tenant-*` headers (client copies removed first), `X-Request-Id`, `X-Forwarded-*`.

use http::header::{HeaderName, HeaderValue, HOST};
use pingora::http::RequestHeader;
use pingora::proxy::Session;

use crate::tenant::{normalize_host, Tenant};
use crate::tls::Sni;

pub static X_TENANT_ID: HeaderName = HeaderName::from_static("x-tenant-id");
pub static X_ORGANIZATION_ID: HeaderName = HeaderName::from_static("x-organization-id");
pub static X_TENANT_PLAN: HeaderName = HeaderName::from_static("x-tenant-plan");
pub static X_TENANT_FEATURES: HeaderName = HeaderName::from_static("x-tenant-features");
pub static X_TENANT_SCHEMA: HeaderName = HeaderName::from_static("x-tenant-schema");
pub static X_USER_ID: HeaderName = HeaderName::from_static("x-user-id");
pub static X_USER_ROLES: HeaderName = HeaderName::from_static("x-user-roles");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Host of the request: `Host` on HTTP/1, `:authority` on HTTP/2.
pub fn request_host(req: &RequestHeader) -> Option<&str> {
    req.headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
}

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

/// `https://host[:port]/path?query` for the plain-HTTP redirect.
pub fn https_location(req: &RequestHeader, https_port: Option<u16>) -> Option<String> {
    let host = normalize_host(request_host(req)?)?;
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.into_owned()
    };
    let port = match https_port {
        Some(443) | None => String::new(),
        Some(p) => format!(":{p}"),
    };
    let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
    Some(format!("https://{host}{port}{path}"))
}

/// True for headers only the gateway may set upstream (`X-User-Id` and `X-User-Roles` come
/// from a verified credential).
pub fn is_tenant_header(name: &HeaderName) -> bool {
    let n = name.as_str();
    n.starts_with("x-tenant-")
        || n == "x-organization-id"
        || n == "x-user-id"
        || n == "x-user-roles"
}

/// The gateway's view of the request, as upstream headers.
pub struct Injection<'a> {
    pub tenant: &'a Tenant,
    pub request_id: Option<&'a HeaderValue>,
    pub user_id: Option<&'a HeaderValue>,
    /// Sorted comma list of the verified roles.
    pub user_roles: Option<&'a HeaderValue>,
    /// Keep and extend a client `X-Forwarded-For` (only behind a trusted load balancer).
    pub trust_forwarded: bool,
}

/// Rewrites the upstream request headers.
pub fn inject(
    session: &Session,
    upstream: &mut RequestHeader,
    inj: &Injection<'_>,
) -> pingora::Result<()> {
    let tenant = inj.tenant;
    let trust_forwarded = inj.trust_forwarded;
    // Whatever the client sent under these names is not to be trusted: remove every copy.
    while let Some(name) = upstream
        .headers
        .keys()
        .find(|n| is_tenant_header(n))
        .cloned()
    {
        upstream.remove_header(&name);
    }
    let h = &tenant.headers;
    upstream.insert_header(X_TENANT_ID.clone(), h.id.clone())?;
    upstream.insert_header(X_ORGANIZATION_ID.clone(), h.organization_id.clone())?;
    upstream.insert_header(X_TENANT_PLAN.clone(), h.plan.clone())?;
    upstream.insert_header(X_TENANT_FEATURES.clone(), h.features.clone())?;
    if let Some(schema) = &h.schema {
        upstream.insert_header(X_TENANT_SCHEMA.clone(), schema.clone())?;
    }
    if let Some(rid) = inj.request_id {
        upstream.insert_header(X_REQUEST_ID.clone(), rid.clone())?;
    }
    if let Some(user) = inj.user_id {
        upstream.insert_header(X_USER_ID.clone(), user.clone())?;
    }
    if let Some(roles) = inj.user_roles {
        upstream.insert_header(X_USER_ROLES.clone(), roles.clone())?;
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
                upstream.insert_header(X_FORWARDED_FOR.clone(), v)?;
            }
            _ => {
                upstream.insert_header(X_FORWARDED_FOR.clone(), ip)?;
            }
        }
    }
    let tls = is_tls(session);
    upstream.insert_header(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(if tls { "https" } else { "http" }),
    )?;
    if let Some(host) = session.req_header().headers.get(HOST).cloned() {
        upstream.insert_header(X_FORWARDED_HOST.clone(), host)?;
    } else if let Some(auth) = session.req_header().uri.authority() {
        if let Ok(v) = HeaderValue::from_str(auth.as_str()) {
            upstream.insert_header(X_FORWARDED_HOST.clone(), v)?;
        }
    }
    Ok(())
}
