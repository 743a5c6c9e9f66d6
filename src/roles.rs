//! Roles within a tenant: the set a verified credential carries (a JWT claim, or `roles` on an
//! API key) and the `require_role` rule of a route (any of the listed roles admits).
//!
//! Roles say what a caller may do inside its own tenant; which tenant that is stays the job of
//! [`crate::auth`]. The set is sorted and de-duplicated once, when the token is verified or the
//! config is compiled, and its `X-User-Roles` header value is built at the same time so a
//! request copies nothing.

use http::HeaderValue;

use crate::auth::AuthFailure;

/// Longest role name accepted.
pub const MAX_ROLE_LEN: usize = 64;

/// A role name: 1 to 64 of `A-Z a-z 0-9 - _ . : /` (OAuth scopes such as `notes:write` fit;
/// commas, spaces and quotes, which would change the meaning of the header list, do not).
pub fn is_valid_role(role: &str) -> bool {
    !role.is_empty()
        && role.len() <= MAX_ROLE_LEN
        && role
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/'))
}

/// The verified roles of one credential: sorted, without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roles {
    names: Box<[Box<str>]>,
    /// `admin,editor`: the value of `X-User-Roles`; `None` when there are no roles.
    header: Option<HeaderValue>,
}

impl Roles {
    /// Roles from names already validated (config); invalid names are dropped.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Roles {
        let mut names: Vec<Box<str>> = names
            .into_iter()
            .filter(|n| is_valid_role(n))
            .map(Into::into)
            .collect();
        names.sort_unstable();
        names.dedup();
        let header = if names.is_empty() {
            None
        } else {
            HeaderValue::from_str(&names.join(",")).ok()
        };
        Roles {
            names: names.into_boxed_slice(),
            header,
        }
    }

    /// The roles claim of a token: a list of strings (`["admin","editor"]`), or one string of
    /// space-separated names as OAuth's `scope` is (`"admin editor"`). An absent claim means no
    /// roles; anything else (numbers, nested lists, a name with a comma) refuses the token, so
    /// a malformed claim can never be read as fewer or other roles than the issuer meant.
    pub fn from_claim(claim: Option<&serde_json::Value>) -> Result<Roles, AuthFailure> {
        use serde_json::Value;
        let names: Vec<&str> = match claim {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => s.split_ascii_whitespace().collect(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().ok_or(AuthFailure::TokenInvalidRoles))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(AuthFailure::TokenInvalidRoles),
        };
        if names.iter().any(|n| !is_valid_role(n)) {
            return Err(AuthFailure::TokenInvalidRoles);
        }
        Ok(Roles::new(names))
    }

    pub fn contains(&self, role: &str) -> bool {
        self.names.binary_search_by(|n| (**n).cmp(role)).is_ok()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|n| &**n)
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// `X-User-Roles`: the comma list, `None` without roles.
    pub fn header_value(&self) -> Option<&HeaderValue> {
        self.header.as_ref()
    }
}

/// A route's `require_role`: the caller needs at least one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRequirement {
    any_of: Box<[Box<str>]>,
}

impl RoleRequirement {
    pub fn any_of<'a>(names: impl IntoIterator<Item = &'a str>) -> RoleRequirement {
        RoleRequirement {
            any_of: names.into_iter().map(Into::into).collect(),
        }
    }

    pub fn admits(&self, roles: &Roles) -> bool {
        self.any_of.iter().any(|r| roles.contains(r))
    }

    /// The subject of the 403 text: `admin` (→ `Role 'admin' is required`) or
    /// `admin' or 'owner` (→ `Role 'admin' or 'owner' is required`).
    pub fn describe(&self) -> String {
        self.any_of
            .iter()
            .map(|r| &**r)
            .collect::<Vec<_>>()
            .join("' or '")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn claim_shapes() {
        let table: &[(serde_json::Value, Result<&[&str], AuthFailure>)] = &[
            (json!(["editor", "admin"]), Ok(&["admin", "editor"])),
            (json!("admin editor"), Ok(&["admin", "editor"])),
            (json!("  admin\teditor  admin "), Ok(&["admin", "editor"])),
            (
                json!("notes:read notes:write"),
                Ok(&["notes:read", "notes:write"]),
            ),
            (json!([]), Ok(&[])),
            (json!(""), Ok(&[])),
            (json!(null), Ok(&[])),
            (json!(["admin", 1]), Err(AuthFailure::TokenInvalidRoles)),
            (json!([["admin"]]), Err(AuthFailure::TokenInvalidRoles)),
            (json!({"admin": true}), Err(AuthFailure::TokenInvalidRoles)),
            (json!(true), Err(AuthFailure::TokenInvalidRoles)),
            (json!(7), Err(AuthFailure::TokenInvalidRoles)),
            (json!(["admin,owner"]), Err(AuthFailure::TokenInvalidRoles)),
            (json!(["ad min"]), Err(AuthFailure::TokenInvalidRoles)),
            (json!([""]), Err(AuthFailure::TokenInvalidRoles)),
            (json!(["x\"y"]), Err(AuthFailure::TokenInvalidRoles)),
            (json!("admin,owner"), Err(AuthFailure::TokenInvalidRoles)),
        ];
        for (claim, want) in table {
            let got = Roles::from_claim(Some(claim));
            match (got, want) {
                (Ok(roles), Ok(names)) => {
                    assert_eq!(roles.iter().collect::<Vec<_>>(), *names, "{claim}");
                    let header = roles
                        .header_value()
                        .map(|h| h.to_str().unwrap().to_string());
                    let want_header = (!names.is_empty()).then(|| names.join(","));
                    assert_eq!(header, want_header, "{claim}");
                }
                (Err(e), Err(w)) => assert_eq!(e, *w, "{claim}"),
                (got, want) => panic!("{claim}: got {got:?}, want {want:?}"),
            }
        }
        assert_eq!(Roles::from_claim(None), Ok(Roles::default()));
    }

    #[test]
    fn requirement_is_any_of() {
        let roles = Roles::new(["editor", "viewer"]);
        assert!(RoleRequirement::any_of(["admin", "editor"]).admits(&roles));
        assert!(!RoleRequirement::any_of(["admin"]).admits(&roles));
        assert!(!RoleRequirement::any_of(["admin"]).admits(&Roles::default()));
        // Exact names: a prefix or a different case is another role.
        assert!(!RoleRequirement::any_of(["edit"]).admits(&roles));
        assert!(!RoleRequirement::any_of(["Editor"]).admits(&roles));
        assert_eq!(RoleRequirement::any_of(["admin"]).describe(), "admin");
        assert_eq!(
            RoleRequirement::any_of(["admin", "owner"]).describe(),
            "admin' or 'owner"
        );
    }

    fn role() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_.:/-]{1,12}"
    }

    proptest! {
        /// A list and the same names as one space-separated string are the same roles, sorted
        /// and unique, and every one of them is found.
        #[test]
        fn list_and_string_agree(names in proptest::collection::vec(role(), 0..8)) {
            let from_list = Roles::from_claim(Some(&json!(names))).unwrap();
            let from_str = Roles::from_claim(Some(&json!(names.join(" ")))).unwrap();
            prop_assert_eq!(&from_list, &from_str);
            let got: Vec<&str> = from_list.iter().collect();
            let mut want: Vec<&str> = names.iter().map(String::as_str).collect();
            want.sort_unstable();
            want.dedup();
            prop_assert_eq!(&got, &want);
            for n in &names {
                prop_assert!(from_list.contains(n));
                prop_assert!(RoleRequirement::any_of([n.as_str()]).admits(&from_list));
            }
            // The header lists exactly the roles, so splitting it gives them back.
            let header = from_list.header_value().map(|h| h.to_str().unwrap().to_string());
            let split: Vec<String> = header.iter().flat_map(|h| h.split(',')).map(str::to_string).collect();
            prop_assert_eq!(split, want.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        }

        /// Any name with a character outside the role alphabet refuses the whole claim.
        #[test]
        fn foreign_characters_refuse_the_claim(
            good in role(),
            bad in "[A-Za-z]{0,4}[,\"\\\\;=<> \u{e9}\u{7f}][A-Za-z]{0,4}",
        ) {
            prop_assert_eq!(
                Roles::from_claim(Some(&json!([good, bad]))),
                Err(AuthFailure::TokenInvalidRoles)
            );
        }
    }
}
