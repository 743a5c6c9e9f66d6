//! `[auth.jwt]`: every verification key (the HS256 secret from the environment, PEM public key
//! files, a JWKS file) is read and parsed here, so a bad key is a config error naming its key.

use std::path::Path;

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::Report;
use crate::config::{AuthConfig, JwtConfig, ValidJwt};

/// `[auth.jwt]` with its keys loaded; `None` when absent or invalid (reported).
pub(super) fn jwt(
    auth: &AuthConfig,
    dir: &Path,
    main: &str,
    hs256_secret: Option<&str>,
    r: &mut Report,
) -> Option<ValidJwt> {
    let cfg = auth.jwt.as_ref()?;
    let JwtConfig {
        hs256_secret_env: _,
        public_key_files,
        jwks_file,
        issuer,
        audience,
        tenant_claim,
        roles_claim,
        leeway,
        forward,
    } = cfg;
    let mut ok = true;
    let mut keys = Vec::new();
    if let Some(secret) = hs256_secret {
        keys.push((
            Algorithm::HS256,
            None,
            DecodingKey::from_secret(secret.as_bytes()),
        ));
    }
    for (i, f) in public_key_files.iter().enumerate() {
        let key = format!("auth.jwt.public_key_files[{i}]");
        match std::fs::read(dir.join(f)) {
            Ok(pem) => {
                if let Ok(k) = DecodingKey::from_rsa_pem(&pem) {
                    keys.push((Algorithm::RS256, None, k));
                } else if let Ok(k) = DecodingKey::from_ec_pem(&pem) {
                    keys.push((Algorithm::ES256, None, k));
                } else {
                    r.at(main, key, format!("{f}: not an RSA or EC public key (PEM)"));
                    ok = false;
                }
            }
            Err(e) => {
                r.at(main, key, format!("{f}: {e}"));
                ok = false;
            }
        }
    }
    if !jwks_file.is_empty() {
        let key = "auth.jwt.jwks_file";
        match std::fs::read(dir.join(jwks_file))
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<JwkSet>(&b).map_err(|e| e.to_string()))
        {
            Ok(set) => {
                for jwk in &set.keys {
                    let alg = match jwk.common.key_algorithm {
                        Some(KeyAlgorithm::RS256) => Algorithm::RS256,
                        Some(KeyAlgorithm::ES256) => Algorithm::ES256,
                        None => match &jwk.algorithm {
                            AlgorithmParameters::RSA(_) => Algorithm::RS256,
                            AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                            _ => continue,
                        },
                        _ => continue,
                    };
                    match DecodingKey::from_jwk(jwk) {
                        Ok(k) => keys.push((alg, jwk.common.key_id.clone(), k)),
                        Err(e) => {
                            r.at(main, key, format!("{jwks_file}: {e}"));
                            ok = false;
                        }
                    }
                }
            }
            Err(e) => {
                r.at(main, key, format!("{jwks_file}: {e}"));
                ok = false;
            }
        }
    }
    ok.then(|| ValidJwt {
        keys,
        issuer: issuer.clone(),
        audience: audience.clone(),
        tenant_claim: tenant_claim.clone(),
        roles_claim: roles_claim.clone(),
        leeway: *leeway,
        forward: *forward,
    })
}
