//! The read-only status page `GET /ui`: plain HTML, CSS and JavaScript embedded in the
//! binary (no build step, no external URLs), which polls the JSON endpoints of the admin
//! API every two seconds.
//!
//! The page and its assets are served without the bearer token: they hold no data, and a
//! browser cannot attach a header to a page it navigates to. The script asks for the
//! token when an API call answers 401 (or takes it from the URL fragment, `#token=...`,
//! which browsers never send to the server), keeps it in `sessionStorage` and sends it as
//! `Authorization: Bearer` on every API call, which the token check guards as before.
//!
//! Keys and values are hostile input (any writer chooses them, and member fields arrive
//! by gossip): the script puts data into the page only as text nodes (`textContent`),
//! never as markup, and every response carries a Content-Security-Policy that allows
//! scripts, styles and connections to this origin only, so injected markup could not run
//! a script even if it slipped through.
//!
//! The initial state comes from the URL fragment (`#prefix=app/&key=app/x`), so a state
//! can be linked to, and loaded by a headless browser that cannot click.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// Content-Security-Policy of every UI response: this origin only; no inline scripts or
/// styles, no plugins, no framing, no `<base>` and no form submissions.
pub const UI_CSP: &str = "default-src 'self'; object-src 'none'; base-uri 'none'; \
                          frame-ancestors 'none'; form-action 'none'";

const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const STYLE_CSS: &str = include_str!("ui/style.css");

/// The UI's routes, without state and without the token check (see the module docs).
pub(super) fn routes() -> Router {
    Router::new()
        .route(
            "/ui",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/ui/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/ui/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(UI_CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            // The assets change only with the binary; a restarted node of another
            // version must not run a cached script against its new API.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}
