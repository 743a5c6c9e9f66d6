//! Path canonicalisation: the one form of a request path that routes, gates and quotas are
//! decided on, and that is forwarded upstream, so the gateway and every backend behind it agree
//! on what was requested.
//!
//! Rules (the README's "Hardening" section states them for users):
//! - the path must start with `/` (origin-form); the caller handles `*` for `OPTIONS`;
//! - percent-decoding works on bytes; a `%` not followed by two hex digits is refused;
//! - the decoded bytes must be UTF-8 without NUL or control bytes; `#` is refused;
//! - `%2F`, `%5C` and a raw `\` are refused unless [`PathRules::allow_escaped_slashes`] (then
//!   they stay encoded as data, never separators);
//! - a raw `;` (path parameter) is refused unless [`PathRules::allow_path_parameters`];
//! - empty and `.` segments are dropped, `..` removes the previous segment (never above the
//!   root), decoded dot segments (`%2e%2e`) included;
//! - the output spells unreserved characters, sub-delimiters, `:` and `@` literally and
//!   everything else as `%XX` with upper-case hex: one spelling per decoded path, so the
//!   function is idempotent.

use std::borrow::Cow;

/// Relaxations of the default rules, each an explicit config option.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathRules {
    /// Keep `%2F`, `%5C` and `\` (as encoded data) instead of refusing them.
    pub allow_escaped_slashes: bool,
    /// Keep `;` path parameters instead of refusing them.
    pub allow_path_parameters: bool,
}

/// Why a request target is refused (400 `BAD_REQUEST_TARGET`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetError {
    /// Not origin-form (`api/x`, `x:/y`, `*/x`, absolute-form), or `*` on a method other
    /// than OPTIONS.
    NotOriginForm,
    /// `%` not followed by two hex digits.
    BadPercentEncoding,
    /// `%2F`, `%5C` or `\`.
    EscapedSlash,
    /// A `;` path parameter.
    PathParameter,
    /// NUL, a control byte (raw or decoded), or `#`.
    ForbiddenByte,
    /// The decoded path is not UTF-8.
    InvalidUtf8,
}

impl TargetError {
    /// Label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotOriginForm => "not_origin_form",
            Self::BadPercentEncoding => "bad_percent_encoding",
            Self::EscapedSlash => "escaped_slash",
            Self::PathParameter => "path_parameter",
            Self::ForbiddenByte => "forbidden_byte",
            Self::InvalidUtf8 => "invalid_utf8",
        }
    }
}

/// Bytes spelled literally in the canonical form: RFC 3986 unreserved, sub-delims (with `;`
/// only when parameters are allowed), `:` and `@`.
fn is_literal(b: u8, rules: PathRules) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b'='
                | b':'
                | b'@'
        )
        || (b == b';' && rules.allow_path_parameters)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Decodes one raw segment (no raw `/` inside) into its bytes, applying the byte rules.
fn decode_segment(raw: &[u8], rules: PathRules, out: &mut Vec<u8>) -> Result<(), TargetError> {
    out.clear();
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        let decoded = if b == b'%' {
            let (Some(hi), Some(lo)) = (
                raw.get(i + 1).copied().and_then(hex_value),
                raw.get(i + 2).copied().and_then(hex_value),
            ) else {
                return Err(TargetError::BadPercentEncoding);
            };
            i += 3;
            let d = (hi << 4) | lo;
            if d == b'/' || d == b'\\' {
                if !rules.allow_escaped_slashes {
                    return Err(TargetError::EscapedSlash);
                }
            } else if d < 0x20 || d == 0x7f {
                return Err(TargetError::ForbiddenByte);
            }
            d
        } else {
            i += 1;
            match b {
                b'\\' if !rules.allow_escaped_slashes => return Err(TargetError::EscapedSlash),
                b';' if !rules.allow_path_parameters => return Err(TargetError::PathParameter),
                b'#' => return Err(TargetError::ForbiddenByte),
                _ if b < 0x20 || b == 0x7f || b == b' ' => return Err(TargetError::ForbiddenByte),
                _ => b,
            }
        };
        out.push(decoded);
    }
    if std::str::from_utf8(out).is_err() {
        return Err(TargetError::InvalidUtf8);
    }
    Ok(())
}

/// Appends the canonical spelling of decoded segment bytes.
fn encode_segment(decoded: &[u8], rules: PathRules, out: &mut String) {
    for &b in decoded {
        if is_literal(b, rules) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX_UPPER[usize::from(b >> 4)] as char);
            out.push(HEX_UPPER[usize::from(b & 0xf)] as char);
        }
    }
}

/// True when `raw` is already canonical and can be borrowed: only literal bytes and single
/// slashes, no dot segments, no percent signs.
fn is_plainly_canonical(raw: &[u8], rules: PathRules) -> bool {
    if raw.first() != Some(&b'/') {
        return false;
    }
    let mut segment_start = 1;
    for (i, &b) in raw.iter().enumerate().skip(1) {
        if b == b'/' {
            let seg = &raw[segment_start..i];
            if seg.is_empty() || seg == b"." || seg == b".." {
                return false;
            }
            segment_start = i + 1;
        } else if !is_literal(b, rules) {
            return false;
        }
    }
    let last = &raw[segment_start..];
    last != b"." && last != b".."
}

/// The canonical form of a raw path (the request target before `?`). Borrows when the input
/// is already canonical (the common case), so a well-formed request allocates nothing here.
pub fn canonical_path(raw: &[u8], rules: PathRules) -> Result<Cow<'_, str>, TargetError> {
    if is_plainly_canonical(raw, rules) {
        // Only ASCII literal bytes and '/': valid UTF-8.
        return std::str::from_utf8(raw)
            .map(Cow::Borrowed)
            .map_err(|_| TargetError::InvalidUtf8);
    }
    if raw.first() != Some(&b'/') {
        return Err(TargetError::NotOriginForm);
    }
    // Segments as ranges of `out`: resolving `..` truncates `out`.
    let mut out = String::with_capacity(raw.len() + 8);
    let mut starts: Vec<usize> = Vec::new();
    let mut decoded = Vec::with_capacity(32);
    let mut trailing_slash = false;
    for seg in raw[1..].split(|&b| b == b'/') {
        decode_segment(seg, rules, &mut decoded)?;
        match decoded.as_slice() {
            b"" | b"." => trailing_slash = true,
            b".." => {
                if let Some(start) = starts.pop() {
                    out.truncate(start);
                }
                trailing_slash = true;
            }
            _ => {
                starts.push(out.len());
                out.push('/');
                encode_segment(&decoded, rules, &mut out);
                trailing_slash = false;
            }
        }
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

/// True when `path` starts with `prefix`, byte for byte or (when `case_sensitive` is false)
/// ignoring ASCII case. Both are canonical, so percent-escapes are upper-case on both sides.
pub fn has_prefix(path: &str, prefix: &str, case_sensitive: bool) -> bool {
    let (p, x) = (path.as_bytes(), prefix.as_bytes());
    p.len() >= x.len()
        && if case_sensitive {
            &p[..x.len()] == x
        } else {
            p[..x.len()].eq_ignore_ascii_case(x)
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const STRICT: PathRules = PathRules {
        allow_escaped_slashes: false,
        allow_path_parameters: false,
    };

    fn canon(raw: &str) -> Result<String, TargetError> {
        canonical_path(raw.as_bytes(), STRICT).map(Cow::into_owned)
    }

    #[test]
    fn accepted_forms_and_their_canonical_spelling() {
        for (raw, want) in [
            ("/", "/"),
            ("/api/secure", "/api/secure"),
            ("//api//secure", "/api/secure"),
            ("/./api/./secure", "/api/secure"),
            ("/api/x/../secure", "/api/secure"),
            ("/../../api/secure", "/api/secure"),
            ("/api/%73ecure", "/api/secure"),
            ("/api/%2e%2e/secure", "/secure"),
            ("/api/%2E/secure", "/api/secure"),
            ("/api/", "/api/"),
            ("/api/x/..", "/api/"),
            ("/api/.", "/api/"),
            ("/a%20b", "/a%20b"),
            ("/a%3fb", "/a%3Fb"),
            ("/caf%C3%A9", "/caf%C3%A9"),
            ("/caf\u{e9}", "/caf%C3%A9"),
            ("/a%3Bb", "/a%3Bb"),
            ("/a%21b", "/a!b"),
            ("/%7Euser", "/~user"),
        ] {
            assert_eq!(canon(raw).as_deref(), Ok(want), "{raw:?}");
        }
        assert!(matches!(
            canonical_path(b"/api/secure", STRICT),
            Ok(Cow::Borrowed(_))
        ));
    }

    /// Every bypass of the hardening issue, by class.
    #[test]
    fn refused_forms() {
        use TargetError::*;
        for (raw, want) in [
            ("api/secure", NotOriginForm),
            ("x:/api/secure", NotOriginForm),
            ("*/api/secure", NotOriginForm),
            (".//api/secure", NotOriginForm),
            ("http://h/api", NotOriginForm),
            ("", NotOriginForm),
            ("/api%2fsecure", EscapedSlash),
            ("/api%2Fsecure", EscapedSlash),
            ("/api/x/..%2fsecure", EscapedSlash),
            ("/api\\secure", EscapedSlash),
            ("/api%5csecure", EscapedSlash),
            ("/api;x/secure", PathParameter),
            ("/..;/api/secure", PathParameter),
            ("/a%00b", ForbiddenByte),
            ("/a%0ab", ForbiddenByte),
            ("/a%7fb", ForbiddenByte),
            ("/a#b", ForbiddenByte),
            ("/a\tb", ForbiddenByte),
            ("/a b", ForbiddenByte),
            ("/%", BadPercentEncoding),
            ("/%a", BadPercentEncoding),
            ("/%zz", BadPercentEncoding),
            ("/%\u{20ac}x", BadPercentEncoding),
            ("/%a\u{e9}", BadPercentEncoding),
            ("/%\u{1f600}", BadPercentEncoding),
            ("/%ff", InvalidUtf8),
            ("/%c3", InvalidUtf8),
        ] {
            assert_eq!(canon(raw), Err(want), "{raw:?}");
        }
        assert_eq!(
            canonical_path(b"/a\xffb", STRICT),
            Err(TargetError::InvalidUtf8)
        );
    }

    #[test]
    fn relaxations_keep_the_byte_as_data() {
        let rules = PathRules {
            allow_escaped_slashes: true,
            allow_path_parameters: true,
        };
        let c = |raw: &str| canonical_path(raw.as_bytes(), rules).map(Cow::into_owned);
        assert_eq!(c("/api%2fsecure").as_deref(), Ok("/api%2Fsecure"));
        assert_eq!(c("/api\\secure").as_deref(), Ok("/api%5Csecure"));
        assert_eq!(c("/api;x/secure").as_deref(), Ok("/api;x/secure"));
    }

    #[test]
    fn prefixes() {
        assert!(has_prefix("/API/analytics", "/api/analytics", false));
        assert!(!has_prefix("/API/analytics", "/api/analytics", true));
        assert!(has_prefix("/api/analytics/x", "/api/analytics", true));
        assert!(!has_prefix("/api", "/api/analytics", false));
    }

    /// What a canonical path may never contain, whatever came in.
    fn assert_unambiguous(c: &str, rules: PathRules) {
        assert!(c.starts_with('/'), "{c:?}");
        assert!(!c.contains("//"), "{c:?}");
        assert!(c.is_ascii(), "{c:?}");
        assert!(
            !c.contains('\\') && !c.contains('#') && !c.contains('?'),
            "{c:?}"
        );
        for seg in c.split('/').skip(1) {
            assert!(seg != "." && seg != "..", "{c:?}");
        }
        if !rules.allow_path_parameters {
            assert!(!c.contains(';'), "{c:?}");
        }
        if !rules.allow_escaped_slashes {
            let upper = c.to_ascii_uppercase();
            assert!(!upper.contains("%2F") && !upper.contains("%5C"), "{c:?}");
        }
        assert!(!c.contains("%00"), "{c:?}");
        assert!(!c.bytes().any(|b| b < 0x20 || b == 0x7f), "{c:?}");
    }

    fn rules_strategy() -> impl Strategy<Value = PathRules> {
        (any::<bool>(), any::<bool>()).prop_map(|(s, p)| PathRules {
            allow_escaped_slashes: s,
            allow_path_parameters: p,
        })
    }

    /// A path that is accepted has one meaning, and canonicalising it again changes nothing.
    fn canonical_is_a_fixed_point(raw: &[u8], rules: PathRules) -> Result<(), TestCaseError> {
        if let Ok(c) = canonical_path(raw, rules) {
            assert_unambiguous(&c, rules);
            let again = canonical_path(c.as_bytes(), rules).map(Cow::into_owned);
            prop_assert_eq!(again.as_deref(), Ok(c.as_ref()));
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn arbitrary_bytes_never_panic_and_canonical_is_fixed_point(
            raw in proptest::collection::vec(any::<u8>(), 0..64),
            rules in rules_strategy(),
        ) {
            canonical_is_a_fixed_point(&raw, rules)?;
        }

        #[test]
        fn path_like_inputs_never_panic_and_are_idempotent(
            raw in "/[a-zA-Z0-9/.%;\\\\:*~_-]{0,40}",
            rules in rules_strategy(),
        ) {
            canonical_is_a_fixed_point(raw.as_bytes(), rules)?;
        }

        /// Decoding cannot smuggle a different route: the canonical form decodes to the
        /// same segments as the input.
        #[test]
        fn percent_encoding_any_unreserved_byte_changes_nothing(
            path in "(/[a-z0-9]{1,6}){1,5}",
            which in any::<prop::sample::Index>(),
        ) {
            let bytes = path.as_bytes();
            let mut i = which.index(bytes.len());
            if bytes[i] == b'/' {
                i += 1; // every segment has at least one character
            }
            let b = bytes[i];
            let mut encoded = path[..i].to_string();
            encoded.push_str(&format!("%{b:02x}"));
            encoded.push_str(&path[i + 1..]);
            let c = canonical_path(encoded.as_bytes(), STRICT).map(Cow::into_owned);
            prop_assert_eq!(c.as_deref(), Ok(path.as_str()));
        }
    }
}
