//! The quota gate of an admitted request: what the request consumes (every request's
//! `requests`, the route's `consumes`), decided in one all-or-nothing step (429 / 503).

use pingora::proxy::Session;

use super::TenantProxy;
use crate::admission::Denied;
use crate::quota::{
    unix_now, Demand, RateLimitHeaders, Request as QuotaRequest, Verdict, REQUESTS_RESOURCE,
};
use crate::response::GatewayError;
use crate::snapshot::{Consume, Route};
use crate::tenant::Tenant;

impl TenantProxy {
    /// Applies the tenant's quotas to this request: `Ok` with the headers for the response, or
    /// the denial (429 / 503) with its headers.
    pub(super) async fn enforce_quota(
        &self,
        session: &Session,
        tenant: &Tenant,
        route: Option<&Route>,
        content_length: Option<u64>,
    ) -> Result<Option<RateLimitHeaders>, (Denied, Vec<(&'static str, String)>)> {
        if tenant.quotas.is_empty() {
            return Ok(None);
        }
        let now = unix_now();
        let handles = &self.tenant_metrics(tenant).quota;
        let mut demands: Vec<Demand> = Vec::with_capacity(2);
        let mut add = |resource: &str, amount: u64| {
            let Some(qi) = tenant.quotas.iter().position(|(r, _)| &**r == resource) else {
                return; // no quota on this resource for this tenant: unlimited
            };
            let (name, limit) = &tenant.quotas[qi];
            if let Some(existing) = demands.iter_mut().find(|d| d.resource == &**name) {
                existing.amount += amount;
                return;
            }
            demands.push(
                Demand::new(&tenant.id, name, *limit, amount, now).with_handles(handles.get(qi)),
            );
        };
        add(REQUESTS_RESOURCE, 1);
        if let Some(route) = route {
            for (resource, consume) in &route.consumes {
                let amount = match consume {
                    Consume::Fixed(n) => *n,
                    Consume::ContentLength => match content_length {
                        Some(n) => n,
                        // A body of unknown size cannot be counted before it is sent.
                        None if session
                            .req_header()
                            .headers
                            .contains_key(http::header::TRANSFER_ENCODING)
                            && tenant.quota(resource).is_some() =>
                        {
                            return Err((Denied::new(GatewayError::LengthRequired), vec![]));
                        }
                        None => 0,
                    },
                };
                add(resource, amount);
            }
        }
        let request = QuotaRequest {
            tenant: &tenant.id,
            demands: &demands,
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
                denied(
                    GatewayError::QuotaExceeded,
                    Some(demands[resource].resource),
                ),
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
