//! Path canonicalisation over arbitrary bytes: never panics, the canonical form is a fixed
//! point, and it never contains what the rules forbid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenant_gateway::canonical_path::{canonical_path, PathRules};

fuzz_target!(|data: &[u8]| {
    let (flags, raw) = data.split_first().unwrap_or((&0, data));
    let rules = PathRules {
        allow_escaped_slashes: flags & 1 != 0,
        allow_path_parameters: flags & 2 != 0,
    };
    if let Ok(c) = canonical_path(raw, rules) {
        assert!(c.starts_with('/') && !c.contains("//") && c.is_ascii());
        assert!(c.split('/').all(|s| s != "." && s != ".."));
        if !rules.allow_path_parameters {
            assert!(!c.contains(';'));
        }
        let again = canonical_path(c.as_bytes(), rules).expect("canonical form is accepted");
        assert_eq!(again, c);
    }
});
