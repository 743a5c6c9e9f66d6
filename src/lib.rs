//! tenant-gateway: a multi-tenant edge gateway on pingora.
pub mod echo;
