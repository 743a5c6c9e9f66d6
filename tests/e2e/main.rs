//! End-to-end tests: every test starts the real `tenant-gateway` binary on a temp config with
//! real echo upstreams (and Redis where needed), on ephemeral loopback ports.
//!
//! `harness` (tests/e2e/harness.rs + harness/) has every process, fixture and reader; one
//! module per slice of the contract.

mod abuse;
mod acme;
mod admin_call;
mod auth;
mod chaos;
mod echo_reply;
mod failover;
mod fixtures;
mod foundation;
mod harness;
mod hooks;
mod hostile;
mod isolation;
mod operator;
mod ops;
mod provision;
mod quota;
mod roles;
mod tls;
