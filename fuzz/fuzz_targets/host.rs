//! Host normalisation over arbitrary text: never panics and is idempotent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenant_gateway::tenant::normalize_host;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(n) = normalize_host(&text) {
        let again = normalize_host(&n).map(|c| c.into_owned());
        assert_eq!(again.as_deref(), Some(n.as_ref()));
    }
});
