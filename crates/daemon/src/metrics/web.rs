//! The status page's static assets, embedded in the binary.
//!
//! Plain HTML, CSS and JavaScript drawing SVG: no framework, no CDN, no build step, so
//! the page works on an air-gapped host and is reviewed like any other source file.
//! The script polls [`/api/status`](super::json::status) and
//! [`/api/history`](super::json::history) and redraws; once it has drawn real data it
//! sets `data-ready="1"` on `<body>` (and `data-points` on each plot), which the
//! browser test waits for.

/// `index.html`.
pub const INDEX_HTML: &str = include_str!("web/index.html");
/// `app.js`.
pub const APP_JS: &str = include_str!("web/app.js");
/// `style.css`.
pub const STYLE_CSS: &str = include_str!("web/style.css");

/// The asset at `path`, with its content type.
pub fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    match path {
        "/" | "/index.html" => Some(("text/html; charset=utf-8", INDEX_HTML)),
        "/app.js" => Some(("text/javascript; charset=utf-8", APP_JS)),
        "/style.css" => Some(("text/css; charset=utf-8", STYLE_CSS)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_references_only_embedded_assets() {
        for reference in ["src=\"/app.js\"", "href=\"/style.css\""] {
            assert!(INDEX_HTML.contains(reference), "{reference}");
        }
        // Nothing from elsewhere: the page must work without Internet access.
        // (The SVG namespace is a name, not a download.)
        for text in [INDEX_HTML, APP_JS, STYLE_CSS] {
            let text = text.replace("http://www.w3.org/2000/svg", "");
            assert!(!text.contains("http://") && !text.contains("https://"));
        }
        assert!(APP_JS.contains("/api/status") && APP_JS.contains("/api/history"));
        assert_eq!(asset("/").unwrap().1, INDEX_HTML);
        assert!(asset("/secret").is_none());
    }
}
