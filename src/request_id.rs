//! `X-Request-Id`: keep a well-formed incoming id (so traces join up across hops), otherwise
//! generate a UUIDv4 without going through a `String`.

use http::HeaderValue;

/// Longest incoming id that is kept.
const MAX_LEN: usize = 128;

/// A client id is kept when it is 1..=128 characters of `[A-Za-z0-9._:-]`, so it cannot smuggle
/// anything into logs or upstream headers.
pub fn is_valid(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_LEN
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'))
}

pub fn keep_or_generate(incoming: Option<&HeaderValue>) -> HeaderValue {
    match incoming {
        Some(v) if is_valid(v) => v.clone(),
        _ => generate(),
    }
}

pub fn generate() -> HeaderValue {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let s = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    // A hyphenated UUID is always a valid header value.
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_valid_and_replaces_invalid() {
        let good = HeaderValue::from_static("abc-123_x.y:z");
        assert_eq!(keep_or_generate(Some(&good)), good);
        let bad = HeaderValue::from_static("a b<script>");
        let replaced = keep_or_generate(Some(&bad));
        assert_ne!(replaced, bad);
        assert_eq!(replaced.len(), 36);
        let long = HeaderValue::from_str(&"a".repeat(129)).unwrap();
        assert_ne!(keep_or_generate(Some(&long)), long);
        assert!(is_valid(&generate()));
    }
}
