//! The dashboard's files, served from the binary: one static page (no build
//! step) that reads the REST API and follows `/api/v1/events`, its script
//! and style as files of their own (the page runs under a CSP without
//! inline code), and uPlot (MIT, vendored in `dashboard/vendor/` with its
//! licence) for the charts. The files hold no data: what they show comes
//! through the reads, so every one is open.

use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderName, Method};

use super::access::Routes;
use crate::access::Access;

const HTML: &str = "text/html; charset=utf-8";
const SCRIPT: &str = "text/javascript; charset=utf-8";
const STYLE: &str = "text/css; charset=utf-8";

/// Path, content type, content.
const FILES: [(&str, &str, &str); 8] = [
    ("/", HTML, include_str!("dashboard/index.html")),
    (
        "/dashboard.js",
        SCRIPT,
        include_str!("dashboard/dashboard.js"),
    ),
    ("/device.js", SCRIPT, include_str!("dashboard/device.js")),
    ("/live.js", SCRIPT, include_str!("dashboard/live.js")),
    (
        "/dashboard.css",
        STYLE,
        include_str!("dashboard/dashboard.css"),
    ),
    (
        "/vendor/uplot.min.js",
        SCRIPT,
        include_str!("dashboard/vendor/uplot-1.6.31.min.js"),
    ),
    (
        "/vendor/uplot.min.css",
        STYLE,
        include_str!("dashboard/vendor/uplot-1.6.31.min.css"),
    ),
    (
        "/vendor/uplot-LICENSE",
        "text/plain; charset=utf-8",
        include_str!("dashboard/vendor/uplot-LICENSE"),
    ),
];

/// `routes` with every dashboard file, open.
pub(super) fn routes(routes: Routes) -> Routes {
    FILES
        .iter()
        .fold(routes, |routes, &(path, content_type, content)| {
            routes.add(Method::GET, path, Access::Open, move || async move {
                (
                    [(CONTENT_TYPE, content_type)] as [(HeaderName, &str); 1],
                    content,
                )
            })
        })
}
