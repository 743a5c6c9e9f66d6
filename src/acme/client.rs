//! The ACME protocol side: an account created once and persisted, and one certificate order
//! for one name through http-01.

use std::path::Path;
use std::time::Duration;

use http_body_util::Full;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus,
};
use serde::{Deserialize, Serialize};

use super::challenge::Http01Store;
use super::AcmeError;
use crate::config::AcmeConfig;

/// `certs/acme/account.json`: the credentials and the directory they belong to.
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory_url: String,
    credentials: AccountCredentials,
}

/// An HTTP client that trusts the system roots plus `acme.ca_roots` (a private or test CA).
fn http_client(
    cfg: &AcmeConfig,
    config_dir: &Path,
) -> Result<Box<dyn instant_acme::HttpClient>, AcmeError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    if let Ok(certs) = native {
        for c in certs {
            let _ = roots.add(c);
        }
    }
    for r in &cfg.ca_roots {
        let path = config_dir.join(r);
        let file_error = |source| AcmeError::CaRootsFile {
            path: path.clone(),
            source,
        };
        let pem = std::fs::read(&path).map_err(file_error)?;
        for cert in rustls_pemfile::certs(&mut &pem[..]) {
            roots.add(cert.map_err(file_error)?)?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    let client: HyperClient<_, Full<bytes::Bytes>> =
        HyperClient::builder(TokioExecutor::new()).build(https);
    Ok(Box::new(client))
}

/// A ready ACME account.
pub struct AcmeClient {
    account: Account,
}

impl AcmeClient {
    /// Loads the account from `account_file`, or creates one (and persists it, mode 0600).
    pub async fn connect(
        cfg: &AcmeConfig,
        config_dir: &Path,
        account_file: &Path,
    ) -> Result<Self, AcmeError> {
        if let Ok(bytes) = std::fs::read(account_file) {
            match serde_json::from_slice::<StoredAccount>(&bytes) {
                Ok(stored) if stored.directory_url == cfg.directory_url => {
                    let account = Account::from_credentials_and_http(
                        stored.credentials,
                        http_client(cfg, config_dir)?,
                    )
                    .await
                    .map_err(|e| AcmeError::ca("restoring account", e))?;
                    return Ok(Self { account });
                }
                Ok(_) => tracing::info!("ACME directory changed; creating a new account"),
                Err(e) => {
                    tracing::warn!(file = %account_file.display(), error = %e, "unreadable ACME account; creating a new one")
                }
            }
        }
        let contact: Vec<&str> = cfg.contact.iter().map(String::as_str).collect();
        let (account, credentials) = Account::create_with_http(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            &cfg.directory_url,
            None,
            http_client(cfg, config_dir)?,
        )
        .await
        .map_err(|e| AcmeError::ca("creating account", e))?;
        let stored = StoredAccount {
            directory_url: cfg.directory_url.clone(),
            credentials,
        };
        let json = serde_json::to_vec_pretty(&stored)?;
        crate::atomic_file::write_atomic(account_file, &json, 0o600).map_err(|source| {
            AcmeError::AccountFile {
                path: account_file.to_path_buf(),
                source,
            }
        })?;
        tracing::info!(id = account.id(), "ACME account created");
        Ok(Self { account })
    }

    /// Orders a certificate for one name via http-01. Returns (chain PEM, key PEM).
    pub async fn order(
        &self,
        name: &str,
        challenges: &Http01Store,
    ) -> Result<(String, String), AcmeError> {
        let identifiers = [Identifier::Dns(name.to_string())];
        let mut order = self
            .account
            .new_order(&NewOrder {
                identifiers: &identifiers,
            })
            .await
            .map_err(|e| AcmeError::ca("new order", e))?;
        let mut tokens = Vec::new();
        let result = match self
            .answer_challenges(&mut order, challenges, &mut tokens)
            .await
        {
            Ok(()) => self.finish(&mut order, name).await,
            Err(e) => Err(e),
        };
        // Tokens are withdrawn on every path, success or not.
        for t in tokens {
            challenges.remove(&t).await;
        }
        result
    }

    async fn answer_challenges(
        &self,
        order: &mut instant_acme::Order,
        challenges: &Http01Store,
        tokens: &mut Vec<String>,
    ) -> Result<(), AcmeError> {
        let authorizations = order
            .authorizations()
            .await
            .map_err(|e| AcmeError::ca("authorizations", e))?;
        for authz in &authorizations {
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => return Err(AcmeError::Refused(format!("authorization is {other:?}"))),
            }
            let challenge = authz
                .challenges
                .iter()
                .find(|c| c.r#type == ChallengeType::Http01)
                .ok_or_else(|| AcmeError::Refused("CA offers no http-01 challenge".into()))?;
            let key_auth = order.key_authorization(challenge);
            challenges.put(&challenge.token, key_auth.as_str()).await;
            tokens.push(challenge.token.clone());
            order
                .set_challenge_ready(&challenge.url)
                .await
                .map_err(|e| AcmeError::ca("challenge ready", e))?;
        }
        Ok(())
    }

    async fn finish(
        &self,
        order: &mut instant_acme::Order,
        name: &str,
    ) -> Result<(String, String), AcmeError> {
        let mut delay = Duration::from_millis(250);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let state = order
                .refresh()
                .await
                .map_err(|e| AcmeError::ca("order status", e))?;
            match state.status {
                OrderStatus::Ready | OrderStatus::Valid => break,
                OrderStatus::Invalid => {
                    let detail = state
                        .error
                        .as_ref()
                        .and_then(|p| p.detail.clone())
                        .unwrap_or_else(|| "validation failed".into());
                    return Err(AcmeError::Refused(format!("order invalid: {detail}")));
                }
                OrderStatus::Pending | OrderStatus::Processing => {}
            }
            if tokio::time::Instant::now() > deadline {
                return Err(AcmeError::Refused("order not ready after 120s".into()));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(3));
        }
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()])?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params.serialize_request(&key)?;
        if order.state().status == OrderStatus::Ready {
            order
                .finalize(csr.der())
                .await
                .map_err(|e| AcmeError::ca("finalize", e))?;
        }
        let mut delay = Duration::from_millis(250);
        loop {
            if let Some(chain) = order
                .certificate()
                .await
                .map_err(|e| AcmeError::ca("certificate", e))?
            {
                return Ok((chain, key.serialize_pem()));
            }
            if tokio::time::Instant::now() > deadline {
                return Err(AcmeError::Refused(
                    "certificate not issued after 120s".into(),
                ));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(3));
        }
    }
}
