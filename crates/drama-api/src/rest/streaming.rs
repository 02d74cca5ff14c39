//! Moving bytes without holding them: uploads spooled to disk, objects streamed out.

use actix_web::http::header;
use actix_web::{HttpResponse, HttpResponseBuilder};
use bytes::{Bytes, BytesMut};
use drama_app::media::{ByteStream, ContentRange, ObjectInfo, ObjectStream};
use futures::StreamExt as _;
use tokio::io::AsyncWriteExt as _;

use crate::error::{ApiError, ErrorCode};

/// An upload written to a temporary file (multipart fields may arrive in any order, so the
/// file cannot always be forwarded while the form is read). The file is removed when the
/// value, or the stream made from it, is dropped.
pub(crate) struct Spooled {
    file: tempfile::TempPath,
    /// Bytes written.
    pub(crate) len: u64,
}

impl Spooled {
    /// The file as a byte stream; the file disappears once the stream is dropped.
    pub(crate) fn into_stream(self) -> ByteStream {
        let guard = self.file;
        async_stream::try_stream! {
            let file = tokio::fs::File::open(&guard).await?;
            let mut chunks = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
            while let Some(chunk) = chunks.next().await {
                yield chunk?;
            }
            drop(guard);
        }
        .boxed()
    }
}

/// Most parts in one multipart form: the few the server reads and a few a client adds.
pub(crate) const FORM_PARTS: usize = 16;

/// Counts a multipart form's parts and bytes while they stream in, so a form costs no more
/// than its bounds whatever a client sends: every form of the API reads its parts through
/// one of these.
pub(crate) struct FormBudget {
    parts: usize,
    total: usize,
    max_total: usize,
}

impl FormBudget {
    /// A form of at most [`FORM_PARTS`] parts and `max_total` bytes read through
    /// [`read`](Self::read).
    pub(crate) fn new(max_total: usize) -> Self {
        Self {
            parts: 0,
            total: 0,
            max_total,
        }
    }

    /// Counts the next part: 413 past [`FORM_PARTS`].
    pub(crate) fn part(&mut self) -> Result<(), ApiError> {
        self.parts += 1;
        if self.parts > FORM_PARTS {
            return Err(ApiError::message(
                ErrorCode::TooLarge,
                format!("the form has more than {FORM_PARTS} parts"),
            ));
        }
        Ok(())
    }

    /// Reads part `name` whole, refusing it (413 naming it) past `limit` bytes and the form
    /// (413) past its total; the bytes are kept only when `keep`, so a part the server does
    /// not read is counted but costs no memory.
    pub(crate) async fn read(
        &mut self,
        field: &mut actix_multipart::Field,
        name: &str,
        limit: usize,
        keep: bool,
    ) -> Result<BytesMut, ApiError> {
        let mut value = BytesMut::new();
        let mut size = 0usize;
        while let Some(chunk) = field.next().await {
            let chunk = chunk
                .map_err(|e| ApiError::bad_request(format!("malformed multipart body: {e}")))?;
            size += chunk.len();
            self.total += chunk.len();
            if size > limit {
                return Err(ApiError::message(
                    ErrorCode::TooLarge,
                    format!("{name} is larger than {limit} bytes"),
                ));
            }
            if self.total > self.max_total {
                return Err(ApiError::message(
                    ErrorCode::TooLarge,
                    format!("the form is larger than {} bytes", self.max_total),
                ));
            }
            if keep {
                value.extend_from_slice(&chunk);
            }
        }
        Ok(value)
    }
}

/// Writes a multipart field to a temporary file, refusing it past `limit` bytes.
pub(crate) async fn spool_channel(
    field: &mut actix_multipart::Field,
    limit: u64,
) -> Result<Spooled, ApiError> {
    // The path is removed when `guard` is dropped: when the upload is refused, and when the
    // request is abandoned while it is read.
    let (file, guard) = tempfile::Builder::new()
        .prefix("drama-upload-")
        .tempfile()
        .map_err(|e| ApiError::internal_while("cannot spool the upload", e))?
        .into_parts();
    let mut file = tokio::fs::File::from_std(file);
    let mut len: u64 = 0;
    while let Some(chunk) = field.next().await {
        let chunk: Bytes =
            chunk.map_err(|e| ApiError::bad_request(format!("malformed multipart body: {e}")))?;
        len += chunk.len() as u64;
        if len > limit {
            return Err(ApiError::message(
                ErrorCode::TooLarge,
                format!("The upload is larger than the limit of {limit} bytes"),
            ));
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| ApiError::internal_while("cannot spool the upload", e))?;
    }
    file.flush()
        .await
        .map_err(|e| ApiError::internal_while("cannot spool the upload", e))?;
    Ok(Spooled { file: guard, len })
}

/// The status and headers of an object's answer, without its body: 200, or 206 with
/// `Content-Range` for a range.
pub(crate) fn object_head(info: &ObjectInfo, range: Option<ContentRange>) -> HttpResponseBuilder {
    let mut response = match range {
        Some(range) => {
            let mut r = HttpResponse::PartialContent();
            r.insert_header((
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{}", range.start, range.end, range.total),
            ));
            r
        }
        None => HttpResponse::Ok(),
    };
    response
        .insert_header((header::CONTENT_TYPE, info.content_type.clone()))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header(("X-Content-Type-Options", "nosniff"));
    response
        .extensions_mut()
        .insert(crate::media_links::StoredBytes);
    response
}

/// A streamed 200 (or 206 for a range) with the object's type and length.
pub(crate) fn object_response(object: ObjectStream) -> HttpResponse {
    let length = object.body_len();
    object_head(&object.info, object.range)
        .no_chunking(length)
        .streaming(
            object
                .body
                .map(|chunk| chunk.map_err(actix_web::error::ErrorInternalServerError)),
        )
}
