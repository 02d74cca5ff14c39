//! Reading header values.

use actix_web::http::header::{AsHeaderName, HeaderMap};

/// The value of the header `name` as text; `None` when it is absent or not visible ASCII,
/// which every reader here treats alike.
pub(crate) fn header_text(headers: &HeaderMap, name: impl AsHeaderName) -> Option<&str> {
    headers.get(name)?.to_str().ok()
}
