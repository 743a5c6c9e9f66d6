//! End-to-end tests: every test starts the real `tenant-gateway` binary on a temp config with
//! real echo upstreams (and Redis where needed), on ephemeral loopback ports.
//!
//! `harness` has the process and config helpers; one module per slice of the contract.

mod abuse;
mod acme;
mod acme_harness;
mod auth;
mod chaos;
mod failover;
mod foundation;
mod harness;
mod hooks;
mod hostile;
mod isolation;
mod operator;
mod ops;
mod postgres_harness;
mod provision;
mod quota;
mod quota_harness;
mod roles;
mod tls;
mod tls_harness;
