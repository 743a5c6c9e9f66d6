//! Admission as a pure function: from (snapshot, canonical request, credential) to the tenant
//! and route the request may go to, or the refusal the gateway answers itself.
//!
//! Order of the gates (each row of the README's error table is one of them):
//! resolve tenant (400 TENANT_REQUIRED / 404 TENANT_NOT_FOUND, unverified custom domain 404)
//! → strict SNI (421) → credentials of two tenants or of another tenant (403 TENANT_MISMATCH)
//! → suspended (403) → route: `require_auth` (401), `require_role` (401 without a verified
//! credential, 403 INSUFFICIENT_ROLE without the role), `require_feature` (403).
//! Quotas come after admission (they need the quota store); the proxy calls [`admit`] once
//! per request and stores its result once.

use std::sync::Arc;

use crate::auth::{AuthFailure, Credential};
use crate::config::TenantStatus;
use crate::request_view::CanonicalRequest;
use crate::response::GatewayError;
use crate::snapshot::Snapshot;
use crate::tenant::{
    normalize_host, resolve, HostMatch, ResolveError, ResolveInput, Tenant, TenantSource,
};

/// What admission needs besides the snapshot: the canonical request and what the connection
/// and headers said.
#[derive(Debug, Clone, Copy)]
pub struct AdmissionInput<'a> {
    pub request: &'a CanonicalRequest<'a>,
    pub credential: &'a Credential,
    /// SNI of the TLS connection, if any.
    pub sni: Option<&'a str>,
    /// `X-Tenant-Id` as sent (only consulted when `trust_tenant_header`).
    pub tenant_header: Option<&'a str>,
}

/// Whether a custom domain may route yet (ACME's ownership verification); without ACME every
/// configured custom domain routes.
pub trait DomainGate {
    fn routable(&self, domain: &str) -> bool;
}

/// Every configured custom domain routes (ACME off).
pub struct AllDomainsRoutable;

impl DomainGate for AllDomainsRoutable {
    fn routable(&self, _domain: &str) -> bool {
        true
    }
}

/// An admitted request: the tenant, and the index of the matched route in `snapshot.routes`.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub tenant: Arc<Tenant>,
    pub route: Option<usize>,
}

/// A request the gateway answers itself instead of proxying.
#[derive(Debug, Clone)]
pub struct Denied {
    pub error: GatewayError,
    /// Feature or resource named in the message.
    pub subject: Option<String>,
    /// The tenant, when one was resolved (so metrics and logs attribute the denial).
    pub tenant: Option<Arc<Tenant>>,
    /// Why, for the audit log of authentication failures.
    pub reason: Option<AuthFailure>,
}

impl Denied {
    pub fn new(error: GatewayError) -> Self {
        Self {
            error,
            subject: None,
            tenant: None,
            reason: None,
        }
    }
}

/// Resolves the tenant and applies the tenant-level and route-level gates.
pub fn admit(
    snapshot: &Snapshot,
    input: &AdmissionInput<'_>,
    domains: &dyn DomainGate,
) -> Result<Admitted, Denied> {
    let settings = &snapshot.settings;
    let request = input.request;
    let credential = input.credential;
    let token_tenant = match credential {
        Credential::Token(t) => t.tenant.as_deref(),
        _ => None,
    };
    let resolve_input = ResolveInput {
        host: request.host,
        trusted_header: input.tenant_header.filter(|_| settings.trust_tenant_header),
        token_tenant,
        dev_query: request.query.filter(|_| settings.dev_mode),
    };
    let sni_tenant = match input.sni.and_then(normalize_host) {
        Some(name) => match snapshot.hosts.lookup(&name) {
            HostMatch::Tenant(t) => Some(t),
            _ => None,
        },
        None => None,
    };
    let tenant = match (resolve(&snapshot.hosts, &resolve_input), sni_tenant) {
        (Ok((t, TenantSource::Host)), _) if unverified_custom_domain(t, request.host, domains) => {
            return Err(Denied::new(GatewayError::TenantNotFound))
        }
        (Ok((t, _source)), _) => t,
        // A Host that names no tenant (IP literal, bare base domain): the SNI may.
        (Err(ResolveError::Required), Some(t)) => t,
        (Err(e), _) => {
            return Err(Denied::new(match e {
                ResolveError::Required => GatewayError::TenantRequired,
                ResolveError::NotFound => GatewayError::TenantNotFound,
            }))
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
    // Valid credentials of two tenants, or of another tenant, are never accepted.
    if matches!(credential, Credential::Conflicting) {
        return Err(deny(
            GatewayError::TenantMismatch,
            None,
            Some(AuthFailure::CredentialsOfDifferentTenants),
        ));
    }
    if credential.tenant().is_some_and(|t| t != &*tenant.id) {
        return Err(deny(
            GatewayError::TenantMismatch,
            None,
            Some(AuthFailure::CredentialOfOtherTenant),
        ));
    }
    if tenant.status == TenantStatus::Suspended {
        return Err(deny(GatewayError::TenantSuspended, None, None));
    }
    let route = snapshot.route_index(request.method, &request.path);
    if let Some(route) = route.map(|i| &snapshot.routes[i]) {
        if route.require_auth && !credential.is_valid() {
            let reason = match credential {
                Credential::Invalid(r) => *r,
                _ => AuthFailure::MissingCredential,
            };
            return Err(deny(GatewayError::Unauthorized, None, Some(reason)));
        }
        // require_role: needs a verified credential, then any of the roles.
        if let Some(required) = &route.require_role {
            match credential {
                Credential::ApiKey { .. } | Credential::Token(_) => {
                    if !required.admits(credential.roles()) {
                        let roles = required.describe();
                        let reason = Some(AuthFailure::InsufficientRole);
                        return Err(deny(GatewayError::InsufficientRole, Some(&roles), reason));
                    }
                }
                Credential::Invalid(r) => {
                    return Err(deny(GatewayError::Unauthorized, None, Some(*r)))
                }
                Credential::None | Credential::Conflicting => {
                    let reason = Some(AuthFailure::MissingCredential);
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
    Ok(Admitted {
        tenant: tenant.clone(),
        route,
    })
}

/// A custom domain routes only once its ownership is verified.
fn unverified_custom_domain(tenant: &Tenant, host: Option<&str>, domains: &dyn DomainGate) -> bool {
    if tenant.custom_domains.is_empty() {
        return false;
    }
    match host.and_then(normalize_host) {
        Some(h) => tenant.custom_domains.iter().any(|d| **d == *h) && !domains.routable(&h),
        None => false,
    }
}

#[cfg(test)]
mod tests;
