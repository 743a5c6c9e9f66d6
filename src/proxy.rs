//! The pingora `ProxyHttp` implementation: each phase is short and delegates.
//!
//! ```text
//! request_filter     load ONE snapshot → plain HTTP redirect (301, optional) → resolve tenant
//!                    (400/404) → strict SNI (421) → suspended (403)
//!                    → route: feature gate (403) → quota check (429 / 503) → request id
//! upstream_peer      tenant's pool, round robin; a failed connect retries once on the next address
//! upstream_request_filter
//!                    strip client X-Tenant-* / X-Organization-Id, inject the tenant's headers,
//!                    X-Request-Id, X-Forwarded-For/Proto/Host
//! response_filter    X-Request-Id back to the client
//! fail_to_proxy      upstream failures → 502 UPSTREAM_UNAVAILABLE / 504 UPSTREAM_TIMEOUT (JSON)
//! logging            per-tenant metrics, one access-log line
//! ```

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use http::header::{HeaderName, HeaderValue, HOST};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorType};

use crate::config::TenantStatus;
use crate::metrics::{Metrics, NO_TENANT};
use crate::quota::{
    counter_key, unix_now, Demand, QuotaEngine, RateLimitHeaders, Request as QuotaRequest, Verdict,
    Window, REQUESTS_RESOURCE,
};
use crate::request_id;
use crate::response::{send_error, GatewayError};
use crate::snapshot::{Consume, Snapshot, SnapshotHolder};
use crate::tenant::{normalize_host, resolve, HostMatch, ResolveError, ResolveInput, Tenant};
use crate::tls::Sni;

/// ACME http-01 answers are never redirected.
const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

static X_TENANT_ID: HeaderName = HeaderName::from_static("x-tenant-id");
static X_ORGANIZATION_ID: HeaderName = HeaderName::from_static("x-organization-id");
static X_TENANT_PLAN: HeaderName = HeaderName::from_static("x-tenant-plan");
static X_TENANT_FEATURES: HeaderName = HeaderName::from_static("x-tenant-features");
static X_TENANT_SCHEMA: HeaderName = HeaderName::from_static("x-tenant-schema");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Per-request state, typed.
pub struct RequestCtx {
    pub snapshot: Option<Arc<Snapshot>>,
    pub tenant: Option<Arc<Tenant>>,
    pub request_id: Option<HeaderValue>,
    pub start: Instant,
    /// Address index of the first attempt in the tenant's pool.
    first_upstream: usize,
    attempts: usize,
    upstream: Option<std::net::SocketAddr>,
    /// The error the gateway answered itself, if any.
    pub answered: Option<GatewayError>,
    /// `RateLimit-Policy` / `RateLimit` values for the response of an admitted request.
    rate_limit: Option<RateLimitHeaders>,
}

/// A request the gateway answers itself instead of proxying.
pub struct Denied {
    pub error: GatewayError,
    /// Feature or resource named in the message.
    pub subject: Option<String>,
    /// The tenant, when one was resolved (so metrics and logs attribute the denial).
    pub tenant: Option<Arc<Tenant>>,
}

/// The proxy service logic.
pub struct TenantProxy {
    snapshots: Arc<SnapshotHolder>,
    metrics: Metrics,
    quota: Arc<QuotaEngine>,
    /// Handles for requests that resolved to no tenant.
    no_tenant: crate::metrics::TenantMetrics,
}

impl TenantProxy {
    pub fn new(snapshots: Arc<SnapshotHolder>, metrics: Metrics, quota: Arc<QuotaEngine>) -> Self {
        let no_tenant = metrics.tenant(NO_TENANT);
        Self {
            snapshots,
            metrics,
            quota,
            no_tenant,
        }
    }
}

/// Host of the request: `Host` on HTTP/1, `:authority` on HTTP/2.
pub fn request_host(req: &RequestHeader) -> Option<&str> {
    req.headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
}

/// An IP address as a header value, formatted on the stack.
fn ip_header_value(ip: std::net::IpAddr) -> HeaderValue {
    use std::io::Write;
    let mut buf = [0u8; 48];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(cursor, "{ip}");
    let len = cursor.position() as usize;
    HeaderValue::from_bytes(&buf[..len]).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// SNI of the TLS connection the request came on, if any.
fn connection_sni(session: &Session) -> Option<&str> {
    session
        .digest()
        .and_then(|d| d.ssl_digest.as_ref())
        .and_then(|s| s.extension.get::<Sni>())
        .map(|s| &*s.0)
}

fn is_tls(session: &Session) -> bool {
    session.digest().is_some_and(|d| d.ssl_digest.is_some())
}

/// `https://host[:port]/path?query` for the plain-HTTP redirect.
fn https_location(req: &RequestHeader, https_port: Option<u16>) -> Option<String> {
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

/// True for headers only the gateway may set upstream.
fn is_tenant_header(name: &HeaderName) -> bool {
    let n = name.as_str();
    n.starts_with("x-tenant-") || n == "x-organization-id"
}

impl TenantProxy {
    fn tenant_metrics<'t>(&self, tenant: &'t Tenant) -> &'t crate::metrics::TenantMetrics {
        tenant
            .metrics
            .get_or_init(|| self.metrics.tenant(&tenant.id))
    }

    /// Resolves the tenant and applies tenant-level and route-level gates. `Err` carries the
    /// answer to send instead of proxying.
    fn admit(
        &self,
        session: &Session,
        snapshot: &Snapshot,
    ) -> Result<(Arc<Tenant>, Option<usize>), Denied> {
        let req = session.req_header();
        let settings = &snapshot.settings;
        let input = ResolveInput {
            host: request_host(req),
            trusted_header: if settings.trust_tenant_header {
                req.headers.get(&X_TENANT_ID).and_then(|v| v.to_str().ok())
            } else {
                None
            },
            token_tenant: None,
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
                })
            }
        };
        // One connection, one tenant: names of the same tenant may share a connection (HTTP/2
        // coalescing), names of different tenants may not.
        if settings.strict_sni && sni_tenant.is_some_and(|s| s.id != tenant.id) {
            return Err(Denied {
                error: GatewayError::MisdirectedRequest,
                subject: None,
                tenant: Some(tenant.clone()),
            });
        }
        let deny = |error, subject: Option<&str>| Denied {
            error,
            subject: subject.map(str::to_string),
            tenant: Some(tenant.clone()),
        };
        if tenant.status == TenantStatus::Suspended {
            return Err(deny(GatewayError::TenantSuspended, None));
        }
        let route = snapshot.route_index(&req.method, req.uri.path());
        if let Some(route) = route.map(|i| &snapshot.routes[i]) {
            if let Some(feature) = &route.require_feature {
                if !tenant.has_feature(feature) {
                    return Err(deny(GatewayError::FeatureNotAvailable, Some(feature)));
                }
            }
        }
        Ok((tenant.clone(), route))
    }

    /// Applies the tenant's quotas to this request: `Ok` with the headers for the response, or
    /// the denial (429 / 503) with its headers.
    async fn enforce_quota(
        &self,
        session: &Session,
        tenant: &Tenant,
        route: Option<&crate::snapshot::Route>,
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
                key: counter_key(&tenant.id, name, &window.label()),
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
        };
        let (verdict, _) = self.quota.decide(&request, now).await;
        let denied = |error, subject: Option<&str>| Denied {
            error,
            subject: subject.map(str::to_string),
            tenant: None,
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

impl TenantProxy {
    /// Answers a request the gateway refuses; `Ok(true)` tells pingora the response is sent.
    async fn deny(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        denied: Denied,
        mut headers: Vec<(&'static str, String)>,
    ) -> pingora::Result<bool> {
        ctx.answered = Some(denied.error);
        ctx.tenant = denied.tenant;
        if let Some(rid) = ctx.request_id.as_ref().and_then(|v| v.to_str().ok()) {
            headers.push(("x-request-id", rid.to_string()));
        }
        send_error(session, denied.error, denied.subject.as_deref(), &headers).await?;
        Ok(true)
    }
}

#[async_trait]
impl ProxyHttp for TenantProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            snapshot: None,
            tenant: None,
            request_id: None,
            start: Instant::now(),
            first_upstream: 0,
            attempts: 0,
            upstream: None,
            answered: None,
            rate_limit: None,
        }
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        let snapshot = self.snapshots.load();
        ctx.request_id = Some(request_id::keep_or_generate(
            session.req_header().headers.get(&X_REQUEST_ID),
        ));
        if snapshot.settings.redirect_http_to_https
            && !is_tls(session)
            && !session
                .req_header()
                .uri
                .path()
                .starts_with(ACME_CHALLENGE_PREFIX)
        {
            if let Some(location) =
                https_location(session.req_header(), snapshot.settings.https_port)
            {
                ctx.snapshot = Some(snapshot);
                let mut resp = ResponseHeader::build(301, Some(3))?;
                resp.insert_header(http::header::LOCATION, location)?;
                resp.insert_header(http::header::CONTENT_LENGTH, "0")?;
                session.write_response_header(Box::new(resp), false).await?;
                session.write_response_body(None, true).await?;
                return Ok(true);
            }
        }
        let admitted = self.admit(session, &snapshot);
        let (tenant, route) = match admitted {
            Ok(ok) => ok,
            Err(denied) => {
                ctx.snapshot = Some(snapshot);
                return self.deny(session, ctx, denied, Vec::new()).await;
            }
        };
        let route_ref = route.map(|i| &snapshot.routes[i]);
        match self.enforce_quota(session, &tenant, route_ref).await {
            Ok(headers) => ctx.rate_limit = headers,
            Err((mut denied, headers)) => {
                denied.tenant = Some(tenant);
                ctx.snapshot = Some(snapshot);
                return self.deny(session, ctx, denied, headers).await;
            }
        }
        ctx.snapshot = Some(snapshot);
        ctx.first_upstream = tenant.upstream.pick();
        ctx.tenant = Some(tenant);
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Box<HttpPeer>> {
        let Some(tenant) = ctx.tenant.as_ref() else {
            return Error::e_explain(ErrorType::InternalError, "upstream_peer without a tenant");
        };
        let pool = &tenant.upstream;
        let index = ctx.first_upstream + ctx.attempts;
        ctx.attempts += 1;
        ctx.upstream = pool.addrs.get(index % pool.addrs.len().max(1)).copied();
        Ok(Box::new(pool.peer(index)))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(t) = &ctx.tenant {
            let kind = if matches!(e.etype(), ErrorType::ConnectTimedout) {
                "connect_timeout"
            } else {
                "connect"
            };
            self.metrics
                .upstream_errors
                .with_label_values(&[&t.id, kind])
                .inc();
        }
        // One retry, on the next address of the pool.
        if ctx.attempts < 2 {
            e.set_retry(true);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        let Some(tenant) = ctx.tenant.as_ref() else {
            return Error::e_explain(
                ErrorType::InternalError,
                "upstream request without a tenant",
            );
        };
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
        if let Some(rid) = &ctx.request_id {
            upstream.insert_header(X_REQUEST_ID.clone(), rid.clone())?;
        }

        let trust_forwarded = ctx
            .snapshot
            .as_ref()
            .is_some_and(|s| s.settings.trust_tenant_header);
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

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        if let Some(rid) = &ctx.request_id {
            resp.insert_header(X_REQUEST_ID.clone(), rid.clone())?;
        }
        if let Some(h) = ctx.rate_limit.take() {
            resp.insert_header("ratelimit-policy", h.policy)?;
            resp.insert_header("ratelimit", h.limit)?;
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let err = match e.etype() {
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
                Some(GatewayError::UpstreamTimeout)
            }
            _ if matches!(e.esource(), pingora::ErrorSource::Upstream) => {
                Some(GatewayError::UpstreamUnavailable)
            }
            _ => None,
        };
        let code = match err {
            Some(err) => {
                if let Some(t) = &ctx.tenant {
                    let kind = if err == GatewayError::UpstreamTimeout {
                        "timeout"
                    } else {
                        "unavailable"
                    };
                    self.metrics
                        .upstream_errors
                        .with_label_values(&[&t.id, kind])
                        .inc();
                }
                ctx.answered = Some(err);
                // The response may already be under way (error mid-body); then only close.
                if session.response_written().is_none() {
                    // pingora drops the connection after a proxy failure; say so to the client.
                    session.set_keepalive(None);
                    let rid = ctx
                        .request_id
                        .as_ref()
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    if let Err(write_err) =
                        send_error(session, err, None, &[("x-request-id", rid)]).await
                    {
                        tracing::debug!(error = %write_err, "could not send error response");
                    }
                }
                err.status()
            }
            None => match e.etype() {
                ErrorType::HTTPStatus(code) => {
                    let _ = session.respond_error(*code).await;
                    *code
                }
                ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed => 0,
                _ if matches!(e.esource(), pingora::ErrorSource::Downstream) => {
                    let _ = session.respond_error(400).await;
                    400
                }
                _ => {
                    let _ = session.respond_error(500).await;
                    500
                }
            },
        };
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .or(ctx.answered.map(GatewayError::status))
            .unwrap_or(0);
        let elapsed = ctx.start.elapsed();
        let tenant_id: &str = ctx.tenant.as_ref().map(|t| &*t.id).unwrap_or(NO_TENANT);
        match &ctx.tenant {
            Some(t) => self
                .tenant_metrics(t)
                .observe(status, elapsed.as_secs_f64()),
            None => self.no_tenant.observe(status, elapsed.as_secs_f64()),
        }
        if ctx.snapshot.as_ref().is_some_and(|s| s.settings.access_log) {
            let req = session.req_header();
            tracing::info!(
                target: "access",
                tenant = tenant_id,
                request_id = ctx.request_id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or(""),
                method = req.method.as_str(),
                path = req.uri.path(),
                status,
                upstream = ctx.upstream.map(|a| a.to_string()).unwrap_or_default(),
                duration_ms = elapsed.as_secs_f64() * 1000.0,
            );
        }
    }
}
