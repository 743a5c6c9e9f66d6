//! Echo upstream (placeholder).
