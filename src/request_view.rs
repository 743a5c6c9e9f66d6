//! The canonical view of a request, decided once before any route, gate or quota decision:
//! method, path, host, query and body length in the one form the gateway and the backend
//! agree on, or the refusal (400/405) that says why the request is ambiguous.
//!
//! Nothing downstream of this reads `uri.path()` or the raw method again: admission matches
//! routes on [`CanonicalRequest::path`], and the proxy forwards [`CanonicalRequest::path`]
//! (with the raw query) upstream, so the path that was matched is the path that is served.

use std::borrow::Cow;

use http::Method;

use crate::canonical_path::{canonical_path, PathRules, TargetError};
use crate::client_headers::{ClientHeaders, Repeated, Seen};
pub use crate::config::UnderscoreHeaders;
use crate::response::GatewayError;
use crate::tenant::normalize_host;

/// The request rules of `[hardening]`, compiled into the snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestRules {
    pub path: PathRules,
    pub underscore_headers: UnderscoreHeaders,
}

/// Why a request is refused before admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 400 BAD_REQUEST_TARGET.
    Target(TargetError),
    /// 400 BAD_METHOD: not an upper-case token.
    Method,
    /// 405 METHOD_NOT_ALLOWED (TRACE).
    MethodNotAllowed,
    /// 400 BAD_HEADER: several Host headers, Host and `:authority` naming different hosts,
    /// an underscore header under `reject`, or a Content-Length that is not one number.
    Header(&'static str),
}

impl Refusal {
    /// The answer the client gets.
    pub fn error(self) -> GatewayError {
        match self {
            Self::Target(_) => GatewayError::BadRequestTarget,
            Self::Method => GatewayError::BadMethod,
            Self::MethodNotAllowed => GatewayError::MethodNotAllowed,
            Self::Header(_) => GatewayError::BadHeader,
        }
    }

    /// Label for the log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Target(t) => t.as_str(),
            Self::Method => "bad_method",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Header(h) => h,
        }
    }
}

/// The canonical request. Borrows from the request header; allocates only when the path
/// had to be rewritten or the host normalised.
#[derive(Debug, Clone)]
pub struct CanonicalRequest<'r> {
    pub method: &'r Method,
    /// Canonical path (see [`crate::canonical_path`]), or `*` for `OPTIONS *`.
    pub path: Cow<'r, str>,
    /// The raw query (without `?`), forwarded as received.
    pub query: Option<&'r str>,
    /// Raw `Host` (or `:authority`), as resolution expects it.
    pub host: Option<&'r str>,
    /// The body length the request declares, when it declares one.
    pub content_length: Option<u64>,
    /// Whether the path differs from what the client sent, so the upstream target must be
    /// rewritten.
    pub rewritten: bool,
}

impl CanonicalRequest<'_> {
    /// `path?query` as sent upstream when the path was rewritten.
    pub fn upstream_target(&self) -> String {
        match self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.to_string(),
        }
    }
}

/// Methods are case-sensitive upper-case tokens (RFC 9110 §9.1); `post` is refused rather
/// than guessed, as nginx does.
fn is_upper_case_token(m: &str) -> bool {
    !m.is_empty()
        && m.bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
}

/// One Content-Length: every value of every `Content-Length` line, comma-split, must be the
/// same number (`5, 5` and two `5` lines are one length, `5, 6` is refused).
pub fn declared_content_length(headers: &ClientHeaders<'_>) -> Result<Option<u64>, Refusal> {
    let mut length: Option<u64> = None;
    for value in headers.content_lengths() {
        let text = value
            .to_str()
            .map_err(|_| Refusal::Header("bad_content_length"))?;
        for part in text.split(',') {
            let part = part.trim_matches(|c| c == ' ' || c == '\t');
            if part.is_empty() || part.len() > 19 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Refusal::Header("bad_content_length"));
            }
            let n: u64 = part
                .parse()
                .map_err(|_| Refusal::Header("bad_content_length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(Refusal::Header("bad_content_length"));
            }
            length = Some(n);
        }
    }
    Ok(length)
}

/// The host the request names: one `Host` header, or `:authority` on HTTP/2; both present
/// must agree.
fn request_host<'r>(
    hosts: Seen<'r>,
    authority: Option<&'r str>,
) -> Result<Option<&'r str>, Refusal> {
    let host = match hosts.one() {
        Err(Repeated) => return Err(Refusal::Header("several_hosts")),
        Ok(Some(h)) => Some(h.to_str().map_err(|_| Refusal::Header("bad_host"))?),
        Ok(None) => None,
    };
    match (host, authority) {
        (Some(h), Some(a)) if normalize_host(h) != normalize_host(a) => {
            Err(Refusal::Header("host_authority_mismatch"))
        }
        (Some(h), _) => Ok(Some(h)),
        (None, a) => Ok(a),
    }
}

/// Builds the canonical view from the parts of a request header: method, the raw target as
/// received (`RequestHeader::raw_path`), `:authority` and the headers.
pub fn canonicalize<'r>(
    method: &'r Method,
    raw_target: &'r [u8],
    authority: Option<&'r str>,
    headers: &ClientHeaders<'r>,
    rules: RequestRules,
) -> Result<CanonicalRequest<'r>, Refusal> {
    if !is_upper_case_token(method.as_str()) {
        return Err(Refusal::Method);
    }
    if method.as_str() == "TRACE" {
        return Err(Refusal::MethodNotAllowed);
    }
    let (raw_path, query) = match raw_target.iter().position(|&b| b == b'?') {
        Some(i) => (&raw_target[..i], Some(&raw_target[i + 1..])),
        None => (raw_target, None),
    };
    let query = match query {
        Some(q) => Some(
            std::str::from_utf8(q)
                .ok()
                .filter(|q| !q.bytes().any(|b| b < 0x20 || b == 0x7f || b == b'#'))
                .ok_or(Refusal::Target(TargetError::ForbiddenByte))?,
        ),
        None => None,
    };
    let path = if raw_path == b"*" {
        if method != Method::OPTIONS || query.is_some() {
            return Err(Refusal::Target(TargetError::NotOriginForm));
        }
        Cow::Borrowed("*")
    } else {
        canonical_path(raw_path, rules.path).map_err(Refusal::Target)?
    };
    if rules.underscore_headers == UnderscoreHeaders::Reject && headers.underscore {
        return Err(Refusal::Header("underscore_header"));
    }
    let rewritten = matches!(path, Cow::Owned(_));
    Ok(CanonicalRequest {
        method,
        path,
        query,
        host: request_host(headers.host, authority)?,
        content_length: declared_content_length(headers)?,
        rewritten,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::CONTENT_LENGTH;
    use http::HeaderMap;
    use proptest::prelude::*;

    /// A header map in the given order, repeats kept (`FromIterator` appends).
    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|&(k, v)| (k.parse::<http::HeaderName>().unwrap(), v.parse().unwrap()))
            .collect()
    }

    fn view(method: &str, target: &str, h: &[(&str, &str)]) -> Result<String, Refusal> {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let h = headers(h);
        canonicalize(
            &m,
            target.as_bytes(),
            None,
            &ClientHeaders::scan(&h),
            RequestRules::default(),
        )
        .map(|c| {
            let mut s = c.path.into_owned();
            if let Some(q) = c.query {
                s.push('?');
                s.push_str(q);
            }
            s
        })
    }

    #[test]
    fn methods_must_be_upper_case_tokens() {
        for m in ["post", "pOST", "Get", "get"] {
            assert_eq!(view(m, "/", &[]), Err(Refusal::Method), "{m}");
        }
        assert_eq!(view("TRACE", "/", &[]), Err(Refusal::MethodNotAllowed));
        assert!(view("POST", "/", &[]).is_ok());
        assert!(view("PROPFIND", "/", &[]).is_ok());
    }

    #[test]
    fn targets_and_queries() {
        assert_eq!(view("GET", "/a//b?x=1", &[]).as_deref(), Ok("/a/b?x=1"));
        assert_eq!(view("OPTIONS", "*", &[]).as_deref(), Ok("*"));
        assert!(matches!(
            view("GET", "*", &[]),
            Err(Refusal::Target(TargetError::NotOriginForm))
        ));
        assert!(matches!(
            view("GET", "api/secure", &[]),
            Err(Refusal::Target(TargetError::NotOriginForm))
        ));
    }

    #[test]
    fn content_length_must_be_one_number() {
        let cl = |values: &[&str]| {
            let pairs: Vec<(&str, &str)> = values.iter().map(|v| ("content-length", *v)).collect();
            declared_content_length(&ClientHeaders::scan(&headers(&pairs)))
        };
        assert_eq!(cl(&[]), Ok(None));
        assert_eq!(cl(&["5"]), Ok(Some(5)));
        assert_eq!(cl(&["5, 5"]), Ok(Some(5)));
        assert_eq!(cl(&["5", "5"]), Ok(Some(5)));
        for bad in [
            &["5, 6"][..],
            &["5", "6"],
            &["-1"],
            &["+5"],
            &["0x5"],
            &[""],
            &["5,"],
            &["99999999999999999999"],
        ] {
            assert!(cl(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn host_ambiguity_is_refused() {
        assert_eq!(
            view(
                "GET",
                "/",
                &[("host", "a.localhost"), ("host", "b.localhost")]
            ),
            Err(Refusal::Header("several_hosts"))
        );
        let h = headers(&[("host", "a.localhost")]);
        let m = Method::GET;
        let r = canonicalize(
            &m,
            b"/",
            Some("b.localhost"),
            &ClientHeaders::scan(&h),
            RequestRules::default(),
        );
        assert_eq!(r.err(), Some(Refusal::Header("host_authority_mismatch")));
        let r = canonicalize(
            &m,
            b"/",
            Some("A.localhost:443"),
            &ClientHeaders::scan(&h),
            RequestRules::default(),
        );
        assert!(r.is_ok());
    }

    #[test]
    fn underscore_headers_under_reject() {
        let h = headers(&[("x_tenant_id", "globex")]);
        let rules = RequestRules {
            underscore_headers: UnderscoreHeaders::Reject,
            ..RequestRules::default()
        };
        let r = canonicalize(&Method::GET, b"/", None, &ClientHeaders::scan(&h), rules);
        assert_eq!(r.err(), Some(Refusal::Header("underscore_header")));
        assert!(canonicalize(
            &Method::GET,
            b"/",
            None,
            &ClientHeaders::scan(&h),
            RequestRules::default()
        )
        .is_ok());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn arbitrary_targets_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..80)) {
            let h = HeaderMap::new();
            if let Ok(c) = canonicalize(&Method::GET, &raw, None, &ClientHeaders::scan(&h), RequestRules::default()) {
                prop_assert!(c.path.starts_with('/'));
                let again = canonicalize(
                    &Method::GET,
                    c.upstream_target().as_bytes(),
                    None,
                    &ClientHeaders::scan(&h),
                    RequestRules::default(),
                )
                .map(|c2| c2.upstream_target());
                prop_assert_eq!(again, Ok(c.upstream_target()));
            }
        }

        #[test]
        fn arbitrary_content_lengths_never_panic(values in proptest::collection::vec("[0-9, \t+-]{0,12}", 0..3)) {
            let mut h = HeaderMap::new();
            for v in &values {
                if let Ok(v) = v.parse() {
                    h.append(CONTENT_LENGTH, v);
                }
            }
            let _ = declared_content_length(&ClientHeaders::scan(&h));
        }
    }
}
