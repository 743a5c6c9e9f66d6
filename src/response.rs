//! Error responses of the HTTP contract: a status, a stable `code` and the JSON body
//! `{"success":false,"error":"…","code":"…"}`.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use crate::tenant::Tenant;

/// Every error the gateway itself answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayError {
    TenantRequired,
    TenantNotFound,
    TenantSuspended,
    FeatureNotAvailable,
    TenantMismatch,
    Unauthorized,
    /// A verified credential without any of the route's `require_role`.
    InsufficientRole,
    MisdirectedRequest,
    QuotaExceeded,
    QuotaBackendUnavailable,
    /// A route that counts body bytes got a body without `Content-Length`.
    LengthRequired,
    UpstreamUnavailable,
    UpstreamTimeout,
    /// The request target is not one canonical origin-form path (see `canonical_path`).
    BadRequestTarget,
    /// The method is not an upper-case token.
    BadMethod,
    /// TRACE (cross-site tracing), never forwarded.
    MethodNotAllowed,
    /// An ambiguous or forbidden header: several Host headers, Host ≠ `:authority`, a
    /// Content-Length that is not one number, an underscore name under `reject`.
    BadHeader,
    /// `[limits] max_uri_bytes` exceeded.
    UriTooLong,
    /// `[limits] max_request_header_bytes` / `max_request_headers` exceeded.
    HeaderFieldsTooLarge,
}

impl GatewayError {
    pub fn status(self) -> u16 {
        match self {
            Self::TenantRequired => 400,
            Self::TenantNotFound => 404,
            Self::TenantSuspended
            | Self::FeatureNotAvailable
            | Self::TenantMismatch
            | Self::InsufficientRole => 403,
            Self::Unauthorized => 401,
            Self::MisdirectedRequest => 421,
            Self::QuotaExceeded => 429,
            Self::QuotaBackendUnavailable => 503,
            Self::LengthRequired => 411,
            Self::UpstreamUnavailable => 502,
            Self::UpstreamTimeout => 504,
            Self::BadRequestTarget | Self::BadMethod | Self::BadHeader => 400,
            Self::MethodNotAllowed => 405,
            Self::UriTooLong => 414,
            Self::HeaderFieldsTooLarge => 431,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Self::TenantRequired => "TENANT_REQUIRED",
            Self::TenantNotFound => "TENANT_NOT_FOUND",
            Self::TenantSuspended => "TENANT_SUSPENDED",
            Self::FeatureNotAvailable => "FEATURE_NOT_AVAILABLE",
            Self::TenantMismatch => "TENANT_MISMATCH",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::InsufficientRole => "INSUFFICIENT_ROLE",
            Self::MisdirectedRequest => "MISDIRECTED_REQUEST",
            Self::QuotaExceeded => "QUOTA_EXCEEDED",
            Self::QuotaBackendUnavailable => "QUOTA_BACKEND_UNAVAILABLE",
            Self::LengthRequired => "LENGTH_REQUIRED",
            Self::UpstreamUnavailable => "UPSTREAM_UNAVAILABLE",
            Self::UpstreamTimeout => "UPSTREAM_TIMEOUT",
            Self::BadRequestTarget => "BAD_REQUEST_TARGET",
            Self::BadMethod => "BAD_METHOD",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::BadHeader => "BAD_HEADER",
            Self::UriTooLong => "URI_TOO_LONG",
            Self::HeaderFieldsTooLarge => "REQUEST_HEADERS_TOO_LARGE",
        }
    }

    /// The message when it does not name anything (features and resources are added by
    /// [`GatewayError::message`]).
    fn base_message(self) -> &'static str {
        match self {
            Self::TenantRequired => "Tenant ID is required",
            Self::TenantNotFound => "Tenant not found",
            Self::TenantSuspended => "Tenant is suspended",
            Self::FeatureNotAvailable => "Feature is not available for your plan",
            Self::TenantMismatch => "Credential belongs to another tenant",
            Self::Unauthorized => "Missing or invalid credential",
            Self::InsufficientRole => "A role is required",
            Self::MisdirectedRequest => "SNI and Host name different tenants",
            Self::QuotaExceeded => "Quota exceeded",
            Self::QuotaBackendUnavailable => "Quota backend unavailable",
            Self::LengthRequired => "Content-Length is required on this route",
            Self::UpstreamUnavailable => "Upstream unavailable",
            Self::UpstreamTimeout => "Upstream timed out",
            Self::BadRequestTarget => "Request target is not a canonical path",
            Self::BadMethod => "Method must be an upper-case token",
            Self::MethodNotAllowed => "Method is not allowed",
            Self::BadHeader => "Request header is ambiguous or not allowed",
            Self::UriTooLong => "Request URI too long",
            Self::HeaderFieldsTooLarge => "Request header fields too large",
        }
    }

    /// The human text, naming the feature or resource where the contract says so.
    pub fn message(self, subject: Option<&str>) -> String {
        match (self, subject) {
            (Self::FeatureNotAvailable, Some(f)) => {
                format!("Feature '{f}' is not available for your plan")
            }
            (Self::QuotaExceeded, Some(r)) => format!("Quota exceeded for {r}"),
            (Self::InsufficientRole, Some(r)) => format!("Role '{r}' is required"),
            _ => self.base_message().to_string(),
        }
    }

    /// The JSON body.
    pub fn json_body(self, subject: Option<&str>) -> Bytes {
        // Field order as in the contract; serde_json's map would sort the keys.
        let message = serde_json::to_string(&self.message(subject)).unwrap_or_default();
        Bytes::from(format!(
            "{{\"success\":false,\"error\":{message},\"code\":\"{}\"}}",
            self.code()
        ))
    }
}

/// True when the client asks for HTML ahead of JSON (browsers); JSON stays the default.
pub fn wants_html(accept: Option<&http::HeaderValue>) -> bool {
    let Some(accept) = accept.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    match (accept.find("text/html"), accept.find("application/json")) {
        (Some(h), Some(j)) => h < j,
        (Some(_), None) => true,
        _ => false,
    }
}

/// Escapes text for HTML element content and double-quoted attributes.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A colour only if it is exactly `#rrggbb` (validated in config too; checked again here so
/// nothing else can ever reach the style sheet).
fn css_color<'a>(c: Option<&'a str>, fallback: &'a str) -> &'a str {
    match c {
        Some(c)
            if c.len() == 7
                && c.starts_with('#')
                && c.bytes().skip(1).all(|b| b.is_ascii_hexdigit()) =>
        {
            c
        }
        _ => fallback,
    }
}

/// The error as an HTML page, in the tenant's colours and logo when there is a tenant.
pub fn html_body(err: GatewayError, subject: Option<&str>, tenant: Option<&Tenant>) -> Bytes {
    let primary = css_color(
        tenant.and_then(|t| t.branding.primary_color.as_deref()),
        "#333333",
    );
    let secondary = css_color(
        tenant.and_then(|t| t.branding.secondary_color.as_deref()),
        "#f5f5f5",
    );
    let name = escape_html(tenant.map_or("tenant-gateway", |t| &t.name));
    let logo = tenant
        .and_then(|t| t.branding.logo.as_deref())
        .filter(|l| l.starts_with("https://"))
        .map(|l| format!("<img src=\"{}\" alt=\"\" height=\"32\">", escape_html(l)))
        .unwrap_or_default();
    let message = escape_html(&err.message(subject));
    Bytes::from(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{status} {message}</title>\
<style>body{{margin:0;font-family:system-ui,sans-serif;background:{secondary};color:#222}}\
header{{background:{primary};color:#fff;padding:12px 24px;display:flex;gap:12px;align-items:center}}\
main{{padding:48px 24px;max-width:40em}}h1{{margin:0 0 8px;color:{primary}}}code{{color:#666}}</style>\
</head><body><header>{logo}<strong>{name}</strong></header>\
<main><h1>{status}</h1><p>{message}</p><p><code>{code}</code></p></main></body></html>\n",
        status = err.status(),
        code = err.code(),
    ))
}

/// How the error body is rendered.
#[derive(Debug, Clone, Copy)]
pub enum ErrorFormat<'a> {
    Json,
    /// HTML page, branded for the tenant when there is one.
    Html(Option<&'a Tenant>),
}

/// Writes a complete error response. `extra` headers (Retry-After, WWW-Authenticate, …) are
/// added as given.
pub async fn send_error(
    session: &mut Session,
    err: GatewayError,
    subject: Option<&str>,
    extra: &[(&'static str, String)],
    format: ErrorFormat<'_>,
) -> pingora::Result<()> {
    let (body, content_type) = match format {
        ErrorFormat::Json => (err.json_body(subject), "application/json"),
        ErrorFormat::Html(tenant) => (html_body(err, subject, tenant), "text/html; charset=utf-8"),
    };
    let mut resp = ResponseHeader::build(err.status(), Some(4 + extra.len()))?;
    resp.insert_header(http::header::CONTENT_TYPE, content_type)?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    for (name, value) in extra {
        resp.append_header(*name, value.as_str())?;
    }
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_match_the_contract() {
        let b = GatewayError::TenantRequired.json_body(None);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["success"], false);
        assert_eq!(v["error"], "Tenant ID is required");
        assert_eq!(v["code"], "TENANT_REQUIRED");
        assert_eq!(
            std::str::from_utf8(&b).unwrap(),
            r#"{"success":false,"error":"Tenant ID is required","code":"TENANT_REQUIRED"}"#
        );
        assert_eq!(
            GatewayError::FeatureNotAvailable.message(Some("chat")),
            "Feature 'chat' is not available for your plan"
        );
        assert_eq!(
            GatewayError::QuotaExceeded.message(Some("messages")),
            "Quota exceeded for messages"
        );
        assert_eq!(GatewayError::MisdirectedRequest.status(), 421);
    }

    #[test]
    fn html_preference() {
        let v = |s: &'static str| http::HeaderValue::from_static(s);
        assert!(wants_html(Some(&v(
            "text/html,application/xhtml+xml,*/*;q=0.8"
        ))));
        assert!(!wants_html(Some(&v("application/json, text/html"))));
        assert!(!wants_html(Some(&v("*/*"))));
        assert!(!wants_html(None));
        assert_eq!(
            escape_html("<b a=\"x\">'&"),
            "&lt;b a=&quot;x&quot;&gt;&#39;&amp;"
        );
    }
}
