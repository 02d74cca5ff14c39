//! The checks every put goes through, whichever backend: declared type against key and
//! bytes, size against the limit, length against the announced one, and a SHA-256 of
//! everything that passes.

use std::collections::VecDeque;

use bytes::Bytes;
#[cfg(feature = "s3")]
use bytes::BytesMut;
use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::error::AssetError;
use crate::keys::ObjectKey;
use crate::limits::SizeLimits;
use crate::media::{MediaType, SNIFF_LEN};
use crate::store::ByteStream;

/// A checked upload, read chunk by chunk or part by part.
pub(crate) struct Intake {
    key: ObjectKey,
    media: MediaType,
    limit: u64,
    size_hint: Option<u64>,
    source: Option<ByteStream>,
    queued: VecDeque<Bytes>,
    sniffed: bool,
    received: u64,
    hasher: Sha256,
}

/// What passed through an [`Intake`].
pub(crate) struct IntakeSummary {
    pub(crate) size: u64,
    pub(crate) checksum: String,
}

impl Intake {
    /// Starts an upload of `source` to `key`, failing at once on a bad type or an announced
    /// size above the limit.
    pub(crate) fn new(
        key: &ObjectKey,
        content_type: &str,
        limits: &SizeLimits,
        size_hint: Option<u64>,
        source: ByteStream,
    ) -> Result<Self, AssetError> {
        let media = MediaType::from_mime(content_type)?;
        key.check_media(media)?;
        let limit = limits.for_key(key);
        if let Some(hint) = size_hint
            && hint > limit
        {
            return Err(AssetError::TooLarge {
                key: key.to_string(),
                limit,
            });
        }
        Ok(Self {
            key: key.clone(),
            media,
            limit,
            size_hint,
            source: Some(source),
            queued: VecDeque::new(),
            sniffed: false,
            received: 0,
            hasher: Sha256::new(),
        })
    }

    /// An intake over bytes already in memory.
    pub(crate) fn from_bytes(
        key: &ObjectKey,
        content_type: &str,
        limits: &SizeLimits,
        bytes: Bytes,
    ) -> Result<Self, AssetError> {
        let len = bytes.len() as u64;
        let source = futures::stream::once(async move { Ok(bytes) }).boxed();
        Self::new(key, content_type, limits, Some(len), source)
    }

    /// The canonical MIME type of the upload.
    pub(crate) fn mime(&self) -> &'static str {
        self.media.mime()
    }

    /// The next checked chunk, or `None` at the end.
    pub(crate) async fn next_chunk(&mut self) -> Result<Option<Bytes>, AssetError> {
        if !self.sniffed {
            self.sniff().await?;
        }
        let chunk = match self.queued.pop_front() {
            Some(chunk) => chunk,
            None => match self.pull().await? {
                Some(chunk) => chunk,
                None => {
                    self.check_end()?;
                    return Ok(None);
                }
            },
        };
        Ok(Some(chunk))
    }

    /// The next `size` bytes (fewer only at the end), or `None` at the end. A part that lies
    /// inside one received chunk is not copied.
    #[cfg(feature = "s3")]
    pub(crate) async fn next_part(&mut self, size: usize) -> Result<Option<Bytes>, AssetError> {
        let mut part: Option<BytesMut> = None;
        loop {
            let have = part.as_ref().map_or(0, BytesMut::len);
            if have == size {
                break;
            }
            let Some(mut chunk) = self.next_chunk().await? else {
                break;
            };
            let wanted = size - have;
            if chunk.len() > wanted {
                let rest = chunk.split_off(wanted);
                self.queued.push_front(rest);
            }
            match part.as_mut() {
                None if chunk.len() == size => return Ok(Some(chunk)),
                None => match self.next_chunk().await? {
                    // The whole rest fitted in one chunk: no copy.
                    None => return Ok(Some(chunk)),
                    Some(following) => {
                        self.queued.push_front(following);
                        // With a known length, never reserve more than the object needs.
                        let capacity = self
                            .size_hint
                            .map_or(size, |h| size.min(usize::try_from(h).unwrap_or(size)));
                        let mut buf = BytesMut::with_capacity(capacity);
                        buf.extend_from_slice(&chunk);
                        part = Some(buf);
                    }
                },
                Some(buf) => buf.extend_from_slice(&chunk),
            }
        }
        Ok(part.map(BytesMut::freeze))
    }

    /// Whether the upload has no more bytes.
    #[cfg(feature = "s3")]
    pub(crate) async fn at_end(&mut self) -> Result<bool, AssetError> {
        match self.next_chunk().await? {
            Some(chunk) => {
                self.queued.push_front(chunk);
                Ok(false)
            }
            None => Ok(true),
        }
    }

    /// Puts bytes back in front of the upload (they were already counted and checked).
    #[cfg(feature = "s3")]
    pub(crate) fn unread(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.queued.push_front(bytes);
        }
    }

    /// Length and checksum; call after the last chunk was read.
    pub(crate) fn finish(self) -> IntakeSummary {
        IntakeSummary {
            size: self.received,
            checksum: format!("sha256:{}", hex::encode(self.hasher.finalize())),
        }
    }

    /// Reads until enough bytes are held to recognise the content, then checks them.
    async fn sniff(&mut self) -> Result<(), AssetError> {
        let mut held = 0;
        while held < SNIFF_LEN {
            match self.pull().await? {
                Some(chunk) => {
                    held += chunk.len();
                    self.queued.push_back(chunk);
                }
                None => break,
            }
        }
        let mut head = Vec::with_capacity(held.min(SNIFF_LEN));
        for chunk in &self.queued {
            let take = (SNIFF_LEN - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
            if head.len() == SNIFF_LEN {
                break;
            }
        }
        self.media.check_content(&head)?;
        self.sniffed = true;
        Ok(())
    }

    /// The next chunk from the source, counted, limited and hashed.
    async fn pull(&mut self) -> Result<Option<Bytes>, AssetError> {
        let Some(source) = self.source.as_mut() else {
            return Ok(None);
        };
        loop {
            match source.next().await {
                None => {
                    self.source = None;
                    return Ok(None);
                }
                Some(Err(e)) => return Err(AssetError::Input(e)),
                Some(Ok(chunk)) if chunk.is_empty() => {}
                Some(Ok(chunk)) => {
                    self.received += chunk.len() as u64;
                    if self.received > self.limit {
                        return Err(AssetError::TooLarge {
                            key: self.key.to_string(),
                            limit: self.limit,
                        });
                    }
                    if let Some(hint) = self.size_hint
                        && self.received > hint
                    {
                        return Err(self.length_mismatch(hint));
                    }
                    self.hasher.update(&chunk);
                    return Ok(Some(chunk));
                }
            }
        }
    }

    fn check_end(&self) -> Result<(), AssetError> {
        match self.size_hint {
            Some(hint) if hint != self.received => Err(self.length_mismatch(hint)),
            _ => Ok(()),
        }
    }

    fn length_mismatch(&self, hint: u64) -> AssetError {
        AssetError::InvalidRequest(format!(
            "upload to {} announced {hint} bytes but sent {}{}",
            self.key,
            self.received,
            if self.received > hint { " or more" } else { "" }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> ObjectKey {
        ObjectKey::parse(s).unwrap()
    }

    fn chunks(parts: Vec<&'static [u8]>) -> ByteStream {
        futures::stream::iter(parts.into_iter().map(|p| Ok(Bytes::from_static(p)))).boxed()
    }

    #[tokio::test]
    async fn splits_into_exact_parts_across_chunk_boundaries() {
        let source = chunks(vec![b"{\"a\":", b"1234567", b"", b"89}"]);
        let limits = SizeLimits::default();
        let mut intake =
            Intake::new(&key("x/y.json"), "application/json", &limits, None, source).unwrap();
        let mut parts = Vec::new();
        while let Some(p) = intake.next_part(4).await.unwrap() {
            parts.push(p);
        }
        assert_eq!(
            parts,
            vec![
                Bytes::from_static(b"{\"a\""),
                Bytes::from_static(b":123"),
                Bytes::from_static(b"4567"),
                Bytes::from_static(b"89}")
            ]
        );
        let summary = intake.finish();
        assert_eq!(summary.size, 15);
        assert_eq!(
            summary.checksum,
            format!(
                "sha256:{}",
                hex::encode(Sha256::digest(b"{\"a\":123456789}"))
            )
        );
    }

    #[tokio::test]
    async fn stops_at_the_limit_and_at_a_wrong_length() {
        let limits = SizeLimits::default().with_other(4);
        let mut intake = Intake::new(
            &key("x/y.json"),
            "application/json",
            &limits,
            None,
            chunks(vec![b"[1,", b"2]"]),
        )
        .unwrap();
        assert!(matches!(
            intake.next_chunk().await,
            Err(AssetError::TooLarge { limit: 4, .. })
        ));
        assert!(matches!(
            Intake::new(
                &key("x/y.json"),
                "application/json",
                &limits,
                Some(5),
                chunks(vec![])
            ),
            Err(AssetError::TooLarge { .. })
        ));
        let limits = SizeLimits::default();
        let mut intake = Intake::new(
            &key("x/y.json"),
            "application/json",
            &limits,
            Some(10),
            chunks(vec![b"[1,2]"]),
        )
        .unwrap();
        let mut result = Ok(None);
        for _ in 0..3 {
            result = intake.next_chunk().await;
            if !matches!(result, Ok(Some(_))) {
                break;
            }
        }
        let err = result.unwrap_err().to_string();
        assert!(err.contains("announced 10 bytes but sent 5"), "{err}");
    }

    #[tokio::test]
    async fn refuses_a_mismatch_before_yielding_anything() {
        let limits = SizeLimits::default();
        let mut intake = Intake::new(
            &key("x/y.png"),
            "image/png",
            &limits,
            None,
            chunks(vec![b"GIF89a", b"...."]),
        )
        .unwrap();
        let err = intake.next_chunk().await.unwrap_err();
        assert!(err.to_string().contains("image/gif"), "{err}");
    }
}
