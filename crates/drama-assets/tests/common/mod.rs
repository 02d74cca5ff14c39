//! Test support: an S3 server (s3s + s3s-fs) inside the test process, with R2's multipart
//! rule enforced, plus media fixtures.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use drama_assets::{MultipartSettings, S3Options, S3Store, SizeLimits};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::SimpleAuth;
use s3s::dto::{AbortMultipartUploadInput, CompleteMultipartUploadInput, UploadPartInput};
use s3s::service::S3ServiceBuilder;
use s3s::{S3Request, S3Result, s3_error};
use secrecy::SecretString;
use tokio::net::TcpListener;

pub const ACCESS_KEY: &str = "test-access-key";
pub const SECRET_KEY: &str = "test-secret-key-0123456789";
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

/// Access hook: requires a signature (s3s's default) and enforces R2's rule that every part
/// but the last has the same size and the last is no larger; records what it sees.
#[derive(Clone, Default)]
struct R2Rules {
    log: Arc<Mutex<UploadLog>>,
}

#[async_trait::async_trait]
impl S3Access for R2Rules {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        match cx.credentials() {
            Some(_) => Ok(()),
            None => Err(s3_error!(AccessDenied, "Signature is required")),
        }
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

/// A running S3 server on 127.0.0.1 with one bucket; stopped when dropped.
pub struct TestS3 {
    pub endpoint: String,
    pub log: Arc<Mutex<UploadLog>>,
    server: tokio::task::JoinHandle<()>,
    _dir: Option<tempfile::TempDir>,
}

impl TestS3 {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut s3 = Self::start_in(dir.path()).await;
        s3._dir = Some(dir);
        s3
    }

    /// A server over an existing data directory (which it does not remove).
    pub async fn start_in(dir: &std::path::Path) -> Self {
        let fs = s3s_fs::FileSystem::new(dir).unwrap();
        let rules = R2Rules::default();
        let log = rules.log.clone();
        let service = {
            let mut b = S3ServiceBuilder::new(fs);
            b.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
            b.set_access(rules);
            b.build()
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                // Without this, small responses wait for the peer's delayed ACK (~40 ms).
                let _ = socket.set_nodelay(true);
                let conn = http
                    .serve_connection(TokioIo::new(socket), service.clone())
                    .into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        });
        let s3 = Self {
            endpoint,
            log,
            server,
            _dir: None,
        };
        s3.store(SizeLimits::default())
            .create_bucket()
            .await
            .unwrap();
        s3
    }

    pub fn options(&self, limits: SizeLimits) -> S3Options {
        S3Options {
            endpoint_url: self.endpoint.clone(),
            region: "auto".to_owned(),
            bucket: BUCKET.to_owned(),
            access_key_id: ACCESS_KEY.to_owned(),
            secret_access_key: SecretString::from(SECRET_KEY),
            public_base_url: Some("https://assets.example.com".to_owned()),
            multipart: MultipartSettings::default(),
            limits,
            connect_timeout: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(60),
            max_attempts: 2,
        }
    }

    pub fn store(&self, limits: SizeLimits) -> S3Store {
        S3Store::new(self.options(limits)).unwrap()
    }
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        self.server.abort();
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
