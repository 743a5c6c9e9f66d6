//! tenant-gateway: a multi-tenant edge gateway on pingora.
//!
//! For every request it works out the tenant (Host subdomain, custom domain, trusted header,
//! dev query), applies the tenant's plan (features, quotas) and forwards to the tenant's
//! upstream with trusted `X-Tenant-*` headers. See `DESIGN.md`-style docs in the README.

pub mod access_log;
pub mod acme;
pub mod admin;
pub mod admission;
pub mod atomic_file;
pub mod auth;
pub mod canonical_path;
pub mod client_headers;
pub mod config;
pub mod echo;
pub mod gateway;
pub mod ipv4_text;
pub mod limits;
pub mod metrics;
pub mod provision;
pub mod proxy;
pub mod quota;
pub mod redis_client;
pub mod reload;
pub mod request_id;
pub mod request_view;
pub mod response;
pub mod roles;
pub mod snapshot;
pub mod tenant;
pub mod tls;
pub mod upstream;

#[cfg(test)]
mod test_support;
