//! The NHS.UK frontend's styles and icons, served from the binary (see
//! `assets/README.md` for the version, the licence and the one change made).

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// nhsuk-frontend 10.6.1, `dist/nhsuk/nhsuk-frontend.min.css`, its web fonts removed.
const STYLESHEET: &str = include_str!("../assets/nhsuk-frontend.min.css");

/// The icons the stylesheet refers to, by file name.
const IMAGES: [(&str, &str); 4] = [
    ("nhsuk-icon-arrow-down.svg", include_str!("../assets/images/nhsuk-icon-arrow-down.svg")),
    ("nhsuk-icon-arrow-up-down.svg", include_str!("../assets/images/nhsuk-icon-arrow-up-down.svg")),
    ("nhsuk-icon-arrow-up.svg", include_str!("../assets/images/nhsuk-icon-arrow-up.svg")),
    ("nhsuk-icon-cross.svg", include_str!("../assets/images/nhsuk-icon-cross.svg")),
];

/// The stylesheet, cached by the browser for a day.
pub(crate) async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=86400")], STYLESHEET)
        .into_response()
}

/// One icon, or 404.
pub(crate) async fn image(Path(name): Path<String>) -> Response {
    match IMAGES.iter().find(|(file, _)| *file == name) {
        Some((_, svg)) => {
            ([(header::CONTENT_TYPE, "image/svg+xml"), (header::CACHE_CONTROL, "max-age=86400")], *svg).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
