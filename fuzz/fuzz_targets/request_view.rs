//! The canonical request view over an arbitrary method, target and header bytes: never panics,
//! and what it accepts re-canonicalises to itself.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;
use tenant_gateway::request_view::{canonicalize, RequestRules};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(4, |&b| b == b'\n');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let host = parts.next().unwrap_or_default();
    let content_length = parts.next().unwrap_or_default();
    let Ok(method) = Method::from_bytes(method) else { return };
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(host) {
        headers.append(http::header::HOST, v);
    }
    if let Ok(v) = HeaderValue::from_bytes(content_length) {
        headers.append(HeaderName::from_static("content-length"), v);
    }
    if let Ok(view) = canonicalize(&method, target, None, &headers, RequestRules::default()) {
        if view.path != "*" {
            let target = view.upstream_target();
            let again = canonicalize(&method, target.as_bytes(), None, &headers, RequestRules::default())
                .expect("canonical target is accepted");
            assert_eq!(again.upstream_target(), target);
        }
    }
});
