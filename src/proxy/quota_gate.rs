//! The quota gate of an admitted request: what the request consumes (every request's
//! `requests`, the route's `consumes`), decided in one all-or-nothing step (429 / 503).

use pingora::proxy::Session;

use super::TenantProxy;
use crate::admission::Denied;
use crate::quota::{
    unix_now, window_key, Demand, RateLimitHeaders, Request as QuotaRequest, Verdict, Window,
    REQUESTS_RESOURCE,
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
