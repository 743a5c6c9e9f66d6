//! Why an ACME step failed, with the error that caused it as `source()`: the CA protocol
//! (instant_acme), files (io), the certificate request (rcgen), the TLS client (rustls) or the
//! certificate store. The messages name the step; the source says what went wrong in it.

use std::path::PathBuf;

use crate::tls::CertError;

/// One failed ACME step.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// An `acme.ca_roots` file cannot be read or holds a malformed PEM certificate.
    #[error("acme.ca_roots: {}: {source}", path.display())]
    CaRootsFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// rustls refused a root of `acme.ca_roots`, or the client configuration.
    #[error("TLS client for the CA: {0}")]
    Tls(#[from] rustls::Error),
    /// A request to the CA failed (network, HTTP, or an ACME problem document).
    #[error("CA: {step}: {source}")]
    Ca {
        step: &'static str,
        #[source]
        source: instant_acme::Error,
    },
    /// The CA answered, but not with what the protocol needs (an invalid order, no http-01
    /// challenge, no certificate in time).
    #[error("CA: {0}")]
    Refused(String),
    /// The CA does not know the stored account (e.g. a test CA restarted): a new one is made.
    #[error("account unknown to the CA: {step}: {source}")]
    AccountGone {
        step: &'static str,
        #[source]
        source: instant_acme::Error,
    },
    /// The key pair or the certificate signing request could not be built.
    #[error("certificate request: {0}")]
    Csr(#[from] rcgen::Error),
    /// The account file cannot be written.
    #[error("{}: {source}", path.display())]
    AccountFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The account credentials cannot be serialised.
    #[error("account credentials: {0}")]
    AccountJson(#[from] serde_json::Error),
    /// The issued certificate was refused by, or could not be written to, the store.
    #[error("store: {0}")]
    Store(#[from] CertError),
}

impl AcmeError {
    /// A failed request to the CA; a CA that no longer knows the account gets its own variant
    /// so the caller can start over with a new account.
    pub fn ca(step: &'static str, source: instant_acme::Error) -> AcmeError {
        if let instant_acme::Error::Api(p) = &source {
            if p.r#type
                .as_deref()
                .is_some_and(|t| t.ends_with(":accountDoesNotExist"))
            {
                return AcmeError::AccountGone { step, source };
            }
        }
        AcmeError::Ca { step, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    fn problem(kind: &str) -> instant_acme::Error {
        instant_acme::Error::Api(instant_acme::Problem {
            r#type: Some(kind.to_string()),
            detail: Some("detail".into()),
            status: Some(400),
        })
    }

    #[test]
    fn unknown_account_is_its_own_variant_and_keeps_the_source() {
        let gone = AcmeError::ca(
            "new order",
            problem("urn:ietf:params:acme:error:accountDoesNotExist"),
        );
        assert!(matches!(
            gone,
            AcmeError::AccountGone {
                step: "new order",
                ..
            }
        ));
        assert!(gone.source().is_some());
        let other = AcmeError::ca("finalize", problem("urn:ietf:params:acme:error:malformed"));
        assert!(matches!(
            other,
            AcmeError::Ca {
                step: "finalize",
                ..
            }
        ));
        assert!(other.to_string().starts_with("CA: finalize: "));
        let io = AcmeError::CaRootsFile {
            path: "roots.pem".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert!(io
            .source()
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .is_some());
    }
}
