//! The pingora `ProxyHttp` implementation: each phase is short and delegates.
//!
//! ```text
//! request_filter     load ONE snapshot → plain HTTP redirect (301, optional) → resolve tenant
//!                    (Host, SNI, trusted header, JWT claim, dev query; 400/404) → strict SNI (421)
//!                    → credential of another tenant (403) → suspended (403) → route:
//!                    require_auth (401), require_role (401/403), feature gate (403) → branding
//!                    endpoint → quota (429/503)
//! upstream_peer      tenant's pool, round robin; a failed connect retries once on the next address
//! upstream_request_filter
//!                    strip client X-Tenant-* / X-Organization-Id / X-User-Id / X-User-Roles,
//!                    inject the tenant's headers, X-User-Id, X-User-Roles, X-Request-Id,
//!                    X-Forwarded-For/Proto/Host
//! response_filter    X-Request-Id back to the client
//! fail_to_proxy      upstream failures → 502 UPSTREAM_UNAVAILABLE / 504 UPSTREAM_TIMEOUT (JSON)
//! logging            per-tenant metrics, one access-log line
//! ```

pub mod forwarding;
mod quota_gate;

use crate::config::LatencyHistogram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::HeaderValue;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorType};

use forwarding::{connection_sni, https_location, is_tls, Injection, Sanitize, X_REQUEST_ID};

use crate::access_log;
use crate::acme::AcmeManager;
use crate::acme::ChallengeAnswer;
use crate::admission::{admit, AdmissionInput, AllDomainsRoutable, Denied, DomainGate};
use crate::auth::{authenticate, AuthFailure, Credential, StripCredentials};
use crate::client_headers::ClientHeaders;
use crate::metrics::{Metrics, NO_TENANT};
use crate::quota::{unix_now, QuotaEngine, RateLimitHeaders};
use crate::request_id;
use crate::request_view::canonicalize;
use crate::response::{send_error, wants_html, ErrorFormat, GatewayError};
use crate::snapshot::{Snapshot, SnapshotHolder};
use crate::tenant::Tenant;

/// ACME http-01 answers are never redirected.
const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";
/// Served by the gateway for every tenant host.
const BRANDING_PATH: &str = "/.well-known/tenant-branding";

/// Per-request state, typed. pingora moves it several times per request, so what only some
/// requests have (a verified user, quota headers, a rewritten target) is boxed, and the
/// address tried is derived from the pool rather than stored.
pub struct RequestCtx {
    pub snapshot: Option<Arc<Snapshot>>,
    pub tenant: Option<Arc<Tenant>>,
    pub request_id: Option<HeaderValue>,
    pub start: Instant,
    /// Address index of the first attempt in the tenant's pool.
    first_upstream: usize,
    attempts: usize,
    /// The error the gateway answered itself, if any.
    pub answered: Option<GatewayError>,
    /// `RateLimit-Policy` / `RateLimit` values for the response of an admitted request.
    rate_limit: Option<Box<RateLimitHeaders>>,
    /// The verified user, for `X-User-Id` / `X-User-Roles`.
    user: Option<Box<UserHeaders>>,
    /// The canonical `path?query`, when it differs from the target the client sent.
    forward_target: Option<Box<str>>,
    /// The request's one Content-Length.
    content_length: Option<u64>,
    /// The client's (first) Host header, for `X-Forwarded-Host`.
    host: Option<HeaderValue>,
    /// Verified credentials not to forward.
    strip: StripCredentials,
    /// The client sent a header that may have to be removed before forwarding.
    removable: bool,
    /// The guard's state of the connection the request came on (from `early_request_filter`).
    connection: Option<Arc<crate::limits::connection::ConnState>>,
    /// Why the request was refused before admission (logged once).
    pub refusal: Option<&'static str>,
}

impl RequestCtx {
    /// The upstream address of the last attempt, if the request was proxied.
    fn last_upstream(&self) -> Option<std::net::SocketAddr> {
        let tenant = self.tenant.as_ref()?;
        let tried = self.attempts.checked_sub(1)?;
        Some(
            tenant
                .upstream
                .addrs()
                .wrapping(self.first_upstream + tried),
        )
    }
}

/// The verified user of a request, as upstream header values.
struct UserHeaders {
    /// `sub` of a verified token, sent upstream as `X-User-Id`.
    id: Option<HeaderValue>,
    /// Verified roles, sent upstream as `X-User-Roles`.
    roles: Option<HeaderValue>,
}

/// What the synchronous part of `request_filter` decided, owned so the session can be
/// written to afterwards.
enum Step {
    Refuse(Denied),
    Challenge(String),
    Redirect(String),
    Branding(Arc<Tenant>),
    Proxy {
        tenant: Arc<Tenant>,
        route: Option<usize>,
        /// For the per-client limit, keyed by the verified credential when there is one.
        credential: Credential,
    },
}

/// ACME's verification state as admission's domain gate.
struct AcmeDomains<'a>(&'a AcmeManager);

impl DomainGate for AcmeDomains<'_> {
    fn routable(&self, domain: &str) -> bool {
        self.0.domain_routable(domain)
    }
}

/// The proxy service logic.
pub struct TenantProxy {
    snapshots: Arc<SnapshotHolder>,
    metrics: Metrics,
    quota: Arc<QuotaEngine>,
    /// ACME (http-01 answers, custom-domain verification gating), when enabled.
    acme: Option<Arc<AcmeManager>>,
    /// Set while the process hands over or shuts down: answers then close their connection.
    draining: Arc<AtomicBool>,
    /// Handles for requests that resolved to no tenant, per `[metrics] latency_histogram`
    /// mode (made on first use, so a mode never used exports nothing).
    no_tenant: [OnceLock<crate::metrics::TenantMetrics>; 3],
    /// `[limits]`: head checks, per-client limits, client-abort accounting.
    limits: Arc<crate::limits::RequestLimits>,
}

impl TenantProxy {
    pub fn new(
        snapshots: Arc<SnapshotHolder>,
        metrics: Metrics,
        quota: Arc<QuotaEngine>,
        acme: Option<Arc<AcmeManager>>,
        draining: Arc<AtomicBool>,
        limits: Arc<crate::limits::RequestLimits>,
    ) -> Self {
        Self {
            snapshots,
            metrics,
            quota,
            acme,
            draining,
            no_tenant: Default::default(),
            limits,
        }
    }
}

impl TenantProxy {
    pub(crate) fn tenant_metrics<'t>(
        &self,
        tenant: &'t Tenant,
    ) -> &'t crate::metrics::TenantMetrics {
        tenant.metrics.get_or_init(|| {
            let resources: Vec<&str> = tenant.quotas.iter().map(|(r, _)| &**r).collect();
            // Once per tenant and snapshot: a reload builds new tenants, so a changed mode
            // applies from the next snapshot on.
            let latency = self.snapshots.load().settings.latency_histogram;
            self.metrics
                .tenant(&tenant.id, &tenant.plan, latency, &resources)
        })
    }

    /// `gateway_upstream_errors_total{tenant, kind}`, for a request that resolved to a tenant.
    fn count_upstream_error(&self, ctx: &RequestCtx, kind: &str) {
        if let Some(t) = &ctx.tenant {
            self.metrics
                .upstream_errors
                .with_label_values(&[&t.id, kind])
                .inc();
        }
    }

    fn no_tenant_metrics(&self, latency: LatencyHistogram) -> &crate::metrics::TenantMetrics {
        self.no_tenant[latency as usize]
            .get_or_init(|| self.metrics.tenant(NO_TENANT, NO_TENANT, latency, &[]))
    }
}

impl TenantProxy {
    /// The synchronous decisions of `request_filter`, in order: canonical request view (400 /
    /// 405) → ACME http-01 → plain-HTTP redirect → credentials → admission (tenant, SNI,
    /// credentials, suspension, route gates) → branding endpoint. Called once per request.
    fn decide(&self, session: &Session, snapshot: &Snapshot, ctx: &mut RequestCtx) -> Step {
        let req = session.req_header();
        let client = ClientHeaders::scan(&req.headers);
        ctx.request_id = Some(request_id::keep_or_generate(client.request_id.first));
        ctx.removable = client.removable;
        let view = match canonicalize(
            &req.method,
            req.raw_path(),
            req.uri.authority().map(|a| a.as_str()),
            &client,
            snapshot.settings.request_rules,
        ) {
            Ok(view) => view,
            Err(refusal) => {
                ctx.refusal = Some(refusal.as_str());
                return Step::Refuse(Denied::new(refusal.error()));
            }
        };
        if self.acme.is_some() {
            if let Some(token) = view.path.strip_prefix(ACME_CHALLENGE_PREFIX) {
                return Step::Challenge(token.to_string());
            }
        }
        if snapshot.settings.redirect_http_to_https
            && !is_tls(session)
            && !view.path.starts_with(ACME_CHALLENGE_PREFIX)
        {
            let target = view.upstream_target();
            if let Some(location) = view
                .host
                .and_then(|h| https_location(h, &target, snapshot.settings.https_port))
            {
                return Step::Redirect(location);
            }
        }
        // The clock is read only when there is a credential whose expiry may be checked.
        let presented = client.authorization.first.is_some() || client.api_key.first.is_some();
        let now = if presented { unix_now() } else { 0 };
        let auth = authenticate(&client, &snapshot.api_keys, snapshot.jwt.as_ref(), now);
        let input = AdmissionInput {
            request: &view,
            credential: &auth.credential,
            sni: connection_sni(session),
            tenant_header: client.tenant_id.first.and_then(|v| v.to_str().ok()),
        };
        let admitted = match &self.acme {
            Some(acme) => admit(snapshot, &input, &AcmeDomains(acme)),
            None => admit(snapshot, &input, &AllDomainsRoutable),
        };
        let admitted = match admitted {
            Ok(a) => a,
            Err(denied) => return Step::Refuse(denied),
        };
        if let Credential::Invalid(reason) = auth.credential {
            // Not fatal on routes without require_auth, but recorded.
            let rid = ctx
                .request_id
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            self.audit_auth_failure(session, Some(&admitted.tenant), reason, rid);
        }
        let user_id = match &auth.credential {
            Credential::Token(t) => t.subject.clone(),
            _ => None,
        };
        let user_roles = auth.credential.roles().header_value().cloned();
        if user_id.is_some() || user_roles.is_some() {
            ctx.user = Some(Box::new(UserHeaders {
                id: user_id,
                roles: user_roles,
            }));
        }
        if view.path == BRANDING_PATH {
            return Step::Branding(admitted.tenant);
        }
        ctx.strip = auth.strip;
        ctx.content_length = view.content_length;
        ctx.host = client.host.first.cloned();
        ctx.forward_target = view
            .rewritten
            .then(|| view.upstream_target().into_boxed_str());
        Step::Proxy {
            tenant: admitted.tenant,
            route: admitted.route,
            credential: auth.credential,
        }
    }

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
        let rid = ctx
            .request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if let Some(reason) = denied.reason {
            self.audit_auth_failure(session, ctx.tenant.as_deref(), reason, rid);
        }
        if denied.error == GatewayError::Unauthorized {
            headers.push((
                "www-authenticate",
                "Bearer realm=\"tenant-gateway\"".to_string(),
            ));
        }
        if !rid.is_empty() {
            headers.push(("x-request-id", rid.to_string()));
        }
        let format = if wants_html(session.req_header().headers.get(http::header::ACCEPT)) {
            ErrorFormat::Html(ctx.tenant.as_deref())
        } else {
            ErrorFormat::Json
        };
        send_error(
            session,
            denied.error,
            denied.subject.as_deref(),
            &headers,
            format,
        )
        .await?;
        Ok(true)
    }

    /// One structured audit line and one metric per authentication failure.
    fn audit_auth_failure(
        &self,
        session: &Session,
        tenant: Option<&Tenant>,
        reason: AuthFailure,
        rid: &str,
    ) {
        let reason = reason.as_str();
        let tenant_id = tenant.map_or(NO_TENANT, |t| &*t.id);
        self.metrics
            .auth_failures
            .with_label_values(&[tenant_id, reason])
            .inc();
        let client = session
            .client_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        tracing::warn!(target: "audit", tenant = tenant_id, reason, client = %client, request_id = rid, path = session.req_header().uri.path(), "authentication failure");
    }

    /// `GET /.well-known/acme-challenge/{token}`: the key authorization, or 404.
    async fn serve_challenge(
        &self,
        session: &mut Session,
        acme: &AcmeManager,
        token: String,
    ) -> pingora::Result<bool> {
        let (status, body) = match acme.challenges.get(&token).await {
            ChallengeAnswer::Found(key_auth) => (200, Bytes::from(key_auth)),
            ChallengeAnswer::Unknown => (404, Bytes::from_static(b"unknown challenge token\n")),
            ChallengeAnswer::Unavailable => (
                503,
                Bytes::from_static(b"challenge store unavailable, retry\n"),
            ),
        };
        let mut resp = ResponseHeader::build(status, Some(2))?;
        resp.insert_header(http::header::CONTENT_TYPE, "text/plain")?;
        resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
        session.write_response_header(Box::new(resp), false).await?;
        session.write_response_body(Some(body), true).await?;
        Ok(true)
    }

    /// `GET /.well-known/tenant-branding`: the tenant's white-label settings.
    async fn serve_branding(
        &self,
        session: &mut Session,
        tenant: &Tenant,
    ) -> pingora::Result<bool> {
        let b = &tenant.branding;
        let body = serde_json::json!({
            "tenant": &*tenant.id,
            "name": &*tenant.name,
            "logo": b.logo,
            "primary_color": b.primary_color,
            "secondary_color": b.secondary_color,
            "custom_domains": tenant.custom_domains.iter().map(|d| &**d).collect::<Vec<_>>(),
        });
        let body = Bytes::from(body.to_string());
        let mut resp = ResponseHeader::build(200, Some(3))?;
        resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
        resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
        resp.insert_header(http::header::CACHE_CONTROL, "public, max-age=60")?;
        session.write_response_header(Box::new(resp), false).await?;
        session.write_response_body(Some(body), true).await?;
        Ok(true)
    }
}

#[async_trait]
impl ProxyHttp for TenantProxy {
    /// Boxed: pingora keeps the context inline in the per-request future it moves and
    /// boxes, so a pointer there is cheaper than the whole struct.
    type CTX = Box<RequestCtx>;

    /// No downstream modules: pingora's default adds a disabled compression module, which
    /// still costs allocations per request.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    fn new_ctx(&self) -> Box<RequestCtx> {
        Box::new(RequestCtx {
            snapshot: None,
            tenant: None,
            request_id: None,
            start: Instant::now(),
            first_upstream: 0,
            attempts: 0,
            answered: None,
            rate_limit: None,
            user: None,
            forward_target: None,
            content_length: None,
            host: None,
            strip: StripCredentials::default(),
            removable: false,
            connection: None,
            refusal: None,
        })
    }

    /// `[limits]` on the parsed head (sizes → 414/431, per-request timeouts, reset streams).
    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut Box<RequestCtx>,
    ) -> pingora::Result<()> {
        crate::limits::request_head::enforce(
            session,
            &mut ctx.answered,
            &mut ctx.connection,
            &self.limits,
        )
        .await
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut Box<RequestCtx>,
    ) -> pingora::Result<bool> {
        if self.draining.load(Ordering::Acquire) {
            session.set_keepalive(None);
        }
        let snapshot = self.snapshots.load();
        let step = self.decide(session, &snapshot, ctx);
        ctx.snapshot = Some(snapshot.clone());
        match step {
            Step::Refuse(denied) => self.deny(session, ctx, denied, Vec::new()).await,
            Step::Challenge(token) => match &self.acme {
                Some(acme) => self.serve_challenge(session, acme, token).await,
                None => Ok(false),
            },
            Step::Redirect(location) => {
                let mut resp = ResponseHeader::build(301, Some(3))?;
                resp.insert_header(http::header::LOCATION, location)?;
                if let Some(rid) = &ctx.request_id {
                    resp.insert_header(&X_REQUEST_ID, rid.clone())?;
                }
                resp.insert_header(http::header::CONTENT_LENGTH, "0")?;
                session.write_response_header(Box::new(resp), false).await?;
                session.write_response_body(None, true).await?;
                Ok(true)
            }
            Step::Branding(tenant) => {
                let done = self.serve_branding(session, &tenant).await;
                ctx.tenant = Some(tenant);
                done
            }
            Step::Proxy {
                tenant,
                route,
                credential,
            } => {
                let route_ref = route.map(|i| &snapshot.routes[i]);
                // Per-client limits first: a refused flood consumes nothing of the plan.
                if let Err((error, subject, headers)) = self
                    .limits
                    .per_client
                    .check(&self.quota, session, &tenant.id, &credential)
                    .await
                {
                    let denied = Denied {
                        error,
                        subject: subject.map(str::to_string),
                        tenant: Some(tenant),
                        reason: None,
                    };
                    return self.deny(session, ctx, denied, headers).await;
                }
                match self
                    .enforce_quota(session, &tenant, route_ref, ctx.content_length)
                    .await
                {
                    Ok(headers) => ctx.rate_limit = headers.map(Box::new),
                    Err((mut denied, headers)) => {
                        denied.tenant = Some(tenant);
                        return self.deny(session, ctx, denied, headers).await;
                    }
                }
                ctx.first_upstream = tenant.upstream.pick();
                ctx.tenant = Some(tenant);
                Ok(false)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Box<RequestCtx>,
    ) -> pingora::Result<Box<HttpPeer>> {
        let Some(tenant) = ctx.tenant.as_ref() else {
            return Error::e_explain(ErrorType::InternalError, "upstream_peer without a tenant");
        };
        let pool = &tenant.upstream;
        let index = ctx.first_upstream + ctx.attempts;
        ctx.attempts += 1;
        Ok(pool.peer(index))
    }

    /// A client that goes away mid-request is not a gateway error: counted, no ERROR line.
    fn suppress_error_log(&self, _session: &Session, ctx: &Box<RequestCtx>, error: &Error) -> bool {
        let tenant = ctx.tenant.as_ref().map_or(NO_TENANT, |t| &*t.id);
        crate::limits::client_abort::record(&self.limits.metrics, tenant, error)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Box<RequestCtx>,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let kind = if matches!(e.etype(), ErrorType::ConnectTimedout) {
            "connect_timeout"
        } else {
            "connect"
        };
        self.count_upstream_error(ctx, kind);
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
        ctx: &mut Box<RequestCtx>,
    ) -> pingora::Result<()> {
        let Some(tenant) = ctx.tenant.as_ref() else {
            return Error::e_explain(
                ErrorType::InternalError,
                "upstream request without a tenant",
            );
        };
        let Some(snapshot) = ctx.snapshot.as_ref() else {
            return Error::e_explain(
                ErrorType::InternalError,
                "upstream request without a snapshot",
            );
        };
        let injection = Injection {
            tenant,
            request_id: ctx.request_id.as_ref(),
            user_id: ctx.user.as_ref().and_then(|u| u.id.as_ref()),
            user_roles: ctx.user.as_ref().and_then(|u| u.roles.as_ref()),
            sanitize: Sanitize {
                underscore_headers: snapshot.settings.request_rules.underscore_headers,
                trust_forwarded: snapshot.settings.trust_tenant_header,
                strip: ctx.strip,
            },
            target: ctx.forward_target.as_deref(),
            content_length: ctx.content_length,
            host: ctx.host.as_ref(),
            removable: ctx.removable,
            connection: ctx.connection.as_deref(),
        };
        forwarding::inject(session, upstream, &injection)
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Box<RequestCtx>,
    ) -> pingora::Result<()> {
        forwarding::extend_response(
            resp,
            ctx.request_id.as_ref(),
            ctx.rate_limit.take().map(|b| *b),
        )
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Box<RequestCtx>,
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
                let kind = if err == GatewayError::UpstreamTimeout {
                    "timeout"
                } else {
                    "unavailable"
                };
                self.count_upstream_error(ctx, kind);
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
                    if let Err(write_err) = send_error(
                        session,
                        err,
                        None,
                        &[("x-request-id", rid)],
                        ErrorFormat::Json,
                    )
                    .await
                    {
                        tracing::debug!(error = %write_err, "could not send error response");
                    }
                }
                err.status()
            }
            None => match e.etype() {
                ErrorType::HTTPStatus(code) => {
                    if session.response_written().is_none() {
                        let _ = session.respond_error(*code).await;
                    }
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

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Box<RequestCtx>) {
        let now = Instant::now();
        crate::limits::request_head::finished(session, ctx.connection.as_deref(), now);
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .or(ctx.answered.map(GatewayError::status))
            .unwrap_or(0);
        let elapsed = now.saturating_duration_since(ctx.start);
        let tenant_id: &str = ctx.tenant.as_ref().map(|t| &*t.id).unwrap_or(NO_TENANT);
        match &ctx.tenant {
            Some(t) => self
                .tenant_metrics(t)
                .observe(status, elapsed.as_secs_f64()),
            None => {
                let latency = ctx
                    .snapshot
                    .as_ref()
                    .map(|s| s.settings.latency_histogram)
                    .unwrap_or_default();
                self.no_tenant_metrics(latency)
                    .observe(status, elapsed.as_secs_f64())
            }
        }
        let access_log = ctx.snapshot.as_ref().is_some_and(|s| s.settings.access_log);
        if let (Some(refusal), false) = (ctx.refusal, access_log) {
            // A refused request leaves exactly one line, with or without the access log.
            tracing::info!(target: "refused", refusal, status, client = %session.client_addr().map(|a| a.to_string()).unwrap_or_default(), "request refused");
        }
        if access_log {
            let req = session.req_header();
            access_log::stdout().record(&access_log::Entry {
                time: std::time::SystemTime::now(),
                tenant: tenant_id,
                request_id: ctx
                    .request_id
                    .as_ref()
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(""),
                method: req.method.as_str(),
                path: req.uri.path(),
                status,
                refusal: ctx.refusal,
                upstream: ctx.last_upstream(),
                duration: elapsed,
            });
        }
    }
}
