//! `[limits.per_client]`: a rate limit per client of a tenant, decided in the quota engine
//! (local or Redis, same all-or-nothing step) BEFORE the tenant's plan quotas, so a flood that
//! is refused here consumes nothing of the tenant's plan.
//!
//! A client is its verified credential of this tenant when it presents one (API key name, JWT
//! subject: policy `client-authenticated`), else its address (policy `client-anonymous`): the
//! peer, or — when the peer is a trusted proxy — the first hop of `X-Forwarded-For`, from the
//! right, that is not one. Keys carry the client; metric labels carry only tenant and policy.

use std::net::IpAddr;

use pingora::proxy::Session;

use super::ip_block::canonical;
use super::{IpBlock, LimitMetrics};
use crate::auth::Credential;
use crate::config::{PerClientConfig, QuotaLimitConfig};
use crate::metrics::Decision;
use crate::quota::{unix_now, window_key, Demand, QuotaEngine, Request, Verdict, Window};
use crate::response::GatewayError;

pub const POLICY_ANONYMOUS: &str = "client-anonymous";
pub const POLICY_AUTHENTICATED: &str = "client-authenticated";

/// A refusal: the error, the policy it names, and the response headers.
pub type ClientRefusal = (
    GatewayError,
    Option<&'static str>,
    Vec<(&'static str, String)>,
);

/// The compiled `[limits.per_client]`.
pub struct ClientLimiter {
    anonymous: Option<QuotaLimitConfig>,
    authenticated: Option<QuotaLimitConfig>,
    trusted: Vec<IpBlock>,
    /// `server.trust_tenant_header`: every peer is a trusted proxy.
    trust_every_peer: bool,
    metrics: LimitMetrics,
}

/// Who a request is counted against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientId {
    Address(IpAddr),
    Credential(String),
}

impl ClientLimiter {
    pub fn new(cfg: &PerClientConfig, trust_every_peer: bool, metrics: LimitMetrics) -> Self {
        let PerClientConfig {
            anonymous,
            authenticated,
            trusted_proxies,
        } = cfg;
        Self {
            anonymous: *anonymous,
            authenticated: *authenticated,
            trusted: trusted_proxies
                .iter()
                .filter_map(|p| IpBlock::parse(p))
                .collect(),
            trust_every_peer,
            metrics,
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.anonymous.is_some() || self.authenticated.is_some()
    }

    /// Counts the request against its client's limit: `Ok` to go on to the tenant's quotas.
    pub async fn check(
        &self,
        quota: &QuotaEngine,
        session: &Session,
        tenant: &str,
        credential: &Credential,
    ) -> Result<(), ClientRefusal> {
        if !self.is_enabled() {
            return Ok(());
        }
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| canonical(a.ip()));
        let id = self.identify(peer, xff_values(session), tenant, credential);
        let (policy, limit) = match &id {
            Some(ClientId::Credential(_)) => (POLICY_AUTHENTICATED, self.authenticated),
            Some(ClientId::Address(_)) => (POLICY_ANONYMOUS, self.anonymous),
            None => return Ok(()),
        };
        let (Some(limit), Some(id)) = (limit, id) else {
            return Ok(());
        };
        let now = unix_now();
        let window = Window::of(limit.period, now);
        let resource = match &id {
            ClientId::Address(ip) => format!("{policy}:{ip}"),
            ClientId::Credential(c) => format!("{policy}:{c}"),
        };
        // Counted per client (the key names it), labelled per policy (bounded).
        let demands = [Demand {
            resource: policy,
            key: window_key(tenant, &resource, &window),
            amount: 1,
            limit: limit.limit,
            window,
            handles: None,
        }];
        let request = Request {
            tenant,
            demands: &demands,
        };
        let verdict = quota.decide(&request, now).await;
        let decision = match &verdict {
            Verdict::Allowed { .. } => Decision::Allowed,
            Verdict::Rejected { .. } => Decision::Rejected,
            Verdict::Unavailable => Decision::BackendError,
        };
        self.metrics
            .client_limit_decisions
            .with_label_values(&[tenant, policy, decision.as_str()])
            .inc();
        match verdict {
            Verdict::Allowed { .. } => Ok(()),
            Verdict::Rejected {
                retry_after,
                headers,
                ..
            } => Err((
                GatewayError::QuotaExceeded,
                Some(policy),
                vec![
                    ("retry-after", retry_after.to_string()),
                    ("ratelimit-policy", headers.policy),
                    ("ratelimit", headers.limit),
                ],
            )),
            Verdict::Unavailable => Err((GatewayError::QuotaBackendUnavailable, None, vec![])),
        }
    }

    /// The client of a request: its credential of `tenant`, else its address.
    pub fn identify<'a>(
        &self,
        peer: Option<IpAddr>,
        forwarded_for: impl Iterator<Item = &'a str>,
        tenant: &str,
        credential: &Credential,
    ) -> Option<ClientId> {
        if credential.tenant() == Some(tenant) {
            match credential {
                Credential::ApiKey { name, .. } => {
                    return Some(ClientId::Credential(format!("key:{name}")))
                }
                Credential::Token(t) => {
                    if let Some(sub) = t.subject.as_ref().and_then(|s| s.to_str().ok()) {
                        return Some(ClientId::Credential(format!("sub:{sub}")));
                    }
                }
                Credential::None | Credential::Invalid(_) | Credential::Conflicting => {}
            }
        }
        let peer = peer?;
        if !(self.trust_every_peer || self.is_trusted(peer)) {
            return Some(ClientId::Address(peer));
        }
        let hops: Vec<IpAddr> = forwarded_for
            .flat_map(|v| v.split(','))
            .filter_map(|h| h.trim().parse::<IpAddr>().ok().map(canonical))
            .collect();
        let client = hops
            .iter()
            .rev()
            .find(|ip| !self.is_trusted(**ip))
            .or(hops.first())
            .copied()
            .unwrap_or(peer);
        Some(ClientId::Address(client))
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|b| b.contains(ip))
    }
}

fn xff_values(session: &Session) -> impl Iterator<Item = &str> {
    session
        .req_header()
        .headers
        .get_all("x-forwarded-for")
        .into_iter()
        .filter_map(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn limiter(trusted: &[&str], trust_all: bool) -> ClientLimiter {
        let registry = prometheus::Registry::new();
        let cfg = PerClientConfig {
            anonymous: None,
            authenticated: None,
            trusted_proxies: trusted.iter().map(|s| s.to_string()).collect(),
        };
        ClientLimiter::new(&cfg, trust_all, LimitMetrics::register(&registry).unwrap())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn address_table() {
        let none = Credential::None;
        /// (trusted proxies, trust every peer, peer, X-Forwarded-For values, expected client)
        type Row<'a> = (&'a [&'a str], bool, &'a str, &'a [&'a str], &'a str);
        let rows: Vec<Row> = vec![
            // untrusted peer: X-Forwarded-For is ignored
            (&[], false, "203.0.113.9", &["1.2.3.4"], "203.0.113.9"),
            // trusted proxy: the rightmost untrusted hop
            (
                &["10.0.0.0/8"],
                false,
                "10.0.0.5",
                &["1.2.3.4, 10.0.0.7"],
                "1.2.3.4",
            ),
            (
                &["10.0.0.0/8"],
                false,
                "10.0.0.5",
                &["6.6.6.6, 1.2.3.4"],
                "1.2.3.4",
            ),
            (
                &["10.0.0.0/8"],
                false,
                "10.0.0.5",
                &["6.6.6.6", "1.2.3.4"],
                "1.2.3.4",
            ),
            // all hops trusted: the leftmost
            (
                &["10.0.0.0/8"],
                false,
                "10.0.0.5",
                &["10.1.1.1, 10.2.2.2"],
                "10.1.1.1",
            ),
            // junk hops are skipped; nothing usable → the peer
            (
                &["10.0.0.0/8"],
                false,
                "10.0.0.5",
                &["junk, 1.2.3.4, x"],
                "1.2.3.4",
            ),
            (&["10.0.0.0/8"], false, "10.0.0.5", &["junk"], "10.0.0.5"),
            // trust_tenant_header trusts every peer
            (&[], true, "198.51.100.1", &["1.2.3.4"], "1.2.3.4"),
            // IPv4-mapped peers are IPv4
            (
                &["10.0.0.0/8"],
                false,
                "::ffff:10.0.0.5",
                &["1.2.3.4"],
                "1.2.3.4",
            ),
        ];
        for (trusted, all, peer, xff, expected) in rows {
            let l = limiter(trusted, all);
            let got = l.identify(
                Some(canonical(ip(peer))),
                xff.iter().copied(),
                "acme",
                &none,
            );
            assert_eq!(got, Some(ClientId::Address(ip(expected))), "{peer} {xff:?}");
        }
    }

    #[test]
    fn a_credential_of_this_tenant_is_the_client() {
        let l = limiter(&[], false);
        let key = Credential::ApiKey {
            tenant: Arc::from("acme"),
            name: Arc::from("ci"),
            roles: Arc::default(),
        };
        assert_eq!(
            l.identify(Some(ip("1.2.3.4")), std::iter::empty(), "acme", &key),
            Some(ClientId::Credential("key:ci".into()))
        );
        // Another tenant's key does not make the request authenticated here.
        assert_eq!(
            l.identify(Some(ip("1.2.3.4")), std::iter::empty(), "globex", &key),
            Some(ClientId::Address(ip("1.2.3.4")))
        );
        let invalid = Credential::Invalid(crate::auth::AuthFailure::UnknownApiKey);
        assert_eq!(
            l.identify(Some(ip("1.2.3.4")), std::iter::empty(), "acme", &invalid),
            Some(ClientId::Address(ip("1.2.3.4")))
        );
    }
}
