//! The operator console: one static page, its script and its style sheet, embedded in the
//! binary and served at `/ui` on the admin listener. Everything it shows comes from the admin
//! API, fetched by the script with the token the operator typed (kept in `sessionStorage`).
//!
//! The page builds its DOM with `textContent` only, and the Content-Security-Policy allows
//! scripts, styles and requests from the admin listener alone, so a tenant name like
//! `<script>` is text and the console talks to nothing else.

use http::{Response, StatusCode};

const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const STYLE_CSS: &str = include_str!("ui/style.css");

/// Only same-origin scripts, styles and requests; no inline code, no frames, no forms posting
/// elsewhere. Branding logos are shown as URLs, not loaded.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One of the console's files, or `None` for a path that is not one.
pub fn asset(path: &str) -> Option<Response<Vec<u8>>> {
    let (content_type, body) = match path {
        "/ui" => ("text/html; charset=utf-8", INDEX_HTML),
        "/ui/app.js" => ("text/javascript; charset=utf-8", APP_JS),
        "/ui/style.css" => ("text/css; charset=utf-8", STYLE_CSS),
        _ => return None,
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .header(http::header::CACHE_CONTROL, "no-store")
        .header(http::header::CONTENT_SECURITY_POLICY, CSP)
        .header(http::header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(http::header::REFERRER_POLICY, "no-referrer")
        .header(http::header::X_FRAME_OPTIONS, "DENY")
        .body(body.as_bytes().to_vec())
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_files_and_renders_no_html_from_data() {
        assert!(INDEX_HTML.contains(r#"src="/ui/app.js""#));
        assert!(INDEX_HTML.contains(r#"href="/ui/style.css""#));
        for text in [INDEX_HTML, APP_JS, STYLE_CSS] {
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "no remote URL"
            );
        }
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!APP_JS.contains(sink), "app.js must not use {sink}");
        }
        assert!(APP_JS.contains("sessionStorage"));
    }

    #[test]
    fn every_asset_is_served_with_its_type_and_the_policy() {
        for (path, ty) in [
            ("/ui", "text/html"),
            ("/ui/app.js", "text/javascript"),
            ("/ui/style.css", "text/css"),
        ] {
            let resp = asset(path).expect(path);
            let got = resp.headers()[http::header::CONTENT_TYPE]
                .to_str()
                .expect("ascii");
            assert!(got.starts_with(ty), "{path}: {got}");
            assert_eq!(resp.headers()[http::header::CONTENT_SECURITY_POLICY], CSP);
        }
        assert!(asset("/ui/other.js").is_none());
    }
}
