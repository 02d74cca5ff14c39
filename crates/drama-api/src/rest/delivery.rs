//! What a `GET` or `HEAD` of an object answers, as RFC 9110 describes it: one byte range
//! (`206`), a range past the end (`416`), validators (`ETag`, `Last-Modified`), conditional
//! requests (`If-None-Match` → `304`, a stale `If-Range` → the whole object) and, for signed
//! URLs, how long the answer may be cached.
//!
//! Players seek with ranges and revalidate with the validators; link checkers and CDNs ask
//! with `HEAD`, which answers the headers a `GET` would, from the object's metadata alone.

use std::time::SystemTime;

use actix_web::http::Method;
use actix_web::http::header::{self, ByteRangeSpec, HttpDate, Range};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use drama_app::App;
use drama_app::media::{ByteRange, ContentRange, ObjectInfo, ObjectKey, ObjectRead};

use super::streaming::object_head;
use crate::error::{ApiError, ErrorCode};
use crate::headers::header_text;

/// What a `Range` header asks for, read by actix-web's typed `Range` header. Only single
/// ranges are honoured; a header this does not understand (several ranges, another unit,
/// nonsense, a last byte before the first) is ignored and the whole object is served, as
/// RFC 9110 allows (several ranges would need a `multipart/byteranges` answer, which no player
/// asks for).
pub(super) fn parse_range(value: &str) -> Option<ByteRangeSpec> {
    // actix drops the members of a list it cannot read and keeps the rest; a list is ignored
    // as a whole here, so a half-understood header never narrows the answer.
    if value.contains(',') {
        return None;
    }
    match tight(value).parse::<Range>().ok()? {
        Range::Bytes(specs) => match <[ByteRangeSpec; 1]>::try_from(specs) {
            Ok([spec]) => Some(spec),
            Err(_) => None,
        },
        Range::Unregistered(..) => None,
    }
}

/// `value` without the spaces around its separators (`bytes= 5 - 9` is sent by some clients;
/// the typed header reads only `bytes=5-9`). Spaces inside a number stay and spoil it.
fn tight(value: &str) -> String {
    value
        .split_inclusive(['=', '-'])
        .map(|piece| {
            let piece = piece.trim();
            match piece.strip_suffix(['=', '-']) {
                Some(head) => format!("{}{}", head.trim_end(), &piece[head.len()..]),
                None => piece.to_owned(),
            }
        })
        .collect()
}

/// The validators of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Validators {
    /// A strong tag from the bytes' digest (or the store's own tag); a weak one from size and
    /// modification time when neither is known (two writes within a second may share it).
    pub(super) etag: Option<String>,
    pub(super) last_modified: Option<DateTime<Utc>>,
}

impl Validators {
    pub(super) fn of(info: &ObjectInfo) -> Self {
        let digest = info
            .checksum
            .as_deref()
            .and_then(|c| c.strip_prefix("sha256:"))
            .filter(|hex| hex.chars().all(|c| c.is_ascii_hexdigit()));
        let etag = match (digest, info.etag.as_deref()) {
            (Some(hex), _) => Some(format!("\"{hex}\"")),
            (None, Some(tag)) if tag.starts_with('"') || tag.starts_with("W/\"") => {
                Some(tag.to_owned())
            }
            (None, Some(tag)) => Some(format!("\"{tag}\"")),
            (None, None) => info
                .last_modified
                .map(|at| format!("W/\"{:x}-{:x}\"", info.size, at.timestamp())),
        };
        Self {
            etag,
            last_modified: info.last_modified,
        }
    }

    fn apply(&self, response: &mut HttpResponseBuilder) {
        if let Some(etag) = &self.etag {
            response.insert_header((header::ETAG, etag.clone()));
        }
        if let Some(at) = self.last_modified {
            response.insert_header((header::LAST_MODIFIED, http_date(at)));
        }
    }

    /// `If-None-Match`: whether one of the listed tags matches ours (weak comparison), or
    /// the list is `*`.
    fn none_match_fails(&self, value: &str) -> bool {
        if value.trim() == "*" {
            return true;
        }
        let Some(ours) = &self.etag else {
            return false;
        };
        value
            .split(',')
            .map(str::trim)
            .any(|tag| opaque(tag) == opaque(ours))
    }

    /// `If-Range`: whether the range may be served (the client's copy is still this object).
    /// Entity tags compare strongly (a weak tag never matches); a date must equal
    /// `Last-Modified` to the second.
    fn range_still_applies(&self, value: &str) -> bool {
        let value = value.trim();
        if value.starts_with('"') || value.starts_with("W/") {
            return self.etag.as_deref().is_some_and(|ours| {
                !ours.starts_with("W/") && !value.starts_with("W/") && ours == value
            });
        }
        let (Ok(date), Some(ours)) = (value.parse::<HttpDate>(), self.last_modified) else {
            return false;
        };
        let theirs: DateTime<Utc> = SystemTime::from(date).into();
        theirs.timestamp() == ours.timestamp()
    }
}

/// An entity tag without its weakness marker.
fn opaque(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

fn http_date(at: DateTime<Utc>) -> String {
    HttpDate::from(SystemTime::from(at)).to_string()
}

/// How an object is asked for.
pub(super) struct Delivery<'a> {
    pub(super) app: &'a App,
    pub(super) key: &'a ObjectKey,
    /// The expiry of the signed URL the request came with: the answer may be kept privately
    /// until then, and no longer (the URL itself stops working).
    pub(super) signed_until: Option<DateTime<Utc>>,
}

impl Delivery<'_> {
    /// The answer to `req` (a `GET` or `HEAD`).
    pub(super) async fn answer(&self, req: &HttpRequest) -> Result<HttpResponse, ApiError> {
        let head_only = req.method() == Method::HEAD;
        let text = |name| header_text(req.headers(), name);
        let mut wanted = text(header::RANGE).and_then(parse_range);
        let if_none_match = text(header::IF_NONE_MATCH);
        let if_range = text(header::IF_RANGE).filter(|_| wanted.is_some());
        // The metadata is read first only when the answer depends on it before the body.
        let needs_info = head_only
            || if_none_match.is_some()
            || if_range.is_some()
            || matches!(wanted, Some(ByteRangeSpec::Last(_)));
        let info = if needs_info {
            Some(self.app.object_info(self.key).await?)
        } else {
            None
        };
        if let Some(info) = &info {
            let validators = Validators::of(info);
            if if_none_match.is_some_and(|v| validators.none_match_fails(v)) {
                let mut response = HttpResponse::NotModified();
                validators.apply(&mut response);
                self.cache(&mut response);
                return Ok(response.finish());
            }
            if if_range.is_some_and(|v| !validators.range_still_applies(v)) {
                wanted = None;
            }
        }
        let range = match wanted {
            None => None,
            Some(ByteRangeSpec::FromTo(start, end)) => Some(ByteRange {
                start,
                end: Some(end),
            }),
            Some(ByteRangeSpec::From(start)) => Some(ByteRange { start, end: None }),
            // A suffix resolves against the size read above; the store checks the others.
            Some(suffix @ ByteRangeSpec::Last(_)) => {
                let size = info.as_ref().map_or(0, |i| i.size);
                match suffix.to_satisfiable_range(size) {
                    Some((start, _)) => Some(ByteRange { start, end: None }),
                    None => return Ok(unsatisfiable(size)),
                }
            }
        };
        if let (true, Some(info)) = (head_only, &info) {
            return Ok(self.headers_only(info, range));
        }
        let object = match self.app.read_object(self.key, range).await? {
            ObjectRead::Found(object) => object,
            ObjectRead::RangeNotSatisfiable { size } => return Ok(unsatisfiable(size)),
        };
        let mut response = object_head(&object.info, object.range);
        Validators::of(&object.info).apply(&mut response);
        self.cache(&mut response);
        let length = object.body_len();
        Ok(response
            .no_chunking(length)
            .streaming(futures::StreamExt::map(object.body, |chunk| {
                chunk.map_err(actix_web::error::ErrorInternalServerError)
            })))
    }

    /// `HEAD`: what a `GET` would answer, with the length it would send and no body.
    fn headers_only(&self, info: &ObjectInfo, range: Option<ByteRange>) -> HttpResponse {
        let served = match range.map(|r| r.resolve(self.key, info.size)) {
            None => None,
            Some(Ok((start, end))) => Some(ContentRange {
                start,
                end,
                total: info.size,
            }),
            Some(Err(_)) => return unsatisfiable(info.size),
        };
        let length = served.map_or(info.size, |r| r.end - r.start + 1);
        let mut response = object_head(info, served);
        Validators::of(info).apply(&mut response);
        self.cache(&mut response);
        // The length is declared and no byte follows: HTTP sends no body for HEAD.
        response
            .no_chunking(length)
            .streaming(futures::stream::empty::<Result<Bytes, actix_web::Error>>())
    }

    fn cache(&self, response: &mut HttpResponseBuilder) {
        if let Some(until) = self.signed_until {
            let left = (until - Utc::now()).num_seconds().max(0);
            response.insert_header((header::CACHE_CONTROL, format!("private, max-age={left}")));
        }
    }
}

/// `416` with `Content-Range: bytes */{size}`.
fn unsatisfiable(size: u64) -> HttpResponse {
    let refusal = ApiError::message(
        ErrorCode::RangeNotSatisfiable,
        format!("Range not satisfiable: the object has {size} bytes"),
    );
    let mut response = actix_web::ResponseError::error_response(&refusal);
    let headers = response.headers_mut();
    if let Ok(range) = header::HeaderValue::from_str(&format!("bytes */{size}")) {
        headers.insert(header::CONTENT_RANGE, range);
    }
    headers.insert(
        header::ACCEPT_RANGES,
        header::HeaderValue::from_static("bytes"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_headers_are_read_as_rfc_9110_says() {
        let from_to = |start, end| Some(ByteRangeSpec::FromTo(start, end));
        assert_eq!(parse_range("bytes=0-99"), from_to(0, 99));
        assert_eq!(parse_range("bytes=100-"), Some(ByteRangeSpec::From(100)));
        assert_eq!(parse_range("bytes=-500"), Some(ByteRangeSpec::Last(500)));
        assert_eq!(parse_range(" bytes= 5 - 9 "), from_to(5, 9));
        for ignored in [
            "bytes=9-5",
            "bytes=0-1,4-5",
            "items=0-1",
            "bytes=a-b",
            "bytes=-",
            "0-1",
        ] {
            assert_eq!(parse_range(ignored), None, "{ignored}");
        }
    }

    fn info(checksum: Option<&str>, etag: Option<&str>, modified: Option<i64>) -> ObjectInfo {
        ObjectInfo {
            key: ObjectKey::parse("u/d/covers/c.png").unwrap(),
            size: 300,
            content_type: "image/png".to_owned(),
            checksum: checksum.map(str::to_owned),
            etag: etag.map(str::to_owned),
            last_modified: modified.and_then(|s| DateTime::from_timestamp(s, 0)),
        }
    }

    #[test]
    fn validators_come_from_the_digest_then_the_store_then_size_and_time() {
        let digest = Validators::of(&info(Some("sha256:ab12"), Some("\"s3\""), Some(1)));
        assert_eq!(digest.etag.as_deref(), Some("\"ab12\""));
        let store = Validators::of(&info(None, Some("9f"), None));
        assert_eq!(store.etag.as_deref(), Some("\"9f\""));
        let weak = Validators::of(&info(None, None, Some(0x6000_0000)));
        assert_eq!(weak.etag.as_deref(), Some("W/\"12c-60000000\""));
        assert_eq!(Validators::of(&info(None, None, None)).etag, None);
    }

    #[test]
    fn conditions_compare_as_rfc_9110_says() {
        let strong = Validators::of(&info(Some("sha256:ab12"), None, Some(1_700_000_000)));
        assert!(strong.none_match_fails("\"ab12\""));
        assert!(
            strong.none_match_fails("\"x\", W/\"ab12\""),
            "weak comparison"
        );
        assert!(strong.none_match_fails("*"));
        assert!(!strong.none_match_fails("\"ab13\""));
        assert!(strong.range_still_applies("\"ab12\""));
        assert!(
            !strong.range_still_applies("W/\"ab12\""),
            "strong comparison"
        );
        assert!(!strong.range_still_applies("\"stale\""));
        let date = http_date(DateTime::from_timestamp(1_700_000_000, 0).unwrap());
        assert!(strong.range_still_applies(&date));
        let older = http_date(DateTime::from_timestamp(1_600_000_000, 0).unwrap());
        assert!(!strong.range_still_applies(&older));
        assert!(!strong.range_still_applies("not a date"));
        let weak = Validators::of(&info(None, None, Some(1_700_000_000)));
        let tag = weak.etag.clone().unwrap();
        assert!(
            !weak.range_still_applies(&tag),
            "a weak tag never validates a range"
        );
        assert!(weak.none_match_fails(&tag));
    }
}
