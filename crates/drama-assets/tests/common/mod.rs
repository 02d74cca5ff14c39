//! Test support: an S3 server (s3s + s3s-fs) inside the test process, with R2's multipart
//! rule enforced, plus media fixtures.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use drama_assets::{S3Options, S3Store, SizeLimits};
#[allow(unused_imports)]
pub use drama_testkit::s3::{ACCESS_KEY, SECRET_KEY};
use drama_testkit::s3::{S3Server, require_signature};
use s3s::access::{S3Access, S3AccessContext};
use s3s::dto::{AbortMultipartUploadInput, CompleteMultipartUploadInput, UploadPartInput};
use s3s::{S3Request, S3Result, s3_error};

pub const BUCKET: &str = "drama-test";

/// What the server saw of multipart uploads.
#[derive(Debug, Default)]
pub struct UploadLog {
    /// Part sizes by upload id, by part number.
    pub parts: HashMap<String, BTreeMap<i32, i64>>,
    /// Upload ids completed.
    pub completed: Vec<String>,
    /// Upload ids aborted.
    pub aborted: Vec<String>,
}

impl UploadLog {
    /// The part sizes, in part order, of the one multipart upload the server has seen.
    pub fn part_sizes_of_the_only_upload(&self) -> Vec<i64> {
        assert_eq!(self.parts.len(), 1, "{self:?}");
        self.parts
            .values()
            .next()
            .unwrap()
            .values()
            .copied()
            .collect()
    }
}

/// Access hook: requires a signature (s3s's default) and enforces R2's rule that every part
/// but the last has the same size and the last is no larger; records what it sees.
#[derive(Clone, Default)]
struct R2Rules {
    log: Arc<Mutex<UploadLog>>,
}

#[async_trait::async_trait]
impl S3Access for R2Rules {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        require_signature(cx)
    }

    async fn upload_part(&self, req: &mut S3Request<UploadPartInput>) -> S3Result<()> {
        let mut log = self.log.lock().unwrap();
        log.parts
            .entry(req.input.upload_id.clone())
            .or_default()
            .insert(
                req.input.part_number,
                req.input.content_length.unwrap_or(-1),
            );
        Ok(())
    }

    async fn complete_multipart_upload(
        &self,
        req: &mut S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<()> {
        let mut log = self.log.lock().unwrap();
        let upload_id = req.input.upload_id.clone();
        let sizes: Vec<i64> = log
            .parts
            .get(&upload_id)
            .map(|p| p.values().copied().collect())
            .unwrap_or_default();
        if let Some((&first, rest)) = sizes.split_first() {
            let (last, middle) = rest.split_last().map_or((first, &[][..]), |(l, m)| (*l, m));
            if middle.iter().any(|&s| s != first) || last > first {
                return Err(s3_error!(
                    InvalidPart,
                    "All non-trailing parts must have the same length"
                ));
            }
        }
        log.completed.push(upload_id);
        Ok(())
    }

    async fn abort_multipart_upload(
        &self,
        req: &mut S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<()> {
        self.log
            .lock()
            .unwrap()
            .aborted
            .push(req.input.upload_id.clone());
        Ok(())
    }
}

/// A running S3 server on 127.0.0.1 with one bucket, R2's multipart rule enforced; stopped when
/// dropped.
pub struct TestS3 {
    pub endpoint: String,
    pub log: Arc<Mutex<UploadLog>>,
    server: S3Server,
}

impl TestS3 {
    pub async fn start() -> Self {
        Self::serve(None).await
    }

    /// A server over an existing data directory (which it does not remove).
    pub async fn start_in(dir: &std::path::Path) -> Self {
        Self::serve(Some(dir)).await
    }

    async fn serve(dir: Option<&std::path::Path>) -> Self {
        let rules = R2Rules::default();
        let log = rules.log.clone();
        let server = S3Server::start_with(BUCKET, dir, rules).await;
        Self {
            endpoint: server.endpoint().to_owned(),
            log,
            server,
        }
    }

    pub fn options(&self, limits: SizeLimits) -> S3Options {
        self.server
            .options(Some("https://assets.example.com"), limits)
    }

    pub fn store(&self, limits: SizeLimits) -> S3Store {
        S3Store::new(self.options(limits)).unwrap()
    }
}

/// Deterministic filler bytes.
pub fn filler(len: usize, seed: u8) -> Vec<u8> {
    let mut state = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8
        })
        .collect()
}

fn with_magic(magic: &[u8], len: usize, seed: u8) -> Bytes {
    let mut v = magic.to_vec();
    v.extend(filler(len.saturating_sub(magic.len()), seed));
    v.truncate(len.max(magic.len()));
    Bytes::from(v)
}

pub fn png(len: usize, seed: u8) -> Bytes {
    with_magic(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", len, seed)
}

pub fn jpeg(len: usize, seed: u8) -> Bytes {
    with_magic(
        &[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F'],
        len,
        seed,
    )
}

pub fn mp4(len: usize, seed: u8) -> Bytes {
    with_magic(b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2", len, seed)
}

pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}
