//! Error responses of the HTTP contract: a status, a stable `code` and the JSON body
//! `{"success":false,"error":"…","code":"…"}`.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

/// Every error the gateway itself answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayError {
    TenantRequired,
    TenantNotFound,
    TenantSuspended,
    FeatureNotAvailable,
    TenantMismatch,
    Unauthorized,
    MisdirectedRequest,
    QuotaExceeded,
    QuotaBackendUnavailable,
    /// A route that counts body bytes got a body without `Content-Length`.
    LengthRequired,
    UpstreamUnavailable,
    UpstreamTimeout,
}

impl GatewayError {
    pub fn status(self) -> u16 {
        match self {
            Self::TenantRequired => 400,
            Self::TenantNotFound => 404,
            Self::TenantSuspended | Self::FeatureNotAvailable | Self::TenantMismatch => 403,
            Self::Unauthorized => 401,
            Self::MisdirectedRequest => 421,
            Self::QuotaExceeded => 429,
            Self::QuotaBackendUnavailable => 503,
            Self::LengthRequired => 411,
            Self::UpstreamUnavailable => 502,
            Self::UpstreamTimeout => 504,
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
            Self::MisdirectedRequest => "MISDIRECTED_REQUEST",
            Self::QuotaExceeded => "QUOTA_EXCEEDED",
            Self::QuotaBackendUnavailable => "QUOTA_BACKEND_UNAVAILABLE",
            Self::LengthRequired => "LENGTH_REQUIRED",
            Self::UpstreamUnavailable => "UPSTREAM_UNAVAILABLE",
            Self::UpstreamTimeout => "UPSTREAM_TIMEOUT",
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
            Self::MisdirectedRequest => "SNI and Host name different tenants",
            Self::QuotaExceeded => "Quota exceeded",
            Self::QuotaBackendUnavailable => "Quota backend unavailable",
            Self::LengthRequired => "Content-Length is required on this route",
            Self::UpstreamUnavailable => "Upstream unavailable",
            Self::UpstreamTimeout => "Upstream timed out",
        }
    }

    /// The human text, naming the feature or resource where the contract says so.
    pub fn message(self, subject: Option<&str>) -> String {
        match (self, subject) {
            (Self::FeatureNotAvailable, Some(f)) => {
                format!("Feature '{f}' is not available for your plan")
            }
            (Self::QuotaExceeded, Some(r)) => format!("Quota exceeded for {r}"),
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

/// Writes a complete error response. `extra` headers (Retry-After, WWW-Authenticate, …) are
/// added as given.
pub async fn send_error(
    session: &mut Session,
    err: GatewayError,
    subject: Option<&str>,
    extra: &[(&'static str, String)],
) -> pingora::Result<()> {
    let body = err.json_body(subject);
    let mut resp = ResponseHeader::build(err.status(), Some(4 + extra.len()))?;
    resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
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
}
