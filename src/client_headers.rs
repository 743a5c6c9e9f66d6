//! One pass over the client's header list, collecting every header the gateway reads (Host,
//! Content-Length, the credentials, X-Request-Id, X-Tenant-Id) and whether any header is of a
//! kind that is removed before forwarding. The canonical view, authentication and the proxy
//! read this instead of looking each name up in the map (a hash per lookup) or scanning the
//! list again.

use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, HOST};

/// Names only the gateway may send upstream: client copies are removed whatever their case or
/// count (`X-Tenant-*`, `X-Organization-*`, `X-User-*`).
pub fn is_identity_header(name: &str) -> bool {
    name.starts_with("x-tenant-")
        || name.starts_with("x-organization-")
        || name.starts_with("x-user-")
}

/// Client-address and proxy-chain headers, which only a trusted load balancer may send.
pub fn is_forwarding_header(name: &str) -> bool {
    name.starts_with("x-forwarded-") || name == "forwarded" || name == "x-real-ip"
}

/// A header that may come once came more than once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repeated;

/// The values of one header name as the scan met them: the first, and whether more followed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Seen<'r> {
    pub first: Option<&'r HeaderValue>,
    pub repeated: bool,
}

impl<'r> Seen<'r> {
    fn add(&mut self, value: &'r HeaderValue) {
        if self.first.is_some() {
            self.repeated = true;
        } else {
            self.first = Some(value);
        }
    }

    /// The one value, or [`Repeated`].
    pub fn one(&self) -> Result<Option<&'r HeaderValue>, Repeated> {
        if self.repeated {
            Err(Repeated)
        } else {
            Ok(self.first)
        }
    }
}

/// What the gateway reads from the client's headers, from one pass.
#[derive(Debug, Clone, Copy)]
pub struct ClientHeaders<'r> {
    all: &'r HeaderMap,
    pub host: Seen<'r>,
    pub content_length: Seen<'r>,
    pub authorization: Seen<'r>,
    pub api_key: Seen<'r>,
    pub request_id: Seen<'r>,
    pub tenant_id: Seen<'r>,
    /// Some name contains `_`.
    pub underscore: bool,
    /// Some name is of a kind the upstream request may lose (identity `X-Tenant-*`,
    /// `X-Organization-*`, `X-User-*`, forwarding headers, credentials, underscore names), so
    /// the header list has to be checked name by name before forwarding. False for most
    /// requests, which then skip that pass.
    pub removable: bool,
}

impl<'r> ClientHeaders<'r> {
    pub fn scan(all: &'r HeaderMap) -> Self {
        let mut h = Self {
            all,
            host: Seen::default(),
            content_length: Seen::default(),
            authorization: Seen::default(),
            api_key: Seen::default(),
            request_id: Seen::default(),
            tenant_id: Seen::default(),
            underscore: false,
            removable: false,
        };
        for (name, value) in all {
            // Standard names compare by their tag, without touching bytes.
            if name == HOST {
                h.host.add(value);
            } else if name == CONTENT_LENGTH {
                h.content_length.add(value);
            } else if name == AUTHORIZATION {
                h.authorization.add(value);
                h.removable = true;
            } else {
                h.custom(name.as_str(), value);
            }
        }
        h
    }

    fn custom(&mut self, name: &str, value: &'r HeaderValue) {
        if name.as_bytes().contains(&b'_') {
            self.underscore = true;
            self.removable = true;
        }
        match name {
            "x-request-id" => self.request_id.add(value),
            "x-tenant-id" => {
                self.tenant_id.add(value);
                self.removable = true;
            }
            "x-api-key" => {
                self.api_key.add(value);
                self.removable = true;
            }
            _ => self.removable |= is_identity_header(name) || is_forwarding_header(name),
        }
    }

    /// Every value of `name` in order, from what the scan recorded in `seen` (a map lookup
    /// only when the header was repeated).
    pub fn values(
        &self,
        seen: Seen<'r>,
        name: &HeaderName,
    ) -> impl Iterator<Item = &'r HeaderValue> {
        let rest = seen
            .repeated
            .then(|| self.all.get_all(name).into_iter().skip(1));
        seen.first.into_iter().chain(rest.into_iter().flatten())
    }

    /// Every value of `Content-Length`, in order.
    pub fn content_lengths(&self) -> impl Iterator<Item = &'r HeaderValue> {
        self.values(self.content_length, &CONTENT_LENGTH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::forwarding::Sanitize;
    use proptest::prelude::*;

    fn map(pairs: &[(String, Vec<u8>)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (n, v) in pairs {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(n.as_bytes()),
                HeaderValue::from_bytes(v),
            ) {
                m.append(n, v);
            }
        }
        m
    }

    /// What the scan must agree with: the map's own lookups.
    fn check(m: &HeaderMap) -> Result<(), TestCaseError> {
        let h = ClientHeaders::scan(m);
        for (seen, name) in [
            (h.host, HOST),
            (h.content_length, CONTENT_LENGTH),
            (h.authorization, AUTHORIZATION),
            (h.api_key, HeaderName::from_static("x-api-key")),
            (h.request_id, HeaderName::from_static("x-request-id")),
            (h.tenant_id, HeaderName::from_static("x-tenant-id")),
        ] {
            let want: Vec<&HeaderValue> = m.get_all(&name).iter().collect();
            prop_assert_eq!(seen.first, want.first().copied(), "{}", name);
            prop_assert_eq!(seen.repeated, want.len() > 1, "{}", name);
            let got: Vec<&HeaderValue> = h.values(seen, &name).collect();
            prop_assert_eq!(got, want, "{}", name);
        }
        prop_assert_eq!(h.underscore, m.keys().any(|n| n.as_str().contains('_')));
        // `removable` may be true for a header nothing removes, never false for one that is
        // removed under any settings.
        for sanitize in Sanitize::every_setting() {
            if m.keys().any(|n| sanitize.removes(n.as_str())) {
                prop_assert!(h.removable, "{:?} {:?}", sanitize, m);
            }
        }
        Ok(())
    }

    #[test]
    fn names_of_every_kind() {
        let names = [
            "host",
            "Content-Length",
            "authorization",
            "x-api-key",
            "X-Api_Key",
            "x-request-id",
            "x-tenant-id",
            "x-tenant-plan",
            "x-organization-id",
            "x-user-roles",
            "x-forwarded-for",
            "x-real-ip",
            "forwarded",
            "accept",
            "x-other",
            "x_tenant_id",
            "user-agent",
            "x-",
        ];
        for a in names {
            for b in names {
                let m = map(&[
                    (a.to_string(), b"1".to_vec()),
                    (b.to_string(), b"2".to_vec()),
                    (a.to_string(), b"3".to_vec()),
                ]);
                check(&m).unwrap();
            }
        }
        let plain = map(&[
            ("host".into(), b"a".to_vec()),
            ("accept".into(), b"*/*".to_vec()),
        ]);
        assert!(!ClientHeaders::scan(&plain).removable);
    }

    proptest! {
        #[test]
        fn agrees_with_map_lookups(
            pairs in proptest::collection::vec(
                ("(x-|X-)?(tenant-|organization-|user-|forwarded-|api|request|real|Host|content-length|authorization|forwarded|[a-z_\\-]{0,6}){1,3}",
                 proptest::collection::vec(any::<u8>(), 0..6)),
                0..12,
            )
        ) {
            check(&map(&pairs))?;
        }
    }
}
