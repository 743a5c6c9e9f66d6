//! `X-Request-Id`: keep a well-formed incoming id (so traces join up across hops), otherwise
//! generate a UUIDv4 without going through a `String`.

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};
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
    HeaderValue::from_maybe_shared(shared_bytes(s.as_bytes()))
        .unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// Generated ids per shared buffer.
const IDS_PER_CHUNK: usize = 64;

thread_local! {
    /// The rest of this thread's current id buffer.
    static CHUNK: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// `text` in a refcounted slice of a per-thread buffer, so generated ids share one allocation
/// per [`IDS_PER_CHUNK`] instead of one each. A buffer (2.3 KiB) is freed when the last id cut
/// from it is dropped, which is at the end of the requests that carry them.
fn shared_bytes(text: &[u8]) -> Bytes {
    CHUNK.with(|chunk| {
        let mut chunk = chunk.borrow_mut();
        if chunk.capacity() < text.len() {
            *chunk = BytesMut::with_capacity(text.len() * IDS_PER_CHUNK);
        }
        chunk.extend_from_slice(text);
        chunk.split().freeze()
    })
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

    /// Ids cut from shared buffers are distinct, well formed and unchanged after the buffer
    /// they came from is replaced (across several buffers' worth).
    #[test]
    fn generated_ids_stay_distinct_across_buffers() {
        let ids: Vec<HeaderValue> = (0..IDS_PER_CHUNK * 3 + 5).map(|_| generate()).collect();
        let texts: std::collections::HashSet<&[u8]> = ids.iter().map(|v| v.as_bytes()).collect();
        assert_eq!(texts.len(), ids.len());
        for id in &ids {
            assert!(is_valid(id));
            let parsed = uuid::Uuid::parse_str(id.to_str().unwrap()).unwrap();
            assert_eq!(parsed.get_version_num(), 4);
        }
    }
}
