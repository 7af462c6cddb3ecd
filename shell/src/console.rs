//! The live console page at `/`: its files, and the vendored official Socket.IO browser client and
//! uPlot charting library (`console/vendor/`), compiled into the binary (no CDN, no build step). It
//! holds no secret and no state; it signs in with a token the user pastes, like any client.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Every file of the page: where it is served, its type, and its text.
const FILES: [(&str, &str, &str); 7] = [
    ("/", "text/html; charset=utf-8", include_str!("console/index.html")),
    ("/console.js", JS, include_str!("console/console.js")),
    ("/console.css", CSS, include_str!("console/console.css")),
    ("/charts.js", JS, include_str!("console/charts.js")),
    ("/vendor/socket.io.min.js", JS, include_str!("console/vendor/socket.io.min.js")),
    ("/vendor/uPlot.iife.min.js", JS, include_str!("console/vendor/uPlot.iife.min.js")),
    ("/vendor/uPlot.min.css", CSS, include_str!("console/vendor/uPlot.min.css")),
];

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    FILES.iter().fold(Router::new(), |router, &(path, content_type, text)| {
        router.route(
            path,
            get(move || async move { ([(header::CONTENT_TYPE, content_type)], text).into_response() }),
        )
    })
}
