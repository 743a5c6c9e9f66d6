//! The OpenAPI 3.1 description of the admin listener, kept in the repo as `openapi.json` next
//! to this file and served at `GET /admin/v1/openapi.json`. A unit test ties it to the routes
//! `admin.rs` (and any file under `admin/`) dispatches, so neither can grow an endpoint the
//! other lacks.

/// The document, as committed.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

#[cfg(test)]
mod tests {
    use super::OPENAPI_JSON;
    use std::collections::BTreeSet;

    const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

    /// `(METHOD, /path/{param})` of every operation in the document.
    fn spec_operations() -> BTreeSet<(String, String)> {
        let spec: serde_json::Value = serde_json::from_str(OPENAPI_JSON).expect("openapi.json");
        let mut ops = BTreeSet::new();
        for (path, item) in spec["paths"].as_object().expect("paths object") {
            for m in METHODS {
                if item.get(m).is_some() {
                    ops.insert((m.to_ascii_uppercase(), path.clone()));
                }
            }
        }
        ops
    }

    /// `(METHOD, /path/{param})` of every match arm of the admin dispatcher, read from its
    /// source: `(&Method::GET, "/metrics")` and `(&Method::GET, ["admin", "v1", "tenants", id])`
    /// (a binding becomes `{id}`).
    fn code_routes(source: &str) -> BTreeSet<(String, String)> {
        let mut routes = BTreeSet::new();
        for arm in source.split("(&Method::").skip(1) {
            let Some((method, rest)) = arm.split_once(',') else {
                continue;
            };
            let rest = rest.trim_start();
            let path = if let Some(lit) = rest.strip_prefix('"') {
                match lit.split_once('"') {
                    Some((p, _)) => p.to_string(),
                    None => continue,
                }
            } else if let Some(slice) = rest.strip_prefix('[') {
                let Some((inner, _)) = slice.split_once(']') else {
                    continue;
                };
                let segments: Vec<String> = inner
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| match s.strip_prefix('"') {
                        Some(lit) => lit.trim_end_matches('"').to_string(),
                        None => format!("{{{s}}}"),
                    })
                    .collect();
                format!("/{}", segments.join("/"))
            } else {
                continue;
            };
            routes.insert((method.trim().to_string(), path));
        }
        routes
    }

    /// `src/admin.rs` and every file under `src/admin/` but this one (whose tests quote
    /// patterns), so a route moved into a submodule is still seen.
    fn dispatcher_sources() -> String {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut text = std::fs::read_to_string(root.join("admin.rs")).expect("src/admin.rs");
        let mut stack = vec![root.join("admin")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("read src/admin") {
                let path = entry.expect("dir entry").path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs")
                    && path.file_name().is_some_and(|n| n != "openapi.rs")
                {
                    text.push_str(&std::fs::read_to_string(&path).expect("read source"));
                }
            }
        }
        text
    }

    #[test]
    fn the_document_and_the_dispatcher_have_the_same_operations() {
        let code = code_routes(&dispatcher_sources());
        let spec = spec_operations();
        let missing_in_spec: Vec<_> = code.difference(&spec).collect();
        let missing_in_code: Vec<_> = spec.difference(&code).collect();
        assert!(
            missing_in_spec.is_empty() && missing_in_code.is_empty(),
            "routes without an OpenAPI operation: {missing_in_spec:?}\n\
             OpenAPI operations without a route: {missing_in_code:?}"
        );
        assert!(
            code.len() >= 15,
            "route parser found too few routes: {code:?}"
        );
    }

    #[test]
    fn the_route_reader_sees_literal_and_slice_patterns() {
        let src = r#"
            (&Method::GET, "/metrics") => x,
            (&Method::POST, ["admin", "v1", "domains", domain, "verify"]) => y,
            (&Method::PATCH, [ "admin","v1", "tenants", id ]) => z,
        "#;
        let got: Vec<_> = code_routes(src).into_iter().collect();
        let want = [
            ("GET", "/metrics"),
            ("PATCH", "/admin/v1/tenants/{id}"),
            ("POST", "/admin/v1/domains/{domain}/verify"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn every_operation_is_described_and_documents_its_auth_failure() {
        let spec: serde_json::Value = serde_json::from_str(OPENAPI_JSON).expect("openapi.json");
        assert_eq!(spec["openapi"], "3.1.0");
        let mut ids = BTreeSet::new();
        for (path, item) in spec["paths"].as_object().expect("paths") {
            for m in METHODS {
                let Some(op) = item.get(m) else { continue };
                let id = op["operationId"].as_str().expect("operationId");
                assert!(ids.insert(id.to_string()), "duplicate operationId {id}");
                assert!(op["summary"].is_string(), "{m} {path}: summary");
                let open = op
                    .get("security")
                    .is_some_and(|s| s == &serde_json::json!([]));
                let responses = op["responses"].as_object().expect("responses");
                assert!(
                    responses.keys().any(|k| k.starts_with('2')),
                    "{m} {path}: no success response"
                );
                assert_eq!(
                    responses.contains_key("401"),
                    !open,
                    "{m} {path}: a token-protected operation documents 401, an open one does not"
                );
            }
        }
    }
}
