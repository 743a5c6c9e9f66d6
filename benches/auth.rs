//! Per-request cost of the credential check (`tenant_gateway::auth::authenticate`): an API key
//! (one SHA-256 and a map lookup among 10,000 keys), a JWT served from the verified-token cache
//! (HS256 and ES256: one SHA-256 of the token and a cache hit), and for contrast a JWT that is
//! not cached yet (unique tokens: full signature verification, claims parsing, cache insert).

use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{BatchSize, Criterion};
use http::{HeaderMap, HeaderValue};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tenant_gateway::auth::{authenticate, key_hash, ApiKeyIndex, Credential, JwtVerifier};
use tenant_gateway::client_headers::ClientHeaders;
use tenant_gateway::config::{AuthConfig, GatewayConfig, JwtConfig, RawConfig};

const SECRET_ENV: &str = "TG_BENCH_JWT_SECRET";
const SECRET: &str = "bench-secret-0123456789abcdef";
const ISSUER: &str = "https://auth.bench.test";
const AUDIENCE: &str = "tenant-gateway";

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// 10,000 tenants with one key each; returns the index and the key of tenant t42.
fn api_keys() -> (ApiKeyIndex, String) {
    let mut index = ApiKeyIndex::default();
    for i in 0..10_000 {
        let key = format!("tgk_bench_{i:064}");
        index.insert(
            key_hash(key.as_bytes()),
            &format!("t{i}"),
            "ci",
            Default::default(),
        );
    }
    (index, format!("tgk_bench_{:064}", 42))
}

/// A verifier with the HS256 secret and one ES256 public key file in `dir`.
fn verifier(dir: &Path, es_public_pem: &str) -> JwtVerifier {
    std::env::set_var(SECRET_ENV, SECRET);
    std::fs::write(dir.join("es256.pem"), es_public_pem).expect("write es256.pem");
    let jwt = JwtConfig {
        hs256_secret_env: SECRET_ENV.into(),
        public_key_files: vec!["es256.pem".into()],
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        ..JwtConfig::default()
    };
    let raw = RawConfig {
        dir: dir.to_path_buf(),
        main_file: "gateway.toml".into(),
        gateway: GatewayConfig {
            auth: AuthConfig { jwt: Some(jwt) },
            ..GatewayConfig::default()
        },
        tenants: vec![],
        content_hash: 0,
    };
    let jwt = raw.validate().expect("valid [auth.jwt]").jwt;
    JwtVerifier::compile(jwt.expect("[auth.jwt] is set"))
}

/// Realistic claims; `jti` makes each token unique.
fn claims(jti: u64) -> serde_json::Value {
    let now = unix_now();
    serde_json::json!({
        "tenant_id": "t42", "sub": "user-1234", "iss": ISSUER, "aud": AUDIENCE,
        "iat": now, "exp": now + 3600, "jti": jti,
    })
}

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).expect("header value"),
    );
    headers.insert(http::header::ACCEPT, HeaderValue::from_static("*/*"));
    headers
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let es_key = rcgen::KeyPair::generate().expect("ECDSA P-256 key");
    let jwt = verifier(dir.path(), &es_key.public_key_pem());
    let (keys, key) = api_keys();
    let hs_enc = EncodingKey::from_secret(SECRET.as_bytes());
    let es_enc = EncodingKey::from_ec_pem(es_key.serialize_pem().as_bytes()).expect("EC PEM");
    let hs_token = |jti| {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims(jti), &hs_enc)
            .expect("sign HS256")
    };
    let es_token = |jti| {
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims(jti), &es_enc)
            .expect("sign ES256")
    };
    let now = unix_now();
    let check = |headers: &HeaderMap| {
        let c = authenticate(&ClientHeaders::scan(headers), &keys, Some(&jwt), now).credential;
        assert_eq!(c.tenant(), Some("t42"), "{c:?}");
        c
    };

    let mut x_api_key = HeaderMap::new();
    x_api_key.insert("x-api-key", HeaderValue::from_str(&key).expect("key"));
    check(&x_api_key);
    let api_bearer = bearer(&key);
    check(&api_bearer);
    let hs_cached = bearer(&hs_token(0));
    check(&hs_cached);
    let es_cached = bearer(&es_token(0));
    check(&es_cached);

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();
    let mut group = c.benchmark_group("auth");
    group.bench_function("api_key_x_api_key", |b| {
        b.iter(|| {
            black_box(authenticate(
                &ClientHeaders::scan(black_box(&x_api_key)),
                &keys,
                Some(&jwt),
                now,
            ))
        })
    });
    group.bench_function("api_key_bearer", |b| {
        b.iter(|| {
            black_box(authenticate(
                &ClientHeaders::scan(black_box(&api_bearer)),
                &keys,
                Some(&jwt),
                now,
            ))
        })
    });
    group.bench_function("jwt_hs256_cached", |b| {
        b.iter(|| {
            black_box(authenticate(
                &ClientHeaders::scan(black_box(&hs_cached)),
                &keys,
                Some(&jwt),
                now,
            ))
        })
    });
    group.bench_function("jwt_es256_cached", |b| {
        b.iter(|| {
            black_box(authenticate(
                &ClientHeaders::scan(black_box(&es_cached)),
                &keys,
                Some(&jwt),
                now,
            ))
        })
    });
    // Unique tokens, minted outside the measurement: every check verifies the signature.
    let jti = AtomicU64::new(1);
    let uncached: [(&str, &dyn Fn(u64) -> String); 2] = [
        ("jwt_hs256_uncached", &hs_token),
        ("jwt_es256_uncached", &es_token),
    ];
    for (name, mint) in uncached {
        group.bench_function(name, |b| {
            b.iter_batched(
                || bearer(&mint(jti.fetch_add(1, Ordering::Relaxed))),
                |h| {
                    let c =
                        authenticate(&ClientHeaders::scan(&h), &keys, Some(&jwt), now).credential;
                    debug_assert!(matches!(c, Credential::Token(_)));
                    black_box(c)
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
    c.final_summary();
}
