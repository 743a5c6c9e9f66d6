//! Quota model: limits per resource and period.

use crate::config::Period;

/// One effective limit of a tenant: at most `limit` units of a resource per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaLimit {
    pub limit: u64,
    pub period: Period,
}
