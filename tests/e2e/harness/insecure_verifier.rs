//! A lenient rustls certificate verifier that still checks the handshake signature with the
//! presented certificate (so the server proves it holds the key): either any certificate at all
//! (like `h2load` or `curl -k`, to look at what a server presents or to load it without a trust
//! store), or a chain that must verify against the roots for any name (to look at a default
//! certificate for a name it does not cover). Shared by the e2e harness and
//! `benches/tls_handshake_load.rs` (included there by `#[path]`), so it stands alone.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

/// `ServerCertVerifier` methods that check a handshake signature with the provider's
/// algorithms: one body for TLS 1.2 and 1.3 (rustls names its checks like the trait methods).
macro_rules! verify_signature_with_provider {
    ($($method:ident),+) => {
        $(
            fn $method(
                &self,
                msg: &[u8],
                cert: &CertificateDer<'_>,
                dss: &DigitallySignedStruct,
            ) -> Result<HandshakeSignatureValid, rustls::Error> {
                rustls::crypto::$method(msg, cert, dss, self.algorithms())
            }
        )+
    };
}

/// Accepts any certificate, or any name on a verified chain; verifies handshake signatures.
#[derive(Debug)]
pub struct LenientVerifier {
    provider: Arc<CryptoProvider>,
    /// `Some`: the chain must verify (a name mismatch is accepted).
    chain: Option<Arc<WebPkiServerVerifier>>,
}

impl LenientVerifier {
    /// Every certificate chain and name.
    pub fn any_certificate(provider: Arc<CryptoProvider>) -> Self {
        Self {
            provider,
            chain: None,
        }
    }

    /// Chains `chain` accepts, for any name (webpki checks the path before the name, so a name
    /// error means the chain was fine).
    pub fn any_name(provider: Arc<CryptoProvider>, chain: Arc<WebPkiServerVerifier>) -> Self {
        Self {
            provider,
            chain: Some(chain),
        }
    }

    fn algorithms(&self) -> &WebPkiSupportedAlgorithms {
        &self.provider.signature_verification_algorithms
    }
}

impl ServerCertVerifier for LenientVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    verify_signature_with_provider!(verify_tls12_signature, verify_tls13_signature);

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms().supported_schemes()
    }
}
