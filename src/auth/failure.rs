//! Why a request's credential was refused: the `reason` label of
//! `gateway_auth_failures_total{tenant,reason}` and the `reason` field of the audit line.
//!
//! The label strings are contract (dashboards and alerts match on them): a variant's
//! `as_str()` never changes once released.

use std::fmt;

/// One reason an authentication or authorisation check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthFailure {
    /// A `require_auth` or `require_role` route was called without any credential.
    MissingCredential,
    /// An empty or non-ASCII credential header.
    MalformedCredential,
    /// The same credential header twice (two `X-API-Key`, two `Authorization`).
    AmbiguousCredentials,
    /// An API key no tenant file lists.
    UnknownApiKey,
    /// A JWT was presented but `[auth.jwt]` is not configured.
    TokenNotConfigured,
    /// A JWT whose header does not parse.
    TokenMalformed,
    /// No configured key matches the token's `alg` (and `kid`).
    TokenNoKey,
    /// The signature verifies with none of the matching keys.
    TokenBadSignature,
    /// Past `exp` (plus leeway).
    TokenExpired,
    /// Before `nbf`.
    TokenNotYetValid,
    TokenWrongAudience,
    TokenWrongIssuer,
    /// A claim the validation requires (`exp`, `iss`, `aud`) is absent.
    TokenMissingClaim,
    /// The tenant claim is absent or empty.
    TokenMissingTenant,
    /// The roles claim is neither a list of role names nor a space-separated string of them.
    TokenInvalidRoles,
    /// Any other rejection by the JWT library.
    TokenInvalid,
    /// Valid credentials of two different tenants in one request.
    CredentialsOfDifferentTenants,
    /// A valid credential of a tenant other than the one the request resolved to.
    CredentialOfOtherTenant,
    /// A verified credential without any of the route's `require_role` roles.
    InsufficientRole,
}

impl AuthFailure {
    /// Every variant, for tests that pin the labels.
    pub const ALL: [AuthFailure; 19] = [
        AuthFailure::MissingCredential,
        AuthFailure::MalformedCredential,
        AuthFailure::AmbiguousCredentials,
        AuthFailure::UnknownApiKey,
        AuthFailure::TokenNotConfigured,
        AuthFailure::TokenMalformed,
        AuthFailure::TokenNoKey,
        AuthFailure::TokenBadSignature,
        AuthFailure::TokenExpired,
        AuthFailure::TokenNotYetValid,
        AuthFailure::TokenWrongAudience,
        AuthFailure::TokenWrongIssuer,
        AuthFailure::TokenMissingClaim,
        AuthFailure::TokenMissingTenant,
        AuthFailure::TokenInvalidRoles,
        AuthFailure::TokenInvalid,
        AuthFailure::CredentialsOfDifferentTenants,
        AuthFailure::CredentialOfOtherTenant,
        AuthFailure::InsufficientRole,
    ];

    /// The metric label and audit-log value.
    pub const fn as_str(self) -> &'static str {
        match self {
            AuthFailure::MissingCredential => "missing_credential",
            AuthFailure::MalformedCredential => "malformed_credential",
            AuthFailure::AmbiguousCredentials => "ambiguous_credentials",
            AuthFailure::UnknownApiKey => "unknown_api_key",
            AuthFailure::TokenNotConfigured => "token_not_configured",
            AuthFailure::TokenMalformed => "token_malformed",
            AuthFailure::TokenNoKey => "token_no_key",
            AuthFailure::TokenBadSignature => "token_bad_signature",
            AuthFailure::TokenExpired => "token_expired",
            AuthFailure::TokenNotYetValid => "token_not_yet_valid",
            AuthFailure::TokenWrongAudience => "token_wrong_audience",
            AuthFailure::TokenWrongIssuer => "token_wrong_issuer",
            AuthFailure::TokenMissingClaim => "token_missing_claim",
            AuthFailure::TokenMissingTenant => "token_missing_tenant",
            AuthFailure::TokenInvalidRoles => "token_invalid_roles",
            AuthFailure::TokenInvalid => "token_invalid",
            AuthFailure::CredentialsOfDifferentTenants => "credentials_of_different_tenants",
            AuthFailure::CredentialOfOtherTenant => "credential_of_other_tenant",
            AuthFailure::InsufficientRole => "insufficient_role",
        }
    }

    /// The reason a JWT library rejection stands for.
    pub fn from_jwt_error(kind: &jsonwebtoken::errors::ErrorKind) -> AuthFailure {
        use jsonwebtoken::errors::ErrorKind;
        match kind {
            ErrorKind::ExpiredSignature => AuthFailure::TokenExpired,
            ErrorKind::ImmatureSignature => AuthFailure::TokenNotYetValid,
            ErrorKind::InvalidAudience => AuthFailure::TokenWrongAudience,
            ErrorKind::InvalidIssuer => AuthFailure::TokenWrongIssuer,
            ErrorKind::InvalidSignature => AuthFailure::TokenBadSignature,
            ErrorKind::MissingRequiredClaim(_) => AuthFailure::TokenMissingClaim,
            _ => AuthFailure::TokenInvalid,
        }
    }
}

impl fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The labels are contract: pinned here, one per variant, all distinct.
    #[test]
    fn labels_are_the_released_strings() {
        let want = [
            "missing_credential",
            "malformed_credential",
            "ambiguous_credentials",
            "unknown_api_key",
            "token_not_configured",
            "token_malformed",
            "token_no_key",
            "token_bad_signature",
            "token_expired",
            "token_not_yet_valid",
            "token_wrong_audience",
            "token_wrong_issuer",
            "token_missing_claim",
            "token_missing_tenant",
            "token_invalid_roles",
            "token_invalid",
            "credentials_of_different_tenants",
            "credential_of_other_tenant",
            "insufficient_role",
        ];
        let got: Vec<&str> = AuthFailure::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(got, want);
        let mut distinct = got.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), AuthFailure::ALL.len());
    }
}
