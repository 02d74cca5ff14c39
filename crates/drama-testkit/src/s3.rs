//! An S3-protocol server (s3s over an s3s-fs directory) on a loopback port inside the test
//! process, so asset code is exercised through the real protocol: signatures, multipart,
//! ranges, listings.

use std::path::{Path, PathBuf};
use std::time::Duration;

use drama_assets::{MultipartSettings, S3Options, S3Store, SizeLimits};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use s3s::{S3Result, s3_error};
use secrecy::SecretString;
use tokio::net::TcpListener;

/// The access key every test server accepts.
pub const ACCESS_KEY: &str = "drama-test-access-key";
/// Its secret.
pub const SECRET_KEY: &str = "drama-test-secret-key-0123456789";

/// The access rule R2 applies: every request is signed. Custom [`S3Access`] hooks call it from
/// their `check`.
///
/// # Errors
/// `AccessDenied` for an anonymous request.
pub fn require_signature(cx: &S3AccessContext<'_>) -> S3Result<()> {
    match cx.credentials() {
        Some(_) => Ok(()),
        None => Err(s3_error!(AccessDenied, "Signature is required")),
    }
}

/// Requires signed requests and nothing else.
#[derive(Debug, Clone, Copy, Default)]
pub struct SignedOnly;

#[async_trait::async_trait]
impl S3Access for SignedOnly {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        require_signature(cx)
    }
}

/// A running server with one bucket; it stops when dropped (a temporary data directory goes
/// with it).
pub struct S3Server {
    endpoint: String,
    bucket: String,
    root: PathBuf,
    server: tokio::task::JoinHandle<()>,
    _dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for S3Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Server")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl S3Server {
    /// A server over a fresh temporary directory, with `bucket` created.
    ///
    /// # Panics
    /// If the directory or the port cannot be had.
    pub async fn start(bucket: &str) -> Self {
        Self::start_with(bucket, None, SignedOnly).await
    }

    /// A server over `root` (kept when the server stops; a temporary directory when `None`)
    /// whose requests pass through `access` (a hook that can hold, count or refuse them).
    ///
    /// # Panics
    /// If the directory or the port cannot be had.
    pub async fn start_with(bucket: &str, root: Option<&Path>, access: impl S3Access) -> Self {
        let (dir, root) = match root {
            Some(root) => (None, root.to_path_buf()),
            None => {
                let dir = tempfile::tempdir().expect("a temporary directory for the S3 server");
                let root = dir.path().to_path_buf();
                (Some(dir), root)
            }
        };
        // s3s-fs keeps one directory per bucket.
        std::fs::create_dir_all(root.join(bucket)).expect("creating the bucket directory");
        let fs = s3s_fs::FileSystem::new(&root).expect("s3s-fs over the data directory");
        let service = {
            let mut b = S3ServiceBuilder::new(fs);
            b.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
            b.set_access(access);
            b.build()
        };
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port for the S3 server");
        let endpoint = format!("http://{}", listener.local_addr().expect("its address"));
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
        Self {
            endpoint,
            bucket: bucket.to_owned(),
            root,
            server,
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:{port}`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The data directory (one subdirectory per bucket).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Client options for this server, with public URLs under `public_base_url`.
    pub fn options(&self, public_base_url: Option<&str>, limits: SizeLimits) -> S3Options {
        S3Options {
            endpoint_url: self.endpoint.clone(),
            region: "auto".to_owned(),
            bucket: self.bucket.clone(),
            access_key_id: ACCESS_KEY.to_owned(),
            secret_access_key: SecretString::from(SECRET_KEY),
            public_base_url: public_base_url.map(str::to_owned),
            multipart: MultipartSettings::default(),
            limits,
            connect_timeout: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(60),
            max_attempts: 2,
        }
    }

    /// A client of this server.
    ///
    /// # Panics
    /// If the client cannot be built from [`S3Server::options`].
    pub fn store(&self, public_base_url: Option<&str>) -> S3Store {
        S3Store::new(self.options(public_base_url, SizeLimits::default()))
            .expect("an S3 client for the test server")
    }

    /// The variables that point `drama-server` at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ASSETS_BACKEND", "s3".to_owned()),
            ("R2_ENDPOINT_URL", self.endpoint.clone()),
            ("R2_BUCKET", self.bucket.clone()),
            ("R2_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
            ("R2_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.server.abort();
    }
}
