//! Credential header parsing over arbitrary bytes: never panics; nothing random verifies.
#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tenant_gateway::auth::{authenticate, bearer_token, key_hash, ApiKeyIndex, Credential};

fuzz_target!(|data: &[u8]| {
    let (api_key, authorization) = data.split_at(data.len() / 2);
    if let Ok(text) = std::str::from_utf8(authorization) {
        let _ = bearer_token(text);
    }
    let mut keys = ApiKeyIndex::default();
    keys.insert(key_hash(b"tgk_fuzz_known_key"), "acme", "ci", Default::default());
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(api_key) {
        headers.append("x-api-key", v);
    }
    if let Ok(v) = HeaderValue::from_bytes(authorization) {
        headers.append(http::header::AUTHORIZATION, v);
    }
    let auth = authenticate(&headers, &keys, None, 0);
    assert!(!matches!(auth.credential, Credential::Token(_)));
});
