//! Admission: who the request is for (tenant resolution, strict SNI), whether the caller may
//! (credentials, suspension, features, `require_auth`) and whether the plan has room (quotas).

use std::sync::Arc;

use pingora::proxy::Session;

use super::forwarding::{connection_sni, request_host, X_TENANT_ID};
use super::TenantProxy;
use crate::auth::Credential;
use crate::config::TenantStatus;
use crate::quota::{
    unix_now, window_key, Demand, RateLimitHeaders, Request as QuotaRequest, Verdict, Window,
    REQUESTS_RESOURCE,
};
use crate::response::GatewayError;
use crate::snapshot::{Consume, Route, Snapshot};
use crate::tenant::{
    normalize_host, resolve, HostMatch, ResolveError, ResolveInput, Tenant, TenantSource,
};

/// A request the gateway answers itself instead of proxying.
pub struct Denied {
    pub error: GatewayError,
    /// Feature or resource named in the message.
    pub subject: Option<String>,
    /// The tenant, when one was resolved (so metrics and logs attribute the denial).
    pub tenant: Option<Arc<Tenant>>,
    /// Why, for the audit log of authentication failures.
    pub reason: Option<&'static str>,
}

impl TenantProxy {
    /// Resolves the tenant and applies tenant-level and route-level gates. `Err` carries the
    /// answer to send instead of proxying.
    pub(super) fn admit(
        &self,
        session: &Session,
        snapshot: &Snapshot,
        credential: &Credential,
    ) -> Result<(Arc<Tenant>, Option<usize>), Denied> {
        let req = session.req_header();
        let settings = &snapshot.settings;
        let token_tenant = match credential {
            Credential::Token(t) => t.tenant.as_deref(),
            _ => None,
        };
        let input = ResolveInput {
            host: request_host(req),
            trusted_header: if settings.trust_tenant_header {
                req.headers.get(&X_TENANT_ID).and_then(|v| v.to_str().ok())
            } else {
                None
            },
            token_tenant,
            dev_query: if settings.dev_mode {
                req.uri.query()
            } else {
                None
            },
        };
        let sni_tenant = match connection_sni(session).and_then(normalize_host) {
            Some(name) => match snapshot.hosts.lookup(&name) {
                HostMatch::Tenant(t) => Some(t),
                _ => None,
            },
            None => None,
        };
        let tenant = match (resolve(&snapshot.hosts, &input), sni_tenant) {
            (Ok((t, TenantSource::Host)), _) if self.unverified_custom_domain(t, input.host) => {
                return Err(Denied {
                    error: GatewayError::TenantNotFound,
                    subject: None,
                    tenant: None,
                    reason: None,
                })
            }
            (Ok((t, _source)), _) => t,
            // A Host that names no tenant (IP literal, bare base domain): the SNI may.
            (Err(ResolveError::Required), Some(t)) => t,
            (Err(e), _) => {
                return Err(Denied {
                    error: match e {
                        ResolveError::Required => GatewayError::TenantRequired,
                        ResolveError::NotFound => GatewayError::TenantNotFound,
                    },
                    subject: None,
                    tenant: None,
                    reason: None,
                })
            }
        };
        let deny = |error, subject: Option<&str>, reason| Denied {
            error,
            subject: subject.map(str::to_string),
            tenant: Some(tenant.clone()),
            reason,
        };
        // One connection, one tenant: names of the same tenant may share a connection (HTTP/2
        // coalescing), names of different tenants may not.
        if settings.strict_sni && sni_tenant.is_some_and(|s| s.id != tenant.id) {
            return Err(deny(GatewayError::MisdirectedRequest, None, None));
        }
        // A valid credential of another tenant is never accepted, whatever the route.
        if credential.tenant().is_some_and(|t| t != &*tenant.id) {
            return Err(deny(
                GatewayError::TenantMismatch,
                None,
                Some("credential_of_other_tenant"),
            ));
        }
        if tenant.status == TenantStatus::Suspended {
            return Err(deny(GatewayError::TenantSuspended, None, None));
        }
        let route = snapshot.route_index(&req.method, req.uri.path());
        if let Some(route) = route.map(|i| &snapshot.routes[i]) {
            if route.require_auth && !credential.is_valid() {
                let reason = match credential {
                    Credential::Invalid(r) => r,
                    _ => "missing_credential",
                };
                return Err(deny(GatewayError::Unauthorized, None, Some(reason)));
            }
            // require_role (issue 14): needs a verified credential, then any of the roles.
            if let Some(required) = &route.require_role {
                match credential {
                    Credential::ApiKey { .. } | Credential::Token(_) => {
                        if !required.admits(credential.roles()) {
                            let roles = required.describe();
                            let reason = Some(crate::roles::INSUFFICIENT_ROLE);
                            return Err(deny(GatewayError::InsufficientRole, Some(&roles), reason));
                        }
                    }
                    Credential::Invalid(r) => {
                        return Err(deny(GatewayError::Unauthorized, None, Some(r)))
                    }
                    Credential::None => {
                        let reason = Some("missing_credential");
                        return Err(deny(GatewayError::Unauthorized, None, reason));
                    }
                }
            }
            if let Some(feature) = &route.require_feature {
                if !tenant.has_feature(feature) {
                    return Err(deny(GatewayError::FeatureNotAvailable, Some(feature), None));
                }
            }
        }
        Ok((tenant.clone(), route))
    }

    /// With ACME on, a custom domain routes only once its ownership is verified.
    fn unverified_custom_domain(&self, tenant: &Tenant, host: Option<&str>) -> bool {
        let Some(acme) = &self.acme else { return false };
        if tenant.custom_domains.is_empty() {
            return false;
        }
        match host.and_then(normalize_host) {
            Some(h) => tenant.custom_domains.iter().any(|d| **d == *h) && !acme.domain_routable(&h),
            None => false,
        }
    }

    /// Applies the tenant's quotas to this request: `Ok` with the headers for the response, or
    /// the denial (429 / 503) with its headers.
    pub(super) async fn enforce_quota(
        &self,
        session: &Session,
        tenant: &Tenant,
        route: Option<&Route>,
    ) -> Result<Option<RateLimitHeaders>, (Denied, Vec<(&'static str, String)>)> {
        if tenant.quotas.is_empty() {
            return Ok(None);
        }
        let now = unix_now();
        let mut resources: Vec<&str> = Vec::with_capacity(2);
        let mut demands: Vec<Demand> = Vec::with_capacity(2);
        let mut quota_index: Vec<usize> = Vec::with_capacity(2);
        let mut add = |resource: &str, amount: u64| {
            let Some(qi) = tenant.quotas.iter().position(|(r, _)| &**r == resource) else {
                return; // no quota on this resource for this tenant: unlimited
            };
            if let Some(existing) = quota_index.iter().position(|&q| q == qi) {
                demands[existing].amount += amount;
                return;
            }
            let (name, limit) = &tenant.quotas[qi];
            let window = Window::of(limit.period, now);
            demands.push(Demand {
                key: window_key(&tenant.id, name, &window),
                amount,
                limit: limit.limit,
                window,
            });
            resources.push(name);
            quota_index.push(qi);
        };
        add(REQUESTS_RESOURCE, 1);
        if let Some(route) = route {
            for (resource, consume) in &route.consumes {
                let amount = match consume {
                    Consume::Fixed(n) => *n,
                    Consume::ContentLength => {
                        let headers = &session.req_header().headers;
                        match headers
                            .get(http::header::CONTENT_LENGTH)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse().ok())
                        {
                            Some(n) => n,
                            // A body of unknown size cannot be counted before it is sent.
                            None if headers.contains_key(http::header::TRANSFER_ENCODING)
                                && tenant.quota(resource).is_some() =>
                            {
                                let denied = Denied {
                                    error: GatewayError::LengthRequired,
                                    subject: None,
                                    tenant: None,
                                    reason: None,
                                };
                                return Err((denied, vec![]));
                            }
                            None => 0,
                        }
                    }
                };
                add(resource, amount);
            }
        }
        let request = QuotaRequest {
            tenant: &tenant.id,
            resources: &resources,
            demands: &demands,
            quota_index: &quota_index,
            handles: Some(&self.tenant_metrics(tenant).quota),
        };
        let verdict = self.quota.decide(&request, now).await;
        let denied = |error, subject: Option<&str>| Denied {
            error,
            subject: subject.map(str::to_string),
            tenant: None,
            reason: None,
        };
        match verdict {
            Verdict::Allowed { headers } => Ok(headers),
            Verdict::Rejected {
                resource,
                retry_after,
                headers,
            } => Err((
                denied(GatewayError::QuotaExceeded, Some(resources[resource])),
                vec![
                    ("retry-after", retry_after.to_string()),
                    ("ratelimit-policy", headers.policy),
                    ("ratelimit", headers.limit),
                ],
            )),
            Verdict::Unavailable => {
                Err((denied(GatewayError::QuotaBackendUnavailable, None), vec![]))
            }
        }
    }
}
